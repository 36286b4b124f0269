//! The in-memory [`Queue`]: one mutex over all calls, FIFO order per system.
//!
//! Nothing survives a restart; it serves tests and a relay that may lose pending calls.
//! The lock is a `std` mutex held only for map operations, never across an await.
//!
//! Nothing walks every retained call while holding the lock: the counts by state
//! are kept as calls change state, and the reaper works from indexes of what it
//! may have to do (leases, queued calls, final calls by completion time, keys by
//! submission time), so a pass costs what it finds to do, not what is retained
//! (results are retained 7 days by default: a walk of all of them, twice a
//! second, would slow every queue operation more with each call served).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use sapbridge_proto::{Outcome, Unit};
use time::OffsetDateTime;

use super::activity::{self, Activity};
use super::{
    AuditFilter, AuditRecord, CallEnd, CallFilter, CallRecord, CallState, Cancelled, Claimant,
    Completion, Delivery, DeliveryFilter, DeliveryState, Enqueued, Holder, IdempotencyKey, NewCall,
    Overdue, Queue, QueueError, QueueStats, Reaped, Retention, Signals, Subscription,
    SystemBacklog, Verdict, lease_lapsed_outcome,
};

/// The in-memory queue.
#[derive(Debug, Default)]
pub(crate) struct MemoryQueue {
    inner: Mutex<Inner>,
    signals: Arc<Signals>,
    /// How many of the next outcomes to refuse with a store error (a database
    /// that is away), for the session's tests.
    #[cfg(test)]
    failing_completes: std::sync::atomic::AtomicU32,
}

#[derive(Debug, Default)]
struct Inner {
    /// Every stored call by id, with its enqueue sequence number.
    calls: HashMap<String, (u64, CallRecord)>,
    /// Queued call ids per system, by sequence number (oldest first).
    queued: HashMap<String, BTreeMap<u64, String>>,
    /// Leased call ids per agent session.
    leases: HashMap<String, HashSet<String>>,
    /// Call ids by idempotency key.
    idempotency: HashMap<IdempotencyKey, String>,
    /// Final calls by completion time (then sequence): purged from the front.
    completed: BTreeMap<(OffsetDateTime, u64), String>,
    /// Idempotency keys by their call's submission time (then sequence):
    /// forgotten from the front.
    keyed: BTreeMap<(OffsetDateTime, u64), IdempotencyKey>,
    /// Stored call ids by submission time (then id): the listing walks it from
    /// the back, newest first.
    submitted: std::collections::BTreeSet<(OffsetDateTime, String)>,
    /// Stored calls by state.
    counts: QueueStats,
    next_seq: u64,
    /// The audit log, in storing order.
    audit: std::collections::VecDeque<AuditRecord>,
    next_audit: i64,
    /// Webhook deliveries by number, with the end of each one's lease.
    deliveries: BTreeMap<i64, (Delivery, Option<OffsetDateTime>)>,
    /// Delivery numbers by id.
    delivery_ids: HashMap<String, i64>,
    next_delivery: i64,
    /// Webhook subscriptions, oldest first.
    subscriptions: Vec<Subscription>,
    /// API keys created through the API, by name.
    keys: std::collections::BTreeMap<String, super::StoredKey>,
    /// Agent tokens created through the API, by name.
    agent_tokens: BTreeMap<String, super::StoredAgentToken>,
    /// The last use of keys and tokens, by kind and name.
    uses: BTreeMap<(super::CredentialKind, String), OffsetDateTime>,
}

impl Inner {
    /// Stores the deliveries of a call being created.
    fn add_deliveries(&mut self, deliveries: Vec<Delivery>) {
        for mut delivery in deliveries {
            self.next_delivery += 1;
            delivery.seq = self.next_delivery;
            self.delivery_ids.insert(delivery.id.clone(), delivery.seq);
            self.deliveries.insert(delivery.seq, (delivery, None));
        }
    }

    fn delivery_mut(&mut self, id: &str) -> Option<&mut (Delivery, Option<OffsetDateTime>)> {
        let seq = self.delivery_ids.get(id)?;
        self.deliveries.get_mut(seq)
    }
}

