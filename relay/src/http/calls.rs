//! Calls: `POST /v1/systems/{system}/functions/{function}`, `GET /v1/calls/{id}`
//! and `DELETE /v1/calls/{id}`, plus [`submit`], which stores a request's unit of
//! work and answers with the call once it is final or the request's wait is over
//! (shared with transactions).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, StatusCode};
use sapbridge_proto::{CommitPolicy, FunctionCall};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::ApiError;
use super::actions::step_error;
use super::render::{answer, rfc3339};
use super::request::{
    Caller, UnitRequest, body_bytes, fingerprint, function_name, json_object, path, submission,
};
use crate::actions::{Chain, ChainError, Progress, metadata};
use crate::calls::CallError;
use crate::queue::listing::{MAX_PAGE, function_of};
use crate::queue::{CallCursor, CallFilter, CallKind, CallRecord, StateFilter};
use crate::state::RelayState;

/// `POST /v1/systems/{system}/functions/{function}`.
#[utoipa::path(
    post,
    path = "/v1/systems/{system}/functions/{function}",
    operation_id = "callFunction",
    tag = "calls",
    summary = "Call a function module (RFC/BAPI)",
    description = "Queues one call of the function module and holds the request for its result for `Prefer: wait` seconds (default 60, capped by the relay). Done in time → `200`; not done in time or `Prefer: respond-async` → `202` with `Location` and `Retry-After`: poll `Location` until the answer is no longer `202`. While the relay holds the function's interface (after a `GET` of this path) the parameters are checked against it and a mismatch is `400` before anything is queued.",
    params(
        super::request::FunctionPath,
        super::request::QueueHeaders,
        super::request::CallbackHeader
    ),
    request_body(
        // Optional (an empty body is no parameters): see `openapi::OPTIONAL_BODIES`.
        content = super::openapi::Parameters,
        description = "The parameters by name (an empty body is no parameters).",
        example = json!({"REQUTEXT": "hello"})
    ),
    responses(
        (status = 200, description = "The call succeeded.", body = super::render::FunctionCallAnswer,
            example = json!({
                "id": "c_01J…",
                "status": "succeeded",
                "system": "SIM",
                "function": "STFC_CONNECTION",
                "attempts": 1,
                "submitted_at": "2025-01-02T10:00:00.000Z",
                "result": {"ECHOTEXT": "hello", "RESPTEXT": "SAP R/3 Rel. 750 …"},
                "completed_at": "2025-01-02T10:00:00.120Z",
                "agent": "plant-1"
            })),
        super::openapi::QueuedCallAnswers,
    ),
)]
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
#[utoipa::path(
    get,
    path = "/v1/calls/{id}",
    operation_id = "getCall",
    tag = "calls",
    summary = "Poll a call (the `Location` of a 202)",
    description = "`202` (+ `Retry-After`) while queued or running; then the same final answer the original request would have given: `200` for a function call or transaction, the action's answer for a high-level action (for example `201` with the customer for a create), or a problem. A cancelled call is `410`. Another API key's call is `404`, as an unknown id is (keys with `operator = true` see every call).",
    params(CallPath),
    responses(
        (status = 200, description = "The call's final answer.", body = inline(super::render::FinalAnswer)),
        (status = 201, description = "A customer create finished (as its original request).",
            body = crate::actions::customers::CustomerAnswer,
            headers(("Location" = String, description = "The new customer."))),
        (status = 202, response = super::openapi::Accepted),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 410, response = super::openapi::Gone),
        (status = 422, response = super::openapi::Unprocessable),
        (status = 500, response = super::openapi::InternalError),
        (status = 502, response = super::openapi::BadGateway),
        (status = 504, response = super::openapi::GatewayTimeout),
    ),
)]
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

/// The page size of `GET /v1/calls` when the request names none.
const DEFAULT_LIMIT: usize = 100;
/// The largest page `GET /v1/calls` gives.
const MAX_LIMIT: usize = MAX_PAGE - 1;

