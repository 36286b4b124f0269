//! A binding to SAP's NW RFC SDK (`libsapnwrfc.so`, `sapnwrfc.dll`), loaded at run
//! time: sapbridge builds, tests and ships without the SDK (which may not be
//! redistributed) and uses it where the customer installed it.
//!
//! This is the one crate of the workspace with `unsafe` code; every `unsafe` block
//! says why it is sound (`clippy::undocumented_unsafe_blocks` is denied). What it
//! offers above the raw interface is small and safe: owned handles that close or
//! destroy themselves, borrows that keep structure and row views inside their
//! container's life, UTF-16 conversion, and errors as Rust values.
//!
//! # Layout
//! - [`ffi`]: the hand-written `#[repr(C)]` subset of `sapnwrfc.h` with its layout
//!   checks (public, so a stand-in library can export the same interface).
//! - [`library`]: loading ([`Sdk::load`]), the function table, the SDK version.
//! - [`connection`]: [`Connection`], [`Canceller`], [`Transaction`] (tRFC).
//! - [`metadata`]: [`FunctionDesc`], [`TypeDesc`], [`ParameterDesc`], [`FieldDesc`].
//! - [`data`]: [`Function`], [`DataRef`], [`TableRef`].
//! - [`error`]: [`RfcErrorInfo`]; [`uc`]: `SAP_UC` text.

// Every SDK call can fail with an `RfcErrorInfo`, errors are the exception and
// carry SAP's texts as given; boxing each would buy nothing.
#![allow(clippy::result_large_err)]

pub mod connection;
pub mod data;
pub mod error;
pub mod ffi;
pub mod library;
pub mod metadata;
pub mod uc;

pub use connection::{Canceller, Connection, Transaction};
pub use data::{DataRef, Function, TableRef};
pub use error::RfcErrorInfo;
pub use ffi::{RFC_DIRECTION, RFC_ERROR_GROUP, RFC_RC, RFCTYPE};
pub use library::{DEFAULT_LIBRARY, LoadError, Sdk, SdkVersion};
pub use metadata::{FieldDesc, FunctionDesc, ParameterDesc, TypeDesc};
