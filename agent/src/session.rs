//! One agent session on an open connection: hello/welcome, work in, outcomes out,
//! acks, heartbeats, and the graceful drain.
//!
//! HTTP pass-through streams ride along outside the credits: `HttpRequest`,
//! `HttpWindow` and `HttpCancel` go to the session's [`SessionStreams`], and what
//! they queue is written here. While draining, new pass-through requests are
//! refused (`Busy`); open ones end with the session.
//!
//! Written over any `Sink<Outgoing>` / `Stream<Result<RelayMessage, _>>` pair, so
//! unit tests drive it with channels and [`crate::transport`] plugs in the
//! WebSocket. The session never fails: every way it ends is a [`SessionEnd`] in
//! the returned [`SessionReport`], and the caller decides whether to reconnect.
//!
//! Trust: nothing the relay sends is believed unchecked. Every number is
//! range-checked before use ([`checks`]) and work is accepted only within the
//! credits the agent granted ([`credits`], whose docs define the accounting). A
//! relay that breaks the protocol gets `Close{ProtocolError}` with what it did
//! wrong, and the session ends ([`SessionEnd::ClosedByAgent`]); nothing it sent
//! beyond the rules is queued first.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use sapbridge_proto::{
    AgentMessage, CloseReason, HANDSHAKE_TIMEOUT_SECS, Outbox, PROTOCOL_VERSION, RelayMessage,
    SystemCapabilities,
};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{Span, debug, error, info, warn};

use self::credits::Credits;
use self::status::{StatusProbe, StatusReporter};
use crate::passthrough::SessionStreams;
use crate::runner::UnitRunner;
use crate::transport::{Outgoing, TransportError};

/// After the last in-flight unit of a drain ended, how long to wait for the acks of
/// the last outcomes (bounded by the grace period too).
const DRAIN_ACK_WAIT: Duration = Duration::from_secs(5);
/// The most pass-through frames queued in one turn of the loop.
const OUTBOUND_BATCH: usize = 64;

/// What a session announces and how it drains.
#[derive(Debug, Clone)]
pub(crate) struct SessionParams {
    /// The agent id sent in the hello.
    pub(crate) agent_id: String,
    /// The systems served, sent in the hello.
    pub(crate) systems: Vec<String>,
    /// What it runs for each system, sent in the hello.
    pub(crate) capabilities: Vec<SystemCapabilities>,
    /// The agent's concurrency (its credits when nothing runs).
    pub(crate) concurrency: u32,
    /// How long a graceful shutdown waits for in-flight units.
    pub(crate) shutdown_grace: Duration,
    /// The systems' logon states, reported to relays that take them.
    pub(crate) status: StatusProbe,
    /// Sessions welcomed before this one since the agent started (its
    /// reconnects), sent in the hello.
    pub(crate) reconnects: u64,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    /// Shutdown was requested; the session drained and said `Close{ShuttingDown}`.
    Shutdown,
    /// The relay closed the session, saying why.
    ClosedByRelay(CloseReason),
    /// The agent closed the session, saying why (and told the relay): the relay
    /// broke the protocol or went silent.
    ClosedByAgent(CloseReason),
    /// The connection broke (closed, failed, or a send did not complete).
    Lost(String),
}

impl SessionEnd {
    /// Whether the relay broke the protocol (so the session does not count as
    /// healthy, whatever it did before).
    pub(crate) fn relay_misbehaved(&self) -> bool {
        matches!(
            self,
            Self::ClosedByAgent(
                CloseReason::ProtocolError { .. }
                    | CloseReason::FrameTooLarge { .. }
                    | CloseReason::ProtocolMismatch { .. }
            )
        )
    }
}

/// What happened in a session, for the reconnect policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionReport {
    /// How it ended.
    pub(crate) end: SessionEnd,
    /// Whether the relay welcomed the agent.
    pub(crate) welcomed: bool,
    /// How many units the relay delivered.
    pub(crate) units: u64,
    /// How many outcomes the relay acknowledged.
    pub(crate) acks: u64,
}

impl SessionReport {
    fn new(end: SessionEnd) -> Self {
        Self {
            end,
            welcomed: false,
            units: 0,
            acks: 0,
        }
    }
}

