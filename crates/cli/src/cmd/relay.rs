//! `sapbridge relay`: the cloud side as its own process.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use sapbridge_proto::Secret;
use sapbridge_relay::{DatabaseUrl, RelayConfig, StoreKind, TlsConfig};

use super::CliError;
use crate::{config_file, shutdown};

/// Options of `sapbridge relay`.
#[derive(Debug, Clone, Args)]
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
    /// The base URL at which the other relay replicas reach this one, to forward
    /// it pass-through requests (`http://10.0.0.5:8080`): sets `[cluster]
    /// advertise_url`. The cluster secret they share comes from the file or from
    /// the environment variable SAPBRIDGE_CLUSTER_SECRET (never a flag: it would
    /// show in the process list).
    #[arg(long, env = "SAPBRIDGE_ADVERTISE_URL")]
    advertise_url: Option<String>,
    /// Overrides one setting of the file (repeatable): `--set lease_secs=600`,
    /// `--set queue.path=/var/lib/sapbridge/relay.db`. Every setting can also be
    /// given as a variable: `SAPBRIDGE_LEASE_SECS`, `SAPBRIDGE_QUEUE__PATH` (a
    /// double underscore before a section's key). Flags win over variables, which
    /// win over the file.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// PEM certificate (with its intermediates) to serve HTTPS and WSS with: sets
    /// `[tls] cert_file` (needs `--tls-key` unless the file has `[tls]`).
    #[arg(long, env = "SAPBRIDGE_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`: sets `[tls] key_file`.
    #[arg(long, env = "SAPBRIDGE_TLS_KEY")]
    tls_key: Option<PathBuf>,
}

/// The environment variable that sets `[cluster] secret`.
const CLUSTER_SECRET_ENV: &str = "SAPBRIDGE_CLUSTER_SECRET";

/// Takes any string as a database URL, checked later (masked in `Debug`).
fn any_url(text: &str) -> Result<DatabaseUrl, std::convert::Infallible> {
    Ok(DatabaseUrl::from(text.to_owned()))
}

/// Reads and checks the configuration (before the runtime starts: it sizes the
/// runtime, see `worker_threads`).
///
/// # Errors
/// [`CliError::Config`] for an unreadable or invalid file.
pub(crate) fn load(args: RelayArgs) -> Result<(RelayConfig, RelayArgs), CliError> {
    let config = read(&args)?;
    Ok((config, args))
}

/// The file with the command line's and the environment's overrides, checked.
fn read(args: &RelayArgs) -> Result<RelayConfig, CliError> {
    let args = args.clone();
    let mut sources = config_file::Sources::process(&args.set);
    sources.others.push(CLUSTER_SECRET_ENV);
    let mut config: RelayConfig = config_file::load_with(&args.config, &sources)?;
    if let Some(url) = args.queue_url {
        if config.queue.store == StoreKind::Memory && config.queue.path.is_none() {
            config.queue.store = StoreKind::Postgres;
        }
        config.queue.url = Some(url);
    }
    if let Some(url) = args.advertise_url {
        config.cluster.advertise_url = Some(url);
    }
    apply_tls_flags(&mut config, args.tls_cert, args.tls_key)?;
    if let Some(secret) = std::env::var_os(CLUSTER_SECRET_ENV) {
        let secret = secret
            .into_string()
            .map_err(|_| CliError::Config(format!("{CLUSTER_SECRET_ENV} is not valid UTF-8")))?;
        config.cluster.secret = Some(Secret::from(secret));
    }
    config
        .validate()
        .map_err(|e| CliError::Config(format!("{}: {e}", args.config.display())))?;
    Ok(config)
}

/// `--tls-cert` / `--tls-key` over the file's `[tls]` table.
fn apply_tls_flags(
    config: &mut RelayConfig,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<(), CliError> {
    match (&mut config.tls, cert, key) {
        (_, None, None) => {}
        (Some(tls), cert, key) => {
            tls.cert_file = cert.unwrap_or_else(|| tls.cert_file.clone());
            tls.key_file = key.unwrap_or_else(|| tls.key_file.clone());
        }
        (None, Some(cert), Some(key)) => config.tls = Some(TlsConfig::new(cert, key)),
        (None, _, _) => {
            return Err(CliError::Config(
                "--tls-cert and --tls-key go together (or set [tls] in the file)".into(),
            ));
        }
    }
    Ok(())
}

/// Binds and runs the relay until SIGINT/SIGTERM; on SIGHUP it reads the file
/// again and takes its keys and agent tokens.
pub(crate) async fn run(config: RelayConfig, args: RelayArgs) -> Result<(), CliError> {
    let listen = args.listen.clone();
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
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    println!("sapbridge relay listening on {scheme}://{addr}");
    let shutdown = shutdown::on_signal();
    let (reload, reloads) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(reload_on_sighup(args, reload));
    sapbridge_relay::run_with_reloads(listener, config, shutdown, reloads)
        .await
        .context("relay failed")?;
    Ok(())
}

/// Reads the configuration again on every SIGHUP (`systemctl reload`) and hands it
/// to the relay; a file that does not read or validate is refused with its reason.
#[cfg(unix)]
async fn reload_on_sighup(
    args: RelayArgs,
    reload: tokio::sync::mpsc::UnboundedSender<RelayConfig>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; keys change only with a restart");
        return;
    };
    while hangup.recv().await.is_some() {
        match read(&args) {
            Ok(config) => {
                if reload.send(config).is_err() {
                    return;
                }
            }
            Err(error) => tracing::error!(
                error = %describe(&error),
                "SIGHUP: the configuration was not reloaded; the keys stay as they were"
            ),
        }
    }
}

