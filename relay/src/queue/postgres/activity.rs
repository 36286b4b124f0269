//! The overview's activity (see `queue::activity`) read from the shared
//! database: finished calls through the partial index of completion times,
//! refusals through the audit log's index of times. Every replica reads the same
//! rows, so every replica's console shows the same figures.

use tokio_postgres::GenericClient;

use super::super::QueueError;
use super::super::activity::{Activity, CallMinute, NANOS_PER_MINUTE, RefusalCount, refusals_sql};
use super::rows::store_error;

/// Finished calls per system and minute at or after `since` (Unix nanoseconds).
pub(super) const CALLS_SQL: &str = "SELECT system, completed_at / $2, count(*),
        count(*) FILTER (WHERE state <> 'succeeded')
    FROM sapbridge_calls
    WHERE completed_at >= $1 AND state IN ('succeeded', 'failed', 'expired')
    GROUP BY 1, 2";

/// Finished calls per system and minute, and refusals per system, event and
/// outcome, at or after `since` (Unix nanoseconds).
pub(super) async fn since(client: &impl GenericClient, since: i64) -> Result<Activity, QueueError> {
    let rows = client
        .query(CALLS_SQL, &[&since, &NANOS_PER_MINUTE])
        .await
        .map_err(store_error)?;
    let calls = rows
        .iter()
        .map(|row| CallMinute {
            system: row.get(0),
            minute: row.get(1),
            finished: u64::try_from(row.get::<_, i64>(2)).unwrap_or(0),
            errors: u64::try_from(row.get::<_, i64>(3)).unwrap_or(0),
        })
        .collect();
    let rows = client
        .query(&refusals_query(), &[&since])
        .await
        .map_err(store_error)?;
    let refusals = rows
        .iter()
        .map(|row| RefusalCount {
            system: row.get(0),
            event: row.get(1),
            outcome: row.get(2),
            count: u64::try_from(row.get::<_, i64>(3)).unwrap_or(0),
        })
        .collect();
    Ok(Activity { calls, refusals })
}

/// Refusals per system, event and outcome at or after `$1`.
pub(super) fn refusals_query() -> String {
    format!(
        "SELECT system, event, outcome, count(*) FROM sapbridge_audit
         WHERE at >= $1 AND outcome IN ({}) GROUP BY 1, 2, 3",
        refusals_sql()
    )
}
