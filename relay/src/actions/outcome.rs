//! Reading a final call of an action: its per-call results, SAP's `RETURN`
//! messages, and the [`ActionError`]s they become.
//!
//! A BAPI reports business errors in `RETURN` (`BAPIRET1`, `BAPIRETURN1`,
//! `BAPIRET2`); which messages are errors is `sapbridge_sap::bapi_return`'s rule.
//! The actions turn such a message into [`ActionError::Business`], whose RFC error
//! carries SAP's message class (`ID`), number, type, text and variables, with key
//! `RETURN` (the message came from the `RETURN` parameter, not from an ABAP
//! exception).

use sapbridge_proto::{CallResult, ErrorGroup, Outcome, Parameters, RfcError, TransactionOutcome};
use sapbridge_sap::bapi_return;
use serde_json::Value;

use super::ActionError;
use crate::queue::CallRecord;

/// The results of a unit that ran (whether it committed or not).
///
/// # Errors
/// [`ActionError::Call`] when it did not run: cancelled, expired, denied by the
/// agent, SAP unreachable.
pub(crate) fn completed(
    record: &CallRecord,
) -> Result<(&[CallResult], Option<&TransactionOutcome>), ActionError> {
    match &record.outcome {
        Some(Outcome::Completed {
            results,
            transaction,
        }) => Ok((results, transaction.as_ref())),
        _ => Err(ActionError::Call(Box::new(record.clone()))),
    }
}

/// The parameters call `index` returned.
///
/// # Errors
/// The call's RFC error, or [`ActionError::MissingResult`] when the agent
/// reported no result for it.
pub(crate) fn call_params(
    results: &[CallResult],
    index: usize,
) -> Result<&Parameters, ActionError> {
    match results.get(index) {
        Some(CallResult::Ok(params)) => Ok(params),
        Some(CallResult::Error(error)) => Err(ActionError::Rfc(Box::new(error.clone()))),
        None => Err(ActionError::MissingResult(index)),
    }
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

/// A `RETURN` row as an RFC error: `ABAP_APPLICATION_FAILURE` with key `RETURN`,
/// SAP's message and its class, type, number and variables.
pub(crate) fn return_rfc_error(row: &Value) -> RfcError {
    RfcError::new(
        ErrorGroup::AbapApplicationFailure,
        "RETURN",
        text(row, "MESSAGE"),
    )
    .with_message(text(row, "ID"), text(row, "TYPE"), text(row, "NUMBER"))
    .with_vars(
        text(row, "MESSAGE_V1"),
        text(row, "MESSAGE_V2"),
        text(row, "MESSAGE_V3"),
        text(row, "MESSAGE_V4"),
    )
}

/// [`ActionError::Business`] for a `RETURN` row that says the BAPI failed.
pub(crate) fn business_error(row: &Value) -> ActionError {
    ActionError::Business {
        error: Box::new(return_rfc_error(row)),
        row: row.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
        let ActionError::Business { error, row: kept } = business_error(row) else {
            panic!("a business error")
        };
        assert_eq!(error.msg_number, "502");
        assert_eq!(error.key, "RETURN");
        assert_eq!(error.group, ErrorGroup::AbapApplicationFailure);
        assert_eq!(&kept, row);
    }
}
