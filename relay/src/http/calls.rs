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
use crate::actions::metadata;
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
