//! Turning a stored call into its HTTP answer: `202` while it is queued or running,
//! `200` with the result once it succeeded, a problem once it failed, expired or was
//! cancelled. The synchronous POST and `GET /v1/calls/{id}` give the same answer.
//!
//! Outcome → status: success 200; `ABAP_APPLICATION_FAILURE` 422;
//! `EXTERNAL_RUNTIME_FAILURE` 400; `NOT_ALLOWED` 403; `COMMUNICATION_FAILURE`,
//! `LOGON_FAILURE`, `ABAP_RUNTIME_FAILURE`, `OUTCOME_UNKNOWN` 502; expired 504;
//! cancelled 410; a transaction that was not committed 422 (or its failing call's
//! status) with `"committed": false`.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use sapbridge_proto::{CallResult, CommitPolicy, ErrorGroup, Outcome, RfcError};
use sapbridge_sap::bapi_return;
use serde::Serialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::{ApiError, Problem};
use crate::actions::step_name;
use crate::queue::{CallKind, CallRecord, CallState};

/// The path where a call can be polled.
pub(crate) fn call_location(call_id: &str) -> String {
    format!("/v1/calls/{call_id}")
}

/// A time as RFC 3339 in UTC with millisecond precision.
pub(crate) fn rfc3339(time: OffsetDateTime) -> String {
    let millis = time.millisecond();
    time.replace_millisecond(millis)
        .unwrap_or(time)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// The HTTP answer for a call in its current state.
pub(crate) fn answer(record: &CallRecord) -> Response {
    let mut response = answer_only(record);
    response
        .extensions_mut()
        .insert(super::audit::CallNote::of(record));
    response
}

fn answer_only(record: &CallRecord) -> Response {
    match &record.state {
        CallState::Queued | CallState::Leased { .. } => pending(record),
        CallState::Succeeded => (StatusCode::OK, Json(CallBody::success(record))).into_response(),
        CallState::Failed | CallState::Expired | CallState::Cancelled => {
            ApiError::Call(Box::new(failure(record))).into_response()
        }
    }
}

/// A call's answer body: the members every answer has, then those of its kind and
/// state, borrowed from the record. Fields are in name order, the order a
/// `serde_json::Map` gives; a member that is `None` is left out (`Some(None)` is
/// `null`).
#[derive(Debug, Serialize)]
pub(crate) struct CallBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: Option<Option<&'a str>>,
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    commit: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    committed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed_at: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    function: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    functions: Option<Vec<&'a str>>,
    /// The call's id; a chain of calls answers under its first call's.
    pub(crate) id: &'a str,
    /// A function call's result: its parameters, or `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Option<&'a Map<String, Value>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    results: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rolled_back: Option<bool>,
    status: &'static str,
    submitted_at: String,
    system: &'a str,
}

impl<'a> CallBody<'a> {
    /// The members every answer has: id, status, system, what runs (`function`,
    /// `functions` or `action`), attempts and submission time.
    pub(crate) fn summary(record: &'a CallRecord) -> Self {
        let (mut function, mut functions, mut action) = (None, None, None);
        match &record.kind {
            CallKind::Function => {
                function = Some(record.calls.first().map(|c| c.function.as_str()));
            }
            CallKind::Transaction => {
                functions = Some(record.calls.iter().map(|c| c.function.as_str()).collect());
            }
            CallKind::Action(step) => action = Some(step_name(step)),
        }
        Self {
            action,
            agent: None,
            attempts: record.attempts,
            commit: None,
            committed: None,
            completed_at: None,
            function,
            functions,
            id: &record.id,
            result: None,
            results: None,
            rolled_back: None,
            status: record.state.as_str(),
            submitted_at: rfc3339(record.submitted_at),
            system: &record.system,
        }
    }

