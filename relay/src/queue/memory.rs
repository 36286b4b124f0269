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
//! second, slowed every queue operation more with each call served).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use sapbridge_proto::{Outcome, Unit};
use time::OffsetDateTime;

use super::{
    CallEnd, CallRecord, CallState, Cancelled, Completion, Enqueued, IdempotencyKey, NewCall,
    Queue, QueueError, QueueStats, Reaped, Retention, Signals,
};

/// The in-memory queue.
#[derive(Debug, Default)]
pub(crate) struct MemoryQueue {
    inner: Mutex<Inner>,
    signals: Arc<Signals>,
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
    /// Stored calls by state.
    counts: QueueStats,
    next_seq: u64,
}

impl MemoryQueue {
    /// An empty queue.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    /// Puts a leased call back in its system's queue.
    fn requeue(&mut self, call_id: &str) -> Option<String> {
        let (seq, record) = self.calls.get_mut(call_id)?;
        if let CallState::Leased { session, .. } = &record.state {
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
    async fn enqueue(&self, call: NewCall) -> Result<Enqueued, QueueError> {
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
        inner.calls.insert(record.id.clone(), (seq, record.clone()));
        drop(inner);
        match taker {
            Some(taker) => taker.hand_over(record.work_frame()),
            None => self.signals.work_available(&system),
        }
        Ok(Enqueued::Created(Box::new(record)))
    }

    async fn claim(
        &self,
        systems: &[String],
        session: &str,
        max: usize,
        until: OffsetDateTime,
    ) -> Result<Vec<Unit>, QueueError> {
        let now = OffsetDateTime::now_utc();
        let mut inner = self.lock();
        let mut units = Vec::new();
        while units.len() < max {
            // The oldest queued call over all of the session's systems.
            let oldest = systems
                .iter()
                .filter_map(|s| inner.queued.get(s)?.first_key_value())
                .min_by_key(|(seq, _)| **seq)
                .map(|(seq, id)| (*seq, id.clone()));
            let Some((_, call_id)) = oldest else { break };
            let Some((_, record)) = inner.calls.get(&call_id) else {
                break;
            };
            if record.expires_at <= now {
                let id = record.id.clone();
                inner.finish(&id, CallState::Expired, now);
                self.signals.call_finished(&id);
                continue;
            }
            let system = record.system.clone();
            if let Some(q) = inner.queued.get_mut(&system) {
                q.pop_first();
            }
            inner
                .leases
                .entry(session.to_owned())
                .or_default()
                .insert(call_id.clone());
            let inner = &mut *inner;
            if let Some((_, record)) = inner.calls.get_mut(&call_id) {
                let leased = CallState::Leased {
                    session: session.to_owned(),
                    until,
                };
                inner.counts.moved(Some(&record.state), Some(&leased));
                record.state = leased;
                record.attempts += 1;
                units.push(record.unit());
            }
        }
        Ok(units)
    }

    async fn complete(
        &self,
        call_id: &str,
        _attempt: u32,
        agent: &str,
        outcome: Outcome,
    ) -> Result<Completion, QueueError> {
        let now = OffsetDateTime::now_utc();
        let mut inner = self.lock();
        let Some((_, record)) = inner.calls.get_mut(call_id) else {
            return Ok(Completion::Unknown);
        };
        if record.state.is_final() {
            return Ok(Completion::AlreadyFinal);
        }
        // Any attempt's outcome counts while the call is open: the agent's journal
        // guarantees the unit ran at most once, so the first outcome is the truth.
        let state = CallState::from_outcome(record.commit, &outcome);
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

    async fn renew_leases(
        &self,
        session: &str,
        until: OffsetDateTime,
    ) -> Result<usize, QueueError> {
        let mut inner = self.lock();
        let ids: Vec<String> = inner
            .leases
            .get(session)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for id in &ids {
            let state = inner.calls.get_mut(id).map(|(_, record)| &mut record.state);
            if let Some(CallState::Leased { until: u, .. }) = state {
                *u = until;
            }
        }
        Ok(ids.len())
    }

    async fn release_session(&self, session: &str) -> Result<usize, QueueError> {
        let mut inner = self.lock();
        let ids: Vec<String> = inner
            .leases
            .get(session)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let systems: HashSet<String> = ids.iter().filter_map(|id| inner.requeue(id)).collect();
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
        let expired: Vec<String> = inner
            .queued
            .values()
            .flat_map(BTreeMap::values)
            .filter(|id| {
                inner
                    .calls
                    .get(*id)
                    .is_some_and(|(_, r)| r.expires_at <= now)
            })
            .cloned()
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
        let mut woken_systems = HashSet::new();
        for id in lapsed {
            if let Some(system) = inner.requeue(&id) {
                woken_systems.insert(system);
                reaped.requeued += 1;
            }
        }
        let mut finished = Vec::new();
        for id in expired {
            inner.finish(&id, CallState::Expired, now);
            finished.push(id);
            reaped.expired += 1;
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
        Ok(reaped)
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        Ok(self.lock().counts)
    }

    async fn ping(&self) -> Result<(), QueueError> {
        Ok(())
    }

    fn signals(&self) -> &Arc<Signals> {
        &self.signals
    }
}
