//! The sapbridge relay: the cloud side that workflow engines call over HTTP and that
//! on-premises agents dial out to over WebSocket.
//!
//! [`run`] serves everything on one listener until its shutdown token is cancelled:
//! - the client API (`/v1/systems/...`, `/v1/calls/...`), authenticated by API key;
//! - the agent endpoint `GET /v1/agent/connect`, authenticated by agent token, where
//!   each agent session receives queued units while it has credits;
//! - `/healthz`, `/readyz`, `/metrics`;
//! - the audit log `GET /v1/audit` (operator keys), fed by every request, every
//!   call's outcome and every reload of the keys.
//! - API keys and agent tokens managed at `/v1/admin/keys` and
//!   `/v1/admin/agent-tokens` (operator keys), kept in the queue store;
//! - the operator console at `/console/` (HTML; signed in with an operator key).
//!
//! Calls live in a queue (`queue::Queue`) with explicit states and a reaper that
//! requeues lapsed leases, expires calls past their TTL and purges old results. The
//! store is chosen by the `[queue]` table ([`QueueConfig`]): in memory, one SQLite
//! file that survives `kill -9` (and, with `durability = "power-loss"`, a power cut),
//! or a PostgreSQL database that several relay replicas share.
//!
//! Connections are served by `serve`, which bounds how long a client may take to send
//! a request head or body and how long a connection may sit idle, and caps the
//! client connections and agent WebSockets open at once (see [`RelayConfig`]).
//!
//! Shutdown: stop accepting, close agent sessions with `ShuttingDown` (their leases
//! return to the queue), answer waiting requests with their current state, and give
//! in-flight HTTP requests [`DRAIN_TIMEOUT`] to finish.
//!
//! # Layout
//! Top down; a module uses only those on its line or below:
//! - `http`: routes, extractors, handlers, rendering, the problems of the API,
//!   OpenAPI; `serve`: connections, their timeouts and limits.
//! - `state`: the composition root, built once from the validated configuration.
//! - `actions`: the high-level actions (customers, tables, metadata), their chain
//!   driver and the metadata cache.
//! - `session`: agent WebSocket sessions; `passthrough`: HTTP pass-through streams;
//!   `agents`: the registry of connected agent sessions.
//! - `calls`: submitting, awaiting, finding and cancelling calls, who owns them,
//!   and the caps new calls must pass; `audit`: the audit log's writer (records
//!   handed over without waiting, stored in batches).
//! - `queue`: call states, the store trait and its stores (calls and the audit
//!   log), wake-up signals.
//! - `config`, `auth`, `last_used`, `limits`, `ids`, `public_address`:
//!   configuration, credentials and when each was last used, rate limits and the
//!   limits' counters, id generation, how clients reach the relay (absolute
//!   `Location`s).
//! - `tls`: the `[tls]` certificate served by `serve`, reloaded on SIGHUP and when
//!   its files change.

mod actions;
mod agents;
mod audit;
mod auth;
mod calls;
mod config;
mod http;
mod ids;
mod last_used;
mod limits;
mod metrics;
mod passthrough;
mod public_address;
mod queue;
mod serve;
mod session;
mod state;
mod tls;
mod webhook_sender;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{
    AgentTokenConfig, ApiKeyConfig, AuditConfig, ClusterConfig, ConfigError, ConsoleConfig,
    DatabaseUrl, Durability, QueueConfig, RelayConfig, StoreKind, WebhooksConfig,
    new_webhook_secret, secret_sha256_hex,
};
pub use tls::{ClientAuth, TlsConfig, TlsError};

use crate::queue::{Queue, Retention};
use crate::state::RelayState;

/// How long shutdown waits for HTTP requests and agent sessions to finish.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the relay could not run.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The queue store could not be opened.
    #[error("opening the queue store failed: {0}")]
    Store(String),
    /// The `[tls]` files could not be served.
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
}

