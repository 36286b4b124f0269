//! The subset of the NW RFC SDK's C interface (`sapnwrfc.h`) that sapbridge uses,
//! declared by hand: `#[repr(C)]` structures with compile-time size and offset
//! checks, enums as `u32` newtypes (a value the SDK adds later must not be
//! undefined behaviour in Rust), opaque handles as raw pointers, and the function
//! pointer types the library exports (`extern "system"`: `SAP_API` is the platform's
//! default C convention on x86_64 Linux and Windows).
//!
//! The declarations follow SAP's own open-source bindings (PyRFC's
//! `src/pyrfc/csapnwrfc.pxd`, node-rfc's sources): `SAP_UC` is a UTF-16 code unit,
//! `RFC_TID` holds 24 characters plus a terminator, `RFC_ERROR_INFO` is 1,752 bytes,
//! `RFC_PARAMETER_DESC` 328 and `RFC_FIELD_DESC` 104 on 64-bit platforms. The
//! `RFC_RC` values are those of PyRFC's `code2txt` table (0 = `RFC_OK` … 33), the
//! `RFCTYPE` values those of the SDK header as the .NET and ERPConnect bindings
//! list them (`RFCTYPE_STRING` = 29, `RFCTYPE_INT8` = 31).
//!
//! This module is public so that a stand-in library (sapbridge's test stub) can
//! export the same interface from the same declarations.

#![allow(non_camel_case_types, non_snake_case)]

use std::ffi::c_void;

/// One UTF-16 code unit: the SDK's character type on every Unicode platform.
pub type SAP_UC = u16;
/// A byte of raw data.
pub type SAP_RAW = u8;
/// `RFC_INT1`: an unsigned byte.
pub type RFC_INT1 = u8;
/// `RFC_INT2`.
pub type RFC_INT2 = i16;
/// `RFC_INT`: 4 bytes.
pub type RFC_INT = i32;
/// `RFC_INT8`.
pub type RFC_INT8 = i64;
/// `RFC_FLOAT`.
pub type RFC_FLOAT = f64;
/// `RFC_DATE`: 8 characters `YYYYMMDD`, not terminated.
pub type RFC_DATE = [SAP_UC; 8];
/// `RFC_TIME`: 6 characters `HHMMSS`, not terminated.
pub type RFC_TIME = [SAP_UC; 6];
/// `RFC_ABAP_NAME`: 30 characters plus a terminator.
pub type RFC_ABAP_NAME = [SAP_UC; 31];
/// Length of a tRFC transaction id (`RFC_TID_LN`).
pub const RFC_TID_LN: usize = 24;
/// `RFC_TID`: 24 characters plus a terminator.
pub type RFC_TID = [SAP_UC; RFC_TID_LN + 1];

/// `RFC_CONNECTION_HANDLE`.
pub type RFC_CONNECTION_HANDLE = *mut c_void;
/// `RFC_FUNCTION_DESC_HANDLE`.
pub type RFC_FUNCTION_DESC_HANDLE = *mut c_void;
/// `RFC_TYPE_DESC_HANDLE`.
pub type RFC_TYPE_DESC_HANDLE = *mut c_void;
/// `RFC_FUNCTION_HANDLE` (a data container).
pub type RFC_FUNCTION_HANDLE = *mut c_void;
/// `DATA_CONTAINER_HANDLE`: a function, structure or table row.
pub type DATA_CONTAINER_HANDLE = *mut c_void;
/// `RFC_STRUCTURE_HANDLE`.
pub type RFC_STRUCTURE_HANDLE = *mut c_void;
/// `RFC_TABLE_HANDLE`.
pub type RFC_TABLE_HANDLE = *mut c_void;
/// `RFC_TRANSACTION_HANDLE`.
pub type RFC_TRANSACTION_HANDLE = *mut c_void;

/// `RFC_RC`: the return code of every SDK function.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RFC_RC(pub u32);

