//! One system's HTTP service as the agent reaches it: a pooled HTTP/1.1 client
//! (hyper; rustls with the system's root certificates plus an optional extra CA),
//! the base URL, the path allowlist, the optional basic-auth credentials and the
//! CSRF token cache.
//!
//! Redirects are passed back to the client, never followed: following one could
//! leave the allowed paths. (The client is hyper's own, not `reqwest`: on this path
//! `reqwest` parsed every request's URL again for a redirect policy that follows
//! nothing, a fifth of the agent's work per pass-through request.)

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CONTENT_LENGTH, COOKIE, HeaderMap, HeaderName, HeaderValue, SET_COOKIE,
};
use http_body_util::combinators::UnsyncBoxBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

use super::connector::BackendConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use sapbridge_proto::{
    Secret, WireHeader, header_value_from_wire, header_value_to_wire, is_hop_by_hop,
};
use tokio::sync::Semaphore;

use super::csrf::{CSRF_HEADER, CsrfCache};
use super::paths::{PathAllowlist, check_path};
use super::request_target::{BaseUrl, TargetError};
use crate::config::HttpConfig;

/// Headers that IIS, Symfony, Zend and other stacks behind a proxy read as the
/// request's path in place of the request line's (lower case, as `http` names are).
const PATH_OVERRIDE_HEADERS: &[&str] = &["x-original-url", "x-rewrite-url", "x-original-uri"];

/// How long idle pooled connections to the backend are kept.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// A request body for the backend: none, buffered, or streamed from the relay.
pub(crate) type BackendBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// The pooled client of one backend.
pub(crate) type BackendClient = Client<HttpsConnector<BackendConnector>, BackendBody>;

/// A configured HTTP service of one system.
pub(crate) struct HttpTarget {
    /// The id of the agent (for logs).
    pub(crate) agent_id: Arc<str>,
    /// The system's name.
    pub(crate) system: String,
    base: String,
    /// The base URL parsed once (its scheme picks the client's TLS set-up).
    base_url: url::Url,
    /// The base URL's parts each request's URI is built from (without parsing the
    /// host again: that cost ~2 % of the agent's CPU on the pass-through path).
    origin: BaseUrl,
    /// The pooled client, built on first use (see [`HttpTarget::client`]).
    client: OnceLock<Result<BackendClient, String>>,
    /// The extra CA certificates the client trusts, beside the system's roots.
    ca_file: Option<PathBuf>,
    /// The HTTP proxy the backend is reached through, if any.
    proxy_url: Option<String>,
    /// The paths the cloud may reach.
    pub(crate) allow: PathAllowlist,
    basic_auth: Option<(String, Secret)>,
    /// The CSRF token cache, when `csrf = true`.
    pub(crate) csrf: Option<CsrfCache>,
    /// Where tokens are fetched, if configured.
    pub(crate) csrf_fetch_path: Option<String>,
    /// Whether cookies pass both ways.
    pub(crate) forward_cookies: bool,
    /// Response head timeout and longest pause in a body.
    pub(crate) timeout: Duration,
    /// Largest request body accepted.
    pub(crate) max_body: usize,
    /// One permit per request allowed to run at once.
    pub(crate) slots: Arc<Semaphore>,
}

impl std::fmt::Debug for HttpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTarget")
            .field("system", &self.system)
            .field("base", &self.base)
            .field("allow", &self.allow)
            .field("csrf", &self.csrf.is_some())
            .finish_non_exhaustive()
    }
}

