//! What the agent knows about its units: which are running in this process, and
//! which outcomes it holds until the relay acknowledges them — backed by the
//! execution [`Journal`].
//!
//! The journal is the durable truth (a call id runs at most once, across restarts);
//! this store keeps the in-process view the session needs without touching the
//! disk: the call ids running now (so a redelivery while running is not run again),
//! and the unacknowledged outcomes to send on every (re)connect. At startup those
//! are loaded from the journal, so outcomes survive an agent restart.
//!
//! Concurrency: one mutex around plain maps, never held across an `.await`; a
//! [`Notify`] wakes the session when an outcome is ready to send.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use sapbridge_proto::Outcome;
use tokio::sync::Notify;
use tracing::{error, info};

use crate::journal::{Header, Journal, JournalError};

/// What [`OutcomeStore::claim`] found for a delivered unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Not known in this process: the caller consults the journal and reports with
    /// [`OutcomeStore::complete`], [`OutcomeStore::resend`] or
    /// [`OutcomeStore::abandon`].
    Claimed,
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
    /// Whether the journal has it (read-only units are not journaled: in doubt they
    /// simply run again), so redeliveries and the ack are journaled too.
    journaled: bool,
}

#[derive(Debug, Default)]
struct Inner {
    running: HashMap<String, u32>,
    held: HashMap<String, Held>,
    next_seq: u64,
}

impl Inner {
    fn hold(&mut self, call_id: String, attempt: u32, outcome: Outcome, journaled: bool) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.held.insert(
            call_id,
            Held {
                attempt,
                outcome,
                unsent: true,
                seq,
                journaled,
            },
        );
    }
}

/// Running units and unacknowledged outcomes, shared by the session and the unit
/// tasks.
#[derive(Debug)]
pub(crate) struct OutcomeStore {
    journal: Journal,
    inner: Mutex<Inner>,
    changed: Notify,
}

