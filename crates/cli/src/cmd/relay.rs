//! `sapbridge relay`: the cloud side as its own process.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use sapbridge_relay::RelayConfig;

use super::CliError;
use crate::{config_file, shutdown};

/// Options of `sapbridge relay`.
#[derive(Debug, Args)]
pub(crate) struct RelayArgs {
    /// TOML configuration (API keys, agent tokens, limits); see deploy/relay.toml.
    #[arg(long, short, env = "SAPBRIDGE_RELAY_CONFIG")]
    config: PathBuf,
    /// Address to listen on for the HTTP API and the agent WebSocket.
    #[arg(long, env = "SAPBRIDGE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
}

/// Loads the configuration, binds and runs the relay until SIGINT/SIGTERM.
pub(crate) async fn run(args: RelayArgs) -> Result<(), CliError> {
    let config: RelayConfig = config_file::load(&args.config)?;
    config
        .validate()
        .map_err(|e| CliError::Config(format!("{}: {e}", args.config.display())))?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| CliError::Config(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!(%addr, "relay listening");
    // A plain line on stdout that scripts (and tests) can wait for.
    println!("sapbridge relay listening on http://{addr}");
    let shutdown = shutdown::on_signal();
    sapbridge_relay::run(listener, config, shutdown)
        .await
        .context("relay failed")?;
    Ok(())
}
