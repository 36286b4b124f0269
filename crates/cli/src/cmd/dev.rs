//! `sapbridge dev`: a relay, an agent dialling it over a real loopback WebSocket,
//! and the embedded SAP simulator as system `SIM`, all in one process.
//!
//! The relay and agent configurations are built as the same documents a user would
//! write in `deploy/relay.toml` and `deploy/agent.toml`, so `dev` exercises the real
//! configuration path.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use sapbridge_agent::AgentConfig;
use sapbridge_proto::Secret;
use sapbridge_relay::RelayConfig;
use serde_json::json;

use super::{CliError, generate_secret};
use crate::shutdown;

/// The system name the simulator serves in dev mode.
const DEV_SYSTEM: &str = "SIM";

/// Options of `sapbridge dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Address of the HTTP API (and the agent WebSocket).
    #[arg(long, env = "SAPBRIDGE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// API key clients must send; generated (and printed) when not given.
    #[arg(long, env = "SAPBRIDGE_API_KEY", hide_env_values = true)]
    api_key: Option<Secret>,
    /// Where the simulator (and later the queue) keep their files.
    #[arg(long, env = "SAPBRIDGE_DATA_DIR", default_value = "./sapbridge-data")]
    data_dir: PathBuf,
    /// Extra latency per simulated SAP call, in milliseconds.
    #[arg(long, default_value_t = 0)]
    sim_latency_ms: u64,
    /// Serve `SIM` from an SAP system's SOAP-RFC service at this URL (for example
    /// `sapbridge sim`) instead of the embedded simulator.
    #[arg(long, requires_all = ["sap_user", "sap_password_file"])]
    sap_url: Option<String>,
    /// The SAP user for `--sap-url`.
    #[arg(long)]
    sap_user: Option<String>,
    /// A file holding the SAP user's password, for `--sap-url`.
    #[arg(long)]
    sap_password_file: Option<PathBuf>,
    /// The SAP client for `--sap-url`.
    #[arg(long, default_value = "001")]
    sap_client: String,
    /// Turn on HTTP pass-through for `SIM` (`/v1/systems/SIM/http/...`) to the HTTP
    /// service at this base URL, e.g. `http://127.0.0.1:8000/`.
    #[arg(long, value_name = "URL")]
    http_url: Option<String>,
    /// A path prefix pass-through may reach (repeatable; segment boundaries: `/api`
    /// allows `/api/x`, not `/apix`). Without any, every path is denied.
    #[arg(long, value_name = "PREFIX", requires = "http_url")]
    http_allow: Vec<String>,
    /// The URL clients reach this relay at (`https://relay.example.com`):
    /// `Location` headers become absolute URLs under it, as workflow engines such
    /// as Node-RED need when they follow them as given.
    #[arg(long, env = "SAPBRIDGE_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
}

