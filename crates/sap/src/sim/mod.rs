//! The embedded SAP simulator (backend `sim`). SCAFFOLD: being replaced by the full
//! simulator; the public API below (`Simulator::open`, `SimOptions`) is fixed.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;

use crate::{ErrorGroup, Parameters, RfcError, SapConnection, SapSystem};

/// Knobs of the simulator, for tests and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// Added latency per function call.
    pub latency: Duration,
    /// Probability (0.0..=1.0) that a call fails with `COMMUNICATION_FAILURE`
    /// before it runs.
    pub fault_rate: f64,
}

/// Errors opening the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The state file could not be opened or initialised.
    #[error("simulator state file: {0}")]
    Storage(#[from] rusqlite::Error),
}

/// The simulated SAP system.
#[derive(Debug, Clone)]
pub struct Simulator {
    options: SimOptions,
}

impl Simulator {
    /// Opens (creating and seeding if new) the simulator whose state lives in the
    /// SQLite file at `db_path`.
    ///
    /// # Errors
    /// [`SimError::Storage`] when the file cannot be opened or initialised.
    pub fn open(db_path: &Path, options: SimOptions) -> Result<Self, SimError> {
        let _ = db_path;
        Ok(Self { options })
    }
}

#[async_trait]
impl SapSystem for Simulator {
    async fn connect(&self) -> Result<Box<dyn SapConnection>, RfcError> {
        Ok(Box::new(SimSession { latency: self.options.latency }))
    }
}

struct SimSession {
    latency: Duration,
}

#[async_trait]
impl SapConnection for SimSession {
    async fn call(&mut self, function: &str, parameters: &Parameters) -> Result<Parameters, RfcError> {
        tokio::time::sleep(self.latency).await;
        if function == "STFC_CONNECTION" {
            let mut out = Parameters::new();
            out.insert("ECHOTEXT".into(), parameters.get("REQUTEXT").cloned().unwrap_or_default());
            out.insert("RESPTEXT".into(), "SAP R/3 Rel. 750 Sysid: SIM".into());
            return Ok(out);
        }
        Err(RfcError::new(ErrorGroup::AbapApplicationFailure, "FU_NOT_FOUND", format!("function {function} not found")))
    }
}
