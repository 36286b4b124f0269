//! Wake-ups between the queue and its users: one [`Notify`] per system (an idle
//! agent session learns at once that work arrived) and one per awaited call (a
//! synchronous HTTP request returns the moment the outcome is stored).
//!
//! Both use `notify_waiters`, which stores no permit: a waiter must create and
//! `enable` its `Notified` future *before* it looks at the queue, then await it.
//! Waiters also poll with a timeout, so a signal lost across replicas only costs
//! latency.
//!
//! A store that knows how a call ended when it fires the call's signal (after the
//! commit) may hand that over with [`Signals::call_ended`]: a waiter watching the
//! call then takes it from its [`CallWatch`] instead of reading the call back.
//!
//! Direct dispatch, an optimisation within one process: an agent session with free
//! credits registers a [`Taker`] for its systems. A store enqueueing a call for a
//! system with nothing queued leases it to a taker at once, in the same write, and
//! hands the taker the call's unit once committed: no queued row to claim back, no
//! wake-up and second write for the session. The session encodes the unit for its
//! agent as it does the units it claims. Correctness never depends on it: a call
//! no taker takes is queued and claimed, and a call handed to a session that is
//! gone is leased to it, so it returns to the queue with the session's other
//! leases. The taker's credits are the session's free credits, shared between the
//! two sides (the store takes one per call it hands over; the session takes them
//! for claims of queued work and gives them back as outcomes come in).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sapbridge_proto::{Outcome, Unit};
use time::OffsetDateTime;
use tokio::sync::{Notify, mpsc};

use super::{CallRecord, CallState, Holder};

/// The queue's wake-up signals. Cheap to share; all methods are non-blocking.
#[derive(Debug, Default)]
pub(crate) struct Signals {
    work: Mutex<HashMap<String, Arc<Notify>>>,
    calls: Mutex<HashMap<String, Arc<CallSlot>>>,
    takers: Mutex<HashMap<String, Vec<Arc<Taker>>>>,
}

/// An agent session's readiness to take new calls directly (see the module docs).
#[derive(Debug)]
pub(crate) struct Taker {
    session: String,
    agent: String,
    lease: std::time::Duration,
    max_credits: u32,
    credits: AtomicU32,
    /// Boxed: a channel allocates room for 32 items up front, for every session.
    units: mpsc::UnboundedSender<Box<Unit>>,
}

impl Taker {
    /// A taker for `session` of agent `agent`, whose leases last `lease`, holding
    /// at most `max_credits`; the units handed over arrive on the returned receiver.
    pub(crate) fn new(
        session: &str,
        agent: &str,
        lease: std::time::Duration,
        max_credits: u32,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Box<Unit>>) {
        let (units, rx) = mpsc::unbounded_channel();
        let taker = Arc::new(Self {
            session: session.to_owned(),
            agent: agent.to_owned(),
            lease,
            max_credits,
            credits: AtomicU32::new(0),
            units,
        });
        (taker, rx)
    }

    /// The session it stands for.
    pub(crate) fn session(&self) -> &str {
        &self.session
    }

    /// The holder a call leased to this session gets.
    pub(crate) fn holder(&self) -> Holder {
        Holder {
            session: self.session.clone(),
            agent: self.agent.clone(),
        }
    }

    /// When a lease taken now ends.
    pub(crate) fn lease_until(&self, now: OffsetDateTime) -> OffsetDateTime {
        now + self.lease
    }

    /// Free credits right now.
    pub(crate) fn credits(&self) -> u32 {
        self.credits.load(Ordering::Acquire)
    }

    /// Adds `n` free credits (capped).
    pub(crate) fn give(&self, n: u32) {
        let max = self.max_credits;
        let _ = self
            .credits
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                Some(c.saturating_add(n).min(max))
            });
    }

    /// Takes up to `n` free credits; returns how many.
    pub(crate) fn take(&self, n: u32) -> u32 {
        match self
            .credits
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| Some(c - c.min(n)))
        {
            Ok(before) | Err(before) => before.min(n),
        }
    }

    /// Hands over the unit of a call the store leased to this session (after the
    /// commit). A session gone by then finds the lease returned by its release.
    pub(crate) fn hand_over(&self, unit: Unit) {
        let _ = self.units.send(Box::new(unit));
    }
}

/// How a call ended, as committed: what a waiter needs to bring the record it
/// holds up to date without reading the call back.
#[derive(Debug, Clone)]
pub(crate) struct CallEnd {
    /// The final state.
    pub(crate) state: CallState,
    /// How many times the call was handed to an agent.
    pub(crate) attempts: u32,
    /// When it reached its final state.
    pub(crate) completed_at: OffsetDateTime,
    /// The agent id that reported the outcome.
    pub(crate) agent: Option<String>,
    /// The outcome.
    pub(crate) outcome: Option<Outcome>,
}

impl CallEnd {
    /// Brings `record` (the same call, read or created earlier) to its end.
    pub(crate) fn apply(self, record: &mut CallRecord) {
        record.state = self.state;
        record.attempts = self.attempts;
        record.completed_at = Some(self.completed_at);
        record.agent = self.agent;
        record.outcome = self.outcome;
    }
}