impl RFC_RC {
    /// Everything O.K.
    pub const OK: Self = Self(0);
    /// Error in the network and communication layer.
    pub const COMMUNICATION_FAILURE: Self = Self(1);
    /// Unable to log on (wrong password, user locked, ...).
    pub const LOGON_FAILURE: Self = Self(2);
    /// A short dump on the ABAP side (`SYSTEM_FAILURE`).
    pub const ABAP_RUNTIME_FAILURE: Self = Self(3);
    /// The function module raised an E, A or X message.
    pub const ABAP_MESSAGE: Self = Self(4);
    /// The function module raised a classic exception.
    pub const ABAP_EXCEPTION: Self = Self(5);
    /// The connection was closed by the other side.
    pub const CLOSED: Self = Self(6);
    /// The call was cancelled (`RfcCancel`).
    pub const CANCELED: Self = Self(7);
    /// Time out.
    pub const TIMEOUT: Self = Self(8);
    /// Memory insufficient.
    pub const MEMORY_INSUFFICIENT: Self = Self(9);
    /// An invalid handle was passed.
    pub const INVALID_HANDLE: Self = Self(13);
    /// A function or type is not known (metadata).
    pub const NOT_FOUND: Self = Self(17);
    /// The operation is not supported on that handle.
    pub const NOT_SUPPORTED: Self = Self(18);
    /// The operation is not allowed in the handle's current state.
    pub const ILLEGAL_STATE: Self = Self(19);
    /// An invalid parameter (name, type, length) was passed.
    pub const INVALID_PARAMETER: Self = Self(20);
    /// A value could not be converted to the field's type.
    pub const CONVERSION_FAILURE: Self = Self(22);
    /// The buffer given was too small; the data was truncated.
    pub const BUFFER_TOO_SMALL: Self = Self(23);
    /// Moved before the first row of a table.
    pub const TABLE_MOVE_BOF: Self = Self(24);
    /// Moved past the last row of a table.
    pub const TABLE_MOVE_EOF: Self = Self(25);
    /// The function raised a class-based exception.
    pub const ABAP_CLASS_EXCEPTION: Self = Self(27);
    /// Something went wrong that the SDK cannot name.
    pub const UNKNOWN_ERROR: Self = Self(28);
    /// An authorization check failed.
    pub const AUTHORIZATION_FAILURE: Self = Self(29);

    /// The code's name as `RfcGetRcAsString` gives it (PyRFC's table).
    pub fn name(self) -> &'static str {
        const NAMES: [&str; 34] = [
            "RFC_OK",
            "RFC_COMMUNICATION_FAILURE",
            "RFC_LOGON_FAILURE",
            "RFC_ABAP_RUNTIME_FAILURE",
            "RFC_ABAP_MESSAGE",
            "RFC_ABAP_EXCEPTION",
            "RFC_CLOSED",
            "RFC_CANCELED",
            "RFC_TIMEOUT",
            "RFC_MEMORY_INSUFFICIENT",
            "RFC_VERSION_MISMATCH",
            "RFC_INVALID_PROTOCOL",
            "RFC_SERIALIZATION_FAILURE",
            "RFC_INVALID_HANDLE",
            "RFC_RETRY",
            "RFC_EXTERNAL_FAILURE",
            "RFC_EXECUTED",
            "RFC_NOT_FOUND",
            "RFC_NOT_SUPPORTED",
            "RFC_ILLEGAL_STATE",
            "RFC_INVALID_PARAMETER",
            "RFC_CODEPAGE_CONVERSION_FAILURE",
            "RFC_CONVERSION_FAILURE",
            "RFC_BUFFER_TOO_SMALL",
            "RFC_TABLE_MOVE_BOF",
            "RFC_TABLE_MOVE_EOF",
            "RFC_START_SAPGUI_FAILURE",
            "RFC_ABAP_CLASS_EXCEPTION",
            "RFC_UNKNOWN_ERROR",
            "RFC_AUTHORIZATION_FAILURE",
            "RFC_AUTHENTICATION_FAILURE",
            "RFC_CRYPTOLIB_FAILURE",
            "RFC_IO_FAILURE",
            "RFC_LOCKING_FAILURE",
        ];
        usize::try_from(self.0)
            .ok()
            .and_then(|i| NAMES.get(i))
            .copied()
            .unwrap_or("RFC_UNKNOWN_RC")
    }
}

/// `RFC_ERROR_GROUP`: which kind of failure an error is.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RFC_ERROR_GROUP(pub u32);

