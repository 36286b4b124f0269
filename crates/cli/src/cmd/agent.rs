//! `sapbridge agent`: the on-premises side as its own process.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use sapbridge_agent::AgentConfig;
use sapbridge_proto::Secret;

use super::CliError;
use crate::{config_file, shutdown};

/// Options of `sapbridge agent`.
#[derive(Debug, Args)]
#[command(subcommand_negates_reqs = true)]
pub struct AgentArgs {
    /// TOML configuration (relay URL, systems, allowlists); see deploy/agent.toml.
    #[arg(long, short, env = "SAPBRIDGE_AGENT_CONFIG", required = true)]
    config: Option<PathBuf>,
    /// Overrides `relay_url` (ws:// or wss:// URL of the relay's /v1/agent/connect).
    #[arg(long, env = "SAPBRIDGE_RELAY_URL")]
    relay_url: Option<String>,
    /// Overrides the agent token of the file.
    #[arg(long, env = "SAPBRIDGE_AGENT_TOKEN", hide_env_values = true)]
    token: Option<Secret>,
    /// Overrides one setting of the file (repeatable): `--set data_dir=/srv/agent`.
    /// Every setting can also be given as a variable: `SAPBRIDGE_DATA_DIR`,
    /// `SAPBRIDGE_CONCURRENCY`. Flags win over variables, which win over the file.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Instead of running the agent, a tool.
    #[command(subcommand)]
    command: Option<AgentCommand>,
}

/// The agent's tools.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Checks every configured system without the relay: the NW RFC library and
    /// its version, one logon (or SAP's exact error), and whether each function
    /// the allowlist names exists. Exit code 1 when a check failed.
    Doctor(DoctorArgs),
}

/// Options of `sapbridge agent doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The agent's TOML configuration.
    #[arg(long, short, env = "SAPBRIDGE_AGENT_CONFIG")]
    config: PathBuf,
    /// Overrides one setting of the file (repeatable), as `sapbridge agent --set`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// What `sapbridge agent` was asked to do, its configuration read and checked.
pub(crate) enum AgentTask {
    /// Run the agent.
    Run(AgentConfig),
    /// Run the doctor's checks.
    Doctor(AgentConfig),
}

/// Loads and checks the configuration (before the runtime starts: it sizes the
/// runtime, see `worker_threads`).
///
/// # Errors
/// [`CliError::Config`] for an unreadable or invalid file.
pub(crate) fn load(args: AgentArgs) -> Result<AgentTask, CliError> {
    if let Some(AgentCommand::Doctor(doctor)) = args.command {
        return Ok(AgentTask::Doctor(read(
            &doctor.config,
            &doctor.set,
            |_| (),
        )?));
    }
    let path = args
        .config
        .ok_or_else(|| CliError::Config("--config is required".into()))?;
    let config = read(&path, &args.set, |config| {
        if let Some(url) = args.relay_url {
            config.relay_url = url;
        }
        if let Some(token) = args.token {
            config.token = Some(token);
            config.token_file = None;
        }
    })?;
    Ok(AgentTask::Run(config))
}

/// Reads the file with the environment's and `--set` overrides, applies the
/// command line's own flags, validates.
fn read(
    path: &Path,
    sets: &[String],
    overrides: impl FnOnce(&mut AgentConfig),
) -> Result<AgentConfig, CliError> {
    let mut config: AgentConfig =
        config_file::load_with(path, &config_file::Sources::process(sets))?;
    overrides(&mut config);
    config
        .validate()
        .map_err(|e| CliError::Config(format!("{}: {e}", path.display())))?;
    Ok(config)
}

/// Runs the doctor's checks and prints the report; fails when a check failed.
pub(crate) async fn doctor(config: AgentConfig) -> Result<(), CliError> {
    let report = sapbridge_agent::doctor::doctor(&config).await;
    println!("{report}");
    if report.healthy() {
        Ok(())
    } else {
        Err(CliError::Runtime(anyhow::anyhow!(
            "the doctor found problems (see above)"
        )))
    }
}

/// Runs the agent until SIGINT/SIGTERM.
pub(crate) async fn run(config: AgentConfig) -> Result<(), CliError> {
    tracing::info!(
        worker_threads = tokio::runtime::Handle::current().metrics().num_workers(),
        "agent runtime started"
    );
    let shutdown = shutdown::on_signal();
    sapbridge_agent::run(config, shutdown)
        .await
        .context("agent failed")?;
    Ok(())
}
