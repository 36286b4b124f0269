//! Limits that protect SAP and the relay from a runaway flow: per API key a rate
//! (a token bucket: `rate_per_sec`, `burst`) and a cap on its calls queued or
//! running (`max_in_flight`); per system a cap on the calls queued
//! (`[queue] max_depth_per_system`). And [`LimitCounters`], the refusals they
//! made, for `/metrics`.
//!
//! The token buckets live in this process: with several relay replicas each
//! replica grants a key its full rate (a key's rate over the cluster is at most
//! replicas × `rate_per_sec`). The caps count calls in the queue store, so they
//! hold across replicas; a count and the enqueue that follows it are not one step,
//! so requests of one key arriving at the same moment may pass a cap by as many
//! as arrive together.
//!
//! Time is passed in ([`RateLimiter::check`] takes `now`), so tests drive the
//! buckets with a clock of their own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A key's rate: tokens per second and the bucket's size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rate {
    /// Tokens added per second.
    pub(crate) per_sec: f64,
    /// The most tokens the bucket holds (requests at once after a pause).
    pub(crate) burst: f64,
}

impl Rate {
    /// The rate of `per_sec` with a bucket of `burst` (default: one second's
    /// worth, at least 1).
    pub(crate) fn new(per_sec: f64, burst: Option<u32>) -> Self {
        let burst = burst.map_or_else(|| per_sec.ceil().max(1.0), f64::from);
        Self { per_sec, burst }
    }
}

/// A token bucket: full at start, refilled at its rate, one token per request.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: Rate,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub(crate) fn new(rate: Rate, now: Instant) -> Self {
        Self {
            rate,
            tokens: rate.burst,
            last: now,
        }
    }

    /// Takes a token at `now`; without one, how long until there is one.
    pub(crate) fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate.per_sec).min(self.rate.burst);
        self.last = self.last.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / self.rate.per_sec;
            Err(Duration::try_from_secs_f64(wait).unwrap_or(Duration::from_secs(1)))
        }
    }
}

/// The token buckets of the API keys that have a rate, by key name.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    buckets: Mutex<HashMap<String, TokenBucket>>,
}

impl RateLimiter {
    /// Takes a token from `key`'s bucket at `now` (a new bucket, full, for a key
    /// seen first or whose rate changed with a reload); without one, how long
    /// until there is one.
    pub(crate) fn check(&self, key: &str, rate: Rate, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        match buckets.get_mut(key) {
            Some(bucket) if bucket.rate == rate => bucket.take(now),
            _ => {
                let mut bucket = TokenBucket::new(rate, now);
                let taken = bucket.take(now);
                buckets.insert(key.to_owned(), bucket);
                taken
            }
        }
    }
}

/// Why a limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitReason {
    /// The key's rate.
    Rate,
    /// The key's calls queued or running.
    InFlight,
    /// The system's queued calls.
    QueueDepth,
}

impl LimitReason {
    fn label(self) -> &'static str {
        match self {
            Self::Rate => "rate",
            Self::InFlight => "in_flight",
            Self::QueueDepth => "queue_depth",
        }
    }
}

/// The refusals of the limits, counted for `/metrics` ([`LimitCounters::write`]
/// writes their lines).
#[derive(Debug, Default)]
pub(crate) struct LimitCounters {
    rate_limited: Mutex<HashMap<String, u64>>,
    rate: AtomicU64,
    in_flight: AtomicU64,
    queue_depth: AtomicU64,
}

