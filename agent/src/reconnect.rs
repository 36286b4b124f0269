//! The agent's outer loop: dial the relay, run a session, and when it ends wait a
//! jittered backoff and dial again — until shutdown.
//!
//! The backoff resets after a healthy session (welcomed, and either up for
//! [`HEALTHY_AFTER`] or it did some work), so a short blip after a long run costs
//! the initial delay. A rejected token (401/403) or a protocol mismatch is logged as
//! an error and still retried: an operator may fix the token or upgrade the relay
//! without restarting the agent. A session that ended because the relay broke the
//! protocol never counts as healthy, so a hostile relay meets a growing backoff.
//!
//! A panic inside a session (a bug) does not end the process: the attempt is
//! caught, logged and retried like a lost connection. Nothing is lost with it:
//! units run in the runner's own tasks and their outcomes wait in the
//! [`OutcomeStore`], which the next session sends again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt};
use sapbridge_proto::SystemCapabilities;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::AgentError;
use crate::backoff::Backoff;
use crate::config::AgentConfig;
use crate::journal::sweep;
use crate::outcomes::OutcomeStore;
use crate::passthrough::{HttpTargets, SessionStreams};
use crate::read_only::ReadOnlyFunctions;
use crate::runner::UnitRunner;
use crate::session::status::StatusProbe;
use crate::session::{SessionEnd, SessionParams, SessionReport, run_session};
use crate::systems::ServedSystem;
use crate::tls;
use crate::transport::{DialError, Proxy, dial, into_messages};

/// A session that lasted this long counts as healthy even without work.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);

/// Runs the agent until `shutdown` is cancelled and the drain is over, with the
/// journal behind `store` (swept of old acknowledged calls meanwhile).
///
/// # Errors
/// [`AgentError::Tls`] when the TLS configuration cannot be built,
/// [`AgentError::Config`] when `read_only_functions` does not parse. Connection
/// problems are never errors: they are logged and retried.
pub(crate) async fn run_agent(
    config: AgentConfig,
    served: HashMap<String, ServedSystem>,
    http: Arc<HttpTargets>,
    store: Arc<OutcomeStore>,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    // A ws:// relay needs no TLS: its configuration (the system's root
    // certificates, parsed) is built only for wss:// or to check a configured CA file.
    let tls = if config.relay_url.starts_with("wss:") || config.ca_file.is_some() {
        Some(tls::relay_client_config(&config)?)
    } else {
        None
    };
    let read_only = ReadOnlyFunctions::parse(&config.read_only_functions)
        .map_err(crate::ConfigError::Invalid)?;
    let mut systems: Vec<String> = served.keys().cloned().collect();
    systems.sort();
    let capabilities = systems
        .iter()
        .map(|system| SystemCapabilities {
            system: system.clone(),
            functions: true,
            http: config
                .systems
                .iter()
                .any(|s| s.name == *system && s.http.is_some()),
            // The executor filters RFC_FUNCTION_SEARCH's answers to the allowlist.
            function_search: true,
        })
        .collect();
    let mut params = SessionParams {
        agent_id: config.agent_id.clone(),
        systems,
        capabilities,
        concurrency: config.concurrency,
        shutdown_grace: Duration::from_secs(config.shutdown_grace_secs),
        status: StatusProbe::new(&served),
        reconnects: 0,
    };
    let runner = UnitRunner::new(served, config.concurrency, store.clone(), read_only);
    let sweep_stop = shutdown.child_token();
    let retention = Duration::from_secs(u64::from(config.journal_retention_days) * 86_400);
    let lifter = tokio::spawn(lift_on_sighup(params.status.clone(), sweep_stop.clone()));
    let sweeper = tokio::spawn(sweep(
        store.journal().clone(),
        retention,
        sweep_stop.clone(),
    ));
    let mut backoff = Backoff::new(
        Duration::from_millis(config.backoff_initial_ms),
        Duration::from_millis(config.backoff_max_ms),
    );
    // Without its query, which may hold a reverse proxy's key.
    let relay = config
        .relay_url
        .split(['?', '#'])
        .next()
        .unwrap_or_default();
    info!(agent_id = %params.agent_id, relay = %relay, systems = ?params.systems,
        concurrency = params.concurrency, "agent starting");

    let mut connection: u64 = 0;
    let mut drained_in_session = false;
    while !shutdown.is_cancelled() {
        connection += 1;
        let span = info_span!("session", agent_id = %params.agent_id, relay = %relay,
            connection, session_id = tracing::field::Empty);
        let started = Instant::now();
        let attempt = connect_and_serve(&config, tls.as_ref(), &params, &runner, &http, &shutdown)
            .instrument(span.clone());
        let report = match caught(attempt).await {
            Ok(Ok(report)) => report,
            Ok(Err(ConnectFailure::Shutdown)) => break,
            Ok(Err(ConnectFailure::Dial(e))) => {
                log_dial_error(&e, relay);
                None
            }
            Err(panic) => {
                span.in_scope(|| {
                    error!(connection, panic = %panic,
                        "the session panicked; its connection is dropped and the agent reconnects");
                });
                None
            }
        };
        if let Some(report) = report {
            if report.end == SessionEnd::Shutdown {
                drained_in_session = true;
                break;
            }
            params.reconnects += u64::from(report.welcomed);
            let healthy = report.welcomed
                && !report.end.relay_misbehaved()
                && (started.elapsed() >= HEALTHY_AFTER || report.units > 0 || report.acks > 0);
            if healthy {
                backoff.reset();
            }
            info!(connection, end = ?report.end, healthy, "session ended");
        }
        let ceiling_ms = u64::try_from(backoff.ceiling().as_millis()).unwrap_or(u64::MAX);
        info!(ceiling_ms, "reconnecting after a jittered delay");
        tokio::select! {
            _ = backoff.wait() => {}
            () = shutdown.cancelled() => break,
        }
    }

    // A drained session already spent the grace period on its units.
    let grace = if drained_in_session {
        Duration::ZERO
    } else {
        Duration::from_secs(config.shutdown_grace_secs)
    };
    let running = runner.store().running();
    if running > 0 {
        info!(running, "waiting for in-flight units before exiting");
    }
    let abandoned = runner.finish(grace).await;
    if abandoned > 0 {
        warn!(
            abandoned,
            "units still running at the end of the grace period were abandoned"
        );
    }
    let unacked = runner.store().unacked();
    if unacked > 0 {
        warn!(
            unacked,
            "exiting with outcomes the relay has not acknowledged; they are re-sent after the next start"
        );
    }
    sweep_stop.cancel();
    let _ = sweeper.await;
    let _ = lifter.await;
    // Acks are journaled without waiting; make sure they are on disk.
    if let Err(e) = store.journal().flush().await {
        warn!(error = %e, "cannot flush the journal at exit");
    }
    info!("agent stopped");
    Ok(())
}

