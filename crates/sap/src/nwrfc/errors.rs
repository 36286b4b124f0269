//! The SDK's errors in sapbridge's model: PyRFC's groups, the exception key and
//! the ABAP message fields as SAP gave them.

use sapbridge_nwrfc::{RFC_ERROR_GROUP, RFC_RC, RfcErrorInfo};

use crate::{ErrorGroup, RfcError};

/// An [`RfcErrorInfo`] as an [`RfcError`]: `ABAP_APPLICATION_FAILURE` for ABAP
/// exceptions and messages, `ABAP_RUNTIME_FAILURE` for short dumps,
/// `LOGON_FAILURE`, `COMMUNICATION_FAILURE` (also for a cancelled or timed-out
/// call), `EXTERNAL_RUNTIME_FAILURE` for everything on the client side.
pub(crate) fn from_info(info: &RfcErrorInfo) -> RfcError {
    let group = match info.group {
        RFC_ERROR_GROUP::ABAP_APPLICATION_FAILURE => ErrorGroup::AbapApplicationFailure,
        RFC_ERROR_GROUP::ABAP_RUNTIME_FAILURE => ErrorGroup::AbapRuntimeFailure,
        RFC_ERROR_GROUP::LOGON_FAILURE => ErrorGroup::LogonFailure,
        RFC_ERROR_GROUP::COMMUNICATION_FAILURE => ErrorGroup::CommunicationFailure,
        _ => match info.code {
            RFC_RC::COMMUNICATION_FAILURE | RFC_RC::CLOSED | RFC_RC::CANCELED | RFC_RC::TIMEOUT => {
                ErrorGroup::CommunicationFailure
            }
            RFC_RC::LOGON_FAILURE => ErrorGroup::LogonFailure,
            RFC_RC::ABAP_EXCEPTION | RFC_RC::ABAP_MESSAGE | RFC_RC::ABAP_CLASS_EXCEPTION => {
                ErrorGroup::AbapApplicationFailure
            }
            RFC_RC::ABAP_RUNTIME_FAILURE => ErrorGroup::AbapRuntimeFailure,
            _ => ErrorGroup::ExternalRuntimeFailure,
        },
    };
    let key = if info.key.is_empty() {
        info.code.name()
    } else {
        info.key.as_str()
    };
    let [v1, v2, v3, v4] = &info.msg_v;
    RfcError::new(group, key, info.message.clone())
        .with_message(&info.msg_class, &info.msg_type, &info.msg_number)
        .with_vars(v1, v2, v3, v4)
}

/// Whether an error leaves the connection unusable (it is then discarded rather
/// than returned to the pool).
pub(crate) fn breaks_connection(error: &RfcError) -> bool {
    matches!(
        error.group,
        ErrorGroup::CommunicationFailure
            | ErrorGroup::LogonFailure
            | ErrorGroup::AbapRuntimeFailure
    )
}