impl LimitCounters {
    /// Counts a refusal for `reason` of a request of `key`.
    pub(crate) fn refused(&self, reason: LimitReason, key: &str) {
        let counter = match reason {
            LimitReason::Rate => {
                *self
                    .rate_limited
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(key.to_owned())
                    .or_default() += 1;
                &self.rate
            }
            LimitReason::InFlight => &self.in_flight,
            LimitReason::QueueDepth => &self.queue_depth,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Refusals for `reason` so far.
    pub(crate) fn count(&self, reason: LimitReason) -> u64 {
        match reason {
            LimitReason::Rate => &self.rate,
            LimitReason::InFlight => &self.in_flight,
            LimitReason::QueueDepth => &self.queue_depth,
        }
        .load(Ordering::Relaxed)
    }

    /// Brings the relay's metrics up to these counts:
    /// `sapbridge_rate_limited_total{key=…}` and
    /// `sapbridge_limit_refusals_total{reason=…}`.
    pub(crate) fn export(&self, metrics: &crate::metrics::Metrics) {
        let by_key: Vec<(String, u64)> = self
            .rate_limited
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        for (key, n) in by_key {
            let counter = metrics
                .rate_limited
                .get_or_create(&crate::metrics::KeyLabels { key })
                .clone();
            metrics.catch_up(&counter, n);
        }
        for reason in [
            LimitReason::Rate,
            LimitReason::InFlight,
            LimitReason::QueueDepth,
        ] {
            let counter = metrics
                .limit_refusals
                .get_or_create(&crate::metrics::ReasonLabels {
                    reason: reason.label().to_owned(),
                })
                .clone();
            metrics.catch_up(&counter, self.count(reason));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(Rate::new(2.0, Some(3)), start);
        for _ in 0..3 {
            assert_eq!(bucket.take(start), Ok(()));
        }
        // Empty: the next token comes in half a second (2 per second).
        assert_eq!(bucket.take(start), Err(ms(500)));
        assert_eq!(bucket.take(start + ms(250)), Err(ms(250)));
        assert_eq!(bucket.take(start + ms(500)), Ok(()));
        assert!(bucket.take(start + ms(500)).is_err());
        // A long pause refills no more than the burst.
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(bucket.take(later), Ok(()));
        }
        assert!(bucket.take(later).is_err());
    }

    #[test]
    fn a_clock_going_back_adds_nothing() {
        let start = Instant::now() + Duration::from_secs(10);
        let mut bucket = TokenBucket::new(Rate::new(1.0, Some(1)), start);
        assert_eq!(bucket.take(start), Ok(()));
        assert!(bucket.take(start - Duration::from_secs(5)).is_err());
        assert_eq!(bucket.take(start + Duration::from_secs(1)), Ok(()));
    }

    #[test]
    fn the_default_burst_is_one_seconds_worth() {
        assert_eq!(Rate::new(0.5, None).burst, 1.0);
        assert_eq!(Rate::new(2.5, None).burst, 3.0);
    }

    #[test]
    fn keys_have_buckets_of_their_own_renewed_when_their_rate_changes() {
        let limiter = RateLimiter::default();
        let now = Instant::now();
        let one = Rate::new(1.0, Some(1));
        assert!(limiter.check("a", one, now).is_ok());
        assert!(limiter.check("a", one, now).is_err());
        assert!(limiter.check("b", one, now).is_ok());
        // A reload that changes a's rate starts it afresh.
        assert!(limiter.check("a", Rate::new(5.0, Some(2)), now).is_ok());
        assert!(limiter.check("a", Rate::new(5.0, Some(2)), now).is_ok());
        assert!(limiter.check("a", Rate::new(5.0, Some(2)), now).is_err());
    }

    #[test]
    fn counters_are_written_by_key_and_reason() {
        let counters = LimitCounters::default();
        counters.refused(LimitReason::Rate, "flow \"a\"");
        counters.refused(LimitReason::Rate, "flow \"a\"");
        counters.refused(LimitReason::QueueDepth, "b");
        let metrics = crate::metrics::Metrics::new();
        counters.export(&metrics);
        // A second scrape adds nothing that did not happen.
        counters.export(&metrics);
        let out = metrics.encode();
        assert!(out.contains("sapbridge_rate_limited_total{key=\"flow \\\"a\\\"\"} 2\n"));
        assert!(out.contains("sapbridge_limit_refusals_total{reason=\"rate\"} 2\n"));
        assert!(out.contains("sapbridge_limit_refusals_total{reason=\"in_flight\"} 0\n"));
        assert!(out.contains("sapbridge_limit_refusals_total{reason=\"queue_depth\"} 1\n"));
    }
}
