//! How a pass-through backend's connections are opened: directly, or through the
//! system's HTTP proxy (`[systems.http] proxy_url`) with `CONNECT` — for
//! `https://` backends TLS then runs end to end inside the tunnel. The
//! environment's proxy variables are not used here: backends are on the local
//! network, which the internet proxy rarely reaches.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

/// Any error of opening a connection.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Opens TCP connections to a backend, directly or through a proxy.
#[derive(Debug, Clone)]
pub(crate) enum BackendConnector {
    /// Straight to the backend.
    Direct(HttpConnector),
    /// A `CONNECT` tunnel through the proxy.
    Proxied(Tunnel<HttpConnector>),
}

impl BackendConnector {
    /// `tcp` itself, or through the proxy at `proxy_url` (`http://host:port`,
    /// checked by the configuration).
    ///
    /// # Errors
    /// When `proxy_url` is not a URI.
    pub(crate) fn new(tcp: HttpConnector, proxy_url: Option<&str>) -> Result<Self, String> {
        match proxy_url {
            None => Ok(Self::Direct(tcp)),
            Some(url) => {
                let proxy: Uri = url
                    .parse()
                    .map_err(|e| format!("proxy_url {url:?} is not a URL: {e}"))?;
                Ok(Self::Proxied(Tunnel::new(proxy, tcp)))
            }
        }
    }
}

impl Service<Uri> for BackendConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Self::Direct(tcp) => tcp.poll_ready(cx).map_err(Into::into),
            Self::Proxied(tunnel) => tunnel.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, target: Uri) -> Self::Future {
        match self {
            Self::Direct(tcp) => {
                let connecting = tcp.call(target);
                Box::pin(async move { connecting.await.map_err(Into::into) })
            }
            Self::Proxied(tunnel) => {
                let connecting = tunnel.call(with_port(target));
                Box::pin(async move { connecting.await.map_err(Into::into) })
            }
        }
    }
}

/// `target` with its port spelled out: the tunnel would take 443 for a URI
/// without one, also for `http://`.
fn with_port(target: Uri) -> Uri {
    if target.port().is_some() {
        return target;
    }
    let port = if target.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    let Some(host) = target.host() else {
        return target;
    };
    let authority = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut parts = target.clone().into_parts();
    match authority.parse() {
        Ok(authority) => {
            parts.authority = Some(authority);
            Uri::from_parts(parts).unwrap_or(target)
        }
        Err(_) => target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_is_spelled_out_by_scheme() {
        let port = |uri: &str| with_port(uri.parse().unwrap()).port_u16();
        assert_eq!(port("http://sapgw/x"), Some(80));
        assert_eq!(port("https://sapgw/"), Some(443));
        assert_eq!(port("http://sapgw:8000/"), Some(8000));
    }
}
