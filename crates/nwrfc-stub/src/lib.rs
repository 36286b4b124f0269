//! A stand-in for SAP's NW RFC library (`libsapnwrfc.so`) with the same C
//! interface, backed by sapbridge's SAP simulator: the same functions, data and
//! errors as the embedded simulator, reached through the same calls a program
//! makes to the real SDK. Tests load it with `sapbridge_nwrfc::Sdk::load`, as the
//! agent loads the real library; it is never shipped.
//!
//! Its conventions (a test's only way to steer it is the interface itself):
//! - Logon: `ASHOST` (or `MSHOST`) is the path of the simulator's state file (its
//!   directory must exist, else `RFC_COMMUNICATION_FAILURE`: partner not reached);
//!   `USER`/`PASSWD` must be `sapbridge_sap::sim::SIM_USER` / `SIM_PASSWORD`,
//!   otherwise `RFC_LOGON_FAILURE`; five failures in a row lock the user for the
//!   life of the process, as SAP's `login/fails_to_user_lock` does.
//! - Triggers, in `STFC_CONNECTION`'s `REQUTEXT`: `STUB:COMMUNICATION_FAILURE`
//!   breaks the connection mid-call; `STUB:SLEEP:<ms>` makes the call take that
//!   long unless `RfcCancel` stops it (`RFC_CANCELED`, connection unusable).
//! - ABAP exceptions and messages are the simulator's own (`TABLE_NOT_AVAILABLE`,
//!   `FU_NOT_FOUND`, ...); a buffer shorter than a value answers
//!   `RFC_BUFFER_TOO_SMALL` with the length needed.
//! - tRFC: a submitted unit runs in a fresh session and commits with its TID in the
//!   simulator's TID table; a TID already there is not run again; confirming
//!   forgets it. `SAPBRIDGE_STUB_SUBMIT_DELAY_MS` makes `RfcSubmitTransaction`
//!   wait that long after committing (a window to kill the caller in).
//!
//! Every exported function accepts a NULL error-info pointer and catches panics
//! (`RFC_UNKNOWN_ERROR`): nothing unwinds across the C boundary.
//!
//! # Layout
//! - [`container`]: type descriptions and data containers, JSON conversion.
//! - [`state`]: the process-wide state, logons, connections, metadata from the
//!   simulator.
//! - `connection_api`, `data_api`: the exported functions.

// `RfcError` / `RfcErrorInfo` carry SAP's texts as given; errors are the
// exception, and boxing each would buy nothing.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;

use sapbridge_nwrfc::RfcErrorInfo;
use sapbridge_nwrfc::ffi::{RFC_ERROR_GROUP, RFC_ERROR_INFO, RFC_RC, SAP_UC};

/// Defines exported functions: `#[no_mangle] extern "system"`, a panic caught and
/// answered with `$on_panic`, and a compile-time check that the signature is the
/// one the binding declares for the SDK.
macro_rules! export {
    (@panic rc $info:ident) => {
        // SAFETY: `info` is null or writable, per the SDK's contract.
        unsafe { crate::answer($info, Err(crate::panicked())) }
    };
    (@panic ptr $info:ident) => {
        // SAFETY: `info` is null or writable, per the SDK's contract.
        unsafe { crate::answer_ptr::<std::ffi::c_void>($info, Err(crate::panicked())) }
    };
    (@panic null) => {
        std::ptr::null()
    };
    ($(fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty, on_panic $kind:ident($($info:ident)?), $body:block)*) => {$(
        #[doc = concat!("`", stringify!($name), "` of the NW RFC interface.")]
        ///
        /// # Safety
        /// The SDK's contract: handles the stub returned and has not freed, strings
        /// terminated (or of the given length), buffers of the given size; the
        /// error-info pointer may be NULL.
        #[unsafe(no_mangle)]
        pub unsafe extern "system" fn $name($($arg: $ty),*) -> $ret {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> $ret { $body })) {
                Ok(value) => value,
                Err(_) => export!(@panic $kind $($info)?),
            }
        }
        const _: sapbridge_nwrfc::ffi::$name = $name;
    )*};
}

