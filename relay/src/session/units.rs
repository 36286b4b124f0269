//! A session's units and outcomes, apart from the socket: claiming queued units
//! for the agent's free credits, encoding a unit for the agent's protocol version,
//! and storing an outcome the agent reports.

use sapbridge_proto::{CommitPolicy, ErrorGroup, Outcome, Unit, UnitRef, WorkFrame};
use time::OffsetDateTime;

use super::context::SessionContext;
use crate::queue::{CallState, Completion, Taker};

/// The most units claimed in one queue operation (and sent in one turn).
pub(super) const CLAIM_BATCH: u32 = 32;

/// Units a claim leased to the session.
pub(super) struct Claimed {
    /// The units, oldest first.
    pub(super) units: Vec<Unit>,
    /// Whether the claim took as many as it asked for: more may wait.
    pub(super) full: bool,
}

/// Claims queued units for as many credits as the agent has free in `taker` (at
/// most [`CLAIM_BATCH`]), keeping one credit per unit claimed. `None` when there
/// is no credit, or the claim failed (logged; its credits go back).
pub(super) async fn claim(ctx: &SessionContext, taker: &Taker) -> Option<Claimed> {
    let max = taker.take(CLAIM_BATCH);
    if max == 0 {
        return None;
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
            taker.give(max);
            return None;
        }
    };
    let taken = u32::try_from(units.len()).unwrap_or(max).min(max);
    taker.give(max - taken);
    Some(Claimed {
        units,
        full: taken == max,
    })
}

/// The work frame of `unit` for this session's agent, in its protocol version
/// (version 1 gets the deadline on the relay's clock).
pub(super) fn encode(ctx: &SessionContext, unit: &Unit) -> WorkFrame {
    let now = OffsetDateTime::now_utc();
    let now_ms = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    WorkFrame::encode_for(ctx.hello.protocol, UnitRef::from(unit), now_ms)
}

/// What became of an outcome handed to the store.
pub(super) enum Stored {
    /// Stored: the call is final with `state`; `refusal` is the agent's refusal
    /// (allowlist, read-only) when it refused the unit. Acknowledge it.
    Final {
        state: CallState,
        refusal: Option<ErrorGroup>,
    },
    /// Nothing to store it in (the call is final already, unknown, or queued again):
    /// acknowledge it.
    Ack,
    /// Refused (this session does not hold the call's lease for that attempt): no
    /// ack; an honest agent keeps it and answers the call's next attempt with it.
    Refused,
    /// The store could not write it (the database is away): keep it and write it
    /// again while the session lasts; no ack until it is stored.
    Failed(Box<Outcome>),
}

/// Stores an outcome of a unit with `commit` and says whether it may be
/// acknowledged.
pub(super) async fn store_outcome(
    ctx: &SessionContext,
    call_id: &str,
    attempt: u32,
    outcome: Outcome,
    commit: CommitPolicy,
) -> Stored {
    // The store takes the outcome; a copy is kept in case it cannot write it.
    let kept = outcome.clone();
    let state = CallState::from_outcome(commit, &outcome);
    let refusal = match &outcome {
        Outcome::Failed { error } if error.group == ErrorGroup::NotAllowed => Some(error.group),
        _ => None,
    };
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
            if let Some(audit) = &ctx.audit {
                audit.call_ended(call_id);
            }
            Stored::Final { state, refusal }
        }
        Ok(Completion::Requeued) => {
            tracing::info!("the agent did not start the unit before its deadline; queued again");
            Stored::Ack
        }
        Ok(Completion::Refused) => {
            ctx.metrics.outcomes_refused.inc();
            tracing::warn!(
                systems = ?ctx.hello.systems,
                "outcome refused: this session does not hold the call's lease for that attempt"
            );
            Stored::Refused
        }
        Ok(Completion::AlreadyFinal) => {
            tracing::info!("outcome ignored: the call is already final");
            Stored::Ack
        }
        Ok(Completion::Unknown) => {
            tracing::warn!("outcome for an unknown call ignored");
            Stored::Ack
        }
        Err(error) => {
            // No ack: the session writes it again (and the agent keeps it).
            tracing::error!(%error, "could not store outcome; will write it again");
            Stored::Failed(Box::new(kept))
        }
    }
}
