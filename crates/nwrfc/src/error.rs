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

    /// Writes this error into an `RFC_ERROR_INFO` (texts cut to the fields' sizes,
    /// always terminated): what a library exporting the SDK's interface does.
    pub fn write_to(&self, raw: &mut RFC_ERROR_INFO) {
        raw.code = self.code;
        raw.group = self.group;
        put(&mut raw.key, &self.key);
        put(&mut raw.message, &self.message);
        put(&mut raw.abapMsgClass, &self.msg_class);
        put(&mut raw.abapMsgType, &self.msg_type);
        put(&mut raw.abapMsgNumber, &self.msg_number);
        put(&mut raw.abapMsgV1, &self.msg_v[0]);
        put(&mut raw.abapMsgV2, &self.msg_v[1]);
        put(&mut raw.abapMsgV3, &self.msg_v[2]);
        put(&mut raw.abapMsgV4, &self.msg_v[3]);
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

/// Copies `text` into a fixed `SAP_UC` field, cut to leave room for the terminator.
fn put(field: &mut [u16], text: &str) {
    field.fill(0);
    let room = field.len().saturating_sub(1);
    for (slot, unit) in field.iter_mut().take(room).zip(text.encode_utf16()) {
        *slot = unit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_survive_the_raw_struct_and_long_texts_are_cut() {
        let mut error = RfcErrorInfo::local(
            RFC_RC::ABAP_EXCEPTION,
            "TABLE_NOT_AVAILABLE",
            "x".repeat(600),
        );
        error.group = RFC_ERROR_GROUP::ABAP_APPLICATION_FAILURE;
        error.msg_class = "DA".into();
        error.msg_v[3] = "vier".into();
        let mut raw = RFC_ERROR_INFO::default();
        error.write_to(&mut raw);
        let back = RfcErrorInfo::from_raw(&raw);
        assert_eq!(back.message.len(), 511);
        assert_eq!(
            (
                back.key.as_str(),
                back.msg_class.as_str(),
                back.msg_v[3].as_str()
            ),
            ("TABLE_NOT_AVAILABLE", "DA", "vier")
        );
        assert_eq!((back.code, back.group), (error.code, error.group));
    }
}
