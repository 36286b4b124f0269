//! Discovery and operations: `GET /v1/systems`, `/healthz`, `/readyz` and
//! `/metrics` (OpenMetrics text, see [`crate::metrics`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;

use tokio_util::sync::CancellationToken;

use super::ApiError;
use super::render::rfc3339;
use super::request::Caller;
use crate::agents::AgentSession;
use crate::metrics::{StatusLabels, system_labels};
use crate::queue::ListedAgent;
use crate::state::RelayState;

/// The body of `GET /v1/systems`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Systems {
    #[schema(inline)]
    systems: Vec<SystemEntry>,
}

/// One system of `GET /v1/systems`. Members in name order, as the answer always
/// had them.
#[derive(Debug, Serialize, ToSchema)]
struct SystemEntry {
    /// Its agents: this relay's ([`AgentEntry`]), then those other relays
    /// published (the same members, read back from the store).
    #[schema(value_type = Vec<AgentEntry>)]
    agents: Vec<Value>,
    /// At least one agent serves it.
    online: bool,
    system: String,
}

/// An agent session serving a system, as `GET /v1/systems` lists it. Members in
/// name order, as the answer always had them; the newer ones are optional in the
/// schema, since a listing published by an older relay sharing the store lacks
/// them.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Agent)]
pub(crate) struct AgentEntry {
    agent_id: String,
    agent_version: String,
    /// When it connected.
    #[schema(value_type = String, format = DateTime)]
    connected_at: String,
    /// Calls the agent may take at once.
    credits: u32,
    /// The agent runs function calls and units of work for this system.
    #[schema(required = false)]
    functions: bool,
    /// The agent's function searches list only what its allowlist lets through
    /// (`GET /v1/systems/{system}/functions` needs it of every agent serving the
    /// system).
    #[schema(required = false)]
    function_search: bool,
    /// The agent forwards HTTP pass-through requests for this system.
    #[schema(required = false)]
    http: bool,
    /// Units sent to it and not yet answered.
    in_flight: u32,
    /// When the agent last sent a message to this relay (a heartbeat at least
    /// every `heartbeat_secs`, credits or an outcome); its welcome until then.
    #[schema(format = DateTime)]
    #[schema(required = false)]
    last_heard_at: String,
    /// See [`logon_schema`].
    #[schema(schema_with = logon_schema, required = false)]
    logon: Option<sapbridge_proto::LogonStatus>,
    /// The wire protocol version the agent speaks.
    #[schema(minimum = 1)]
    #[schema(required = false)]
    protocol: u32,
    /// Sessions the agent was welcomed to before this one since it started, on
    /// any relay replica (as the agent counts them; 0 from agents that do not).
    #[schema(required = false)]
    reconnects: u64,
    session_id: String,
    /// The agent speaks an older protocol version than the relay: upgrade it.
    #[schema(required = false)]
    upgrade_recommended: bool,
}

/// The schema of an agent's `logon` (`sapbridge_proto::LogonStatus`, or `null`).
fn logon_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .description(Some(
            "Whether the agent's backend logs on to this system: `blocked` after SAP \
             refused its password (calls then fail with LOGON_FAILURE without contacting \
             SAP, so the SAP user is never locked) until the password changes on the \
             agent's side. `null` when the backend does not log on (the simulator) or \
             the agent does not report it.",
        ))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .required("state")
                .property(
                    "state",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(["open", "blocked"])),
                )
                .property(
                    "reason",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .description(Some("SAP's answer to the refused logon (blocked only).")),
                )
                .property(
                    "since",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                            utoipa::openapi::KnownFormat::DateTime,
                        )))
                        .description(Some(
                            "When SAP refused it, on the agent's clock (blocked only).",
                        )),
                ),
        )
        .build()
        .into()
}

