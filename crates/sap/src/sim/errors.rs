//! The simulator's errors in SAP's terms: the [`RfcError`]s a real system (seen
//! through PyRFC / the NW RFC SDK) raises, and BAPI `RETURN` messages
//! (`BAPIRET1`, `BAPIRETURN1`, `BAPIRET2` all share the message part).

use serde_json::{Map, Value};

use crate::{ErrorGroup, Parameters, RfcError};

/// `FU_NOT_FOUND` for a function module the system does not have: message FL 046,
/// as the RFC runtime raises it.
pub(crate) fn function_not_found(name: &str) -> RfcError {
    RfcError::new(
        ErrorGroup::AbapApplicationFailure,
        "FU_NOT_FOUND",
        format!("ID:FL Type:E Number:046 {name}"),
    )
    .with_message("FL", "E", "046")
    .with_vars(name, "", "", "")
}

/// A classic ABAP exception raised by a function module (`RAISE key` or
/// `MESSAGE ... RAISING key`).
pub(crate) fn abap_exception(key: &str, msg: Option<Msg<'_>>) -> RfcError {
    match msg {
        None => RfcError::new(ErrorGroup::AbapApplicationFailure, key, key),
        Some(m) => RfcError::new(
            ErrorGroup::AbapApplicationFailure,
            key,
            format!("ID:{} Type:E Number:{} {}", m.class, m.number, m.v1),
        )
        .with_message(m.class, "E", m.number)
        .with_vars(m.v1, m.v2, "", ""),
    }
}

/// `RFC_INVALID_PARAMETER`: the caller named a parameter or field the interface
/// does not have (PyRFC: "field 'X' not found").
pub(crate) fn invalid_parameter(path: &str) -> RfcError {
    RfcError::new(
        ErrorGroup::ExternalRuntimeFailure,
        "RFC_INVALID_PARAMETER",
        format!("field '{path}' not found"),
    )
}

/// `RFC_CONVERSION_FAILURE`: a value that does not fit the field's type.
pub(crate) fn conversion_failure(path: &str, why: impl std::fmt::Display) -> RfcError {
    RfcError::new(
        ErrorGroup::ExternalRuntimeFailure,
        "RFC_CONVERSION_FAILURE",
        format!("Cannot convert value of '{path}': {why}"),
    )
}

/// `COMMUNICATION_FAILURE` injected by the `fault_rate` knob.
pub(crate) fn injected_fault() -> RfcError {
    RfcError::new(
        ErrorGroup::CommunicationFailure,
        "RFC_COMMUNICATION_FAILURE",
        "connection to partner broken (simulated fault)",
    )
}

/// A failure of the simulator's own storage, reported as SAP reports a database
/// error: an ABAP runtime error (short dump).
pub(crate) fn storage_failure(err: impl std::fmt::Display) -> RfcError {
    tracing::error!(error = %err, "simulator storage failure");
    RfcError::new(
        ErrorGroup::AbapRuntimeFailure,
        "DBIF_RSQL_SQL_ERROR",
        "SQL error in the database when accessing a table",
    )
}

/// An SAP message: class, number, text and variables.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Msg<'a> {
    /// Message class (`F2`).
    pub(crate) class: &'a str,
    /// Message number, three digits.
    pub(crate) number: &'a str,
    /// Message variable 1.
    pub(crate) v1: &'a str,
    /// Message variable 2.
    pub(crate) v2: &'a str,
}

/// The messages the simulated BAPIs return.
pub(crate) mod msg {
    /// F2 502: customer does not exist. V1 = customer.
    pub(crate) const CUSTOMER_NOT_FOUND: (&str, &str, &str) =
        ("F2", "502", "Customer &1 does not exist");
    /// F2 503: customer not created in company code. V1 = customer, V2 = company code.
    pub(crate) const NOT_IN_COMPANY_CODE: (&str, &str, &str) = (
        "F2",
        "503",
        "Customer &1 exists but has not been created in company code &2",
    );
    /// F2 156: customer not created for sales area. V1 = customer, V2..V4 = area.
    pub(crate) const NOT_IN_SALES_AREA: (&str, &str, &str) = (
        "F2",
        "156",
        "Customer &1 is not created for sales area &2 &3 &4",
    );
    /// F2 267: sales area incomplete.
    pub(crate) const SALES_AREA_INCOMPLETE: (&str, &str, &str) = (
        "F2",
        "267",
        "Please specify the sales area in full or not at all",
    );
    /// F2 718: GETLIST found nothing.
    pub(crate) const NO_CUSTOMERS_FOUND: (&str, &str, &str) = (
        "F2",
        "718",
        "No customers were found for the selection criteria",
    );
    /// 00 055: a required entry field is empty. V1 = the field.
    pub(crate) const REQUIRED_FIELD: (&str, &str, &str) =
        ("00", "055", "Fill in all required entry fields");
    /// F2 048: both or neither of personal/company data given.
    pub(crate) const PERSON_OR_COMPANY: (&str, &str, &str) =
        ("F2", "048", "Enter either personal data or company data");
    /// S& 026: range SIGN invalid. V1 = the value.
    pub(crate) const RANGE_SIGN: (&str, &str, &str) = (
        "S&",
        "026",
        "Ranges: Value &1 in field SIGN is invalid. Allowed values are I, E.",
    );
    /// S& 027: range OPTION invalid. V1 = the value.
    pub(crate) const RANGE_OPTION: (&str, &str, &str) =
        ("S&", "027", "Ranges: Value &1 in field OPTION is invalid");
}

/// Builds a return structure (`TYPE`, `ID`, `NUMBER`, `MESSAGE`, `MESSAGE_V1..V4`)
/// with `&1`..`&4` in the text replaced by the variables. Fields the target
/// structure does not have are dropped later by output formatting; missing ones are
/// filled initial.
pub(crate) fn bapi_return(
    msg_type: &str,
    (class, number, text): (&str, &str, &str),
    vars: &[&str],
) -> Value {
    let mut message = text.to_owned();
    for (i, v) in vars.iter().enumerate() {
        message = message.replace(&format!("&{}", i + 1), v);
    }
    let mut m = Map::new();
    m.insert("TYPE".into(), msg_type.into());
    m.insert("ID".into(), class.into());
    m.insert("NUMBER".into(), number.into());
    m.insert("MESSAGE".into(), message.into());
    for i in 0..4 {
        let v = vars.get(i).copied().unwrap_or("");
        m.insert(format!("MESSAGE_V{}", i + 1), v.into());
    }
    Value::Object(m)
}

/// A one-parameter result: `RETURN` set to `ret`.
pub(crate) fn with_return(ret: Value) -> Parameters {
    let mut out = Parameters::new();
    out.insert("RETURN".into(), ret);
    out
}
