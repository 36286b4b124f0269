//! The error model shared by relay and agent: PyRFC's error groups plus SAP's message
//! fields, and the few sapbridge-specific groups (not allowed, outcome unknown).

use serde::{Deserialize, Serialize};

/// What kind of failure a call met, in PyRFC's terms where SAP defines one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorGroup {
    /// An ABAP exception raised by the function module; `key` names it
    /// (for example `TABLE_NOT_AVAILABLE`, `FU_NOT_FOUND`).
    AbapApplicationFailure,
    /// A runtime error (short dump) in the ABAP system.
    AbapRuntimeFailure,
    /// The SAP system could not be reached or the connection broke.
    CommunicationFailure,
    /// The SAP system refused the logon (user, password, client).
    LogonFailure,
    /// The caller's parameters do not fit the function's interface (unknown
    /// parameter, wrong type, NUMC with letters, DATS not a date). PyRFC's
    /// `ExternalRuntimeError`.
    ExternalRuntimeFailure,
    /// The agent's allowlist does not allow this function (or table, or path).
    NotAllowed,
    /// The agent cannot tell whether the call ran: it was in flight when the agent
    /// died and is not safe to run again.
    OutcomeUnknown,
    /// The call was not executed because its deadline had passed.
    Expired,
}

impl ErrorGroup {
    /// The group's name as written on the wire and in problem bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AbapApplicationFailure => "ABAP_APPLICATION_FAILURE",
            Self::AbapRuntimeFailure => "ABAP_RUNTIME_FAILURE",
            Self::CommunicationFailure => "COMMUNICATION_FAILURE",
            Self::LogonFailure => "LOGON_FAILURE",
            Self::ExternalRuntimeFailure => "EXTERNAL_RUNTIME_FAILURE",
            Self::NotAllowed => "NOT_ALLOWED",
            Self::OutcomeUnknown => "OUTCOME_UNKNOWN",
            Self::Expired => "EXPIRED",
        }
    }
}

/// A failed function call: the group, the exception key and SAP's message fields.
///
/// Empty message fields are sent as empty strings, as SAP does.
// Its OpenAPI schema (`utoipa::ToSchema`) is the relay's `RfcError` component:
// `rfc_error` of a problem, `error` of a transaction's call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RfcError {
    /// The error group.
    #[schema(schema_with = <ErrorGroup as utoipa::PartialSchema>::schema)]
    pub group: ErrorGroup,
    /// The ABAP exception key or RFC error key (`FU_NOT_FOUND`, `RFC_INVALID_PARAMETER`);
    /// `RETURN` for a business message (a BAPI's `RETURN` with TYPE E or A).
    pub key: String,
    /// A human-readable message.
    pub message: String,
    /// Message class (`SV`, `F2`, ...).
    #[serde(default)]
    pub msg_class: String,
    /// Message type (`E`, `A`, `W`, `I`, `S`).
    #[serde(default)]
    pub msg_type: String,
    /// Message number, three digits.
    #[serde(default)]
    pub msg_number: String,
    /// Message variable 1.
    #[serde(default)]
    pub msg_v1: String,
    /// Message variable 2.
    #[serde(default)]
    pub msg_v2: String,
    /// Message variable 3.
    #[serde(default)]
    pub msg_v3: String,
    /// Message variable 4.
    #[serde(default)]
    pub msg_v4: String,
}

impl RfcError {
    /// An error with a group, key and message and empty message fields.
    pub fn new(group: ErrorGroup, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            group,
            key: key.into(),
            message: message.into(),
            msg_class: String::new(),
            msg_type: String::new(),
            msg_number: String::new(),
            msg_v1: String::new(),
            msg_v2: String::new(),
            msg_v3: String::new(),
            msg_v4: String::new(),
        }
    }

    /// Sets SAP's message class, type and number (builder style).
    pub fn with_message(mut self, class: &str, msg_type: &str, number: &str) -> Self {
        self.msg_class = class.to_owned();
        self.msg_type = msg_type.to_owned();
        self.msg_number = number.to_owned();
        self
    }

    /// Sets the message variables V1..V4 (builder style).
    pub fn with_vars(mut self, v1: &str, v2: &str, v3: &str, v4: &str) -> Self {
        self.msg_v1 = v1.to_owned();
        self.msg_v2 = v2.to_owned();
        self.msg_v3 = v3.to_owned();
        self.msg_v4 = v4.to_owned();
        self
    }
}

impl std::fmt::Display for RfcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.group.as_str(), self.key, self.message)
    }
}

impl std::error::Error for RfcError {}