/// `GET /v1/systems`: the systems the key may call and their connected agents,
/// those of this relay first, then those other relays sharing its store
/// published (see [`publish_agents`]).
#[utoipa::path(
    get,
    path = "/v1/systems",
    operation_id = "listSystems",
    tag = "discovery",
    summary = "Systems the key may call and their connected agents",
    responses(
        (status = 200, description = "The systems.", body = Systems, example = json!({
            "systems": [{"system": "SIM", "online": true, "agents": [{
                "agent_id": "plant-1", "agent_version": "0.1.0", "session_id": "s_01J…",
                "credits": 8, "in_flight": 0, "connected_at": "2025-01-02T10:00:00.000Z"
            }]}]
        })),
        (status = 401, response = super::openapi::Unauthorized),
    ),
)]
pub(crate) async fn list_systems(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
) -> Json<Systems> {
    let remote = match state.queue.remote_agents().await {
        Ok(remote) => remote,
        Err(error) => {
            tracing::warn!(%error, "listing only this relay's agents");
            Vec::new()
        }
    };
    let systems = state
        .systems()
        .iter()
        .filter(|system| caller.covers(system))
        .map(|system| {
            let mut agents: Vec<Value> = state
                .agents
                .serving(system)
                .iter()
                .map(|a| agent_value(a, system))
                .collect();
            agents.extend(
                remote
                    .iter()
                    .filter_map(|a| a.listing.get(system.as_str()).cloned()),
            );
            SystemEntry {
                online: !agents.is_empty(),
                agents,
                system: system.clone(),
            }
        })
        .collect();
    Json(Systems { systems })
}

/// [`agent_entry`] as JSON (how the store keeps it for the other relays).
fn agent_value(a: &AgentSession, system: &str) -> Value {
    serde_json::to_value(agent_entry(a, system)).unwrap_or_default()
}

/// How `GET /v1/systems` lists session `a` under `system`.
fn agent_entry(a: &AgentSession, system: &str) -> AgentEntry {
    AgentEntry {
        agent_id: a.hello.agent_id.clone(),
        agent_version: a.hello.agent_version.clone(),
        protocol: a.hello.protocol,
        // Agents one protocol version behind are still served;
        // they should be upgraded (the relay logs it too).
        upgrade_recommended: a.hello.protocol < sapbridge_proto::PROTOCOL_VERSION,
        functions: a.hello.function_systems().iter().any(|s| s == system),
        http: a.hello.serves_http(system),
        // Whether its function searches list only what its allowlist lets
        // through (`GET /v1/systems/{system}/functions` needs it).
        function_search: a.hello.searches_functions(system),
        reconnects: a.hello.reconnects,
        session_id: a.session_id.clone(),
        credits: a.credits(),
        in_flight: a.in_flight(),
        connected_at: rfc3339(a.connected_at),
        // The agent's last message (heartbeats come every `heartbeat_secs`).
        last_heard_at: rfc3339(a.last_heard()),
        // `null` when the agent said nothing of it (its backend does not log on,
        // or the agent is older).
        logon: a.logon(system),
    }
}

/// How often a relay publishes its agent sessions for the others.
pub(crate) const PUBLISH_AGENTS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Publishes this relay's agent sessions, as [`list_systems`] lists them, to the
/// store every [`PUBLISH_AGENTS_EVERY`] until `stop`, so that every relay sharing
/// the store lists them too.
pub(crate) async fn publish_agents(state: Arc<RelayState>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(PUBLISH_AGENTS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let listed: Vec<ListedAgent> = state
            .agents
            .all()
            .iter()
            .map(|a| ListedAgent {
                systems: a.hello.systems.clone(),
                http_systems: a
                    .hello
                    .systems
                    .iter()
                    .filter(|system| a.hello.serves_http(system))
                    .cloned()
                    .collect(),
                listing: a
                    .hello
                    .systems
                    .iter()
                    .map(|system| (system.clone(), agent_value(a, system)))
                    .collect(),
            })
            .collect();
        if let Err(error) = state.queue.publish_agents(listed).await {
            tracing::warn!(%error, "could not publish this relay's agents");
        }
    }
}

/// The body of `/healthz` and `/readyz`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Status {
    #[schema(inline)]
    status: StatusWord,
}

/// `ok` (up), `ready` (the store answers) or `unavailable` (it does not).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StatusWord {
    /// The process is up.
    Ok,
    /// The queue store answers.
    Ready,
    /// The queue store does not answer.
    Unavailable,
}

impl Status {
    fn of(status: StatusWord) -> Json<Self> {
        Json(Self { status })
    }
}

/// `GET /healthz`: the process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    summary = "The process is up",
    security(()),
    responses((status = 200, description = "Up.", body = Status, example = json!({"status": "ok"}))),
)]
pub(crate) async fn healthz() -> Json<Status> {
    Status::of(StatusWord::Ok)
}

