//! Loading the NW RFC library at run time: [`Sdk::load`] opens `libsapnwrfc.so` /
//! `sapnwrfc.dll` from a configured path or the platform's search path, resolves
//! every function sapbridge uses up front (a missing one is an error at load, not a
//! crash at the first call), reads the SDK version, and never unloads the library:
//! the SDK keeps threads and caches alive for the life of the process, and unloading
//! it under them would be undefined behaviour.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::ffi;
use crate::uc::from_uc;

/// The file name the platform's loader searches for when no path is configured.
#[cfg(target_os = "windows")]
pub const DEFAULT_LIBRARY: &str = "sapnwrfc.dll";
/// The file name the platform's loader searches for when no path is configured.
#[cfg(target_os = "macos")]
pub const DEFAULT_LIBRARY: &str = "libsapnwrfc.dylib";
/// The file name the platform's loader searches for when no path is configured.
#[cfg(not(any(target_os = "windows", target_os = "macos")))]
pub const DEFAULT_LIBRARY: &str = "libsapnwrfc.so";

/// Why the library could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The loader could not open the file (missing, wrong architecture, a
    /// dependency such as `libsapucum.so` missing).
    #[error("cannot load the SAP NW RFC library {library}: {reason}")]
    Open {
        /// The path or file name tried.
        library: String,
        /// The loader's message.
        reason: String,
    },
    /// The file loaded but lacks a function sapbridge needs (not the NW RFC SDK, or
    /// a release too old).
    #[error("{library} is not a usable SAP NW RFC library: it has no {symbol}")]
    MissingSymbol {
        /// The path or file name.
        library: String,
        /// The missing function.
        symbol: &'static str,
    },
}

/// The SDK's version as `RfcGetVersion` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdkVersion {
    /// Major version (7 for 7.50).
    pub major: u32,
    /// Minor version (500 for 7.50).
    pub minor: u32,
    /// Patch level.
    pub patch: u32,
    /// The version text the library gives (`"750 Patch Level 12"`).
    pub text: String,
}

impl std::fmt::Display for SdkVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{} patch level {}",
            self.major, self.minor, self.patch
        )
    }
}

/// Declares [`Api`], the table of SDK functions, and its loader.
macro_rules! api {
    ($($name:ident),* $(,)?) => {
        /// Every SDK function sapbridge calls, resolved once at load.
        #[derive(Clone, Copy)]
        #[allow(non_snake_case)]
        pub(crate) struct Api {
            $(pub(crate) $name: ffi::$name,)*
        }

        impl Api {
            fn resolve(lib: &libloading::Library, library: &str) -> Result<Self, LoadError> {
                Ok(Self {
                    $($name: {
                        let symbol = concat!(stringify!($name), "\0");
                        // SAFETY: the symbol is looked up by its exported C name and
                        // typed with the signature `sapnwrfc.h` declares for it
                        // (ffi.rs); the copied function pointer stays valid because
                        // the library is never unloaded (see `Sdk::load`).
                        let found = unsafe { lib.get::<ffi::$name>(symbol.as_bytes()) };
                        *found.map_err(|_| LoadError::MissingSymbol {
                            library: library.to_owned(),
                            symbol: stringify!($name),
                        })?
                    },)*
                })
            }
        }
    };
}

api!(
    RfcGetVersion,
    RfcOpenConnection,
    RfcCloseConnection,
    RfcCancel,
    RfcPing,
    RfcResetServerContext,
    RfcIsConnectionHandleValid,
    RfcGetFunctionDesc,
    RfcGetParameterCount,
    RfcGetParameterDescByIndex,
    RfcGetFieldCount,
    RfcGetFieldDescByIndex,
    RfcGetTypeName,
    RfcCreateFunction,
    RfcDestroyFunction,
    RfcInvoke,
    RfcGetChars,
    RfcGetNum,
    RfcGetDate,
    RfcGetTime,
    RfcGetString,
    RfcGetBytes,
    RfcGetXString,
    RfcGetInt,
    RfcGetInt1,
    RfcGetInt2,
    RfcGetInt8,
    RfcGetFloat,
    RfcSetChars,
    RfcSetNum,
    RfcSetDate,
    RfcSetTime,
    RfcSetString,
    RfcSetBytes,
    RfcSetXString,
    RfcSetInt,
    RfcSetInt1,
    RfcSetInt2,
    RfcSetInt8,
    RfcSetFloat,
    RfcGetStructure,
    RfcGetTable,
    RfcGetRowCount,
    RfcMoveTo,
    RfcGetCurrentRow,
    RfcAppendNewRow,
    RfcCreateTransaction,
    RfcInvokeInTransaction,
    RfcSubmitTransaction,
    RfcConfirmTransaction,
    RfcDestroyTransaction,
);

