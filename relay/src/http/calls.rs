//! Calls: `POST /v1/systems/{system}/functions/{function}`, `GET /v1/calls/{id}`
//! and `DELETE /v1/calls/{id}`, plus [`submit`], which turns a request for a unit
//! of work into a [`Submission`] and answers with the call once it is final or the
//! request's wait is over (shared with transactions).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use sapbridge_proto::{CommitPolicy, FunctionCall};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::ApiError;
use super::actions::step_error;
use super::render::{answer, rfc3339};
use super::request::{
    Caller, IDEMPOTENCY_HEADER, body_bytes, function_name, idempotency_key, json_object, queue_ttl,
    requested_wait,
};
use crate::actions::metadata;
use crate::calls::Submission;
use crate::queue::{CallKind, IdempotencyKey};
use crate::state::RelayState;

/// Maps a path rejection to a problem.
pub(crate) fn path<T>(path: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    path.map(|Path(p)| p)
        .map_err(|r| ApiError::BadRequest(r.body_text()))
}

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

/// A unit of work as a request asks for it.
pub(crate) struct UnitRequest {
    /// The system.
    pub(crate) system: String,
    /// Function call or transaction.
    pub(crate) kind: CallKind,
    /// The calls.
    pub(crate) calls: Vec<FunctionCall>,
    /// What happens after them.
    pub(crate) commit: CommitPolicy,
    /// What makes two requests "the same" for `Idempotency-Key` (see
    /// [`fingerprint`]); `None` for a request without that header.
    pub(crate) fingerprint: Option<String>,
}

/// The hex SHA-256 over length-prefixed parts of a request, for a request with an
/// `Idempotency-Key` (only those are compared); `None` for any other.
pub(crate) fn fingerprint(headers: &HeaderMap, parts: &[&[u8]]) -> Option<String> {
    if !headers.contains_key(IDEMPOTENCY_HEADER) {
        return None;
    }
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    Some(hex::encode(hash.finalize()))
}

/// What a request for `unit` asks for: the submission (its queue TTL and
/// idempotency key from the headers, owned by the caller) and how long to wait for
/// the call's end (`Prefer`).
///
/// # Errors
/// 400 for bad headers.
pub(crate) fn submission(
    state: &RelayState,
    caller: &Caller,
    headers: &HeaderMap,
    unit: UnitRequest,
) -> Result<(Submission, Duration), ApiError> {
    let wait = requested_wait(headers, &state.settings);
    let ttl = queue_ttl(headers, &state.settings)?;
    let idempotency = match (idempotency_key(headers)?, unit.fingerprint) {
        (Some(key), Some(fingerprint)) => {
            let key = IdempotencyKey {
                scope: caller.name.clone(),
                key,
            };
            Some((key, fingerprint))
        }
        (Some(_), None) => {
            return Err(ApiError::Internal(
                "a request with an Idempotency-Key has no fingerprint".into(),
            ));
        }
        (None, _) => None,
    };
    let submission = Submission {
        system: unit.system,
        kind: unit.kind,
        calls: unit.calls,
        commit: unit.commit,
        ttl,
        idempotency,
        owner: Some(caller.name.clone()),
    };
    Ok((submission, wait))
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
