//! Wake-ups between the queue and its users: one [`Notify`] per system (an idle
//! agent session learns at once that work arrived) and one per awaited call (a
//! synchronous HTTP request returns the moment the outcome is stored).
//!
//! Both use `notify_waiters`, which stores no permit: a waiter must create and
//! `enable` its `Notified` future *before* it looks at the queue, then await it.
//! Waiters also poll with a timeout, so a signal lost across replicas only costs
//! latency.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// The queue's wake-up signals. Cheap to share; all methods are non-blocking.
#[derive(Debug, Default)]
pub(crate) struct Signals {
    work: Mutex<HashMap<String, Arc<Notify>>>,
    calls: Mutex<HashMap<String, Arc<Notify>>>,
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

    /// A waiter for `call_id` reaching a final state. Keep it for as long as you wait.
    pub(crate) fn watch_call(self: &Arc<Self>, call_id: &str) -> CallWatch {
        let notify = lock(&self.calls)
            .entry(call_id.to_owned())
            .or_default()
            .clone();
        CallWatch {
            signals: Arc::clone(self),
            call_id: call_id.to_owned(),
            notify,
        }
    }

    /// Wakes everyone waiting for `call_id`.
    pub(crate) fn call_finished(&self, call_id: &str) {
        if let Some(notify) = lock(&self.calls).get(call_id) {
            notify.notify_waiters();
        }
    }
}

/// Interest in one call's end; unregisters itself when dropped by its last holder.
#[derive(Debug)]
pub(crate) struct CallWatch {
    signals: Arc<Signals>,
    call_id: String,
    notify: Arc<Notify>,
}

impl CallWatch {
    /// The notify to wait on (create and enable its `Notified` before checking the
    /// call's state).
    pub(crate) fn notify(&self) -> &Notify {
        &self.notify
    }
}

impl Drop for CallWatch {
    fn drop(&mut self) {
        let mut calls = lock(&self.signals.calls);
        // The map holds one reference and this watch another: we are the last.
        if Arc::strong_count(&self.notify) <= 2 {
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
}
