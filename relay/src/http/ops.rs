//! Discovery and operations: `GET /v1/systems`, `/healthz`, `/readyz` and
//! `/metrics` (Prometheus text format, written by hand).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use tokio_util::sync::CancellationToken;

use super::ApiError;
use super::render::rfc3339;
use super::request::Caller;
use crate::agents::AgentSession;
use crate::queue::ListedAgent;
use crate::state::RelayState;

/// `GET /v1/systems`: the systems the key may call and their connected agents,
/// those of this relay first, then those other relays sharing its store
/// published (see [`publish_agents`]).
pub(crate) async fn list_systems(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
) -> Json<Value> {
    let remote = match state.queue.remote_agents().await {
        Ok(remote) => remote,
        Err(error) => {
            tracing::warn!(%error, "listing only this relay's agents");
            Vec::new()
        }
    };
    let systems: Vec<Value> = state
        .systems
        .iter()
        .filter(|system| caller.covers(system))
        .map(|system| {
            let mut agents: Vec<Value> = state
                .agents
                .serving(system)
                .iter()
                .map(|a| agent_entry(a, system))
                .collect();
            agents.extend(
                remote
                    .iter()
                    .filter_map(|a| a.listing.get(system.as_str()).cloned()),
            );
            json!({
                "system": system,
                "online": !agents.is_empty(),
                "agents": agents,
            })
        })
        .collect();
    Json(json!({ "systems": systems }))
}

/// How `GET /v1/systems` lists session `a` under `system`.
fn agent_entry(a: &AgentSession, system: &str) -> Value {
    json!({
        "agent_id": a.hello.agent_id,
        "agent_version": a.hello.agent_version,
        "protocol": a.hello.protocol,
        // Agents one protocol version behind are still served;
        // they should be upgraded (the relay logs it too).
        "upgrade_recommended": a.hello.protocol < sapbridge_proto::PROTOCOL_VERSION,
        "functions": a.hello.function_systems().iter().any(|s| s == system),
        "http": a.hello.serves_http(system),
        "session_id": a.session_id,
        "credits": a.credits(),
        "in_flight": a.in_flight(),
        "connected_at": rfc3339(a.connected_at),
        // `null` when the agent said nothing of it (its backend does not log on,
        // or the agent is older).
        "logon": a.logon(system),
    })
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
                    .map(|system| (system.clone(), agent_entry(a, system)))
                    .collect(),
            })
            .collect();
        if let Err(error) = state.queue.publish_agents(listed).await {
            tracing::warn!(%error, "could not publish this relay's agents");
        }
    }
}

/// `GET /healthz`: the process is up.
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when the queue store answers, else 503.
pub(crate) async fn readyz(State(state): State<Arc<RelayState>>) -> Result<Response, ApiError> {
    if state.shutdown.is_cancelled() {
        return Err(ApiError::ShuttingDown);
    }
    match state.queue.ping().await {
        Ok(()) => Ok(Json(json!({"status": "ready"})).into_response()),
        Err(error) => {
            tracing::warn!(%error, "queue store not ready");
            Ok((
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable"})),
            )
                .into_response())
        }
    }
}

/// `GET /metrics`: calls by state, queue depth and connected agents.
pub(crate) async fn metrics(State(state): State<Arc<RelayState>>) -> Result<Response, ApiError> {
    let stats = state.queue.stats().await?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP sapbridge_calls Stored calls by state (final states until purged).\n\
         # TYPE sapbridge_calls gauge"
    );
    for (label, value) in [
        ("queued", stats.queued),
        ("running", stats.leased),
        ("succeeded", stats.succeeded),
        ("failed", stats.failed),
        ("expired", stats.expired),
        ("cancelled", stats.cancelled),
    ] {
        let _ = writeln!(out, "sapbridge_calls{{status=\"{label}\"}} {value}");
    }
    let _ = writeln!(
        out,
        "# HELP sapbridge_queue_depth Calls waiting for an agent.\n\
         # TYPE sapbridge_queue_depth gauge\n\
         sapbridge_queue_depth {}",
        stats.queued
    );
    let _ = writeln!(
        out,
        "# HELP sapbridge_agents_connected Agent sessions connected to this relay.\n\
         # TYPE sapbridge_agents_connected gauge\n\
         sapbridge_agents_connected {}",
        state.agents.count()
    );
    let _ = writeln!(
        out,
        "# HELP sapbridge_system_agents Agent sessions serving a system.\n\
         # TYPE sapbridge_system_agents gauge"
    );
    for system in &state.systems {
        let serving = state.agents.serving(system);
        let _ = writeln!(
            out,
            "sapbridge_system_agents{{system=\"{}\"}} {}",
            escape_label(system),
            serving.len()
        );
    }
    let _ = writeln!(
        out,
        "# HELP sapbridge_agent_outcomes_refused_total Outcomes refused because the \
         reporting agent session did not hold the call's lease for that attempt.\n\
         # TYPE sapbridge_agent_outcomes_refused_total counter\n\
         sapbridge_agent_outcomes_refused_total {}",
        state.sessions.refused_outcomes()
    );
    let _ = writeln!(
        out,
        "# HELP sapbridge_store_full_total Changes the queue store refused for want of \
         space (a full disk, or [queue] max_size_mib).\n\
         # TYPE sapbridge_store_full_total counter\n\
         sapbridge_store_full_total {}",
        state.queue.full_refusals()
    );
    super::audit::write_metrics(&state, &mut out);
    state.limits.counters.write(&mut out);
    let mut response = out.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

/// Escapes a Prometheus label value.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