impl MemoryQueue {
    /// An empty queue.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Makes the next `n` outcomes fail with a store error, as a database that is
    /// away would.
    #[cfg(test)]
    pub(crate) fn fail_next_completes(&self, n: u32) {
        self.failing_completes
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    /// Puts a leased call back in its system's queue, held for its agent until
    /// `hold_until` (the holder stays).
    fn requeue(&mut self, call_id: &str, hold_until: OffsetDateTime) -> Option<String> {
        let (seq, record) = self.calls.get_mut(call_id)?;
        if let CallState::Leased { session, .. } = &record.state {
            record.hold_until = Some(hold_until);
            if let Some(set) = self.leases.get_mut(session) {
                set.remove(call_id);
                if set.is_empty() {
                    self.leases.remove(session);
                }
            }
            self.counts
                .moved(Some(&record.state), Some(&CallState::Queued));
            record.state = CallState::Queued;
            self.queued
                .entry(record.system.clone())
                .or_default()
                .insert(*seq, call_id.to_owned());
            return Some(record.system.clone());
        }
        None
    }

    /// Takes a call out of the queue/lease indexes and gives it a final state.
    fn finish(&mut self, call_id: &str, state: CallState, now: OffsetDateTime) {
        let Some((seq, record)) = self.calls.get_mut(call_id) else {
            return;
        };
        match &record.state {
            CallState::Queued => {
                if let Some(q) = self.queued.get_mut(&record.system) {
                    q.remove(seq);
                }
            }
            CallState::Leased { session, .. } => {
                if let Some(set) = self.leases.get_mut(session) {
                    set.remove(call_id);
                    if set.is_empty() {
                        self.leases.remove(session);
                    }
                }
            }
            _ => {}
        }
        self.counts.moved(Some(&record.state), Some(&state));
        record.state = state;
        record.completed_at = Some(now);
        self.completed.insert((now, *seq), call_id.to_owned());
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn enqueue(&self, mut call: NewCall) -> Result<Enqueued, QueueError> {
        let system = call.system.clone();
        let mut inner = self.lock();
        if let Some((key, fingerprint)) = &call.idempotency {
            let existing = inner
                .idempotency
                .get(key)
                .and_then(|id| inner.calls.get(id))
                .map(|(_, record)| record);
            if let Some(record) = existing {
                let same = record
                    .idempotency
                    .as_ref()
                    .is_some_and(|(_, f)| f == fingerprint);
                return Ok(if same {
                    Enqueued::Existing(Box::new(record.clone()))
                } else {
                    Enqueued::KeyMismatch
                });
            }
            inner.idempotency.insert(key.clone(), call.id.clone());
        }
        let deliveries = call.take_deliveries(OffsetDateTime::now_utc());
        inner.add_deliveries(deliveries);
        let mut record = CallRecord::new(call);
        let seq = inner.next_seq;
        inner.next_seq += 1;
        if let Some((key, _)) = &record.idempotency {
            inner.keyed.insert((record.submitted_at, seq), key.clone());
        }
        // Straight to a session with a free credit, unless older calls wait.
        let older = inner.queued.get(&system).is_some_and(|q| !q.is_empty());
        let taker = match older {
            true => None,
            false => self.signals.pick_taker(&system),
        };
        match &taker {
            Some(taker) => {
                record.state = CallState::Leased {
                    session: taker.session().to_owned(),
                    until: taker.lease_until(OffsetDateTime::now_utc()),
                };
                record.holder = Some(taker.holder());
                record.attempts = 1;
                inner
                    .leases
                    .entry(taker.session().to_owned())
                    .or_default()
                    .insert(record.id.clone());
            }
            None => {
                inner
                    .queued
                    .entry(record.system.clone())
                    .or_default()
                    .insert(seq, record.id.clone());
            }
        }
        inner.counts.moved(None, Some(&record.state));
        inner
            .submitted
            .insert((record.submitted_at, record.id.clone()));
        inner.calls.insert(record.id.clone(), (seq, record.clone()));
        drop(inner);
        match taker {
            Some(taker) => taker.hand_over(record.unit(false)),
            None => self.signals.work_available(&system),
        }
        Ok(Enqueued::Created(Box::new(record)))
    }

    async fn claim(
        &self,
        systems: &[String],
        claimant: Claimant<'_>,
        max: usize,
        until: OffsetDateTime,
    ) -> Result<Vec<Unit>, QueueError> {
        let now = OffsetDateTime::now_utc();
        let mut guard = self.lock();
        let inner = &mut *guard;
        // The oldest calls over all of the session's systems that it may take
        // (held and in-doubt calls it may not take stay where they are).
        let mut chosen: Vec<(u64, String, bool)> = Vec::new();
        for system in systems {
            let Some(queue) = inner.queued.get(system) else {
                continue;
            };
            let mine = queue.iter().filter_map(|(seq, id)| {
                let (_, record) = inner.calls.get(id)?;
                let in_doubt = record.claim_by(&claimant, now)?;
                Some((*seq, id.clone(), in_doubt))
            });
            chosen.extend(mine.take(max));
        }
        chosen.sort_unstable_by_key(|(seq, _, _)| *seq);
        chosen.truncate(max);
        let mut units = Vec::with_capacity(chosen.len());
        for (seq, call_id, in_doubt) in chosen {
            let Some((_, record)) = inner.calls.get_mut(&call_id) else {
                continue;
            };
            if let Some(queue) = inner.queued.get_mut(&record.system) {
                queue.remove(&seq);
            }
            let leased = CallState::Leased {
                session: claimant.session.to_owned(),
                until,
            };
            inner.counts.moved(Some(&record.state), Some(&leased));
            record.state = leased;
            record.attempts += 1;
            record.holder = Some(Holder {
                session: claimant.session.to_owned(),
                agent: claimant.agent.to_owned(),
            });
            record.hold_until = None;
            units.push(record.unit(in_doubt));
            inner
                .leases
                .entry(claimant.session.to_owned())
                .or_default()
                .insert(call_id);
        }
        Ok(units)
    }

    async fn complete(
        &self,
        call_id: &str,
        attempt: u32,
        session: &str,
        agent: &str,
        outcome: Outcome,
    ) -> Result<Completion, QueueError> {
        #[cfg(test)]
        {
            use std::sync::atomic::Ordering::SeqCst;
            let failing = self
                .failing_completes
                .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1));
            if failing.is_ok() {
                return Err(QueueError::Store("the database is away (test)".into()));
            }
        }
        let now = OffsetDateTime::now_utc();
        let mut inner = self.lock();
        let Some((_, record)) = inner.calls.get_mut(call_id) else {
            return Ok(Completion::Unknown);
        };
        let state = match record.judge_outcome(session, attempt, &outcome, now) {
            Verdict::AlreadyFinal => return Ok(Completion::AlreadyFinal),
            Verdict::Refuse => return Ok(Completion::Refused),
            Verdict::Requeue => {
                // Not started: back to the queue for anyone, not in doubt.
                let system = record.system.clone();
                inner.requeue(call_id, now);
                if let Some((_, record)) = inner.calls.get_mut(call_id) {
                    record.holder = None;
                    record.hold_until = None;
                }
                drop(inner);
                self.signals.work_available(&system);
                return Ok(Completion::Requeued);
            }
            Verdict::Store(state) => state,
        };
        let end = CallEnd {
            state: state.clone(),
            attempts: record.attempts,
            completed_at: now,
            agent: Some(agent.to_owned()),
            outcome: Some(outcome.clone()),
        };
        record.outcome = Some(outcome);
        record.agent = Some(agent.to_owned());
        inner.finish(call_id, state, now);
        drop(inner);
        self.signals.call_ended(call_id, end);
        Ok(Completion::Stored)
    }

