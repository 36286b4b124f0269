//! A session's units: claiming queued ones for the agent's free credits, sending
//! those the queue handed over directly, each encoded for the agent's protocol
//! version; and storing the outcomes the agent reports.

use axum::extract::ws::Message;
use futures_util::Sink;
use sapbridge_proto::{Outcome, Unit, UnitRef, WorkFrame};
use time::OffsetDateTime;

use super::dispatch::{Session, SessionContext, SessionEnd};
use super::frames;
use crate::queue::Completion;

/// The most units claimed in one queue operation (and sent in one turn).
const CLAIM_BATCH: u32 = 32;

impl<S, R> Session<'_, S, R>
where
    S: Sink<Message> + Unpin,
{
    /// Claims queued units for as many credits as the agent has free (at most
    /// [`CLAIM_BATCH`]) and queues them on the socket; `Ok(true)` when it queued
    /// any (the loop flushes them). A failed claim is logged and tried again on a
    /// later turn.
    pub(super) async fn claim(&mut self) -> Result<bool, SessionEnd> {
        let ctx = self.ctx;
        let max = self.taker.take(CLAIM_BATCH);
        if max == 0 {
            return Ok(false);
        }
        let until = OffsetDateTime::now_utc() + ctx.lease;
        let claimed = ctx
            .queue
            .claim(&ctx.function_systems, ctx.claimant(), max as usize, until)
            .await;
        let units = match claimed {
            Ok(units) => units,
            Err(error) => {
                tracing::warn!(%error, "claiming work failed");
                self.taker.give(max);
                return Ok(false);
            }
        };
        let claimed = u32::try_from(units.len()).unwrap_or(max).min(max);
        self.taker.give(max - claimed);
        // A full batch may have left more behind: look again next turn.
        self.want_claim = claimed == max;
        if units.is_empty() {
            return Ok(false);
        }
        for unit in units {
            if unit.in_doubt {
                tracing::info!(call_id = %unit.call_id, attempt = unit.attempt,
                    "unit sent in doubt: an earlier attempt went to another agent");
            }
            self.feed_work(encode(ctx, &unit)).await?;
        }
        self.publish();
        Ok(true)
    }

    /// Queues the units the queue handed to this session directly (their credits
    /// were taken then): `first` and every one waiting behind it; the loop flushes
    /// them.
    pub(super) async fn send_handed(&mut self, first: Box<Unit>) -> Result<(), SessionEnd> {
        let ctx = self.ctx;
        self.feed_work(encode(ctx, &first)).await?;
        for _ in 1..CLAIM_BATCH {
            let Ok(unit) = self.handed.try_recv() else {
                break;
            };
            self.feed_work(encode(ctx, &unit)).await?;
        }
        self.publish();
        Ok(())
    }

    /// Queues one unit's frame for the agent (flushed by the caller) and counts it
    /// in flight.
    async fn feed_work(&mut self, work: WorkFrame) -> Result<(), SessionEnd> {
        tracing::debug!(
            call_id = %work.call_id,
            attempt = work.attempt,
            "unit sent to agent"
        );
        self.in_flight.insert(work.call_id);
        frames::feed_text(&mut *self.sink, work.text)
            .await
            .map_err(|_| SessionEnd::AgentGone)
    }
}

/// The work frame of `unit` for this session's agent, in its protocol version
/// (version 1 gets the deadline on the relay's clock).
fn encode(ctx: &SessionContext, unit: &Unit) -> WorkFrame {
    let now = OffsetDateTime::now_utc();
    let now_ms = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    WorkFrame::encode_for(ctx.hello.protocol, UnitRef::from(unit), now_ms)
}

/// Stores an outcome; returns whether it may be acknowledged (it is stored, or
/// there is nothing to store it in). A refused outcome is not acknowledged: an
/// honest agent keeps it and answers the call's next attempt with it.
pub(super) async fn store_outcome(
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
