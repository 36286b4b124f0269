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
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::{ApiError, Problem};
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
    match &record.state {
        CallState::Queued | CallState::Leased { .. } => pending(record),
        CallState::Succeeded => (StatusCode::OK, Json(success_body(record))).into_response(),
        CallState::Failed | CallState::Expired | CallState::Cancelled => {
            ApiError::Call(Box::new(failure(record))).into_response()
        }
    }
}

/// The call's common members.
pub(crate) fn summary(record: &CallRecord) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("id".into(), json!(record.id));
    body.insert("status".into(), json!(record.state.as_str()));
    body.insert("system".into(), json!(record.system));
    match &record.kind {
        CallKind::Function => {
            let function = record.calls.first().map(|c| c.function.as_str());
            body.insert("function".into(), json!(function));
        }
        CallKind::Transaction => {
            let functions: Vec<&str> = record.calls.iter().map(|c| c.function.as_str()).collect();
            body.insert("functions".into(), json!(functions));
        }
        CallKind::Action(action) => {
            body.insert("action".into(), json!(action.name()));
        }
    }
    body.insert("attempts".into(), json!(record.attempts));
    body.insert("submitted_at".into(), json!(rfc3339(record.submitted_at)));
    body
}

pub(crate) fn pending(record: &CallRecord) -> Response {
    let mut response = (StatusCode::ACCEPTED, Json(Value::Object(summary(record)))).into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&call_location(&record.id)) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn finished(record: &CallRecord, body: &mut Map<String, Value>) {
    body.insert(
        "completed_at".into(),
        json!(record.completed_at.map(rfc3339)),
    );
    body.insert("agent".into(), json!(record.agent));
}

/// A succeeded call's body: its members as a JSON object, plus a function call's
/// `result` borrowed from the record instead of copied into the object (a large
/// result was cloned whole only to be serialized once).
struct SuccessBody<'a> {
    members: Map<String, Value>,
    /// `Some` for a function call: its parameters, or `None` (`null`).
    result: Option<Option<&'a Map<String, Value>>>,
}

impl Serialize for SuccessBody<'_> {
    /// The members in the order a `Map` has them (sorted by name), `result` in its
    /// place among them: the same bytes as with `result` inserted into the map.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        const RESULT: &str = "result";
        let extra = usize::from(self.result.is_some());
        let mut map = serializer.serialize_map(Some(self.members.len() + extra))?;
        let mut result = self.result;
        for (name, value) in &self.members {
            if name.as_str() > RESULT
                && let Some(params) = result.take()
            {
                map.serialize_entry(RESULT, &params)?;
            }
            map.serialize_entry(name, value)?;
        }
        if let Some(params) = result {
            map.serialize_entry(RESULT, &params)?;
        }
        map.end()
    }
}

fn success_body(record: &CallRecord) -> SuccessBody<'_> {
    let mut body = summary(record);
    let Some(Outcome::Completed {
        results,
        transaction,
    }) = &record.outcome
    else {
        return SuccessBody {
            members: body,
            result: None,
        };
    };
    let mut result = None;
    match &record.kind {
        CallKind::Function => {
            result = Some(match results.first() {
                Some(CallResult::Ok(params)) => Some(params),
                _ => None,
            });
        }
        CallKind::Transaction | CallKind::Action(_) => {
            let committed = transaction.as_ref().is_some_and(|t| t.committed);
            body.insert("committed".into(), json!(committed));
            if record.commit == CommitPolicy::Rollback {
                body.insert("rolled_back".into(), json!(true));
            }
            body.insert("results".into(), results_json(record, results));
            let commit = transaction.as_ref().and_then(|t| t.result.as_ref());
            body.insert("commit".into(), commit.map_or(Value::Null, result_json));
        }
    }
    finished(record, &mut body);
    SuccessBody {
        members: body,
        result,
    }
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

/// The rows of a `RETURN` parameter (structure or table) with TYPE `E` or `A`.
fn return_errors(params: &Map<String, Value>) -> Vec<Value> {
    let rows: Vec<&Value> = match params.get("RETURN") {
        Some(Value::Array(rows)) => rows.iter().collect(),
        Some(row @ Value::Object(_)) => vec![row],
        _ => Vec::new(),
    };
    rows.into_iter()
        .filter(|row| matches!(row.get("TYPE").and_then(Value::as_str), Some("E" | "A")))
        .cloned()
        .collect()
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
        let now = OffsetDateTime::now_utc();
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

    /// The body as a `Map` with the result inserted renders it: same bytes.
    #[test]
    fn a_borrowed_result_renders_like_the_object_with_it() {
        let params = json!({"ECHOTEXT": "hi", "ZZ": [1, {"b": null}], "A": 1});
        let params = params.as_object().cloned().unwrap_or_default();
        let error = RfcError::new(ErrorGroup::AbapApplicationFailure, "X", "x");
        for results in [
            vec![CallResult::Ok(params.clone())],
            vec![CallResult::Error(error)],
            vec![],
        ] {
            let record = succeeded(CallKind::Function, results.clone());
            let mut expected = summary(&record);
            let result = match results.first() {
                Some(CallResult::Ok(params)) => Value::Object(params.clone()),
                _ => Value::Null,
            };
            expected.insert("result".into(), result);
            finished(&record, &mut expected);
            let rendered = serde_json::to_string(&success_body(&record)).unwrap();
            assert_eq!(rendered, Value::Object(expected).to_string());
        }
        // Without an outcome there is no `result` member at all.
        let mut record = succeeded(CallKind::Function, vec![]);
        record.outcome = None;
        let rendered = serde_json::to_string(&success_body(&record)).unwrap();
        assert_eq!(rendered, Value::Object(summary(&record)).to_string());
    }
}
