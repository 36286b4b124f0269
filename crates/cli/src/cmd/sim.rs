//! `sapbridge sim`: the SAP simulator as a network SAP system, answering SOAP-RFC at
//! `/sap/bc/soap/rfc` as an SAP NetWeaver ABAP system does (basic auth, `sap-client`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use sapbridge_proto::Secret;
use sapbridge_sap::sim::{SimOptions, Simulator};
use sapbridge_sap::soap::{self, SoapAuth};

use super::CliError;
use crate::shutdown;

/// Options of `sapbridge sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address to serve SOAP-RFC on.
    #[arg(long, env = "SAPBRIDGE_SIM_LISTEN", default_value = "127.0.0.1:8000")]
    listen: String,
    /// Where the simulator keeps its state (`sim.db`).
    #[arg(
        long,
        env = "SAPBRIDGE_DATA_DIR",
        default_value = "./sapbridge-sim-data"
    )]
    data_dir: PathBuf,
    /// The SAP user clients log on with (basic auth).
    #[arg(long, env = "SAPBRIDGE_SIM_USER", default_value = "SAPBRIDGE")]
    user: String,
    /// A file holding the user's password (trailing newline ignored).
    #[arg(long, env = "SAPBRIDGE_SIM_PASSWORD_FILE")]
    password_file: PathBuf,
    /// The SAP client (`sap-client`) the system answers for.
    #[arg(long, default_value = "001")]
    client: String,
    /// Extra latency per call, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
}

/// Reads a secret from a file: the whole file, without a trailing newline.
pub(crate) fn read_secret_file(path: &std::path::Path) -> Result<Secret, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Config(format!("cannot read {}: {e}", path.display())))?;
    let value = text.trim_end_matches(['\r', '\n']);
    if value.is_empty() {
        return Err(CliError::Config(format!("{} is empty", path.display())));
    }
    Ok(Secret::new(value))
}

/// Opens the simulator and serves it until SIGINT/SIGTERM.
pub(crate) async fn run(args: SimArgs) -> Result<(), CliError> {
    let password = read_secret_file(&args.password_file)?;
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| CliError::Config(format!("cannot create {}: {e}", args.data_dir.display())))?;
    let sim = Simulator::open(
        &args.data_dir.join("sim.db"),
        SimOptions {
            latency: std::time::Duration::from_millis(args.latency_ms),
            ..SimOptions::default()
        },
    )
    .context("opening the simulator")?;
    let router = soap::router(
        Arc::new(sim),
        SoapAuth {
            user: args.user,
            password,
            client: args.client,
        },
    );
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| CliError::Config(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!(%addr, "SAP simulator serving SOAP-RFC");
    println!(
        "sapbridge sim serving SOAP-RFC on http://{addr}{}",
        soap::SOAP_RFC_PATH
    );
    let shutdown = shutdown::on_signal();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("serving SOAP-RFC")?;
    Ok(())
}
