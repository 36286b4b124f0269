//! The exported functions for connections, metadata, calls and tRFC.

use std::ffi::c_void;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;

use sapbridge_nwrfc::RfcErrorInfo;
use sapbridge_nwrfc::ffi::{
    RFC_CONNECTION_HANDLE, RFC_CONNECTION_PARAMETER, RFC_ERROR_INFO, RFC_FIELD_DESC,
    RFC_FUNCTION_DESC_HANDLE, RFC_FUNCTION_HANDLE, RFC_INT, RFC_PARAMETER_DESC, RFC_RC,
    RFC_TRANSACTION_HANDLE, RFC_TYPE_DESC_HANDLE, SAP_UC,
};
use sapbridge_sap::{Parameters, SapConnection};

use crate::container::{Container, FuncD, TypeD, json_into, val_to_json};
use crate::state::{Conn, from_sim, stub};
use crate::{LogonParameters, answer, answer_ptr, invalid, invalid_parameter, read_n, read_z};

/// A tRFC unit being built: its connection, TID and calls.
struct Trans {
    conn: *const Conn,
    tid: String,
    calls: Vec<(String, Parameters)>,
}

/// The connection behind a handle.
///
/// # Safety
/// `handle` is null or a connection the stub opened and has not closed.
unsafe fn conn<'a>(handle: RFC_CONNECTION_HANDLE) -> Result<&'a Conn, RfcErrorInfo> {
    // SAFETY: the caller guarantees a live `Conn` or null; only shared references
    // are ever made to a `Conn` (its mutable state is behind a mutex and atomics).
    unsafe { handle.cast::<Conn>().as_ref() }.ok_or_else(|| invalid("connection handle"))
}

/// The container behind a function handle.
///
/// # Safety
/// `handle` is null or a function the stub created and has not destroyed, not
/// used by another thread during the call.
pub(crate) unsafe fn container<'a>(handle: *mut c_void) -> Result<&'a mut Container, RfcErrorInfo> {
    // SAFETY: the caller guarantees a live container used by this thread alone.
    unsafe { handle.cast::<Container>().as_mut() }.ok_or_else(|| invalid("data container handle"))
}

/// A function's input as the simulator takes it: the IMPORTING, CHANGING and
/// TABLES parameters the caller set.
fn input_of(function: &Container) -> Result<(&'static FuncD, Parameters), RfcErrorInfo> {
    let desc = function.func.ok_or_else(|| invalid("function handle"))?;
    let mut input = Parameters::new();
    for (i, (field, meta)) in desc.fields.iter().zip(&desc.params).enumerate() {
        if meta.direction.0 & 1 != 0 && function.set[i] {
            input.insert(field.name.clone(), val_to_json(&function.values[i]));
        }
    }
    Ok((desc, input))
}

fn version_text() -> &'static [SAP_UC] {
    static TEXT: OnceLock<Vec<SAP_UC>> = OnceLock::new();
    TEXT.get_or_init(|| "7500.0 sapbridge NW RFC stub\0".encode_utf16().collect())
}