/// Waits until the relay at `addr` answers `GET /readyz` with 200.
async fn ready(addr: std::net::SocketAddr) -> Result<(), CliError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Ok(mut socket) = tokio::net::TcpStream::connect(addr).await {
            let request = "GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
            let mut answer = Vec::new();
            if socket.write_all(request.as_bytes()).await.is_ok()
                && socket.read_to_end(&mut answer).await.is_ok()
                && answer.starts_with(b"HTTP/1.1 200")
            {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(CliError::Runtime(anyhow::anyhow!(
                "the relay did not get ready within 60 s"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Runs the whole stack until SIGINT/SIGTERM.
pub(crate) async fn run(args: DevArgs) -> Result<(), CliError> {
    // Shown on stdout below, for the user to copy: a dev stack's key, never logged.
    let api_key = args.api_key.map_or_else(
        || generate_secret("sbk_dev_"),
        |key| key.expose().to_owned(),
    );
    if api_key.trim().is_empty() {
        return Err(CliError::Config("--api-key must not be empty".into()));
    }
    let agent_token = generate_secret("sbt_dev_");
    let webhook_secret = sapbridge_relay::new_webhook_secret();
    std::fs::create_dir_all(&args.data_dir).map_err(|e| {
        CliError::Config(format!(
            "cannot create data dir {}: {e}",
            args.data_dir.display()
        ))
    })?;
    let data_dir = args
        .data_dir
        .canonicalize()
        .context("resolving the data dir")?;

    let mut relay_config: RelayConfig = serde_json::from_value(json!({
        // The developer's own stack: the key is also the operator's, for the
        // audit log and the console at /console/.
        "api_keys": [{"name": "dev", "key": api_key, "systems": ["*"], "operator": true,
                      "webhook_secret": webhook_secret}],
        // Webhooks to anywhere, loopback included: a receiver on this machine.
        "webhooks": {"allowed_hosts": ["*"], "allow_private_networks": true, "allow_http": true},
        "agent_tokens": [{"name": "dev-agent", "token": agent_token, "systems": [DEV_SYSTEM]}],
        "queue": {"store": "sqlite", "path": data_dir.join("relay.db")},
        // The simulator's reference customer and sales area, so that a name, a
        // city and a country alone create a customer.
        "customer_defaults": {
            "reference_customer": "0000001000",
            "sales_org": "1000",
            "distribution_channel": "10",
            "division": "00",
            "language": "EN",
            "currency": "EUR",
        },
    }))
    .map_err(|e| CliError::Runtime(anyhow::anyhow!("building the dev relay config: {e}")))?;
    relay_config.public_url = args.public_url;
    relay_config
        .validate()
        .map_err(|e| CliError::Config(e.to_string()))?;

    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| CliError::Config(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener.local_addr().context("reading the bound address")?;

    let backend = match &args.sap_url {
        Some(url) => json!({
            "type": "soap",
            "base_url": url,
            "client": args.sap_client,
            "user": args.sap_user,
            "password_file": args.sap_password_file,
        }),
        None => json!({
            "type": "sim",
            "db_path": data_dir.join("sim.db"),
            "latency_ms": args.sim_latency_ms,
            "fault_rate": 0.0,
        }),
    };
    let backend_text = match &args.sap_url {
        Some(url) => format!("SOAP-RFC at {url}"),
        None => format!("embedded SAP simulator, data in {}", data_dir.display()),
    };
    let mut system = json!({
        "name": DEV_SYSTEM,
        "backend": backend,
        "allow_functions": ["*"],
        "allow_tables": ["*"],
    });
    if let Some(url) = &args.http_url {
        system["http"] = json!({"base_url": url, "allow_paths": args.http_allow});
    }
    let agent_config: AgentConfig = serde_json::from_value(json!({
        "relay_url": format!("ws://{addr}/v1/agent/connect"),
        "token": agent_token,
        "agent_id": "dev-agent",
        "data_dir": data_dir.join("agent"),
        "systems": [system],
    }))
    .map_err(|e| CliError::Runtime(anyhow::anyhow!("building the dev agent config: {e}")))?;
    agent_config
        .validate()
        .map_err(|e| CliError::Config(e.to_string()))?;

    // The agent finishes its in-flight calls before the relay stops, so the relay
    // has its own token, cancelled once the agent is done.
    let shutdown = shutdown::on_signal();
    let relay_stop = tokio_util::sync::CancellationToken::new();
    let mut relay = tokio::spawn(sapbridge_relay::run(
        listener,
        relay_config,
        relay_stop.clone(),
    ));
    // Said to be running only once the relay serves (its store opened): a start
    // that fails says why instead.
    tokio::select! {
        relay_result = &mut relay => {
            relay_result.context("relay task panicked")?.context("relay failed")?;
            return Err(CliError::Runtime(anyhow::anyhow!("the relay stopped while starting")));
        }
        ready = ready(addr) => ready?,
    }
    let mut agent = tokio::spawn(sapbridge_agent::run(agent_config, shutdown.clone()));

    let url = format!("http://{addr}");
    println!("sapbridge dev is running");
    println!("  relay:    {url}");
    println!("  api key:  {api_key}");
    println!("  webhooks: signed with {webhook_secret}");
    println!("  system:   {DEV_SYSTEM} ({backend_text})");
    println!("  console:  {url}/console/ (sign in with the api key)");
    if let Some(http_url) = &args.http_url {
        println!(
            "  http:     {url}/v1/systems/{DEV_SYSTEM}/http/... -> {http_url} (allowed: {:?})",
            args.http_allow
        );
    }
    println!("try:");
    println!(
        "  curl -s -H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json' \\\n    -d '{{\"REQUTEXT\":\"hello\"}}' {url}/v1/systems/{DEV_SYSTEM}/functions/STFC_CONNECTION"
    );

    tokio::select! {
        relay_result = &mut relay => {
            // The relay stopped on its own: stop the agent too and report why.
            shutdown.cancel();
            let _ = agent.await;
            relay_result.context("relay task panicked")?.context("relay failed")?;
        }
        agent_result = &mut agent => {
            relay_stop.cancel();
            let relay_result = relay.await.context("relay task panicked")?;
            agent_result.context("agent task panicked")?.context("agent failed")?;
            relay_result.context("relay failed")?;
        }
    }
    Ok(())
}