pub mod connection_api;
mod container;
pub mod data_api;
mod state;

/// Longest string the stub reads from a caller (units), against a missing NUL.
const MAX_TEXT: usize = 1 << 20;

/// Reads a zero-terminated `SAP_UC` string.
///
/// # Safety
/// `text` is null or points to a zero-terminated string (or `MAX_TEXT` units).
unsafe fn read_z(text: *const SAP_UC) -> Option<String> {
    if text.is_null() {
        return None;
    }
    let mut len = 0;
    // SAFETY: the caller guarantees the units up to the terminator are readable;
    // we stop at the terminator.
    while len < MAX_TEXT && unsafe { *text.add(len) } != 0 {
        len += 1;
    }
    // SAFETY: the `len` units before the terminator were just read one by one.
    let units = unsafe { std::slice::from_raw_parts(text, len) };
    Some(String::from_utf16_lossy(units))
}

/// Reads `len` `SAP_UC` units.
///
/// # Safety
/// `text` is null or points to `len` readable units.
unsafe fn read_n(text: *const SAP_UC, len: u32) -> Option<String> {
    if text.is_null() && len > 0 {
        return None;
    }
    if len == 0 {
        return Some(String::new());
    }
    // SAFETY: the caller guarantees `len` readable units at `text`.
    let units = unsafe { std::slice::from_raw_parts(text, len as usize) };
    Some(String::from_utf16_lossy(units))
}

/// Writes `result` into the caller's error info (if it gave one) and returns its
/// code.
///
/// # Safety
/// `info` is null or points to a writable `RFC_ERROR_INFO`.
unsafe fn answer(info: *mut RFC_ERROR_INFO, result: Result<(), RfcErrorInfo>) -> RFC_RC {
    // SAFETY: the caller guarantees `info` is null or valid for writes.
    let slot = unsafe { info.as_mut() };
    match result {
        Ok(()) => {
            if let Some(slot) = slot {
                *slot = RFC_ERROR_INFO::default();
            }
            RFC_RC::OK
        }
        Err(error) => {
            if let Some(slot) = slot {
                error.write_to(slot);
            }
            error.code
        }
    }
}

/// [`answer`] for functions that return a pointer: null on error.
///
/// # Safety
/// As [`answer`].
unsafe fn answer_ptr<T>(info: *mut RFC_ERROR_INFO, result: Result<*mut T, RfcErrorInfo>) -> *mut T {
    match result {
        Ok(ptr) => {
            // SAFETY: forwarded caller guarantee.
            unsafe { answer(info, Ok(())) };
            ptr
        }
        Err(error) => {
            // SAFETY: forwarded caller guarantee.
            unsafe { answer(info, Err(error)) };
            std::ptr::null_mut()
        }
    }
}

/// What a caught panic answers.
fn panicked() -> RfcErrorInfo {
    state::err(
        RFC_RC::UNKNOWN_ERROR,
        RFC_ERROR_GROUP::EXTERNAL_RUNTIME_FAILURE,
        "RFC_UNKNOWN_ERROR",
        "the NW RFC stub panicked",
    )
}

/// An invalid handle or pointer.
fn invalid(what: &str) -> RfcErrorInfo {
    state::err(
        RFC_RC::INVALID_HANDLE,
        RFC_ERROR_GROUP::EXTERNAL_RUNTIME_FAILURE,
        "RFC_INVALID_HANDLE",
        format!("invalid {what}"),
    )
}

/// An invalid argument.
fn invalid_parameter(message: impl Into<String>) -> RfcErrorInfo {
    state::err(
        RFC_RC::INVALID_PARAMETER,
        RFC_ERROR_GROUP::EXTERNAL_RUNTIME_FAILURE,
        "RFC_INVALID_PARAMETER",
        message,
    )
}

/// Logon parameters by upper-case name.
type LogonParameters = HashMap<String, String>;
