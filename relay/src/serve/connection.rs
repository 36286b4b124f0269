//! One client connection: hyper's HTTP/1 server over the socket (or, over TLS
//! when the client asked for `h2` by ALPN, its HTTP/2 server), the router behind
//! it, and the relay's limits around both — the head and idle deadlines (watched by
//! the connection's own task), the request body timeout (408), and the connection
//! caps (503 with `Retry-After`). Under TLS the handshake must finish within the
//! header-read timeout, and with client certificates configured the agent endpoint
//! answers 403 to a connection that presented none.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Request, StatusCode, header};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::Shared;
use super::activity::{Activity, Expiry, Watched};
use super::body::{TimedBody, TrackedBody};
use crate::http::Problem;

/// What a client is told to wait before retrying a refused connection, in seconds.
const RETRY_AFTER_SECS: &str = "5";
/// How much of a refused request's body is read before the answer, so that closing
/// the connection does not reset it under the client's feet before it reads the
/// answer.
const REFUSED_BODY_READ_BYTES: usize = 64 * 1024;
/// How long a refused request's body is read before the answer.
const REFUSED_BODY_READ_TIME: Duration = Duration::from_secs(1);

/// How a connection was let in.
#[derive(Debug)]
pub(super) struct Admission {
    /// Its slot, held until the connection closes or upgrades.
    _slot: OwnedSemaphorePermit,
    /// Over `max_connections`: one request is read; an agent's WebSocket upgrade is
    /// served, anything else answered 503 and the connection closed.
    overflow: bool,
}

impl Admission {
    /// A connection within `max_connections`.
    pub(super) fn client(slot: OwnedSemaphorePermit) -> Self {
        Self {
            _slot: slot,
            overflow: false,
        }
    }

    /// A connection over `max_connections`.
    pub(super) fn overflow(slot: OwnedSemaphorePermit) -> Self {
        Self {
            _slot: slot,
            overflow: true,
        }
    }
}

/// The agent endpoint, which needs a client certificate when the relay has a
/// client CA.
const AGENT_CONNECT_PATH: &str = "/v1/agent/connect";

/// Serves one connection until it closes, upgrades, misses a deadline, or (after
/// `stop`) finishes the request it is answering.
pub(super) async fn serve(
    stream: TcpStream,
    admission: Admission,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let activity = Arc::new(Activity::new());
    let mut service = ConnectionService {
        peer: stream.peer_addr().ok(),
        overflow: admission.overflow,
        shared: Arc::clone(&shared),
        activity: Arc::clone(&activity),
        certificate: Certificate::NotAsked,
    };
    let watched = Watched::new(stream, Arc::clone(&activity));
    let Some(tls) = &shared.tls else {
        serve_http1(TokioIo::new(watched), service, &activity, &stop).await;
        drop(admission);
        return;
    };
    let (acceptor, needs_certificate) = tls.acceptor();
    let handshake = tokio::time::timeout(shared.limits.header_read, acceptor.accept(watched));
    let stream = tokio::select! {
        () = stop.cancelled() => return,
        handshake = handshake => match handshake {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(%error, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!("TLS handshake not finished within the header-read timeout");
                return;
            }
        },
    };
    let (_, session) = stream.get_ref();
    let h2 = session.alpn_protocol() == Some(b"h2".as_slice());
    if needs_certificate {
        // Only a certificate the client CA verified gets this far.
        service.certificate = if session.peer_certificates().is_some_and(|c| !c.is_empty()) {
            Certificate::Verified
        } else {
            Certificate::Missing
        };
    }
    let io = TokioIo::new(stream);
    if h2 {
        activity.multiplex();
        let overflow = service.overflow;
        let connection = http2::Builder::new(TokioExecutor::new()).serve_connection(io, service);
        tokio::pin!(connection);
        if overflow {
            // One round of requests is answered 503, then the connection ends.
            connection.as_mut().graceful_shutdown();
        }
        // An idle HTTP/2 connection is closed with GOAWAY rather than cut, so a
        // client does not send its next request into it.
        drive(
            connection,
            |c| c.graceful_shutdown(),
            true,
            &activity,
            &shared,
            &stop,
        )
        .await;
    } else {
        serve_http1(io, service, &activity, &stop).await;
    }
    drop(admission);
}

/// HTTP/1 over `io`, WebSocket upgrades included.
async fn serve_http1<I>(
    io: TokioIo<I>,
    service: ConnectionService,
    activity: &Arc<Activity>,
    stop: &CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = Arc::clone(&service.shared);
    let mut builder = http1::Builder::new();
    // Heads and idle waits are timed by `activity`: hyper's own header timer is one
    // timer for both (it restarts when a connection goes idle).
    builder.header_read_timeout(None);
    let connection = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    drive(
        connection,
        |c| c.graceful_shutdown(),
        false,
        activity,
        &shared,
        stop,
    )
    .await;
}

