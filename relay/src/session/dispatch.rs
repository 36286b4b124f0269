//! The session loop after the welcome: hands queued units to the agent while it has
//! credits, stores the outcomes it reports (and acknowledges them), exchanges
//! heartbeats, and returns every unanswered lease to the queue when the socket ends.
//!
//! The session is a [`Session`]: its state is the struct's fields, and its loop
//! waits for the next event and handles it with the method of that event. A
//! method that ends the session returns the [`SessionEnd`].
//!
//! Credits: the hello's credits plus every `Credits` message; each `Work` sent uses
//! one; each `Outcome` of a unit sent on this session returns one; `Drain` drops them
//! to zero.
//!
//! Outcomes the store cannot write (its database away, say during a restart) are
//! kept and written again every [`STORE_RETRY`] while the session lasts; an
//! outcome is acknowledged only once stored, so the agent keeps it until then
//! (and sends it again on its next session if this one ends first).
//!
//! Trust: an outcome is believed only from the session holding that call's latest
//! lease for that attempt (the queue judges it, see [`crate::queue`]); anything
//! else is refused, logged, counted and not acknowledged. Leases are deadlines:
//! heartbeats keep the connection, not the leases. The loop never sends more units
//! than the agent has credits. The free credits live in the session's [`Taker`]:
//! while it has some, the queue leases a new call of a system with nothing queued
//! straight to the session in the enqueue itself and hands its unit over (direct
//! dispatch, see `queue/signals.rs`).
//!
//! Wake-ups: for queued calls (a backlog, calls returned by a lost session) the loop
//! waits on its systems' work signals (enabled before it looks at the queue, so no
//! wake-up is lost) with a polling fallback of [`POLL_INTERVAL`], and claims them.
//!
//! HTTP pass-through rides along outside the credits: the loop writes what the
//! session's [`crate::passthrough::Tunnel`] queues (request heads, window grants,
//! cancels, request body chunks) and hands it what the agent answers; when the
//! socket ends the tunnel is closed, failing its open streams.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ws::Message;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, Sink, Stream, StreamExt};
use sapbridge_proto::{
    AgentMessage, CloseReason, CommitPolicy, Outbox, Outcome, RelayMessage, Unit,
};
use time::OffsetDateTime;
use tokio::sync::{Notify, futures::Notified, mpsc};
use tokio::time::Instant;
use tracing::Instrument;

use super::context::SessionContext;
use super::frames::{self, Incoming};
use super::handshake::message_kind;
use super::units::{self, CLAIM_BATCH, Stored};
use crate::agents::AgentSession;
use crate::passthrough::{Ordered, TunnelOutbound};
use crate::queue::Taker;

/// How often an idle session looks at the queue even without a wake-up.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// The most credits a session holds, whatever the agent grants.
const MAX_CREDITS: u32 = 1024;
/// The most pass-through frames queued in one turn of the loop.
const TUNNEL_BATCH: usize = 64;

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SessionEnd {
    /// The agent closed (or the socket broke).
    #[error("the agent's socket ended")]
    AgentGone,
    /// The relay closed it, for this reason.
    #[error("closed by the relay: {0}")]
    Closed(CloseReason),
}

/// How long the session waits before writing again the outcomes the store could
/// not write (the database was away).
const STORE_RETRY: Duration = Duration::from_millis(500);

/// An outcome being stored: resolves to its call id, attempt and what became of it.
type PendingStore<'a> = Pin<Box<dyn Future<Output = (String, u32, Stored)> + Send + 'a>>;

/// An outcome the store could not write, kept to be written again.
struct Unstored {
    call_id: String,
    attempt: u32,
    outcome: Outcome,
}

