//! The reaper: a background task that runs [`Queue::reap`] every
//! [`REAP_INTERVAL`] until cancelled, so lapsed leases return to the queue, calls
//! past their TTL expire (waking their waiters) and old results are purged.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::{Queue, Retention};
use crate::metrics::Metrics;

/// How often the reaper runs; also the granularity of queue TTL expiry.
pub(crate) const REAP_INTERVAL: Duration = Duration::from_millis(500);

/// Runs the reaper until `stop` is cancelled, counting what it does in `metrics`.
/// Store errors are logged and retried on the next tick.
pub(crate) async fn run(
    queue: Arc<dyn Queue>,
    metrics: Arc<Metrics>,
    retention: Retention,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(REAP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        match queue.reap(OffsetDateTime::now_utc(), retention).await {
            Ok(reaped) if reaped != Default::default() => {
                let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
                metrics.leases_lapsed.inc_by(count(reaped.requeued));
                metrics.calls_expired.inc_by(count(reaped.expired));
                metrics
                    .calls_outcome_unknown
                    .inc_by(count(reaped.failed_unknown));
                tracing::info!(
                    requeued = reaped.requeued,
                    expired = reaped.expired,
                    failed_unknown = reaped.failed_unknown,
                    purged = reaped.purged,
                    keys_forgotten = reaped.keys_forgotten,
                    "reaper pass"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "reaper pass failed"),
        }
    }
}