impl RFC_ERROR_GROUP {
    /// No error.
    pub const OK: Self = Self(0);
    /// An ABAP exception or message (`ABAPApplicationError` in PyRFC).
    pub const ABAP_APPLICATION_FAILURE: Self = Self(1);
    /// A short dump (`ABAPRuntimeError`).
    pub const ABAP_RUNTIME_FAILURE: Self = Self(2);
    /// Logon refused (`LogonError`).
    pub const LOGON_FAILURE: Self = Self(3);
    /// Network or connection failure (`CommunicationError`).
    pub const COMMUNICATION_FAILURE: Self = Self(4);
    /// A problem on the client side (`ExternalRuntimeError`).
    pub const EXTERNAL_RUNTIME_FAILURE: Self = Self(5);
    /// A failure raised by external server code.
    pub const EXTERNAL_APPLICATION_FAILURE: Self = Self(6);
    /// An authorization failure reported by external code.
    pub const EXTERNAL_AUTHORIZATION_FAILURE: Self = Self(7);
}

/// `RFCTYPE`: the type of a parameter or field.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RFCTYPE(pub u32);

impl RFCTYPE {
    /// `C`: fixed-length characters.
    pub const CHAR: Self = Self(0);
    /// `D`: date `YYYYMMDD`.
    pub const DATE: Self = Self(1);
    /// `P`: packed decimal.
    pub const BCD: Self = Self(2);
    /// `T`: time `HHMMSS`.
    pub const TIME: Self = Self(3);
    /// `X`: fixed-length raw bytes.
    pub const BYTE: Self = Self(4);
    /// An internal table.
    pub const TABLE: Self = Self(5);
    /// `N`: fixed-length digits.
    pub const NUM: Self = Self(6);
    /// `F`: a double.
    pub const FLOAT: Self = Self(7);
    /// `I`: 4-byte integer.
    pub const INT: Self = Self(8);
    /// `s`: 2-byte integer.
    pub const INT2: Self = Self(9);
    /// `b`: 1-byte unsigned integer.
    pub const INT1: Self = Self(10);
    /// A structure.
    pub const STRUCTURE: Self = Self(17);
    /// `decfloat16`.
    pub const DECF16: Self = Self(23);
    /// `decfloat34`.
    pub const DECF34: Self = Self(24);
    /// `string`: variable-length characters.
    pub const STRING: Self = Self(29);
    /// `xstring`: variable-length bytes.
    pub const XSTRING: Self = Self(30);
    /// `int8`.
    pub const INT8: Self = Self(31);
    /// `utclong`: a time stamp.
    pub const UTCLONG: Self = Self(32);
}

/// `RFC_DIRECTION`: the direction of a parameter (bit flags).
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RFC_DIRECTION(pub u32);

impl RFC_DIRECTION {
    /// IMPORTING.
    pub const IMPORT: Self = Self(0x01);
    /// EXPORTING.
    pub const EXPORT: Self = Self(0x02);
    /// CHANGING (`IMPORT | EXPORT`).
    pub const CHANGING: Self = Self(0x03);
    /// TABLES (`0x04 | CHANGING`).
    pub const TABLES: Self = Self(0x07);
}

/// `RFC_CONNECTION_PARAMETER`: one logon parameter, both strings terminated.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RFC_CONNECTION_PARAMETER {
    /// Parameter name (`ASHOST`, `USER`, ...).
    pub name: *const SAP_UC,
    /// Its value.
    pub value: *const SAP_UC,
}

/// `RFC_ERROR_INFO`: what went wrong, filled by every SDK function.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RFC_ERROR_INFO {
    /// The return code.
    pub code: RFC_RC,
    /// The error group.
    pub group: RFC_ERROR_GROUP,
    /// The exception key or error key.
    pub key: [SAP_UC; 128],
    /// The message text.
    pub message: [SAP_UC; 512],
    /// ABAP message class.
    pub abapMsgClass: [SAP_UC; 21],
    /// ABAP message type.
    pub abapMsgType: [SAP_UC; 2],
    /// ABAP message number.
    pub abapMsgNumber: [SAP_UC; 4],
    /// Message variable 1.
    pub abapMsgV1: [SAP_UC; 51],
    /// Message variable 2.
    pub abapMsgV2: [SAP_UC; 51],
    /// Message variable 3.
    pub abapMsgV3: [SAP_UC; 51],
    /// Message variable 4.
    pub abapMsgV4: [SAP_UC; 51],
}