    async fn release_session(
        &self,
        session: &str,
        hold_until: OffsetDateTime,
    ) -> Result<usize, QueueError> {
        let mut inner = self.lock();
        let ids: Vec<String> = inner
            .leases
            .get(session)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let systems: HashSet<String> = ids
            .iter()
            .filter_map(|id| inner.requeue(id, hold_until))
            .collect();
        drop(inner);
        for system in &systems {
            self.signals.work_available(system);
        }
        Ok(ids.len())
    }

    async fn cancel(&self, call_id: &str) -> Result<Cancelled, QueueError> {
        let now = OffsetDateTime::now_utc();
        let mut inner = self.lock();
        let Some((_, record)) = inner.calls.get(call_id) else {
            return Ok(Cancelled::Unknown);
        };
        if record.state != CallState::Queued {
            return Ok(Cancelled::TooLate(Box::new(record.clone())));
        }
        inner.finish(call_id, CallState::Cancelled, now);
        let record = inner.calls.get(call_id).map(|(_, r)| r.clone());
        drop(inner);
        self.signals.call_finished(call_id);
        Ok(record.map_or(Cancelled::Unknown, |r| Cancelled::Done(Box::new(r))))
    }

    async fn get(&self, call_id: &str) -> Result<Option<CallRecord>, QueueError> {
        Ok(self.lock().calls.get(call_id).map(|(_, r)| r.clone()))
    }

