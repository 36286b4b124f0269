//! The sapbridge agent: runs next to SAP, dials OUT to the cloud relay over a
//! WebSocket (TLS), pulls units of work, runs them against SAP under its own
//! allowlist and pushes the outcomes back. No inbound port is opened.
//!
//! ```text
//! run ─▶ reconnect loop ─▶ transport::dial ─▶ session (hello, work, outcomes, acks,
//!                │                                     heartbeats, drain)
//!                └─ backoff (jittered, reset after a healthy session)
//! session ─▶ runner (one task per unit, `concurrency` slots) ─▶ executor (allowlist,
//!            deadline, one SAP session, commit policy) ─▶ outcomes (held until acked)
//! ```
//!
//! Library entry points: [`run`] opens the configured backends;
//! [`run_with_systems`] takes them already opened (tests share one simulator
//! between two agents). Both return after a graceful shutdown on the token:
//! `Drain`, in-flight units finish (bounded by `shutdown_grace_secs`), their
//! outcomes go out, then `Close{ShuttingDown}` and a WebSocket close frame.

mod allowlist;
mod backoff;
mod config;
mod executor;
mod outcomes;
mod reconnect;
mod runner;
mod session;
mod systems;
mod tls;
mod transport;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use sapbridge_sap::SapSystem;
use tokio_util::sync::CancellationToken;

pub use config::{AgentConfig, BackendConfig, ConfigError, SystemConfig};
pub use tls::TlsError;

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
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
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
///
/// # Errors
/// [`AgentError`] when the configuration is invalid, the token or CA file cannot be
/// read, or a configured system has no backend in `systems`.
pub async fn run_with_systems(
    config: AgentConfig,
    systems: HashMap<String, Arc<dyn SapSystem>>,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    config.validate()?;
    config.resolve_token()?;
    let served = systems::serve(&config, systems)?;
    reconnect::run_agent(config, served, shutdown).await
}