/// Runs one session until it ends. `shutdown` starts the graceful drain.
///
/// Cancel-safe in the sense that dropping it only drops the connection: unit tasks
/// live in the runner and keep their outcomes for the next session.
pub(crate) async fn run_session<Si, St>(
    sink: &mut Si,
    stream: &mut St,
    params: &SessionParams,
    runner: &UnitRunner,
    streams: &mut SessionStreams,
    shutdown: &CancellationToken,
) -> SessionReport
where
    Si: Sink<Outgoing, Error = TransportError> + Unpin,
    St: Stream<Item = Result<RelayMessage, TransportError>> + Unpin,
{
    let handshake = Duration::from_secs(HANDSHAKE_TIMEOUT_SECS);
    // Units still running from an earlier session hold slots the hello does not
    // offer; their outcomes go out on this session, which the relay did not send
    // them on, so it returns no credit for them: a `Credits` message does.
    let mut owed = runner.store().running_ids();
    let running = u32::try_from(owed.len()).unwrap_or(u32::MAX);
    let credits = params.concurrency.saturating_sub(running);
    let hello = AgentMessage::Hello {
        protocol: PROTOCOL_VERSION,
        agent_id: params.agent_id.clone(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        systems: params.systems.clone(),
        credits,
        capabilities: params.capabilities.clone(),
        reconnects: params.reconnects,
    };
    if let Err(e) = send(sink, hello, handshake).await {
        return SessionReport::new(SessionEnd::Lost(e));
    }
    let first = tokio::select! {
        () = shutdown.cancelled() => {
            let _ = send(sink, close(CloseReason::ShuttingDown), handshake).await;
            return SessionReport::new(SessionEnd::Shutdown);
        }
        first = timeout(handshake, stream.next()) => first,
    };
    let (heartbeat, status) = match first {
        Ok(Some(Ok(RelayMessage::Welcome {
            protocol,
            session_id,
            heartbeat_secs,
            features,
        }))) => match checks::welcome(protocol, &session_id, heartbeat_secs, &features) {
            Ok(heartbeat) => {
                Span::current().record("session_id", session_id.as_str());
                info!(protocol, heartbeat_secs, ?features, "welcomed by the relay");
                (heartbeat, StatusReporter::new(&params.status, &features))
            }
            Err(reason) => {
                return SessionReport::new(close_for(sink, reason, handshake).await);
            }
        },
        Ok(Some(Ok(RelayMessage::Close { reason }))) => {
            log_relay_close(&reason);
            return SessionReport::new(SessionEnd::ClosedByRelay(reason));
        }
        Ok(Some(Ok(other))) => {
            let detail = format!("expected welcome, got {}", kind(&other));
            return SessionReport::new(violation(sink, detail, handshake).await);
        }
        Ok(Some(Err(e))) => return lost_on_error(sink, e, handshake).await,
        Ok(None) => {
            return SessionReport::new(SessionEnd::Lost("closed before the welcome".into()));
        }
        Err(_) => {
            let detail = format!("no welcome within {HANDSHAKE_TIMEOUT_SECS} s");
            return SessionReport::new(violation(sink, detail, handshake).await);
        }
    };
    let mut report = SessionReport::new(SessionEnd::Shutdown);
    report.welcomed = true;
    report.end = welcomed_loop(
        sink,
        stream,
        params,
        runner,
        streams,
        shutdown,
        heartbeat,
        &mut report,
        &mut owed,
        Credits::new(credits),
        status,
    )
    .await;
    report
}

// One private loop; a struct for its inputs would only rename the parameters.
#[allow(clippy::too_many_arguments)]
async fn welcomed_loop<Si, St>(
    sink: &mut Si,
    stream: &mut St,
    params: &SessionParams,
    runner: &UnitRunner,
    streams: &mut SessionStreams,
    shutdown: &CancellationToken,
    heartbeat: Duration,
    report: &mut SessionReport,
    owed: &mut HashSet<String>,
    mut credits: Credits,
    mut status: StatusReporter,
) -> SessionEnd
where
    Si: Sink<Outgoing, Error = TransportError> + Unpin,
    St: Stream<Item = Result<RelayMessage, TransportError>> + Unpin,
{
    let store = runner.store();
    // `heartbeat` is at most `MAX_HEARTBEAT_SECS` (see `checks`): no overflow here
    // or where it is added to an `Instant` below.
    let silence = heartbeat * 2;
    // A send that takes longer than the silence limit means the peer is gone.
    let send_limit = silence;
    store.resend_all();
    let resent = send_outcomes(sink, runner, owed, &mut credits, send_limit).await;
    let resent = match (resent, status.due()) {
        (Ok(_), Some(report)) => send(sink, report, send_limit).await,
        (resent, _) => resent.map(|_| ()),
    };
    if let Err(e) = resent.and(within(send_limit, sink.flush()).await) {
        return SessionEnd::Lost(e);
    }
    let mut ticker = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let dead = sleep(silence);
    tokio::pin!(dead);
    let mut drain: Option<Drain> = None;
    let mut outbox = Outbox::default();

    loop {
        // Every branch only queues what it writes; see `Outbox`.
        if outbox.turn() {
            if let Err(e) = within(send_limit, sink.flush()).await {
                return SessionEnd::Lost(e);
            }
            outbox.flushed();
        }
        if let Some(end) = drain
            .as_mut()
            .and_then(|d| d.check(store.running(), store.unacked()))
        {
            let _ = send(sink, close(CloseReason::ShuttingDown), send_limit).await;
            return end;
        }
        let drain_wake = drain.as_ref().map_or_else(Instant::now, Drain::next_wake);
        tokio::select! {
            () = shutdown.cancelled(), if drain.is_none() => {
                info!(running = store.running(), unacked = store.unacked(),
                    "shutting down: draining the session");
                if let Err(e) = send(sink, AgentMessage::Drain, send_limit).await {
                    return SessionEnd::Lost(e);
                }
                credits.drain();
                drain = Some(Drain::new(params.shutdown_grace));
            }
            frame = stream.next() => {
                dead.as_mut().reset(Instant::now() + silence);
                let message = match frame {
                    None => return SessionEnd::Lost("the relay closed the connection".into()),
                    Some(Err(e)) => return lost_on_error(sink, e, send_limit).await.end,
                    Some(Ok(message)) => message,
                };
                match message {
                    RelayMessage::Work { unit } => {
                        // Checked (ids first: the credit check names the call id)
                        // before anything is kept of it.
                        let accepted = checks::unit(&unit)
                            .and_then(|()| credits.deliver(&unit.call_id));
                        if let Err(detail) = accepted {
                            return violation(sink, detail, send_limit).await;
                        }
                        if drain.is_some() {
                            warn!(call_id = %unit.call_id,
                                "unit delivered while draining; not taken, the relay re-queues it");
                            continue;
                        }
                        report.units += 1;
                        // Sent on this session: the relay returns its credit itself.
                        owed.remove(&unit.call_id);
                        debug!(call_id = %unit.call_id, system = %unit.system, "unit delivered");
                        runner.submit(unit);
                    }
                    RelayMessage::Ack { call_id } => {
                        if let Err(detail) = checks::call_id("ack", &call_id) {
                            return violation(sink, detail, send_limit).await;
                        }
                        report.acks += 1;
                        if !store.ack(&call_id) {
                            debug!(call_id = %call_id, "ack for an outcome not held");
                        }
                    }
                    RelayMessage::HttpRequest { request } => {
                        debug!(stream_id = request.stream_id, "pass-through request");
                        if let Err(detail) = streams.start(request, drain.is_some()) {
                            return violation(sink, detail, send_limit).await;
                        }
                    }
                    RelayMessage::HttpWindow { stream_id, chunks } => {
                        if let Err(detail) = checks::window(stream_id, chunks) {
                            return violation(sink, detail, send_limit).await;
                        }
                        streams.grant(stream_id, chunks);
                    }
                    RelayMessage::HttpCancel { stream_id } => streams.cancel(stream_id),
                    RelayMessage::Heartbeat => {}
                    RelayMessage::Welcome { .. } => {
                        return violation(sink, "a second welcome".into(), send_limit).await;
                    }
                    RelayMessage::Close { reason } => {
                        log_relay_close(&reason);
                        return SessionEnd::ClosedByRelay(reason);
                    }
                }
            }
            outgoing = streams.next_outbound() => {
                if let Err(e) = send_batch(sink, outgoing, streams, send_limit).await {
                    return SessionEnd::Lost(e);
                }
                outbox.fed(true);
            }
            () = store.changed() => {
                match send_outcomes(sink, runner, owed, &mut credits, send_limit).await {
                    Ok(sent) => outbox.fed(sent),
                    Err(e) => return SessionEnd::Lost(e),
                }
                // A unit that just failed may have found the password refused.
                if let Some(report) = status.due() {
                    match send(sink, report, send_limit).await {
                        Ok(()) => outbox.flushed(),
                        Err(e) => return SessionEnd::Lost(e),
                    }
                }
            }
            () = status.lifted() => {
                if let Some(report) = status.due()
                    && let Err(e) = send(sink, report, send_limit).await
                {
                    return SessionEnd::Lost(e);
                }
            }
            _ = ticker.tick() => {
                if let Some(report) = status.due()
                    && let Err(e) = send(sink, report, send_limit).await
                {
                    return SessionEnd::Lost(e);
                }
                if let Err(e) = send(sink, AgentMessage::Heartbeat, send_limit).await {
                    return SessionEnd::Lost(e);
                }
                outbox.flushed();
            }
            () = &mut dead => {
                warn!(silence_secs = silence.as_secs(), "relay silent for two heartbeat intervals; dropping the connection");
                return close_for(sink, CloseReason::HeartbeatTimeout, Duration::from_secs(1)).await;
            }
            () = sleep_until(drain_wake), if drain.is_some() => {}
            // Last: only when nothing else is ready.
            flushed = within(send_limit, sink.flush()), if outbox.dirty() => {
                if let Err(e) = flushed {
                    return SessionEnd::Lost(e);
                }
                outbox.flushed();
            }
        }
    }
}

/// The state of a graceful drain: in-flight units may finish until the grace
/// deadline; then the last acks get a short wait.
#[derive(Debug)]
struct Drain {
    grace_deadline: Instant,
    acks_deadline: Option<Instant>,
}

impl Drain {
    fn new(grace: Duration) -> Self {
        Self {
            grace_deadline: Instant::now() + grace,
            acks_deadline: None,
        }
    }

    /// `Some(end)` when the session should close now.
    fn check(&mut self, running: usize, unacked: usize) -> Option<SessionEnd> {
        let now = Instant::now();
        if running == 0 {
            let acks_deadline = *self
                .acks_deadline
                .get_or_insert_with(|| (now + DRAIN_ACK_WAIT).min(self.grace_deadline));
            if unacked == 0 {
                info!("drained: every outcome sent and acknowledged");
                return Some(SessionEnd::Shutdown);
            }
            if now >= acks_deadline {
                warn!(
                    unacked,
                    "drained, but some outcomes were not acknowledged in time"
                );
                return Some(SessionEnd::Shutdown);
            }
        }
        if now >= self.grace_deadline {
            warn!(
                running,
                unacked, "shutdown grace period over; closing with units still running"
            );
            return Some(SessionEnd::Shutdown);
        }
        None
    }

    fn next_wake(&self) -> Instant {
        self.acks_deadline
            .unwrap_or(self.grace_deadline)
            .min(self.grace_deadline)
    }
}

/// Queues every outcome not sent yet (the caller flushes), each counted in
/// `credits`; `Ok(true)` when there was one. Slots of units of an earlier session
/// go back as a `Credits` message first, except while draining.
async fn send_outcomes<Si>(
    sink: &mut Si,
    runner: &UnitRunner,
    owed: &mut HashSet<String>,
    credits: &mut Credits,
    limit: Duration,
) -> Result<bool, String>
where
    Si: Sink<Outgoing, Error = TransportError> + Unpin,
{
    let ready = runner.store().take_unsent();
    if ready.is_empty() {
        return Ok(false);
    }
    // Slots freed by units of an earlier session, handed back as credits.
    let freed = ready.iter().filter(|r| owed.remove(&r.call_id)).count();
    // An outcome that fails to go out stays held and is re-sent next session.
    let feed_all = async {
        if freed > 0 && !credits.draining() {
            let freed = u32::try_from(freed).unwrap_or(u32::MAX);
            credits.granted(freed);
            sink.feed(AgentMessage::Credits { credits: freed }.into())
                .await?;
        }
        for ready in ready {
            debug!(call_id = %ready.call_id, attempt = ready.attempt, "sending outcome");
            credits.outcome_sent(&ready.call_id);
            let message = AgentMessage::Outcome {
                call_id: ready.call_id,
                attempt: ready.attempt,
                outcome: ready.outcome,
            };
            sink.feed(message.into()).await?;
        }
        Ok(())
    };
    within(limit, feed_all).await.map(|()| true)
}

/// Queues `first` and every pass-through frame already waiting behind it (at most
/// [`OUTBOUND_BATCH`]); the caller flushes.
async fn send_batch<Si>(
    sink: &mut Si,
    first: Outgoing,
    streams: &mut SessionStreams,
    limit: Duration,
) -> Result<(), String>
where
    Si: Sink<Outgoing, Error = TransportError> + Unpin,
{
    let feed_all = async {
        sink.feed(first).await?;
        for _ in 1..OUTBOUND_BATCH {
            let Some(next) = streams.try_next_outbound() else {
                break;
            };
            sink.feed(next).await?;
        }
        Ok(())
    };
    within(limit, feed_all).await
}

async fn send<Si>(
    sink: &mut Si,
    message: impl Into<Outgoing>,
    limit: Duration,
) -> Result<(), String>
where
    Si: Sink<Outgoing, Error = TransportError> + Unpin,
{
    within(limit, sink.send(message.into())).await
}

/// Runs a send, failing it when it errs or takes longer than `limit` (a peer that
/// does not read for that long is gone).
async fn within(
    limit: Duration,
    send: impl Future<Output = Result<(), TransportError>>,
) -> Result<(), String> {
    match timeout(limit, send).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("send failed: {e}")),
        Err(_) => Err(format!(
            "send did not complete within {} s",
            limit.as_secs()
        )),
    }
}