    /// A succeeded call's body: the summary, the results, and when and by which
    /// agent it finished.
    fn success(record: &'a CallRecord) -> Self {
        let mut body = Self::summary(record);
        let Some(Outcome::Completed {
            results,
            transaction,
        }) = &record.outcome
        else {
            return body;
        };
        match &record.kind {
            CallKind::Function => {
                body.result = Some(match results.first() {
                    Some(CallResult::Ok(params)) => Some(params),
                    _ => None,
                });
            }
            CallKind::Transaction | CallKind::Action(_) => {
                body.committed = Some(transaction.as_ref().is_some_and(|t| t.committed));
                if record.commit == CommitPolicy::Rollback {
                    body.rolled_back = Some(true);
                }
                body.results = Some(results_json(record, results));
                let commit = transaction.as_ref().and_then(|t| t.result.as_ref());
                body.commit = Some(commit.map_or(Value::Null, result_json));
            }
        }
        body.completed_at = Some(record.completed_at.map(rfc3339));
        body.agent = Some(record.agent.as_deref());
        body
    }
}

/// The names of the high-level actions a call answer may carry as `action`
/// (`step_name`'s; a unit test holds them to `Step::decode`).
pub(crate) const ACTIONS: [&str; 8] = [
    "customer.create",
    "customer.change",
    "customer.get",
    "customer.search",
    "table.read",
    "function.interface",
    "function.search",
    "table.layout",
];

// The three shapes [`CallBody`] writes, as the document describes them: the same
// members, for the schema only (a unit test holds each to what `CallBody`
// serializes). One serializing struct keeps the answers' member order.

fn action_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .description(Some(
            "The high-level action (`customer.create`, `customer.get`, `table.read`, …) \
             of a call an action made.",
        ))
        .enum_values(Some(ACTIONS))
        .build()
}

fn attempts_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Integer)
        .minimum(Some(0))
        .description(Some("How often an agent took the call."))
        .build()
}

fn pending_status_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(["queued", "running"]))
        .build()
}

fn commit_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{SchemaType, Type};
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .description(Some("`BAPI_TRANSACTION_COMMIT`'s result."))
        .build()
}

fn result_schema() -> utoipa::openapi::schema::Schema {
    let one_of = utoipa::openapi::schema::OneOfBuilder::new()
        .item(utoipa::openapi::Ref::from_schema_name("Parameters"))
        .item(utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::Type::Null))
        .description(Some(
            "The exporting, changing and tables parameters SAP answered; `null` when the \
             agent reported none.",
        ))
        .build();
    utoipa::openapi::schema::Schema::OneOf(one_of)
}

/// A call still queued or running (the body of a `202`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "the schema of what CallBody writes")]
pub(crate) struct CallPending {
    /// The call id (`c_…`).
    id: String,
    #[schema(schema_with = pending_status_schema)]
    status: String,
    system: String,
    /// The function module (function calls).
    #[schema(nullable = false)]
    function: Option<String>,
    /// The function modules (transactions).
    #[schema(nullable = false)]
    functions: Option<Vec<String>>,
    #[schema(schema_with = action_schema, required = false)]
    action: Option<String>,
    #[schema(schema_with = attempts_schema)]
    attempts: u32,
    #[schema(format = DateTime)]
    submitted_at: String,
}

/// A function call's final answer.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "the schema of what CallBody writes")]
pub(crate) struct FunctionCallAnswer {
    /// The call id (`c_…`).
    id: String,
    status: super::openapi::CallStatus,
    system: String,
    /// The function module.
    function: String,
    #[schema(schema_with = attempts_schema)]
    attempts: u32,
    #[schema(format = DateTime)]
    submitted_at: String,
    #[schema(schema_with = result_schema, required = false)]
    result: Option<super::openapi::Parameters>,
    #[schema(format = DateTime, required = false)]
    completed_at: Option<String>,
    /// The agent that ran the call.
    #[schema(required = false)]
    agent: Option<String>,
}