impl OutcomeStore {
    /// A store over `journal`, holding the outcomes the journal says are not
    /// acknowledged yet (they are sent on the first session). Blocking.
    ///
    /// Rows that cannot be decoded are logged and left out: their outcome cannot be
    /// re-sent, and a redelivery of their call id is answered `OUTCOME_UNKNOWN`.
    ///
    /// # Errors
    /// [`JournalError`] when the journal cannot be read at all.
    pub(crate) fn open(journal: Journal) -> Result<Self, JournalError> {
        let (unacked, corrupt) = journal.unacked()?;
        for error in corrupt {
            error!(error = %error, "journal row skipped: its outcome cannot be re-sent");
        }
        if !unacked.is_empty() {
            info!(
                unacked = unacked.len(),
                "journal holds outcomes the relay has not acknowledged; they are re-sent"
            );
        }
        let mut inner = Inner::default();
        for row in unacked {
            inner.hold(row.call_id, row.attempt, row.outcome, true);
        }
        Ok(Self {
            journal,
            inner: Mutex::new(inner),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain maps in a usable state.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The journal behind the store.
    pub(crate) fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Records a delivery of `call_id` and says what this process knows of it.
    pub(crate) fn claim(&self, call_id: &str, attempt: u32) -> Delivery {
        let mut inner = self.lock();
        if let Some(held) = inner.held.get_mut(call_id) {
            held.attempt = attempt;
            held.unsent = true;
            let journaled = held.journaled;
            drop(inner);
            if journaled {
                self.journal.redelivered(call_id, attempt);
            }
            self.changed.notify_one();
            return Delivery::AlreadyDone;
        }
        if let Some(running) = inner.running.get_mut(call_id) {
            *running = attempt;
            return Delivery::AlreadyRunning;
        }
        inner.running.insert(call_id.to_owned(), attempt);
        Delivery::Claimed
    }

    /// Journals the outcome of a claimed unit durably, then holds it and wakes the
    /// session to send it. If the journal cannot record it, the outcome is still
    /// sent (it is only lost if the agent also restarts before the ack).
    ///
    /// A read-only unit's outcome is only held in memory: if the agent restarts
    /// before the ack, the relay's lease lapses and the unit runs again, which
    /// changes nothing in SAP.
    pub(crate) async fn complete(&self, header: &Header, outcome: Outcome) {
        let mut header = header.clone();
        if let Some(attempt) = self.lock().running.get(&header.call_id) {
            header.attempt = *attempt;
        }
        let journaled = !header.read_only;
        if journaled && let Err(e) = self.journal.finished(&header, &outcome).await {
            error!(error = %e, "cannot journal the outcome; sending it anyway");
        }
        let mut inner = self.lock();
        let attempt = inner
            .running
            .remove(&header.call_id)
            .unwrap_or(header.attempt);
        inner.hold(header.call_id, attempt, outcome, journaled);
        drop(inner);
        self.changed.notify_one();
    }

    /// Holds again an outcome the journal already has (a claimed unit that ran
    /// before, possibly before a restart, and was acknowledged or not).
    pub(crate) fn resend(&self, call_id: &str, outcome: Outcome) {
        let mut inner = self.lock();
        let attempt = inner.running.remove(call_id).unwrap_or(1);
        inner.hold(call_id.to_owned(), attempt, outcome, true);
        drop(inner);
        self.journal.redelivered(call_id, attempt);
        self.changed.notify_one();
    }

    /// Forgets a unit that was claimed but will not complete (abandoned at
    /// shutdown). The journal keeps its start: it is in doubt from now on.
    pub(crate) fn abandon(&self, call_id: &str) {
        self.lock().running.remove(call_id);
        self.changed.notify_one();
    }

    /// The relay stored the outcome: stop holding it and journal the ack. Returns
    /// whether it was held.
    pub(crate) fn ack(&self, call_id: &str) -> bool {
        let held = self.lock().held.remove(call_id);
        if held.as_ref().is_some_and(|held| held.journaled) {
            self.journal.acked(call_id);
        }
        self.changed.notify_one();
        held.is_some()
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

    /// How many units are running (or waiting for the journal or a free slot).
    pub(crate) fn running(&self) -> usize {
        self.lock().running.len()
    }

    /// The call ids of the units running (or waiting for the journal or a slot).
    pub(crate) fn running_ids(&self) -> HashSet<String> {
        self.lock().running.keys().cloned().collect()
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
    use sapbridge_proto::{CommitPolicy, ErrorGroup, RfcError};

    use super::*;
    use crate::journal::tests::temp_journal;

    fn outcome(key: &str) -> Outcome {
        Outcome::Failed {
            error: RfcError::new(ErrorGroup::Expired, key, "x"),
        }
    }

    fn header(call_id: &str) -> Header {
        Header {
            call_id: call_id.into(),
            attempt: 1,
            system: "SIM".into(),
            functions: vec!["BAPI_CUSTOMER_CHANGEFROMDATA1".into()],
            commit: CommitPolicy::None,
            read_only: false,
        }
    }

    #[tokio::test]
    async fn read_only_outcomes_are_held_but_not_journaled() {
        let (journal, _dir) = temp_journal();
        let store = OutcomeStore::open(journal).unwrap();
        store.claim("r1", 1);
        let read = Header {
            read_only: true,
            ..header("r1")
        };
        store.complete(&read, outcome("R")).await;
        assert_eq!(store.take_unsent().len(), 1);
        assert_eq!(store.claim("r1", 2), Delivery::AlreadyDone);
        store.journal().flush().await.unwrap();
        assert!(store.journal().lookup("r1").await.unwrap().is_none());
        assert!(store.ack("r1"));
        assert_eq!(store.unacked(), 0);
    }

    #[tokio::test]
    async fn a_unit_runs_once_and_its_outcome_waits_for_the_ack() {
        let (journal, _dir) = temp_journal();
        let store = OutcomeStore::open(journal).unwrap();
        assert_eq!(store.claim("c1", 1), Delivery::Claimed);
        assert_eq!(store.claim("c1", 2), Delivery::AlreadyRunning);
        assert_eq!(store.running(), 1);
        store.complete(&header("c1"), outcome("A")).await;
        assert_eq!(store.running(), 0);
        let ready = store.take_unsent();
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].attempt, 2, "answers the latest delivery");
        assert!(store.take_unsent().is_empty(), "sent once per session");
        assert_eq!(store.claim("c1", 3), Delivery::AlreadyDone);
        assert_eq!(store.take_unsent()[0].attempt, 3);
        assert!(store.ack("c1"));
        assert!(!store.ack("c1"));
        assert_eq!(store.unacked(), 0);
        assert_eq!(
            store.claim("c1", 4),
            Delivery::Claimed,
            "after the ack, the journal answers"
        );
        store.journal().flush().await.unwrap();
        let entry = store.journal().lookup("c1").await.unwrap().unwrap();
        assert!(entry.acked);
        assert_eq!(entry.header.attempt, 3);
    }

    #[tokio::test]
    async fn a_new_session_resends_unacked_outcomes_oldest_first() {
        let (journal, _dir) = temp_journal();
        let store = OutcomeStore::open(journal).unwrap();
        for id in ["c1", "c2", "c3"] {
            store.claim(id, 1);
        }
        store.complete(&header("c2"), outcome("2")).await;
        store.complete(&header("c1"), outcome("1")).await;
        store.complete(&header("c3"), outcome("3")).await;
        store.take_unsent();
        store.ack("c1");
        store.resend_all();
        let ids: Vec<_> = store.take_unsent().into_iter().map(|r| r.call_id).collect();
        assert_eq!(ids, ["c2", "c3"]);
    }

    #[tokio::test]
    async fn unacked_outcomes_survive_a_restart_in_order() {
        let (journal, dir) = temp_journal();
        let store = OutcomeStore::open(journal).unwrap();
        for id in ["c1", "c2", "c3"] {
            store.claim(id, 1);
        }
        store.complete(&header("c3"), outcome("3")).await;
        store.complete(&header("c1"), outcome("1")).await;
        store.complete(&header("c2"), outcome("2")).await;
        store.ack("c1");
        store.journal().flush().await.unwrap();
        drop(store);

        let journal = Journal::open(&dir.path().join("journal.db"), Default::default()).unwrap();
        let store = OutcomeStore::open(journal).unwrap();
        let ready = store.take_unsent();
        let ids: Vec<_> = ready.iter().map(|r| r.call_id.as_str()).collect();
        assert_eq!(ids, ["c3", "c2"]);
        assert_eq!(ready[0].outcome, outcome("3"));
    }

    #[tokio::test]
    async fn completion_wakes_the_waiter() {
        let (journal, _dir) = temp_journal();
        let store = std::sync::Arc::new(OutcomeStore::open(journal).unwrap());
        store.claim("c1", 1);
        let waiter = tokio::spawn({
            let store = store.clone();
            async move { store.changed().await }
        });
        store.complete(&header("c1"), outcome("1")).await;
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