/// A unit sent on this session and not answered yet: what its outcome is counted
/// under.
struct Sent {
    system: String,
    function: String,
    commit: CommitPolicy,
    at: Instant,
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
    let (taker, handed) = Taker::new(&ctx.session_id, &ctx.hello.agent_id, ctx.lease, MAX_CREDITS);
    taker.give(ctx.hello.credits);
    ctx.queue.signals().add_taker(&ctx.function_systems, &taker);
    let signals: Vec<Arc<Notify>> = ctx
        .function_systems
        .iter()
        .map(|s| ctx.queue.signals().work(s))
        .collect();
    let (end, mut stores) = match published.tunnel().take_outbound() {
        Some(outbound) => {
            let mut session = Session {
                ctx,
                published,
                sink,
                stream,
                taker,
                handed,
                outbound,
                stores: FuturesUnordered::new(),
                unstored: Vec::new(),
                in_flight: HashMap::new(),
                draining: false,
                want_claim: true,
                signals: &signals,
                wakes: Vec::new(),
                last_seen: Instant::now(),
                outbox: Outbox::default(),
                acks: Vec::new(),
            };
            let end = session.run().await;
            (end, session.stores)
        }
        None => {
            tracing::error!("the session's pass-through channels were taken twice");
            (SessionEnd::AgentGone, FuturesUnordered::new())
        }
    };
    // No new call is handed to this session from here on; those handed but not
    // sent are leased to it and return to the queue with its other leases below.
    ctx.queue.signals().remove_taker(&ctx.session_id);
    // Outcomes that arrived before the end are stored before the leases return (the
    // agent gets no ack for them on this socket and sends them again; storing twice
    // is harmless). Those the store could not write stay with the agent, which
    // sends them again on its next session.
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

/// One welcomed agent session: its socket, its bookkeeping and what it waits on.
struct Session<'a, S, R> {
    ctx: &'a SessionContext,
    /// Where the session's counts are published (`GET /v1/systems`).
    published: &'a AgentSession,
    sink: &'a mut S,
    stream: &'a mut R,
    /// The session's free credits, shared with the queue (direct dispatch).
    taker: Arc<Taker>,
    /// Units the queue handed over directly.
    handed: mpsc::UnboundedReceiver<Box<Unit>>,
    /// What the session's pass-through streams queue for the socket.
    outbound: TunnelOutbound,
    /// Outcomes being stored.
    stores: FuturesUnordered<PendingStore<'a>>,
    /// Outcomes the store could not write, written again after [`STORE_RETRY`]
    /// (their units stay in flight and unacknowledged until stored).
    unstored: Vec<Unstored>,
    /// Units sent and not answered on this session, by call id.
    in_flight: HashMap<String, Sent>,
    /// Whether the agent drains (takes no more units until it grants credits).
    draining: bool,
    /// Whether to look at the queue before waiting again.
    want_claim: bool,
    /// The work signals of the session's systems.
    signals: &'a [Arc<Notify>],
    /// Their wake-ups, enabled before each claim looks at the queue and kept until
    /// one fires, so no wake-up between two claims is lost.
    wakes: Vec<Pin<Box<Notified<'a>>>>,
    /// When the agent was last heard from.
    last_seen: Instant,
    /// Whether something was queued on the socket and not flushed yet.
    outbox: Outbox,
    /// Calls whose outcome is stored, to acknowledge.
    acks: Vec<String>,
}

impl<S, R> Session<'_, S, R> {
    /// Whether the agent can take another unit now.
    fn can_take(&self) -> bool {
        self.taker.credits() > 0 && !self.draining
    }

    /// Publishes the session's credits and units in flight.
    fn publish(&self) {
        let in_flight = u32::try_from(self.in_flight.len()).unwrap_or(u32::MAX);
        self.published.set_counts(self.taker.credits(), in_flight);
    }
}