/// `GET /readyz`: 200 when the queue store answers, else 503.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    summary = "The queue store answers",
    security(()),
    responses(
        (status = 200, description = "Ready.", body = Status, example = json!({"status": "ready"})),
        (status = 503, description = "The queue store does not answer (body `{\"status\": \"unavailable\"}`), or the relay is shutting down (a problem, with `Retry-After`).",
            content((Status = "application/json"), (super::Problem = "application/problem+json"))),
    ),
)]
pub(crate) async fn readyz(State(state): State<Arc<RelayState>>) -> Result<Response, ApiError> {
    if state.shutdown.is_cancelled() {
        return Err(ApiError::ShuttingDown);
    }
    match state.queue.ping().await {
        Ok(()) => Ok(Status::of(StatusWord::Ready).into_response()),
        Err(error) => {
            tracing::warn!(%error, "queue store not ready");
            Ok((
                StatusCode::SERVICE_UNAVAILABLE,
                Status::of(StatusWord::Unavailable),
            )
                .into_response())
        }
    }
}

/// `GET /metrics`: the relay's counters and histograms (see [`crate::metrics`]),
/// with the gauges of the store and the agent registry read now, as OpenMetrics
/// text. With `metrics_require_key`, only an operator's API key may read it.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    description = "Counters and histograms of what this relay did since it started (calls by system, function and outcome; time queued and executing; leases, redeliveries, lapses, expiries; agent sessions and refusals; pass-through requests and bytes; idempotent replays; authentication failures) and gauges read at the scrape (stored calls by state, queue depth and oldest call per system, agents connected). With `metrics_require_key = true` in the relay's configuration it answers only to an API key with the operator scope.",
    security(()),
    responses(
        (status = 200, description = "OpenMetrics 1.0 text (which Prometheus reads).",
            body = String, content_type = "application/openmetrics-text"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 500, response = super::openapi::InternalError),
    ),
)]
pub(crate) async fn metrics(
    State(state): State<Arc<RelayState>>,
    headers: http::HeaderMap,
) -> Result<Response, ApiError> {
    if state.settings.metrics_require_key {
        let caller = Caller::from_headers(&state, &headers)?;
        if !caller.viewer().operator {
            return Err(ApiError::Forbidden(
                "/metrics needs an API key with the operator scope".into(),
            ));
        }
    }
    let stats = state.queue.stats().await?;
    let backlog = state.queue.queued_by_system().await?;
    let metrics = &state.metrics;
    for (label, value) in [
        ("queued", stats.queued),
        ("running", stats.leased),
        ("succeeded", stats.succeeded),
        ("failed", stats.failed),
        ("expired", stats.expired),
        ("cancelled", stats.cancelled),
    ] {
        metrics
            .calls_stored
            .get_or_create(&StatusLabels {
                status: label.to_owned(),
            })
            .set(gauge(value));
    }
    metrics.queue_depth.set(gauge(stats.queued));
    // Systems with nothing queued read 0 (not a stale value, not absent).
    let now = OffsetDateTime::now_utc();
    metrics.system_queue_depth.clear();
    metrics.system_oldest.clear();
    for system in &state.systems() {
        let found = backlog.iter().find(|b| &b.system == system);
        let labels = system_labels(system);
        metrics
            .system_queue_depth
            .get_or_create(&labels)
            .set(gauge(found.map_or(0, |b| b.queued)));
        let age = found.map_or(0.0, |b| (now - b.oldest).as_seconds_f64().max(0.0));
        metrics.system_oldest.get_or_create(&labels).set(age);
        metrics
            .system_agents
            .get_or_create(&labels)
            .set(gauge(state.agents.serving(system).len()));
    }
    metrics.agents_connected.set(gauge(state.agents.count()));
    metrics.store_full_seen(state.queue.full_refusals());
    metrics.catch_up(&metrics.audit_dropped, state.audit.dropped());
    state.limits.counters.export(metrics);
    let mut response = metrics.encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(response)
}

/// A count as a gauge's value.
fn gauge(count: impl TryInto<i64>) -> i64 {
    count.try_into().unwrap_or(i64::MAX)
}
