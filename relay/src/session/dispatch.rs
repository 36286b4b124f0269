//! The session loop after the welcome: hands queued units to the agent while it has
//! credits, stores the outcomes it reports (and acknowledges them), exchanges
//! heartbeats, and returns every unanswered lease to the queue when the socket ends.
//!
//! Credits: the hello's credits plus every `Credits` message; each `Work` sent uses
//! one; each `Outcome` of a unit sent on this session returns one; `Drain` drops them
//! to zero.
//!
//! Trust: an outcome is believed only from the session holding that call's latest
//! lease for that attempt (the queue judges it, see [`crate::queue`]); anything
//! else is refused, logged, counted and not acknowledged. Leases are deadlines:
//! heartbeats keep the connection, not the leases. The loop never sends more units than the agent has credits. The free
//! credits live in the session's [`Taker`]: while it has some, the queue leases a
//! new call of a system with nothing queued straight to the session in the enqueue
//! itself and hands the unit over (direct dispatch: one write per call instead of
//! an enqueue, a wake-up and a claim).
//!
//! Wake-ups: for queued calls (a backlog, calls returned by a lost session) the loop
//! waits on its systems' work signals (enabled before it looks at the queue, so no
//! wake-up is lost) with a polling fallback of [`POLL_INTERVAL`], and claims them.
//!
//! HTTP pass-through rides along outside the credits: the loop writes what the
//! session's [`crate::passthrough::Tunnel`] queues (request heads, window grants,
//! cancels, request body chunks) and hands it what the agent answers; when the
//! socket ends the tunnel is closed, failing its open streams.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ws::Message;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, Sink, Stream, StreamExt};
use sapbridge_proto::{
    AgentMessage, CloseReason, Outbox, Outcome, RelayMessage, Unit, UnitRef, WorkFrame,
};
use time::OffsetDateTime;
use tokio::sync::{Notify, futures::Notified, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::frames::{self, Incoming};
use super::handshake::message_kind;
use crate::agents::{AgentSession, Hello};
use crate::passthrough::{Ordered, TunnelOutbound};
use crate::queue::{Claimant, Completion, Queue, Taker};

/// How often an idle session looks at the queue even without a wake-up.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// The most credits a session holds, whatever the agent grants.
const MAX_CREDITS: u32 = 1024;
/// The most units claimed in one queue operation.
const CLAIM_BATCH: u32 = 32;
/// The most pass-through frames queued in one turn of the loop.
const TUNNEL_BATCH: usize = 64;

/// What a session needs besides its socket.
pub(crate) struct SessionContext {
    /// The session id.
    pub(crate) session_id: String,
    /// What the agent announced (its id is stored with the outcomes it reports).
    pub(crate) hello: Hello,
    /// The systems it runs function calls for: the ones it is sent units of.
    pub(crate) function_systems: Vec<String>,
    /// The queue.
    pub(crate) queue: Arc<dyn Queue>,
    /// Heartbeat interval.
    pub(crate) heartbeat: Duration,
    /// Lease length: how long the agent has for a unit.
    pub(crate) lease: Duration,
    /// How long the leases of this session, when it ends, wait for its agent.
    pub(crate) owner_hold: Duration,
    /// Cancelled on relay shutdown.
    pub(crate) shutdown: CancellationToken,
    /// Counts the outcomes refused (for `/metrics`).
    pub(crate) refused: Arc<std::sync::atomic::AtomicU64>,
}

impl SessionContext {
    /// Who this session is when it claims work.
    fn claimant(&self) -> Claimant<'_> {
        Claimant {
            session: &self.session_id,
            agent: &self.hello.agent_id,
            takes_in_doubt: self.hello.protocol >= 2,
        }
    }
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    /// The agent closed (or the socket broke).
    AgentGone,
    /// The relay closed it, for this reason.
    Closed(CloseReason),
}

/// The loop's mutable bookkeeping. The session's free credits live in its
/// [`Taker`], shared with the queue, which takes one for each new call it hands
/// over directly.
struct Ledger<'a> {
    taker: Arc<Taker>,
    draining: bool,
    in_flight: HashSet<String>,
    want_claim: bool,
    published: &'a AgentSession,
}

impl Ledger<'_> {
    fn can_take(&self) -> bool {
        self.taker.credits() > 0 && !self.draining
    }

    fn publish(&self) {
        let in_flight = u32::try_from(self.in_flight.len()).unwrap_or(u32::MAX);
        self.published.set_counts(self.taker.credits(), in_flight);
    }
}

