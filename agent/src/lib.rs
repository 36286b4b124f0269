//! The sapbridge agent: runs next to SAP, dials OUT to the cloud relay over a
//! WebSocket (TLS), pulls units of work, runs them against SAP under its own
//! allowlist and pushes the outcomes back. No inbound port is opened.
//!
//! ```text
//! run ─▶ reconnect loop ─▶ transport::dial ─▶ session (hello, work, outcomes, acks,
//!                │                                     heartbeats, drain)
//!                └─ backoff (jittered, reset after a healthy session)
//! session ─▶ runner (one task per unit, `concurrency` slots) ─▶ redelivery (what the
//!            journal knows: run / resend / in doubt) ─▶ executor (allowlist,
//!            deadline, one SAP session, commit policy) ─▶ outcomes (held until acked)
//!                                 all journaled in data_dir/journal.db (SQLite)
//! ```
//!
//! The execution journal makes a call id run at most once, across reconnects and
//! agent restarts; unacknowledged outcomes are re-sent after every (re)connect,
//! including the first after a restart.
//!
//! Library entry points: [`run`] opens the configured backends;
//! [`run_with_systems`] takes them already opened (tests share one simulator
//! between two agents). Both return after a graceful shutdown on the token:
//! `Drain`, in-flight units finish (bounded by `shutdown_grace_secs`), their
//! outcomes go out, then `Close{ShuttingDown}` and a WebSocket close frame.

mod allowlist;
mod backoff;
pub mod clock;
mod config;
pub mod doctor;
mod executor;
mod journal;
mod outcomes;
mod passthrough;
mod proxy_env;
mod read_only;
mod reconnect;
mod redelivery;
mod refusal;
mod runner;
mod session;
mod systems;
#[cfg(test)]
mod test_units;
mod tls;
mod transport;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use sapbridge_sap::SapSystem;
use tokio_util::sync::CancellationToken;

pub use config::{
    AgentConfig, BackendConfig, ConfigError, DEFAULT_DATA_DIR, HttpConfig, JournalSync,
    NwrfcBackend, SystemConfig,
};
pub use executor::execute_on_session;
pub use journal::JournalError;
pub use tls::{TlsError, pins_of_pem};

use crate::journal::Journal;
use crate::outcomes::OutcomeStore;

/// Why the agent could not start. Once running, connection problems are logged and
/// retried, never returned.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration is invalid or the token cannot be read.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The TLS configuration (extra CA file) is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The data directory cannot be created.
    #[error(
        "data directory {path}: {source} (set data_dir in the configuration, or \
         SAPBRIDGE_DATA_DIR, to a folder the agent's user may write)"
    )]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The execution journal cannot be opened or read.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A system's backend cannot be opened.
    #[error("system {system}: {reason}")]
    OpenSystem {
        /// The system.
        system: String,
        /// What went wrong.
        reason: String,
    },
}

/// Runs the agent with the backends named in `config` until `shutdown` is
/// cancelled, then drains gracefully.
///
/// # Errors
/// [`AgentError`] when the configuration is invalid, the token or CA file cannot be
/// read, or a backend cannot be opened. Relay connection problems are retried with
/// backoff, not returned.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    config.validate()?;
    config.resolve_token()?;
    std::fs::create_dir_all(&config.data_dir).map_err(|source| AgentError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let systems = systems::open_systems(&config)?;
    run_with_systems(config, systems, shutdown).await
}

/// Same as [`run`], with the systems' backends already opened (by system name).
/// Each configured system needs an entry; the allowlists still come from `config`.
/// The execution journal is opened (or created) at `data_dir/journal.db`.
///
/// # Errors
/// [`AgentError`] when the configuration is invalid, the token or CA file cannot be
/// read, the data directory or the journal cannot be opened, or a configured system
/// has no backend in `systems`.
pub async fn run_with_systems(
    config: AgentConfig,
    systems: HashMap<String, Arc<dyn SapSystem>>,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    config.validate()?;
    config.resolve_token()?;
    let served = systems::serve(&config, systems)?;
    let http = Arc::new(passthrough::HttpTargets::from_config(&config)?);
    std::fs::create_dir_all(&config.data_dir).map_err(|source| AgentError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let path = config.journal_path();
    let sync = config.journal_sync;
    let store = tokio::task::spawn_blocking(move || {
        let journal = Journal::open(&path, sync)?;
        OutcomeStore::open(journal)
    })
    .await
    .map_err(|_| JournalError::Closed)??;
    reconnect::run_agent(config, served, http, Arc::new(store), shutdown).await
}