impl Default for RFC_ERROR_INFO {
    fn default() -> Self {
        Self {
            code: RFC_RC::OK,
            group: RFC_ERROR_GROUP::OK,
            key: [0; 128],
            message: [0; 512],
            abapMsgClass: [0; 21],
            abapMsgType: [0; 2],
            abapMsgNumber: [0; 4],
            abapMsgV1: [0; 51],
            abapMsgV2: [0; 51],
            abapMsgV3: [0; 51],
            abapMsgV4: [0; 51],
        }
    }
}

/// `RFC_PARAMETER_DESC`: one parameter of a function description.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RFC_PARAMETER_DESC {
    /// Parameter name.
    pub name: RFC_ABAP_NAME,
    /// Direction.
    pub direction: RFC_DIRECTION,
    /// Type.
    pub type_: RFCTYPE,
    /// Length in bytes in a non-Unicode system.
    pub nucLength: u32,
    /// Length in bytes in a Unicode system.
    pub ucLength: u32,
    /// Decimals (BCD, DECF).
    pub decimals: u32,
    /// The type description of a structure or table parameter.
    pub typeDescHandle: RFC_TYPE_DESC_HANDLE,
    /// Default value as written in the interface.
    pub defaultValue: [SAP_UC; 31],
    /// Short text.
    pub parameterText: [SAP_UC; 80],
    /// Non-zero when the parameter is optional.
    pub optional: u8,
    /// Reserved for the SDK.
    pub extendedDescription: *mut c_void,
}

impl Default for RFC_PARAMETER_DESC {
    fn default() -> Self {
        Self {
            name: [0; 31],
            direction: RFC_DIRECTION::default(),
            type_: RFCTYPE::default(),
            nucLength: 0,
            ucLength: 0,
            decimals: 0,
            typeDescHandle: std::ptr::null_mut(),
            defaultValue: [0; 31],
            parameterText: [0; 80],
            optional: 0,
            extendedDescription: std::ptr::null_mut(),
        }
    }
}

/// `RFC_FIELD_DESC`: one field of a structure or table line type.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RFC_FIELD_DESC {
    /// Field name.
    pub name: RFC_ABAP_NAME,
    /// Type.
    pub type_: RFCTYPE,
    /// Length in bytes in a non-Unicode system.
    pub nucLength: u32,
    /// Offset in bytes in a non-Unicode system.
    pub nucOffset: u32,
    /// Length in bytes in a Unicode system.
    pub ucLength: u32,
    /// Offset in bytes in a Unicode system.
    pub ucOffset: u32,
    /// Decimals.
    pub decimals: u32,
    /// The type description of a nested structure or table.
    pub typeDescHandle: RFC_TYPE_DESC_HANDLE,
    /// Reserved for the SDK.
    pub extendedDescription: *mut c_void,
}

impl Default for RFC_FIELD_DESC {
    fn default() -> Self {
        Self {
            name: [0; 31],
            type_: RFCTYPE::default(),
            nucLength: 0,
            nucOffset: 0,
            ucLength: 0,
            ucOffset: 0,
            decimals: 0,
            typeDescHandle: std::ptr::null_mut(),
            extendedDescription: std::ptr::null_mut(),
        }
    }
}

