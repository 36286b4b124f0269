//! The session loop after the welcome: hands queued units to the agent while it has
//! credits, stores the outcomes it reports (and acknowledges them), exchanges
//! heartbeats, and returns every unanswered lease to the queue when the socket ends.
//!
//! Credits: the hello's credits plus every `Credits` message; each `Work` sent uses
//! one; each `Outcome` of a unit sent on this session returns one; `Drain` drops them
//! to zero. The loop never sends more units than the agent has credits.
//!
//! Wake-ups: the loop waits on its systems' work signals (enabled before it looks at
//! the queue, so no wake-up is lost) with a polling fallback of [`POLL_INTERVAL`].
//!
//! HTTP pass-through rides along outside the credits: the loop writes what the
//! session's [`crate::passthrough::Tunnel`] queues (request heads, window grants,
//! cancels, request body chunks) and hands it what the agent answers; when the
//! socket ends the tunnel is closed, failing its open streams.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Message;
use futures_util::future::select_all;
use futures_util::{Sink, Stream};
use sapbridge_proto::{AgentMessage, CloseReason, Outcome, RelayMessage};
use time::OffsetDateTime;
use tokio::sync::{Notify, futures::Notified};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::frames::{self, Incoming};
use super::handshake::message_kind;
use crate::agents::AgentSession;
use crate::passthrough::Ordered;
use crate::queue::{Completion, Queue};

/// How often an idle session looks at the queue even without a wake-up.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// The most credits a session holds, whatever the agent grants.
const MAX_CREDITS: u32 = 1024;
/// The most units claimed in one queue operation.
const CLAIM_BATCH: u32 = 32;

/// What a session needs besides its socket.
pub(crate) struct SessionContext {
    /// The session id.
    pub(crate) session_id: String,
    /// The agent's id (stored with the outcomes it reports).
    pub(crate) agent_id: String,
    /// The systems it serves.
    pub(crate) systems: Vec<String>,
    /// Its initial credits.
    pub(crate) credits: u32,
    /// The queue.
    pub(crate) queue: Arc<dyn Queue>,
    /// Heartbeat interval.
    pub(crate) heartbeat: Duration,
    /// Lease length, renewed every heartbeat.
    pub(crate) lease: Duration,
    /// Cancelled on relay shutdown.
    pub(crate) shutdown: CancellationToken,
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    /// The agent closed (or the socket broke).
    AgentGone,
    /// The relay closed it, for this reason.
    Closed(CloseReason),
}

/// The loop's mutable bookkeeping.
struct Ledger<'a> {
    credits: u32,
    draining: bool,
    in_flight: HashSet<String>,
    want_claim: bool,
    published: &'a AgentSession,
}

impl Ledger<'_> {
    fn can_take(&self) -> bool {
        self.credits > 0 && !self.draining
    }

    fn publish(&self) {
        let in_flight = u32::try_from(self.in_flight.len()).unwrap_or(u32::MAX);
        self.published.set_counts(self.credits, in_flight);
    }
}

/// Serves a welcomed agent until its socket ends or the relay shuts down, then
/// returns its leases to the queue.
pub(crate) async fn serve<S, R, E>(
    ctx: &SessionContext,
    published: &AgentSession,
    sink: &mut S,
    stream: &mut R,
) -> SessionEnd
where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
    E: std::fmt::Display,
{
    let end = run_loop(ctx, published, sink, stream).await;
    published.tunnel().close();
    match ctx.queue.release_session(&ctx.session_id).await {
        Ok(0) => {}
        Ok(released) => tracing::info!(released, "leases returned to the queue"),
        Err(error) => tracing::error!(%error, "could not return leases; the reaper will"),
    }
    tracing::info!(?end, "agent session ended");
    end
}