impl HttpTarget {
    /// Builds the target of system `system`, served by agent `agent_id`, from its
    /// validated block.
    ///
    /// # Errors
    /// A message naming what is unusable (base URL, password source, CA file,
    /// allowlist, CSRF fetch path); never a secret.
    pub(crate) fn new(
        agent_id: Arc<str>,
        system: &str,
        config: &HttpConfig,
    ) -> Result<Self, String> {
        let allow = PathAllowlist::parse(&config.allow_paths).map_err(|p| p.join("; "))?;
        let basic_auth = match &config.user {
            Some(user) => Some((
                user.clone(),
                crate::systems::read_password(
                    config.password_file.as_deref(),
                    config.password_env.as_deref(),
                )?,
            )),
            None => None,
        };
        let timeout = Duration::from_secs(config.timeout_secs);
        let base = config.base_url.trim_end_matches('/').to_owned();
        let base_url = url::Url::parse(&base)
            .map_err(|e| format!("base_url {:?} is not a URL: {e}", config.base_url))?;
        let origin = BaseUrl::new(&base_url)?;
        if let Some(path) = &config.csrf_fetch_path {
            check_path(path)
                .map_err(TargetError::from)
                .and_then(|()| origin.uri(path, None))
                .map_err(|e| format!("csrf_fetch_path {path:?}: {e}"))?;
        }
        let client = OnceLock::new();
        if config.ca_file.is_some() && base_url.scheme() == "https" {
            // A CA file that cannot be read or used fails now, at start.
            let _ = client.set(Ok(build_client(
                timeout,
                &base_url,
                config.ca_file.as_deref(),
                config.proxy_url.as_deref(),
            )?));
        }
        Ok(Self {
            agent_id,
            system: system.to_owned(),
            base,
            base_url,
            origin,
            client,
            ca_file: config.ca_file.clone(),
            proxy_url: config.proxy_url.clone(),
            allow,
            basic_auth,
            csrf: config.csrf.then(CsrfCache::default),
            csrf_fetch_path: config.csrf_fetch_path.clone(),
            forward_cookies: config.forward_cookies,
            timeout,
            max_body: config.max_body_bytes,
            slots: Arc::new(Semaphore::new(config.max_in_flight as usize)),
        })
    }

    /// The pooled client, built on the first request: an agent that serves no
    /// pass-through request never sets up its TLS configuration and connection pool
    /// (a good share of an idle agent's resident code).
    ///
    /// # Errors
    /// When the client cannot be built (then on every call).
    pub(crate) fn client(&self) -> Result<&BackendClient, &str> {
        self.client
            .get_or_init(|| {
                build_client(
                    self.timeout,
                    &self.base_url,
                    self.ca_file.as_deref(),
                    self.proxy_url.as_deref(),
                )
            })
            .as_ref()
            .map_err(String::as_str)
    }

    /// The URI a client's request goes to, and the `allow_paths` entry that allows
    /// it. The path is checked ([`check_path`]), the URI built byte for byte, and the
    /// allowlist consulted on the path that URI carries to the backend (below the
    /// base URL's path).
    ///
    /// # Errors
    /// The [`TargetError`] that refuses the request.
    pub(crate) fn checked_uri(
        &self,
        path: &str,
        query: Option<&str>,
    ) -> Result<(http::Uri, &str), TargetError> {
        check_path(path)?;
        let uri = self.origin.uri(path, query)?;
        let sent = self.origin.below(&uri)?;
        check_path(sent)?;
        let matched = self
            .allow
            .matching(sent)
            .ok_or_else(|| TargetError::NotAllowed {
                path: sent.to_owned(),
                system: self.system.clone(),
            })?;
        Ok((uri, matched))
    }

    /// The URI of a configured path (the CSRF fetch path, checked at start, or an
    /// `allow_paths` entry), without query.
    ///
    /// # Errors
    /// The [`TargetError`] when it cannot be built (not for a path that was checked).
    pub(crate) fn uri(&self, path: &str) -> Result<http::Uri, TargetError> {
        self.origin.uri(path, None)
    }

