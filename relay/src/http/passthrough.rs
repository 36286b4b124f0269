//! `ANY /v1/systems/{system}/http/{*path}`: the client's request, tunnelled to an
//! agent serving the system, which runs it against the system's HTTP service
//! (see `passthrough/`).
//!
//! Not a durable call: nothing is queued. The request goes to the connected agent
//! with the fewest open pass-through streams. With none here that forwards HTTP
//! for the system (or all of them at their stream limit), it goes to another
//! relay replica that has one (see `passthrough/peer.rs`); with none anywhere the
//! answer is 503 with `Retry-After` (403 when agents are connected and none
//! offers pass-through). The relay waits up to `http_timeout_secs` for the
//! response head (504 after), then streams the body to the client. An agent lost before the
//! head is 502; after it, the client's response is cut off (its length or chunked
//! framing shows it incomplete).

use std::sync::Arc;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use prometheus_client::metrics::counter::Counter;
use sapbridge_proto::{HttpFailure, HttpFailureKind};
use tracing::Instrument;

use super::ApiError;
use super::error::Problem;
use super::request::{Caller, too_large};
use crate::agents::NoStream;
use crate::passthrough::{FORWARDED_HEADER, ForwardError, PeerError, Refused, forward, split_path};
use crate::state::RelayState;

/// `Retry-After` when no agent serves the system.
const RETRY_NO_AGENT_SECS: &str = "5";
/// `Retry-After` when every agent is at its stream limit.
const RETRY_BUSY_SECS: &str = "1";

/// The handler of the pass-through routes (`crate::passthrough::routes`).
pub(crate) async fn tunnel(State(state): State<Arc<RelayState>>, request: Request) -> Response {
    let Some((system, path)) = split_path(request.uri().path()) else {
        return ApiError::RouteNotFound.into_response();
    };
    let hop = request.headers().contains_key(FORWARDED_HEADER);
    let span = tracing::info_span!(
        "passthrough",
        system = %system,
        method = %request.method(),
        forwarded = hop,
        stream_id = tracing::field::Empty,
    );
    async move {
        let caller = match authenticate(&state, &request) {
            Ok(caller) => {
                if let Some(slot) = request.extensions().get::<super::audit::KeySlot>() {
                    slot.set(&caller.name);
                }
                caller
            }
            Err(error) => return error.into_response(),
        };
        match run(&state, &caller, hop, system, path, request).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        }
    }
    .instrument(span)
    .await
}

/// The caller: from the API key, or, for a request another replica forwarded,
/// from its signed `Sapbridge-Forwarded` header (which then must check: a client
/// cannot pass the API key check by sending one).
fn authenticate(state: &RelayState, request: &Request) -> Result<Caller, ApiError> {
    let Some(header) = request.headers().get(FORWARDED_HEADER) else {
        return Caller::from_headers(state, request.headers());
    };
    let target = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.uri().path(), |pq| pq.as_str());
    state
        .peers
        .signer()
        .verify(
            header.as_bytes(),
            state.queue.replica_id(),
            request.method().as_str(),
            target,
        )
        .map(Caller::forwarded)
        .map_err(|refused| {
            tracing::warn!(reason = %refused, "forwarded pass-through request refused");
            forwarded_refused(&refused)
        })
}

/// The 401 (or 503) for a forwarded request whose signature does not check.
fn forwarded_refused(refused: &Refused) -> ApiError {
    let status = match refused {
        Refused::Busy => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::UNAUTHORIZED,
    };
    problem(
        status,
        "forwarded-request-refused",
        "Forwarded request refused",
        refused.to_string(),
    )
}

async fn run(
    state: &RelayState,
    caller: &Caller,
    hop: bool,
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
    let refused = match state.agents.open_stream(&system, max_streams) {
        Ok((tunnel, stream)) => {
            let metrics = &state.metrics;
            let (parts, body) = request.into_parts();
            let sent = counted(body, metrics.passthrough_bytes_counter(&system, "request"));
            let request = Request::from_parts(parts, sent);
            let answered = forward(tunnel, stream, settings, system.clone(), path, request).await;
            let status = answered.as_ref().ok().map(|r| r.status().as_u16());
            metrics.passthrough_answered(&system, status);
            let response = answered.map_err(forward_error)?;
            let received = metrics.passthrough_bytes_counter(&system, "response");
            return Ok(response.map(|body| counted(body, received)));
        }
        Err(refused) => refused,
    };
    // A forwarded request is served here or not at all: never a second hop.
    if hop {
        return Err(no_stream(refused, &system, max_streams));
    }
    elsewhere(state, caller, refused, system, request).await
}