async fn run_loop<S, R, E>(
    ctx: &SessionContext,
    published: &AgentSession,
    sink: &mut S,
    stream: &mut R,
) -> SessionEnd
where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
    E: std::fmt::Display,
{
    let signals: Vec<Arc<Notify>> = ctx
        .systems
        .iter()
        .map(|s| ctx.queue.signals().work(s))
        .collect();
    let mut ledger = Ledger {
        credits: ctx.credits.min(MAX_CREDITS),
        draining: false,
        in_flight: HashSet::new(),
        want_claim: true,
        published,
    };
    ledger.publish();
    let tunnel = published.tunnel();
    let Some(mut outbound) = tunnel.take_outbound() else {
        tracing::error!("the session's pass-through channels were taken twice");
        return SessionEnd::AgentGone;
    };
    let mut last_seen = Instant::now();
    let mut heartbeat = tokio::time::interval_at(Instant::now() + ctx.heartbeat, ctx.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Enable the wake-ups before looking at the queue so none is lost.
        let mut wakes: Vec<Pin<Box<Notified<'_>>>> = Vec::new();
        if ledger.can_take() {
            wakes = signals.iter().map(|n| Box::pin(n.notified())).collect();
            for wake in &mut wakes {
                wake.as_mut().enable();
            }
        }
        if ledger.can_take() && ledger.want_claim {
            ledger.want_claim = false;
            if send_work(ctx, &mut ledger, sink).await.is_err() {
                return SessionEnd::AgentGone;
            }
        }
        let can_take = ledger.can_take() && !wakes.is_empty();
        let wake = async move {
            if !wakes.is_empty() {
                select_all(wakes).await;
            }
        };
        tokio::select! {
            biased;
            () = ctx.shutdown.cancelled() => {
                frames::close(sink, CloseReason::ShuttingDown).await;
                return SessionEnd::Closed(CloseReason::ShuttingDown);
            }
            incoming = frames::read(stream) => {
                last_seen = Instant::now();
                match incoming {
                    Incoming::Message(message) => {
                        if let Err(end) = handle(ctx, &mut ledger, sink, *message).await {
                            return end;
                        }
                    }
                    Incoming::Chunk(chunk) => tunnel.on_chunk(chunk),
                    Incoming::Control => {}
                    Incoming::Closed => return SessionEnd::AgentGone,
                    Incoming::Bad(reason) => {
                        tracing::warn!(%reason, "closing agent session");
                        frames::close(sink, reason.clone()).await;
                        return SessionEnd::Closed(reason);
                    }
                }
            }
            () = tokio::time::sleep_until(last_seen + ctx.heartbeat * 2) => {
                tracing::warn!("agent silent for two heartbeat intervals");
                frames::close(sink, CloseReason::HeartbeatTimeout).await;
                return SessionEnd::Closed(CloseReason::HeartbeatTimeout);
            }
            _ = heartbeat.tick() => {
                if frames::send(sink, &RelayMessage::Heartbeat).await.is_err() {
                    return SessionEnd::AgentGone;
                }
                let until = OffsetDateTime::now_utc() + ctx.lease;
                if let Err(error) = ctx.queue.renew_leases(&ctx.session_id, until).await {
                    tracing::warn!(%error, "could not renew leases");
                }
            }
            Some(message) = outbound.control.recv() => {
                if frames::send(sink, &message).await.is_err() {
                    return SessionEnd::AgentGone;
                }
            }
            Some(item) = outbound.data.recv() => {
                let sent = match item {
                    Ordered::Message(message) => frames::send(sink, &message).await.is_ok(),
                    Ordered::Chunk(frame) => frames::send_chunk(sink, frame).await.is_ok(),
                };
                if !sent {
                    return SessionEnd::AgentGone;
                }
            }
            () = wake, if can_take => ledger.want_claim = true,
            () = tokio::time::sleep(POLL_INTERVAL), if can_take => ledger.want_claim = true,
        }
    }
}

