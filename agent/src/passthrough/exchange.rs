//! One pass-through request, start to end: checks (the system's request slots,
//! then path, query and allowlist on the URI as the backend will receive it; a
//! refusal is logged by [`crate::refusal`]), the request to the backend (streamed,
//! or buffered for a CSRF write so the one retry can resend it), and the response
//! head and body back to the relay within the stream's window.
//!
//! The outcome is `Ok` once the last body chunk is queued, or the [`HttpFailure`]
//! the caller reports (before the head it decides the relay's status; after it, it
//! aborts the client's body).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt, TryStreamExt};
use http::header::{COOKIE, HeaderMap, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::{BodyDataStream, BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use sapbridge_proto::{
    AgentMessage, CHUNK_PAYLOAD_BYTES, HttpFailure, HttpFailureKind as Kind, HttpRequestHead,
    HttpResponseHead, INITIAL_WINDOW_CHUNKS, encode_chunk,
};
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, info};

use super::csrf::{CSRF_HEADER, CsrfToken, needs_token, token_required};
use super::paths::PathError;
use super::request_target::TargetError;
use super::target::{BackendBody, HttpTarget};
use crate::refusal::{Refusal, Refused};
use crate::transport::Outgoing;

/// A piece of the request body as the relay sent it.
#[derive(Debug)]
pub(crate) struct BodyPiece {
    /// The bytes.
    pub(crate) payload: Bytes,
    /// Whether it is the last piece.
    pub(crate) last: bool,
}

/// The stream's ends towards the session.
pub(crate) struct StreamIo {
    /// The stream id.
    pub(crate) id: u64,
    /// Window grants to the relay (order does not matter).
    pub(crate) control: mpsc::UnboundedSender<AgentMessage>,
    /// The response head, the encoded response chunks and a final error, in order.
    pub(crate) data: mpsc::Sender<Outgoing>,
    /// One permit per response chunk the relay is ready to take.
    pub(crate) window: Arc<Semaphore>,
    /// The request body, when the request has one.
    pub(crate) body: Option<mpsc::Receiver<BodyPiece>>,
}

fn fail(kind: Kind, detail: impl Into<String>) -> HttpFailure {
    HttpFailure::new(kind, detail)
}

/// Runs one request; see the module docs.
///
/// # Errors
/// The [`HttpFailure`] to report to the relay.
pub(crate) async fn exchange(
    target: &HttpTarget,
    head: HttpRequestHead,
    mut io: StreamIo,
) -> Result<(), HttpFailure> {
    let _slot = Arc::clone(&target.slots).try_acquire_owned().map_err(|_| {
        fail(
            Kind::Busy,
            format!(
                "the agent runs its maximum of pass-through requests for {}",
                target.system
            ),
        )
    })?;
    let (uri, matched) = match target.checked_uri(&head.path, head.query.as_deref()) {
        Ok(checked) => checked,
        Err(refused) => {
            let kind = match refused {
                TargetError::NotAllowed { .. } | TargetError::Path(PathError::Traversal) => {
                    Kind::NotAllowed
                }
                _ => Kind::BadRequest,
            };
            let reason = refused.to_string();
            Refusal {
                agent_id: Some(&target.agent_id),
                system: &target.system,
                refused: Refused::Path {
                    stream_id: io.id,
                    path: &head.path,
                },
                reason: &reason,
            }
            .log();
            return Err(fail(kind, reason));
        }
    };
    let method = Method::from_bytes(head.method.as_bytes()).map_err(|_| {
        fail(
            Kind::BadRequest,
            format!("{:?} is not an HTTP method", head.method),
        )
    })?;
    let started = tokio::time::Instant::now();
    let csrf_write = target.csrf.is_some() && needs_token(&method);
    let response = if csrf_write {
        let body = match io.body.take() {
            Some(rx) => read_all(rx, &io, target.max_body).await?,
            None => Bytes::new(),
        };
        let headers = target.request_headers(&head.headers, true);
        let fetch_path = target
            .csrf_fetch_path
            .clone()
            .unwrap_or_else(|| matched.to_owned());
        csrf_write_request(target, &method, &uri, &headers, &body, &fetch_path).await?
    } else {
        let too_large = Arc::new(AtomicBool::new(false));
        let body = match io.body.take() {
            Some(rx) => BodyExt::boxed_unsync(StreamBody::new(
                request_stream(
                    rx,
                    io.control.clone(),
                    io.id,
                    target.max_body,
                    Arc::clone(&too_large),
                )
                .map_ok(Frame::data),
            )),
            None => empty(),
        };
        let request = request(
            method.clone(),
            uri,
            target.request_headers(&head.headers, false),
            body,
        );
        match send(target, request).await {
            Err(_) if too_large.load(Ordering::Relaxed) => {
                return Err(fail(
                    Kind::TooLarge,
                    format!(
                        "the body exceeds the agent's limit of {} bytes",
                        target.max_body
                    ),
                ));
            }
            other => other?,
        }
    };
    let status = response.status();
    info!(
        status = status.as_u16(),
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        path = %head.path,
        "pass-through response"
    );
    let response_head = HttpResponseHead {
        stream_id: io.id,
        status: status.as_u16(),
        headers: target.response_headers(response.headers()),
    };
    let head_message = AgentMessage::HttpResponse {
        response: response_head,
    };
    if io.data.send(Outgoing::Message(head_message)).await.is_err() {
        return Ok(());
    }
    send_body(target, response, &io).await
}

/// A CSRF-protected write: token (cached or fetched), the write, and on
/// `403 Required` one refetch and one retry.
async fn csrf_write_request(
    target: &HttpTarget,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    fetch_path: &str,
) -> Result<Response, HttpFailure> {
    let Some(cache) = &target.csrf else {
        return Err(fail(Kind::Protocol, "CSRF handling without a cache"));
    };
    let mut retried = false;
    loop {
        let token = cache
            .get_or_fetch(|| fetch_token(target, fetch_path))
            .await?;
        let mut request_headers = headers.clone();
        if let Some(token) = &token {
            if let Ok(mut value) = HeaderValue::from_str(token.token.expose()) {
                value.set_sensitive(true);
                request_headers.insert(CSRF_HEADER, value);
            }
            let client_cookies = headers.get(COOKIE);
            if let Some(cookie) = token.cookie_header(client_cookies) {
                request_headers.insert(COOKIE, cookie);
            }
        }
        let full = Full::new(body.clone()).map_err(|never| match never {});
        let request = request(
            method.clone(),
            uri.clone(),
            request_headers,
            BodyExt::boxed_unsync(full),
        );
        let response = send(target, request).await?;
        if retried || !token_required(response.status(), response.headers()) {
            return Ok(response);
        }
        info!("CSRF token refused; fetching a new one and retrying once");
        cache.invalidate(token.as_ref()).await;
        retried = true;
    }
}

/// `GET fetch_path` with `X-CSRF-Token: Fetch`: the token and session cookies.
async fn fetch_token(
    target: &HttpTarget,
    fetch_path: &str,
) -> Result<Option<CsrfToken>, HttpFailure> {
    let uri = target
        .uri(fetch_path)
        .map_err(|e| fail(Kind::BadRequest, e.to_string()))?;
    let mut headers = HeaderMap::new();
    headers.insert(CSRF_HEADER, HeaderValue::from_static("Fetch"));
    if let Some(auth) = target.auth_header() {
        headers.insert(http::header::AUTHORIZATION, auth);
    }
    let response = send(target, request(Method::GET, uri, headers, empty())).await?;
    let token = CsrfToken::from_response(response.headers());
    debug!(
        status = response.status().as_u16(),
        fetched = token.is_some(),
        "CSRF token fetch"
    );
    Ok(token)
}

/// A backend response: its head, and its body as it arrives.
type Response = http::Response<Incoming>;

/// An empty request body.
fn empty() -> BackendBody {
    BodyExt::boxed_unsync(Empty::new().map_err(|never| match never {}))
}

/// A request for the backend.
fn request(
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: BackendBody,
) -> Request<BackendBody> {
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    request
}

/// Sends a request, waiting at most the target's timeout for the response head.
async fn send(target: &HttpTarget, request: Request<BackendBody>) -> Result<Response, HttpFailure> {
    let client = target.client().map_err(|e| fail(Kind::Unreachable, e))?;
    match tokio::time::timeout(target.timeout, client.request(request)).await {
        Err(_) => Err(fail(
            Kind::Timeout,
            format!(
                "the backend did not answer within {} s",
                target.timeout.as_secs()
            ),
        )),
        Ok(Ok(response)) => Ok(response),
        // Without the URL: its query may hold what should not be echoed into logs.
        Ok(Err(error)) if timed_out(&error) => Err(fail(
            Kind::Timeout,
            format!(
                "the backend {} timed out: {}",
                target.base(),
                causes(&error)
            ),
        )),
        Ok(Err(error)) => Err(fail(
            Kind::Unreachable,
            format!(
                "the backend {} could not be reached: {}",
                target.base(),
                causes(&error)
            ),
        )),
    }
}

/// An error and its causes, `: `-separated (hyper's errors say little alone).
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether an error was caused by a time-out (the connect timeout).
fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Reads the whole request body (CSRF writes only), granting window as it goes.
async fn read_all(
    mut rx: mpsc::Receiver<BodyPiece>,
    io: &StreamIo,
    limit: usize,
) -> Result<Bytes, HttpFailure> {
    let mut body = BytesMut::new();
    let mut read = 0u32;
    loop {
        let Some(piece) = rx.recv().await else {
            return Err(fail(
                Kind::Protocol,
                "the request body ended before its last chunk",
            ));
        };
        if body.len() + piece.payload.len() > limit {
            return Err(fail(
                Kind::TooLarge,
                format!("the body exceeds the agent's limit of {limit} bytes"),
            ));
        }
        body.extend_from_slice(&piece.payload);
        if piece.last {
            return Ok(body.freeze());
        }
        read += 1;
        if read >= INITIAL_WINDOW_CHUNKS / 2 {
            let _ = io.control.send(AgentMessage::HttpWindow {
                stream_id: io.id,
                chunks: read,
            });
            read = 0;
        }
    }
}

/// The request body as a stream for the backend request, granting window as it
/// takes pieces; fails when the relay cancels mid-body or the limit is passed.
fn request_stream(
    rx: mpsc::Receiver<BodyPiece>,
    control: mpsc::UnboundedSender<AgentMessage>,
    id: u64,
    limit: usize,
    too_large: Arc<AtomicBool>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    struct State {
        rx: mpsc::Receiver<BodyPiece>,
        read: u32,
        total: usize,
        done: bool,
    }
    let state = State {
        rx,
        read: 0,
        total: 0,
        done: false,
    };
    futures_util::stream::unfold(state, move |mut s| {
        let control = control.clone();
        let too_large = Arc::clone(&too_large);
        async move {
            if s.done {
                return None;
            }
            let Some(piece) = s.rx.recv().await else {
                s.done = true;
                let cut = std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the request body ended before its last chunk",
                );
                return Some((Err(cut), s));
            };
            s.total = s.total.saturating_add(piece.payload.len());
            if s.total > limit {
                too_large.store(true, Ordering::Relaxed);
                s.done = true;
                return Some((Err(std::io::Error::other("request body too large")), s));
            }
            if piece.last {
                s.done = true;
            } else {
                s.read += 1;
                if s.read >= INITIAL_WINDOW_CHUNKS / 2 {
                    let _ = control.send(AgentMessage::HttpWindow {
                        stream_id: id,
                        chunks: s.read,
                    });
                    s.read = 0;
                }
            }
            Some((Ok(piece.payload), s))
        }
    })
}

