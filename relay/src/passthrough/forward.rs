//! `ANY /v1/systems/{system}/http/{*path}`: the client's request, tunnelled to an
//! agent serving the system, which runs it against the system's HTTP service.
//!
//! Not a durable call: nothing is queued. The request goes to the connected agent
//! with the fewest open pass-through streams; with none connected the answer is 503
//! with `Retry-After`. The relay waits up to `http_timeout_secs` for the response
//! head (504 after), then streams the body to the client. An agent lost before the
//! head is 502; after it, the client's response is cut off (its length or chunked
//! framing shows it incomplete).

use std::sync::Arc;
use std::time::Duration;

use axum::body::HttpBody;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use sapbridge_proto::{HttpFailure, HttpFailureKind, HttpRequestHead, RelayMessage};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::Instrument;

use super::body::{PumpError, StreamGuard, pump_request, response_body};
use super::headers::{request_to_wire, response_from_wire};
use super::tunnel::{OpenStream, Ordered, Tunnel};
use crate::http::{ApiError, Caller, Problem};
use crate::state::RelayState;

/// `Retry-After` when no agent serves the system.
const RETRY_NO_AGENT_SECS: &str = "5";
/// `Retry-After` when every agent is at its stream limit.
const RETRY_BUSY_SECS: &str = "1";

/// The route's handler.
pub(crate) async fn forward(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    request: Request,
) -> Response {
    let Some((system, path)) = split_path(request.uri().path()) else {
        return ApiError::RouteNotFound.into_response();
    };
    let span = tracing::info_span!(
        "passthrough",
        system = %system,
        method = %request.method(),
        stream_id = tracing::field::Empty,
    );
    async move {
        match run(&state, &caller, system.clone(), path, request).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        }
    }
    .instrument(span)
    .await
}