async fn lost_on_error<Si>(sink: &mut Si, error: TransportError, limit: Duration) -> SessionReport
where
    Si: Sink<Outgoing, Error = TransportError> + Unpin,
{
    let end = match error.close_reason() {
        Some(reason) => close_for(sink, reason, limit).await,
        None => SessionEnd::Lost(error.to_string()),
    };
    SessionReport::new(end)
}

/// Closes the session because the relay broke the protocol: `detail` says how.
async fn violation<Si>(sink: &mut Si, detail: String, limit: Duration) -> SessionEnd
where
    Si: Sink<Outgoing, Error = TransportError> + Unpin,
{
    close_for(sink, CloseReason::ProtocolError { detail }, limit).await
}

/// Tells the relay why the agent closes the session (best effort: the connection
/// ends either way) and logs it.
async fn close_for<Si>(sink: &mut Si, reason: CloseReason, limit: Duration) -> SessionEnd
where
    Si: Sink<Outgoing, Error = TransportError> + Unpin,
{
    warn!(reason = %reason, "closing the session");
    let _ = send(sink, close(reason.clone()), limit).await;
    SessionEnd::ClosedByAgent(reason)
}

fn close(reason: CloseReason) -> AgentMessage {
    AgentMessage::Close { reason }
}

fn log_relay_close(reason: &CloseReason) {
    match reason {
        CloseReason::ProtocolMismatch { expected, got } => error!(
            expected,
            got,
            agent_protocol = PROTOCOL_VERSION,
            "the relay speaks another protocol version; upgrade the agent or the relay"
        ),
        CloseReason::SystemNotAllowed { system } => error!(
            system = %system,
            "the relay refused a system: the agent token may not serve it"
        ),
        CloseReason::ShuttingDown => info!("the relay is shutting down"),
        other => warn!(reason = %other, "the relay closed the session"),
    }
}

fn kind(message: &RelayMessage) -> &'static str {
    match message {
        RelayMessage::Welcome { .. } => "welcome",
        RelayMessage::Work { .. } => "work",
        RelayMessage::Ack { .. } => "ack",
        RelayMessage::Heartbeat => "heartbeat",
        RelayMessage::Close { .. } => "close",
        RelayMessage::HttpRequest { .. } => "http_request",
        RelayMessage::HttpWindow { .. } => "http_window",
        RelayMessage::HttpCancel { .. } => "http_cancel",
    }
}

mod checks;
mod credits;
pub(crate) mod status;
#[cfg(test)]
mod tests;