impl<'a, S, R, E> Session<'a, S, R>
where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
    E: std::fmt::Display,
{
    /// Waits for the next event and handles it, until one ends the session.
    async fn run(&mut self) -> SessionEnd {
        let ctx = self.ctx;
        self.publish();
        let mut heartbeat = tokio::time::interval_at(Instant::now() + ctx.heartbeat, ctx.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Timers live across turns (re-arming a timer per frame is not free): the
        // silence timer is moved forward lazily when it fires early.
        let silence = tokio::time::sleep_until(self.last_seen + ctx.heartbeat * 2);
        tokio::pin!(silence);
        let poll = tokio::time::sleep(POLL_INTERVAL);
        tokio::pin!(poll);
        let retry = tokio::time::sleep(STORE_RETRY);
        tokio::pin!(retry);
        let mut retry_armed = false;
        loop {
            if let Err(end) = self.before_waiting().await {
                return end;
            }
            let can_take = self.can_take() && !self.wakes.is_empty();
            if !self.unstored.is_empty() && !retry_armed {
                retry.as_mut().reset(Instant::now() + STORE_RETRY);
                retry_armed = true;
            }
            let handled = tokio::select! {
                biased;
                () = ctx.shutdown.cancelled() => Err(self.close(CloseReason::ShuttingDown).await),
                () = ctx.hold.revoked.cancelled() => {
                    let system = ctx.hold.system_lost();
                    tracing::warn!(%system, "agent token revoked or narrowed: closing the session");
                    Err(self.close(CloseReason::SystemNotAllowed { system }).await)
                }
                // First, so stores handed in are started before more frames are read.
                Some(first) = self.stores.next(), if !self.stores.is_empty() => {
                    self.on_stored(first).await
                }
                Some(unit) = self.handed.recv() => Box::pin(self.on_handed(unit)).await,
                incoming = frames::read(&mut *self.stream) => Box::pin(self.on_incoming(incoming)).await,
                () = &mut silence => match self.on_silence() {
                    Some(due) => {
                        silence.as_mut().reset(due);
                        Ok(())
                    }
                    None => Err(self.close(CloseReason::HeartbeatTimeout).await),
                },
                _ = heartbeat.tick() => self.on_heartbeat().await,
                Some(message) = self.outbound.control.recv() => {
                    Box::pin(self.on_tunnel(Ordered::Message(message))).await
                }
                Some(item) = self.outbound.data.recv() => Box::pin(self.on_tunnel(item)).await,
                () = std::future::poll_fn(|cx| poll_wakes(&mut self.wakes, cx)), if can_take => {
                    self.on_wake();
                    Ok(())
                }
                () = &mut retry, if retry_armed => {
                    retry_armed = false;
                    self.store_again();
                    Ok(())
                }
                () = &mut poll, if can_take => {
                    poll.as_mut().reset(Instant::now() + POLL_INTERVAL);
                    self.want_claim = true;
                    Ok(())
                }
                // Last: only when nothing else is ready.
                flushed = frames::flush(&mut *self.sink), if self.outbox.dirty() => match flushed {
                    Ok(()) => {
                        self.outbox.flushed();
                        Ok(())
                    }
                    Err(_) => Err(SessionEnd::AgentGone),
                },
            };
            if let Err(end) = handled {
                return end;
            }
        }
    }

    /// What every turn does before it waits: flushes what earlier turns queued
    /// when it is time ([`Outbox`]), and claims queued units when the agent has
    /// credits and a wake-up (or the poll) said so, re-arming the wake-ups first.
    async fn before_waiting(&mut self) -> Result<(), SessionEnd> {
        // Every event only queues what it writes; see `Outbox`.
        if self.outbox.turn() {
            frames::flush(&mut *self.sink)
                .await
                .map_err(|_| SessionEnd::AgentGone)?;
            self.outbox.flushed();
        }
        if self.can_take() && (self.want_claim || self.wakes.is_empty()) {
            self.want_claim = false;
            self.wakes = self
                .signals
                .iter()
                .map(|n| Box::pin(n.notified()))
                .collect();
            for wake in &mut self.wakes {
                wake.as_mut().enable();
            }
            let sent = Box::pin(self.claim()).await?;
            self.outbox.fed(sent);
        }
        Ok(())
    }

    /// Outcomes were stored (`first` and every other one done by now): each gives
    /// its unit's credit back and is acknowledged, all in one flush. A returned
    /// credit is offered to new calls at once; queued ones are claimed when their
    /// wake-up (or the poll) says so.
    /// An outcome the store could not write is kept for [`Session::store_again`]
    /// instead: no ack, no credit back yet.
    async fn on_stored(&mut self, first: (String, u32, Stored)) -> Result<(), SessionEnd> {
        let mut done = Some(first);
        while let Some((call_id, attempt, stored)) = done {
            done = self.stores.next().now_or_never().flatten();
            let ack = match stored {
                Stored::Final { state, refusal } => {
                    self.count_final(&call_id, state, refusal);
                    true
                }
                Stored::Ack => true,
                Stored::Refused => false,
                Stored::Failed(outcome) => {
                    self.unstored.push(Unstored {
                        call_id,
                        attempt,
                        outcome: *outcome,
                    });
                    continue;
                }
            };
            if self.in_flight.remove(&call_id).is_some() && !self.draining {
                self.taker.give(1);
            }
            if ack {
                self.acks.push(call_id);
            }
        }
        self.publish();
        for call_id in self.acks.drain(..) {
            frames::feed(&mut *self.sink, &RelayMessage::Ack { call_id })
                .await
                .map_err(|_| SessionEnd::AgentGone)?;
            self.outbox.fed(true);
        }
        Ok(())
    }

    /// The queue handed over `first` (and maybe more behind it).
    async fn on_handed(&mut self, first: Box<Unit>) -> Result<(), SessionEnd> {
        self.send_handed(first).await?;
        self.outbox.fed(true);
        Ok(())
    }

    /// A frame arrived from the agent.
    async fn on_incoming(&mut self, incoming: Incoming) -> Result<(), SessionEnd> {
        self.last_seen = Instant::now();
        match incoming {
            Incoming::Message(message) => self.on_message(*message).await,
            Incoming::Chunk(chunk) => {
                self.published.tunnel().on_chunk(chunk);
                Ok(())
            }
            Incoming::Control => Ok(()),
            Incoming::Closed => Err(SessionEnd::AgentGone),
            Incoming::Bad(reason) => {
                tracing::warn!(%reason, "closing agent session");
                Err(self.close(reason).await)
            }
        }
    }

    /// A protocol message arrived. An outcome is handed to the store without
    /// waiting: the loop acknowledges it (and returns its credit) once stored, so
    /// the outcomes of many units share a queue commit.
    async fn on_message(&mut self, message: AgentMessage) -> Result<(), SessionEnd> {
        self.published.heard();
        match message {
            AgentMessage::Credits { credits } => {
                self.taker.give(credits);
                self.draining = false;
                self.want_claim = true;
            }
            AgentMessage::Drain => {
                tracing::info!("agent draining");
                self.taker.take(u32::MAX);
                self.draining = true;
            }
            AgentMessage::Heartbeat => {}
            AgentMessage::SystemStatus { systems } => {
                if let Err(detail) = self.published.hello.check_status(&systems) {
                    let reason = CloseReason::ProtocolError { detail };
                    tracing::warn!(%reason, "closing agent session");
                    return Err(self.close(reason).await);
                }
                for entry in &systems {
                    if let sapbridge_proto::LogonStatus::Blocked { reason, since } = &entry.logon {
                        tracing::warn!(system = %entry.system, %reason, %since,
                            "the agent stopped logging on to SAP: its password was refused");
                    }
                }
                self.published.set_status(systems);
            }
            AgentMessage::Outcome {
                call_id,
                attempt,
                outcome,
            } => self.store(call_id, attempt, outcome),
            AgentMessage::HttpResponse { response } => {
                self.published.tunnel().on_response(response)
            }
            AgentMessage::HttpError { stream_id, error } => {
                self.published.tunnel().on_error(stream_id, error);
            }
            AgentMessage::HttpWindow { stream_id, chunks } => {
                self.published.tunnel().on_window(stream_id, chunks);
            }
            AgentMessage::Close { reason } => {
                tracing::info!(%reason, "agent closed the session");
                return Err(SessionEnd::AgentGone);
            }
            other @ AgentMessage::Hello { .. } => {
                let reason = CloseReason::ProtocolError {
                    detail: format!("unexpected {} after the handshake", message_kind(&other)),
                };
                return Err(self.close(reason).await);
            }
        }
        Ok(())
    }

    /// Counts the outcome of unit `call_id` (sent on this session) that made its
    /// call final.
    fn count_final(
        &self,
        call_id: &str,
        state: crate::queue::CallState,
        refusal: Option<sapbridge_proto::ErrorGroup>,
    ) {
        let Some(sent) = self.in_flight.get(call_id) else {
            return;
        };
        let metrics = &self.ctx.metrics;
        metrics.call_finished(&sent.system, &sent.function, state.as_str());
        metrics
            .executing_seconds
            .get_or_create(&crate::metrics::system_labels(&sent.system))
            .observe(sent.at.elapsed().as_secs_f64());
        if let Some(group) = refusal {
            metrics
                .agent_refusals
                .get_or_create(&crate::metrics::RefusalLabels {
                    system: sent.system.clone(),
                    reason: group.as_str().to_owned(),
                })
                .inc();
        }
    }

    /// Hands an outcome to the store without waiting (see [`Session::on_stored`]).
    fn store(&mut self, call_id: String, attempt: u32, outcome: Outcome) {
        let ctx = self.ctx;
        // A unit not sent on this session is judged by the store (and refused).
        let commit = self
            .in_flight
            .get(&call_id)
            .map_or(CommitPolicy::None, |sent| sent.commit);
        let span = tracing::debug_span!("call", call_id = %call_id, attempt);
        self.stores.push(Box::pin(
            async move {
                let stored = units::store_outcome(ctx, &call_id, attempt, outcome, commit).await;
                (call_id, attempt, stored)
            }
            .instrument(span),
        ));
    }

    /// Writes again the outcomes the store could not write before.
    fn store_again(&mut self) {
        tracing::info!(
            outcomes = self.unstored.len(),
            "writing again the outcomes the store could not write"
        );
        for Unstored {
            call_id,
            attempt,
            outcome,
        } in std::mem::take(&mut self.unstored)
        {
            self.store(call_id, attempt, outcome);
        }
    }

    /// The silence timer fired: when to look again if the agent was heard from
    /// since it was set, `None` when it has been silent for two heartbeat
    /// intervals.
    fn on_silence(&self) -> Option<Instant> {
        let due = self.last_seen + self.ctx.heartbeat * 2;
        if Instant::now() < due {
            return Some(due);
        }
        tracing::warn!("agent silent for two heartbeat intervals");
        None
    }

    /// Time for a heartbeat.
    async fn on_heartbeat(&mut self) -> Result<(), SessionEnd> {
        frames::send(&mut *self.sink, &RelayMessage::Heartbeat)
            .await
            .map_err(|_| SessionEnd::AgentGone)?;
        self.outbox.flushed();
        // A connected agent keeps using its token (written at most once a minute).
        if let Some(used) = self.ctx.hold.used() {
            crate::last_used::write(&self.ctx.queue, used);
        }
        Ok(())
    }

    /// A pass-through stream queued `first` for the socket: it is written with
    /// every pass-through frame already waiting behind it (at most
    /// [`TUNNEL_BATCH`]); the loop flushes them.
    async fn on_tunnel(&mut self, first: Ordered) -> Result<(), SessionEnd> {
        let mut next = Some(first);
        let mut written = 0;
        while let Some(item) = next.take() {
            let fed = match item {
                Ordered::Message(message) => frames::feed(&mut *self.sink, &message).await,
                Ordered::Chunk(frame) => frames::feed_chunk(&mut *self.sink, *frame).await,
            };
            fed.map_err(|_| SessionEnd::AgentGone)?;
            written += 1;
            if written < TUNNEL_BATCH {
                next = match self.outbound.control.try_recv() {
                    Ok(message) => Some(Ordered::Message(message)),
                    Err(_) => self.outbound.data.try_recv().ok(),
                };
            }
        }
        self.outbox.fed(true);
        Ok(())
    }

    /// A work signal fired: look at the queue (the wake-ups are armed anew).
    fn on_wake(&mut self) {
        self.wakes.clear();
        self.want_claim = true;
    }

    /// Claims queued units for as many credits as the agent has free and queues
    /// them on the socket; `Ok(true)` when it queued any (the loop flushes them).
    async fn claim(&mut self) -> Result<bool, SessionEnd> {
        let ctx = self.ctx;
        let Some(claimed) = units::claim(ctx, &self.taker).await else {
            return Ok(false);
        };
        // A full batch may have left more behind: look again next turn.
        self.want_claim = claimed.full;
        if claimed.units.is_empty() {
            return Ok(false);
        }
        for unit in claimed.units {
            if unit.in_doubt {
                tracing::info!(call_id = %unit.call_id, attempt = unit.attempt,
                    "unit sent in doubt: an earlier attempt went to another agent");
            }
            self.feed_work(&unit).await?;
        }
        self.publish();
        Ok(true)
    }

    /// Queues the units the queue handed to this session directly (their credits
    /// were taken then): `first` and every one waiting behind it; the loop flushes
    /// them.
    async fn send_handed(&mut self, first: Box<Unit>) -> Result<(), SessionEnd> {
        self.feed_work(&first).await?;
        for _ in 1..CLAIM_BATCH {
            let Ok(unit) = self.handed.try_recv() else {
                break;
            };
            self.feed_work(&unit).await?;
        }
        self.publish();
        Ok(())
    }

    /// Queues one unit's frame for the agent (flushed by the caller) and counts it
    /// in flight.
    async fn feed_work(&mut self, unit: &Unit) -> Result<(), SessionEnd> {
        let work = units::encode(self.ctx, unit);
        tracing::debug!(
            call_id = %work.call_id,
            attempt = work.attempt,
            "unit sent to agent"
        );
        let queued_for = crate::ids::call_id_time(&unit.call_id)
            .map(|at| (OffsetDateTime::now_utc() - at).unsigned_abs());
        self.ctx
            .metrics
            .unit_sent(&unit.system, unit.attempt, queued_for);
        let function = unit.calls.first().map_or("", |c| c.function.as_str());
        self.in_flight.insert(
            work.call_id,
            Sent {
                system: unit.system.clone(),
                function: function.to_owned(),
                commit: unit.commit,
                at: Instant::now(),
            },
        );
        frames::feed_text(&mut *self.sink, work.text)
            .await
            .map_err(|_| SessionEnd::AgentGone)
    }

    /// Closes the socket with `reason`; the session ends with it.
    async fn close(&mut self, reason: CloseReason) -> SessionEnd {
        frames::close(&mut *self.sink, reason.clone()).await;
        SessionEnd::Closed(reason)
    }
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
