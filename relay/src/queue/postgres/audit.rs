//! The audit log in PostgreSQL: `sapbridge_audit`, appended a batch at a time
//! with one statement (arrays unnested), read by pages, purged by time.

use tokio_postgres::GenericClient;
use tokio_postgres::Row;

use super::super::audit::{from_nanos, nanos};
use super::super::{AuditFilter, AuditRecord, QueueError};
use super::rows::store_error;

/// Appends `records` in one statement.
pub(super) async fn append(
    client: &impl GenericClient,
    records: &[AuditRecord],
) -> Result<(), QueueError> {
    fn column<T>(records: &[AuditRecord], f: impl Fn(&AuditRecord) -> T) -> Vec<T> {
        records.iter().map(f).collect()
    }
    let at = column(records, |r| nanos(r.at));
    let event = column(records, |r| r.event.clone());
    let key = column(records, |r| r.key.clone());
    let peer = column(records, |r| r.client.clone());
    let system = column(records, |r| r.system.clone());
    let method = column(records, |r| r.method.clone());
    let target = column(records, |r| r.target.clone());
    let call_id = column(records, |r| r.call_id.clone());
    let outcome = column(records, |r| r.outcome.clone());
    let status = column(records, |r| r.status.map(i32::from));
    let duration = column(records, |r| r.duration_ms);
    let agent = column(records, |r| r.agent.clone());
    let detail = column(records, |r| r.detail.clone());
    client
        .execute(
            "INSERT INTO sapbridge_audit (at, event, key, client, system, method, target, \
             call_id, outcome, status, duration_ms, agent, detail) \
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], \
             $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::integer[], \
             $11::bigint[], $12::text[], $13::text[])",
            &[
                &at, &event, &key, &peer, &system, &method, &target, &call_id, &outcome, &status,
                &duration, &agent, &detail,
            ],
        )
        .await
        .map_err(store_error)?;
    Ok(())
}

/// The page `filter` selects, in storing order.
pub(super) async fn page(
    client: &impl GenericClient,
    filter: &AuditFilter,
) -> Result<Vec<AuditRecord>, QueueError> {
    let limit = i64::try_from(filter.page_size()).unwrap_or(1);
    let rows = client
        .query(
            "SELECT seq, at, event, key, client, system, method, target, call_id, outcome, \
             status, duration_ms, agent, detail FROM sapbridge_audit \
             WHERE seq > $1 AND at >= $2 AND at < $3 \
               AND ($4::text IS NULL OR system = $4) AND ($5::text IS NULL OR key = $5) \
               AND ($6::text IS NULL OR outcome = $6) AND ($7::text IS NULL OR call_id = $7) \
             ORDER BY seq LIMIT $8",
            &[
                &filter.after.unwrap_or(0),
                &filter.from.map_or(i64::MIN, nanos),
                &filter.to.map_or(i64::MAX, nanos),
                &filter.system,
                &filter.key,
                &filter.outcome,
                &filter.call_id,
                &limit,
            ],
        )
        .await
        .map_err(store_error)?;
    rows.iter().map(record).collect()
}

/// Deletes the records of before `before`; returns how many.
pub(super) async fn purge(
    client: &impl GenericClient,
    before: time::OffsetDateTime,
) -> Result<usize, QueueError> {
    let n = client
        .execute(
            "DELETE FROM sapbridge_audit WHERE at < $1",
            &[&nanos(before)],
        )
        .await
        .map_err(store_error)?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// How many calls of `owner` are queued or leased, at most `cap`.
pub(super) async fn open_calls_of(
    client: &impl GenericClient,
    owner: &str,
    cap: u64,
) -> Result<u64, QueueError> {
    count(
        client,
        "SELECT count(*) FROM (SELECT 1 FROM sapbridge_calls \
         WHERE owner = $1 AND state IN ('queued', 'leased') LIMIT $2) AS open",
        owner,
        cap,
    )
    .await
}

/// How many calls of `system` are queued, at most `cap`.
pub(super) async fn queued_in(
    client: &impl GenericClient,
    system: &str,
    cap: u64,
) -> Result<u64, QueueError> {
    count(
        client,
        "SELECT count(*) FROM (SELECT 1 FROM sapbridge_calls \
         WHERE system = $1 AND state = 'queued' LIMIT $2) AS queued",
        system,
        cap,
    )
    .await
}

async fn count(
    client: &impl GenericClient,
    sql: &str,
    name: &str,
    cap: u64,
) -> Result<u64, QueueError> {
    let cap = i64::try_from(cap).unwrap_or(i64::MAX);
    let row = client
        .query_one(sql, &[&name, &cap])
        .await
        .map_err(store_error)?;
    let n: i64 = row.try_get(0).map_err(store_error)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn record(row: &Row) -> Result<AuditRecord, QueueError> {
    let status: Option<i32> = row.try_get(10).map_err(store_error)?;
    let get =
        |i: usize| -> Result<Option<String>, QueueError> { row.try_get(i).map_err(store_error) };
    Ok(AuditRecord {
        seq: row.try_get(0).map_err(store_error)?,
        at: from_nanos(row.try_get(1).map_err(store_error)?),
        event: row.try_get(2).map_err(store_error)?,
        key: get(3)?,
        client: get(4)?,
        system: get(5)?,
        method: get(6)?,
        target: get(7)?,
        call_id: get(8)?,
        outcome: row.try_get(9).map_err(store_error)?,
        status: status.and_then(|s| u16::try_from(s).ok()),
        duration_ms: row.try_get(11).map_err(store_error)?,
        agent: get(12)?,
        detail: get(13)?,
    })
}