    async fn list_calls(&self, filter: CallFilter) -> Result<Vec<CallRecord>, QueueError> {
        // An empty range (a cursor before `since`) would make `range` panic.
        if let (Some(since), Some(c)) = (filter.since, &filter.after)
            && since > c.submitted_at
        {
            return Ok(Vec::new());
        }
        let inner = self.lock();
        let upper = match &filter.after {
            Some(c) => std::ops::Bound::Excluded((c.submitted_at, c.id.clone())),
            None => std::ops::Bound::Unbounded,
        };
        let lower = match filter.since {
            Some(t) => std::ops::Bound::Included((t, String::new())),
            None => std::ops::Bound::Unbounded,
        };
        Ok(inner
            .submitted
            .range((lower, upper))
            .rev()
            .filter_map(|(_, id)| inner.calls.get(id).map(|(_, r)| r))
            .filter(|r| filter.matches(r))
            .take(filter.page_size())
            .cloned()
            .collect())
    }

    async fn reap(&self, now: OffsetDateTime, retention: Retention) -> Result<Reaped, QueueError> {
        let mut reaped = Reaped::default();
        let mut guard = self.lock();
        let inner = &mut *guard;
        let lapsed: Vec<String> = inner
            .leases
            .values()
            .flatten()
            .filter(|id| {
                inner.calls.get(*id).is_some_and(
                    |(_, r)| matches!(r.state, CallState::Leased { until, .. } if until <= now),
                )
            })
            .cloned()
            .collect();
        let mut woken_systems = HashSet::new();
        for id in lapsed {
            if let Some(system) = inner.requeue(&id, now + retention.owner_hold) {
                woken_systems.insert(system);
                reaped.requeued += 1;
            }
        }
        let overdue: Vec<(String, Overdue)> = inner
            .queued
            .values()
            .flat_map(BTreeMap::values)
            .filter_map(|id| {
                let (_, record) = inner.calls.get(id)?;
                match record.overdue(now) {
                    Overdue::Wait => None,
                    verdict => Some((id.clone(), verdict)),
                }
            })
            .collect();
        // Keys of final calls submitted before the key retention; an open call's
        // key stays enforced whatever its age.
        let mut forget = Vec::new();
        for ((submitted, seq), key) in &inner.keyed {
            if *submitted + retention.idempotency > now {
                break;
            }
            let id = inner.idempotency.get(key);
            let open = id
                .and_then(|id| inner.calls.get(id))
                .is_some_and(|(s, r)| *s == *seq && !r.state.is_final());
            if !open {
                forget.push((*submitted, *seq));
            }
        }
        for at in forget {
            let Some(key) = inner.keyed.remove(&at) else {
                continue;
            };
            // Only if the key still names this call (not a later one's).
            let names_it = inner
                .idempotency
                .get(&key)
                .and_then(|id| inner.calls.get(id))
                .is_some_and(|(s, _)| *s == at.1);
            if names_it {
                inner.idempotency.remove(&key);
                reaped.keys_forgotten += 1;
            }
        }
        let mut finished = Vec::new();
        let mut ended = Vec::new();
        for (id, verdict) in overdue {
            if verdict == Overdue::Expire {
                inner.finish(&id, CallState::Expired, now);
                reaped.ended.push(id.clone());
                finished.push(id);
                reaped.expired += 1;
                continue;
            }
            let Some((_, record)) = inner.calls.get_mut(&id) else {
                continue;
            };
            let agent = record.holder.as_ref().map(|h| h.agent.clone());
            let outcome = lease_lapsed_outcome(&id, agent.as_deref());
            record.outcome = Some(outcome.clone());
            let attempts = record.attempts;
            inner.finish(&id, CallState::Failed, now);
            reaped.ended.push(id.clone());
            ended.push((
                id,
                CallEnd {
                    state: CallState::Failed,
                    attempts,
                    completed_at: now,
                    agent: None,
                    outcome: Some(outcome),
                },
            ));
            reaped.failed_unknown += 1;
        }
        // Final calls past the result retention, unless their key is still
        // enforced (a retry must get the stored outcome).
        let mut purge = Vec::new();
        for ((completed, seq), id) in &inner.completed {
            if *completed + retention.results > now {
                break;
            }
            let enforced = inner
                .calls
                .get(id)
                .and_then(|(_, r)| r.idempotency.as_ref())
                .is_some_and(|(key, _)| inner.idempotency.get(key) == Some(id));
            if !enforced {
                purge.push((*completed, *seq));
            }
        }
        for at in purge {
            let Some(id) = inner.completed.remove(&at) else {
                continue;
            };
            if let Some((_, record)) = inner.calls.remove(&id) {
                inner.submitted.remove(&(record.submitted_at, id.clone()));
                inner.counts.moved(Some(&record.state), None);
                reaped.purged += 1;
            }
        }
        drop(guard);
        for system in &woken_systems {
            self.signals.work_available(system);
        }
        for id in &finished {
            self.signals.call_finished(id);
        }
        for (id, end) in ended {
            self.signals.call_ended(&id, end);
        }
        Ok(reaped)
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        Ok(self.lock().counts)
    }

