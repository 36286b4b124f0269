//! The reaper: a background task that runs [`Queue::reap`] every
//! [`REAP_INTERVAL`] until cancelled, so lapsed leases return to the queue, calls
//! past their TTL expire (waking their waiters) and old results are purged.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::{Queue, Reaped, Retention};
use crate::metrics::Metrics;

/// How often the reaper runs; also the granularity of queue TTL expiry.
pub(crate) const REAP_INTERVAL: Duration = Duration::from_millis(500);

/// Every how many passes the audit log is purged of records past its retention
/// (the first pass does it too).
const AUDIT_PURGE_EVERY: u32 = 120;

/// What is told of each call a reaper pass ended (the audit log records it).
pub(crate) type OnEnded = Box<dyn Fn(&str) + Send + Sync>;

/// Runs the reaper until `stop` is cancelled, counting what it does in `metrics`.
/// Store errors are logged and retried on the next tick. Each call a pass ends is
/// handed to `on_ended`.
pub(crate) async fn run(
    queue: Arc<dyn Queue>,
    metrics: Arc<Metrics>,
    retention: Retention,
    stop: CancellationToken,
    on_ended: OnEnded,
) {
    let mut tick = tokio::time::interval(REAP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut passes = 0_u32;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        if passes.is_multiple_of(AUDIT_PURGE_EVERY) {
            match queue
                .purge_audit(OffsetDateTime::now_utc() - retention.audit)
                .await
            {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, "audit records past their retention deleted"),
                Err(error) => tracing::warn!(%error, "purging the audit log failed"),
            }
            // Finished webhook deliveries stay listed as long as results do.
            match queue
                .purge_deliveries(OffsetDateTime::now_utc() - retention.results)
                .await
            {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, "webhook deliveries past retention deleted"),
                Err(error) => tracing::warn!(%error, "purging webhook deliveries failed"),
            }
        }
        passes = passes.wrapping_add(1);
        let reaped = queue.reap(OffsetDateTime::now_utc(), retention).await;
        if let Ok(reaped) = &reaped {
            for call_id in &reaped.ended {
                on_ended(call_id);
            }
        }
        match reaped {
            Ok(reaped) if reaped != Reaped::default() => {
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
