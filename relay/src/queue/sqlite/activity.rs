//! The overview's activity (see `queue::activity`) read from the file: finished
//! calls through the index of completion times, refusals through the audit log's
//! index of times.

use rusqlite::Connection;

use super::super::QueueError;
use super::super::activity::{Activity, CallMinute, NANOS_PER_MINUTE, RefusalCount, refusals_sql};

/// Finished calls per system and minute, and refusals per system, event and
/// outcome, at or after `since` (Unix nanoseconds).
pub(super) fn since(conn: &Connection, since: i64) -> Result<Activity, QueueError> {
    let mut stmt = conn.prepare_cached(
        "SELECT system, completed_at / ?2, count(*), sum(state <> 'succeeded')
         FROM calls INDEXED BY calls_completed_at
         WHERE completed_at > 0 AND completed_at >= ?1
           AND state IN ('succeeded', 'failed', 'expired')
         GROUP BY 1, 2",
    )?;
    let mut rows = stmt.query((since, NANOS_PER_MINUTE))?;
    let mut calls = Vec::new();
    while let Some(row) = rows.next()? {
        calls.push(CallMinute {
            system: row.get(0)?,
            minute: row.get(1)?,
            finished: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
            errors: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
        });
    }
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT system, event, outcome, count(*) FROM audit INDEXED BY audit_at
         WHERE at >= ?1 AND outcome IN ({}) GROUP BY 1, 2, 3",
        refusals_sql()
    ))?;
    let mut rows = stmt.query([since])?;
    let mut refusals = Vec::new();
    while let Some(row) = rows.next()? {
        refusals.push(RefusalCount {
            system: row.get(0)?,
            event: row.get(1)?,
            outcome: row.get(2)?,
            count: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
        });
    }
    Ok(Activity { calls, refusals })
}
