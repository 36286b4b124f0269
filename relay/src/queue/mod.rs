//! The durable call queue: the [`Queue`] trait every store implements, and the
//! records it holds.
//!
//! A call moves through explicit states:
//! `queued → leased{session, until} → succeeded | failed | expired | cancelled`.
//!
//! A lease is a deadline, not a subscription: heartbeats prove the agent's
//! connection is alive, not that the call makes progress. A lease whose `until`
//! passes without an outcome, or whose agent session ends, goes back to `queued`;
//! the next claim hands it out with the attempt number raised. The rules for who
//! may take such a call, and whose outcome counts, are one set of pure functions
//! here ([`CallRecord::claim_by`], [`CallRecord::judge_outcome`],
//! [`CallRecord::overdue`]) that every store applies:
//! - the call keeps its **holder** (the session and agent installation of its
//!   latest lease) after the lease ends. Only that session may report the
//!   outcome of that attempt; any other outcome is refused.
//! - the holder's agent is the only one whose journal knows whether the unit
//!   started: the call goes back to that agent (on a new session) without
//!   doubt, even past its TTL, so it can answer from its journal. Other agents get
//!   it only after the hold (`owner_hold`) and marked **in doubt** (they then run
//!   it again only where that is safe), and agents of protocol 1, which cannot be
//!   told, never do.
//! - a queued call past its TTL that no agent ever took expires (504); one that
//!   an agent took fails with `OUTCOME_UNKNOWN` once its hold is over, since it
//!   may or may not have run.
//!
//! The trait assumes neither SQLite nor PostgreSQL: methods are async, call ids are
//! strings, times are UTC. Every implementation fires the [`Signals`] it exposes:
//! work wake-ups when a call becomes claimable, and call wake-ups when a call
//! reaches a final state (in-process for the memory store; `LISTEN/NOTIFY` for a
//! shared database). Users also poll, so a missed signal only costs latency.
//!
//! Cancel safety: every method either completes its change or makes none, so
//! dropping a future mid-way leaves the store consistent. (A change handed to a
//! store's writer before the future was dropped still completes; its answer is lost.)
//!
//! Stores: [`memory`] (nothing survives a restart), [`sqlite`] (one file, group
//! commit; survives `kill -9`) and [`postgres`] (one database shared by any number
//! of relay replicas). [`open`] picks one from the [`QueueConfig`].

pub(crate) mod activity;
pub(crate) mod audit;
pub(crate) mod config;
#[cfg(test)]
mod contract;
pub(crate) mod keys;
mod kind;
mod lease;
pub(crate) mod listing;
pub(crate) mod memory;
pub(crate) mod postgres;
pub(crate) mod reaper;
mod signals;
pub(crate) mod sqlite;
#[cfg(test)]
mod throughput;
pub(crate) mod webhooks;

use std::sync::Arc;

use async_trait::async_trait;
use sapbridge_proto::{CallResult, CommitPolicy, ErrorGroup, FunctionCall, Outcome, Unit, UnitRef};
use time::OffsetDateTime;

pub(crate) use activity::Activity;
pub(crate) use audit::{AuditFilter, AuditRecord};
pub(crate) use config::{QueueConfig, StoreKind};
pub(crate) use keys::{CredentialKind, CredentialUse, StoredAgentToken, StoredKey};
pub(crate) use kind::{ActionStep, CallKind};
pub(crate) use lease::{
    Claimant, DEFAULT_OWNER_HOLD, Holder, OpenCall, Overdue, Verdict, claim_rule, judge_rule,
    lease_lapsed_outcome, millis_until, overdue_rule,
};
pub(crate) use listing::{CallCursor, CallFilter, StateFilter};
pub(crate) use signals::{CallEnd, CallWatch, Signals, Taker};
pub(crate) use webhooks::{Delivery, DeliveryFilter, DeliveryState, NewDelivery, Subscription};

