//! Data containers: [`Function`] (a function call's parameters, owned), and
//! borrowed views of a container ([`DataRef`]: a function, a structure or a table
//! row) and of a table ([`TableRef`]).
//!
//! A structure or table handle obtained from a container lives as long as the
//! container, and a row handle until the table changes; the borrows of
//! [`DataRef`] and [`TableRef`] encode that: a view borrows its parent mutably.

use std::marker::PhantomData;

use crate::connection::check;
use crate::error::RfcErrorInfo;
use crate::ffi::{self, DATA_CONTAINER_HANDLE, RFC_ERROR_INFO, RFC_RC, SAP_UC};
use crate::library::Sdk;
use crate::metadata::FunctionDesc;
use crate::uc::{from_uc, to_uc, to_uc_z};

/// A function call's data: its parameters before the call, its results after.
/// Dropping it destroys the container.
pub struct Function {
    sdk: &'static Sdk,
    handle: ffi::RFC_FUNCTION_HANDLE,
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function").finish_non_exhaustive()
    }
}

// SAFETY: the container is owned by this value alone and the SDK keeps no
// thread affinity for data containers; all access goes through `&mut self`.
unsafe impl Send for Function {}

impl Function {
    /// An empty call of the described function (every parameter initial).
    ///
    /// # Errors
    /// The SDK's error.
    pub fn new(desc: &FunctionDesc) -> Result<Self, RfcErrorInfo> {
        let sdk = desc.sdk();
        let mut info = RFC_ERROR_INFO::default();
        // SAFETY: a live description handle and a valid out-pointer.
        let handle = unsafe { (sdk.api.RfcCreateFunction)(desc.raw(), &mut info) };
        if handle.is_null() {
            check(RFC_RC::MEMORY_INSUFFICIENT, &info)?;
        }
        Ok(Self { sdk, handle })
    }

    pub(crate) fn raw(&mut self) -> ffi::RFC_FUNCTION_HANDLE {
        self.handle
    }

    /// The function's parameters as a container.
    pub fn data(&mut self) -> DataRef<'_> {
        DataRef {
            sdk: self.sdk,
            handle: self.handle,
            _borrow: PhantomData,
        }
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let mut info = RFC_ERROR_INFO::default();
        // SAFETY: created by RfcCreateFunction and destroyed exactly once, here;
        // every view into it borrowed `self` and is gone.
        let _ = unsafe { (self.sdk.api.RfcDestroyFunction)(self.handle, &mut info) };
    }
}

/// A container (function, structure or table row), borrowed from its owner.
pub struct DataRef<'a> {
    sdk: &'static Sdk,
    handle: DATA_CONTAINER_HANDLE,
    _borrow: PhantomData<&'a mut ()>,
}

impl std::fmt::Debug for DataRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataRef").finish_non_exhaustive()
    }
}

/// A field name as zero-terminated UTF-16.
fn name_z(name: &str) -> Result<Vec<SAP_UC>, RfcErrorInfo> {
    to_uc_z(name).map_err(|_| RfcErrorInfo::nul())
}

/// A length as the SDK's `unsigned`.
fn len_u32(len: usize) -> Result<u32, RfcErrorInfo> {
    u32::try_from(len).map_err(|_| RfcErrorInfo::too_long())
}