/// An outcome being stored: resolves to its call id and whether it may be acked.
type PendingStore<'a> = Pin<Box<dyn Future<Output = (String, bool)> + Send + 'a>>;

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
    let mut stores = FuturesUnordered::new();
    let (taker, handed) = Taker::new(&ctx.session_id, &ctx.hello.agent_id, ctx.lease, MAX_CREDITS);
    taker.give(ctx.hello.credits);
    ctx.queue.signals().add_taker(&ctx.function_systems, &taker);
    let end = run_loop(ctx, published, sink, stream, &mut stores, taker, handed).await;
    // No new call is handed to this session from here on; those handed but not
    // sent are leased to it and return to the queue with its other leases below.
    ctx.queue.signals().remove_taker(&ctx.session_id);
    // Outcomes that arrived before the end are stored before the leases return (the
    // agent gets no ack for them on this socket and sends them again; storing twice
    // is harmless).
    while stores.next().await.is_some() {}
    published.tunnel().close();
    let hold_until = OffsetDateTime::now_utc() + ctx.owner_hold;
    match ctx.queue.release_session(&ctx.session_id, hold_until).await {
        Ok(0) => {}
        Ok(released) => tracing::info!(released, "leases returned to the queue"),
        Err(error) => tracing::error!(%error, "could not return leases; the reaper will"),
    }
    tracing::info!(?end, "agent session ended");
    end
}