/// Streams the response body to the relay in chunks within the window; the last
/// chunk is flagged (an empty body is one empty last chunk).
async fn send_body(
    target: &HttpTarget,
    response: Response,
    io: &StreamIo,
) -> Result<(), HttpFailure> {
    let mut stream = BodyDataStream::new(response.into_body());
    let mut pending: Vec<u8> = Vec::with_capacity(CHUNK_PAYLOAD_BYTES);
    let idle = target.timeout;
    let mut next = match tokio::time::timeout(idle, stream.next()).await {
        Ok(next) => next,
        Err(_) => return Err(fail(Kind::Timeout, "the backend stopped sending the body")),
    };
    loop {
        let piece = match next {
            None => {
                send_chunk(io, &pending, true).await;
                return Ok(());
            }
            Some(Err(error)) => {
                return Err(fail(
                    Kind::Unreachable,
                    format!("the backend body failed: {}", causes(&error)),
                ));
            }
            Some(Ok(piece)) => piece,
        };
        let mut rest: &[u8] = &piece;
        while !rest.is_empty() {
            let take = (CHUNK_PAYLOAD_BYTES - pending.len()).min(rest.len());
            pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if pending.len() == CHUNK_PAYLOAD_BYTES {
                if !send_chunk(io, &pending, false).await {
                    return Ok(());
                }
                pending.clear();
            }
        }
        next = match stream.next().now_or_never() {
            Some(ready) => ready,
            None => {
                if !pending.is_empty() {
                    if !send_chunk(io, &pending, false).await {
                        return Ok(());
                    }
                    pending.clear();
                }
                match tokio::time::timeout(idle, stream.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        return Err(fail(Kind::Timeout, "the backend stopped sending the body"));
                    }
                }
            }
        };
    }
}

/// Waits for window and queues one chunk; `false` when the stream was cancelled or
/// the session is gone.
async fn send_chunk(io: &StreamIo, payload: &[u8], last: bool) -> bool {
    let Ok(permit) = io.window.acquire().await else {
        return false;
    };
    permit.forget();
    match encode_chunk(io.id, last, payload) {
        Ok(frame) => io.data.send(Outgoing::Chunk(frame)).await.is_ok(),
        Err(error) => {
            tracing::error!(%error, "response chunk not encodable");
            false
        }
    }
}
