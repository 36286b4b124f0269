//! One connection to the simulated system ([`SimSession`]): the call pipeline
//! (latency, fault injection, function lookup, validation, execution, output
//! formatting) and the dispatch table from function names to their
//! implementations.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use super::errors::{function_not_found, injected_fault, storage_failure};
use super::functions;
use super::luw::Luw;
use super::store::{Store, TidCommit};
use super::types::FunctionDef;
use super::values::{self, Input};
use super::{
    SimOptions, bapi_customer, function_search, introspection, read_table, system, transaction,
    types_echo,
};
use crate::{Parameters, RfcError, SapConnection};

/// The user every simulated session is logged on as.
pub(crate) const USER: &str = "SIMUSER";
/// The client every simulated session is logged on to.
pub(crate) const CLIENT: &str = "001";

/// What a function implementation sees of its session.
pub(crate) struct Ctx<'a> {
    /// The state file.
    pub(crate) store: &'a Store,
    /// The session's pending changes.
    pub(crate) luw: &'a mut Luw,
}

/// A function implementation: validated input in, raw output out (formatted by
/// the caller). Runs on the blocking pool; may use SQLite.
pub(crate) type Handler = fn(&mut Ctx<'_>, &Input) -> Result<Parameters, RfcError>;

/// Every function the simulator executes. Each must have an interface in
/// `functions.rs` (checked by a unit test), which is what makes it callable.
static HANDLERS: &[(&str, Handler)] = &[
    ("BAPI_CUSTOMER_CHANGEFROMDATA1", bapi_customer::change),
    ("BAPI_CUSTOMER_CREATEFROMDATA1", bapi_customer::create),
    ("BAPI_CUSTOMER_GETDETAIL2", bapi_customer::get_detail),
    ("BAPI_CUSTOMER_GETLIST", bapi_customer::get_list),
    ("BAPI_TRANSACTION_COMMIT", transaction::commit),
    ("BAPI_TRANSACTION_ROLLBACK", transaction::rollback),
    ("DDIF_FIELDINFO_GET", introspection::fieldinfo_get),
    ("RFC_FUNCTION_SEARCH", function_search::search),
    (
        "RFC_GET_FUNCTION_INTERFACE",
        introspection::get_function_interface,
    ),
    ("RFC_PING", system::ping),
    ("RFC_READ_TABLE", read_table::read_table),
    ("RFC_SYSTEM_INFO", system::system_info),
    ("STFC_CONNECTION", system::stfc_connection),
    ("Z_SAPBRIDGE_TYPES_ECHO", types_echo::echo),
];

/// The BAPI whose answer [`SimSession::commit_with_tid`] gives.
const COMMIT_FUNCTION: &str = "BAPI_TRANSACTION_COMMIT";

/// The functions whose handlers never touch the store (nor wait on anything): they
/// run on the caller's task instead of the blocking pool.
const STORE_FREE: &[&str] = &[
    "STFC_CONNECTION",
    "RFC_FUNCTION_SEARCH",
    "RFC_PING",
    "RFC_SYSTEM_INFO",
    "Z_SAPBRIDGE_TYPES_ECHO",
];

/// The interface and implementation of `name` (upper case).
fn dispatch(name: &str) -> Option<(&'static FunctionDef, Handler)> {
    let (_, handler) = HANDLERS.iter().find(|(n, _)| *n == name)?;
    Some((functions::lookup(name)?, *handler))
}

/// One session on the simulator, with its own logical unit of work.
///
/// Obtained from [`super::Simulator::session`] (typed) or
/// [`crate::SapSystem::connect`] (boxed). BAPI changes stay in this session until
/// `BAPI_TRANSACTION_COMMIT` (or [`SimSession::commit_unit`]); dropping the
/// session discards them, as closing an SAP connection does.
#[derive(Debug)]
pub struct SimSession {
    store: Arc<Store>,
    options: SimOptions,
    luw: Arc<Mutex<Luw>>,
}

impl SimSession {
    pub(crate) fn new(store: Arc<Store>, options: SimOptions) -> Self {
        Self {
            store,
            options,
            luw: Arc::new(Mutex::new(Luw::default())),
        }
    }

    fn luw(&self) -> MutexGuard<'_, Luw> {
        self.luw.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What every call pays before it runs: the configured latency, and the chance
    /// of an injected connection failure (the server then drops the open LUW).
    async fn round_trip(&mut self) -> Result<(), RfcError> {
        if !self.options.latency.is_zero() {
            tokio::time::sleep(self.options.latency).await;
        }
        if self.options.fault_rate > 0.0 && rand::random::<f64>() < self.options.fault_rate {
            self.luw().clear();
            return Err(injected_fault());
        }
        Ok(())
    }

    /// Whether the session holds uncommitted BAPI changes.
    pub fn has_pending_changes(&self) -> bool {
        !self.luw().is_empty()
    }

    /// Commits the session's pending changes together with `tid` (the unit's call
    /// id) in one SQLite transaction — what `BAPI_TRANSACTION_COMMIT` does, plus
    /// the exactly-once record of tRFC. If `tid` was committed before, nothing is
    /// written, the pending changes are dropped and
    /// [`TidCommit::AlreadyCommitted`] is returned. Either way the session starts a
    /// new LUW afterwards.
    ///
    /// Not cancel-safe: if the future is dropped mid-way the commit may or may not
    /// have happened; [`super::Simulator::tid_committed`] tells which.
    ///
    /// # Errors
    /// `ABAP_RUNTIME_FAILURE` when the state file cannot be written (the pending
    /// changes are kept, a retry may succeed).
    pub async fn commit_unit(&mut self, tid: &str) -> Result<TidCommit, RfcError> {
        let store = Arc::clone(&self.store);
        let luw = Arc::clone(&self.luw);
        let tid = tid.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut luw = luw.lock().unwrap_or_else(PoisonError::into_inner);
            let outcome = store.commit(&luw, Some(&tid)).map_err(storage_failure)?;
            luw.clear();
            Ok(outcome)
        })
        .await
        .map_err(storage_failure)?
    }
}

