//! How many final calls the file holds per state, kept in memory. Counting them in
//! the file took a scan of every retained call on each `/metrics` scrape (0.27 s
//! per million calls here). The count is taken from the file once at open; after
//! that each change adds its [`FinalDelta`] to the batch's effects, applied only
//! when the batch committed.

use std::sync::atomic::{AtomicU64, Ordering};

use super::super::CallState;

/// The final states, in the order of the counters.
const FINAL_STATES: usize = 4;

/// Retained final calls per state.
#[derive(Debug, Default)]
pub(super) struct FinalCounts {
    counts: [AtomicU64; FINAL_STATES],
}

/// Changes to [`FinalCounts`] made by one batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct FinalDelta {
    changes: [i64; FINAL_STATES],
}

fn slot(state: &CallState) -> Option<usize> {
    match state {
        CallState::Queued | CallState::Leased { .. } => None,
        CallState::Succeeded => Some(0),
        CallState::Failed => Some(1),
        CallState::Expired => Some(2),
        CallState::Cancelled => Some(3),
    }
}

impl FinalDelta {
    /// `n` more (or, negative, fewer) calls in `state`; open states are not counted.
    pub(super) fn add(&mut self, state: &CallState, n: i64) {
        if let Some(i) = slot(state) {
            self.changes[i] += n;
        }
    }

    /// Adds another batch member's changes.
    pub(super) fn absorb(&mut self, other: Self) {
        for (mine, theirs) in self.changes.iter_mut().zip(other.changes) {
            *mine += theirs;
        }
    }
}

impl FinalCounts {
    /// Counts as found in the file: `(state, count)` pairs.
    pub(super) fn seeded(found: impl IntoIterator<Item = (CallState, u64)>) -> Self {
        let counts = Self::default();
        for (state, n) in found {
            if let Some(i) = slot(&state) {
                counts.counts[i].store(n, Ordering::Relaxed);
            }
        }
        counts
    }

    /// Applies a committed batch's changes (never below zero).
    pub(super) fn apply(&self, delta: &FinalDelta) {
        for (count, change) in self.counts.iter().zip(delta.changes) {
            if change == 0 {
                continue;
            }
            let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                Some(now.saturating_add_signed(change))
            });
        }
    }

    /// `(succeeded, failed, expired, cancelled)`.
    pub(super) fn get(&self) -> (u64, u64, u64, u64) {
        let [s, f, e, c] = &self.counts;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (load(s), load(f), load(e), load(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_count_final_states_only_and_never_go_below_zero() {
        let counts = FinalCounts::seeded([(CallState::Succeeded, 5), (CallState::Queued, 9)]);
        let mut delta = FinalDelta::default();
        delta.add(&CallState::Succeeded, 2);
        delta.add(&CallState::Queued, 100);
        let mut other = FinalDelta::default();
        other.add(&CallState::Cancelled, 1);
        other.add(&CallState::Expired, -3);
        delta.absorb(other);
        counts.apply(&delta);
        assert_eq!(counts.get(), (7, 0, 0, 1));
    }
}
