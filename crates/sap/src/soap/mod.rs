//! SOAP-RFC: calling function modules through SAP NetWeaver's `/sap/bc/soap/rfc`
//! ICF service — the one way into every ABAP system that needs nothing but HTTP.
//!
//! - [`client`]: [`SoapSystem`], a [`crate::SapSystem`] backend that speaks SOAP-RFC
//!   to a real SAP system (or to our simulator).
//! - [`server`]: [`router`], the same endpoint served in front of any
//!   [`crate::SapSystem`], answering as NetWeaver does (used by `sapbridge sim`).
//!
//! # The wire format
//!
//! `POST /sap/bc/soap/rfc?sap-client=001`, basic auth, `Content-Type: text/xml`,
//! optional `SOAPAction: urn:sap-com:document:sap:rfc:functions`. The Body holds
//! `<urn:FUNC xmlns:urn="urn:sap-com:document:sap:rfc:functions">` with one child
//! per IMPORTING / CHANGING / TABLES parameter (structures as nested elements,
//! table rows as `<item>`); an empty element for a TABLES parameter asks for it
//! back. The answer is `<rfc:FUNC.Response>` with the EXPORTING and CHANGING
//! parameters and the requested TABLES; failures are SOAP Faults with HTTP 500
//! (shapes in [`fault`]); a bad logon is HTTP 401. Value formats are in
//! [`convert`]; `/` in ABAP names travels as `_-`.
//!
//! # Sessions and units of work
//!
//! Real SAP runs each SOAP-RFC request in its own, stateless session: when the
//! request ends, the session ends, and BAPI changes not committed *in that
//! request* are discarded. A `BAPI_TRANSACTION_COMMIT` sent as a second request
//! commits nothing. Three honest ways exist to run BAPI + commit:
//!
//! 1. **A stateful session** (what this module does). SAP's SOAP runtime defines
//!    a session header, `<sap:Session xmlns:sap="http://www.sap.com/webas/630/soap/features/session/">
//!    <enableSession>true</enableSession></sap:Session>`, with the session kept by
//!    the `sap-contextid` cookie (SAP's Java proxies call this "ABAP session"
//!    mode). Our server implements it: `true` opens or keeps a session, `false`
//!    runs the call and ends it, an unknown or expired cookie with the header is a
//!    Fault (`COMMUNICATION_FAILURE`, key `SESSION_EXPIRED`: the LUW is gone).
//!    [`SoapConnection`] sends the header on every call and keeps the cookie, so
//!    all calls of one [`crate::SapConnection`] — the agent's unit of work — run in
//!    one SAP session, and the commit really commits the BAPI. Dropping the
//!    connection ends the session (uncommitted work is discarded).
//! 2. **When the server grants no session** (no `sap-contextid` on the first
//!    answer — an ICF service configured stateless), the connection knows each
//!    request is its own LUW and **refuses** `BAPI_TRANSACTION_COMMIT` after
//!    earlier calls with `EXTERNAL_RUNTIME_FAILURE` / `STATELESS_SESSION` instead
//!    of pretending; the agent then reports the unit as not committed. Whether a
//!    given NetWeaver release honours the session header on `/sap/bc/soap/rfc`
//!    (rather than only on `/sap/bc/srt/…` services) could not be verified from
//!    published traffic; case 2 keeps us correct either way.
//! 3. A wrapper function module that calls the BAPI and the commit (what SAP
//!    customers usually write for SOAP) works through any backend unchanged.
//!
//! Buffering calls client-side until the commit was rejected: the agent must see
//! each call's `RETURN` before it decides to commit, so buffered results would be
//! made up.

pub mod client;
pub(crate) mod convert;
pub(crate) mod envelope;
pub(crate) mod fault;
pub(crate) mod metadata;
pub mod server;
pub(crate) mod session;
pub(crate) mod xml;

pub use client::{SoapConfig, SoapConfigError, SoapConnection, SoapSystem};
pub use server::{SoapAuth, router, router_with_locks};

/// The ICF path of the SOAP-RFC service.
pub const SOAP_RFC_PATH: &str = "/sap/bc/soap/rfc";

/// The largest request body the server accepts (larger bodies get HTTP 413).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// SOAP 1.1 envelope namespace.
pub(crate) const SOAP_ENV_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// SAP's namespace for RFC function modules in SOAP.
pub(crate) const RFC_NS: &str = "urn:sap-com:document:sap:rfc:functions";

/// SAP's SOAP session feature namespace.
pub(crate) const SESSION_NS: &str = "http://www.sap.com/webas/630/soap/features/session/";

/// Namespace of sapbridge's Fault detail for non-ABAP failures (an extension).
pub(crate) const SAPBRIDGE_ERROR_NS: &str = "urn:sapbridge:soap:rfc-error";

/// The cookie that carries a stateful session's id, as on NetWeaver.
pub(crate) const CONTEXT_COOKIE: &str = "sap-contextid";
