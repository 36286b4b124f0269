//! The embedded SAP simulator (backend `sim`): a small SAP system in a SQLite file
//! that behaves, through the [`SapSystem`] / [`SapConnection`] traits, like a real
//! ECC / S/4HANA system seen through PyRFC — so a flow built against it works
//! against the real thing.
//!
//! What it offers:
//! - function modules `STFC_CONNECTION`, `RFC_PING`, `RFC_SYSTEM_INFO`,
//!   `BAPI_CUSTOMER_CREATEFROMDATA1`, `BAPI_CUSTOMER_CHANGEFROMDATA1`,
//!   `BAPI_CUSTOMER_GETDETAIL2`, `BAPI_CUSTOMER_GETLIST`,
//!   `BAPI_TRANSACTION_COMMIT`, `BAPI_TRANSACTION_ROLLBACK`, `RFC_READ_TABLE`
//!   (table `KNA1`), `RFC_GET_FUNCTION_INTERFACE`, `DDIF_FIELDINFO_GET`,
//!   `RFC_FUNCTION_SEARCH` (the simulator's own function modules) and
//!   `Z_SAPBRIDGE_TYPES_ECHO` (one value of every ABAP type, echoed);
//! - one declarative metadata model (`types.rs`, `structures.rs`, `tables.rs`,
//!   `functions.rs`) that drives input validation, output formatting and the two
//!   introspection functions;
//! - real LUW semantics per session (see `luw.rs`) and an exactly-once commit hook
//!   ([`SimSession::commit_unit`], [`Simulator::tid_committed`]);
//! - knobs for tests: per-call latency and a communication-failure rate.
//!
//! Blocking: SQLite work runs on tokio's blocking pool (`spawn_blocking`) — one
//! call's work is a handful of tiny statements, but a commit may wait on another
//! process's write lock (busy timeout), and that wait must not stall a runtime
//! worker. Within one process all sessions share one SQLite connection behind a
//! mutex, which is plenty for a simulator.

// `RfcError` is the error type `SapConnection::call` is fixed to; every function
// implementation produces one as is, and boxing it internally would buy nothing.
#![allow(clippy::result_large_err)]

mod bapi_customer;
mod errors;
mod function_search;
mod functions;
mod introspection;
mod logon;
mod luw;
mod ranges;
mod read_table;
mod record;
mod seed;
mod session;
mod store;
mod structures;
mod system;
mod tables;
mod transaction;
mod types;
mod types_echo;
mod values;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use logon::{FAILS_TO_USER_LOCK, LogonRefused, SIM_PASSWORD, SIM_USER, UserLocks};
pub use session::SimSession;
pub use store::TidCommit;

use crate::{ErrorGroup, RfcError, SapConnection, SapSystem};

/// Knobs of the simulator, for tests and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// Added latency per function call.
    pub latency: Duration,
    /// Probability (0.0..=1.0) that a call fails with `COMMUNICATION_FAILURE`
    /// before it runs (the session's uncommitted changes are lost with it, as when
    /// a real connection breaks).
    pub fault_rate: f64,
}

/// Errors opening or querying the simulator's state file.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The state file could not be opened, initialised or read.
    #[error("simulator state file: {0}")]
    Storage(#[from] rusqlite::Error),
}

/// The simulated SAP system (system id `SIM`, client `001`, user `SIMUSER`).
///
/// Cheap to clone; clones share the state file connection. Several simulators,
/// also in different processes, may open the same file.
#[derive(Debug, Clone)]
pub struct Simulator {
    options: SimOptions,
    store: Arc<store::Store>,
}

impl Simulator {
    /// Opens (creating and seeding if new) the simulator whose state lives in the
    /// SQLite file at `db_path`.
    ///
    /// Blocks while it opens and, the first time, seeds the file; call it at start
    /// up (or from `spawn_blocking`).
    ///
    /// # Errors
    /// [`SimError::Storage`] when the file cannot be opened or initialised.
    pub fn open(db_path: &Path, options: SimOptions) -> Result<Self, SimError> {
        let store = store::Store::open(db_path)?;
        Ok(Self {
            options,
            store: Arc::new(store),
        })
    }

    /// Opens a session, typed (for [`SimSession::commit_unit`]).
    ///
    /// # Errors
    /// None today; the signature matches [`SapSystem::connect`].
    pub async fn session(&self) -> Result<SimSession, RfcError> {
        Ok(SimSession::new(
            Arc::clone(&self.store),
            self.options.clone(),
        ))
    }

    /// Whether a unit with this TID was committed (see
    /// [`SimSession::commit_unit`]). One tiny indexed read; it does not wait
    /// for writers (WAL).
    ///
    /// # Errors
    /// [`SimError::Storage`] when the state file cannot be read.
    pub fn tid_committed(&self, tid: &str) -> Result<bool, SimError> {
        Ok(self.store.tid_committed(tid)?)
    }

    /// Forgets a committed TID, as SAP does when the sender confirms a tRFC unit
    /// (a unit sent again with it would then run again). Returns whether the TID
    /// was recorded.
    ///
    /// # Errors
    /// [`SimError::Storage`] when the state file cannot be written.
    pub fn confirm_tid(&self, tid: &str) -> Result<bool, SimError> {
        Ok(self.store.forget_tid(tid)?)
    }

    /// How many customers the state file holds (committed ones only).
    ///
    /// # Errors
    /// [`SimError::Storage`] when the state file cannot be read.
    pub fn customer_count(&self) -> Result<u64, SimError> {
        Ok(self.store.customer_count()?)
    }
}

#[async_trait]
impl SapSystem for Simulator {
    async fn connect(&self) -> Result<Box<dyn SapConnection>, RfcError> {
        Ok(Box::new(self.session().await?))
    }

    async fn tid_committed(&self, tid: &str) -> Result<Option<bool>, RfcError> {
        let sim = self.clone();
        let tid = tid.to_owned();
        tokio::task::spawn_blocking(move || Simulator::tid_committed(&sim, &tid))
            .await
            .map_err(|e| {
                RfcError::new(
                    ErrorGroup::CommunicationFailure,
                    "TID_CHECK_FAILED",
                    e.to_string(),
                )
            })?
            .map(Some)
            .map_err(|e| {
                RfcError::new(
                    ErrorGroup::CommunicationFailure,
                    "TID_CHECK_FAILED",
                    e.to_string(),
                )
            })
    }
}
