//! Calls: `POST /v1/systems/{system}/functions/{function}`, `GET /v1/calls/{id}`
//! and `DELETE /v1/calls/{id}`, plus [`submit`], which stores any unit of work and
//! holds the request for its result (shared with transactions).

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
use time::OffsetDateTime;
use tokio::time::Instant;
use tracing::Instrument;

use super::ApiError;
use super::render::{answer, rfc3339};
use super::request::{
    Caller, IDEMPOTENCY_HEADER, body_bytes, function_name, idempotency_key, json_object, queue_ttl,
    requested_wait,
};
use crate::ids::new_call_id;
use crate::queue::{CallKind, CallRecord, CallWatch, Cancelled, Enqueued, IdempotencyKey, NewCall};
use crate::state::RelayState;

/// How often a waiting request looks at the call even without a wake-up.
const WAIT_POLL: Duration = Duration::from_secs(1);

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
    super::functions_meta::precheck(&state, &system, &function, &parameters)?;
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
    let record = submit_record(state, caller, headers, unit).await?;
    Ok(answer(&record))
}

/// [`submit`] without the rendering: the call as it is once final or when the
/// requested wait is over (the high-level actions render it themselves).
///
/// # Errors
/// As [`submit`].
pub(crate) async fn submit_record(
    state: &RelayState,
    caller: &Caller,
    headers: &HeaderMap,
    unit: UnitRequest,
) -> Result<CallRecord, ApiError> {
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
    let now = OffsetDateTime::now_utc();
    let call = NewCall {
        id: new_call_id(),
        system: unit.system,
        kind: unit.kind,
        calls: unit.calls,
        commit: unit.commit,
        submitted_at: now,
        expires_at: now + ttl,
        idempotency,
        owner: Some(caller.name.clone()),
    };
    let function = call
        .calls
        .first()
        .map(|c| c.function.clone())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "call",
        call_id = %call.id,
        system = %call.system,
        function = %function,
        key = %caller.name,
    );
    async move {
        // Watch before the call exists, so its end cannot slip by unseen (only when
        // the request waits for it).
        let watch = (!wait.is_zero()).then(|| state.queue.signals().watch_call(&call.id));
        let record = match state.queue.enqueue(call).await? {
            Enqueued::Created(record) => {
                tracing::debug!(calls = record.calls.len(), "call queued");
                record
            }
            Enqueued::Existing(record) => {
                // The key is scoped to the caller's API key: the call is its own.
                tracing::info!(existing = %record.id, status = record.state.as_str(),
                    "idempotent retry joins the call");
                drop(watch);
                if record.state.is_final() || wait.is_zero() {
                    return Ok(*record);
                }
                return wait_final(state, &record.id, wait).await;
            }
            Enqueued::KeyMismatch => return Err(ApiError::IdempotencyMismatch),
        };
        // `respond-async` (no wait) answers 202 with the call as accepted, even
        // if a quick agent has finished it by now.
        let record = match &watch {
            None => *record,
            Some(watch) => wait_watched(state, Some(*record), watch, wait).await?,
        };
        tracing::debug!(status = record.state.as_str(), "call answered");
        Ok(record)
    }
    .instrument(span)
    .await
}

/// Waits until the call is final, `wait` has passed or the relay shuts down; returns
/// the call as it is then.
///
/// # Errors
/// 500 when the store fails or the call vanished.
pub(crate) async fn wait_final(
    state: &RelayState,
    call_id: &str,
    wait: Duration,
) -> Result<CallRecord, ApiError> {
    let watch = state.queue.signals().watch_call(call_id);
    wait_watched(state, None, &watch, wait).await
}

/// [`wait_final`] with the call's `watch` taken already (before the call was
/// stored) and, if known, the call as its creation committed it (read back from the
/// store otherwise). The end handed over by the store's signal is used as is; the
/// store is read only when the signal carries none, or on the polling fallback.
async fn wait_watched(
    state: &RelayState,
    mut known: Option<CallRecord>,
    watch: &CallWatch,
    wait: Duration,
) -> Result<CallRecord, ApiError> {
    let deadline = Instant::now() + wait;
    loop {
        let notified = watch.notify().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let mut record =
            match known.take() {
                Some(record) => record,
                None => state.queue.get(watch.call_id()).await?.ok_or_else(|| {
                    ApiError::Internal(format!("call {} vanished", watch.call_id()))
                })?,
            };
        if let Some(end) = watch.take_ended() {
            end.apply(&mut record);
        }
        let now = Instant::now();
        if record.state.is_final() || now >= deadline || state.shutdown.is_cancelled() {
            return Ok(record);
        }
        tokio::select! {
            () = &mut notified => {
                // Ended with the outcome handed over: no need to read the call back.
                if watch.has_ended() {
                    known = Some(record);
                }
            }
            () = tokio::time::sleep_until(deadline.min(now + WAIT_POLL)) => {}
            () = state.shutdown.cancelled() => {}
        }
    }
}

/// Loads a call the caller may see ([`Caller::may_see`]): the one way a client
/// reaches a stored call by its id. Another key's call, or one of a system outside
/// the key's scope, answers exactly as a call that does not exist.
async fn visible_call(
    state: &RelayState,
    caller: &Caller,
    call_id: &str,
) -> Result<CallRecord, ApiError> {
    match state.queue.get(call_id).await? {
        Some(record) if caller.may_see(&record) => Ok(record),
        _ => Err(ApiError::CallNotFound(call_id.to_owned())),
    }
}

/// `GET /v1/calls/{id}`: 202 while queued or running, then the final answer.
pub(crate) async fn get_call(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let call_id = path(id)?;
    let record = visible_call(&state, &caller, &call_id).await?;
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
    visible_call(&state, &caller, &call_id).await?;
    match state.queue.cancel(&call_id).await? {
        Cancelled::Done(record) => {
            tracing::info!(call_id = %call_id, system = %record.system, "call cancelled");
            let body = json!({
                "id": record.id,
                "status": record.state.as_str(),
                "system": record.system,
                "submitted_at": rfc3339(record.submitted_at),
                "completed_at": record.completed_at.map(rfc3339),
            });
            Ok((StatusCode::OK, axum::Json(body)).into_response())
        }
        Cancelled::TooLate(record) => Err(ApiError::Conflict {
            call_id,
            detail: format!(
                "the call is {} and can no longer be cancelled",
                record.state.as_str()
            ),
        }),
        Cancelled::Unknown => Err(ApiError::CallNotFound(call_id)),
    }
}
