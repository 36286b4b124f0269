//! Agent sessions: once `GET /v1/agent/connect` authenticated the agent token,
//! [`Sessions::accept`] upgrades the connection and the socket runs the
//! [`handshake`] and the [`dispatch`] loop inside a tracing span carrying the
//! session id and agent id.
//!
//! Socket settings keep idle agents cheap: small read and write buffers, and frames
//! limited to [`MAX_FRAME_BYTES`].

mod context;
mod dispatch;
mod frames;
mod handshake;
#[cfg(test)]
mod tests;
mod units;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::StreamExt;
use sapbridge_proto::{MAX_FRAME_BYTES, PROTOCOL_VERSION};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::agents::AgentRegistry;
use crate::auth::{Credential, Keyring};
use crate::ids::new_id;
use crate::metrics::Metrics;
use crate::queue::Queue;

pub(crate) use context::SessionContext;

/// Read buffer per agent socket: most agent messages (outcomes, heartbeats, window
/// grants) are small; a larger frame grows it for as long as it needs.
const READ_BUFFER_BYTES: usize = 2 * 1024;
/// Write buffer per agent socket before it is flushed.
const WRITE_BUFFER_BYTES: usize = 8 * 1024;

/// The timings of every session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timings {
    /// The heartbeat interval proposed to agents.
    pub(crate) heartbeat: Duration,
    /// How long an agent has for a unit (a deadline).
    pub(crate) lease: Duration,
    /// How long the leases of an ended session wait for its agent.
    pub(crate) owner_hold: Duration,
}

/// What every agent session of a relay shares: the queue it takes units from,
/// the registry it lists itself in, its timings and the relay's shutdown; and the
/// tracker shutdown waits on.
pub(crate) struct Sessions {
    queue: Arc<dyn Queue>,
    agents: Arc<AgentRegistry>,
    keys: Arc<Keyring>,
    timings: Timings,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    metrics: Arc<Metrics>,
    audit: Option<Arc<crate::audit::AuditLog>>,
}

impl Sessions {
    /// No sessions yet; they will close with `ShuttingDown` once `shutdown` is
    /// cancelled.
    pub(crate) fn new(
        queue: Arc<dyn Queue>,
        agents: Arc<AgentRegistry>,
        keys: Arc<Keyring>,
        timings: Timings,
        shutdown: CancellationToken,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            queue,
            agents,
            keys,
            timings,
            shutdown,
            tracker: TaskTracker::new(),
            metrics,
            audit: None,
        }
    }

    /// Records the end of every call a session reports an outcome for in `audit`.
    pub(crate) fn with_audit(mut self, audit: Arc<crate::audit::AuditLog>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Upgrades an agent's connection, authenticated by `token`, to a WebSocket
    /// and runs its session there until it ends.
    pub(crate) fn accept(
        self: &Arc<Self>,
        upgrade: WebSocketUpgrade,
        token: Credential,
    ) -> Response {
        let tracked = self.tracker.token();
        let sessions = Arc::clone(self);
        upgrade
            .read_buffer_size(READ_BUFFER_BYTES)
            .write_buffer_size(WRITE_BUFFER_BYTES)
            .max_write_buffer_size(MAX_FRAME_BYTES * 2)
            .max_message_size(MAX_FRAME_BYTES)
            .max_frame_size(MAX_FRAME_BYTES)
            .on_upgrade(move |socket| async move {
                sessions.run(token, socket).await;
                drop(tracked);
            })
    }

    /// Accepts no more sessions into the tracker's count of those to wait for.
    pub(crate) fn close(&self) {
        self.tracker.close();
    }

    /// Resolves once every session ended (after [`Sessions::close`]).
    pub(crate) async fn wait(&self) {
        self.tracker.wait().await;
    }

    /// Runs one agent socket from hello to close.
    async fn run(&self, token: Credential, socket: WebSocket) {
        let session_id = new_id("s_");
        let span = tracing::info_span!(
            "agent_session",
            session_id = %session_id,
            token = %token.name,
            agent_id = tracing::field::Empty,
        );
        async move {
            let (mut sink, mut stream) = socket.split();
            let heartbeat = self.timings.heartbeat;
            let hello =
                match handshake::run(&mut sink, &mut stream, &token.scope, &session_id, heartbeat)
                    .await
                {
                    handshake::Handshake::Welcomed(hello) => {
                        self.metrics
                            .agent_sessions
                            .get_or_create(&welcomed("welcomed"))
                            .inc();
                        hello
                    }
                    handshake::Handshake::Refused(reason) => {
                        self.metrics
                            .agent_sessions
                            .get_or_create(&welcomed("refused"))
                            .inc();
                        tracing::debug!(?reason, "agent not welcomed");
                        return;
                    }
                };
            tracing::Span::current().record("agent_id", hello.agent_id.as_str());
            tracing::info!(
                agent_version = %hello.agent_version,
                protocol = hello.protocol,
                systems = ?hello.systems,
                credits = hello.credits,
                "agent connected"
            );
            if hello.protocol < PROTOCOL_VERSION {
                tracing::warn!(
                    agent_version = %hello.agent_version,
                    protocol = hello.protocol,
                    relay_protocol = PROTOCOL_VERSION,
                    "agent speaks an older protocol; it is served, but should be upgraded \
                     (units in doubt are never sent to it)"
                );
            }
            let registration = self.agents.register(&session_id, &hello);
            let hold = self.keys.hold(&token, &hello.systems);
            let ctx = SessionContext {
                session_id: session_id.clone(),
                function_systems: hello.function_systems(),
                hello,
                queue: Arc::clone(&self.queue),
                heartbeat,
                lease: self.timings.lease,
                owner_hold: self.timings.owner_hold,
                shutdown: self.shutdown.clone(),
                metrics: Arc::clone(&self.metrics),
                hold,
                audit: self.audit.clone(),
            };
            dispatch::serve(&ctx, registration.session(), &mut sink, &mut stream).await;
        }
        .instrument(span)
        .await;
    }
}

/// `{result}` of an agent's connection attempt.
fn welcomed(result: &str) -> crate::metrics::SessionLabels {
    crate::metrics::SessionLabels {
        result: result.to_owned(),
    }
}