export! {
    fn RfcGetVersion(major: *mut u32, minor: *mut u32, patch: *mut u32) -> *const SAP_UC, on_panic null(), {
        for (out, value) in [(major, 7), (minor, 500), (patch, 0)] {
            // SAFETY: each pointer is null or writable, per the SDK's contract.
            if let Some(out) = unsafe { out.as_mut() } {
                *out = value;
            }
        }
        version_text().as_ptr()
    }

    fn RfcOpenConnection(params: *const RFC_CONNECTION_PARAMETER, count: u32, info: *mut RFC_ERROR_INFO) -> RFC_CONNECTION_HANDLE,
        on_panic ptr(info), {
        let result = (|| {
            if params.is_null() && count > 0 {
                return Err(invalid_parameter("no connection parameters"));
            }
            let mut logon = LogonParameters::new();
            for i in 0..count as usize {
                // SAFETY: the caller passes `count` parameters at `params`.
                let param = unsafe { *params.add(i) };
                // SAFETY: both strings are zero-terminated per the SDK's contract.
                let (name, value) = unsafe { (read_z(param.name), read_z(param.value)) };
                let (Some(name), Some(value)) = (name, value) else {
                    return Err(invalid_parameter("a connection parameter is NULL"));
                };
                logon.insert(name.to_ascii_uppercase(), value);
            }
            let conn = stub().open(&logon)?;
            Ok(Box::into_raw(Box::new(conn)).cast::<c_void>())
        })();
        // SAFETY: `info` is null or writable.
        unsafe { answer_ptr(info, result) }
    }

    fn RfcCloseConnection(handle: RFC_CONNECTION_HANDLE, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        let result = if handle.is_null() {
            Err(invalid("connection handle"))
        } else {
            // SAFETY: the handle came from `RfcOpenConnection` (Box::into_raw) and is
            // closed once; no call on it runs (the caller's contract).
            drop(unsafe { Box::from_raw(handle.cast::<Conn>()) });
            Ok(())
        };
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcCancel(handle: RFC_CONNECTION_HANDLE, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        // SAFETY: a live connection (the caller's contract); only an atomic is touched.
        let result = unsafe { conn(handle) }.map(|c| c.cancelled.store(true, Ordering::SeqCst));
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcPing(handle: RFC_CONNECTION_HANDLE, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        // SAFETY: a live connection or null.
        let result = unsafe { conn(handle) }.and_then(Conn::usable);
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcResetServerContext(handle: RFC_CONNECTION_HANDLE, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        // SAFETY: a live connection or null.
        let result = unsafe { conn(handle) }.and_then(Conn::reset);
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcIsConnectionHandleValid(handle: RFC_CONNECTION_HANDLE, valid: *mut RFC_INT, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        // SAFETY: a live connection or null.
        let result = unsafe { conn(handle) }.map(|c| {
            i32::from(!c.broken.load(Ordering::SeqCst) && !c.cancelled.load(Ordering::SeqCst))
        });
        // SAFETY: `valid` is null or writable.
        if let (Ok(flag), Some(out)) = (&result, unsafe { valid.as_mut() }) {
            *out = *flag;
        }
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result.map(|_| ())) }
    }

    fn RfcGetFunctionDesc(handle: RFC_CONNECTION_HANDLE, name: *const SAP_UC, info: *mut RFC_ERROR_INFO) -> RFC_FUNCTION_DESC_HANDLE,
        on_panic ptr(info), {
        let result = (|| {
            // SAFETY: a live connection or null.
            let conn = unsafe { conn(handle) }?;
            // SAFETY: a zero-terminated name.
            let name = unsafe { read_z(name) }.ok_or_else(|| invalid_parameter("no function name"))?;
            let desc = stub().function(conn, &name.trim().to_ascii_uppercase())?;
            Ok(std::ptr::from_ref(desc).cast_mut().cast::<c_void>())
        })();
        // SAFETY: `info` is null or writable.
        unsafe { answer_ptr(info, result) }
    }

    fn RfcGetParameterCount(desc: RFC_FUNCTION_DESC_HANDLE, count: *mut u32, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        // SAFETY: descriptions are leaked `FuncD`s, never freed; null is refused.
        let result = unsafe { desc.cast::<FuncD>().as_ref() }.ok_or_else(|| invalid("function description")).and_then(|d| {
            // SAFETY: `count` is null or writable.
            let out = unsafe { count.as_mut() }.ok_or_else(|| invalid_parameter("count is NULL"))?;
            *out = u32::try_from(d.fields.len()).unwrap_or(u32::MAX);
            Ok(())
        });
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcGetParameterDescByIndex(desc: RFC_FUNCTION_DESC_HANDLE, index: u32, out: *mut RFC_PARAMETER_DESC, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        // SAFETY: descriptions are leaked `FuncD`s; null is refused.
        let result = unsafe { desc.cast::<FuncD>().as_ref() }.ok_or_else(|| invalid("function description")).and_then(|d| {
            let i = index as usize;
            let (field, meta) = d.fields.get(i).zip(d.params.get(i)).ok_or_else(|| invalid_parameter("index out of range"))?;
            // SAFETY: `out` is null or writable.
            let out = unsafe { out.as_mut() }.ok_or_else(|| invalid_parameter("description is NULL"))?;
            *out = RFC_PARAMETER_DESC::default();
            put(&mut out.name, &field.name);
            out.direction = meta.direction;
            out.type_ = field.ty;
            out.nucLength = field.nuc;
            out.ucLength = field.uc;
            out.decimals = field.decimals;
            out.typeDescHandle = type_handle(field.sub);
            put(&mut out.defaultValue, &meta.default);
            put(&mut out.parameterText, &meta.text);
            out.optional = u8::from(meta.optional);
            Ok(())
        });
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcGetFieldCount(ty: RFC_TYPE_DESC_HANDLE, count: *mut u32, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        // SAFETY: type descriptions are leaked `TypeD`s; null is refused.
        let result = unsafe { ty.cast::<TypeD>().as_ref() }.ok_or_else(|| invalid("type description")).and_then(|t| {
            // SAFETY: `count` is null or writable.
            let out = unsafe { count.as_mut() }.ok_or_else(|| invalid_parameter("count is NULL"))?;
            *out = u32::try_from(t.fields.len()).unwrap_or(u32::MAX);
            Ok(())
        });
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcGetFieldDescByIndex(ty: RFC_TYPE_DESC_HANDLE, index: u32, out: *mut RFC_FIELD_DESC, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        // SAFETY: type descriptions are leaked `TypeD`s; null is refused.
        let result = unsafe { ty.cast::<TypeD>().as_ref() }.ok_or_else(|| invalid("type description")).and_then(|t| {
            let field = t.fields.get(index as usize).ok_or_else(|| invalid_parameter("index out of range"))?;
            // SAFETY: `out` is null or writable.
            let out = unsafe { out.as_mut() }.ok_or_else(|| invalid_parameter("description is NULL"))?;
            *out = RFC_FIELD_DESC::default();
            put(&mut out.name, &field.name);
            out.type_ = field.ty;
            out.nucLength = field.nuc;
            out.ucLength = field.uc;
            out.decimals = field.decimals;
            out.typeDescHandle = type_handle(field.sub);
            Ok(())
        });
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcGetTypeName(ty: RFC_TYPE_DESC_HANDLE, name: *mut SAP_UC, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        // SAFETY: type descriptions are leaked `TypeD`s; null is refused.
        let result = unsafe { ty.cast::<TypeD>().as_ref() }.ok_or_else(|| invalid("type description")).and_then(|t| {
            if name.is_null() {
                return Err(invalid_parameter("name buffer is NULL"));
            }
            // SAFETY: the caller passes an RFC_ABAP_NAME: 31 writable units.
            let buffer = unsafe { std::slice::from_raw_parts_mut(name, 31) };
            put(buffer, &t.name);
            Ok(())
        });
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcCreateFunction(desc: RFC_FUNCTION_DESC_HANDLE, info: *mut RFC_ERROR_INFO) -> RFC_FUNCTION_HANDLE,
        on_panic ptr(info), {
        // SAFETY: descriptions are leaked `FuncD`s; null is refused.
        let result = unsafe { desc.cast::<FuncD>().as_ref() }.ok_or_else(|| invalid("function description")).map(|d| {
            let mut function = Container::new(&d.fields);
            function.func = Some(d);
            Box::into_raw(Box::new(function)).cast::<c_void>()
        });
        // SAFETY: `info` is null or writable.
        unsafe { answer_ptr(info, result) }
    }

    fn RfcDestroyFunction(function: RFC_FUNCTION_HANDLE, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        let result = if function.is_null() {
            Err(invalid("function handle"))
        } else {
            // SAFETY: created by `RfcCreateFunction` (Box::into_raw), destroyed once.
            drop(unsafe { Box::from_raw(function.cast::<Container>()) });
            Ok(())
        };
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcInvoke(handle: RFC_CONNECTION_HANDLE, function: RFC_FUNCTION_HANDLE, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        let result = (|| {
            // SAFETY: a live connection and a live function used by this thread.
            let (conn, function) = unsafe { (conn(handle)?, container(function)?) };
            let (desc, input) = input_of(function)?;
            let output = conn.call(&desc.name, &input)?;
            for (i, (field, meta)) in desc.fields.iter().zip(&desc.params).enumerate() {
                if let (true, Some(value)) = (meta.direction.0 & 2 != 0, output.get(&field.name)) {
                    json_into(field, &mut function.values[i], value);
                }
            }
            Ok(())
        })();
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcCreateTransaction(handle: RFC_CONNECTION_HANDLE, tid: *const SAP_UC, queue: *const SAP_UC, info: *mut RFC_ERROR_INFO) -> RFC_TRANSACTION_HANDLE,
        on_panic ptr(info), {
        let _ = queue;
        let result = (|| {
            // SAFETY: a live connection or null.
            let conn = unsafe { conn(handle) }?;
            conn.usable()?;
            // SAFETY: an RFC_TID holds 24 readable units (plus a terminator).
            let tid = unsafe { read_n(tid, 24) }.ok_or_else(|| invalid_parameter("no TID"))?;
            let trans = Trans { conn, tid, calls: Vec::new() };
            Ok(Box::into_raw(Box::new(trans)).cast::<c_void>())
        })();
        // SAFETY: `info` is null or writable.
        unsafe { answer_ptr(info, result) }
    }

    fn RfcInvokeInTransaction(handle: RFC_TRANSACTION_HANDLE, function: RFC_FUNCTION_HANDLE, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        let result = (|| {
            // SAFETY: a live transaction and function, used by this thread alone.
            let (trans, function) = unsafe { (handle.cast::<Trans>().as_mut(), container(function)?) };
            let trans = trans.ok_or_else(|| invalid("transaction handle"))?;
            let (desc, input) = input_of(function)?;
            trans.calls.push((desc.name.clone(), input));
            Ok(())
        })();
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcSubmitTransaction(handle: RFC_TRANSACTION_HANDLE, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        let result = (|| {
            // SAFETY: a live transaction; its connection outlives it (the caller's
            // contract: a transaction is destroyed before its connection closes).
            let trans = unsafe { handle.cast::<Trans>().as_ref() }.ok_or_else(|| invalid("transaction handle"))?;
            // SAFETY: as above.
            let conn = unsafe { trans.conn.as_ref() }.ok_or_else(|| invalid("connection handle"))?;
            submit(conn, trans)
        })();
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcConfirmTransaction(handle: RFC_TRANSACTION_HANDLE, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        let result = (|| {
            // SAFETY: as in `RfcSubmitTransaction`.
            let trans = unsafe { handle.cast::<Trans>().as_ref() }.ok_or_else(|| invalid("transaction handle"))?;
            // SAFETY: as in `RfcSubmitTransaction`.
            let conn = unsafe { trans.conn.as_ref() }.ok_or_else(|| invalid("connection handle"))?;
            conn.usable()?;
            conn.sim.confirm_tid(&trans.tid).map_err(|e| crate::state::communication(&e.to_string()))?;
            Ok(())
        })();
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcDestroyTransaction(handle: RFC_TRANSACTION_HANDLE, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        let result = if handle.is_null() {
            Err(invalid("transaction handle"))
        } else {
            // SAFETY: created by `RfcCreateTransaction` (Box::into_raw), destroyed once.
            drop(unsafe { Box::from_raw(handle.cast::<Trans>()) });
            Ok(())
        };
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }
}

/// Runs a tRFC unit once per TID: in a fresh session, committed together with its
/// TID; a TID already recorded answers OK without running anything.
fn submit(conn: &Conn, trans: &Trans) -> Result<(), RfcErrorInfo> {
    conn.usable()?;
    let storage = |e: sapbridge_sap::sim::SimError| crate::state::communication(&e.to_string());
    if conn.sim.tid_committed(&trans.tid).map_err(storage)? {
        return Ok(());
    }
    let runtime = stub();
    let mut session = runtime
        .block_on(conn.sim.session())
        .map_err(|e| from_sim(&e))?;
    for (function, input) in &trans.calls {
        runtime
            .block_on(session.call(function, input))
            .map_err(|e| from_sim(&e))?;
    }
    runtime
        .block_on(session.commit_unit(&trans.tid))
        .map_err(|e| from_sim(&e))?;
    let delay = std::env::var("SAPBRIDGE_STUB_SUBMIT_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    std::thread::sleep(std::time::Duration::from_millis(delay));
    conn.usable()
}

/// A type description as a handle.
fn type_handle(ty: Option<&'static TypeD>) -> *mut c_void {
    ty.map_or(std::ptr::null_mut(), |t| {
        std::ptr::from_ref(t).cast_mut().cast()
    })
}

/// Copies `text` into a fixed field, terminated.
fn put(field: &mut [SAP_UC], text: &str) {
    field.fill(0);
    let room = field.len().saturating_sub(1);
    for (slot, unit) in field.iter_mut().take(room).zip(text.encode_utf16()) {
        *slot = unit;
    }
}