    /// The headers for the backend: the client's end-to-end headers minus
    /// credentials (and cookies and CSRF tokens, which the agent manages) and minus
    /// the headers some servers and frameworks take as the request path instead of
    /// the request line ([`PATH_OVERRIDE_HEADERS`]: the allowlist checked the request
    /// line), plus the configured basic auth.
    pub(crate) fn request_headers(&self, wire: &[WireHeader], buffered: bool) -> HeaderMap {
        let mut headers = from_wire(wire);
        let listed = connection_listed(&headers);
        let mut drop: Vec<HeaderName> = headers
            .keys()
            .filter(|name| {
                let name = name.as_str();
                is_hop_by_hop(name)
                    || listed.iter().any(|l| l == name)
                    || name == "x-api-key"
                    || PATH_OVERRIDE_HEADERS.contains(&name)
                    || (self.csrf.is_some() && name == CSRF_HEADER)
            })
            .cloned()
            .collect();
        drop.extend([AUTHORIZATION, http::header::EXPECT]);
        if !self.forward_cookies {
            drop.push(COOKIE);
        }
        if buffered {
            drop.push(CONTENT_LENGTH);
        }
        for name in drop {
            headers.remove(name);
        }
        if let Some(value) = self.auth_header() {
            headers.insert(AUTHORIZATION, value);
        }
        headers
    }

    /// The backend's response headers to send back: end-to-end only, without
    /// `Set-Cookie` unless cookies are forwarded.
    pub(crate) fn response_headers(&self, headers: &HeaderMap) -> Vec<WireHeader> {
        let listed = connection_listed(headers);
        headers
            .iter()
            .filter(|(name, _)| {
                !is_hop_by_hop(name.as_str())
                    && !listed.iter().any(|l| l == name.as_str())
                    && (self.forward_cookies || **name != SET_COOKIE)
            })
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    header_value_to_wire(value.as_bytes()),
                )
            })
            .collect()
    }

    /// The `Authorization` value for the configured user, if any.
    pub(crate) fn auth_header(&self) -> Option<HeaderValue> {
        self.basic_auth
            .as_ref()
            .and_then(|(user, password)| basic_auth_value(user, password))
    }

    /// The base URL (for logs: it holds no credentials).
    pub(crate) fn base(&self) -> &str {
        &self.base
    }
}

/// `Basic base64(user:password)`, marked sensitive so it is never printed.
fn basic_auth_value(user: &str, password: &Secret) -> Option<HeaderValue> {
    let raw = format!("{user}:{}", password.expose());
    let mut value = HeaderValue::from_str(&format!("Basic {}", base64(raw.as_bytes()))).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// Standard base64 with padding (RFC 4648).
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for group in input.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn from_wire(wire: &[WireHeader]) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(wire.len());
    for (name, value) in wire {
        let name = HeaderName::from_bytes(name.as_bytes()).ok();
        let value = header_value_from_wire(value).and_then(|v| HeaderValue::from_bytes(&v).ok());
        if let (Some(name), Some(value)) = (name, value) {
            headers.append(name, value);
        }
    }
    headers
}

fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect()
}

