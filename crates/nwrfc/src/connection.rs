//! [`Connection`]: one RFC connection (one ABAP user session), [`Canceller`]: the
//! way to stop a call on it from another thread, and [`Transaction`]: a tRFC
//! logical unit of work identified by a TID.
//!
//! Threads: the SDK lets a connection be used from any thread but by one at a time,
//! so [`Connection`] is `Send` and its calls take `&mut self`; `RfcCancel` is the
//! one function meant to be called from another thread while a call runs, which
//! [`Canceller`] does. The connection's handle sits in a slot shared with its
//! cancellers: closing the connection empties the slot under its lock, so a
//! canceller never passes the SDK a handle that was already closed.

use std::sync::{Arc, Mutex, PoisonError};

use crate::data::Function;
use crate::error::RfcErrorInfo;
use crate::ffi::{self, RFC_CONNECTION_HANDLE, RFC_ERROR_INFO, RFC_RC, RFC_TID_LN};
use crate::library::Sdk;
use crate::metadata::FunctionDesc;
use crate::uc::{NulInText, to_uc_z};

/// `rc` as a result, with the SDK's error info when it is not `RFC_OK`.
pub(crate) fn check(rc: RFC_RC, info: &RFC_ERROR_INFO) -> Result<(), RfcErrorInfo> {
    if rc == RFC_RC::OK {
        Ok(())
    } else {
        let mut error = RfcErrorInfo::from_raw(info);
        // Some calls fill the return code only.
        if error.code == RFC_RC::OK {
            error.code = rc;
        }
        Err(error)
    }
}

/// The connection handle as shared with cancellers (`None` once closed).
type Slot = Arc<Mutex<Option<usize>>>;

/// An open RFC connection. Dropping it closes the connection, which ends the ABAP
/// session and discards its uncommitted work.
pub struct Connection {
    sdk: &'static Sdk,
    handle: RFC_CONNECTION_HANDLE,
    slot: Slot,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

// SAFETY: the SDK allows a connection handle to be used from any thread as long as
// calls on it do not overlap; every method that uses the handle takes `&mut self`
// (or, for `is_valid`, only reads state the SDK guards itself), so they cannot.
unsafe impl Send for Connection {}

impl Connection {
    /// Opens a connection with logon parameters (`ASHOST`, `SYSNR`, `CLIENT`,
    /// `USER`, `PASSWD`, ...). Blocks for the network round trips of the logon.
    ///
    /// # Errors
    /// The SDK's error: `RFC_LOGON_FAILURE`, `RFC_COMMUNICATION_FAILURE`,
    /// `RFC_INVALID_PARAMETER` for a parameter it does not know.
    pub fn open(sdk: &'static Sdk, parameters: &[(&str, &str)]) -> Result<Self, RfcErrorInfo> {
        let texts = parameters
            .iter()
            .map(|(name, value)| Ok((to_uc_z(name)?, to_uc_z(value)?)))
            .collect::<Result<Vec<_>, NulInText>>()
            .map_err(|_| RfcErrorInfo::nul())?;
        let raw: Vec<ffi::RFC_CONNECTION_PARAMETER> = texts
            .iter()
            .map(|(name, value)| ffi::RFC_CONNECTION_PARAMETER {
                name: name.as_ptr(),
                value: value.as_ptr(),
            })
            .collect();
        let count = u32::try_from(raw.len()).map_err(|_| RfcErrorInfo::too_long())?;
        let mut info = RFC_ERROR_INFO::default();
        // SAFETY: `raw` holds `count` parameters whose strings are zero-terminated
        // and live in `texts` until after the call; `info` is a valid out-pointer.
        let handle = unsafe { (sdk.api.RfcOpenConnection)(raw.as_ptr(), count, &mut info) };
        if handle.is_null() {
            let mut error = RfcErrorInfo::from_raw(&info);
            if error.code == RFC_RC::OK {
                error.code = RFC_RC::UNKNOWN_ERROR;
            }
            return Err(error);
        }
        Ok(Self {
            sdk,
            handle,
            slot: Arc::new(Mutex::new(Some(handle as usize))),
        })
    }

    /// The library this connection belongs to.
    pub fn sdk(&self) -> &'static Sdk {
        self.sdk
    }

