//! The periodic sweep that keeps the journal small: rows the relay acknowledged
//! longer ago than the retention are deleted. Unacknowledged outcomes and units in
//! doubt are never swept.
//!
//! Runs at startup and then every [`SWEEP_EVERY`], on `tokio::time`, until the
//! shutdown token is cancelled.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Journal, now_ms};

/// How often the sweep runs.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Purges acknowledged rows older than `retention` now and every [`SWEEP_EVERY`]
/// until `shutdown` is cancelled. Cancel-safe.
pub(crate) async fn sweep(journal: Journal, retention: Duration, shutdown: CancellationToken) {
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let mut ticker = tokio::time::interval(SWEEP_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let before_ms = now_ms().saturating_sub(retention_ms);
        match journal.purge_acked_before(before_ms).await {
            Ok(0) => debug!("journal sweep: nothing to purge"),
            Ok(purged) => info!(purged, "journal sweep purged acknowledged calls"),
            Err(error) => warn!(error = %error, "journal sweep failed; retrying at the next sweep"),
        }
    }
}