/// The query of `GET /v1/calls`. Empty values count as absent (an HTML form
/// sends its empty fields).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Calls of this system.
    system: Option<String>,
    /// Calls of this function module (their first call's; upper-cased) or, for a
    /// high-level action's call, of this action (`customer.create`,
    /// `table.read`, ...).
    function: Option<String>,
    /// Calls in this state.
    #[param(value_type = Option<super::openapi::CallStatus>, inline)]
    status: Option<String>,
    /// Calls of this API key (its name); a key that is no operator sees only its
    /// own.
    key: Option<String>,
    /// Calls submitted at or after this time (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Calls submitted before this time (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
    /// The `next` of the previous page (opaque; give the same filters).
    cursor: Option<String>,
    /// The most calls in the page (1 to 1000, default 100).
    #[param(schema_with = limit_schema)]
    limit: Option<String>,
}

/// The page size: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when left out.
fn limit_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Integer)
        .minimum(Some(1))
        .maximum(Some(MAX_LIMIT))
        .default(Some(DEFAULT_LIMIT.into()))
        .build()
}

impl ListQuery {
    /// The query as a store filter of one more call than the page (whether a
    /// next page follows), with the page size.
    ///
    /// # Errors
    /// 400 for a bad status, time, cursor or limit.
    pub(crate) fn filter(self) -> Result<(CallFilter, usize), ApiError> {
        fn given(value: Option<String>) -> Option<String> {
            value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
        }
        let limit = match given(self.limit) {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("limit must be between 1 and {MAX_LIMIT}"))
                })?,
        };
        let state = given(self.status)
            .map(|s| {
                StateFilter::parse(&s).ok_or_else(|| {
                    ApiError::BadRequest(
                        "status must be one of queued, running, succeeded, failed, expired, \
                         cancelled"
                            .into(),
                    )
                })
            })
            .transpose()?;
        let time = |name: &str, value: Option<String>| {
            given(value)
                .map(|t| {
                    OffsetDateTime::parse(&t, &Rfc3339).map_err(|e| {
                        ApiError::BadRequest(format!(
                            "{name} must be an RFC 3339 time such as 2026-01-31T08:00:00Z: {e}"
                        ))
                    })
                })
                .transpose()
        };
        let filter = CallFilter {
            systems: given(self.system).map(|s| vec![s]),
            function: given(self.function).map(stored_name),
            state,
            owner: given(self.key),
            since: time("since", self.since)?,
            until: time("until", self.until)?,
            after: given(self.cursor)
                .as_deref()
                .map(decode_cursor)
                .transpose()?,
            limit: limit + 1,
        };
        Ok((filter, limit))
    }
}

/// A function filter as stored: function module names are upper case; action
/// names (`customer.create`) are not, and are left as given.
fn stored_name(name: String) -> String {
    if name.contains('.') {
        name
    } else {
        name.to_uppercase()
    }
}

/// The cursor after `record`: opaque to clients.
fn encode_cursor(record: &CallRecord) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "calls:{}:{}",
        record.submitted_at.unix_timestamp_nanos(),
        record.id
    ))
}

fn decode_cursor(cursor: &str) -> Result<CallCursor, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| {
            let (at, id) = text.strip_prefix("calls:")?.split_once(':')?;
            let at = OffsetDateTime::from_unix_timestamp_nanos(at.parse().ok()?).ok()?;
            (!id.is_empty()).then(|| CallCursor {
                submitted_at: at,
                id: id.to_owned(),
            })
        })
        .ok_or_else(|| {
            ApiError::BadRequest("cursor is not one this relay gave out (use `next`)".into())
        })
}

/// A page of `GET /v1/calls`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = CallPage)]
pub(crate) struct CallPageBody<'a> {
    items: Vec<CallSummary<'a>>,
    /// The cursor of the next page; `null` on the last.
    #[schema(required = true)]
    next: Option<String>,
}

/// A call as the listing shows it: never its parameters or results. Members in
/// name order, as the answer always had them; every member is always there
/// (`null` when it does not apply).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct CallSummary<'a> {
    /// The high-level action's name, for an action's call.
    #[schema(required = true)]
    action: Option<&'a str>,
    /// The agent that reported its outcome.
    #[schema(required = true)]
    agent: Option<&'a str>,
    /// How many times it was handed to an agent.
    attempts: u32,
    /// When it reached its final state.
    #[schema(required = true, format = DateTime)]
    completed_at: Option<String>,
    /// The function module of its first call.
    #[schema(required = true)]
    function: Option<&'a str>,
    /// The call id (poll `/v1/calls/{id}`).
    id: &'a str,
    /// The name of the API key that created it.
    #[schema(required = true)]
    key: Option<&'a str>,
    #[schema(schema_with = kind_schema)]
    kind: &'static str,
    /// What the `function` filter matches: the action's name, else the first
    /// call's function module.
    #[schema(required = true)]
    name: Option<&'a str>,
    #[schema(value_type = super::openapi::CallStatus, inline)]
    status: &'static str,
    #[schema(format = DateTime)]
    submitted_at: String,
    system: &'a str,
}