/// Opens the store `config` names: an empty memory queue, the SQLite file
/// (created if missing; calls leased before a restart go back to the queue, held
/// for their agent for `owner_hold`), or the PostgreSQL database (its schema
/// created or migrated; leases stay, since other replicas' sessions are alive).
/// The SQLite file is opened on the blocking thread pool.
///
/// # Errors
/// [`QueueError`] when the SQLite file cannot be opened, is not a sapbridge queue,
/// or was written by a newer schema; when the database cannot be reached or
/// migrated.
pub(crate) async fn open(
    config: &QueueConfig,
    owner_hold: time::Duration,
) -> Result<Arc<dyn Queue>, QueueError> {
    match config.store {
        StoreKind::Memory => Ok(Arc::new(memory::MemoryQueue::new())),
        StoreKind::Sqlite => {
            let path = config.sqlite_path();
            let mut options = sqlite::SqliteOptions::new(config.durability);
            options.owner_hold = owner_hold;
            options.max_size_mib = config.max_size_mib;
            let queue =
                tokio::task::spawn_blocking(move || sqlite::SqliteQueue::open(&path, options))
                    .await
                    .map_err(|e| QueueError::Store(format!("opening task failed: {e}")))??;
            Ok(Arc::new(queue))
        }
        StoreKind::Postgres => {
            let url = config.url.as_ref().ok_or_else(|| {
                QueueError::Store("queue.url is required for the postgres store".into())
            })?;
            Ok(Arc::new(postgres::PostgresQueue::open(url).await?))
        }
    }
}

/// An idempotency key as presented by a client, scoped to its API key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct IdempotencyKey {
    /// The API key's name (keys of different clients never collide).
    pub(crate) scope: String,
    /// The `Idempotency-Key` header value.
    pub(crate) key: String,
}

/// A call to store.
#[derive(Debug, Clone)]
pub(crate) struct NewCall {
    /// The call id (also the SAP TID).
    pub(crate) id: String,
    /// The system it runs against.
    pub(crate) system: String,
    /// Function call or transaction.
    pub(crate) kind: CallKind,
    /// The calls of the unit.
    pub(crate) calls: Vec<FunctionCall>,
    /// What happens after the calls.
    pub(crate) commit: CommitPolicy,
    /// When it was accepted.
    pub(crate) submitted_at: OffsetDateTime,
    /// When it expires if no agent took it.
    pub(crate) expires_at: OffsetDateTime,
    /// The idempotency key and the fingerprint of the request it was first used with.
    pub(crate) idempotency: Option<(IdempotencyKey, String)>,
    /// The name of the API key that created the call (its owner); `None` only for
    /// calls stored before owners were recorded.
    pub(crate) owner: Option<String>,
    /// The W3C `traceparent` the agent gets with the unit (the relay's span of the
    /// client's trace), if any.
    pub(crate) trace: Option<String>,
    /// The webhook deliveries of its answer, stored with it (only when the call
    /// is created; a request that joins a call by its idempotency key adds none).
    pub(crate) webhooks: Vec<NewDelivery>,
}

impl NewCall {
    /// Takes the call's deliveries out, as stored at `now`.
    pub(crate) fn take_deliveries(&mut self, now: OffsetDateTime) -> Vec<Delivery> {
        std::mem::take(&mut self.webhooks)
            .into_iter()
            .map(|new| Delivery::new(new, &self.id, self.owner.as_deref(), &self.system, now))
            .collect()
    }
}

/// Where a call is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallState {
    /// Waiting for an agent.
    Queued,
    /// Handed to an agent session until `until` (a deadline: not renewed).
    Leased {
        /// The agent session holding it.
        session: String,
        /// When the lease ends unless renewed.
        until: OffsetDateTime,
    },
    /// The unit ran and succeeded (committed, for a transaction).
    Succeeded,
    /// The unit failed, was rolled back, or could not be run.
    Failed,
    /// No agent took it before its TTL, or its deadline passed at the agent.
    Expired,
    /// The client cancelled it while it was queued.
    Cancelled,
}