/// Claims as many units as the agent has credits for and sends them.
async fn send_work<S>(ctx: &SessionContext, ledger: &mut Ledger<'_>, sink: &mut S) -> Result<(), ()>
where
    S: Sink<Message> + Unpin,
{
    let max = ledger.credits.min(CLAIM_BATCH) as usize;
    let until = OffsetDateTime::now_utc() + ctx.lease;
    let units = match ctx
        .queue
        .claim(&ctx.systems, &ctx.session_id, max, until)
        .await
    {
        Ok(units) => units,
        Err(error) => {
            tracing::warn!(%error, "claiming work failed");
            return Ok(());
        }
    };
    // A full batch may have left more behind: look again next turn.
    ledger.want_claim = units.len() == max;
    for unit in units {
        let function = unit.calls.first().map(|c| c.function.clone());
        tracing::info!(
            call_id = %unit.call_id,
            system = %unit.system,
            function = function.as_deref().unwrap_or(""),
            attempt = unit.attempt,
            "unit sent to agent"
        );
        ledger.credits -= 1;
        ledger.in_flight.insert(unit.call_id.clone());
        ledger.publish();
        if frames::send(sink, &RelayMessage::Work { unit })
            .await
            .is_err()
        {
            return Err(());
        }
    }
    Ok(())
}

/// Handles one protocol message; `Err` ends the session.
async fn handle<S>(
    ctx: &SessionContext,
    ledger: &mut Ledger<'_>,
    sink: &mut S,
    message: AgentMessage,
) -> Result<(), SessionEnd>
where
    S: Sink<Message> + Unpin,
{
    match message {
        AgentMessage::Credits { credits } => {
            ledger.credits = ledger.credits.saturating_add(credits).min(MAX_CREDITS);
            ledger.draining = false;
            ledger.want_claim = true;
        }
        AgentMessage::Drain => {
            tracing::info!("agent draining");
            ledger.credits = 0;
            ledger.draining = true;
        }
        AgentMessage::Heartbeat => {}
        AgentMessage::Outcome {
            call_id,
            attempt,
            outcome,
        } => {
            let span = tracing::info_span!("call", call_id = %call_id, attempt);
            let stored = store_outcome(ctx, &call_id, attempt, outcome)
                .instrument(span)
                .await;
            if ledger.in_flight.remove(&call_id) && !ledger.draining {
                ledger.credits = (ledger.credits + 1).min(MAX_CREDITS);
                ledger.want_claim = true;
            }
            ledger.publish();
            if stored {
                let ack = RelayMessage::Ack { call_id };
                if frames::send(sink, &ack).await.is_err() {
                    return Err(SessionEnd::AgentGone);
                }
            }
        }
        AgentMessage::HttpResponse { response } => ledger.published.tunnel().on_response(response),
        AgentMessage::HttpError { stream_id, error } => {
            ledger.published.tunnel().on_error(stream_id, error);
        }
        AgentMessage::HttpWindow { stream_id, chunks } => {
            ledger.published.tunnel().on_window(stream_id, chunks);
        }
        AgentMessage::Close { reason } => {
            tracing::info!(%reason, "agent closed the session");
            return Err(SessionEnd::AgentGone);
        }
        other @ AgentMessage::Hello { .. } => {
            let reason = CloseReason::ProtocolError {
                detail: format!("unexpected {} after the handshake", message_kind(&other)),
            };
            frames::close(sink, reason.clone()).await;
            return Err(SessionEnd::Closed(reason));
        }
    }
    Ok(())
}

/// Stores an outcome; returns whether it may be acknowledged (it is stored, or
/// there is nothing to store it in).
async fn store_outcome(
    ctx: &SessionContext,
    call_id: &str,
    attempt: u32,
    outcome: Outcome,
) -> bool {
    match ctx
        .queue
        .complete(call_id, attempt, &ctx.agent_id, outcome)
        .await
    {
        Ok(Completion::Stored) => {
            tracing::info!("outcome stored");
            true
        }
        Ok(Completion::AlreadyFinal) => {
            tracing::info!("outcome ignored: the call is already final");
            true
        }
        Ok(Completion::Unknown) => {
            tracing::warn!("outcome for an unknown call ignored");
            true
        }
        Err(error) => {
            // No ack: the agent keeps the outcome and sends it again.
            tracing::error!(%error, "could not store outcome");
            false
        }
    }
}
