//! High-level actions — customers, table reads, function metadata — built on the
//! same queue, wait, `Prefer`, `Idempotency-Key` and 202-polling machinery as plain
//! calls.
//!
//! An action runs as a *chain* of units: most need one, some need a follow-up that
//! depends on the first answer (a table read that hit `DATA_BUFFER_EXCEEDED` is split
//! after the table's layout is known; a function interface is followed by the
//! fields of the structures it references). Every unit is an ordinary stored call
//! whose [`CallKind::Action`] carries an [`Action`]: what the step needs to turn
//! the unit's results into either the answer or the next unit.
//!
//! The chain is walked from its first call, by the request that started it and by
//! every `GET /v1/calls/{id}` poll of that id. A follow-up is enqueued under an
//! internal idempotency key derived from the previous call's id, so however many
//! walkers meet a step, the follow-up exists once. A step not final in time
//! answers `202` with `Location` of the *first* call, so clients poll one id.

mod outcome;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use sapbridge_proto::{CommitPolicy, FunctionCall};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::time::Instant;

pub(crate) use outcome::{
    call_params, completed, return_error_row, return_problem, return_problem_with, rfc_problem,
    text, with_call_id,
};

use super::ApiError;
use super::calls::{UnitRequest, submit_record, wait_final};
use super::render::{CallBody, pending_body};
use super::request::{Caller, requested_wait};
use super::{customers, functions_meta, tables};
use crate::ids::new_call_id;
use crate::queue::{CallKind, CallRecord, Enqueued, IdempotencyKey, NewCall};
use crate::state::RelayState;

/// The idempotency scope of follow-up units (no API key is named like this: key
/// names cannot hold control characters).
const FOLLOW_UP_SCOPE: &str = "\0follow-up";

/// What a stored call of a high-level action needs to render its step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Action {
    /// `POST /v1/systems/{system}/customers`.
    CustomerCreate(customers::CreateStep),
    /// `PATCH /v1/systems/{system}/customers/{customer}`.
    CustomerChange(customers::ChangeStep),
    /// `GET /v1/systems/{system}/customers/{customer}`.
    CustomerGet(customers::GetStep),
    /// `GET /v1/systems/{system}/customers?…`.
    CustomerSearch(customers::SearchStep),
    /// `GET …/tables/{table}` and `POST …/tables/{table}/query`.
    TableRead(tables::ReadStep),
    /// `GET /v1/systems/{system}/functions/{function}`.
    FunctionInterface(functions_meta::InterfaceStep),
}

impl Action {
    /// The action's name in call bodies (`customer.create`, `table.read`, ...).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::CustomerCreate(_) => "customer.create",
            Self::CustomerChange(_) => "customer.change",
            Self::CustomerGet(_) => "customer.get",
            Self::CustomerSearch(_) => "customer.search",
            Self::TableRead(_) => "table.read",
            Self::FunctionInterface(_) => "function.interface",
        }
    }
}

/// What a step makes of its final call.
pub(crate) enum Step {
    /// The action's answer.
    Done(Response),
    /// The action needs another unit.
    Next(FollowUp),
}

/// A unit that continues an action.
pub(crate) struct FollowUp {
    /// The step it is.
    pub(crate) action: Action,
    /// Its calls.
    pub(crate) calls: Vec<FunctionCall>,
    /// What happens after them.
    pub(crate) commit: CommitPolicy,
}

/// Renders one final step of an action.
fn step(state: &RelayState, action: &Action, record: &CallRecord) -> Result<Step, ApiError> {
    match action {
        Action::CustomerCreate(s) => customers::create_done(s, record),
        Action::CustomerChange(s) => customers::change_done(s, record),
        Action::CustomerGet(s) => customers::get_done(s, record),
        Action::CustomerSearch(s) => customers::search_done(s, record),
        Action::TableRead(s) => tables::read_done(s, record),
        Action::FunctionInterface(s) => functions_meta::interface_done(state, s, record),
    }
}

/// Submits the first unit of an action and walks its chain until the answer or
/// the request's wait (`Prefer`) is over.
///
/// # Errors
/// As [`submit_record`], and the action's problems.
pub(crate) async fn run(
    state: &RelayState,
    caller: &Caller,
    headers: &HeaderMap,
    unit: UnitRequest,
) -> Result<Response, ApiError> {
    let deadline = Instant::now() + requested_wait(headers, &state.settings);
    let record = submit_record(state, caller, headers, unit).await?;
    drive(state, record, deadline).await
}

/// `GET /v1/calls/{id}` of an action's call: walks the chain without waiting.
///
/// # Errors
/// The action's problems; 500 for store failures.
pub(crate) async fn poll(state: &RelayState, record: CallRecord) -> Result<Response, ApiError> {
    drive(state, record, Instant::now()).await
}

async fn drive(
    state: &RelayState,
    root: CallRecord,
    deadline: Instant,
) -> Result<Response, ApiError> {
    let root_id = root.id.clone();
    let ttl = root.expires_at - root.submitted_at;
    let mut record = root;
    loop {
        if !record.state.is_final() {
            return Ok(pending(&root_id, &record));
        }
        let CallKind::Action(action) = &record.kind else {
            return Ok(super::render::answer(&record));
        };
        match step(state, action, &record).map_err(|e| with_call_id(e, &root_id))? {
            Step::Done(response) => return Ok(response),
            Step::Next(next) => {
                let id = follow_up(state, &record, next, ttl).await?;
                let wait = deadline.saturating_duration_since(Instant::now());
                record = wait_final(state, &id, wait).await?;
            }
        }
    }
}

/// Enqueues (once) the unit that follows `previous`; returns its call id.
async fn follow_up(
    state: &RelayState,
    previous: &CallRecord,
    next: FollowUp,
    ttl: time::Duration,
) -> Result<String, ApiError> {
    let now = OffsetDateTime::now_utc();
    let key = IdempotencyKey {
        scope: FOLLOW_UP_SCOPE.into(),
        key: previous.id.clone(),
    };
    let call = NewCall {
        id: new_call_id(),
        system: previous.system.clone(),
        kind: CallKind::Action(next.action),
        calls: next.calls,
        commit: next.commit,
        submitted_at: now,
        expires_at: now + ttl.max(time::Duration::SECOND),
        idempotency: Some((key, "follow-up".into())),
        owner: previous.owner.clone(),
    };
    match state.queue.enqueue(call).await? {
        Enqueued::Created(record) => {
            tracing::info!(call_id = %record.id, after = %previous.id, "follow-up queued");
            Ok(record.id)
        }
        Enqueued::Existing(record) => Ok(record.id),
        Enqueued::KeyMismatch => Err(ApiError::Internal(format!(
            "follow-up of {} stored with another fingerprint",
            previous.id
        ))),
    }
}

/// `202` for a chain still running: the current step's state, under the first
/// call's id and `Location`.
fn pending(root_id: &str, record: &CallRecord) -> Response {
    let mut body = CallBody::summary(record);
    body.id = root_id;
    pending_body(body)
}

/// A `200` JSON answer.
pub(crate) fn ok_json(body: Value) -> Response {
    (StatusCode::OK, Json(body)).into_response()
}