/// Runs the relay on `listener` until `shutdown` is cancelled, then drains.
///
/// # Errors
/// [`RelayError::Config`] when `config` does not validate (nothing is served), and
/// [`RelayError::Store`] when the queue store cannot be opened. Failures to accept a
/// connection (such as running out of file descriptors) are logged and retried.
pub async fn run(
    listener: TcpListener,
    config: RelayConfig,
    shutdown: CancellationToken,
) -> Result<(), RelayError> {
    let (_keep, reloads) = tokio::sync::mpsc::unbounded_channel();
    run_with_reloads(listener, config, shutdown, reloads).await
}

/// [`run`], taking the API keys and agent tokens of every configuration that
/// arrives on `reloads` while it runs (the CLI sends the file again on SIGHUP):
/// requests are judged by the new keys at once, and agent sessions whose token
/// was revoked or no longer covers a system they serve are closed (with
/// `SystemNotAllowed`); the others stay connected. The `[tls]` files are read
/// again for new handshakes (established connections keep theirs). Other settings
/// of a reloaded configuration take effect at the next start.
///
/// # Errors
/// As [`run`].
pub async fn run_with_reloads(
    listener: TcpListener,
    config: RelayConfig,
    shutdown: CancellationToken,
    mut reloads: tokio::sync::mpsc::UnboundedReceiver<RelayConfig>,
) -> Result<(), RelayError> {
    config.validate()?;
    let tls = match &config.tls {
        Some(tls) => Some(Arc::new(tls::TlsServer::load(tls)?)),
        None => None,
    };
    let queue = open_queue(&config.queue, config.owner_hold_secs).await?;
    if let Some(address) = &config.cluster.advertise_url {
        queue
            .advertise(address)
            .await
            .map_err(|e| RelayError::Store(format!("recording the cluster address: {e}")))?;
        tracing::info!(%address, "taking pass-through requests forwarded by other replicas");
    }
    // A child token, so an early server error can stop sessions without cancelling
    // the caller's token.
    let stop = shutdown.child_token();
    let (audit_log, audit_writer) = audit::AuditLog::start(Arc::clone(&queue));
    let state = Arc::new(RelayState::new(
        &config,
        Arc::clone(&queue),
        Arc::clone(&audit_log),
        stop.clone(),
    ));
    if let Some(tls) = &tls {
        tls.publish_expiry(state.metrics.tls_expiry.clone());
    }
    let keys = Arc::clone(&state.keys);
    let reloaded_tls = tls.clone();
    tokio::spawn(async move {
        while let Some(new) = reloads.recv().await {
            if let Err(error) = new.validate() {
                tracing::error!(%error, "reloaded configuration refused; the keys stay as they were");
                audit_log.record(audit::reload_record("refused", error.to_string()));
                continue;
            }
            reload_tls(reloaded_tls.as_deref(), new.tls.as_ref());
            let revoked = keys.replace(
                auth::Credentials::api_keys(&new.api_keys),
                auth::Credentials::agent_tokens(&new.agent_tokens),
            );
            // The systems of the tokens are known (or no longer) at once.
            tracing::info!(
                api_keys = new.api_keys.len(),
                agent_tokens = new.agent_tokens.len(),
                sessions_closed = revoked,
                systems = ?keys.token_systems(),
                "keys and agent tokens reloaded"
            );
            audit_log.record(audit::reload_record(
                "ok",
                format!(
                    "api_keys={}, agent_tokens={}, sessions_closed={revoked}",
                    new.api_keys.len(),
                    new.agent_tokens.len()
                ),
            ));
        }
    });
    let retention = Retention {
        results: time::Duration::try_from(state.settings.retention)
            .unwrap_or(time::Duration::days(7)),
        idempotency: time::Duration::try_from(Duration::from_secs(
            config.queue.idempotency_retention_secs,
        ))
        .unwrap_or(time::Duration::days(1)),
        owner_hold: time::Duration::try_from(state.settings.owner_hold)
            .unwrap_or(queue::DEFAULT_OWNER_HOLD),
        audit: time::Duration::days(i64::from(config.audit.retention_days)),
    };
    let reaper_stop = CancellationToken::new();
    let ended_audit = Arc::clone(&state.audit);
    let reaper = tokio::spawn(queue::reaper::run(
        Arc::clone(&queue),
        Arc::clone(&state.metrics),
        retention,
        reaper_stop.clone(),
        Box::new(move |call_id| ended_audit.call_ended(call_id)),
    ));
    let sender = tokio::spawn(webhook_sender::run(Arc::clone(&state)));
    // API keys created through the API, and on a shared database those other
    // replicas create or revoke.
    http::refresh_keys(&state).await;
    let key_refresher = (config.queue.store == StoreKind::Postgres).then(|| {
        tokio::spawn(http::refresh_stored_keys(
            Arc::clone(&state),
            reaper_stop.clone(),
        ))
    });
    // Replicas sharing a database list each other's agents.
    let publisher = (config.queue.store == StoreKind::Postgres).then(|| {
        tokio::spawn(http::publish_agents(
            Arc::clone(&state),
            reaper_stop.clone(),
        ))
    });

    tracing::info!(
        addr = ?listener.local_addr().ok(),
        systems = ?state.systems(),
        "relay serving"
    );
    let watcher = tls
        .clone()
        .map(|tls| tokio::spawn(tls::watch(tls, reaper_stop.clone())));
    let server = serve::run(
        listener,
        http::router(Arc::clone(&state)),
        serve::Limits::new(&config),
        tls,
        stop.clone(),
    );
    let drain_deadline = async {
        stop.cancelled().await;
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    };
    tokio::select! {
        () = server => {}
        () = drain_deadline => {
            tracing::warn!("HTTP requests still open after the drain timeout; stopping");
        }
    }
    // Agent sessions see the same token and close with `ShuttingDown`.
    stop.cancel();
    state.sessions.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, state.sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!("agent sessions still open after the drain timeout; stopping");
    }
    reaper_stop.cancel();
    let _ = reaper.await;
    let _ = sender.await;
    // Every record handed over (the last requests' and outcomes') is stored.
    audit_writer.finish().await;
    if let Some(publisher) = publisher {
        let _ = publisher.await;
    }
    if let Some(key_refresher) = key_refresher {
        let _ = key_refresher.await;
    }
    if let Some(watcher) = watcher {
        let _ = watcher.await;
    }
    // The other replicas stop forwarding here and listing this relay's agents.
    if let Err(error) = queue.leave().await {
        tracing::warn!(%error, "could not tell the other replicas that this one stops");
    }
    tracing::info!("relay stopped");
    Ok(())
}

/// Serves a reloaded `[tls]` table to new handshakes (SIGHUP).
fn reload_tls(server: Option<&tls::TlsServer>, new: Option<&TlsConfig>) {
    match (server, new) {
        // The files are small: read in line, which keeps reloads in order.
        (Some(server), Some(new)) => {
            server.reload_logged(new, "SIGHUP");
        }
        (None, None) => {}
        _ => tracing::warn!("[tls] was added or removed: that takes effect at the next start"),
    }
}

/// Opens the configured queue store.
async fn open_queue(
    config: &QueueConfig,
    owner_hold_secs: u64,
) -> Result<Arc<dyn Queue>, RelayError> {
    let store = config.store;
    let owner_hold = i64::try_from(owner_hold_secs)
        .map(time::Duration::seconds)
        .unwrap_or(queue::DEFAULT_OWNER_HOLD);
    let queue = queue::open(config, owner_hold)
        .await
        .map_err(|e| RelayError::Store(e.to_string()))?;
    if store == StoreKind::Memory {
        tracing::warn!(
            "queue store is in memory: pending calls and results are lost when the relay \
             stops; set [queue] store = \"sqlite\" and path to keep them"
        );
    }
    Ok(queue)
}