/// Setters that pass a value by copy.
macro_rules! scalar_setters {
    ($($(#[$doc:meta])* $method:ident => $api:ident($ty:ty);)*) => {$(
        $(#[$doc])*
        ///
        /// # Errors
        /// The SDK's error (an unknown field, a type that does not fit).
        pub fn $method(&mut self, name: &str, value: $ty) -> Result<(), RfcErrorInfo> {
            let name = name_z(name)?;
            let mut info = RFC_ERROR_INFO::default();
            // SAFETY: a live container (borrowed for 'a), a terminated name that
            // outlives the call, a value passed by copy, a valid out-pointer.
            let rc = unsafe { (self.sdk.api.$api)(self.handle, name.as_ptr(), value, &mut info) };
            check(rc, &info)
        }
    )*};
}

/// Getters that write one value through a pointer.
macro_rules! scalar_getters {
    ($($(#[$doc:meta])* $method:ident => $api:ident($ty:ty);)*) => {$(
        $(#[$doc])*
        ///
        /// # Errors
        /// The SDK's error (an unknown field, a type that does not fit).
        pub fn $method(&mut self, name: &str) -> Result<$ty, RfcErrorInfo> {
            let name = name_z(name)?;
            let mut value: $ty = Default::default();
            let mut info = RFC_ERROR_INFO::default();
            // SAFETY: a live container, a terminated name that outlives the call,
            // valid out-pointers for the value and the error info.
            let rc = unsafe { (self.sdk.api.$api)(self.handle, name.as_ptr(), &mut value, &mut info) };
            check(rc, &info)?;
            Ok(value)
        }
    )*};
}

/// Setters that pass characters with their length.
macro_rules! text_setters {
    ($($(#[$doc:meta])* $method:ident => $api:ident;)*) => {$(
        $(#[$doc])*
        ///
        /// # Errors
        /// The SDK's error (an unknown field, a value that does not fit).
        pub fn $method(&mut self, name: &str, value: &str) -> Result<(), RfcErrorInfo> {
            let name = name_z(name)?;
            let value = to_uc(value);
            let len = len_u32(value.len())?;
            let mut info = RFC_ERROR_INFO::default();
            // SAFETY: a live container; a terminated name and `len` readable value
            // units that outlive the call; a valid out-pointer.
            let rc = unsafe {
                (self.sdk.api.$api)(self.handle, name.as_ptr(), value.as_ptr(), len, &mut info)
            };
            check(rc, &info)
        }
    )*};
}

impl<'a> DataRef<'a> {
    scalar_setters! {
        /// Sets an `INT` field.
        set_int => RfcSetInt(ffi::RFC_INT);
        /// Sets an `INT1` field.
        set_int1 => RfcSetInt1(ffi::RFC_INT1);
        /// Sets an `INT2` field.
        set_int2 => RfcSetInt2(ffi::RFC_INT2);
        /// Sets an `INT8` field.
        set_int8 => RfcSetInt8(ffi::RFC_INT8);
        /// Sets a `FLOAT` field.
        set_float => RfcSetFloat(ffi::RFC_FLOAT);
    }

    scalar_getters! {
        /// Reads an `INT` field.
        get_int => RfcGetInt(ffi::RFC_INT);
        /// Reads an `INT1` field.
        get_int1 => RfcGetInt1(ffi::RFC_INT1);
        /// Reads an `INT2` field.
        get_int2 => RfcGetInt2(ffi::RFC_INT2);
        /// Reads an `INT8` field.
        get_int8 => RfcGetInt8(ffi::RFC_INT8);
        /// Reads a `FLOAT` field.
        get_float => RfcGetFloat(ffi::RFC_FLOAT);
    }

    text_setters! {
        /// Sets a CHAR field (or any field from its character form).
        set_chars => RfcSetChars;
        /// Sets a NUMC field (digits only).
        set_num => RfcSetNum;
        /// Sets a field from a string: STRING, and the SDK's conversions for BCD,
        /// DECF, INT and the character types.
        set_string => RfcSetString;
    }

    /// Sets a DATS (`YYYYMMDD`) or, with `time`, a TIMS (`HHMMSS`) field.
    ///
    /// # Errors
    /// `RFC_CONVERSION_FAILURE` for a value of the wrong length, or the SDK's error.
    pub fn set_date_or_time(
        &mut self,
        name: &str,
        value: &str,
        time: bool,
    ) -> Result<(), RfcErrorInfo> {
        let want = if time { 6 } else { 8 };
        let units = to_uc(value);
        if units.len() != want {
            return Err(RfcErrorInfo::local(
                RFC_RC::CONVERSION_FAILURE,
                "RFC_CONVERSION_FAILURE",
                format!("'{value}' is not {want} characters"),
            ));
        }
        let name = name_z(name)?;
        let mut info = RFC_ERROR_INFO::default();
        let api = if time {
            self.sdk.api.RfcSetTime
        } else {
            self.sdk.api.RfcSetDate
        };
        // SAFETY: a live container; a terminated name; `units` holds exactly the
        // 6 (RFC_TIME) or 8 (RFC_DATE) units the function reads; valid out-pointer.
        let rc = unsafe { api(self.handle, name.as_ptr(), units.as_ptr(), &mut info) };
        check(rc, &info)
    }

    /// Reads a DATS or, with `time`, a TIMS field (8 or 6 characters).
    ///
    /// # Errors
    /// The SDK's error.
    pub fn get_date_or_time(&mut self, name: &str, time: bool) -> Result<String, RfcErrorInfo> {
        let name = name_z(name)?;
        let mut buffer = [0 as SAP_UC; 8];
        let len = if time { 6 } else { 8 };
        let mut info = RFC_ERROR_INFO::default();
        let api = if time {
            self.sdk.api.RfcGetTime
        } else {
            self.sdk.api.RfcGetDate
        };
        // SAFETY: a live container; a terminated name; `buffer` has room for the 6
        // or 8 units the SDK writes; valid out-pointer.
        let rc = unsafe { api(self.handle, name.as_ptr(), buffer.as_mut_ptr(), &mut info) };
        check(rc, &info)?;
        Ok(String::from_utf16_lossy(&buffer[..len]))
    }

    /// Sets a RAW (`numc` false: fixed length) or XSTRING field.
    ///
    /// # Errors
    /// The SDK's error.
    pub fn set_bytes(
        &mut self,
        name: &str,
        value: &[u8],
        xstring: bool,
    ) -> Result<(), RfcErrorInfo> {
        let name = name_z(name)?;
        let len = len_u32(value.len())?;
        let mut info = RFC_ERROR_INFO::default();
        let api = if xstring {
            self.sdk.api.RfcSetXString
        } else {
            self.sdk.api.RfcSetBytes
        };
        // SAFETY: a live container; a terminated name; `len` readable bytes; valid
        // out-pointer.
        let rc = unsafe { api(self.handle, name.as_ptr(), value.as_ptr(), len, &mut info) };
        check(rc, &info)
    }

    /// Reads a fixed-length CHAR (`num` false) or NUMC field of `len` characters,
    /// as the SDK gives it (blank- or zero-padded).
    ///
    /// # Errors
    /// The SDK's error (`RFC_BUFFER_TOO_SMALL` when `len` is shorter than the field).
    pub fn get_chars(&mut self, name: &str, len: usize, num: bool) -> Result<String, RfcErrorInfo> {
        let name = name_z(name)?;
        let mut buffer: Vec<SAP_UC> = vec![0; len];
        let len = len_u32(len)?;
        let mut info = RFC_ERROR_INFO::default();
        let api = if num {
            self.sdk.api.RfcGetNum
        } else {
            self.sdk.api.RfcGetChars
        };
        // SAFETY: a live container; a terminated name; `buffer` has `len` writable
        // units; valid out-pointer.
        let rc = unsafe {
            api(
                self.handle,
                name.as_ptr(),
                buffer.as_mut_ptr(),
                len,
                &mut info,
            )
        };
        check(rc, &info)?;
        Ok(String::from_utf16_lossy(&buffer))
    }

    /// Reads a field in its string form (STRING, and the SDK's conversions of BCD,
    /// DECF and the other types). Starts with a buffer of `guess` characters and,
    /// when the SDK answers `RFC_BUFFER_TOO_SMALL`, retries once with the length it
    /// reported.
    ///
    /// # Errors
    /// The SDK's error.
    pub fn get_string(&mut self, name: &str, guess: usize) -> Result<String, RfcErrorInfo> {
        let name = name_z(name)?;
        let mut size = guess.max(1);
        for _ in 0..2 {
            let mut buffer: Vec<SAP_UC> = vec![0; size + 1];
            let capacity = len_u32(buffer.len())?;
            let mut needed = 0u32;
            let mut info = RFC_ERROR_INFO::default();
            // SAFETY: a live container; a terminated name; `buffer` has `capacity`
            // writable units (room for the terminator); valid out-pointers.
            let rc = unsafe {
                (self.sdk.api.RfcGetString)(
                    self.handle,
                    name.as_ptr(),
                    buffer.as_mut_ptr(),
                    capacity,
                    &mut needed,
                    &mut info,
                )
            };
            if rc == RFC_RC::BUFFER_TOO_SMALL && (needed as usize) > size {
                size = needed as usize;
                continue;
            }
            check(rc, &info)?;
            let end = (needed as usize).min(size);
            return Ok(from_uc(&buffer[..end]));
        }
        Err(RfcErrorInfo::local(
            RFC_RC::BUFFER_TOO_SMALL,
            "RFC_BUFFER_TOO_SMALL",
            "the string kept growing while it was read",
        ))
    }

    /// Reads a RAW field of `len` bytes, or an XSTRING (`len` ignored).
    ///
    /// # Errors
    /// The SDK's error.
    pub fn get_bytes(
        &mut self,
        name: &str,
        len: usize,
        xstring: bool,
    ) -> Result<Vec<u8>, RfcErrorInfo> {
        let name = name_z(name)?;
        let mut info = RFC_ERROR_INFO::default();
        if !xstring {
            let mut buffer = vec![0u8; len];
            let capacity = len_u32(len)?;
            // SAFETY: a live container; a terminated name; `capacity` writable
            // bytes; valid out-pointer.
            let rc = unsafe {
                (self.sdk.api.RfcGetBytes)(
                    self.handle,
                    name.as_ptr(),
                    buffer.as_mut_ptr(),
                    capacity,
                    &mut info,
                )
            };
            check(rc, &info)?;
            return Ok(buffer);
        }
        let mut size = 256usize;
        for _ in 0..2 {
            let mut buffer = vec![0u8; size];
            let capacity = len_u32(size)?;
            let mut needed = 0u32;
            // SAFETY: as above, plus a valid out-pointer for the length.
            let rc = unsafe {
                (self.sdk.api.RfcGetXString)(
                    self.handle,
                    name.as_ptr(),
                    buffer.as_mut_ptr(),
                    capacity,
                    &mut needed,
                    &mut info,
                )
            };
            if rc == RFC_RC::BUFFER_TOO_SMALL && (needed as usize) > size {
                size = needed as usize;
                continue;
            }
            check(rc, &info)?;
            buffer.truncate(needed as usize);
            return Ok(buffer);
        }
        Err(RfcErrorInfo::local(
            RFC_RC::BUFFER_TOO_SMALL,
            "RFC_BUFFER_TOO_SMALL",
            "the xstring kept growing while it was read",
        ))
    }

    /// The structure field or parameter `name`.
    ///
    /// # Errors
    /// The SDK's error (unknown name, not a structure).
    pub fn structure(&mut self, name: &str) -> Result<DataRef<'_>, RfcErrorInfo> {
        let name = name_z(name)?;
        let mut handle: ffi::RFC_STRUCTURE_HANDLE = std::ptr::null_mut();
        let mut info = RFC_ERROR_INFO::default();
        // SAFETY: a live container; a terminated name; valid out-pointers.
        let rc = unsafe {
            (self.sdk.api.RfcGetStructure)(self.handle, name.as_ptr(), &mut handle, &mut info)
        };
        check(rc, &info)?;
        Ok(DataRef {
            sdk: self.sdk,
            handle,
            _borrow: PhantomData,
        })
    }

    /// The table field or parameter `name`.
    ///
    /// # Errors
    /// The SDK's error (unknown name, not a table).
    pub fn table(&mut self, name: &str) -> Result<TableRef<'_>, RfcErrorInfo> {
        let name = name_z(name)?;
        let mut handle: ffi::RFC_TABLE_HANDLE = std::ptr::null_mut();
        let mut info = RFC_ERROR_INFO::default();
        // SAFETY: a live container; a terminated name; valid out-pointers.
        let rc = unsafe {
            (self.sdk.api.RfcGetTable)(self.handle, name.as_ptr(), &mut handle, &mut info)
        };
        check(rc, &info)?;
        Ok(TableRef {
            sdk: self.sdk,
            handle,
            _borrow: PhantomData,
        })
    }
}

/// A table, borrowed from the container that holds it.
pub struct TableRef<'a> {
    sdk: &'static Sdk,
    handle: ffi::RFC_TABLE_HANDLE,
    _borrow: PhantomData<&'a mut ()>,
}

impl std::fmt::Debug for TableRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableRef").finish_non_exhaustive()
    }
}

impl TableRef<'_> {
    /// The number of rows.
    ///
    /// # Errors
    /// The SDK's error.
    pub fn row_count(&mut self) -> Result<usize, RfcErrorInfo> {
        let mut count = 0u32;
        let mut info = RFC_ERROR_INFO::default();
        // SAFETY: a live table handle and valid out-pointers.
        let rc = unsafe { (self.sdk.api.RfcGetRowCount)(self.handle, &mut count, &mut info) };
        check(rc, &info)?;
        Ok(count as usize)
    }

    /// Row `index` (from 0).
    ///
    /// # Errors
    /// The SDK's error (`RFC_TABLE_MOVE_EOF` past the end).
    pub fn row(&mut self, index: usize) -> Result<DataRef<'_>, RfcErrorInfo> {
        let index = len_u32(index)?;
        let mut info = RFC_ERROR_INFO::default();
        // SAFETY: a live table handle and a valid out-pointer.
        let rc = unsafe { (self.sdk.api.RfcMoveTo)(self.handle, index, &mut info) };
        check(rc, &info)?;
        // SAFETY: as above; the SDK returns the current row or null.
        let row = unsafe { (self.sdk.api.RfcGetCurrentRow)(self.handle, &mut info) };
        self.view(row, &info)
    }

    /// Appends an initial row and returns it.
    ///
    /// # Errors
    /// The SDK's error.
    pub fn append_row(&mut self) -> Result<DataRef<'_>, RfcErrorInfo> {
        let mut info = RFC_ERROR_INFO::default();
        // SAFETY: a live table handle and a valid out-pointer.
        let row = unsafe { (self.sdk.api.RfcAppendNewRow)(self.handle, &mut info) };
        self.view(row, &info)
    }

    fn view(
        &mut self,
        row: ffi::RFC_STRUCTURE_HANDLE,
        info: &RFC_ERROR_INFO,
    ) -> Result<DataRef<'_>, RfcErrorInfo> {
        if row.is_null() {
            check(RFC_RC::INVALID_HANDLE, info)?;
        }
        Ok(DataRef {
            sdk: self.sdk,
            handle: row,
            _borrow: PhantomData,
        })
    }
}
