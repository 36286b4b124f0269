//! How many final calls the file holds per state, kept in memory. Counting them in
//! the file took a scan of every retained call on each `/metrics` scrape (0.27 s
//! per million calls here). The count is taken from the file once at open; after
//! that each change adds its [`FinalDelta`] to the batch's effects, applied only
//! when the batch committed.

use std::sync::{Mutex, PoisonError};

use super::super::{CallState, QueueStats};

/// Retained final calls per state (the open states' counters stay unused: the
/// file's partial indexes count those).
#[derive(Debug, Default)]
pub(super) struct FinalCounts {
    counts: Mutex<QueueStats>,
}

/// Changes to [`FinalCounts`] made by one batch: calls that entered (`+n`) or left
/// (`-n`) a final state.
#[derive(Debug, Default)]
pub(super) struct FinalDelta {
    changes: Vec<(CallState, i64)>,
}

impl FinalDelta {
    /// `n` more (or, negative, fewer) calls in the final `state`.
    pub(super) fn add(&mut self, state: &CallState, n: i64) {
        if state.is_final() {
            self.changes.push((state.clone(), n));
        }
    }

    /// Adds another batch member's changes.
    pub(super) fn absorb(&mut self, other: Self) {
        self.changes.extend(other.changes);
    }
}

impl FinalCounts {
    /// Counts as found in the file.
    pub(super) fn seeded(found: QueueStats) -> Self {
        Self {
            counts: Mutex::new(found),
        }
    }

    /// Applies a committed batch's changes.
    pub(super) fn apply(&self, delta: &FinalDelta) {
        if delta.changes.is_empty() {
            return;
        }
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        for (state, n) in &delta.changes {
            counts.add(state, *n);
        }
    }

    /// The counts (queued and leased: zero).
    pub(super) fn get(&self) -> QueueStats {
        *self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_count_final_states_only_and_never_go_below_zero() {
        let counts = FinalCounts::seeded(QueueStats {
            succeeded: 5,
            ..QueueStats::default()
        });
        let mut delta = FinalDelta::default();
        delta.add(&CallState::Succeeded, 2);
        delta.add(&CallState::Queued, 100);
        let mut other = FinalDelta::default();
        other.add(&CallState::Cancelled, 1);
        other.add(&CallState::Expired, -3);
        delta.absorb(other);
        counts.apply(&delta);
        let c = counts.get();
        assert_eq!(
            (c.succeeded, c.failed, c.expired, c.cancelled),
            (7, 0, 0, 1)
        );
    }
}
