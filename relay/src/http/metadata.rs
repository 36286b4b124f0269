//! `GET /v1/systems/{system}/functions/{function}`: the function's interface for
//! dynamic forms (see `actions/metadata/`), answered from the metadata cache when
//! it holds the interface, else fetched from SAP by the action.
//!
//! `GET /v1/systems/{system}/functions?search=PATTERN&limit=N`: the function
//! modules the agent's allowlist lets through, for pick lists (see
//! `actions/metadata/search.rs`). Only agents that filter their answers to their
//! allowlist are asked: where an agent serving the system does not say so in its
//! hello (an older agent), the answer is `501` naming the agents to upgrade.

use std::sync::Arc;

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::actions::{answer, run, run_rendered, step_error};
use super::request::{Caller, fingerprint, function_name, path};
use super::{ApiError, Problem};
use crate::actions::metadata::search::{self, DEFAULT_LIMIT, MAX_LIMIT};
use crate::actions::{Answer, metadata};
use crate::state::RelayState;

/// `GET /v1/systems/{system}/functions`.
pub(crate) async fn list_functions(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    route: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(system) = route.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    caller.check_system(&state, &system)?;
    let Query(query) = query.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let mut text = String::new();
    let mut limit = DEFAULT_LIMIT;
    for (key, value) in query {
        match key.as_str() {
            "search" => text = value,
            "limit" => {
                limit = value
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "limit: {value:?} is not a number from 1 to {MAX_LIMIT}"
                        ))
                    })?;
            }
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "{key}: unknown query parameter (search, limit)"
                )));
            }
        }
    }
    let pattern = search::pattern(&text).map_err(step_error)?;
    check_search_agents(&state, &system).await?;
    let fingerprint = fingerprint(
        &headers,
        &[
            b"function.search",
            system.as_bytes(),
            pattern.as_bytes(),
            &limit.to_be_bytes(),
        ],
    );
    let unit = search::search(pattern, limit);
    run(&state, &caller, &headers, system, unit, fingerprint).await
}

/// Refuses a function search unless every agent serving `system`'s functions, on
/// this relay or on another sharing its store, filters its answers to its
/// allowlist. An agent that connects between this check and the claim of the
/// search is not covered; it could only list names its allowlist would refuse.
async fn check_search_agents(state: &RelayState, system: &str) -> Result<(), ApiError> {
    let mut agents: Vec<(String, bool)> = state
        .agents
        .serving(system)
        .iter()
        .filter(|a| a.hello.function_systems().iter().any(|s| s == system))
        .map(|a| (a.hello.agent_id.clone(), a.hello.searches_functions(system)))
        .collect();
    match state.queue.remote_agents().await {
        Ok(remote) => agents.extend(
            remote
                .iter()
                .filter_map(|a| a.listing.get(system))
                .filter(|entry| entry["functions"] == Value::Bool(true))
                .map(|entry| {
                    let id = entry["agent_id"].as_str().unwrap_or_default().to_owned();
                    (id, entry["function_search"] == Value::Bool(true))
                }),
        ),
        Err(error) => tracing::warn!(%error, "checking only this relay's agents"),
    }
    if agents.is_empty() {
        return Err(ApiError::Call(Box::new(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no-agent",
            "No agent serves the system",
            format!("no agent serving {system} is connected, so its functions cannot be listed"),
        ))));
    }
    let mut old: Vec<String> = agents
        .into_iter()
        .filter(|(_, filters)| !filters)
        .map(|(id, _)| id)
        .collect();
    if old.is_empty() {
        return Ok(());
    }
    old.sort();
    old.dedup();
    Err(ApiError::Call(Box::new(Problem::new(
        StatusCode::NOT_IMPLEMENTED,
        "agent-upgrade-needed",
        "Agent too old to list functions",
        format!(
            "the agents {} serving {system} do not filter function searches to their \
             allowlist; upgrade them to list functions",
            old.join(", ")
        ),
    ))))
}

/// `GET /v1/systems/{system}/functions/{function}`; with `?schema=parameters` or
/// `?schema=result`, `{"schema": …}`: the JSON schema of what a call sends or
/// SAP answers, for dynamic forms (`x-ms-dynamic-schema`). A `202`'s `Location`
/// answers the interface; the same request again answers from the cache.
pub(crate) async fn get_interface(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    route: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (system, function) = path(route)?;
    caller.check_system(&state, &system)?;
    let function = function_name(&function)?;
    let Query(query) = query.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let mut side = None;
    for (key, value) in query {
        match (key.as_str(), value.as_str()) {
            ("schema", "parameters") => side = Some(metadata::SchemaSide::Parameters),
            ("schema", "result") => side = Some(metadata::SchemaSide::Result),
            ("schema", other) => {
                return Err(ApiError::BadRequest(format!(
                    "schema: {other:?} is neither parameters nor result"
                )));
            }
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "{key}: unknown query parameter (schema)"
                )));
            }
        }
    }
    let render = move |done: Answer| match (side, done) {
        (Some(side), Answer::Interface(interface)) => {
            let schema = metadata::to_schema(&interface, side);
            (StatusCode::OK, Json(json!({"schema": schema}))).into_response()
        }
        (_, done) => answer(done),
    };
    let agents = || state.agents.versions_serving(&system);
    if let Some(cached) = state.metadata.get(&system, &function, agents) {
        return Ok(render(Answer::Interface(cached)));
    }
    let fingerprint = fingerprint(
        &headers,
        &[
            b"function.interface",
            system.as_bytes(),
            function.as_bytes(),
        ],
    );
    let unit = metadata::interface(function);
    run_rendered(&state, &caller, &headers, system, unit, fingerprint, render).await
}