/// Runs `attempt`, turning a panic inside it into `Err` with the panic's message.
///
/// Unwind safety: what a session owns (socket, pass-through streams) is dropped
/// with it; what it shares (the runner, the outcome store) keeps consistent state
/// across a panic: the store's maps are behind a mutex that tolerates poisoning,
/// and an outcome taken for sending but not sent is sent again by the next
/// session (`resend_all`).
pub(crate) async fn caught<T>(attempt: impl Future<Output = T>) -> Result<T, String> {
    std::panic::AssertUnwindSafe(attempt)
        .catch_unwind()
        .await
        .map_err(|panic| {
            panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned())
        })
}

enum ConnectFailure {
    Shutdown,
    Dial(DialError),
}

/// Dials once and, if that works, runs one session on the connection. `Ok(None)`
/// when the token could not be read.
async fn connect_and_serve(
    config: &AgentConfig,
    tls: Option<&Arc<rustls::ClientConfig>>,
    params: &SessionParams,
    runner: &UnitRunner,
    http: &Arc<HttpTargets>,
    shutdown: &CancellationToken,
) -> Result<Option<SessionReport>, ConnectFailure> {
    let token = match config.resolve_token() {
        Ok(token) => token,
        Err(e) => {
            error!(error = %e, "cannot read the agent token; {}", crate::config::TOKEN_ADVICE);
            return Ok(None);
        }
    };
    let proxy = match Proxy::from_config(config) {
        Ok(proxy) => proxy,
        Err(e) => {
            error!(error = %e, "cannot use the proxy");
            return Ok(None);
        }
    };
    let socket = tokio::select! {
        () = shutdown.cancelled() => return Err(ConnectFailure::Shutdown),
        socket = dial(&config.relay_url, &token, tls.cloned(), proxy.as_ref()) => socket.map_err(ConnectFailure::Dial)?,
    };
    info!("connected to the relay");
    let mut streams = SessionStreams::new(Arc::clone(http));
    let (mut sink, mut stream) = into_messages(socket, streams.table());
    let report = run_session(
        &mut sink,
        &mut stream,
        params,
        runner,
        &mut streams,
        shutdown,
    )
    .await;
    // Open pass-through streams end with the connection.
    drop(streams);
    // Say goodbye properly (a close frame) when the connection still works.
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
    Ok(Some(report))
}

fn log_dial_error(e: &DialError, relay: &str) {
    let advice = e.advice(relay.starts_with("wss:"));
    match e {
        DialError::Rejected { .. } | DialError::BadToken => error!(relay, "{advice}"),
        _ => warn!(relay, "cannot connect to the relay: {advice}"),
    }
}

/// On every SIGHUP (`systemctl reload`) until `stop`: lifts the systems' logon
/// blocks, for an operator who fixed the password in SAP rather than in the
/// agent's password file (the relay hears of it at once), and forgets cached
/// function interfaces, for one who transported a changed interface.
#[cfg(unix)]
async fn lift_on_sighup(status: StatusProbe, stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => hangup,
        Err(error) => {
            warn!(%error, "cannot listen for SIGHUP; logon blocks lift only when the password changes");
            return;
        }
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            received = hangup.recv() => {
                if received.is_none() {
                    return;
                }
                let lifted = status.reload();
                info!(lifted = ?lifted,
                    "SIGHUP: logon blocks lifted, cached function interfaces forgotten");
            }
        }
    }
}

/// Without SIGHUP, logon blocks lift only when the password changes.
#[cfg(not(unix))]
async fn lift_on_sighup(_status: StatusProbe, stop: CancellationToken) {
    stop.cancelled().await;
}
