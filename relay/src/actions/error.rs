//! [`ActionError`]: why an action has no answer, as the action knows it. The HTTP
//! layer turns each into its problem (status, type, title, detail), the one place
//! where the API's problems are written.

use sapbridge_proto::RfcError;
use serde_json::Value;

use crate::queue::CallRecord;

/// Why an action has no answer.
#[derive(Debug, Clone)]
pub(crate) enum ActionError {
    /// The request is malformed or asks for something the action cannot do;
    /// nothing more is queued (400).
    BadRequest(String),
    /// The unit did not run to an end the action can read (cancelled, expired,
    /// denied by the agent, SAP unreachable, not committed): the call's own failure.
    Call(Box<CallRecord>),
    /// A call of the unit failed with this RFC error (answered by its group).
    Rfc(Box<RfcError>),
    /// The agent reported no result for call `index` of the unit.
    MissingResult(usize),
    /// A BAPI's `RETURN` says it failed: the message row, and the RFC error that
    /// describes it.
    Business {
        /// The `RETURN` row.
        row: Value,
        /// The row as an `ABAP_APPLICATION_FAILURE` with key `RETURN`.
        error: Box<RfcError>,
    },
    /// A customer BAPI's `RETURN` says the customer does not exist (F2 502).
    CustomerNotFound {
        /// The `RETURN` row.
        row: Value,
        /// The row as an `ABAP_APPLICATION_FAILURE` with key `RETURN`.
        error: Box<RfcError>,
    },
    /// SAP refused a table read for a reason the request can fix.
    Table {
        /// The table.
        table: String,
        /// What SAP said.
        refusal: TableRefusal,
        /// SAP's exception.
        error: Box<RfcError>,
    },
    /// SAP has no such function module.
    FunctionNotFound {
        /// The function module.
        function: String,
        /// SAP's exception.
        error: Box<RfcError>,
    },
    /// The parts of a split table read do not fit together (the table changed
    /// between the reads, or SAP returned rows in another order); says how.
    InconsistentRead(&'static str),
}

/// Why SAP refused a table read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableRefusal {
    /// No such table, or none SAP can read (`TABLE_NOT_AVAILABLE`,
    /// `TABLE_WITHOUT_DATA`, `NOT_FOUND`).
    NotFound,
    /// A requested field is not a field of the table (`FIELD_NOT_VALID`).
    InvalidField,
    /// SAP could not parse the where clause (`OPTION_NOT_VALID`).
    InvalidWhere,
    /// The SAP user may not read the table (`NOT_AUTHORIZED`).
    NotAuthorized,
}

impl TableRefusal {
    /// The refusal an ABAP exception of `RFC_READ_TABLE` or `DDIF_FIELDINFO_GET`
    /// means, if it is one the request can fix.
    pub(crate) fn of(key: &str) -> Option<Self> {
        match key {
            "TABLE_NOT_AVAILABLE" | "TABLE_WITHOUT_DATA" | "NOT_FOUND" => Some(Self::NotFound),
            "FIELD_NOT_VALID" => Some(Self::InvalidField),
            "OPTION_NOT_VALID" => Some(Self::InvalidWhere),
            "NOT_AUTHORIZED" => Some(Self::NotAuthorized),
            _ => None,
        }
    }
}
