//! The exported functions that set and read values, structures and tables.

use std::ffi::c_void;

use sapbridge_nwrfc::RfcErrorInfo;
use sapbridge_nwrfc::ffi::{
    DATA_CONTAINER_HANDLE, RFC_ERROR_GROUP, RFC_ERROR_INFO, RFC_FLOAT, RFC_INT, RFC_INT1, RFC_INT2,
    RFC_INT8, RFC_RC, RFC_STRUCTURE_HANDLE, RFC_TABLE_HANDLE, RFCTYPE, SAP_RAW, SAP_UC,
};

use crate::connection_api::container;
use crate::container::{Container, FieldD, Table, Val, is_char_like, padded, text_of};
use crate::state::err;
use crate::{answer, answer_ptr, invalid, invalid_parameter, read_n, read_z};

/// The field `name` of the container behind `handle`: its description and value.
///
/// # Safety
/// `handle` is null or a live container used by this thread alone; `name` is null
/// or zero-terminated.
unsafe fn field<'a>(
    handle: DATA_CONTAINER_HANDLE,
    name: *const SAP_UC,
    mark: bool,
) -> Result<(&'a FieldD, &'a mut Val), RfcErrorInfo> {
    // SAFETY: forwarded caller guarantee.
    let c: &'a mut Container = unsafe { container(handle) }?;
    // SAFETY: forwarded caller guarantee.
    let name = unsafe { read_z(name) }.ok_or_else(|| invalid_parameter("no field name"))?;
    let i = c
        .index(&name)
        .ok_or_else(|| invalid_parameter(format!("field '{name}' not found")))?;
    if mark {
        c.set[i] = true;
    }
    let layout: &'a [FieldD] = c.layout;
    Ok((&layout[i], &mut c.values[i]))
}

/// Sets a value from text, as `RfcSetChars`/`RfcSetString` do.
fn set_text(field: &FieldD, slot: &mut Val, text: String) -> Result<(), RfcErrorInfo> {
    *slot = match field.ty {
        RFCTYPE::INT | RFCTYPE::INT1 | RFCTYPE::INT2 | RFCTYPE::INT8 => Val::Int(
            text.trim()
                .parse()
                .map_err(|_| conversion(&field.name, &text))?,
        ),
        RFCTYPE::FLOAT => Val::Float(
            text.trim()
                .parse()
                .map_err(|_| conversion(&field.name, &text))?,
        ),
        RFCTYPE::STRUCTURE | RFCTYPE::TABLE => return Err(conversion(&field.name, &text)),
        _ => Val::Text(text),
    };
    Ok(())
}

fn conversion(name: &str, text: &str) -> RfcErrorInfo {
    err(
        RFC_RC::CONVERSION_FAILURE,
        RFC_ERROR_GROUP::EXTERNAL_RUNTIME_FAILURE,
        "RFC_CONVERSION_FAILURE",
        format!("Cannot convert '{text}' for field {name}"),
    )
}

fn int_of(field: &FieldD, value: &Val) -> Result<i64, RfcErrorInfo> {
    match value {
        Val::Int(n) => Ok(*n),
        other => {
            let text = text_of(field, other);
            text.trim()
                .parse()
                .map_err(|_| conversion(&field.name, &text))
        }
    }
}

fn too_small() -> RfcErrorInfo {
    err(
        RFC_RC::BUFFER_TOO_SMALL,
        RFC_ERROR_GROUP::EXTERNAL_RUNTIME_FAILURE,
        "RFC_BUFFER_TOO_SMALL",
        "The buffer is too small for the value",
    )
}

/// Copies `units` into the caller's buffer of `len` units (blank-filled), or
/// answers `RFC_BUFFER_TOO_SMALL` after copying what fits.
///
/// # Safety
/// `buffer` is null or holds `len` writable units.
unsafe fn copy_fixed(units: &[SAP_UC], buffer: *mut SAP_UC, len: u32) -> Result<(), RfcErrorInfo> {
    if buffer.is_null() {
        return Err(invalid_parameter("buffer is NULL"));
    }
    // SAFETY: the caller guarantees `len` writable units.
    let out = unsafe { std::slice::from_raw_parts_mut(buffer, len as usize) };
    out.fill(u16::from(b' '));
    let n = units.len().min(out.len());
    out[..n].copy_from_slice(&units[..n]);
    if units.len() > out.len() {
        Err(too_small())
    } else {
        Ok(())
    }
}

