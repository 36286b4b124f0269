//! Reconnect delays: capped exponential backoff with full jitter.
//!
//! Attempt `n` (from 0) waits a random time in `0..=min(max, initial * 2^n)` ("full
//! jitter", so a fleet of agents that lost the relay at the same moment does not
//! reconnect in lockstep). After a healthy session the caller [`Backoff::reset`]s it,
//! so one blip after a day of work costs the initial delay, not the maximum.

use std::time::Duration;

use rand::Rng;

/// The reconnect delay state of one agent.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `initial` and never exceeding `max`.
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// The upper bound of the next delay (before jitter).
    pub(crate) fn ceiling(&self) -> Duration {
        // 2^20 times the initial delay is far beyond any sensible maximum.
        let factor = 1u32 << self.attempt.min(20);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The next delay: random in `0..=ceiling`, and the ceiling doubles for next time.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }

    /// Sleeps for the next delay (on `tokio::time`, so tests can pause the clock) and
    /// returns how long it slept. Cancel-safe: dropping it only skips the sleep, but
    /// the attempt still counts.
    pub(crate) async fn wait(&mut self) -> Duration {
        let delay = self.next_delay();
        tokio::time::sleep(delay).await;
        delay
    }

    /// Starts over from the initial delay, after a healthy session.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let mut backoff = Backoff::new(100 * MS, 1000 * MS);
        let mut ceilings = Vec::new();
        for _ in 0..6 {
            ceilings.push(backoff.ceiling().as_millis());
            backoff.next_delay();
        }
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn delays_stay_within_the_jitter_range() {
        let mut backoff = Backoff::new(50 * MS, 400 * MS);
        for _ in 0..200 {
            let ceiling = backoff.ceiling();
            let delay = backoff.next_delay();
            assert!(delay <= ceiling, "{delay:?} > {ceiling:?}");
        }
    }

    #[test]
    fn jitter_spreads_the_delays() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let mut backoff = Backoff::new(10_000 * MS, 10_000 * MS);
            seen.insert(backoff.next_delay());
        }
        assert!(seen.len() > 10, "full jitter should vary: {seen:?}");
    }

    #[test]
    fn many_attempts_do_not_overflow() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        for _ in 0..1000 {
            assert!(backoff.next_delay() <= Duration::from_secs(30));
        }
        assert_eq!(backoff.ceiling(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn wait_sleeps_for_the_delay_on_tokio_time() {
        let mut backoff = Backoff::new(1000 * MS, 8000 * MS);
        for _ in 0..5 {
            let start = Instant::now();
            let delay = backoff.wait().await;
            assert_eq!(start.elapsed(), delay);
        }
        assert_eq!(backoff.ceiling(), 8000 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn reset_after_a_healthy_run_starts_over() {
        let mut backoff = Backoff::new(500 * MS, 30_000 * MS);
        for _ in 0..10 {
            backoff.wait().await;
        }
        assert_eq!(backoff.ceiling(), 30_000 * MS);
        backoff.reset();
        assert_eq!(backoff.ceiling(), 500 * MS);
        let start = Instant::now();
        backoff.wait().await;
        assert!(start.elapsed() <= 500 * MS);
    }
}