#[async_trait]
impl SapConnection for SimSession {
    async fn call(
        &mut self,
        function: &str,
        parameters: &Parameters,
    ) -> Result<Parameters, RfcError> {
        self.round_trip().await?;
        let name = function.trim().to_ascii_uppercase();
        let (def, handler) = dispatch(&name).ok_or_else(|| function_not_found(&name))?;
        let input = values::validate(def, parameters)?;
        tracing::debug!(function = %name, "simulator call");
        if STORE_FREE.contains(&def.name) {
            // Nothing to wait for: no hop to the blocking pool.
            let mut luw = self.luw();
            let mut ctx = Ctx {
                store: &self.store,
                luw: &mut luw,
            };
            let raw = handler(&mut ctx, &input)?;
            drop(luw);
            return Ok(values::format_output(def, &input, raw));
        }
        let store = Arc::clone(&self.store);
        let luw = Arc::clone(&self.luw);
        let (raw, input) = tokio::task::spawn_blocking(move || {
            let mut luw = luw.lock().unwrap_or_else(PoisonError::into_inner);
            let mut ctx = Ctx {
                store: &store,
                luw: &mut luw,
            };
            handler(&mut ctx, &input).map(|raw| (raw, input))
        })
        .await
        .map_err(storage_failure)??;
        Ok(values::format_output(def, &input, raw))
    }

    async fn commit_with_tid(&mut self, tid: &str) -> Result<Parameters, RfcError> {
        self.round_trip().await?;
        let outcome = self.commit_unit(tid).await?;
        tracing::debug!(tid, ?outcome, "simulator unit commit");
        // What BAPI_TRANSACTION_COMMIT answers after a successful commit (an empty
        // RETURN), formatted by its interface; nothing is run a second time.
        let (def, _) =
            dispatch(COMMIT_FUNCTION).ok_or_else(|| function_not_found(COMMIT_FUNCTION))?;
        let mut wait = Parameters::new();
        wait.insert("WAIT".into(), "X".into());
        let input = values::validate(def, &wait)?;
        Ok(values::format_output(def, &input, Parameters::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dispatched_function_has_an_interface_and_vice_versa() {
        for (name, _) in HANDLERS {
            assert!(functions::lookup(name).is_some(), "{name} has no interface");
        }
        for def in functions::FUNCTIONS {
            assert!(
                dispatch(def.name).is_some(),
                "{} has no implementation",
                def.name
            );
        }
        assert_eq!(HANDLERS.len(), functions::FUNCTIONS.len());
    }
}
