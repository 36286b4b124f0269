//! The serving loop: accepts TCP connections and serves each with hyper's HTTP/1
//! server in a task of its own (over TLS when `[tls]` is set, with HTTP/2 for
//! clients that ask for `h2` by ALPN), under the limits that keep slow or idle
//! clients from holding the relay's file descriptors.
//!
//! - A request head must be complete within `header_read_timeout_secs` (of the
//!   connection's opening, or of the first byte of a later request); a kept-alive
//!   connection may wait `idle_timeout_secs` for its next request. Both close the
//!   connection. A request being answered is never idle: long `Prefer: wait` calls
//!   and streaming pass-through bodies run as long as their handlers do.
//! - A request body that the relay reads and the client stops sending for
//!   `body_read_timeout_secs` answers 408 and closes the connection.
//! - At most `max_connections` client connections are served. Over it, a
//!   connection's first request is read and answered 503 with `Retry-After`, then
//!   the connection is closed — unless it is a WebSocket upgrade, so that clients
//!   filling the relay cannot keep agents out; at most [`OVERFLOW_CONNECTIONS`] are
//!   handled so, more are closed at once.
//! - Agent WebSockets leave the client count at the upgrade and count against
//!   `max_agent_connections` (503 past it).
//!
//! Shutdown: the loop stops accepting when `stop` is cancelled; idle connections
//! close at once, busy ones after their answer. [`run`] returns when all have
//! closed; dropping it cuts those still open.

mod activity;
mod body;
mod connection;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::RelayConfig;
use crate::tls::TlsServer;
use connection::Admission;

/// How many connections over `max_connections` are read and answered 503 at once.
const OVERFLOW_CONNECTIONS: usize = 64;
/// The pause after an accept error that is not the client's (such as running out
/// of file descriptors), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);
/// The least time between two warnings that connections are being refused.
const REFUSAL_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// The connection limits, from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Time allowed for a complete request head.
    pub(crate) header_read: Duration,
    /// Time a kept-alive connection may wait for its next request.
    pub(crate) idle: Duration,
    /// Time allowed between two pieces of a request body being read.
    pub(crate) body_read: Duration,
    /// Client connections served at once.
    pub(crate) max_connections: usize,
    /// Agent WebSockets open at once.
    pub(crate) max_agent_connections: usize,
}

impl Limits {
    /// The limits of a validated configuration.
    pub(crate) fn new(config: &RelayConfig) -> Self {
        Self {
            header_read: Duration::from_secs(config.header_read_timeout_secs),
            idle: Duration::from_secs(config.idle_timeout_secs),
            body_read: Duration::from_secs(config.body_read_timeout_secs),
            max_connections: config.max_connections,
            max_agent_connections: config.max_agent_connections,
        }
    }
}

/// What every connection of one loop shares.
struct Shared {
    router: Router,
    limits: Limits,
    /// The certificate served, when the relay terminates TLS.
    tls: Option<Arc<TlsServer>>,
    /// Slots of open agent WebSockets.
    agents: Arc<Semaphore>,
}

/// Serves `router` on `listener` until `stop` is cancelled and every connection has
/// closed. Sets `TCP_NODELAY` on every connection: small answers and agent frames
/// must not wait for Nagle's algorithm to meet a delayed ACK (~40 ms).
pub(crate) async fn run(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    tls: Option<Arc<TlsServer>>,
    stop: CancellationToken,
) {
    let clients = Arc::new(Semaphore::new(limits.max_connections));
    let overflow = Arc::new(Semaphore::new(OVERFLOW_CONNECTIONS));
    let shared = Arc::new(Shared {
        router,
        agents: Arc::new(Semaphore::new(limits.max_agent_connections)),
        limits,
        tls,
    });
    let mut connections = JoinSet::new();
    let mut refusals = Refusals::default();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            Some(joined) = connections.join_next() => {
                report(joined);
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(error) if is_client_error(&error) => continue,
            Err(error) => {
                tracing::warn!(%error, "accepting a connection failed; pausing");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let admission = if let Ok(permit) = Arc::clone(&clients).try_acquire_owned() {
            Admission::client(permit)
        } else {
            refusals.count(shared.limits.max_connections);
            match Arc::clone(&overflow).try_acquire_owned() {
                Ok(permit) => Admission::overflow(permit),
                // No slot even to answer: closing costs nothing.
                Err(_) => continue,
            }
        };
        connections.spawn(connection::serve(
            stream,
            admission,
            Arc::clone(&shared),
            stop.clone(),
        ));
    }
    drop(listener);
    while let Some(joined) = connections.join_next().await {
        report(joined);
    }
}

/// Accept errors that concern one client's connection only.
fn is_client_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        error.kind(),
        K::ConnectionRefused | K::ConnectionAborted | K::ConnectionReset
    )
}

/// Logs a connection task that panicked (the process carries on).
fn report(joined: Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined
        && error.is_panic()
    {
        tracing::error!(%error, "a client connection task panicked");
    }
}

/// Connections over `max_connections`, warned about at most once per
/// [`REFUSAL_WARNING_INTERVAL`].
#[derive(Debug, Default)]
struct Refusals {
    since_warning: u64,
    warned: Option<Instant>,
}

impl Refusals {
    fn count(&mut self, max_connections: usize) {
        self.since_warning = self.since_warning.saturating_add(1);
        if self
            .warned
            .is_some_and(|at| at.elapsed() < REFUSAL_WARNING_INTERVAL)
        {
            return;
        }
        tracing::warn!(
            max_connections,
            over = self.since_warning,
            "connections over max_connections: answering 503 (agent upgrades excepted)"
        );
        self.since_warning = 0;
        self.warned = Some(Instant::now());
    }
}
