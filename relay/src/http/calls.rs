//! Calls: `POST /v1/systems/{system}/functions/{function}`, `GET /v1/calls/{id}`
//! and `DELETE /v1/calls/{id}`, plus [`submit`], which stores a request's unit of
//! work and answers with the call once it is final or the request's wait is over
//! (shared with transactions).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use sapbridge_proto::{CommitPolicy, FunctionCall};
use serde_json::json;

use super::ApiError;
use super::actions::step_error;
use super::render::{answer, rfc3339};
use super::request::{
    Caller, UnitRequest, body_bytes, fingerprint, function_name, json_object, path, submission,
};
use crate::actions::{Chain, ChainError, Progress, metadata};
use crate::calls::CallError;
use crate::queue::CallKind;
use crate::state::RelayState;

/// `POST /v1/systems/{system}/functions/{function}`.
pub(crate) async fn call_function(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    route: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (system, function) = path(route)?;
    caller.check_system(&state, &system)?;
    let function = function_name(&function)?;
    let body = body_bytes(body, &state.settings)?;
    let parameters = json_object(&body)?;
    let agents = || state.agents.versions_serving(&system);
    metadata::precheck(&state.metadata, &system, &function, &parameters, agents)
        .map_err(step_error)?;
    let unit = UnitRequest {
        fingerprint: fingerprint(
            &headers,
            &[b"function", system.as_bytes(), function.as_bytes(), &body],
        ),
        system,
        kind: CallKind::Function,
        calls: vec![FunctionCall {
            function,
            parameters,
        }],
        commit: CommitPolicy::None,
    };
    submit(&state, &caller, &headers, unit).await
}

/// Stores a unit of work and holds the request until its result or the requested
/// wait, then answers with the call in its current state.
///
/// A request whose `Idempotency-Key` names a call already stored (same key, same
/// body) joins that call: it waits for it as the first request did (`Prefer`), and
/// is answered with its outcome, or `202` with its `Location` while it runs.
///
/// # Errors
/// 400 for bad headers, 422 for an idempotency key reused with another request,
/// 500 for store failures.
pub(crate) async fn submit(
    state: &RelayState,
    caller: &Caller,
    headers: &HeaderMap,
    unit: UnitRequest,
) -> Result<Response, ApiError> {
    let (submission, wait) = submission(state, caller, headers, unit)?;
    let record = state.calls.submit(submission, wait).await?;
    Ok(answer(&record))
}

/// `GET /v1/calls/{id}`: 202 while queued or running, then the final answer.
pub(crate) async fn get_call(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let call_id = path(id)?;
    let record = state.calls.find(caller.viewer(), &call_id).await?;
    if matches!(record.kind, CallKind::Action(_)) {
        return super::actions::poll(&state, record).await;
    }
    Ok(answer(&record))
}

/// A call's answer as `GET /v1/calls/{id}` gives it, for its webhooks.
#[derive(Debug)]
pub(crate) enum Answered {
    /// The final answer: its HTTP status, `Location` and JSON body.
    Final {
        /// The status.
        status: u16,
        /// The `Location` header, if any.
        location: Option<String>,
        /// The body (`null` if it was not JSON).
        body: serde_json::Value,
    },
    /// Still running: the call (the chain's current step for an action) to wait for.
    Running(String),
    /// The call is not stored (purged).
    Gone,
}

/// The answer of call `call_id` now, as a poll of it would get it (an action's
/// chain is walked on).
///
/// # Errors
/// The store's failure, in words.
pub(crate) async fn answer_of(state: &RelayState, call_id: &str) -> Result<Answered, String> {
    let record = match state.queue.get(call_id).await {
        Ok(Some(record)) => record,
        Ok(None) => return Ok(Answered::Gone),
        Err(error) => return Err(error.to_string()),
    };
    let response = if matches!(record.kind, CallKind::Action(_)) {
        let agents = |system: &str| state.agents.versions_serving(system);
        let chain = Chain {
            calls: &state.calls,
            metadata: &state.metadata,
            agents: &agents,
        };
        match chain.poll(record).await {
            Ok(Progress::Running { current, .. }) => return Ok(Answered::Running(current.id)),
            Ok(Progress::Done(done)) => super::actions::answer(done),
            Err(ChainError::Call(CallError::Store(error))) => return Err(error.to_string()),
            Err(error) => ApiError::from(error).into_response(),
        }
    } else if !record.state.is_final() {
        return Ok(Answered::Running(record.id));
    } else {
        answer(&record)
    };
    let status = response.status().as_u16();
    // Absolute where the relay knows its public address (`public_url`).
    let base = state
        .settings
        .public
        .base(&HeaderMap::new(), None)
        .unwrap_or_default();
    let location = response
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|path| match path.starts_with('/') {
            true => format!("{base}{path}"),
            false => path.to_owned(),
        });
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .map_err(|e| format!("rendering the answer: {e}"))?;
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Ok(Answered::Final {
        status,
        location,
        body,
    })
}

/// `DELETE /v1/calls/{id}`: cancels a queued call (200); 409 once leased or final.
pub(crate) async fn cancel_call(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let call_id = path(id)?;
    let record = state.calls.cancel(caller.viewer(), &call_id).await?;
    let body = json!({
        "id": record.id,
        "status": record.state.as_str(),
        "system": record.system,
        "submitted_at": rfc3339(record.submitted_at),
        "completed_at": record.completed_at.map(rfc3339),
    });
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}
