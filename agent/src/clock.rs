//! The agent's wall clock: every wall-clock read in the agent goes through
//! [`now_unix_ms`] (journal timestamps, the journal sweep's cutoff), and clippy
//! refuses `SystemTime::now` anywhere else in the crate (`agent/clippy.toml`).
//!
//! Nothing that decides whether a unit may run reads it: the relay sends a unit's
//! deadline as the time remaining and the agent measures it on the monotonic clock
//! from delivery, so an agent whose wall clock is off runs the same units. (TLS
//! certificate validity is checked by rustls on the system clock, outside this
//! module.)
//!
//! With the `test-clock` feature, [`set_offset_ms`] shifts this clock for the
//! whole process, so a test can run the agent with its clock ahead of or behind
//! the relay's. The binary never enables the feature.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds added to the system clock (0 unless a test set it).
static OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// Now, in Unix milliseconds (0 before 1970, saturating far in the future).
pub fn now_unix_ms() -> i64 {
    #[allow(clippy::disallowed_methods)] // the one wall-clock read
    let system = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    system.saturating_add(OFFSET_MS.load(Ordering::Relaxed))
}

/// Shifts the agent's wall clock by `offset_ms` (negative: behind) for the whole
/// process, from now on. For tests only.
#[cfg(feature = "test-clock")]
pub fn set_offset_ms(offset_ms: i64) {
    OFFSET_MS.store(offset_ms, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_reads_the_system_clock_without_an_offset() {
        #[allow(clippy::disallowed_methods)]
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let ours = u128::try_from(now_unix_ms()).unwrap();
        assert!(ours.abs_diff(system) < 60_000, "{ours} vs {system}");
    }
}
