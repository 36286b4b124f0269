//! Reading a final call of an action: its per-call results, SAP's `RETURN`
//! messages, and the problems they become.
//!
//! A BAPI reports business errors in `RETURN` (`BAPIRET1`, `BAPIRETURN1`,
//! `BAPIRET2`); the high-level actions turn TYPE `E` or `A` into a `422` problem
//! whose `rfc_error` carries SAP's message class (`ID`), number, type, text and
//! variables, with `key` `RETURN` (the message came from the `RETURN` parameter,
//! not from an ABAP exception).

use http::StatusCode;
use sapbridge_proto::{CallResult, ErrorGroup, Outcome, Parameters, RfcError, TransactionOutcome};
use sapbridge_sap::bapi_return;
use serde_json::{Value, json};

use super::super::error::Problem;
use super::super::render::{error_problem, failure};
use crate::http::ApiError;
use crate::queue::CallRecord;

/// The results of a unit that ran (whether it committed or not).
///
/// # Errors
/// The call's problem when it did not run: cancelled, expired, denied by the
/// agent, SAP unreachable.
pub(crate) fn completed(
    record: &CallRecord,
) -> Result<(&[CallResult], Option<&TransactionOutcome>), ApiError> {
    match &record.outcome {
        Some(Outcome::Completed {
            results,
            transaction,
        }) => Ok((results, transaction.as_ref())),
        _ => Err(ApiError::Call(Box::new(failure(record)))),
    }
}

/// The parameters call `index` returned.
///
/// # Errors
/// The problem of the call's RFC error (by its group), or a 502 when the agent
/// reported no result for it.
pub(crate) fn call_params(results: &[CallResult], index: usize) -> Result<&Parameters, ApiError> {
    match results.get(index) {
        Some(CallResult::Ok(params)) => Ok(params),
        Some(CallResult::Error(error)) => Err(rfc_problem(error)),
        None => Err(ApiError::Call(Box::new(Problem::new(
            StatusCode::BAD_GATEWAY,
            "invalid-outcome",
            "Invalid agent outcome",
            format!("the agent reported no result for call {index} of the unit"),
        )))),
    }
}

/// The problem for an RFC error, by its group (as for plain calls).
pub(crate) fn rfc_problem(error: &RfcError) -> ApiError {
    ApiError::Call(Box::new(error_problem(error)))
}

/// The first `RETURN` row (structure or table) that says the BAPI failed
/// ([`bapi_return`]).
pub(crate) fn return_error_row(params: &Parameters) -> Option<&Value> {
    bapi_return::first_error(params)
}

/// A string member of a JSON object (`""` when absent).
pub(crate) fn text<'a>(row: &'a Value, name: &str) -> &'a str {
    row.get(name).and_then(Value::as_str).unwrap_or("")
}

/// The `422` problem for a `RETURN` row with TYPE `E` or `A`.
pub(crate) fn return_problem(row: &Value) -> ApiError {
    return_problem_with(
        row,
        StatusCode::UNPROCESSABLE_ENTITY,
        "business-error",
        "SAP business error",
    )
}

/// A problem of any status for a `RETURN` row (`404` for "does not exist").
pub(crate) fn return_problem_with(
    row: &Value,
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
) -> ApiError {
    let message = text(row, "MESSAGE");
    let error = RfcError::new(ErrorGroup::AbapApplicationFailure, "RETURN", message)
        .with_message(text(row, "ID"), text(row, "TYPE"), text(row, "NUMBER"))
        .with_vars(
            text(row, "MESSAGE_V1"),
            text(row, "MESSAGE_V2"),
            text(row, "MESSAGE_V3"),
            text(row, "MESSAGE_V4"),
        );
    let detail = if message.is_empty() {
        format!("SAP message {} {}", error.msg_class, error.msg_number)
    } else {
        message.to_owned()
    };
    let mut problem = Problem::new(status, slug, title, detail);
    problem.extra.insert("rfc_error".into(), json!(error));
    problem.extra.insert("return".into(), row.clone());
    ApiError::Call(Box::new(problem))
}

/// Puts the action's first call id on a problem built from one of its steps.
pub(crate) fn with_call_id(error: ApiError, call_id: &str) -> ApiError {
    match error {
        ApiError::Call(mut problem) => {
            problem.call_id = Some(call_id.to_owned());
            ApiError::Call(problem)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_rows_are_found_in_structures_and_tables() {
        let mut params = Parameters::new();
        params.insert("RETURN".into(), json!({"TYPE": "", "MESSAGE": ""}));
        assert!(return_error_row(&params).is_none());
        // TYPE is CHAR1: a padded value is the same type, as the agent reads it.
        params.insert("RETURN".into(), json!({"TYPE": " E ", "MESSAGE": "x"}));
        assert!(return_error_row(&params).is_some());
        params.insert(
            "RETURN".into(),
            json!([{"TYPE": "S"}, {"TYPE": "E", "ID": "F2", "NUMBER": "502"}]),
        );
        let row = return_error_row(&params).expect("error row");
        assert_eq!(text(row, "ID"), "F2");
        let ApiError::Call(problem) = return_problem(row) else {
            panic!("a call problem")
        };
        assert_eq!(problem.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem.extra["rfc_error"]["msg_number"], "502");
        assert_eq!(problem.extra["rfc_error"]["key"], "RETURN");
    }
}