/// A transaction's (or an action's chain of calls') final answer.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "the schema of what CallBody writes")]
pub(crate) struct TransactionAnswer {
    /// The call id (`c_…`).
    id: String,
    status: super::openapi::CallStatus,
    system: String,
    /// The function modules (transactions).
    #[schema(nullable = false)]
    functions: Option<Vec<String>>,
    #[schema(schema_with = action_schema, required = false)]
    action: Option<String>,
    #[schema(schema_with = attempts_schema)]
    attempts: u32,
    #[schema(format = DateTime)]
    submitted_at: String,
    committed: bool,
    /// Present (`true`) for a dry run (`commit: false`).
    #[schema(nullable = false)]
    rolled_back: Option<bool>,
    results: Vec<UnitCallResult>,
    #[schema(schema_with = commit_schema, required = false)]
    commit: Option<Value>,
    #[schema(format = DateTime, required = false)]
    completed_at: Option<String>,
    /// The agent that ran the call.
    #[schema(required = false)]
    agent: Option<String>,
}

/// One call of a transaction: its parameters, or its error.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "the schema of what results_json writes")]
pub(crate) struct UnitCallResult {
    function: String,
    #[schema(nullable = false)]
    result: Option<super::openapi::Parameters>,
    #[schema(nullable = false)]
    error: Option<RfcError>,
}

/// A `$ref` to the component schema `name`.
fn schema_ref(name: &str) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::Ref::from_schema_name(name).into()
}

