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
use serde_json::Value;

use super::actions::{answer, run, run_rendered, step_error};
use super::request::{Caller, fingerprint, function_name, path};
use super::{ApiError, Problem};
use crate::actions::metadata::search::{self, DEFAULT_LIMIT, MAX_LIMIT};
use crate::actions::{Answer, metadata};
use crate::state::RelayState;

/// The query of `GET /v1/systems/{system}/functions`, for the document (the
/// handler reads it member by member).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, reason = "documentation of the query the handler reads")]
struct SearchQuery {
    /// Name pattern: letters, digits, `_`, `/` and `*` as wildcard, up to 30
    /// characters once a pattern without `*` is wrapped in `*…*`.
    #[param(schema_with = search_schema, example = "BAPI_CUSTOMER_*")]
    search: Option<String>,
    /// The most function modules to answer.
    #[param(schema_with = limit_schema)]
    limit: Option<u32>,
}

/// `search`: at most [`search::MAX_PATTERN`] characters.
fn search_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .max_length(Some(search::MAX_PATTERN))
        .pattern(Some("^[A-Za-z0-9_/*]*$"))
        .build()
}

/// `limit`: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when left out.
fn limit_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Integer)
        .minimum(Some(1))
        .maximum(Some(MAX_LIMIT))
        .default(Some(DEFAULT_LIMIT.into()))
        .build()
}

/// `GET /v1/systems/{system}/functions`.
#[utoipa::path(
    get,
    path = "/v1/systems/{system}/functions",
    operation_id = "listFunctions",
    tag = "discovery",
    summary = "Function modules the agent lets through (for pick lists)",
    description = "One `RFC_FUNCTION_SEARCH` through the agent, which must allow it and answers only the function modules its own allowlist lets through (the on-premises side decides). `search` is a pattern with `*`; text without `*` is searched anywhere in the name; empty lists everything. Sorted by name, at most `limit`. Where an agent serving the system is too old to filter its answer, `501` (`/problems/agent-upgrade-needed`); without a connected agent, `503` (`/problems/no-agent`); a system without `RFC_FUNCTION_SEARCH`, `404` (`/problems/function-not-found`); an agent whose allowlist does not permit `RFC_FUNCTION_SEARCH`, `403`.",
    params(super::request::SystemPath, SearchQuery, super::request::QueueHeaders),
    responses(
        (status = 200, description = "The function modules found, sorted by name.", body = search::FunctionList),
        (status = 202, response = super::openapi::Accepted),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 429, response = super::openapi::TooManyRequests),
        (status = 500, response = super::openapi::InternalError),
        (status = 501, description = "An agent serving the system does not filter function searches to its allowlist (an older agent; `/problems/agent-upgrade-needed` names it): upgrade it.",
            body = super::Problem, content_type = "application/problem+json"),
        (status = 502, response = super::openapi::BadGateway),
        (status = 503, response = super::openapi::ServiceUnavailable),
        (status = 504, response = super::openapi::GatewayTimeout),
    ),
)]
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

/// The query of `GET /v1/systems/{system}/functions/{function}`, for the
/// document (the handler reads it member by member).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, reason = "documentation of the query the handler reads")]
struct InterfaceQuery {
    /// Answer a JSON schema of one side of the function instead of its interface.
    #[param(schema_with = side_schema)]
    schema: Option<String>,
}

/// The `schema` query parameter's values.
fn side_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(["parameters", "result"]))
        .build()
}

/// The answer of `GET /v1/systems/{system}/functions/{function}`: the interface,
/// or with `schema` the JSON schema of one side.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
enum InterfaceAnswer<'a> {
    /// The interface.
    Interface(metadata::InterfaceBody<'a>),
    /// The JSON schema.
    Schema(FunctionSchema),
}

/// `{"schema": …}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct FunctionSchema {
    /// A JSON schema (`type: object`, a property per parameter).
    #[schema(value_type = Object)]
    schema: Value,
}

/// `GET /v1/systems/{system}/functions/{function}`; with `?schema=parameters` or
/// `?schema=result`, `{"schema": …}`: the JSON schema of what a call sends or
/// SAP answers, for dynamic forms (`x-ms-dynamic-schema`). A `202`'s `Location`
/// answers the interface; the same request again answers from the cache.
#[utoipa::path(
    get,
    path = "/v1/systems/{system}/functions/{function}",
    operation_id = "getFunctionInterface",
    tag = "discovery",
    summary = "A function module's interface (for dynamic forms)",
    description = "`RFC_GET_FUNCTION_INTERFACE`, then `DDIF_FIELDINFO_GET` for the structures and table types it references (fields one level deep). Cached by the relay; `202` + `Location` when not done in time. An unknown function is `404` (`/problems/function-not-found`). With `schema=parameters` or `schema=result` the answer is `{\"schema\": …}` instead: a JSON schema of what a call sends (importing, changing, tables; required: the importing parameters that are not optional) or what SAP answers (exporting, changing, tables), structures as objects and tables as arrays of objects, `x-ms-summary` from SAP's texts, for dynamic forms (Power Automate's `x-ms-dynamic-schema`). A `202`'s `Location` answers the interface; the same request again answers from the cache.",
    params(
        super::request::FunctionPath,
        InterfaceQuery,
        super::request::QueueHeaders,
        super::request::CallbackHeader,
    ),
    responses(
        (status = 200, description = "The interface, or with `schema` the JSON schema.", body = inline(InterfaceAnswer)),
        super::openapi::QueuedCallAnswers,
    ),
)]
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
            let body = InterfaceAnswer::Schema(FunctionSchema { schema });
            (StatusCode::OK, Json(body)).into_response()
        }
        (None, Answer::Interface(interface)) => {
            let body = InterfaceAnswer::Interface(metadata::InterfaceBody::of(&interface));
            (StatusCode::OK, Json(body)).into_response()
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