/// No agent of this replica can take the request (none forwards HTTP for
/// `system`, or all are at their stream limit): it goes to a replica that has
/// such an agent, or is answered as a lone relay would answer it.
async fn elsewhere(
    state: &RelayState,
    caller: &Caller,
    refused: NoStream,
    system: String,
    request: Request,
) -> Result<Response, Refusal> {
    let settings = &state.settings.passthrough;
    let max_streams = settings.max_in_flight_per_agent;
    let peers = match state.peers.candidates(&*state.queue, &system).await {
        Ok(peers) => peers,
        Err(error) => {
            tracing::warn!(%error, "could not look for other replicas' agents");
            Vec::new()
        }
    };
    if peers.is_empty() {
        return Err(lone(state, refused, &system, max_streams).await);
    }
    let (Some(me), true) = (
        state.queue.replica_id(),
        state.peers.signer().is_clustered(),
    ) else {
        return Err(Refusal::Unavailable {
            slug: "no-agent",
            title: "No agent connected",
            detail: format!(
                "the agents serving {system} are connected to other relay replicas, and this \
                 one forwards no pass-through to them (no [cluster] secret configured)"
            ),
            retry_after: RETRY_NO_AGENT_SECS,
        });
    };
    let (parts, body) = request.into_parts();
    let mut body = (!body.is_end_stream()).then_some(body);
    let mut last = None;
    for peer in &peers {
        let sent = body.take();
        let had_body = sent.is_some();
        match state
            .peers
            .forward(me, peer, caller.to_forward(), &parts, sent, settings)
            .await
        {
            Ok(response) => return Ok(response),
            Err(PeerError::Unreachable(error)) => {
                tracing::warn!(replica = %peer.id, address = %peer.address, %error,
                    "another relay replica is unreachable");
                state.peers.mark_down(peer);
                last = Some(PeerError::Unreachable(error));
                // A body once handed over cannot be sent again.
                if had_body {
                    break;
                }
            }
            Err(error) => return Err(peer_error(error, &system)),
        }
    }
    Err(peer_error(
        last.unwrap_or(PeerError::Unreachable(String::new())),
        &system,
    ))
}

/// The answer when no replica can take the request: what a lone relay answers,
/// counting the agents connected to the other replicas.
async fn lone(state: &RelayState, refused: NoStream, system: &str, limit: u32) -> Refusal {
    if refused != NoStream::NoAgent {
        return no_stream(refused, system, limit);
    }
    let remote = state.queue.remote_agents().await.unwrap_or_else(|error| {
        tracing::warn!(%error, "could not list other replicas' agents");
        Vec::new()
    });
    let serving: Vec<_> = remote
        .iter()
        .filter(|a| a.systems.iter().any(|s| s == system))
        .collect();
    if serving.is_empty() {
        return no_stream(NoStream::NoAgent, system, limit);
    }
    if serving
        .iter()
        .any(|a| a.http_systems.iter().any(|s| s == system))
    {
        return Refusal::Unavailable {
            slug: "no-agent",
            title: "No agent connected",
            detail: format!(
                "the agents serving {system} with pass-through are connected to relay replicas \
                 that take no forwarded requests (no [cluster] advertise_url); retry later"
            ),
            retry_after: RETRY_NO_AGENT_SECS,
        };
    }
    no_stream(NoStream::NotOffered, system, limit)
}