/// The system and the path below `/http` (at least `/`) of a raw request path.
pub(super) fn split_path(raw: &str) -> Option<(String, String)> {
    let rest = raw.strip_prefix("/v1/systems/")?;
    let (system, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("http")?;
    let path = match rest {
        "" => "/",
        rest if rest.starts_with('/') => rest,
        _ => return None,
    };
    Some((system.to_owned(), path.to_owned()))
}

async fn run(
    state: &RelayState,
    caller: &Caller,
    system: String,
    path: String,
    request: Request,
) -> Result<Response, Refusal> {
    caller.check_system(state, &system)?;
    let settings = &state.settings.passthrough;
    let limit = settings.body_limit_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit).into());
    }
    let (tunnel, stream) = pick_agent(state, &system, settings.max_in_flight_per_agent)?;
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
        return Err(agent_lost().into());
    }
    let mut pump = has_body.then(|| {
        Box::pin(pump_request(
            Arc::clone(&tunnel),
            id,
            Arc::clone(&request_window),
            body,
            limit,
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
                    Err(PumpError::TooLarge(limit)) => return Err(ApiError::PayloadTooLarge(limit).into()),
                    Err(PumpError::Client(detail)) => return Err(ApiError::BadRequest(detail).into()),
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                tracing::info!("no response head in time");
                return Err(problem(
                    StatusCode::GATEWAY_TIMEOUT,
                    "gateway-timeout",
                    "Backend timeout",
                    format!("no response within {} s", settings.timeout.as_secs()),
                )
                .into());
            }
        }
    };
    if let Some(rest) = pump {
        // The backend answered before reading the whole body (an early error, say).
        tokio::spawn(finish_body(rest, request_window, settings.timeout));
    }
    let head = match answer {
        Ok(Ok(head)) => head,
        Ok(Err(failure)) => return Err(failure_error(&failure)),
        Err(_closed) => return Err(agent_lost().into()),
    };
    let Ok(status) = StatusCode::from_u16(head.status) else {
        return Err(problem(
            StatusCode::BAD_GATEWAY,
            "bad-gateway",
            "Invalid backend response",
            format!("the backend answered with status {}", head.status),
        )
        .into());
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

/// Opens a stream on the connected agent of `system` with the fewest open streams.
fn pick_agent(
    state: &RelayState,
    system: &str,
    limit: u32,
) -> Result<(Arc<Tunnel>, OpenStream), Refusal> {
    let serving = state.agents.serving(system);
    let mut tunnels: Vec<Arc<Tunnel>> = serving
        .iter()
        .filter(|session| session.hello.serves_http(system))
        .map(|session| Arc::clone(session.tunnel()))
        .filter(|tunnel| !tunnel.is_closed())
        .collect();
    if tunnels.is_empty() && !serving.is_empty() {
        // Agents are connected, and none of them has an HTTP backend for the
        // system: their configuration says no, as their allowlist would.
        return Err(problem(
            StatusCode::FORBIDDEN,
            "not-allowed",
            "Not allowed by the agent",
            format!(
                "no agent serving {system} offers HTTP pass-through (the agents have no \
                 [systems.http] block for it)"
            ),
        )
        .into());
    }
    if tunnels.is_empty() {
        return Err(Refusal::Unavailable {
            slug: "no-agent",
            title: "No agent connected",
            detail: format!("no agent serving {system} is connected; retry later"),
            retry_after: RETRY_NO_AGENT_SECS,
        });
    }
    tunnels.sort_by_key(|tunnel| tunnel.in_flight());
    for tunnel in tunnels {
        if let Some(stream) = tunnel.open(limit as usize) {
            return Ok((tunnel, stream));
        }
    }
    Err(Refusal::Unavailable {
        slug: "agent-busy",
        title: "Agents busy",
        detail: format!(
            "every agent serving {system} carries its maximum of {limit} pass-through requests"
        ),
        retry_after: RETRY_BUSY_SECS,
    })
}

fn problem(
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: String,
) -> ApiError {
    ApiError::Call(Box::new(Problem::new(status, slug, title, detail)))
}

fn agent_lost() -> ApiError {
    problem(
        StatusCode::BAD_GATEWAY,
        "agent-lost",
        "Agent connection lost",
        "the agent's connection ended before it answered".into(),
    )
}

/// The problem for an agent's failure report.
fn failure_error(failure: &HttpFailure) -> Refusal {
    use HttpFailureKind as K;
    use StatusCode as S;
    let detail = failure.detail.clone();
    let error = match failure.kind {
        K::NotConfigured | K::NotAllowed => problem(
            S::FORBIDDEN,
            "not-allowed",
            "Not allowed by the agent",
            detail,
        ),
        K::BadRequest => ApiError::BadRequest(detail),
        K::Busy => {
            return Refusal::Unavailable {
                slug: "agent-busy",
                title: "Agent busy",
                detail,
                retry_after: RETRY_BUSY_SECS,
            };
        }
        K::TooLarge => problem(
            S::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Request body too large",
            detail,
        ),
        K::Unreachable => problem(
            S::BAD_GATEWAY,
            "communication-failure",
            "Backend unreachable",
            detail,
        ),
        K::Timeout => problem(
            S::GATEWAY_TIMEOUT,
            "gateway-timeout",
            "Backend timeout",
            detail,
        ),
        K::Protocol => problem(S::BAD_GATEWAY, "bad-gateway", "Broken pass-through", detail),
    };
    error.into()
}

/// Why a pass-through request is answered by the relay itself.
enum Refusal {
    /// Any API error.
    Api(ApiError),
    /// 503 with `Retry-After`.
    Unavailable {
        slug: &'static str,
        title: &'static str,
        detail: String,
        retry_after: &'static str,
    },
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::Api(error) => error.into_response(),
            Self::Unavailable {
                slug,
                title,
                detail,
                retry_after,
            } => {
                let problem = Problem::new(StatusCode::SERVICE_UNAVAILABLE, slug, title, detail);
                let mut response = problem.into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static(retry_after));
                response
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_system_and_rest() {
        assert_eq!(
            split_path("/v1/systems/SIM/http/api/x%2Fy"),
            Some(("SIM".into(), "/api/x%2Fy".into()))
        );
        assert_eq!(
            split_path("/v1/systems/SIM/http"),
            Some(("SIM".into(), "/".into()))
        );
        assert_eq!(split_path("/v1/systems/SIM/httpx"), None);
        assert_eq!(split_path("/v1/calls/x"), None);
    }
}