impl CallState {
    /// The state's name in API bodies and metrics.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Leased { .. } => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the call has reached its end.
    pub(crate) fn is_final(&self) -> bool {
        !matches!(self, Self::Queued | Self::Leased { .. })
    }

    /// The final state an outcome puts a call of policy `commit` in.
    pub(crate) fn from_outcome(commit: CommitPolicy, outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Failed { error } if error.group == ErrorGroup::Expired => Self::Expired,
            Outcome::Failed { .. } => Self::Failed,
            Outcome::Completed {
                results,
                transaction,
            } => {
                let all_ok =
                    !results.is_empty() && results.iter().all(|r| matches!(r, CallResult::Ok(_)));
                let ok = match commit {
                    CommitPolicy::None => all_ok,
                    // Judged by what the commit says: SAP committed the unit, so it
                    // succeeded, even when the agent could not report the calls'
                    // results (a redelivered unit that an earlier attempt on
                    // another agent ran, whose TID SAP reports committed).
                    CommitPolicy::CommitOnSuccess => {
                        transaction.as_ref().is_some_and(|t| t.committed)
                            && results.iter().all(|r| matches!(r, CallResult::Ok(_)))
                    }
                    CommitPolicy::Rollback => {
                        all_ok && transaction.as_ref().is_none_or(|t| t.failed_call.is_none())
                    }
                };
                if ok { Self::Succeeded } else { Self::Failed }
            }
        }
    }
}

/// A stored call.
#[derive(Debug, Clone)]
pub(crate) struct CallRecord {
    /// The call id.
    pub(crate) id: String,
    /// The system.
    pub(crate) system: String,
    /// Function call or transaction.
    pub(crate) kind: CallKind,
    /// The calls of the unit.
    pub(crate) calls: Vec<FunctionCall>,
    /// What happens after the calls.
    pub(crate) commit: CommitPolicy,
    /// Where the call is.
    pub(crate) state: CallState,
    /// How many times it was handed to an agent.
    pub(crate) attempts: u32,
    /// When it was accepted.
    pub(crate) submitted_at: OffsetDateTime,
    /// When it expires if no agent took it.
    pub(crate) expires_at: OffsetDateTime,
    /// When it reached its final state.
    pub(crate) completed_at: Option<OffsetDateTime>,
    /// The agent id that reported the outcome.
    pub(crate) agent: Option<String>,
    /// The outcome, once reported.
    pub(crate) outcome: Option<Outcome>,
    /// The idempotency key and request fingerprint, if the client sent one.
    pub(crate) idempotency: Option<(IdempotencyKey, String)>,
    /// The name of the API key that created the call; `None` for a call stored
    /// before owners were recorded.
    pub(crate) owner: Option<String>,
    /// The latest lease's holder, kept after the lease ended (see the module docs);
    /// `None` for a call no agent holds a claim on.
    pub(crate) holder: Option<Holder>,
    /// Until when a call whose lease ended without an outcome waits for its
    /// holder's agent before others may take it in doubt.
    pub(crate) hold_until: Option<OffsetDateTime>,
    /// The call's `traceparent` for the agent (see [`NewCall::trace`]).
    pub(crate) trace: Option<String>,
}

impl CallRecord {
    /// A new queued record.
    pub(crate) fn new(call: NewCall) -> Self {
        Self {
            id: call.id,
            system: call.system,
            kind: call.kind,
            calls: call.calls,
            commit: call.commit,
            state: CallState::Queued,
            attempts: 0,
            submitted_at: call.submitted_at,
            expires_at: call.expires_at,
            completed_at: None,
            agent: None,
            outcome: None,
            idempotency: call.idempotency,
            owner: call.owner,
            holder: None,
            hold_until: None,
            trace: call.trace,
        }
    }