/// The client of the backend at `base_url`: HTTP/1.1 over TCP (no delay, connect
/// timeout), for `https://` over TLS with the system's root certificates plus
/// `ca_file`; no redirects (hyper follows none). The URL's scheme never changes, so
/// an `http://` backend's client loads no root certificates. With `proxy_url`,
/// connections are tunnelled through that proxy.
fn build_client(
    timeout: Duration,
    base_url: &url::Url,
    ca_file: Option<&Path>,
    proxy_url: Option<&str>,
) -> Result<BackendClient, String> {
    let tls = if base_url.scheme() == "https" {
        crate::tls::client_config(ca_file).map(|config| (*config).clone())
    } else {
        crate::tls::trusting_nothing()
    }
    .map_err(|e| e.to_string())?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(BackendConnector::new(http, proxy_url)?);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_timer(TokioTimer::new())
        .build(https))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passthrough::paths::PathError;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }

    #[test]
    fn basic_auth_comes_from_the_password_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "pass\n").unwrap();
        let mut config = HttpConfig::new("http://sapgw:8000/", vec!["/api".into()]);
        config.user = Some("user".into());
        config.password_file = Some(file);
        let t = target(&config);
        let headers = t.request_headers(&[], false);
        assert_eq!(headers[AUTHORIZATION], "Basic dXNlcjpwYXNz");
        assert!(headers[AUTHORIZATION].is_sensitive());
        assert!(!format!("{t:?}").contains("pass\""));
    }

    fn target(config: &HttpConfig) -> HttpTarget {
        HttpTarget::new("agent-1".into(), "PRD", config).unwrap()
    }

    #[test]
    fn the_allowlist_sees_the_path_the_backend_receives() {
        let config = HttpConfig::new(
            "http://sapgw:8000/prefix/",
            vec!["/api".into(), "/sap/%61pi/".into()],
        );
        let t = target(&config);
        let (uri, matched) = t.checked_uri("/api/x", Some("a=1&b=%20")).unwrap();
        assert_eq!(uri.to_string(), "http://sapgw:8000/prefix/api/x?a=1&b=%20");
        assert_eq!(matched, "/api");
        let (uri, matched) = t.checked_uri("/sap/api/$metadata", None).unwrap();
        assert_eq!(uri.path(), "/prefix/sap/api/$metadata");
        assert_eq!(
            matched, "/sap/%61pi",
            "the entry as configured, for the CSRF fetch"
        );
        for (path, query) in [
            ("/api/.\t./secret", None),
            ("/api/%2e\t%2e/secret", None),
            ("/api/\t../secret", None),
            ("/api/..\t/secret", None),
            ("/api/..\\secret", None),
            ("/api/x", Some("#/../../secret")),
            ("/api/x", Some("a\r\nHost: evil")),
        ] {
            let refused = t.checked_uri(path, query).unwrap_err();
            assert!(
                matches!(refused, TargetError::Path(_) | TargetError::QueryByte(_)),
                "{path:?} {query:?}: {refused:?}"
            );
        }
        assert!(matches!(
            t.checked_uri("/secret", None),
            Err(TargetError::NotAllowed { .. })
        ));
        assert!(matches!(
            t.checked_uri("/api/../secret", None),
            Err(TargetError::Path(PathError::Traversal))
        ));
    }

    #[test]
    fn unusable_base_urls_and_fetch_paths_fail_at_start() {
        let with_credentials = HttpConfig::new("http://u:secret@sapgw/", vec!["/".into()]);
        let error = HttpTarget::new("agent-1".into(), "PRD", &with_credentials).unwrap_err();
        assert!(!error.contains("secret"), "{error}");
        let mut fetch = HttpConfig::new("http://sapgw/", vec!["/".into()]);
        fetch.csrf_fetch_path = Some("/sap/\tx".into());
        assert!(HttpTarget::new("agent-1".into(), "PRD", &fetch).is_err());
    }

    #[test]
    fn credentials_cookies_and_tokens_are_managed_by_the_agent() {
        let config = HttpConfig::new("http://sapgw:8000/", vec!["/api".into()]);
        let mut csrf = config.clone();
        csrf.csrf = true;
        let plain = target(&config);
        let with_csrf = target(&csrf);
        let wire: Vec<WireHeader> = [
            ("authorization", "Bearer key"),
            ("x-api-key", "key"),
            ("cookie", "a=b"),
            ("x-csrf-token", "Fetch"),
            ("content-type", "text/plain"),
            ("content-length", "3"),
            ("connection", "x-hop"),
            ("x-hop", "1"),
            ("x-original-url", "/secret"),
            ("X-Rewrite-URL", "/secret"),
            ("x-original-uri", "/secret"),
        ]
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
        let headers = plain.request_headers(&wire, false);
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-length", "content-type", "x-csrf-token"]);
        let headers = with_csrf.request_headers(&wire, true);
        let names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["content-type"]);
        let mut response = HeaderMap::new();
        response.insert(SET_COOKIE, "s=1".parse().unwrap());
        response.insert("content-type", "text/plain".parse().unwrap());
        assert_eq!(plain.response_headers(&response).len(), 1);
    }
}