/// Copies `units` plus a terminator, reporting the length; `RFC_BUFFER_TOO_SMALL`
/// when they do not fit.
///
/// # Safety
/// `buffer` is null or holds `len` writable units; `needed` is null or writable.
unsafe fn copy_string<T: Copy + Default>(
    units: &[T],
    buffer: *mut T,
    len: u32,
    needed: *mut u32,
) -> Result<(), RfcErrorInfo> {
    // SAFETY: the caller guarantees `needed` is null or writable.
    if let Some(needed) = unsafe { needed.as_mut() } {
        *needed = u32::try_from(units.len()).unwrap_or(u32::MAX);
    }
    if buffer.is_null() {
        return Err(invalid_parameter("buffer is NULL"));
    }
    if units.len() >= len as usize {
        return Err(too_small());
    }
    // SAFETY: the caller guarantees `len` writable units, and `len` > units.len().
    let out = unsafe { std::slice::from_raw_parts_mut(buffer, len as usize) };
    out[..units.len()].copy_from_slice(units);
    out[units.len()] = T::default();
    Ok(())
}

/// Declares the integer and float setters and getters.
macro_rules! numeric {
    ($($set:ident / $get:ident: $ty:ty => $to_val:expr, $from_val:expr;)*) => {
        export! {$(
            fn $set(handle: DATA_CONTAINER_HANDLE, name: *const SAP_UC, value: $ty, info: *mut RFC_ERROR_INFO) -> RFC_RC,
                on_panic rc(info), {
                let result = (|| {
                    // SAFETY: a live container and a terminated name (caller's contract).
                    let (field, slot) = unsafe { field(handle, name, true) }?;
                    *slot = if is_char_like(field.ty) || field.ty == RFCTYPE::STRING || field.ty == RFCTYPE::BCD {
                        Val::Text(value.to_string())
                    } else {
                        #[allow(clippy::redundant_closure_call)]
                        ($to_val)(value)
                    };
                    Ok(())
                })();
                // SAFETY: `info` is null or writable.
                unsafe { answer(info, result) }
            }

            fn $get(handle: DATA_CONTAINER_HANDLE, name: *const SAP_UC, value: *mut $ty, info: *mut RFC_ERROR_INFO) -> RFC_RC,
                on_panic rc(info), {
                let result = (|| {
                    // SAFETY: a live container and a terminated name.
                    let (field, slot) = unsafe { field(handle, name, false) }?;
                    #[allow(clippy::redundant_closure_call)]
                    let v: $ty = ($from_val)(field, &*slot)?;
                    // SAFETY: `value` is null or writable.
                    *unsafe { value.as_mut() }.ok_or_else(|| invalid_parameter("value is NULL"))? = v;
                    Ok(())
                })();
                // SAFETY: `info` is null or writable.
                unsafe { answer(info, result) }
            }
        )*}
    };
}

numeric! {
    RfcSetInt / RfcGetInt: RFC_INT => |v: RFC_INT| Val::Int(i64::from(v)),
        |f: &FieldD, v: &Val| int_of(f, v).and_then(|n| RFC_INT::try_from(n).map_err(|_| conversion(&f.name, &n.to_string())));
    RfcSetInt1 / RfcGetInt1: RFC_INT1 => |v: RFC_INT1| Val::Int(i64::from(v)),
        |f: &FieldD, v: &Val| int_of(f, v).and_then(|n| RFC_INT1::try_from(n).map_err(|_| conversion(&f.name, &n.to_string())));
    RfcSetInt2 / RfcGetInt2: RFC_INT2 => |v: RFC_INT2| Val::Int(i64::from(v)),
        |f: &FieldD, v: &Val| int_of(f, v).and_then(|n| RFC_INT2::try_from(n).map_err(|_| conversion(&f.name, &n.to_string())));
    RfcSetInt8 / RfcGetInt8: RFC_INT8 => Val::Int,
        |f: &FieldD, v: &Val| int_of(f, v);
    RfcSetFloat / RfcGetFloat: RFC_FLOAT => Val::Float,
        |f: &FieldD, v: &Val| match v {
            Val::Float(x) => Ok(*x),
            Val::Int(n) => Ok(*n as f64),
            other => { let t = text_of(f, other); t.trim().parse().map_err(|_| conversion(&f.name, &t)) }
        };
}

