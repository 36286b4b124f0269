//! Function and type descriptions: [`FunctionDesc`] (a function module's
//! parameters), [`TypeDesc`] (a structure's or table line's fields), read into
//! plain Rust values ([`ParameterDesc`], [`FieldDesc`]).
//!
//! Descriptions returned by `RfcGetFunctionDesc` belong to the SDK's repository
//! cache: they are never destroyed by the caller and stay valid for the life of
//! the process (unless removed from the cache, which sapbridge never does), and
//! the SDK only reads them, so they may be shared between threads.

use crate::connection::check;
use crate::error::RfcErrorInfo;
use crate::ffi::{self, RFC_DIRECTION, RFC_ERROR_INFO, RFCTYPE};
use crate::library::Sdk;
use crate::uc::from_uc;

/// A function module's description, owned by the SDK's cache.
#[derive(Clone, Copy)]
pub struct FunctionDesc {
    sdk: &'static Sdk,
    handle: ffi::RFC_FUNCTION_DESC_HANDLE,
}

impl std::fmt::Debug for FunctionDesc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionDesc").finish_non_exhaustive()
    }
}

// SAFETY: the description lives in the SDK's repository cache for the life of the
// process and is read-only after creation; the SDK documents cached metadata as
// usable from any thread.
unsafe impl Send for FunctionDesc {}
// SAFETY: as for `Send`: every method only reads the immutable description.
unsafe impl Sync for FunctionDesc {}

impl FunctionDesc {
    pub(crate) fn new(sdk: &'static Sdk, handle: ffi::RFC_FUNCTION_DESC_HANDLE) -> Self {
        Self { sdk, handle }
    }

    pub(crate) fn sdk(&self) -> &'static Sdk {
        self.sdk
    }

    pub(crate) fn raw(&self) -> ffi::RFC_FUNCTION_DESC_HANDLE {
        self.handle
    }

    /// The parameters, in interface order.
    ///
    /// # Errors
    /// The SDK's error.
    pub fn parameters(&self) -> Result<Vec<ParameterDesc>, RfcErrorInfo> {
        let mut count = 0u32;
        let mut info = RFC_ERROR_INFO::default();
        // SAFETY: a live description handle and valid out-pointers.
        let rc = unsafe { (self.sdk.api.RfcGetParameterCount)(self.handle, &mut count, &mut info) };
        check(rc, &info)?;
        (0..count)
            .map(|index| {
                let mut raw = ffi::RFC_PARAMETER_DESC::default();
                // SAFETY: `index` is below the count the SDK reported; `raw` is a
                // properly laid out RFC_PARAMETER_DESC (size checked in ffi.rs).
                let rc = unsafe {
                    (self.sdk.api.RfcGetParameterDescByIndex)(
                        self.handle,
                        index,
                        &mut raw,
                        &mut info,
                    )
                };
                check(rc, &info)?;
                Ok(ParameterDesc {
                    name: from_uc(&raw.name),
                    direction: raw.direction,
                    ty: raw.type_,
                    nuc_length: raw.nucLength,
                    uc_length: raw.ucLength,
                    decimals: raw.decimals,
                    type_desc: TypeDesc::wrap(self.sdk, raw.typeDescHandle),
                    default: from_uc(&raw.defaultValue),
                    text: from_uc(&raw.parameterText),
                    optional: raw.optional != 0,
                })
            })
            .collect()
    }
}

/// A structure's or table line's type description, owned by the SDK's cache.
#[derive(Clone, Copy)]
pub struct TypeDesc {
    sdk: &'static Sdk,
    handle: ffi::RFC_TYPE_DESC_HANDLE,
}

impl std::fmt::Debug for TypeDesc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypeDesc").finish_non_exhaustive()
    }
}

// SAFETY: as for `FunctionDesc`: cached, read-only, process lifetime.
unsafe impl Send for TypeDesc {}
// SAFETY: as for `FunctionDesc`.
unsafe impl Sync for TypeDesc {}

impl TypeDesc {
    fn wrap(sdk: &'static Sdk, handle: ffi::RFC_TYPE_DESC_HANDLE) -> Option<Self> {
        (!handle.is_null()).then_some(Self { sdk, handle })
    }

    /// The DDIC name of the type (`BAPIRET2`).
    ///
    /// # Errors
    /// The SDK's error.
    pub fn name(&self) -> Result<String, RfcErrorInfo> {
        let mut name: ffi::RFC_ABAP_NAME = [0; 31];
        let mut info = RFC_ERROR_INFO::default();
        // SAFETY: a live type handle; `name` has the 31 units RFC_ABAP_NAME holds.
        let rc =
            unsafe { (self.sdk.api.RfcGetTypeName)(self.handle, name.as_mut_ptr(), &mut info) };
        check(rc, &info)?;
        Ok(from_uc(&name))
    }

    /// The fields, in order.
    ///
    /// # Errors
    /// The SDK's error.
    pub fn fields(&self) -> Result<Vec<FieldDesc>, RfcErrorInfo> {
        let mut count = 0u32;
        let mut info = RFC_ERROR_INFO::default();
        // SAFETY: a live type handle and valid out-pointers.
        let rc = unsafe { (self.sdk.api.RfcGetFieldCount)(self.handle, &mut count, &mut info) };
        check(rc, &info)?;
        (0..count)
            .map(|index| {
                let mut raw = ffi::RFC_FIELD_DESC::default();
                // SAFETY: `index` is below the reported count; `raw` has the
                // SDK's RFC_FIELD_DESC layout (checked in ffi.rs).
                let rc = unsafe {
                    (self.sdk.api.RfcGetFieldDescByIndex)(self.handle, index, &mut raw, &mut info)
                };
                check(rc, &info)?;
                Ok(FieldDesc {
                    name: from_uc(&raw.name),
                    ty: raw.type_,
                    nuc_length: raw.nucLength,
                    uc_length: raw.ucLength,
                    decimals: raw.decimals,
                    type_desc: TypeDesc::wrap(self.sdk, raw.typeDescHandle),
                })
            })
            .collect()
    }
}

/// One parameter of a function module.
#[derive(Debug, Clone)]
pub struct ParameterDesc {
    /// Name.
    pub name: String,
    /// IMPORTING, EXPORTING, CHANGING or TABLES.
    pub direction: RFC_DIRECTION,
    /// Type.
    pub ty: RFCTYPE,
    /// Length in bytes in a non-Unicode system (characters for CHAR-like types).
    pub nuc_length: u32,
    /// Length in bytes in a Unicode system.
    pub uc_length: u32,
    /// Decimals.
    pub decimals: u32,
    /// The line type of a structure or table parameter.
    pub type_desc: Option<TypeDesc>,
    /// Default value as written in the interface.
    pub default: String,
    /// Short text.
    pub text: String,
    /// Whether the parameter is optional.
    pub optional: bool,
}

/// One field of a structure or table line.
#[derive(Debug, Clone)]
pub struct FieldDesc {
    /// Name.
    pub name: String,
    /// Type.
    pub ty: RFCTYPE,
    /// Length in bytes in a non-Unicode system (characters for CHAR-like types).
    pub nuc_length: u32,
    /// Length in bytes in a Unicode system.
    pub uc_length: u32,
    /// Decimals.
    pub decimals: u32,
    /// The type of a nested structure or table.
    pub type_desc: Option<TypeDesc>,
}