/// Polls the work wake-ups; ready when any fired.
fn poll_wakes(wakes: &mut [Pin<Box<Notified<'_>>>], cx: &mut Context<'_>) -> Poll<()> {
    for wake in wakes {
        if wake.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
    }
    Poll::Pending
}

async fn run_loop<'a, S, R, E>(
    ctx: &'a SessionContext,
    published: &AgentSession,
    sink: &mut S,
    stream: &mut R,
    stores: &mut FuturesUnordered<PendingStore<'a>>,
    taker: Arc<Taker>,
    mut handed: mpsc::UnboundedReceiver<Box<Unit>>,
) -> SessionEnd
where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
    E: std::fmt::Display,
{
    let signals: Vec<Arc<Notify>> = ctx
        .function_systems
        .iter()
        .map(|s| ctx.queue.signals().work(s))
        .collect();
    let mut ledger = Ledger {
        taker,
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
    // Timers live across turns (re-arming a timer per frame is not free): the
    // silence timer is moved forward lazily when it fires early.
    let silence = tokio::time::sleep_until(last_seen + ctx.heartbeat * 2);
    tokio::pin!(silence);
    let poll = tokio::time::sleep(POLL_INTERVAL);
    tokio::pin!(poll);
    // The work wake-ups, enabled before each claim looks at the queue and kept
    // until one fires, so no wake-up between two claims is lost.
    let mut wakes: Vec<Pin<Box<Notified<'_>>>> = Vec::new();
    let mut acks: Vec<String> = Vec::new();
    let mut outbox = Outbox::default();
    loop {
        // Every branch only queues what it writes; see `Outbox`.
        if outbox.turn() {
            if frames::flush(sink).await.is_err() {
                return SessionEnd::AgentGone;
            }
            outbox.flushed();
        }
        if ledger.can_take() && (ledger.want_claim || wakes.is_empty()) {
            ledger.want_claim = false;
            wakes = signals.iter().map(|n| Box::pin(n.notified())).collect();
            for wake in &mut wakes {
                wake.as_mut().enable();
            }
            match Box::pin(send_work(ctx, &mut ledger, sink)).await {
                Ok(sent) => outbox.fed(sent),
                Err(()) => return SessionEnd::AgentGone,
            }
        }
        let can_take = ledger.can_take() && !wakes.is_empty();
        tokio::select! {
            biased;
            () = ctx.shutdown.cancelled() => {
                frames::close(sink, CloseReason::ShuttingDown).await;
                return SessionEnd::Closed(CloseReason::ShuttingDown);
            }
            // First, so stores handed in are started before more frames are read.
            Some(first) = stores.next(), if !stores.is_empty() => {
                // Every store that is done by now is acknowledged in one flush.
                // A returned credit is offered to new calls at once; queued ones
                // are claimed when their wake-up (or the poll) says so.
                let mut done = Some(first);
                while let Some((call_id, stored)) = done {
                    if ledger.in_flight.remove(&call_id) && !ledger.draining {
                        ledger.taker.give(1);
                    }
                    if stored {
                        acks.push(call_id);
                    }
                    done = stores.next().now_or_never().flatten();
                }
                ledger.publish();
                for call_id in acks.drain(..) {
                    if frames::feed(sink, &RelayMessage::Ack { call_id }).await.is_err() {
                        return SessionEnd::AgentGone;
                    }
                    outbox.fed(true);
                }
            }
            Some(unit) = handed.recv() => {
                if Box::pin(send_handed(ctx, &mut ledger, sink, unit, &mut handed)).await.is_err() {
                    return SessionEnd::AgentGone;
                }
                outbox.fed(true);
            }
            incoming = frames::read(stream) => {
                last_seen = Instant::now();
                match incoming {
                    Incoming::Message(message) => {
                        if let Err(end) = Box::pin(handle(ctx, &mut ledger, sink, stores, *message)).await {
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
            () = &mut silence => {
                let due = last_seen + ctx.heartbeat * 2;
                if Instant::now() < due {
                    silence.as_mut().reset(due);
                    continue;
                }
                tracing::warn!("agent silent for two heartbeat intervals");
                frames::close(sink, CloseReason::HeartbeatTimeout).await;
                return SessionEnd::Closed(CloseReason::HeartbeatTimeout);
            }
            _ = heartbeat.tick() => {
                if frames::send(sink, &RelayMessage::Heartbeat).await.is_err() {
                    return SessionEnd::AgentGone;
                }
                outbox.flushed();
            }
            Some(message) = outbound.control.recv() => {
                if Box::pin(write_tunnel(sink, Ordered::Message(message), &mut outbound)).await.is_err() {
                    return SessionEnd::AgentGone;
                }
                outbox.fed(true);
            }
            Some(item) = outbound.data.recv() => {
                if Box::pin(write_tunnel(sink, item, &mut outbound)).await.is_err() {
                    return SessionEnd::AgentGone;
                }
                outbox.fed(true);
            }
            () = std::future::poll_fn(|cx| poll_wakes(&mut wakes, cx)), if can_take => {
                wakes.clear();
                ledger.want_claim = true;
            }
            () = &mut poll, if can_take => {
                poll.as_mut().reset(Instant::now() + POLL_INTERVAL);
                ledger.want_claim = true;
            }
            // Last: only when nothing else is ready.
            flushed = frames::flush(sink), if outbox.dirty() => {
                if flushed.is_err() {
                    return SessionEnd::AgentGone;
                }
                outbox.flushed();
            }
        }
    }
}

/// Queues `first` and every pass-through frame already waiting behind it (at most
/// [`TUNNEL_BATCH`]); the loop flushes them.
async fn write_tunnel<S>(
    sink: &mut S,
    first: Ordered,
    outbound: &mut TunnelOutbound,
) -> Result<(), ()>
where
    S: Sink<Message> + Unpin,
{
    let mut next = Some(first);
    let mut written = 0;
    while let Some(item) = next.take() {
        let fed = match item {
            Ordered::Message(message) => frames::feed(sink, &message).await,
            Ordered::Chunk(frame) => frames::feed_chunk(sink, *frame).await,
        };
        fed.map_err(|_| ())?;
        written += 1;
        if written < TUNNEL_BATCH {
            next = match outbound.control.try_recv() {
                Ok(message) => Some(Ordered::Message(message)),
                Err(_) => outbound.data.try_recv().ok(),
            };
        }
    }
    Ok(())
}

/// Claims queued units for as many credits as the agent has free (at most
/// [`CLAIM_BATCH`]) and queues them on the socket; `Ok(true)` when it queued any
/// (the loop flushes them).
async fn send_work<S>(
    ctx: &SessionContext,
    ledger: &mut Ledger<'_>,
    sink: &mut S,
) -> Result<bool, ()>
where
    S: Sink<Message> + Unpin,
{
    let max = ledger.taker.take(CLAIM_BATCH);
    if max == 0 {
        return Ok(false);
    }
    let now = OffsetDateTime::now_utc();
    let until = now + ctx.lease;
    let units = match ctx
        .queue
        .claim(&ctx.function_systems, ctx.claimant(), max as usize, until)
        .await
    {
        Ok(units) => units,
        Err(error) => {
            tracing::warn!(%error, "claiming work failed");
            ledger.taker.give(max);
            return Ok(false);
        }
    };
    let claimed = u32::try_from(units.len()).unwrap_or(max).min(max);
    ledger.taker.give(max - claimed);
    // A full batch may have left more behind: look again next turn.
    ledger.want_claim = claimed == max;
    if units.is_empty() {
        return Ok(false);
    }
    for unit in units {
        if unit.in_doubt {
            tracing::info!(call_id = %unit.call_id, attempt = unit.attempt,
                "unit sent in doubt: an earlier attempt went to another agent");
        }
        feed_work(ledger, sink, encode(ctx, &unit)).await?;
    }
    ledger.publish();
    Ok(true)
}

/// Queues the units the queue handed to this session directly (their credits were
/// taken then): `first` and every one waiting behind it; the loop flushes them.
async fn send_handed<S>(
    ctx: &SessionContext,
    ledger: &mut Ledger<'_>,
    sink: &mut S,
    first: Box<Unit>,
    handed: &mut mpsc::UnboundedReceiver<Box<Unit>>,
) -> Result<(), ()>
where
    S: Sink<Message> + Unpin,
{
    feed_work(ledger, sink, encode(ctx, &first)).await?;
    for _ in 1..CLAIM_BATCH {
        let Ok(unit) = handed.try_recv() else {
            break;
        };
        feed_work(ledger, sink, encode(ctx, &unit)).await?;
    }
    ledger.publish();
    Ok(())
}

/// The work frame of `unit` for this session's agent, in its protocol version
/// (version 1 gets the deadline on the relay's clock).
fn encode(ctx: &SessionContext, unit: &Unit) -> WorkFrame {
    let now = OffsetDateTime::now_utc();
    let now_ms = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    WorkFrame::encode_for(ctx.hello.protocol, UnitRef::from(unit), now_ms)
}

/// Queues one unit's frame for the agent (flushed by the caller) and counts it in
/// flight.
async fn feed_work<S>(ledger: &mut Ledger<'_>, sink: &mut S, work: WorkFrame) -> Result<(), ()>
where
    S: Sink<Message> + Unpin,
{
    tracing::debug!(
        call_id = %work.call_id,
        attempt = work.attempt,
        "unit sent to agent"
    );
    ledger.in_flight.insert(work.call_id);
    frames::feed_text(sink, work.text).await.map_err(|_| ())
}

/// Handles one protocol message; `Err` ends the session. An outcome is handed to
/// the store without waiting: the loop acknowledges it (and returns its credit)
/// once stored, so the outcomes of many units share a queue commit.
async fn handle<'a, S>(
    ctx: &'a SessionContext,
    ledger: &mut Ledger<'_>,
    sink: &mut S,
    stores: &mut FuturesUnordered<PendingStore<'a>>,
    message: AgentMessage,
) -> Result<(), SessionEnd>
where
    S: Sink<Message> + Unpin,
{
    match message {
        AgentMessage::Credits { credits } => {
            ledger.taker.give(credits);
            ledger.draining = false;
            ledger.want_claim = true;
        }
        AgentMessage::Drain => {
            tracing::info!("agent draining");
            ledger.taker.take(u32::MAX);
            ledger.draining = true;
        }
        AgentMessage::Heartbeat => {}
        AgentMessage::Outcome {
            call_id,
            attempt,
            outcome,
        } => {
            let span = tracing::debug_span!("call", call_id = %call_id, attempt);
            stores.push(Box::pin(
                async move {
                    let stored = store_outcome(ctx, &call_id, attempt, outcome).await;
                    (call_id, stored)
                }
                .instrument(span),
            ));
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
/// there is nothing to store it in). A refused outcome is not acknowledged: an
/// honest agent keeps it and answers the call's next attempt with it.
async fn store_outcome(
    ctx: &SessionContext,
    call_id: &str,
    attempt: u32,
    outcome: Outcome,
) -> bool {
    match ctx
        .queue
        .complete(
            call_id,
            attempt,
            &ctx.session_id,
            &ctx.hello.agent_id,
            outcome,
        )
        .await
    {
        Ok(Completion::Stored) => {
            tracing::debug!("outcome stored");
            true
        }
        Ok(Completion::Requeued) => {
            tracing::info!("the agent did not start the unit before its deadline; queued again");
            true
        }
        Ok(Completion::Refused) => {
            ctx.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                systems = ?ctx.hello.systems,
                "outcome refused: this session does not hold the call's lease for that attempt"
            );
            false
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