    async fn queued_by_system(&self) -> Result<Vec<SystemBacklog>, QueueError> {
        let inner = self.lock();
        Ok(inner
            .queued
            .iter()
            .filter_map(|(system, ids)| {
                let (_, oldest) = ids.first_key_value()?;
                let (_, record) = inner.calls.get(oldest)?;
                let next_expiry = ids
                    .values()
                    .filter_map(|id| inner.calls.get(id))
                    .map(|(_, r)| r.expires_at)
                    .min()?;
                Some(SystemBacklog {
                    system: system.clone(),
                    queued: u64::try_from(ids.len()).unwrap_or(u64::MAX),
                    oldest: record.submitted_at,
                    next_expiry,
                })
            })
            .collect())
    }

    async fn activity(&self, since: OffsetDateTime) -> Result<Activity, QueueError> {
        let inner = self.lock();
        let mut calls: BTreeMap<(String, i64), (u64, u64)> = BTreeMap::new();
        for id in inner.completed.range((since, 0)..).map(|(_, id)| id) {
            let Some((_, record)) = inner.calls.get(id) else {
                continue;
            };
            let (Some(error), Some(at)) = (activity::is_error(&record.state), record.completed_at)
            else {
                continue;
            };
            let counts = calls
                .entry((record.system.clone(), activity::minute_of(at)))
                .or_default();
            counts.0 += 1;
            counts.1 += u64::from(error);
        }
        let mut refusals: BTreeMap<(Option<String>, String, String), u64> = BTreeMap::new();
        for record in inner
            .audit
            .iter()
            .filter(|r| r.at >= since && activity::REFUSALS.contains(&r.outcome.as_str()))
        {
            *refusals
                .entry((
                    record.system.clone(),
                    record.event.clone(),
                    record.outcome.clone(),
                ))
                .or_default() += 1;
        }
        Ok(Activity {
            calls: calls
                .into_iter()
                .map(
                    |((system, minute), (finished, errors))| activity::CallMinute {
                        system,
                        minute,
                        finished,
                        errors,
                    },
                )
                .collect(),
            refusals: refusals
                .into_iter()
                .map(|((system, event, outcome), count)| activity::RefusalCount {
                    system,
                    event,
                    outcome,
                    count,
                })
                .collect(),
        })
    }

