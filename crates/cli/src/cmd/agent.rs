//! `sapbridge agent`: the on-premises side as its own process.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use sapbridge_agent::AgentConfig;
use sapbridge_proto::Secret;

use super::CliError;
use crate::{config_file, shutdown};

/// Options of `sapbridge agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// TOML configuration (relay URL, systems, allowlists); see deploy/agent.toml.
    #[arg(long, short, env = "SAPBRIDGE_AGENT_CONFIG")]
    config: PathBuf,
    /// Overrides `relay_url` (ws:// or wss:// URL of the relay's /v1/agent/connect).
    #[arg(long, env = "SAPBRIDGE_RELAY_URL")]
    relay_url: Option<String>,
    /// Overrides the agent token of the file.
    #[arg(long, env = "SAPBRIDGE_AGENT_TOKEN", hide_env_values = true)]
    token: Option<Secret>,
}

/// Loads and checks the configuration (before the runtime starts: it sizes the
/// runtime, see `worker_threads`).
///
/// # Errors
/// [`CliError::Config`] for an unreadable or invalid file.
pub(crate) fn load(args: AgentArgs) -> Result<AgentConfig, CliError> {
    let mut config: AgentConfig = config_file::load(&args.config)?;
    if let Some(url) = args.relay_url {
        config.relay_url = url;
    }
    if let Some(token) = args.token {
        config.token = Some(token);
        config.token_file = None;
    }
    config
        .validate()
        .map_err(|e| CliError::Config(format!("{}: {e}", args.config.display())))?;
    Ok(config)
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
