//! [`RfcErrorInfo`]: an `RFC_ERROR_INFO` read into Rust strings.

use crate::ffi::{RFC_ERROR_GROUP, RFC_ERROR_INFO, RFC_RC};
use crate::uc::from_uc;

/// What the SDK reported about a failure: its return code, group, key, message
/// and the ABAP message fields (empty when the failure has none).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} ({}): {}", .code.name(), .key, .message)]
pub struct RfcErrorInfo {
    /// The return code.
    pub code: RFC_RC,
    /// The error group.
    pub group: RFC_ERROR_GROUP,
    /// The exception or error key (`FU_NOT_FOUND`, `RFC_INVALID_PARAMETER`).
    pub key: String,
    /// The message text.
    pub message: String,
    /// ABAP message class.
    pub msg_class: String,
    /// ABAP message type.
    pub msg_type: String,
    /// ABAP message number.
    pub msg_number: String,
    /// Message variables 1 to 4.
    pub msg_v: [String; 4],
}

impl RfcErrorInfo {
    /// Reads an error info the SDK filled.
    pub fn from_raw(info: &RFC_ERROR_INFO) -> Self {
        Self {
            code: info.code,
            group: info.group,
            key: from_uc(&info.key),
            message: from_uc(&info.message),
            msg_class: from_uc(&info.abapMsgClass),
            msg_type: from_uc(&info.abapMsgType),
            msg_number: from_uc(&info.abapMsgNumber),
            msg_v: [
                from_uc(&info.abapMsgV1),
                from_uc(&info.abapMsgV2),
                from_uc(&info.abapMsgV3),
                from_uc(&info.abapMsgV4),
            ],
        }
    }

    /// An error raised on this side of the interface (a bad argument the SDK never
    /// saw, a handle the SDK did not return), in the SDK's own terms.
    pub fn local(code: RFC_RC, key: &str, message: impl Into<String>) -> Self {
        let group = if code == RFC_RC::COMMUNICATION_FAILURE {
            RFC_ERROR_GROUP::COMMUNICATION_FAILURE
        } else {
            RFC_ERROR_GROUP::EXTERNAL_RUNTIME_FAILURE
        };
        Self {
            code,
            group,
            key: key.to_owned(),
            message: message.into(),
            msg_class: String::new(),
            msg_type: String::new(),
            msg_number: String::new(),
            msg_v: Default::default(),
        }
    }

    /// A NUL character in a name or value.
    pub(crate) fn nul() -> Self {
        Self::local(
            RFC_RC::INVALID_PARAMETER,
            "RFC_INVALID_PARAMETER",
            "a name or value holds a NUL character",
        )
    }

    /// A length that does not fit the SDK's `unsigned`.
    pub(crate) fn too_long() -> Self {
        Self::local(
            RFC_RC::INVALID_PARAMETER,
            "RFC_INVALID_PARAMETER",
            "a value is longer than the RFC library can take",
        )
    }
}