    /// The unit of the current attempt, borrowed from the record, as sent at `now`
    /// (its deadline is the time remaining until the earlier of its TTL and its
    /// lease's end).
    fn unit_ref(&self, in_doubt: bool, now: OffsetDateTime) -> UnitRef<'_> {
        UnitRef {
            call_id: &self.id,
            attempt: self.attempts,
            system: &self.system,
            deadline_ms: Some(millis_until(self.start_by(), now)),
            in_doubt,
            calls: &self.calls,
            commit: self.commit,
            traceparent: self.trace.as_deref(),
        }
    }

    /// When the agent must have started the current attempt: the call's TTL, or
    /// its lease's end if that comes first.
    fn start_by(&self) -> OffsetDateTime {
        match &self.state {
            CallState::Leased { until, .. } => self.expires_at.min(*until),
            _ => self.expires_at,
        }
    }

    /// The unit to send to an agent for the current attempt.
    pub(crate) fn unit(&self, in_doubt: bool) -> Unit {
        self.unit_ref(in_doubt, OffsetDateTime::now_utc()).to_unit()
    }

    /// Whether `claimant` may take this queued call at `now`; `Some(in_doubt)`
    /// when it may. The rules are the module docs'.
    pub(crate) fn claim_by(&self, claimant: &Claimant<'_>, now: OffsetDateTime) -> Option<bool> {
        claim_rule(
            self.holder.as_ref(),
            self.hold_until,
            self.expires_at,
            claimant,
            now,
        )
    }

    /// What an outcome that `session` reported for `attempt` does to this call at
    /// `now`: only the session of the latest lease, for that lease's attempt, is
    /// believed (the relay trusts an agent only for its own leases).
    pub(crate) fn judge_outcome(
        &self,
        session: &str,
        attempt: u32,
        outcome: &Outcome,
        now: OffsetDateTime,
    ) -> Verdict {
        let open = (!self.state.is_final()).then(|| OpenCall {
            holder_session: self.holder.as_ref().map(|h| h.session.as_str()),
            attempts: self.attempts,
            commit: self.commit,
            expires_at: self.expires_at,
        });
        judge_rule(open, session, attempt, outcome, now)
    }

    /// What the reaper does with this queued call at `now`.
    pub(crate) fn overdue(&self, now: OffsetDateTime) -> Overdue {
        overdue_rule(self.holder.is_some(), self.hold_until, self.expires_at, now)
    }
}

/// An agent session connected to a relay, as that relay lists it to clients:
/// opaque to the queue, which only keeps it for the other relays sharing the
/// store (`GET /v1/systems` on any replica lists the agents of all).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ListedAgent {
    /// The systems it serves.
    pub(crate) systems: Vec<String>,
    /// The systems it forwards HTTP pass-through requests for.
    pub(crate) http_systems: Vec<String>,
    /// Its entry in each system's listing, by system.
    pub(crate) listing: serde_json::Map<String, serde_json::Value>,
}

/// Another relay replica sharing the store, with an agent session that forwards
/// HTTP pass-through requests for a system (see [`Queue::http_replicas`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerReplica {
    /// Its replica id.
    pub(crate) id: String,
    /// The base URL it takes forwarded requests at (its `advertise_url`).
    pub(crate) address: String,
}

/// The result of [`Queue::enqueue`].
#[derive(Debug, Clone)]
pub(crate) enum Enqueued {
    /// The call was stored and is queued.
    Created(Box<CallRecord>),
    /// The idempotency key was used before for the same request: this is that call.
    Existing(Box<CallRecord>),
    /// The idempotency key was used before for a different request.
    KeyMismatch,
}

/// The result of [`Queue::complete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Completion {
    /// The outcome was stored; the call is final now.
    Stored,
    /// The agent did not start the unit before its lease's deadline; the call is
    /// queued again (see [`Verdict::Requeue`]).
    Requeued,
    /// The call was already final (a stale or repeated outcome); nothing changed.
    AlreadyFinal,
    /// The reporting session does not hold the call's lease for that attempt (a
    /// stale attempt, a call never leased to it, another system's call): refused,
    /// nothing changed.
    Refused,
    /// No such call (purged, or never existed).
    Unknown,
}

