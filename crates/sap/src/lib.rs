//! SAP connections for sapbridge: the [`SapSystem`] / [`SapConnection`] traits, the
//! RFC value model (PyRFC conventions, see `sapbridge_proto::Parameters`) and the
//! backends. The embedded simulator ([`sim`]) is the default system; later backends
//! (SOAP-RFC, NW RFC SDK, OData/HTTP) implement the same traits.

use async_trait::async_trait;
pub use sapbridge_proto::{ErrorGroup, Parameters, RfcError};

pub mod sim;

/// An SAP system that sessions can be opened on.
///
/// Implementations are shared between tasks (`Arc<dyn SapSystem>`).
#[async_trait]
pub trait SapSystem: Send + Sync + 'static {
    /// Opens a new session (one SAP connection with its own logical unit of work).
    ///
    /// Cancel-safe: dropping the future opens nothing.
    ///
    /// # Errors
    /// `COMMUNICATION_FAILURE` when the system cannot be reached, `LOGON_FAILURE`
    /// when it refuses the logon.
    async fn connect(&self) -> Result<Box<dyn SapConnection>, RfcError>;
}

/// One session on an SAP system. Changes made by BAPIs in this session stay
/// invisible to other sessions until `BAPI_TRANSACTION_COMMIT` runs in this session;
/// dropping the session without a commit discards them, as SAP does when a
/// connection closes.
#[async_trait]
pub trait SapConnection: Send {
    /// Calls a function module with its IMPORTING, CHANGING and TABLES parameters and
    /// returns its EXPORTING, CHANGING and TABLES parameters.
    ///
    /// Not cancel-safe: a call dropped mid-way may or may not have run.
    ///
    /// # Errors
    /// An [`RfcError`] of the group that fits: `ABAP_APPLICATION_FAILURE` for an ABAP
    /// exception (`FU_NOT_FOUND` for an unknown function), `EXTERNAL_RUNTIME_FAILURE`
    /// for parameters that do not fit the interface, `COMMUNICATION_FAILURE` when the
    /// connection broke.
    async fn call(&mut self, function: &str, parameters: &Parameters)
    -> Result<Parameters, RfcError>;
}
