//! `ANY /v1/systems/{system}/http/{*path}`: the client's request, tunnelled to an
//! agent serving the system, which runs it against the system's HTTP service
//! (see `passthrough/`).
//!
//! Not a durable call: nothing is queued. The request goes to the connected agent
//! with the fewest open pass-through streams; with none connected the answer is 503
//! with `Retry-After`. The relay waits up to `http_timeout_secs` for the response
//! head (504 after), then streams the body to the client. An agent lost before the
//! head is 502; after it, the client's response is cut off (its length or chunked
//! framing shows it incomplete).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use sapbridge_proto::{HttpFailure, HttpFailureKind};
use tracing::Instrument;

use super::ApiError;
use super::error::Problem;
use super::request::{Caller, too_large};
use crate::agents::NoStream;
use crate::passthrough::{ForwardError, forward, split_path};
use crate::state::RelayState;

/// `Retry-After` when no agent serves the system.
const RETRY_NO_AGENT_SECS: &str = "5";
/// `Retry-After` when every agent is at its stream limit.
const RETRY_BUSY_SECS: &str = "1";

/// The handler of the pass-through routes (`crate::passthrough::routes`).
pub(crate) async fn tunnel(
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
        match run(&state, &caller, system, path, request).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        }
    }
    .instrument(span)
    .await
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
    if let Some(refused) = too_large(&request, settings.body_limit_bytes) {
        return Err(refused.into());
    }
    let max_streams = settings.max_in_flight_per_agent;
    let (tunnel, stream) = state
        .agents
        .open_stream(&system, max_streams)
        .map_err(|refused| no_stream(refused, &system, max_streams))?;
    forward(tunnel, stream, settings, system, path, request)
        .await
        .map_err(forward_error)
}

/// The answer when no stream could be opened for `system`.
fn no_stream(refused: NoStream, system: &str, limit: u32) -> Refusal {
    match refused {
        NoStream::NotOffered => problem(
            StatusCode::FORBIDDEN,
            "not-allowed",
            "Not allowed by the agent",
            format!(
                "no agent serving {system} offers HTTP pass-through (the agents have no \
                 [systems.http] block for it)"
            ),
        )
        .into(),
        NoStream::NoAgent => Refusal::Unavailable {
            slug: "no-agent",
            title: "No agent connected",
            detail: format!("no agent serving {system} is connected; retry later"),
            retry_after: RETRY_NO_AGENT_SECS,
        },
        NoStream::Busy => Refusal::Unavailable {
            slug: "agent-busy",
            title: "Agents busy",
            detail: format!(
                "every agent serving {system} carries its maximum of {limit} pass-through requests"
            ),
            retry_after: RETRY_BUSY_SECS,
        },
    }
}

/// The answer when a forwarded request got no response.
fn forward_error(error: ForwardError) -> Refusal {
    match error {
        ForwardError::TooLarge(limit) => ApiError::PayloadTooLarge(limit).into(),
        ForwardError::BadRequest(detail) => ApiError::BadRequest(detail).into(),
        ForwardError::AgentLost => problem(
            StatusCode::BAD_GATEWAY,
            "agent-lost",
            "Agent connection lost",
            "the agent's connection ended before it answered".into(),
        )
        .into(),
        ForwardError::Timeout(timeout) => problem(
            StatusCode::GATEWAY_TIMEOUT,
            "gateway-timeout",
            "Backend timeout",
            format!("no response within {} s", timeout.as_secs()),
        )
        .into(),
        ForwardError::BadStatus(status) => problem(
            StatusCode::BAD_GATEWAY,
            "bad-gateway",
            "Invalid backend response",
            format!("the backend answered with status {status}"),
        )
        .into(),
        ForwardError::Failed(failure) => failure_error(&failure),
    }
}

fn problem(
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: String,
) -> ApiError {
    ApiError::Call(Box::new(Problem::new(status, slug, title, detail)))
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
