//! The audit log in SQLite: the `audit` table's appends (one writer job per
//! batch, so they share the group commit of the calls' changes), pages (on the
//! read connections) and purges.

use rusqlite::{Connection, Row, params};

use super::super::audit::{from_nanos, nanos};
use super::super::{AuditFilter, AuditRecord, QueueError};
use super::writer::Effects;

/// The columns [`record`] reads, in its order.
const COLUMNS: &str = "seq, at, event, key, client, system, method, target, call_id, outcome, \
     status, duration_ms, agent, detail";

/// Appends `records` inside the writer's open batch transaction.
pub(super) fn append(
    conn: &Connection,
    effects: &mut Effects,
    records: &[AuditRecord],
) -> Result<(), QueueError> {
    effects.audit_changes += 1;
    let mut insert = conn.prepare_cached(
        "INSERT INTO audit (at, event, key, client, system, method, target, call_id, outcome, \
         status, duration_ms, agent, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    for r in records {
        insert.execute(params![
            nanos(r.at),
            r.event,
            r.key,
            r.client,
            r.system,
            r.method,
            r.target,
            r.call_id,
            r.outcome,
            r.status,
            r.duration_ms,
            r.agent,
            r.detail,
        ])?;
    }
    Ok(())
}

/// The page `filter` selects, in storing order.
pub(super) fn page(
    conn: &Connection,
    filter: &AuditFilter,
) -> Result<Vec<AuditRecord>, QueueError> {
    let mut select = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM audit \
         WHERE seq > ?1 AND at >= ?2 AND at < ?3 \
           AND (?4 IS NULL OR system = ?4) AND (?5 IS NULL OR key = ?5) \
           AND (?6 IS NULL OR outcome = ?6) AND (?7 IS NULL OR call_id = ?7) \
         ORDER BY seq LIMIT ?8"
    ))?;
    let limit = i64::try_from(filter.page_size()).unwrap_or(1);
    let rows = select.query_map(
        params![
            filter.after.unwrap_or(0),
            filter.from.map_or(i64::MIN, nanos),
            filter.to.map_or(i64::MAX, nanos),
            filter.system,
            filter.key,
            filter.outcome,
            filter.call_id,
            limit,
        ],
        record,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes the records of before `before` (Unix nanoseconds).
pub(super) fn purge(
    conn: &Connection,
    effects: &mut Effects,
    before: i64,
) -> Result<usize, QueueError> {
    effects.audit_changes += 1;
    Ok(conn.execute("DELETE FROM audit WHERE at < ?1", [before])?)
}

/// How many calls of `owner` are queued or leased, at most `cap` (the limits'
/// count: `calls_open_by_owner` holds exactly those rows).
pub(super) fn open_calls_of(conn: &Connection, owner: &str, cap: u64) -> Result<u64, QueueError> {
    let mut count = conn.prepare_cached(
        "SELECT count(*) FROM (SELECT 1 FROM calls INDEXED BY calls_open_by_owner \
         WHERE owner = ?1 AND state IN ('queued', 'leased') LIMIT ?2)",
    )?;
    let n: i64 = count.query_row(
        params![owner, i64::try_from(cap).unwrap_or(i64::MAX)],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// How many calls of `system` are queued, at most `cap`.
pub(super) fn queued_in(conn: &Connection, system: &str, cap: u64) -> Result<u64, QueueError> {
    let mut count = conn.prepare_cached(
        "SELECT count(*) FROM (SELECT 1 FROM calls \
         WHERE system = ?1 AND state = 'queued' LIMIT ?2)",
    )?;
    let n: i64 = count.query_row(
        params![system, i64::try_from(cap).unwrap_or(i64::MAX)],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn record(row: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        seq: row.get(0)?,
        at: from_nanos(row.get(1)?),
        event: row.get(2)?,
        key: row.get(3)?,
        client: row.get(4)?,
        system: row.get(5)?,
        method: row.get(6)?,
        target: row.get(7)?,
        call_id: row.get(8)?,
        outcome: row.get(9)?,
        status: row.get(10)?,
        duration_ms: row.get(11)?,
        agent: row.get(12)?,
        detail: row.get(13)?,
    })
}