/// Schemas made of references to components by name, for `body = inline(…)`:
/// a marker type per schema.
macro_rules! refs {
    ($($(#[$doc:meta])* $marker:ident => $schema:expr;)*) => {$(
        $(#[$doc])*
        pub(crate) struct $marker;

        impl utoipa::PartialSchema for $marker {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $schema
            }
        }

        impl utoipa::ToSchema for $marker {}
    )*};
}

refs! {
    /// The `200` of `GET /v1/calls/{id}`: a final answer, of whatever the call was.
    FinalAnswer => utoipa::openapi::schema::AnyOfBuilder::new()
        .item(schema_ref("FunctionCallAnswer"))
        .item(schema_ref("TransactionAnswer"))
        .item(schema_ref("Customer"))
        .item(schema_ref("CustomerList"))
        .item(schema_ref("TableAnswer"))
        .item(schema_ref("FunctionInterface"))
        .into();

}

/// `202` for a call still queued or running, with `Location` (under the body's
/// `id`) and `Retry-After`.
pub(crate) fn pending_body(body: CallBody<'_>) -> Response {
    let location = HeaderValue::from_str(&call_location(body.id));
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    let headers = response.headers_mut();
    if let Ok(location) = location {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

pub(crate) fn pending(record: &CallRecord) -> Response {
    pending_body(CallBody::summary(record))
}

/// One call's result: its parameters, or `{"error": …}`.
fn result_json(result: &CallResult) -> Value {
    match result {
        CallResult::Ok(params) => Value::Object(params.clone()),
        CallResult::Error(error) => json!({ "error": error }),
    }
}

/// A transaction's per-call results, named by function.
fn results_json(record: &CallRecord, results: &[CallResult]) -> Value {
    let items: Vec<Value> = results
        .iter()
        .zip(&record.calls)
        .map(|(result, call)| match result {
            CallResult::Ok(params) => json!({"function": call.function, "result": params}),
            CallResult::Error(error) => json!({"function": call.function, "error": error}),
        })
        .collect();
    Value::Array(items)
}

/// The problem for an RFC error, by its group.
pub(crate) fn error_problem(error: &RfcError) -> Problem {
    use StatusCode as S;
    let (status, slug, title) = match error.group {
        ErrorGroup::AbapApplicationFailure => (
            S::UNPROCESSABLE_ENTITY,
            "abap-application-failure",
            "ABAP exception",
        ),
        ErrorGroup::ExternalRuntimeFailure => {
            (S::BAD_REQUEST, "invalid-parameters", "Invalid parameters")
        }
        ErrorGroup::NotAllowed => (S::FORBIDDEN, "not-allowed", "Not allowed by the agent"),
        ErrorGroup::CommunicationFailure => (
            S::BAD_GATEWAY,
            "communication-failure",
            "SAP system unreachable",
        ),
        ErrorGroup::LogonFailure => (S::BAD_GATEWAY, "logon-failure", "SAP logon failed"),
        ErrorGroup::AbapRuntimeFailure => {
            (S::BAD_GATEWAY, "abap-runtime-failure", "ABAP runtime error")
        }
        ErrorGroup::OutcomeUnknown => (S::BAD_GATEWAY, "outcome-unknown", "Outcome unknown"),
        ErrorGroup::Expired => (S::GATEWAY_TIMEOUT, "expired", "Call expired"),
    };
    let by_key = error.group == ErrorGroup::AbapApplicationFailure && !error.key.is_empty();
    let detail = if by_key || error.message.is_empty() {
        error.key.clone()
    } else {
        error.message.clone()
    };
    let mut problem = Problem::new(status, slug, title, detail);
    problem.extra.insert("rfc_error".into(), json!(error));
    problem
}

fn expired_problem() -> Problem {
    Problem::new(
        StatusCode::GATEWAY_TIMEOUT,
        "expired",
        "Call expired",
        "no agent took the call before its queue TTL ran out",
    )
}

pub(crate) fn failure(record: &CallRecord) -> Problem {
    let mut problem = match (&record.state, &record.outcome) {
        (CallState::Cancelled, _) => Problem::new(
            StatusCode::GONE,
            "cancelled",
            "Call cancelled",
            "the call was cancelled before an agent took it",
        ),
        (CallState::Expired, None) => expired_problem(),
        (_, Some(Outcome::Failed { error })) => error_problem(error),
        (_, Some(outcome @ Outcome::Completed { .. })) if record.kind == CallKind::Transaction => {
            transaction_problem(record, outcome)
        }
        (_, Some(Outcome::Completed { results, .. })) => match results.first() {
            Some(CallResult::Error(error)) => error_problem(error),
            _ => Problem::new(
                StatusCode::BAD_GATEWAY,
                "invalid-outcome",
                "Invalid agent outcome",
                "the agent reported no result for the call",
            ),
        },
        (_, None) => Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the call failed without an outcome",
        ),
    };
    problem.call_id = Some(record.id.clone());
    if record.kind == CallKind::Transaction {
        problem.extra.insert("committed".into(), json!(false));
    }
    problem
}

/// The rows of a `RETURN` parameter (structure or table) that say the BAPI
/// failed ([`bapi_return`]).
fn return_errors(params: &Map<String, Value>) -> Vec<Value> {
    bapi_return::errors(params).cloned().collect()
}

fn transaction_problem(record: &CallRecord, outcome: &Outcome) -> Problem {
    let Outcome::Completed {
        results,
        transaction,
    } = outcome
    else {
        return expired_problem();
    };
    let failed_call = transaction
        .as_ref()
        .and_then(|t| t.failed_call)
        .or_else(|| {
            results
                .iter()
                .position(|r| matches!(r, CallResult::Error(_)))
        });
    let commit_result = transaction.as_ref().and_then(|t| t.result.as_ref());
    let failing = failed_call.and_then(|i| results.get(i));
    let returned = match failing {
        Some(CallResult::Ok(params)) => return_errors(params),
        _ => Vec::new(),
    };
    let mut problem = match (failing, commit_result) {
        (Some(CallResult::Error(error)), _) => error_problem(error),
        (None, Some(CallResult::Error(error))) => error_problem(error),
        _ => {
            let reason = transaction.as_ref().and_then(|t| t.reason.clone());
            let message = returned
                .first()
                .and_then(|row| row.get("MESSAGE"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            let detail = reason
                .or(message)
                .unwrap_or_else(|| "the transaction was rolled back".into());
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "transaction-rolled-back",
                "Transaction rolled back",
                detail,
            )
        }
    };
    problem
        .extra
        .insert("failed_call".into(), json!(failed_call));
    if let Some(i) = failed_call {
        let function = record.calls.get(i).map(|c| c.function.as_str());
        problem
            .extra
            .insert("failed_function".into(), json!(function));
    }
    if !returned.is_empty() {
        problem
            .extra
            .insert("return".into(), Value::Array(returned));
    }
    problem
        .extra
        .insert("results".into(), results_json(record, results));
    problem.extra.insert(
        "commit".into(),
        commit_result.map_or(Value::Null, result_json),
    );
    problem
}

#[cfg(test)]
mod tests {
    use sapbridge_proto::{CommitPolicy, FunctionCall, RfcError};

    use super::*;
    use crate::queue::NewCall;

    fn succeeded(kind: CallKind, results: Vec<CallResult>) -> CallRecord {
        let now = time::macros::datetime!(2026-11-28 08:00:00.123456 UTC);
        let mut record = CallRecord::new(NewCall {
            id: "c_1".into(),
            system: "PRD".into(),
            kind,
            calls: vec![FunctionCall {
                function: "BAPI_X".into(),
                parameters: Map::new(),
            }],
            commit: CommitPolicy::None,
            submitted_at: now,
            expires_at: now,
            idempotency: None,
            owner: None,
            trace: None,
            webhooks: Vec::new(),
        });
        record.state = CallState::Succeeded;
        record.completed_at = Some(now);
        record.agent = Some("plant-1".into());
        record.outcome = Some(Outcome::Completed {
            results,
            transaction: None,
        });
        record
    }

    const AT: &str = "2026-11-28T08:00:00.123Z";

    fn body(record: &CallRecord) -> String {
        serde_json::to_string(&CallBody::success(record)).unwrap()
    }

    /// Each member in name order, borrowed results written as they are.
    #[test]
    fn a_function_call_answers_with_its_result() {
        let params = json!({"ECHOTEXT": "hi", "ZZ": [1, {"b": null}], "A": 1});
        let params = params.as_object().cloned().unwrap_or_default();
        let record = succeeded(CallKind::Function, vec![CallResult::Ok(params)]);
        let common =
            format!(r#""attempts":0,"completed_at":"{AT}","function":"BAPI_X","id":"c_1""#);
        let tail = format!(r#""status":"succeeded","submitted_at":"{AT}","system":"PRD""#);
        assert_eq!(
            body(&record),
            format!(
                r#"{{"agent":"plant-1",{common},"result":{{"A":1,"ECHOTEXT":"hi","ZZ":[1,{{"b":null}}]}},{tail}}}"#
            )
        );
        // An error or a missing result: `result` is null.
        let error = RfcError::new(ErrorGroup::AbapApplicationFailure, "X", "x");
        for results in [vec![CallResult::Error(error)], vec![]] {
            let record = succeeded(CallKind::Function, results);
            assert_eq!(
                body(&record),
                format!(r#"{{"agent":"plant-1",{common},"result":null,{tail}}}"#)
            );
        }
        // Without an outcome: the summary alone, no `result`, `agent` or `completed_at`.
        let mut record = succeeded(CallKind::Function, vec![]);
        record.outcome = None;
        assert_eq!(
            body(&record),
            format!(r#"{{"attempts":0,"function":"BAPI_X","id":"c_1",{tail}}}"#)
        );
    }

    #[test]
    fn a_transaction_answers_with_named_results_and_its_commit() {
        let mut record = succeeded(CallKind::Transaction, vec![CallResult::Ok(Map::new())]);
        record.outcome = Some(Outcome::Completed {
            results: vec![CallResult::Ok(Map::new())],
            transaction: Some(sapbridge_proto::TransactionOutcome {
                committed: true,
                result: None,
                failed_call: None,
                reason: None,
            }),
        });
        assert_eq!(
            body(&record),
            format!(
                concat!(
                    r#"{{"agent":"plant-1","attempts":0,"commit":null,"committed":true,"#,
                    r#""completed_at":"{at}","functions":["BAPI_X"],"id":"c_1","#,
                    r#""results":[{{"function":"BAPI_X","result":{{}}}}],"status":"succeeded","#,
                    r#""submitted_at":"{at}","system":"PRD"}}"#
                ),
                at = AT
            )
        );
    }

    /// The members of `value` are properties of the component schema `S`, and
    /// its required members are there.
    fn fits<S: utoipa::ToSchema>(value: &Value) {
        let schema = serde_json::to_value(S::schema()).expect("schema");
        let name = S::name();
        let members = value.as_object().expect("an object");
        for member in members.keys() {
            assert!(
                schema["properties"].get(member).is_some(),
                "{name} lacks {member}"
            );
        }
        for required in schema["required"].as_array().into_iter().flatten() {
            let required = required.as_str().expect("a name");
            assert!(
                members.contains_key(required),
                "{name}: no {required} in {value}"
            );
        }
    }

    /// The schemas of the document are what [`CallBody`] writes, in each shape.
    #[test]
    fn the_answer_schemas_are_what_call_body_writes() {
        let params = json!({"A": 1}).as_object().cloned().unwrap_or_default();
        let record = succeeded(CallKind::Function, vec![CallResult::Ok(params.clone())]);
        fits::<FunctionCallAnswer>(&serde_json::to_value(CallBody::success(&record)).unwrap());
        let mut pending = succeeded(CallKind::Function, vec![]);
        pending.state = CallState::Queued;
        pending.outcome = None;
        fits::<CallPending>(&serde_json::to_value(CallBody::summary(&pending)).unwrap());
        let error = RfcError::new(ErrorGroup::AbapApplicationFailure, "X", "x");
        let mut record = succeeded(
            CallKind::Transaction,
            vec![CallResult::Ok(params), CallResult::Error(error)],
        );
        record.calls.push(record.calls[0].clone());
        record.commit = CommitPolicy::Rollback;
        let body = serde_json::to_value(CallBody::success(&record)).unwrap();
        fits::<TransactionAnswer>(&body);
        for result in body["results"].as_array().expect("results") {
            fits::<UnitCallResult>(result);
        }
        pending.kind = CallKind::Transaction;
        fits::<CallPending>(&serde_json::to_value(CallBody::summary(&pending)).unwrap());
    }

    /// [`ACTIONS`] are the actions the relay knows.
    #[test]
    fn the_documented_actions_are_the_relays() {
        for name in ACTIONS {
            let step = crate::queue::ActionStep {
                action: name.into(),
                version: 1,
                data: Value::Null,
            };
            let error = crate::actions::Step::decode(&step)
                .err()
                .unwrap_or_default();
            assert!(!error.contains("unknown action"), "{name}: {error}");
        }
    }

    /// A queued call: the summary; an action's chain answers under its first call's
    /// id, in the body and in `Location`.
    #[test]
    fn pending_answers_carry_the_summary_and_where_to_poll() {
        let mut record = succeeded(CallKind::Function, vec![]);
        record.state = CallState::Queued;
        record.outcome = None;
        let response = pending(&record);
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(response.headers()[header::LOCATION], "/v1/calls/c_1");
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let mut body = CallBody::summary(&record);
        body.id = "c_root";
        let response = pending_body(body);
        assert_eq!(response.headers()[header::LOCATION], "/v1/calls/c_root");
        let body = CallBody::summary(&record);
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            format!(
                r#"{{"attempts":0,"function":"BAPI_X","id":"c_1","status":"queued","submitted_at":"{AT}","system":"PRD"}}"#
            )
        );
    }
}
