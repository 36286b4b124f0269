//! `sapbridge relay`: the cloud side as its own process.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use sapbridge_relay::{DatabaseUrl, RelayConfig, StoreKind};

use super::CliError;
use crate::{config_file, shutdown};

/// Options of `sapbridge relay`.
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// TOML configuration (API keys, agent tokens, limits); see deploy/relay.toml.
    #[arg(long, short, env = "SAPBRIDGE_RELAY_CONFIG")]
    config: PathBuf,
    /// Address to listen on for the HTTP API and the agent WebSocket.
    #[arg(long, env = "SAPBRIDGE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// PostgreSQL queue database shared by several relays
    /// (`postgres://user:password@host:5432/db`): sets `[queue] url`, and
    /// `store = "postgres"` unless the file chose another store. A secret: never
    /// printed (a malformed one is reported by the configuration check, which
    /// does not quote it).
    #[arg(long, env = "SAPBRIDGE_QUEUE_URL", hide_env_values = true, value_parser = any_url)]
    queue_url: Option<DatabaseUrl>,
}

/// Takes any string as a database URL, checked later (masked in `Debug`).
fn any_url(text: &str) -> Result<DatabaseUrl, std::convert::Infallible> {
    Ok(DatabaseUrl::from(text.to_owned()))
}

/// Reads and checks the configuration (before the runtime starts: it sizes the
/// runtime, see `worker_threads`).
///
/// # Errors
/// [`CliError::Config`] for an unreadable or invalid file.
pub(crate) fn load(args: RelayArgs) -> Result<(RelayConfig, String), CliError> {
    let mut config: RelayConfig = config_file::load(&args.config)?;
    if let Some(url) = args.queue_url {
        if config.queue.store == StoreKind::Memory && config.queue.path.is_none() {
            config.queue.store = StoreKind::Postgres;
        }
        config.queue.url = Some(url);
    }
    config
        .validate()
        .map_err(|e| CliError::Config(format!("{}: {e}", args.config.display())))?;
    Ok((config, args.listen))
}

/// Binds and runs the relay until SIGINT/SIGTERM.
pub(crate) async fn run(config: RelayConfig, listen: String) -> Result<(), CliError> {
    tracing::info!(
        worker_threads = tokio::runtime::Handle::current().metrics().num_workers(),
        "relay runtime started"
    );
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| CliError::Config(format!("cannot listen on {listen}: {e}")))?;
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
