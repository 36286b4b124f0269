//! SAP connections for sapbridge: the [`SapSystem`] / [`SapConnection`] traits, the
//! RFC value model (PyRFC conventions, see `sapbridge_proto::Parameters`) and the
//! backends. The embedded simulator ([`sim`]) is the default system; later backends
//! (SOAP-RFC, NW RFC SDK, OData/HTTP) implement the same traits.
//!
//! # Layout
//! - [`sim`]: the embedded SAP simulator; [`soap`]: SOAP-RFC client and server;
//!   [`nwrfc`]: RFC through SAP's NW RFC SDK, loaded at run time.
//! - [`logon_guard`]: never lock the SAP user (shared by the backends that log on).
//! - [`UnavailableSystem`]: a system whose backend could not be set up, answering
//!   every call with the reason.
//! - [`where_clause`]: the one grammar of `RFC_READ_TABLE`'s dynamic WHERE clause
//!   (the simulator evaluates it, the agent refuses what lies outside it).
//! - [`table_read`]: the rules for a table read's `OPTIONS` and `FIELDS` that the
//!   agent and the relay both enforce.
//! - [`date_time`]: what DATS and TIMS values are (the simulator and the relay's
//!   pre-check both apply it).
//! - [`bapi_return`]: which messages of a BAPI's `RETURN` say it failed (the agent
//!   rolls back on them, the relay's actions answer them as errors).

use async_trait::async_trait;
pub use sapbridge_proto::{ErrorGroup, FunctionCall, Parameters, RfcError};
pub use unavailable::UnavailableSystem;

pub mod bapi_return;
pub mod date_time;
pub mod logon_guard;
pub mod nwrfc;
pub mod sim;
pub mod soap;
pub mod table_read;
mod unavailable;
pub mod where_clause;

/// The integer a JSON number stands for: `10` and also `10.0` (PowerShell and many
/// JSON libraries write whole numbers so), but not `10.5` nor a number outside
/// `i64`. Every backend and the relay's pre-check read INT values with it.
pub fn integer(value: &serde_json::Value) -> Option<i64> {
    let number = value.as_number()?;
    if let Some(n) = number.as_i64() {
        return Some(n);
    }
    let x = number.as_f64()?;
    // -2^63 and 2^63 are exact in f64; i64 holds [-2^63, 2^63).
    let whole = x.fract() == 0.0
        && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&x);
    #[allow(clippy::cast_possible_truncation)] // whole and in range: exact
    whole.then_some(x as i64)
}

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

    /// Whether a unit committed with [`SapConnection::commit_with_tid`] under `tid`
    /// is committed: `Some(true)` / `Some(false)`, or `None` when this system keeps
    /// no record of TIDs (then an in-doubt unit cannot be resolved by asking).
    ///
    /// # Errors
    /// When the system cannot be asked (the answer is then unknown, not `false`).
    async fn tid_committed(&self, tid: &str) -> Result<Option<bool>, RfcError> {
        let _ = tid;
        Ok(None)
    }

    /// Whether this backend lets logons through or stopped logging on after SAP
    /// refused its password (see [`logon_guard`]); `None` for backends that do
    /// not log on (the simulator).
    fn logon_state(&self) -> Option<logon_guard::LogonState> {
        None
    }

    /// Lifts a logon block (an operator fixed the password in SAP, not in its
    /// source): the next call logs on again, once. Nothing for backends that do
    /// not log on.
    fn lift_logon_block(&self) {}

    /// Forgets cached function interfaces (an operator transported a changed
    /// interface into SAP): they are read again at their next call.
    fn forget_metadata(&self) {}

    /// Whether a committing unit of these calls goes to this system as one
    /// transactional unit ([`SapConnection::submit_transaction`], SAP's tRFC): the
    /// system runs it at most once per TID, so a unit in doubt may simply be
    /// submitted again with the same TID. `false` by default.
    fn sends_as_trfc(&self, calls: &[FunctionCall]) -> bool {
        let _ = calls;
        false
    }
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
    async fn call(
        &mut self,
        function: &str,
        parameters: &Parameters,
    ) -> Result<Parameters, RfcError>;

    /// Commits this session's logical unit of work as `BAPI_TRANSACTION_COMMIT`
    /// with `WAIT = 'X'` does, and returns that BAPI's exports (its `RETURN`).
    ///
    /// Systems that keep a TID record (SAP's tRFC idea) store `tid` in the same
    /// database transaction as the changes, so [`SapSystem::tid_committed`] can later
    /// tell whether the unit committed even if the caller died mid-commit. The
    /// default runs `BAPI_TRANSACTION_COMMIT` and records nothing.
    ///
    /// # Errors
    /// As [`SapConnection::call`].
    async fn commit_with_tid(&mut self, tid: &str) -> Result<Parameters, RfcError> {
        let _ = tid;
        let mut wait = Parameters::new();
        wait.insert("WAIT".into(), "X".into());
        self.call("BAPI_TRANSACTION_COMMIT", &wait).await
    }

    /// Sends `calls` as one transactional unit (SAP's tRFC) identified by `tid`
    /// (the call id): the system runs them and commits, at most once per TID, and
    /// gives no results back. Only systems whose [`SapSystem::dedupes_tids`] is
    /// `true` support it.
    ///
    /// Not cancel-safe: a unit dropped mid-way may or may not have committed;
    /// submitting it again with the same TID is safe.
    ///
    /// # Errors
    /// `EXTERNAL_RUNTIME_FAILURE` / `TRFC_NOT_SUPPORTED` by default; otherwise as
    /// [`SapConnection::call`] (nothing was committed, the unit may be resubmitted).
    async fn submit_transaction(
        &mut self,
        tid: &str,
        calls: &[FunctionCall],
    ) -> Result<(), RfcError> {
        let _ = (tid, calls);
        Err(RfcError::new(
            ErrorGroup::ExternalRuntimeFailure,
            "TRFC_NOT_SUPPORTED",
            "this backend cannot send transactional (tRFC) units",
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn whole_numbers_written_with_a_fraction_are_integers() {
        assert_eq!(super::integer(&json!(10)), Some(10));
        assert_eq!(super::integer(&json!(10.0)), Some(10));
        assert_eq!(super::integer(&json!(-3.0)), Some(-3));
        assert_eq!(super::integer(&json!(10.5)), None);
        assert_eq!(super::integer(&json!(1e300)), None);
        assert_eq!(super::integer(&json!(u64::MAX)), None);
        assert_eq!(super::integer(&json!("10")), None);
        assert_eq!(
            super::integer(&json!(-9.223_372_036_854_776e18)),
            Some(i64::MIN)
        );
    }
}