/// The result of [`Queue::cancel`].
#[derive(Debug, Clone)]
pub(crate) enum Cancelled {
    /// The call was queued and is cancelled now.
    Done(Box<CallRecord>),
    /// The call is leased or final and was left alone.
    TooLate(Box<CallRecord>),
    /// No such call.
    Unknown,
}

/// What one reaper pass changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Reaped {
    /// Leases past their `until`, returned to the queue.
    pub(crate) requeued: usize,
    /// Queued calls past their TTL, now expired.
    pub(crate) expired: usize,
    /// Calls an agent took and never answered, past their TTL and hold, now
    /// failed with `OUTCOME_UNKNOWN`.
    pub(crate) failed_unknown: usize,
    /// Final calls past retention, deleted.
    pub(crate) purged: usize,
    /// Idempotency keys past their retention, forgotten (a new request with such a
    /// key creates a new call).
    pub(crate) keys_forgotten: usize,
    /// The calls this pass ended (expired, or failed with `OUTCOME_UNKNOWN`), for
    /// the audit log.
    pub(crate) ended: Vec<String>,
}

/// How long a store keeps what is finished; passed to every [`Queue::reap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retention {
    /// Final calls stay readable this long after `completed_at`.
    pub(crate) results: time::Duration,
    /// An idempotency key is enforced this long after its call was submitted (and
    /// always while its call is open). A call whose key is still enforced is not
    /// purged, so a retry always gets the stored outcome.
    pub(crate) idempotency: time::Duration,
    /// A call whose lease ended without an outcome is held this long for its
    /// agent (which knows whether it started) before others may take it in doubt.
    pub(crate) owner_hold: time::Duration,
    /// Audit records are kept this long after they happened.
    pub(crate) audit: time::Duration,
}

/// A system's queued calls, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SystemBacklog {
    /// The system.
    pub(crate) system: String,
    /// Its queued calls.
    pub(crate) queued: u64,
    /// When the oldest of them was accepted.
    pub(crate) oldest: OffsetDateTime,
    /// When the first of them to expire expires (calls may carry TTLs of their
    /// own, so it need not be the oldest).
    pub(crate) next_expiry: OffsetDateTime,
}

/// Counts of stored calls by state, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct QueueStats {
    /// Queued calls.
    pub(crate) queued: u64,
    /// Leased calls.
    pub(crate) leased: u64,
    /// Succeeded calls still retained.
    pub(crate) succeeded: u64,
    /// Failed calls still retained.
    pub(crate) failed: u64,
    /// Expired calls still retained.
    pub(crate) expired: u64,
    /// Cancelled calls still retained.
    pub(crate) cancelled: u64,
}

impl QueueStats {
    /// The counter of calls in `state`.
    pub(crate) fn count_mut(&mut self, state: &CallState) -> &mut u64 {
        match state {
            CallState::Queued => &mut self.queued,
            CallState::Leased { .. } => &mut self.leased,
            CallState::Succeeded => &mut self.succeeded,
            CallState::Failed => &mut self.failed,
            CallState::Expired => &mut self.expired,
            CallState::Cancelled => &mut self.cancelled,
        }
    }

    /// Counts `n` more calls (or, negative, fewer; never below zero) in `state`.
    pub(crate) fn add(&mut self, state: &CallState, n: i64) {
        let count = self.count_mut(state);
        *count = count.saturating_add_signed(n);
    }

    /// Moves one call from the count of `from` (none: a new call) to that of `to`
    /// (none: gone).
    pub(crate) fn moved(&mut self, from: Option<&CallState>, to: Option<&CallState>) {
        if let Some(from) = from {
            self.add(from, -1);
        }
        if let Some(to) = to {
            self.add(to, 1);
        }
    }
}

/// The store could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum QueueError {
    /// The backing store failed (I/O, a full disk, a locked or broken file).
    #[error("queue store: {0}")]
    Store(String),
    /// A stored call could not be read back (a bug, or a file edited by hand).
    #[error("queue store holds an unreadable call: {0}")]
    Corrupt(String),
    /// The store is shut down (its writer has stopped).
    #[error("queue store is closed")]
    Closed,
    /// The store has no room for the change (a full disk, or the SQLite file at
    /// its `max_size_mib`): nothing was written; it may work once space is free.
    #[error("queue store is full: {0}")]
    Full(String),
}