/// The `kind` of a [`CallSummary`].
fn kind_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(["function", "transaction", "action"]))
        .description(Some("What request made the call."))
        .build()
}

/// [`CallSummary`] of `record`.
pub(crate) fn summary(record: &CallRecord) -> CallSummary<'_> {
    let (kind, action) = match &record.kind {
        CallKind::Function => ("function", None),
        CallKind::Transaction => ("transaction", None),
        CallKind::Action(step) => ("action", Some(step.action.as_str())),
    };
    CallSummary {
        action,
        agent: record.agent.as_deref(),
        attempts: record.attempts,
        completed_at: record.completed_at.map(rfc3339),
        function: record.calls.first().map(|c| c.function.as_str()),
        id: &record.id,
        key: record.owner.as_deref(),
        kind,
        name: function_of(record),
        status: record.state.as_str(),
        submitted_at: rfc3339(record.submitted_at),
        system: &record.system,
    }
}

/// `GET /v1/calls`: a page of the calls the key may see, newest first, as
/// summaries (a key's own calls; an operator key's, every key's calls of the
/// systems it covers).
///
/// # Errors
/// 401 without a key, 400 for a bad filter, cursor, limit or unknown parameter.
#[utoipa::path(
    get,
    path = "/v1/calls",
    operation_id = "listCalls",
    tag = "calls",
    summary = "Search calls (summaries, newest first)",
    description = "The calls the API key may see, newest first (by submission time): a key's own calls of the systems it covers; for a key with `operator = true`, every key's calls of the systems it covers. Each item is a summary: never the call's parameters or results (poll `/v1/calls/{id}` for those). Filters combine; an empty value counts as absent. A filter naming another key (`key`) or a system outside the key's scope lists nothing. Calls are listed while they are retained (`[queue] result_retention_secs`).",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of calls.", body = CallPageBody),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 500, response = super::openapi::InternalError),
    ),
)]
pub(crate) async fn list_calls(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let (filter, limit) = query.filter()?;
    let mut records = state.calls.list(caller.viewer(), filter).await?;
    let next = if records.len() > limit {
        records.truncate(limit);
        records.last().map(encode_cursor)
    } else {
        None
    };
    let items = records.iter().map(summary).collect();
    Ok(axum::Json(CallPageBody { items, next }).into_response())
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

/// The path of the call routes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(
    dead_code,
    reason = "documentation of the path the handlers read as a String"
)]
struct CallPath {
    /// The call id (from `Location` or the answer's `id`).
    #[param(example = "c_01J…")]
    id: String,
}

/// The body of `DELETE /v1/calls/{id}`. Members in name order, as the answer
/// always had them.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = CancelledCall)]
pub(crate) struct CancelledBody {
    #[schema(format = DateTime)]
    completed_at: Option<String>,
    id: String,
    #[schema(value_type = super::openapi::CallStatus)]
    status: &'static str,
    #[schema(format = DateTime)]
    submitted_at: String,
    system: String,
}

/// `DELETE /v1/calls/{id}`: cancels a queued call (200); 409 once leased or final.
#[utoipa::path(
    delete,
    path = "/v1/calls/{id}",
    operation_id = "cancelCall",
    tag = "calls",
    summary = "Cancel a queued call",
    description = "`200` when the call was still queued; `409` once an agent took it or it is final. Another API key's call is `404`, as an unknown id is (keys with `operator = true` may cancel every call).",
    params(CallPath),
    responses(
        (status = 200, description = "Cancelled.", body = CancelledBody),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, response = super::openapi::Conflict),
        (status = 500, response = super::openapi::InternalError),
    ),
)]
pub(crate) async fn cancel_call(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let call_id = path(id)?;
    let record = state.calls.cancel(caller.viewer(), &call_id).await?;
    let body = CancelledBody {
        completed_at: record.completed_at.map(rfc3339),
        id: record.id,
        status: record.state.as_str(),
        submitted_at: rfc3339(record.submitted_at),
        system: record.system,
    };
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}
