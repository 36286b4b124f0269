//! What the agent knows about its units: which are running, and which outcomes it
//! holds until the relay acknowledges them.
//!
//! Kept in memory for now; the durable journal replaces this type's insides later
//! without changing its interface. The store is what makes redelivery safe: a unit
//! whose call id is running or whose outcome is held is not executed again.
//!
//! Concurrency: one mutex around plain maps, never held across an `.await`; a
//! [`Notify`] wakes the session when an outcome is ready to send.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use sapbridge_proto::Outcome;
use tokio::sync::Notify;

/// What [`OutcomeStore::begin`] found for a delivered unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// New: the caller runs the unit and reports with [`OutcomeStore::complete`].
    Run,
    /// The unit is already running; its outcome is sent when it ends.
    AlreadyRunning,
    /// The outcome is already held; it is queued to be sent again.
    AlreadyDone,
}

/// An outcome ready to be sent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReadyOutcome {
    /// The unit's call id.
    pub(crate) call_id: String,
    /// The attempt the outcome answers (the latest delivery's).
    pub(crate) attempt: u32,
    /// The outcome.
    pub(crate) outcome: Outcome,
}

#[derive(Debug)]
struct Held {
    attempt: u32,
    outcome: Outcome,
    /// Whether it still has to be sent on the current (or next) session.
    unsent: bool,
    /// Completion order, so outcomes are sent oldest first.
    seq: u64,
}

#[derive(Debug, Default)]
struct Inner {
    running: HashMap<String, u32>,
    held: HashMap<String, Held>,
    next_seq: u64,
}

/// Running units and unacknowledged outcomes, shared by the session and the unit
/// tasks.
#[derive(Debug, Default)]
pub(crate) struct OutcomeStore {
    inner: Mutex<Inner>,
    changed: Notify,
}

impl OutcomeStore {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain maps in a usable state.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a delivery of `call_id` and says whether it must run.
    pub(crate) fn begin(&self, call_id: &str, attempt: u32) -> Delivery {
        let mut inner = self.lock();
        if let Some(held) = inner.held.get_mut(call_id) {
            held.attempt = attempt;
            held.unsent = true;
            drop(inner);
            self.changed.notify_one();
            return Delivery::AlreadyDone;
        }
        if let Some(running) = inner.running.get_mut(call_id) {
            *running = attempt;
            return Delivery::AlreadyRunning;
        }
        inner.running.insert(call_id.to_owned(), attempt);
        Delivery::Run
    }

    /// Stores the outcome of a unit that [`OutcomeStore::begin`] said to run, and
    /// wakes the session to send it.
    pub(crate) fn complete(&self, call_id: &str, outcome: Outcome) {
        let mut inner = self.lock();
        let attempt = inner.running.remove(call_id).unwrap_or(1);
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.held.insert(
            call_id.to_owned(),
            Held {
                attempt,
                outcome,
                unsent: true,
                seq,
            },
        );
        drop(inner);
        self.changed.notify_one();
    }

    /// Forgets a unit that was begun but will not complete (abandoned at shutdown).
    pub(crate) fn abandon(&self, call_id: &str) {
        self.lock().running.remove(call_id);
        self.changed.notify_one();
    }

    /// The relay stored the outcome: forget it. Returns whether it was held.
    pub(crate) fn ack(&self, call_id: &str) -> bool {
        let found = self.lock().held.remove(call_id).is_some();
        self.changed.notify_one();
        found
    }

    /// Takes the outcomes not yet sent on this session, oldest first, and marks them
    /// sent.
    pub(crate) fn take_unsent(&self) -> Vec<ReadyOutcome> {
        let mut inner = self.lock();
        let mut ready: Vec<(u64, ReadyOutcome)> = inner
            .held
            .iter_mut()
            .filter(|(_, held)| held.unsent)
            .map(|(call_id, held)| {
                held.unsent = false;
                let ready = ReadyOutcome {
                    call_id: call_id.clone(),
                    attempt: held.attempt,
                    outcome: held.outcome.clone(),
                };
                (held.seq, ready)
            })
            .collect();
        ready.sort_by_key(|(seq, _)| *seq);
        ready.into_iter().map(|(_, ready)| ready).collect()
    }

    /// A new session started: every unacknowledged outcome must be sent again.
    pub(crate) fn resend_all(&self) {
        for held in self.lock().held.values_mut() {
            held.unsent = true;
        }
    }

    /// How many units are running (or waiting for a free slot).
    pub(crate) fn running(&self) -> usize {
        self.lock().running.len()
    }

    /// How many outcomes wait for the relay's acknowledgement.
    pub(crate) fn unacked(&self) -> usize {
        self.lock().held.len()
    }

    /// Resolves after the store changed (outcome completed, acked, re-queued) since
    /// the last wake-up. Cancel-safe.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use sapbridge_proto::{ErrorGroup, RfcError};

    use super::*;

    fn outcome(key: &str) -> Outcome {
        Outcome::Failed {
            error: RfcError::new(ErrorGroup::Expired, key, "x"),
        }
    }

    #[test]
    fn a_unit_runs_once_and_its_outcome_waits_for_the_ack() {
        let store = OutcomeStore::default();
        assert_eq!(store.begin("c1", 1), Delivery::Run);
        assert_eq!(store.begin("c1", 2), Delivery::AlreadyRunning);
        assert_eq!(store.running(), 1);
        store.complete("c1", outcome("A"));
        assert_eq!(store.running(), 0);
        let ready = store.take_unsent();
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].attempt, 2, "answers the latest delivery");
        assert!(store.take_unsent().is_empty(), "sent once per session");
        assert_eq!(store.begin("c1", 3), Delivery::AlreadyDone);
        assert_eq!(store.take_unsent()[0].attempt, 3);
        assert!(store.ack("c1"));
        assert!(!store.ack("c1"));
        assert_eq!(store.unacked(), 0);
        assert_eq!(
            store.begin("c1", 4),
            Delivery::Run,
            "forgotten after the ack"
        );
    }

    #[test]
    fn a_new_session_resends_unacked_outcomes_oldest_first() {
        let store = OutcomeStore::default();
        for id in ["c1", "c2", "c3"] {
            store.begin(id, 1);
        }
        store.complete("c2", outcome("2"));
        store.complete("c1", outcome("1"));
        store.complete("c3", outcome("3"));
        store.take_unsent();
        store.ack("c1");
        store.resend_all();
        let ids: Vec<_> = store.take_unsent().into_iter().map(|r| r.call_id).collect();
        assert_eq!(ids, ["c2", "c3"]);
    }

    #[tokio::test]
    async fn completion_wakes_the_waiter() {
        let store = std::sync::Arc::new(OutcomeStore::default());
        store.begin("c1", 1);
        let waiter = tokio::spawn({
            let store = store.clone();
            async move { store.changed().await }
        });
        store.complete("c1", outcome("1"));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
