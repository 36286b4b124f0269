//! Forwarding one client request through a stream of an agent's tunnel to the
//! system's HTTP service, and its response back.
//!
//! The relay sends the request head, then pumps the body in chunks while it waits
//! up to `http_timeout_secs` for the response head ([`ForwardError::Timeout`]
//! after), then streams the response body to the client. An agent lost before
//! the head is [`ForwardError::AgentLost`]; after it, the client's response is cut
//! off (its length or chunked framing shows it incomplete).

use std::sync::Arc;
use std::time::Duration;

use axum::body::HttpBody;
use axum::extract::Request;
use axum::response::Response;
use http::StatusCode;
use sapbridge_proto::{HttpFailure, HttpRequestHead, RelayMessage};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::PassthroughSettings;
use super::body::{PumpError, StreamGuard, pump_request, response_body};
use super::headers::{request_to_wire, response_from_wire};
use super::tunnel::{OpenStream, Ordered, Tunnel};

/// Why a forwarded request has no response from the backend.
#[derive(Debug)]
pub(crate) enum ForwardError {
    /// The request body passed the limit, in bytes.
    TooLarge(usize),
    /// The client's request body could not be read.
    BadRequest(String),
    /// The agent's connection ended before it answered.
    AgentLost,
    /// No response head within this time.
    Timeout(Duration),
    /// The backend answered with a status that is not one.
    BadStatus(u16),
    /// The agent reported that it could not forward the request.
    Failed(HttpFailure),
}

/// Forwards `request` for `path` of `system` through `stream`, a stream opened on
/// `tunnel`, and answers with the backend's response (its body streamed as it
/// arrives).
///
/// # Errors
/// [`ForwardError`] when there is no response to stream.
pub(crate) async fn forward(
    tunnel: Arc<Tunnel>,
    stream: OpenStream,
    settings: &PassthroughSettings,
    system: String,
    path: String,
    request: Request,
) -> Result<Response, ForwardError> {
    let OpenStream {
        id,
        head,
        body: response_chunks,
        request_window,
    } = stream;
    tracing::Span::current().record("stream_id", id);
    let guard = StreamGuard::new(Arc::clone(&tunnel), id);
    let (parts, body) = request.into_parts();
    let has_body = !body.is_end_stream();
    let head_message = RelayMessage::HttpRequest {
        request: HttpRequestHead {
            stream_id: id,
            system,
            method: parts.method.as_str().to_owned(),
            path,
            query: parts.uri.query().map(str::to_owned),
            headers: request_to_wire(&parts.headers),
            body: has_body,
            timeout_ms: u64::try_from(settings.timeout.as_millis()).unwrap_or(u64::MAX),
        },
    };
    if !tunnel
        .send_ordered(Ordered::Message(Box::new(head_message)))
        .await
    {
        return Err(ForwardError::AgentLost);
    }
    let mut pump = has_body.then(|| {
        Box::pin(pump_request(
            Arc::clone(&tunnel),
            id,
            Arc::clone(&request_window),
            body,
            settings.body_limit_bytes,
        ))
    });
    let deadline = Instant::now() + settings.timeout;
    tokio::pin!(head);
    let answer = loop {
        tokio::select! {
            answer = &mut head => break answer,
            pumped = async {
                match pump.as_mut() {
                    Some(pump) => pump.await,
                    None => std::future::pending().await,
                }
            }, if pump.is_some() => {
                pump = None;
                match pumped {
                    Ok(()) => {}
                    Err(PumpError::TooLarge(limit)) => return Err(ForwardError::TooLarge(limit)),
                    Err(PumpError::Client(detail)) => return Err(ForwardError::BadRequest(detail)),
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                tracing::info!("no response head in time");
                return Err(ForwardError::Timeout(settings.timeout));
            }
        }
    };
    if let Some(rest) = pump {
        // The backend answered before reading the whole body (an early error, say).
        tokio::spawn(finish_body(rest, request_window, settings.timeout));
    }
    let head = match answer {
        Ok(Ok(head)) => head,
        Ok(Err(failure)) => return Err(ForwardError::Failed(failure)),
        Err(_closed) => return Err(ForwardError::AgentLost),
    };
    let Ok(status) = StatusCode::from_u16(head.status) else {
        return Err(ForwardError::BadStatus(head.status));
    };
    tracing::info!(status = status.as_u16(), "pass-through response");
    let body = response_body(tunnel, guard, response_chunks, settings.timeout);
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = response_from_wire(&head.headers);
    Ok(response)
}

/// The rest of a request body after the response head: sent on while the stream
/// lasts, then read and dropped (see `pump_request`) for at most `timeout` after
/// the stream ended, so that a client that stops sending mid-body is let go.
async fn finish_body(
    rest: impl Future<Output = Result<(), PumpError>>,
    window: Arc<Semaphore>,
    timeout: Duration,
) {
    tokio::pin!(rest);
    let mut ticks = tokio::time::interval(timeout.min(Duration::from_secs(1)));
    ticks.tick().await;
    let mut ended_for = Duration::ZERO;
    loop {
        tokio::select! {
            result = &mut rest => {
                if let Err(error) = result {
                    tracing::debug!(%error, "request body after the response head not read");
                }
                return;
            }
            _ = ticks.tick() => {
                if window.is_closed() {
                    ended_for += ticks.period();
                    if ended_for >= timeout {
                        tracing::debug!("request body after the response head: the client stopped sending");
                        return;
                    }
                }
            }
        }
    }
}