/// A durable queue of calls. See the module docs for states and signals.
#[async_trait]
pub(crate) trait Queue: Send + Sync + 'static {
    /// Stores a new call as queued, or returns the call its idempotency key already
    /// names. Fires the system's work signal when a call was created.
    async fn enqueue(&self, call: NewCall) -> Result<Enqueued, QueueError>;

    /// Leases up to `max` of the oldest queued calls of `systems` that `claimant`
    /// may take ([`CallRecord::claim_by`]) to its session until `until`, raising
    /// each call's attempt number; returns their units (in doubt where the rule says
    /// so). A store may lease fewer per claim (the SQLite store: at most 1,024, a
    /// session's most credits).
    async fn claim(
        &self,
        systems: &[String],
        claimant: Claimant<'_>,
        max: usize,
        until: OffsetDateTime,
    ) -> Result<Vec<Unit>, QueueError>;

    /// Judges an outcome that `session` (of agent `agent`) reported for attempt
    /// `attempt` ([`CallRecord::judge_outcome`]) and applies the verdict: stores it
    /// (the call is final; its signal fires), queues the call again, or changes
    /// nothing (refused, or already final: idempotent).
    async fn complete(
        &self,
        call_id: &str,
        attempt: u32,
        session: &str,
        agent: &str,
        outcome: Outcome,
    ) -> Result<Completion, QueueError>;

    /// Returns every call leased to `session` to the queue, held for its agent
    /// until `hold_until`; returns how many. Fires the work signals of their
    /// systems.
    async fn release_session(
        &self,
        session: &str,
        hold_until: OffsetDateTime,
    ) -> Result<usize, QueueError>;

    /// Cancels a call if it is still queued. Fires the call's signal when cancelled.
    async fn cancel(&self, call_id: &str) -> Result<Cancelled, QueueError>;

    /// The call, if stored.
    async fn get(&self, call_id: &str) -> Result<Option<CallRecord>, QueueError>;

    /// The calls `filter` selects, newest first (see [`listing`]), at most
    /// [`CallFilter::page_size`].
    async fn list_calls(&self, filter: CallFilter) -> Result<Vec<CallRecord>, QueueError>;

    /// One maintenance pass at `now`: requeue leases past `until` (held for their
    /// agent for `retention.owner_hold`), end queued calls past their TTL as
    /// [`CallRecord::overdue`] says, forget idempotency keys past their retention
    /// (of final calls only), delete final calls completed more than
    /// `retention.results` ago whose key is no longer enforced.
    async fn reap(&self, now: OffsetDateTime, retention: Retention) -> Result<Reaped, QueueError>;

    /// Counts of calls by state.
    async fn stats(&self) -> Result<QueueStats, QueueError>;

    /// The queued calls of each system that has any: how many, and when the
    /// oldest was accepted (for metrics).
    async fn queued_by_system(&self) -> Result<Vec<SystemBacklog>, QueueError>;

    /// The calls that finished at or after `since` per system and minute, of
    /// which errors, and the refusals the audit log holds since then (see
    /// [`activity`]).
    async fn activity(&self, since: OffsetDateTime) -> Result<Activity, QueueError>;

    /// Checks that the store answers (`/readyz`); [`QueueError::Full`] while it
    /// has no room for changes.
    async fn ping(&self) -> Result<(), QueueError>;

    /// How many changes the store refused for want of space since it opened
    /// (`sapbridge_store_full_total`).
    fn full_refusals(&self) -> u64 {
        0
    }

    /// Publishes the agent sessions connected to this relay (replacing what it
    /// published before) for the other relays sharing the store. A store of one
    /// relay keeps nothing.
    async fn publish_agents(&self, agents: Vec<ListedAgent>) -> Result<(), QueueError> {
        drop(agents);
        Ok(())
    }

    /// The agent sessions that other live relays sharing the store published (none
    /// for a store of one relay).
    async fn remote_agents(&self) -> Result<Vec<ListedAgent>, QueueError> {
        Ok(Vec::new())
    }

    /// This relay's id among the replicas sharing the store (`None` for a store
    /// of one relay).
    fn replica_id(&self) -> Option<&str> {
        None
    }

    /// Records the base URL at which this relay takes pass-through requests
    /// forwarded by the other replicas (kept with its liveness; a store of one
    /// relay keeps nothing).
    async fn advertise(&self, address: &str) -> Result<(), QueueError> {
        let _ = address;
        Ok(())
    }

    /// The other live replicas with an address and an agent session that forwards
    /// HTTP pass-through for `system`, the best first (none for a store of one
    /// relay).
    async fn http_replicas(&self, system: &str) -> Result<Vec<PeerReplica>, QueueError> {
        let _ = system;
        Ok(Vec::new())
    }

    /// This relay stops cleanly: the others forget it (and the agents it listed)
    /// at once instead of after its silence (a store of one relay does nothing).
    async fn leave(&self) -> Result<(), QueueError> {
        Ok(())
    }

    /// How many calls of `owner` are queued or leased, counting no further than
    /// `cap` (a key's `max_in_flight`).
    async fn open_calls_of(&self, owner: &str, cap: u64) -> Result<u64, QueueError>;

    /// How many calls of `system` are queued, counting no further than `cap`
    /// (`[queue] max_depth_per_system`).
    async fn queued_in(&self, system: &str, cap: u64) -> Result<u64, QueueError>;

    /// Appends audit records (numbering them in the order given) in one write.
    async fn append_audit(&self, records: Vec<AuditRecord>) -> Result<(), QueueError>;

    /// The audit records `filter` selects, in storing order, at most
    /// [`AuditFilter::page_size`].
    async fn audit(&self, filter: AuditFilter) -> Result<Vec<AuditRecord>, QueueError>;

    /// Deletes the audit records of before `before` (the audit retention); returns
    /// how many.
    async fn purge_audit(&self, before: OffsetDateTime) -> Result<usize, QueueError>;

    /// Leases up to `max` deliveries in `state` (waiting or pending) due at `now`
    /// (`next_at` passed, no lease beyond `now`) to this relay until `until`, the
    /// longest due first.
    async fn claim_deliveries(
        &self,
        state: DeliveryState,
        now: OffsetDateTime,
        until: OffsetDateTime,
        max: usize,
    ) -> Result<Vec<Delivery>, QueueError>;

    /// Stores what became of a claimed delivery (its state, attempts, times,
    /// receiver's status, error and payload) and ends its lease. A delivery that is
    /// gone (purged) is ignored.
    async fn save_delivery(&self, delivery: Delivery) -> Result<(), QueueError>;

    /// The deliveries `filter` selects, in storing order, at most
    /// [`DeliveryFilter::page_size`].
    async fn deliveries(&self, filter: DeliveryFilter) -> Result<Vec<Delivery>, QueueError>;

    /// The delivery `id`, if stored.
    async fn delivery(&self, id: &str) -> Result<Option<Delivery>, QueueError>;

    /// Makes a delivery whose payload is known due again at `now`, with fresh
    /// attempts until `give_up_at`; returns it as it is then. A waiting delivery
    /// (its call still runs) is returned unchanged; `None` if there is none.
    async fn redeliver(
        &self,
        id: &str,
        now: OffsetDateTime,
        give_up_at: OffsetDateTime,
    ) -> Result<Option<Delivery>, QueueError>;

    /// Deletes the delivered and failed deliveries stored before `before`;
    /// returns how many.
    async fn purge_deliveries(&self, before: OffsetDateTime) -> Result<usize, QueueError>;

    /// Stores a subscription.
    async fn add_subscription(&self, subscription: Subscription) -> Result<(), QueueError>;

    /// Deletes the subscription `id` (of `owner`, unless `None`: an operator);
    /// whether there was one.
    async fn remove_subscription(&self, owner: Option<&str>, id: &str) -> Result<bool, QueueError>;

    /// The subscriptions of `owner` (every key's for `None`), oldest first.
    async fn subscriptions(&self, owner: Option<&str>) -> Result<Vec<Subscription>, QueueError>;

    /// Stores an API key created through the API; `false` (nothing stored) when
    /// a key of that name is stored already, revoked or not.
    async fn add_key(&self, key: StoredKey) -> Result<bool, QueueError>;

    /// Revokes the stored key `name` at `at`; whether a key not yet revoked was
    /// there.
    async fn revoke_key(&self, name: &str, at: OffsetDateTime) -> Result<bool, QueueError>;

    /// Every stored key, revoked ones too, by name.
    async fn stored_keys(&self) -> Result<Vec<StoredKey>, QueueError>;

    /// Stores an agent token created through the API; `false` (nothing stored)
    /// when a token of that name is stored already, revoked or not.
    async fn add_agent_token(&self, token: StoredAgentToken) -> Result<bool, QueueError>;

    /// Revokes the stored agent token `name` at `at`; whether a token not yet
    /// revoked was there.
    async fn revoke_agent_token(&self, name: &str, at: OffsetDateTime) -> Result<bool, QueueError>;

    /// Every stored agent token, revoked ones too, by name.
    async fn stored_agent_tokens(&self) -> Result<Vec<StoredAgentToken>, QueueError>;

    /// Records when keys and tokens were used: each use replaces the one stored
    /// for its credential only if it is later (replicas write in any order).
    async fn record_uses(&self, uses: Vec<CredentialUse>) -> Result<(), QueueError>;

    /// The last use of every key and token that has one (in no set order).
    async fn credential_uses(&self) -> Result<Vec<CredentialUse>, QueueError>;

    /// The wake-up signals this store fires.
    fn signals(&self) -> &Arc<Signals>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use sapbridge_proto::{RfcError, TransactionOutcome};

    fn ok() -> CallResult {
        CallResult::Ok(Default::default())
    }

    #[test]
    fn states_follow_outcomes() {
        let plain = Outcome::Completed {
            results: vec![ok()],
            transaction: None,
        };
        assert_eq!(
            CallState::from_outcome(CommitPolicy::None, &plain),
            CallState::Succeeded
        );
        assert_eq!(
            CallState::from_outcome(CommitPolicy::CommitOnSuccess, &plain),
            CallState::Failed
        );
        let committed = Outcome::Completed {
            results: vec![ok(), ok()],
            transaction: Some(TransactionOutcome {
                committed: true,
                failed_call: None,
                reason: None,
                result: None,
            }),
        };
        assert_eq!(
            CallState::from_outcome(CommitPolicy::CommitOnSuccess, &committed),
            CallState::Succeeded
        );
        // Committed without the calls' results (the agent knows the TID committed,
        // not what the calls returned): the commit decides.
        let committed_without_results = Outcome::Completed {
            results: Vec::new(),
            transaction: Some(TransactionOutcome {
                committed: true,
                failed_call: None,
                reason: None,
                result: None,
            }),
        };
        assert_eq!(
            CallState::from_outcome(CommitPolicy::CommitOnSuccess, &committed_without_results),
            CallState::Succeeded
        );
        // Not committed, no results: failed, as before.
        let not_committed = Outcome::Completed {
            results: Vec::new(),
            transaction: Some(TransactionOutcome {
                committed: false,
                failed_call: None,
                reason: None,
                result: None,
            }),
        };
        assert_eq!(
            CallState::from_outcome(CommitPolicy::CommitOnSuccess, &not_committed),
            CallState::Failed
        );
        let expired = Outcome::Failed {
            error: RfcError::new(ErrorGroup::Expired, "EXPIRED", "too late"),
        };
        assert_eq!(
            CallState::from_outcome(CommitPolicy::None, &expired),
            CallState::Expired
        );
    }
}