    async fn ping(&self) -> Result<(), QueueError> {
        Ok(())
    }

    async fn open_calls_of(&self, owner: &str, cap: u64) -> Result<u64, QueueError> {
        let inner = self.lock();
        let open = inner
            .calls
            .values()
            .filter(|(_, r)| !r.state.is_final() && r.owner.as_deref() == Some(owner))
            .take(usize::try_from(cap).unwrap_or(usize::MAX))
            .count();
        Ok(open as u64)
    }

    async fn queued_in(&self, system: &str, cap: u64) -> Result<u64, QueueError> {
        let inner = self.lock();
        let queued = inner.queued.get(system).map_or(0, BTreeMap::len) as u64;
        Ok(queued.min(cap))
    }

    async fn append_audit(&self, records: Vec<AuditRecord>) -> Result<(), QueueError> {
        let mut inner = self.lock();
        for mut record in records {
            inner.next_audit += 1;
            record.seq = inner.next_audit;
            inner.audit.push_back(record);
        }
        Ok(())
    }

    async fn audit(&self, filter: AuditFilter) -> Result<Vec<AuditRecord>, QueueError> {
        let inner = self.lock();
        let start = inner
            .audit
            .partition_point(|r| filter.after.is_some_and(|after| r.seq <= after));
        Ok(inner
            .audit
            .range(start..)
            .filter(|r| filter.matches(r))
            .take(filter.page_size())
            .cloned()
            .collect())
    }

    async fn purge_audit(&self, before: OffsetDateTime) -> Result<usize, QueueError> {
        let mut inner = self.lock();
        let old = inner.audit.len();
        inner.audit.retain(|r| r.at >= before);
        Ok(old - inner.audit.len())
    }

    async fn claim_deliveries(
        &self,
        state: DeliveryState,
        now: OffsetDateTime,
        until: OffsetDateTime,
        max: usize,
    ) -> Result<Vec<Delivery>, QueueError> {
        let mut inner = self.lock();
        let mut due: Vec<(OffsetDateTime, i64)> = inner
            .deliveries
            .values()
            .filter(|(d, lease)| {
                d.state == state && d.next_at <= now && lease.is_none_or(|l| l <= now)
            })
            .map(|(d, _)| (d.next_at, d.seq))
            .collect();
        due.sort_unstable();
        due.truncate(max);
        let mut claimed = Vec::with_capacity(due.len());
        for (_, seq) in due {
            if let Some((delivery, lease)) = inner.deliveries.get_mut(&seq) {
                *lease = Some(until);
                claimed.push(delivery.clone());
            }
        }
        Ok(claimed)
    }

    async fn save_delivery(&self, delivery: Delivery) -> Result<(), QueueError> {
        let mut inner = self.lock();
        if let Some((stored, lease)) = inner.delivery_mut(&delivery.id) {
            let seq = stored.seq;
            *stored = Delivery { seq, ..delivery };
            *lease = None;
        }
        Ok(())
    }

    async fn deliveries(&self, filter: DeliveryFilter) -> Result<Vec<Delivery>, QueueError> {
        let inner = self.lock();
        let from = filter.after.map_or(i64::MIN, |a| a.saturating_add(1));
        Ok(inner
            .deliveries
            .range(from..)
            .map(|(_, (d, _))| d)
            .filter(|d| filter.matches(d))
            .take(filter.page_size())
            .cloned()
            .collect())
    }

    async fn delivery(&self, id: &str) -> Result<Option<Delivery>, QueueError> {
        let mut inner = self.lock();
        Ok(inner.delivery_mut(id).map(|(d, _)| d.clone()))
    }