/// The answer when a peer replica gave no response.
fn peer_error(error: PeerError, system: &str) -> Refusal {
    match error {
        PeerError::Unreachable(_) => Refusal::Unavailable {
            slug: "replica-unavailable",
            title: "Relay replica unavailable",
            detail: format!(
                "the agents serving {system} are connected to another relay replica, which \
                 did not answer; retry later"
            ),
            retry_after: RETRY_BUSY_SECS,
        },
        PeerError::Lost(error) => {
            tracing::warn!(%error, "another relay replica dropped a forwarded request");
            problem(
                StatusCode::BAD_GATEWAY,
                "replica-lost",
                "Relay replica connection lost",
                "the relay replica carrying the request ended its connection before it answered"
                    .into(),
            )
            .into()
        }
        PeerError::Timeout(timeout) => forward_error(ForwardError::Timeout(timeout)),
        PeerError::TooLarge(limit) => ApiError::PayloadTooLarge(limit).into(),
        PeerError::BadRequest(detail) => ApiError::BadRequest(detail).into(),
    }
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

/// `body`, adding the bytes of each of its data frames to `counter` as they pass
/// (its size hint and end kept, so a response keeps its framing).
fn counted(body: Body, counter: Counter) -> Body {
    Body::new(Counted {
        inner: body,
        counter,
    })
}

/// A body whose data bytes are counted as they pass.
struct Counted {
    inner: Body,
    counter: Counter,
}

impl HttpBody for Counted {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.counter
                .inc_by(u64::try_from(data.len()).unwrap_or(u64::MAX));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The pass-through operations of the OpenAPI document: one handler serves every
/// method on three paths, so they are written here from one description rather
/// than by `#[utoipa::path]` (which gives every method of a path one operation
/// id). Bodies are the backend's own, so no schema describes them.
pub(crate) struct PassthroughDoc;

/// The paths [`tunnel`] serves (as `crate::passthrough::routes` routes them).
pub(crate) const PASSTHROUGH_PATHS: [&str; 3] = [
    "/v1/systems/{system}/http",
    "/v1/systems/{system}/http/",
    "/v1/systems/{system}/http/{path}",
];

const PASSTHROUGH_DESCRIPTION: &str = "HTTP pass-through: any method is forwarded by an agent \
    serving the system to the system's configured HTTP base URL (SAP Gateway OData, ICF \
    services) — method, path, query, headers (minus hop-by-hop headers and the client's \
    sapbridge credentials) and body, streamed both ways. Not a queued call: no `Prefer`, no \
    `202`. The agent allows only the path prefixes of its `allow_paths` (`403` otherwise); no \
    agent connected → `503` with `Retry-After`; with several relay replicas, a replica none of \
    whose agents serves the system forwards the request to a replica that has one (`503` \
    `replica-unavailable` with `Retry-After` when that replica does not answer); no response \
    head within `http_timeout_secs` → `504`.";

impl utoipa::Modify for PassthroughDoc {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{
            HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItemBuilder,
        };
        use utoipa::openapi::request_body::RequestBodyBuilder;
        use utoipa::openapi::{ContentBuilder, Ref, Required, ResponseBuilder, schema};

        let string = || schema::ObjectBuilder::new().schema_type(schema::Type::String);
        let system = ParameterBuilder::new()
            .name("system")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some("The SAP system's name as its agents serve it."))
            .schema(Some(string()))
            .example(Some(serde_json::json!("SIM")))
            .build();
        let path = ParameterBuilder::new()
            .name("path")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some(
                "The path below the system's HTTP base URL (may hold `/`).",
            ))
            .schema(Some(string()))
            .example(Some(serde_json::json!(
                "sap/opu/odata/sap/API_BUSINESS_PARTNER/A_BusinessPartner"
            )))
            .build();
        // (method, its name, whether it carries a body, its operation id's suffix)
        let methods = [
            (HttpMethod::Get, "GET", false, "Get"),
            (HttpMethod::Put, "PUT", true, "Put"),
            (HttpMethod::Post, "POST", true, "Post"),
            (HttpMethod::Patch, "PATCH", true, "Patch"),
            (HttpMethod::Delete, "DELETE", true, "Delete"),
            (HttpMethod::Head, "HEAD", false, "Head"),
            (HttpMethod::Options, "OPTIONS", false, "Options"),
        ];
        let body = RequestBodyBuilder::new()
            .description(Some(
                "Streamed to the backend as is (at most `http_body_limit_bytes`).",
            ))
            .content(
                "*/*",
                ContentBuilder::new()
                    .schema(Some(
                        schema::ObjectBuilder::new().schema_type(schema::SchemaType::AnyValue),
                    ))
                    .build(),
            )
            .required(Some(Required::False))
            .build();
        for route in PASSTHROUGH_PATHS {
            let below = route.ends_with("{path}");
            let (summary, parameters) = if below {
                ("HTTP pass-through", vec![system.clone(), path.clone()])
            } else {
                (
                    "HTTP pass-through (the base URL itself)",
                    vec![system.clone()],
                )
            };
            let mut item = PathItemBuilder::new()
                .summary(Some(summary))
                .description(Some(PASSTHROUGH_DESCRIPTION))
                .parameters(Some(parameters));
            for (method, name, carries_body, id) in &methods {
                let mut operation = OperationBuilder::new()
                    // One id per method, on the path with `{path}` only (ids are
                    // unique in a document; the base URL's paths share them).
                    .operation_id(below.then(|| format!("passthrough{id}")))
                    .request_body(carries_body.then(|| body.clone()))
                    .tag("pass-through")
                    .summary(Some(format!(
                        "{name} through the agent to the system's HTTP service"
                    )))
                    .response(
                        "default",
                        ResponseBuilder::new().description(
                            "The backend's answer, streamed (status, headers and body as the \
                             backend sent them).",
                        ),
                    );
                for (status, response) in [
                    ("401", "Unauthorized"),
                    ("403", "Forbidden"),
                    ("404", "NotFound"),
                    ("413", "PayloadTooLarge"),
                    ("429", "TooManyRequests"),
                    ("502", "BadGateway"),
                    ("503", "ServiceUnavailable"),
                    ("504", "GatewayTimeout"),
                ] {
                    operation = operation.response(status, Ref::from_response_name(response));
                }
                item = item.operation(method.clone(), operation);
            }
            openapi.paths.paths.insert(route.to_owned(), item.build());
        }
    }
}