export! {
    fn RfcSetChars(handle: DATA_CONTAINER_HANDLE, name: *const SAP_UC, value: *const SAP_UC, len: u32, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        // SAFETY: a live container, terminated name, `len` readable value units.
        let result = unsafe { set_chars(handle, name, value, len) };
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcSetNum(handle: DATA_CONTAINER_HANDLE, name: *const SAP_UC, value: *const SAP_UC, len: u32, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        // SAFETY: as `RfcSetChars`.
        let result = unsafe { set_chars(handle, name, value, len) };
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcSetString(handle: DATA_CONTAINER_HANDLE, name: *const SAP_UC, value: *const SAP_UC, len: u32, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        // SAFETY: as `RfcSetChars`.
        let result = unsafe { set_chars(handle, name, value, len) };
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcSetDate(handle: DATA_CONTAINER_HANDLE, name: *const SAP_UC, value: *const SAP_UC, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        // SAFETY: an RFC_DATE is 8 readable units.
        let result = unsafe { set_chars(handle, name, value, 8) };
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcSetTime(handle: DATA_CONTAINER_HANDLE, name: *const SAP_UC, value: *const SAP_UC, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        // SAFETY: an RFC_TIME is 6 readable units.
        let result = unsafe { set_chars(handle, name, value, 6) };
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcSetBytes(handle: DATA_CONTAINER_HANDLE, name: *const SAP_UC, value: *const SAP_RAW, len: u32, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        // SAFETY: a live container, terminated name, `len` readable bytes.
        let result = unsafe { set_bytes(handle, name, value, len) };
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcSetXString(handle: DATA_CONTAINER_HANDLE, name: *const SAP_UC, value: *const SAP_RAW, len: u32, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        // SAFETY: as `RfcSetBytes`.
        let result = unsafe { set_bytes(handle, name, value, len) };
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcGetChars(handle: DATA_CONTAINER_HANDLE, name: *const SAP_UC, buffer: *mut SAP_UC, len: u32, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        let result = (|| {
            // SAFETY: a live container and a terminated name.
            let (field, slot) = unsafe { field(handle, name, false) }?;
            // SAFETY: `buffer` holds `len` writable units.
            unsafe { copy_fixed(&padded(field, slot), buffer, len) }
        })();
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcGetNum(handle: DATA_CONTAINER_HANDLE, name: *const SAP_UC, buffer: *mut SAP_UC, len: u32, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        let result = (|| {
            // SAFETY: a live container and a terminated name.
            let (field, slot) = unsafe { field(handle, name, false) }?;
            // SAFETY: `buffer` holds `len` writable units.
            unsafe { copy_fixed(&padded(field, slot), buffer, len) }
        })();
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcGetDate(handle: DATA_CONTAINER_HANDLE, name: *const SAP_UC, buffer: *mut SAP_UC, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        let result = (|| {
            // SAFETY: a live container and a terminated name.
            let (field, slot) = unsafe { field(handle, name, false) }?;
            let units: Vec<u16> = text_of(field, slot).encode_utf16().collect();
            // SAFETY: an RFC_DATE buffer holds 8 writable units.
            unsafe { copy_fixed(&units, buffer, 8) }
        })();
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcGetTime(handle: DATA_CONTAINER_HANDLE, name: *const SAP_UC, buffer: *mut SAP_UC, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        let result = (|| {
            // SAFETY: a live container and a terminated name.
            let (field, slot) = unsafe { field(handle, name, false) }?;
            let units: Vec<u16> = text_of(field, slot).encode_utf16().collect();
            // SAFETY: an RFC_TIME buffer holds 6 writable units.
            unsafe { copy_fixed(&units, buffer, 6) }
        })();
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcGetString(handle: DATA_CONTAINER_HANDLE, name: *const SAP_UC, buffer: *mut SAP_UC, len: u32, needed: *mut u32, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        let result = (|| {
            // SAFETY: a live container and a terminated name.
            let (field, slot) = unsafe { field(handle, name, false) }?;
            let units: Vec<u16> = text_of(field, slot).encode_utf16().collect();
            // SAFETY: `buffer` holds `len` writable units; `needed` null or writable.
            unsafe { copy_string(&units, buffer, len, needed) }
        })();
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcGetStringLength(handle: DATA_CONTAINER_HANDLE, name: *const SAP_UC, len: *mut u32, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        let result = (|| {
            // SAFETY: a live container and a terminated name.
            let (field, slot) = unsafe { field(handle, name, false) }?;
            let units = text_of(field, slot).encode_utf16().count();
            // SAFETY: `len` is null or writable.
            *unsafe { len.as_mut() }.ok_or_else(|| invalid_parameter("length is NULL"))? = u32::try_from(units).unwrap_or(u32::MAX);
            Ok(())
        })();
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcGetBytes(handle: DATA_CONTAINER_HANDLE, name: *const SAP_UC, buffer: *mut SAP_RAW, len: u32, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        let result = (|| {
            // SAFETY: a live container and a terminated name.
            let (_, slot) = unsafe { field(handle, name, false) }?;
            let Val::Bytes(bytes) = slot else { return Err(conversion("bytes", "not a byte field")) };
            if buffer.is_null() {
                return Err(invalid_parameter("buffer is NULL"));
            }
            // SAFETY: `buffer` holds `len` writable bytes.
            let out = unsafe { std::slice::from_raw_parts_mut(buffer, len as usize) };
            out.fill(0);
            let n = bytes.len().min(out.len());
            out[..n].copy_from_slice(&bytes[..n]);
            if bytes.len() > out.len() { Err(too_small()) } else { Ok(()) }
        })();
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcGetXString(handle: DATA_CONTAINER_HANDLE, name: *const SAP_UC, buffer: *mut SAP_RAW, len: u32, needed: *mut u32, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        let result = (|| {
            // SAFETY: a live container and a terminated name.
            let (_, slot) = unsafe { field(handle, name, false) }?;
            let Val::Bytes(bytes) = slot else { return Err(conversion("xstring", "not a byte field")) };
            // SAFETY: `needed` is null or writable.
            if let Some(needed) = unsafe { needed.as_mut() } {
                *needed = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
            }
            if buffer.is_null() {
                return Err(invalid_parameter("buffer is NULL"));
            }
            if bytes.len() > len as usize {
                return Err(too_small());
            }
            // SAFETY: `buffer` holds `len` writable bytes, at least `bytes.len()`.
            let out = unsafe { std::slice::from_raw_parts_mut(buffer, bytes.len()) };
            out.copy_from_slice(bytes);
            Ok(())
        })();
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcGetStructure(handle: DATA_CONTAINER_HANDLE, name: *const SAP_UC, out: *mut RFC_STRUCTURE_HANDLE, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        let result = (|| {
            // SAFETY: a live container and a terminated name.
            let (field, slot) = unsafe { field(handle, name, true) }?;
            let Val::Struct(inner) = slot else {
                return Err(invalid_parameter(format!("{} is not a structure", field.name)));
            };
            // SAFETY: `out` is null or writable.
            *unsafe { out.as_mut() }.ok_or_else(|| invalid_parameter("handle is NULL"))? = std::ptr::from_mut::<Container>(inner).cast::<c_void>();
            Ok(())
        })();
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcGetTable(handle: DATA_CONTAINER_HANDLE, name: *const SAP_UC, out: *mut RFC_TABLE_HANDLE, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        let result = (|| {
            // SAFETY: a live container and a terminated name.
            let (field, slot) = unsafe { field(handle, name, true) }?;
            let Val::Table(inner) = slot else {
                return Err(invalid_parameter(format!("{} is not a table", field.name)));
            };
            // SAFETY: `out` is null or writable.
            *unsafe { out.as_mut() }.ok_or_else(|| invalid_parameter("handle is NULL"))? = std::ptr::from_mut::<Table>(inner).cast::<c_void>();
            Ok(())
        })();
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcGetRowCount(handle: RFC_TABLE_HANDLE, count: *mut u32, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        let result = (|| {
            // SAFETY: a live table (inside a live container) used by this thread.
            let table = unsafe { table(handle) }?;
            // SAFETY: `count` is null or writable.
            *unsafe { count.as_mut() }.ok_or_else(|| invalid_parameter("count is NULL"))? = u32::try_from(table.rows.len()).unwrap_or(u32::MAX);
            Ok(())
        })();
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcMoveTo(handle: RFC_TABLE_HANDLE, index: u32, info: *mut RFC_ERROR_INFO) -> RFC_RC,
        on_panic rc(info), {
        let result = (|| {
            // SAFETY: a live table used by this thread.
            let table = unsafe { table(handle) }?;
            if index as usize >= table.rows.len() {
                return Err(err(RFC_RC::TABLE_MOVE_EOF, RFC_ERROR_GROUP::EXTERNAL_RUNTIME_FAILURE, "RFC_TABLE_MOVE_EOF", "past the last row"));
            }
            table.cursor = Some(index as usize);
            Ok(())
        })();
        // SAFETY: `info` is null or writable.
        unsafe { answer(info, result) }
    }

    fn RfcGetCurrentRow(handle: RFC_TABLE_HANDLE, info: *mut RFC_ERROR_INFO) -> RFC_STRUCTURE_HANDLE,
        on_panic ptr(info), {
        let result = (|| {
            // SAFETY: a live table used by this thread.
            let table = unsafe { table(handle) }?;
            let row = table.cursor.and_then(|i| table.rows.get_mut(i)).ok_or_else(|| invalid("current row"))?;
            Ok(std::ptr::from_mut::<Container>(row).cast::<c_void>())
        })();
        // SAFETY: `info` is null or writable.
        unsafe { answer_ptr(info, result) }
    }

    fn RfcAppendNewRow(handle: RFC_TABLE_HANDLE, info: *mut RFC_ERROR_INFO) -> RFC_STRUCTURE_HANDLE,
        on_panic ptr(info), {
        let result = (|| {
            // SAFETY: a live table used by this thread.
            let table = unsafe { table(handle) }?;
            table.rows.push(Box::new(Container::new(&table.line.fields)));
            table.cursor = Some(table.rows.len() - 1);
            let row = table.rows.last_mut().ok_or_else(|| invalid("row"))?;
            Ok(std::ptr::from_mut::<Container>(row).cast::<c_void>())
        })();
        // SAFETY: `info` is null or writable.
        unsafe { answer_ptr(info, result) }
    }
}

/// The table behind a handle.
///
/// # Safety
/// `handle` is null or a live table used by this thread alone.
unsafe fn table<'a>(handle: RFC_TABLE_HANDLE) -> Result<&'a mut Table, RfcErrorInfo> {
    // SAFETY: forwarded caller guarantee.
    unsafe { handle.cast::<Table>().as_mut() }.ok_or_else(|| invalid("table handle"))
}

/// `RfcSetChars` and its siblings.
///
/// # Safety
/// A live container, a terminated name, `len` readable value units.
unsafe fn set_chars(
    handle: DATA_CONTAINER_HANDLE,
    name: *const SAP_UC,
    value: *const SAP_UC,
    len: u32,
) -> Result<(), RfcErrorInfo> {
    // SAFETY: forwarded caller guarantee.
    let text = unsafe { read_n(value, len) }.ok_or_else(|| invalid_parameter("value is NULL"))?;
    // SAFETY: forwarded caller guarantee.
    let (field, slot) = unsafe { field(handle, name, true) }?;
    set_text(field, slot, text)
}

/// `RfcSetBytes` and `RfcSetXString`.
///
/// # Safety
/// A live container, a terminated name, `len` readable bytes.
unsafe fn set_bytes(
    handle: DATA_CONTAINER_HANDLE,
    name: *const SAP_UC,
    value: *const SAP_RAW,
    len: u32,
) -> Result<(), RfcErrorInfo> {
    if value.is_null() && len > 0 {
        return Err(invalid_parameter("value is NULL"));
    }
    let bytes = if len == 0 {
        Vec::new()
    } else {
        // SAFETY: forwarded caller guarantee.
        unsafe { std::slice::from_raw_parts(value, len as usize) }.to_vec()
    };
    // SAFETY: forwarded caller guarantee.
    let (_, slot) = unsafe { field(handle, name, true) }?;
    *slot = Val::Bytes(bytes);
    Ok(())
}