    async fn redeliver(
        &self,
        id: &str,
        now: OffsetDateTime,
        give_up_at: OffsetDateTime,
    ) -> Result<Option<Delivery>, QueueError> {
        let mut inner = self.lock();
        let Some((delivery, lease)) = inner.delivery_mut(id) else {
            return Ok(None);
        };
        if delivery.payload.is_some() {
            delivery.state = DeliveryState::Pending;
            delivery.attempts = 0;
            delivery.next_at = now;
            delivery.give_up_at = Some(give_up_at);
            delivery.delivered_at = None;
            *lease = None;
        }
        Ok(Some(delivery.clone()))
    }

    async fn purge_deliveries(&self, before: OffsetDateTime) -> Result<usize, QueueError> {
        let mut inner = self.lock();
        let old: Vec<(i64, String)> = inner
            .deliveries
            .values()
            .filter(|(d, _)| !d.state.is_open() && d.created_at < before)
            .map(|(d, _)| (d.seq, d.id.clone()))
            .collect();
        for (seq, id) in &old {
            inner.deliveries.remove(seq);
            inner.delivery_ids.remove(id);
        }
        Ok(old.len())
    }

    async fn add_subscription(&self, subscription: Subscription) -> Result<(), QueueError> {
        self.lock().subscriptions.push(subscription);
        Ok(())
    }

    async fn remove_subscription(&self, owner: Option<&str>, id: &str) -> Result<bool, QueueError> {
        let mut inner = self.lock();
        let before = inner.subscriptions.len();
        inner
            .subscriptions
            .retain(|s| !(s.id == id && owner.is_none_or(|o| s.owner == o)));
        Ok(inner.subscriptions.len() != before)
    }

    async fn add_key(&self, key: super::StoredKey) -> Result<bool, QueueError> {
        let mut inner = self.lock();
        if inner.keys.contains_key(&key.name) {
            return Ok(false);
        }
        inner.keys.insert(key.name.clone(), key);
        Ok(true)
    }

    async fn revoke_key(&self, name: &str, at: OffsetDateTime) -> Result<bool, QueueError> {
        let mut inner = self.lock();
        match inner.keys.get_mut(name) {
            Some(key) if key.revoked_at.is_none() => {
                key.revoked_at = Some(at);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn stored_keys(&self) -> Result<Vec<super::StoredKey>, QueueError> {
        Ok(self.lock().keys.values().cloned().collect())
    }

    async fn add_agent_token(&self, token: super::StoredAgentToken) -> Result<bool, QueueError> {
        let mut inner = self.lock();
        if inner.agent_tokens.contains_key(&token.name) {
            return Ok(false);
        }
        inner.agent_tokens.insert(token.name.clone(), token);
        Ok(true)
    }

    async fn revoke_agent_token(&self, name: &str, at: OffsetDateTime) -> Result<bool, QueueError> {
        let mut inner = self.lock();
        match inner.agent_tokens.get_mut(name) {
            Some(token) if token.revoked_at.is_none() => {
                token.revoked_at = Some(at);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn stored_agent_tokens(&self) -> Result<Vec<super::StoredAgentToken>, QueueError> {
        Ok(self.lock().agent_tokens.values().cloned().collect())
    }

    async fn record_uses(&self, uses: Vec<super::CredentialUse>) -> Result<(), QueueError> {
        let mut inner = self.lock();
        for used in uses {
            let at = inner.uses.entry((used.kind, used.name)).or_insert(used.at);
            *at = (*at).max(used.at);
        }
        Ok(())
    }

    async fn credential_uses(&self) -> Result<Vec<super::CredentialUse>, QueueError> {
        Ok(self
            .lock()
            .uses
            .iter()
            .map(|((kind, name), at)| super::CredentialUse {
                kind: *kind,
                name: name.clone(),
                at: *at,
            })
            .collect())
    }

    async fn subscriptions(&self, owner: Option<&str>) -> Result<Vec<Subscription>, QueueError> {
        Ok(self
            .lock()
            .subscriptions
            .iter()
            .filter(|s| owner.is_none_or(|o| s.owner == o))
            .cloned()
            .collect())
    }

    fn signals(&self) -> &Arc<Signals> {
        &self.signals
    }
}