/// Without SIGHUP, keys change only with a restart.
#[cfg(not(unix))]
async fn reload_on_sighup(_: RelayArgs, _: tokio::sync::mpsc::UnboundedSender<RelayConfig>) {}

#[cfg(unix)]
fn describe(error: &CliError) -> String {
    match error {
        CliError::Config(problem) => problem.clone(),
        CliError::Runtime(error) => format!("{error:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &str = r#"
[[api_keys]]
name = "k"
key = "client-key-0123456789abcdef0123456789"
systems = ["SIM"]

[[agent_tokens]]
name = "t"
token = "agent-token-0123456789abcdef012345678"
systems = ["SIM"]
"#;

    fn args(dir: &tempfile::TempDir, file: &str, url: Option<&str>) -> RelayArgs {
        let config = dir.path().join("relay.toml");
        std::fs::write(&config, format!("{file}\n{KEYS}")).expect("write config");
        RelayArgs {
            config,
            listen: "127.0.0.1:0".into(),
            queue_url: url.and_then(|u| any_url(u).ok()),
            advertise_url: None,
            set: Vec::new(),
            tls_cert: None,
            tls_key: None,
        }
    }

    #[test]
    fn queue_url_selects_postgres_and_never_shows_its_password() {
        let dir = tempfile::tempdir().expect("dir");
        let url = "postgres://relay:pw-secret-42@db.internal:5432/sapbridge";
        let (config, _) = load(args(&dir, "", Some(url))).expect("valid");
        assert_eq!(config.queue.store, StoreKind::Postgres);
        let shown = format!("{:?}", config.queue);
        assert!(
            shown.contains("db.internal") && !shown.contains("pw-secret-42"),
            "{shown}"
        );
        // A file that chose SQLite keeps it, and the URL is refused with a reason.
        let sqlite = "[queue]\nstore = \"sqlite\"\npath = \"relay.db\"";
        let Err(CliError::Config(message)) = load(args(&dir, sqlite, Some(url))) else {
            panic!("a URL with the sqlite store must be refused");
        };
        assert!(message.contains("queue.url"), "{message}");
        // A malformed URL is refused without being quoted.
        let bad = "postgres://relay:pw-secret-42@db.internal:notaport/x";
        let Err(CliError::Config(message)) = load(args(&dir, "", Some(bad))) else {
            panic!("a malformed URL must be refused");
        };
        assert!(
            message.contains("queue.url") && !message.contains("pw-secret-42"),
            "{message}"
        );
    }

    #[test]
    fn tls_flags_set_or_override_the_tls_table() {
        let dir = tempfile::tempdir().expect("dir");
        let mut flags = args(&dir, "", None);
        flags.tls_cert = Some("/etc/relay.pem".into());
        let Err(CliError::Config(message)) = load(flags.clone()) else {
            panic!("--tls-cert alone must be refused");
        };
        assert!(message.contains("--tls-key"), "{message}");
        flags.tls_key = Some("/etc/relay.key".into());
        let (config, _) = load(flags).expect("valid");
        let tls = config.tls.expect("[tls] from the flags");
        assert_eq!(tls.cert_file, std::path::Path::new("/etc/relay.pem"));
        assert_eq!(tls.key_file, std::path::Path::new("/etc/relay.key"));
        // Over a file's table, one flag replaces its file and keeps the rest.
        let table = "[tls]\ncert_file = \"a.pem\"\nkey_file = \"a.key\"\nreload_poll_secs = 0";
        let mut flags = args(&dir, table, None);
        flags.tls_cert = Some("/etc/renewed.pem".into());
        let (config, _) = load(flags).expect("valid");
        let tls = config.tls.expect("[tls]");
        assert_eq!(tls.cert_file, std::path::Path::new("/etc/renewed.pem"));
        // The file's relative path is read against the file's folder.
        assert_eq!(
            (tls.key_file, tls.reload_poll_secs),
            (dir.path().join("a.key"), 0)
        );
    }

    #[test]
    fn advertise_url_sets_the_cluster_address() {
        let dir = tempfile::tempdir().expect("dir");
        let secret = "[cluster]\nsecret = \"0123456789abcdef0123456789abcdef\"";
        let mut with_flag = args(&dir, secret, Some("postgres://relay@db/sapbridge"));
        with_flag.advertise_url = Some("http://10.0.0.5:8080".into());
        let (config, _) = load(with_flag).expect("valid");
        assert_eq!(
            config.cluster.advertise_url.as_deref(),
            Some("http://10.0.0.5:8080")
        );
        // Without a secret (and without SAPBRIDGE_CLUSTER_SECRET) it is refused.
        if std::env::var_os(CLUSTER_SECRET_ENV).is_none() {
            let mut bare = args(&dir, "", Some("postgres://relay@db/sapbridge"));
            bare.advertise_url = Some("http://10.0.0.5:8080".into());
            let Err(CliError::Config(message)) = load(bare) else {
                panic!("an address without a secret must be refused");
            };
            assert!(message.contains("cluster.secret"), "{message}");
        }
    }
}