/// A loaded NW RFC library. Lives for the rest of the process (`&'static`).
pub struct Sdk {
    pub(crate) api: Api,
    library: String,
    version: SdkVersion,
}

impl std::fmt::Debug for Sdk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sdk")
            .field("library", &self.library)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Libraries loaded so far, by the path or name given: loading one twice gives the
/// same [`Sdk`].
fn loaded() -> &'static Mutex<HashMap<PathBuf, &'static Sdk>> {
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, &'static Sdk>>> = OnceLock::new();
    LOADED.get_or_init(Default::default)
}

impl Sdk {
    /// Loads the library at `path`, or [`DEFAULT_LIBRARY`] from the platform's
    /// search path (`LD_LIBRARY_PATH`, `PATH`) when `path` is `None`. Blocks while
    /// the loader runs; call it at start-up.
    ///
    /// # Errors
    /// [`LoadError`] naming the library and what is wrong with it.
    pub fn load(path: Option<&Path>) -> Result<&'static Sdk, LoadError> {
        let key = path.map_or_else(|| PathBuf::from(DEFAULT_LIBRARY), Path::to_path_buf);
        let mut loaded = loaded().lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sdk) = loaded.get(&key) {
            return Ok(sdk);
        }
        let library = key.display().to_string();
        // SAFETY: loading runs the library's initialisers. The NW RFC SDK's are
        // plain C runtime set-up with no preconditions on the caller; a file that
        // is not the SDK is rejected below unless it exports the SDK's functions.
        let lib = unsafe { libloading::Library::new(&key) }.map_err(|e| LoadError::Open {
            library: library.clone(),
            reason: e.to_string(),
        })?;
        let api = Api::resolve(&lib, &library)?;
        // Never unloaded: the function pointers in `api` point into it.
        std::mem::forget(lib);
        let (mut major, mut minor, mut patch) = (0u32, 0u32, 0u32);
        // SAFETY: RfcGetVersion writes three unsigned integers through valid
        // pointers and returns a pointer to a static, zero-terminated string (or
        // null, handled by `read_static_uc`).
        let text = unsafe { (api.RfcGetVersion)(&mut major, &mut minor, &mut patch) };
        // SAFETY: `text` is null or the SDK's static version string.
        let text = unsafe { read_static_uc(text) };
        let sdk: &'static Sdk = Box::leak(Box::new(Sdk {
            api,
            library,
            version: SdkVersion {
                major,
                minor,
                patch,
                text,
            },
        }));
        loaded.insert(key, sdk);
        Ok(sdk)
    }

    /// The SDK version found.
    pub fn version(&self) -> &SdkVersion {
        &self.version
    }

    /// The path or file name the library was loaded from.
    pub fn library(&self) -> &str {
        &self.library
    }
}

/// Reads a zero-terminated `SAP_UC` string the SDK owns, at most 1024 units.
///
/// # Safety
/// `text` must be null or point to a zero-terminated `SAP_UC` string (or at
/// least 1024 readable units) that stays valid during the call.
unsafe fn read_static_uc(text: *const ffi::SAP_UC) -> String {
    if text.is_null() {
        return String::new();
    }
    let mut units = Vec::new();
    for i in 0..1024 {
        // SAFETY: the caller guarantees the string is readable up to its
        // terminator, and we stop at the terminator.
        let unit = unsafe { *text.add(i) };
        if unit == 0 {
            break;
        }
        units.push(unit);
    }
    from_uc(&units)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_named_in_the_error() {
        let path = Path::new("/nonexistent/dir/libsapnwrfc.so");
        let error = Sdk::load(Some(path)).unwrap_err().to_string();
        assert!(error.contains("/nonexistent/dir/libsapnwrfc.so"), "{error}");
        assert!(
            error.starts_with("cannot load the SAP NW RFC library"),
            "{error}"
        );
    }
}