/// What the watchers of one call share.
#[derive(Debug, Default)]
struct CallSlot {
    notify: Notify,
    end: Mutex<Option<CallEnd>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Signals {
    /// The work signal of `system`, created on first use.
    pub(crate) fn work(&self, system: &str) -> Arc<Notify> {
        lock(&self.work)
            .entry(system.to_owned())
            .or_default()
            .clone()
    }

    /// Wakes every session waiting for work of `system`.
    pub(crate) fn work_available(&self, system: &str) {
        if let Some(notify) = lock(&self.work).get(system) {
            notify.notify_waiters();
        }
    }

    /// Registers `taker` for `systems` (a session ready to be handed new calls).
    pub(crate) fn add_taker(&self, systems: &[String], taker: &Arc<Taker>) {
        let mut takers = lock(&self.takers);
        for system in systems {
            takers
                .entry(system.clone())
                .or_default()
                .push(Arc::clone(taker));
        }
    }

    /// Unregisters the takers of `session`: no call is handed to it after this.
    pub(crate) fn remove_taker(&self, session: &str) {
        let mut takers = lock(&self.takers);
        takers.retain(|_, list| {
            list.retain(|t| t.session != session);
            !list.is_empty()
        });
    }

    /// The registered taker of `system` with the most free credits, one of them
    /// taken for the caller; `None` when no session has any. A store that then
    /// fails to hand the call over gives the credit back.
    pub(crate) fn pick_taker(&self, system: &str) -> Option<Arc<Taker>> {
        let takers = lock(&self.takers);
        let list = takers.get(system)?;
        let best = list.iter().max_by_key(|t| t.credits())?;
        if best.take(1) == 1 {
            return Some(Arc::clone(best));
        }
        // Credits move concurrently: any taker with one left will do.
        list.iter().find(|t| t.take(1) == 1).cloned()
    }

    /// A waiter for `call_id` reaching a final state. Keep it for as long as you wait.
    pub(crate) fn watch_call(self: &Arc<Self>, call_id: &str) -> CallWatch {
        let slot = lock(&self.calls)
            .entry(call_id.to_owned())
            .or_default()
            .clone();
        CallWatch {
            signals: Arc::clone(self),
            call_id: call_id.to_owned(),
            slot,
        }
    }

    /// Wakes everyone waiting for `call_id`.
    pub(crate) fn call_finished(&self, call_id: &str) {
        if let Some(slot) = lock(&self.calls).get(call_id) {
            slot.notify.notify_waiters();
        }
    }

    /// Wakes everyone waiting for `call_id`, handing them how it ended. Call it only
    /// once `end` is committed.
    pub(crate) fn call_ended(&self, call_id: &str, end: CallEnd) {
        let slot = lock(&self.calls).get(call_id).cloned();
        if let Some(slot) = slot {
            *lock(&slot.end) = Some(end);
            slot.notify.notify_waiters();
        }
    }
}

/// Interest in one call's end; unregisters itself when dropped by its last holder.
#[derive(Debug)]
pub(crate) struct CallWatch {
    signals: Arc<Signals>,
    call_id: String,
    slot: Arc<CallSlot>,
}

impl CallWatch {
    /// The notify to wait on (create and enable its `Notified` before checking the
    /// call's state).
    pub(crate) fn notify(&self) -> &Notify {
        &self.slot.notify
    }

    /// The watched call's id.
    pub(crate) fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Whether the store said how the call ended ([`Signals::call_ended`]).
    pub(crate) fn has_ended(&self) -> bool {
        lock(&self.slot.end).is_some()
    }

    /// How the call ended, if its store said so with [`Signals::call_ended`] (check
    /// after enabling the `Notified`, like the call's state). The only watch of a
    /// call takes the end (its outcome is not copied); with other watches it gets a
    /// copy. A watch that finds nothing reads the call from the store, which holds
    /// the end already: this is a shortcut, never the only source.
    pub(crate) fn take_ended(&self) -> Option<CallEnd> {
        let mut end = lock(&self.slot.end);
        // The map holds one reference and this watch another.
        if Arc::strong_count(&self.slot) <= 2 {
            end.take()
        } else {
            end.clone()
        }
    }
}

impl Drop for CallWatch {
    fn drop(&mut self) {
        let mut calls = lock(&self.signals.calls);
        // The map holds one reference and this watch another: we are the last.
        if Arc::strong_count(&self.slot) <= 2 {
            calls.remove(&self.call_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn call_watch_wakes_and_unregisters() {
        let signals = Arc::new(Signals::default());
        let watch = signals.watch_call("c1");
        {
            let notified = watch.notify().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            signals.call_finished("c1");
            notified.await;
        }
        drop(watch);
        assert!(lock(&signals.calls).is_empty());
    }

    fn end() -> CallEnd {
        CallEnd {
            state: CallState::Succeeded,
            attempts: 1,
            completed_at: OffsetDateTime::UNIX_EPOCH,
            agent: Some("a".into()),
            outcome: None,
        }
    }

    #[test]
    fn the_only_watch_takes_the_end_and_shared_watches_copy_it() {
        let signals = Arc::new(Signals::default());
        let only = signals.watch_call("c1");
        signals.call_ended("c1", end());
        assert!(only.has_ended());
        assert_eq!(only.take_ended().map(|e| e.attempts), Some(1));
        // Taken: a second look finds nothing and reads the store instead.
        assert!(!only.has_ended());
        assert!(only.take_ended().is_none());
        drop(only);

        let first = signals.watch_call("c2");
        let second = signals.watch_call("c2");
        signals.call_ended("c2", end());
        assert!(first.take_ended().is_some());
        assert!(second.take_ended().is_some());
    }
}
