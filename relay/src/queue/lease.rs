//! Leases and what happens when they end: who may take a queued call, whose
//! outcome counts, and how a call an agent took and never answered ends. Pure
//! functions of a call's fields, so every store applies the same rules (the
//! memory store on its records, SQLite and PostgreSQL on their columns); the
//! module docs of [`crate::queue`] say the rules in words.

use sapbridge_proto::{CommitPolicy, ErrorGroup, Outcome, RfcError};
use time::OffsetDateTime;

use super::CallState;

/// How long a call whose lease ended without an outcome waits for its agent
/// unless configured otherwise (`owner_hold_secs`).
pub(crate) const DEFAULT_OWNER_HOLD: time::Duration = time::Duration::seconds(60);

/// Milliseconds from `now` to `at`, zero when `at` has passed.
pub(crate) fn millis_until(at: OffsetDateTime, now: OffsetDateTime) -> u64 {
    let ms = (at - now).whole_milliseconds();
    u64::try_from(ms.max(0)).unwrap_or(u64::MAX)
}

/// Who asks for work: an agent session, the agent installation it belongs to, and
/// whether it can be sent a unit in doubt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Claimant<'a> {
    /// The agent session.
    pub(crate) session: &'a str,
    /// The agent installation's id (from its hello); its journal is the record of
    /// the units it started.
    pub(crate) agent: &'a str,
    /// Whether it understands in-doubt units (protocol 2 and later).
    pub(crate) takes_in_doubt: bool,
}

/// The latest lease of a call: who holds it, kept after the lease ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Holder {
    /// The agent session the call was leased to.
    pub(crate) session: String,
    /// That session's agent installation.
    pub(crate) agent: String,
}

/// What to do with an outcome an agent session reported; see
/// [`CallRecord::judge_outcome`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Store it: the call ends in this state.
    Store(CallState),
    /// The agent did not start the unit before its lease's deadline: it goes back
    /// to the queue, for anyone, not in doubt.
    Requeue,
    /// The reporting session does not hold the call's lease for that attempt.
    Refuse,
    /// The call is final already; nothing changes.
    AlreadyFinal,
}

/// What the reaper does with a queued call past its TTL; see
/// [`CallRecord::overdue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overdue {
    /// Nothing yet.
    Wait,
    /// No agent ever took it: it expires.
    Expire,
    /// An agent took it and never answered: it fails, outcome unknown.
    FailUnknown,
}

/// The outcome the relay records for a call whose agent took it and never
/// answered (see [`Overdue::FailUnknown`]).
pub(crate) fn lease_lapsed_outcome(call_id: &str, agent: Option<&str>) -> Outcome {
    let agent = agent.unwrap_or("an agent");
    Outcome::Failed {
        error: RfcError::new(
            ErrorGroup::OutcomeUnknown,
            "LEASE_LAPSED",
            format!(
                "call {call_id} was handed to agent {agent}, which reported no outcome before \
                 its lease ended and did not come back before the call's TTL; it may or may \
                 not have run in SAP. Check in SAP whether its changes exist before \
                 resubmitting it under a new call id"
            ),
        ),
    }
}

/// [`CallRecord::claim_by`] on the fields it needs (a store that keeps them in
/// columns asks without building the record).
pub(crate) fn claim_rule(
    holder: Option<&Holder>,
    hold_until: Option<OffsetDateTime>,
    expires_at: OffsetDateTime,
    claimant: &Claimant<'_>,
    now: OffsetDateTime,
) -> Option<bool> {
    let Some(holder) = holder else {
        return (expires_at > now).then_some(false);
    };
    if holder.session == claimant.session {
        // The unit is at this session already (its lease ran out while it ran):
        // sending it again would only repeat it.
        return None;
    }
    if holder.agent == claimant.agent {
        // Its journal knows: even past the TTL it answers without running twice.
        return Some(false);
    }
    let held = hold_until.is_some_and(|until| until > now);
    (claimant.takes_in_doubt && !held && expires_at > now).then_some(true)
}

/// What [`judge_rule`] needs of a call that is not final.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenCall<'a> {
    /// The session of its latest lease, if any.
    pub(crate) holder_session: Option<&'a str>,
    /// Its attempt count (the latest lease's attempt).
    pub(crate) attempts: u32,
    /// Its commit policy.
    pub(crate) commit: CommitPolicy,
    /// Its TTL.
    pub(crate) expires_at: OffsetDateTime,
}

/// [`CallRecord::judge_outcome`] on the fields it needs; `call` is `None` for a
/// final call.
pub(crate) fn judge_rule(
    call: Option<OpenCall<'_>>,
    session: &str,
    attempt: u32,
    outcome: &Outcome,
    now: OffsetDateTime,
) -> Verdict {
    let Some(call) = call else {
        return Verdict::AlreadyFinal;
    };
    if call.holder_session != Some(session) || call.attempts != attempt {
        return Verdict::Refuse;
    }
    let not_started =
        matches!(outcome, Outcome::Failed { error } if error.group == ErrorGroup::Expired);
    if not_started && call.expires_at > now {
        return Verdict::Requeue;
    }
    Verdict::Store(CallState::from_outcome(call.commit, outcome))
}

/// [`CallRecord::overdue`] on the fields it needs.
pub(crate) fn overdue_rule(
    held_by_agent: bool,
    hold_until: Option<OffsetDateTime>,
    expires_at: OffsetDateTime,
    now: OffsetDateTime,
) -> Overdue {
    if expires_at > now {
        Overdue::Wait
    } else if !held_by_agent {
        Overdue::Expire
    } else if hold_until.is_some_and(|until| until > now) {
        Overdue::Wait
    } else {
        Overdue::FailUnknown
    }
}