// The layouts the SDK has on 64-bit platforms, checked when this crate compiles.
#[cfg(target_pointer_width = "64")]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<RFC_ERROR_INFO>() == 1752);
    assert!(offset_of!(RFC_ERROR_INFO, key) == 8);
    assert!(offset_of!(RFC_ERROR_INFO, message) == 8 + 2 * 128);
    assert!(offset_of!(RFC_ERROR_INFO, abapMsgClass) == 8 + 2 * 640);
    assert!(offset_of!(RFC_ERROR_INFO, abapMsgV4) == 8 + 2 * (640 + 21 + 2 + 4 + 3 * 51));
    assert!(size_of::<RFC_PARAMETER_DESC>() == 328);
    assert!(offset_of!(RFC_PARAMETER_DESC, direction) == 64);
    assert!(offset_of!(RFC_PARAMETER_DESC, decimals) == 80);
    assert!(offset_of!(RFC_PARAMETER_DESC, typeDescHandle) == 88);
    assert!(offset_of!(RFC_PARAMETER_DESC, defaultValue) == 96);
    assert!(offset_of!(RFC_PARAMETER_DESC, parameterText) == 158);
    assert!(offset_of!(RFC_PARAMETER_DESC, optional) == 318);
    assert!(offset_of!(RFC_PARAMETER_DESC, extendedDescription) == 320);
    assert!(size_of::<RFC_FIELD_DESC>() == 104);
    assert!(offset_of!(RFC_FIELD_DESC, type_) == 64);
    assert!(offset_of!(RFC_FIELD_DESC, decimals) == 84);
    assert!(offset_of!(RFC_FIELD_DESC, typeDescHandle) == 88);
    assert!(size_of::<RFC_TID>() == 25 * 2);
    assert!(size_of::<RFC_CONNECTION_PARAMETER>() == 16);
    assert!(size_of::<RFC_RC>() == 4 && size_of::<RFCTYPE>() == 4);
};

/// Declares the function pointer type of every SDK function sapbridge uses.
macro_rules! sdk_fns {
    ($($name:ident = fn($($arg:ty),*) -> $ret:ty;)*) => {
        $(
            #[doc = concat!("The type of `", stringify!($name), "`.")]
            pub type $name = unsafe extern "system" fn($($arg),*) -> $ret;
        )*
    };
}

/// `RFC_ERROR_INFO *`.
type Err = *mut RFC_ERROR_INFO;
/// `const SAP_UC *`.
type Uc = *const SAP_UC;
/// A data container.
type Dc = DATA_CONTAINER_HANDLE;