/// Runs `connection` until it ends or misses a deadline; on `stop`, asks it to
/// close once its requests are answered (`shutdown`). With `goaway` (HTTP/2), an
/// idle connection is asked to close too, and cut only if it has not closed one
/// idle timeout later.
async fn drive<C, E>(
    mut connection: Pin<&mut C>,
    shutdown: impl Fn(Pin<&mut C>),
    goaway: bool,
    activity: &Activity,
    shared: &Shared,
    stop: &CancellationToken,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut draining = false;
    let mut cutoff: Option<Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "client connection failed");
                }
                break;
            }
            expiry = activity.expired(&shared.limits), if cutoff.is_none() => {
                if goaway && expiry == Expiry::Idle {
                    tracing::debug!("closing an idle HTTP/2 connection");
                    if !draining {
                        shutdown(connection.as_mut());
                        draining = true;
                    }
                    cutoff = Some(Box::pin(tokio::time::sleep(shared.limits.idle)));
                    continue;
                }
                tracing::debug!(?expiry, "closing a slow or idle client connection");
                break;
            }
            () = async { cutoff.as_mut().expect("guarded").await }, if cutoff.is_some() => {
                tracing::debug!("an HTTP/2 connection did not close after GOAWAY; cutting it");
                break;
            }
            () = stop.cancelled(), if !draining => {
                // Closes an idle connection now, a busy one after its answer.
                shutdown(connection.as_mut());
                draining = true;
            }
        }
    }
}

/// Whether the client presented a certificate the relay's client CA verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Certificate {
    /// No client CA is configured (or no TLS): nothing to check.
    NotAsked,
    /// The client presented a verified certificate.
    Verified,
    /// The client presented none.
    Missing,
}

/// The hyper service of one connection.
#[derive(Clone)]
struct ConnectionService {
    shared: Arc<Shared>,
    /// The client's address (a proxy's, behind one).
    peer: Option<SocketAddr>,
    activity: Arc<Activity>,
    overflow: bool,
    certificate: Certificate,
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.request_started();
        let service = self.clone();
        Box::pin(async move {
            let response = service.answer(request).await;
            Ok(response.map(|body| TrackedBody::new(body, in_flight)))
        })
    }
}

impl ConnectionService {
    async fn answer(self, request: Request<Incoming>) -> Response {
        let limits = &self.shared.limits;
        if self.overflow && !request.headers().contains_key(header::UPGRADE) {
            return self.refuse(request).await;
        }
        if self.certificate == Certificate::Missing && request.uri().path() == AGENT_CONNECT_PATH {
            tracing::warn!(peer = ?self.peer, "agent connection refused: no client certificate");
            return closing(Problem::new(
                StatusCode::FORBIDDEN,
                "client-certificate-required",
                "Client certificate required",
                "agents must present a client certificate issued by the relay's client CA \
                 (client_cert_file and client_key_file in agent.toml)",
            ));
        }
        let activity = Arc::clone(&self.activity);
        let mut request =
            request.map(|body| Body::new(TimedBody::new(body, limits.body_read, activity)));
        if let Some(peer) = self.peer {
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        let Ok(mut response) = self.shared.router.clone().oneshot(request).await;
        if self.activity.body_stalled() {
            tracing::debug!("request body stalled; answering 408");
            response = closing(Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                "request-timeout",
                "Request body too slow",
                format!(
                    "no part of the request body arrived for {} s",
                    limits.body_read.as_secs()
                ),
            ));
        } else if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            match Arc::clone(&self.shared.agents).try_acquire_owned() {
                Ok(permit) => self.activity.hold_upgrade(permit),
                Err(_) => {
                    tracing::warn!(
                        max = limits.max_agent_connections,
                        "agent connection refused: max_agent_connections reached"
                    );
                    response = closing(Problem::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too-many-agents",
                        "Too many agent connections",
                        format!(
                            "the relay holds its maximum of {} agent connections; retry later",
                            limits.max_agent_connections
                        ),
                    ));
                    retry_after(&mut response);
                }
            }
        } else if self.overflow {
            close(&mut response);
        }
        response
    }

    /// The answer over `max_connections`.
    async fn refuse(self, request: Request<Incoming>) -> Response {
        tracing::debug!("request refused: max_connections reached");
        let body = Body::new(request.into_body());
        let read = axum::body::to_bytes(body, REFUSED_BODY_READ_BYTES);
        let _ = tokio::time::timeout(REFUSED_BODY_READ_TIME, read).await;
        let mut response = closing(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too-many-connections",
            "Too many connections",
            format!(
                "the relay holds its maximum of {} client connections; retry later",
                self.shared.limits.max_connections
            ),
        ));
        retry_after(&mut response);
        response
    }
}

/// `problem` as a response after which the connection closes.
fn closing(problem: Problem) -> Response {
    let mut response = problem.into_response();
    close(&mut response);
    response
}

fn close(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
}

fn retry_after(response: &mut Response) {
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_AFTER_SECS),
    );
}