    /// A handle that can cancel this connection's running call from another
    /// thread.
    pub fn canceller(&self) -> Canceller {
        Canceller {
            sdk: self.sdk,
            slot: Arc::clone(&self.slot),
        }
    }

    /// Whether the SDK still considers the connection usable (it was not broken
    /// or cancelled). Local, no round trip.
    pub fn is_valid(&self) -> bool {
        let mut valid: ffi::RFC_INT = 0;
        let mut info = RFC_ERROR_INFO::default();
        // SAFETY: the handle is open (it is closed only in `drop`); the out-pointers
        // are valid for the call.
        let rc = unsafe {
            (self.sdk.api.RfcIsConnectionHandleValid)(self.handle, &mut valid, &mut info)
        };
        rc == RFC_RC::OK && valid != 0
    }

    /// Sends `RFC_PING`.
    ///
    /// # Errors
    /// The SDK's error (the connection is then usually broken).
    pub fn ping(&mut self) -> Result<(), RfcErrorInfo> {
        let mut info = RFC_ERROR_INFO::default();
        // SAFETY: open handle, valid out-pointer; `&mut self` keeps calls apart.
        let rc = unsafe { (self.sdk.api.RfcPing)(self.handle, &mut info) };
        check(rc, &info)
    }

    /// Ends the ABAP session's context (its uncommitted work is discarded) while
    /// keeping the connection, so it can serve the next unit of work clean.
    ///
    /// # Errors
    /// The SDK's error; the connection should then be discarded.
    pub fn reset_server_context(&mut self) -> Result<(), RfcErrorInfo> {
        let mut info = RFC_ERROR_INFO::default();
        // SAFETY: open handle, valid out-pointer; `&mut self` keeps calls apart.
        let rc = unsafe { (self.sdk.api.RfcResetServerContext)(self.handle, &mut info) };
        check(rc, &info)
    }

    /// The description of a function module, from the SDK's cache or read from
    /// the system's dictionary.
    ///
    /// # Errors
    /// The SDK's error (`FU_NOT_FOUND` for a function the system does not have).
    pub fn function_desc(&mut self, name: &str) -> Result<FunctionDesc, RfcErrorInfo> {
        let name = to_uc_z(name).map_err(|_| RfcErrorInfo::nul())?;
        let mut info = RFC_ERROR_INFO::default();
        // SAFETY: open handle, zero-terminated name, valid out-pointer.
        let desc =
            unsafe { (self.sdk.api.RfcGetFunctionDesc)(self.handle, name.as_ptr(), &mut info) };
        if desc.is_null() {
            check(RFC_RC::NOT_FOUND, &info)?;
        }
        Ok(FunctionDesc::new(self.sdk, desc))
    }

    /// Calls the function module whose parameters `function` holds; on success
    /// `function` holds the results.
    ///
    /// # Errors
    /// The SDK's error: an ABAP exception, a short dump, a broken connection,
    /// `RFC_CANCELED` after [`Canceller::cancel`].
    pub fn invoke(&mut self, function: &mut Function) -> Result<(), RfcErrorInfo> {
        let mut info = RFC_ERROR_INFO::default();
        // SAFETY: open handle; `function` is a live container the SDK created;
        // both are borrowed mutably, so nothing else uses them during the call.
        let rc = unsafe { (self.sdk.api.RfcInvoke)(self.handle, function.raw(), &mut info) };
        check(rc, &info)
    }