sdk_fns! {
    RfcGetVersion = fn(*mut u32, *mut u32, *mut u32) -> Uc;
    RfcOpenConnection = fn(*const RFC_CONNECTION_PARAMETER, u32, Err) -> RFC_CONNECTION_HANDLE;
    RfcCloseConnection = fn(RFC_CONNECTION_HANDLE, Err) -> RFC_RC;
    RfcCancel = fn(RFC_CONNECTION_HANDLE, Err) -> RFC_RC;
    RfcPing = fn(RFC_CONNECTION_HANDLE, Err) -> RFC_RC;
    RfcResetServerContext = fn(RFC_CONNECTION_HANDLE, Err) -> RFC_RC;
    RfcIsConnectionHandleValid = fn(RFC_CONNECTION_HANDLE, *mut RFC_INT, Err) -> RFC_RC;
    RfcGetFunctionDesc = fn(RFC_CONNECTION_HANDLE, Uc, Err) -> RFC_FUNCTION_DESC_HANDLE;
    RfcGetParameterCount = fn(RFC_FUNCTION_DESC_HANDLE, *mut u32, Err) -> RFC_RC;
    RfcGetParameterDescByIndex = fn(RFC_FUNCTION_DESC_HANDLE, u32, *mut RFC_PARAMETER_DESC, Err) -> RFC_RC;
    RfcGetFieldCount = fn(RFC_TYPE_DESC_HANDLE, *mut u32, Err) -> RFC_RC;
    RfcGetFieldDescByIndex = fn(RFC_TYPE_DESC_HANDLE, u32, *mut RFC_FIELD_DESC, Err) -> RFC_RC;
    RfcGetTypeName = fn(RFC_TYPE_DESC_HANDLE, *mut SAP_UC, Err) -> RFC_RC;
    RfcCreateFunction = fn(RFC_FUNCTION_DESC_HANDLE, Err) -> RFC_FUNCTION_HANDLE;
    RfcDestroyFunction = fn(RFC_FUNCTION_HANDLE, Err) -> RFC_RC;
    RfcInvoke = fn(RFC_CONNECTION_HANDLE, RFC_FUNCTION_HANDLE, Err) -> RFC_RC;
    RfcGetChars = fn(Dc, Uc, *mut SAP_UC, u32, Err) -> RFC_RC;
    RfcGetNum = fn(Dc, Uc, *mut SAP_UC, u32, Err) -> RFC_RC;
    RfcGetDate = fn(Dc, Uc, *mut SAP_UC, Err) -> RFC_RC;
    RfcGetTime = fn(Dc, Uc, *mut SAP_UC, Err) -> RFC_RC;
    RfcGetString = fn(Dc, Uc, *mut SAP_UC, u32, *mut u32, Err) -> RFC_RC;
    RfcGetStringLength = fn(Dc, Uc, *mut u32, Err) -> RFC_RC;
    RfcGetBytes = fn(Dc, Uc, *mut SAP_RAW, u32, Err) -> RFC_RC;
    RfcGetXString = fn(Dc, Uc, *mut SAP_RAW, u32, *mut u32, Err) -> RFC_RC;
    RfcGetInt = fn(Dc, Uc, *mut RFC_INT, Err) -> RFC_RC;
    RfcGetInt1 = fn(Dc, Uc, *mut RFC_INT1, Err) -> RFC_RC;
    RfcGetInt2 = fn(Dc, Uc, *mut RFC_INT2, Err) -> RFC_RC;
    RfcGetInt8 = fn(Dc, Uc, *mut RFC_INT8, Err) -> RFC_RC;
    RfcGetFloat = fn(Dc, Uc, *mut RFC_FLOAT, Err) -> RFC_RC;
    RfcSetChars = fn(Dc, Uc, Uc, u32, Err) -> RFC_RC;
    RfcSetNum = fn(Dc, Uc, Uc, u32, Err) -> RFC_RC;
    RfcSetDate = fn(Dc, Uc, Uc, Err) -> RFC_RC;
    RfcSetTime = fn(Dc, Uc, Uc, Err) -> RFC_RC;
    RfcSetString = fn(Dc, Uc, Uc, u32, Err) -> RFC_RC;
    RfcSetBytes = fn(Dc, Uc, *const SAP_RAW, u32, Err) -> RFC_RC;
    RfcSetXString = fn(Dc, Uc, *const SAP_RAW, u32, Err) -> RFC_RC;
    RfcSetInt = fn(Dc, Uc, RFC_INT, Err) -> RFC_RC;
    RfcSetInt1 = fn(Dc, Uc, RFC_INT1, Err) -> RFC_RC;
    RfcSetInt2 = fn(Dc, Uc, RFC_INT2, Err) -> RFC_RC;
    RfcSetInt8 = fn(Dc, Uc, RFC_INT8, Err) -> RFC_RC;
    RfcSetFloat = fn(Dc, Uc, RFC_FLOAT, Err) -> RFC_RC;
    RfcGetStructure = fn(Dc, Uc, *mut RFC_STRUCTURE_HANDLE, Err) -> RFC_RC;
    RfcGetTable = fn(Dc, Uc, *mut RFC_TABLE_HANDLE, Err) -> RFC_RC;
    RfcGetRowCount = fn(RFC_TABLE_HANDLE, *mut u32, Err) -> RFC_RC;
    RfcMoveTo = fn(RFC_TABLE_HANDLE, u32, Err) -> RFC_RC;
    RfcGetCurrentRow = fn(RFC_TABLE_HANDLE, Err) -> RFC_STRUCTURE_HANDLE;
    RfcAppendNewRow = fn(RFC_TABLE_HANDLE, Err) -> RFC_STRUCTURE_HANDLE;
    RfcCreateTransaction = fn(RFC_CONNECTION_HANDLE, Uc, Uc, Err) -> RFC_TRANSACTION_HANDLE;
    RfcInvokeInTransaction = fn(RFC_TRANSACTION_HANDLE, RFC_FUNCTION_HANDLE, Err) -> RFC_RC;
    RfcSubmitTransaction = fn(RFC_TRANSACTION_HANDLE, Err) -> RFC_RC;
    RfcConfirmTransaction = fn(RFC_TRANSACTION_HANDLE, Err) -> RFC_RC;
    RfcDestroyTransaction = fn(RFC_TRANSACTION_HANDLE, Err) -> RFC_RC;
}
