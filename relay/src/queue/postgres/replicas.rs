//! Which relay replicas are alive: each records itself in `sapbridge_replicas`
//! when it opens the store and on every reaper pass; a reaper pass that finds a
//! replica silent for [`REPLICA_TIMEOUT`] forgets it and returns its sessions'
//! leases to the queue (held for their agents) without waiting for their
//! deadlines. Liveness is judged on the database's clock.

use std::collections::HashSet;

use deadpool_postgres::Transaction;
use time::OffsetDateTime;

use super::super::QueueError;
use super::rows::{nanos, store_error};

/// A replica not seen for this long is dead: its sessions' leases go back to the
/// queue (held for their agents) without waiting for their deadlines.
pub(super) const REPLICA_TIMEOUT: time::Duration = time::Duration::seconds(15);

/// The database server's clock in Unix nanoseconds, as SQL. Replicas' liveness
/// is judged on this one clock, so a replica whose clock runs behind is not
/// taken for dead.
pub(super) const DB_NOW: &str = "floor(extract(epoch FROM clock_timestamp()) * 1e9)::int8";

/// Says that `replica` is alive now (on open and every reaper pass).
pub(super) async fn heartbeat(
    client: &impl tokio_postgres::GenericClient,
    replica: &str,
) -> Result<(), QueueError> {
    client
        .execute(
            &format!(
                "INSERT INTO sapbridge_replicas (id, started_at, seen_at)
                 VALUES ($1, {DB_NOW}, {DB_NOW})
                 ON CONFLICT (id) DO UPDATE SET seen_at = {DB_NOW}"
            ),
            &[&replica],
        )
        .await
        .map_err(store_error)?;
    Ok(())
}

/// Forgets the replicas not seen for [`REPLICA_TIMEOUT`] (on the database's
/// clock) and returns the leases their sessions held to the queue, held for
/// their agents until `hold_until`; returns how many.
pub(super) async fn release_dead(
    tx: &Transaction<'_>,
    work: &mut HashSet<String>,
    hold_until: OffsetDateTime,
) -> Result<usize, QueueError> {
    let timeout = nanos(OffsetDateTime::UNIX_EPOCH + REPLICA_TIMEOUT);
    let dead: Vec<String> = tx
        .query(
            &format!("DELETE FROM sapbridge_replicas WHERE seen_at < {DB_NOW} - $1 RETURNING id"),
            &[&timeout],
        )
        .await
        .map_err(store_error)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if dead.is_empty() {
        return Ok(0);
    }
    let rows = tx
        .query(
            "UPDATE sapbridge_calls SET state = 'queued', lease_until = NULL, hold_until = $2
             WHERE state = 'leased' AND lease_replica = ANY($1)
             RETURNING system",
            &[&dead, &nanos(hold_until)],
        )
        .await
        .map_err(store_error)?;
    tracing::warn!(
        replicas = ?dead,
        released = rows.len(),
        "relay replicas stopped answering; their agents' leases are back in the queue"
    );
    work.extend(rows.iter().map(|row| row.get::<_, String>(0)));
    Ok(rows.len())
}