    /// Starts a tRFC logical unit of work with transaction id `tid` (24
    /// characters): the system executes it at most once per TID.
    ///
    /// # Errors
    /// `RFC_INVALID_PARAMETER` for a TID that is not 24 ASCII characters, or the
    /// SDK's error.
    pub fn transaction(&mut self, tid: &str) -> Result<Transaction<'_>, RfcErrorInfo> {
        if tid.len() != RFC_TID_LN || !tid.is_ascii() {
            return Err(RfcErrorInfo::local(
                RFC_RC::INVALID_PARAMETER,
                "RFC_INVALID_PARAMETER",
                format!("a TID is {RFC_TID_LN} ASCII characters"),
            ));
        }
        let mut raw: ffi::RFC_TID = [0; RFC_TID_LN + 1];
        for (unit, byte) in raw.iter_mut().zip(tid.bytes()) {
            *unit = u16::from(byte);
        }
        let mut info = RFC_ERROR_INFO::default();
        // SAFETY: open handle; `raw` is a terminated RFC_TID; no queue name (null
        // is documented as "plain tRFC"); valid out-pointer.
        let handle = unsafe {
            (self.sdk.api.RfcCreateTransaction)(
                self.handle,
                raw.as_ptr(),
                std::ptr::null(),
                &mut info,
            )
        };
        if handle.is_null() {
            check(RFC_RC::UNKNOWN_ERROR, &info)?;
        }
        Ok(Transaction {
            connection: self,
            handle,
        })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        *slot = None;
        let mut info = RFC_ERROR_INFO::default();
        // SAFETY: the handle was opened by the SDK and is closed exactly once,
        // here, while the slot's lock keeps cancellers from using it at the same
        // time (and they find the slot empty afterwards).
        let _ = unsafe { (self.sdk.api.RfcCloseConnection)(self.handle, &mut info) };
        drop(slot);
    }
}

/// Cancels the running call of a [`Connection`] from another thread. The call
/// then fails with `RFC_CANCELED` and the connection is unusable.
#[derive(Clone)]
pub struct Canceller {
    sdk: &'static Sdk,
    slot: Slot,
}

impl std::fmt::Debug for Canceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Canceller").finish_non_exhaustive()
    }
}

impl Canceller {
    /// Cancels the connection's current call (or its next one). Returns whether
    /// the connection was still open.
    pub fn cancel(&self) -> bool {
        let slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(handle) = *slot else {
            return false;
        };
        let mut info = RFC_ERROR_INFO::default();
        // SAFETY: the slot holds the handle only while the connection is open,
        // and the connection cannot close while we hold the slot's lock; RfcCancel
        // is the SDK function documented for use from another thread.
        let _ = unsafe { (self.sdk.api.RfcCancel)(handle as RFC_CONNECTION_HANDLE, &mut info) };
        true
    }
}

/// A tRFC logical unit of work on a connection: functions are added with
/// [`Transaction::invoke`], sent and executed with [`Transaction::submit`], and
/// the TID is released with [`Transaction::confirm`] once the sender has recorded
/// that the unit went through. Until then the system answers a resubmission of the
/// same TID without executing it again.
pub struct Transaction<'c> {
    connection: &'c mut Connection,
    handle: ffi::RFC_TRANSACTION_HANDLE,
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction").finish_non_exhaustive()
    }
}

impl Transaction<'_> {
    /// Adds a function call (with its parameters set) to the unit.
    ///
    /// # Errors
    /// The SDK's error.
    pub fn invoke(&mut self, function: &mut Function) -> Result<(), RfcErrorInfo> {
        let mut info = RFC_ERROR_INFO::default();
        // SAFETY: live transaction and function handles, both exclusively borrowed.
        let rc = unsafe {
            (self.connection.sdk.api.RfcInvokeInTransaction)(self.handle, function.raw(), &mut info)
        };
        check(rc, &info)
    }

    /// Sends the unit; the system executes it (once per TID) and commits it.
    ///
    /// # Errors
    /// The SDK's error: the unit may then be submitted again with the same TID.
    pub fn submit(&mut self) -> Result<(), RfcErrorInfo> {
        let mut info = RFC_ERROR_INFO::default();
        // SAFETY: live transaction handle, exclusively borrowed.
        let rc = unsafe { (self.connection.sdk.api.RfcSubmitTransaction)(self.handle, &mut info) };
        check(rc, &info)
    }

    /// Tells the system that the sender recorded the unit as done: it may forget
    /// the TID (a later submission with it would run again).
    ///
    /// # Errors
    /// The SDK's error.
    pub fn confirm(&mut self) -> Result<(), RfcErrorInfo> {
        let mut info = RFC_ERROR_INFO::default();
        // SAFETY: live transaction handle, exclusively borrowed.
        let rc = unsafe { (self.connection.sdk.api.RfcConfirmTransaction)(self.handle, &mut info) };
        check(rc, &info)
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        let mut info = RFC_ERROR_INFO::default();
        // SAFETY: the transaction handle was created by the SDK and is destroyed
        // exactly once, here.
        let _ = unsafe { (self.connection.sdk.api.RfcDestroyTransaction)(self.handle, &mut info) };
    }
}
