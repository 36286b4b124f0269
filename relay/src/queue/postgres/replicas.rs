//! Which relay replicas are alive: each records itself in `sapbridge_replicas`
//! when it opens the store and on every reaper pass; a reaper pass that finds a
//! replica silent for [`REPLICA_TIMEOUT`] forgets it and returns its sessions'
//! leases to the queue (held for their agents) without waiting for their
//! deadlines. Liveness is judged on the database's clock.
//!
//! A replica with a cluster address (`[cluster] advertise_url`) records it with
//! its heartbeat, so that the others can forward pass-through requests to it
//! ([`with_http_agent`]).

use std::collections::HashSet;

use deadpool_postgres::Transaction;
use time::OffsetDateTime;

use super::super::{PeerReplica, QueueError};
use super::rows::{nanos, store_error};

/// A replica not seen for this long is dead: its sessions' leases go back to the
/// queue (held for their agents) without waiting for their deadlines.
pub(super) const REPLICA_TIMEOUT: time::Duration = time::Duration::seconds(15);

/// The database server's clock in Unix nanoseconds, as SQL. Replicas' liveness
/// is judged on this one clock, so a replica whose clock runs behind is not
/// taken for dead.
pub(super) const DB_NOW: &str = "floor(extract(epoch FROM clock_timestamp()) * 1e9)::int8";

/// Says that `replica`, reachable by the others at `address` (if it takes
/// forwarded requests), is alive now (on open and every reaper pass).
pub(super) async fn heartbeat(
    client: &impl tokio_postgres::GenericClient,
    replica: &str,
    address: Option<&str>,
) -> Result<(), QueueError> {
    client
        .execute(
            &format!(
                "INSERT INTO sapbridge_replicas (id, started_at, seen_at, address)
                 VALUES ($1, {DB_NOW}, {DB_NOW}, $2)
                 ON CONFLICT (id) DO UPDATE SET seen_at = {DB_NOW}, address = $2"
            ),
            &[&replica, &address],
        )
        .await
        .map_err(store_error)?;
    Ok(())
}

/// The live replicas other than `replica` (seen within [`REPLICA_TIMEOUT`], on
/// the database's clock) that have an address and an agent session forwarding
/// HTTP pass-through for `system`, those with the most such sessions first.
pub(super) async fn with_http_agent(
    client: &impl tokio_postgres::GenericClient,
    replica: &str,
    system: &str,
) -> Result<Vec<PeerReplica>, QueueError> {
    let timeout = nanos(OffsetDateTime::UNIX_EPOCH + REPLICA_TIMEOUT);
    let rows = client
        .query(
            &format!(
                "SELECT r.id, r.address, count(*) AS sessions
                 FROM sapbridge_replicas r
                 JOIN sapbridge_agent_sessions s ON s.replica = r.id
                 WHERE r.id <> $1 AND r.address IS NOT NULL
                   AND r.seen_at >= {DB_NOW} - $2 AND $3 = ANY (s.http_systems)
                 GROUP BY r.id, r.address
                 ORDER BY sessions DESC, r.id"
            ),
            &[&replica, &timeout, &system],
        )
        .await
        .map_err(store_error)?;
    Ok(rows
        .iter()
        .map(|row| PeerReplica {
            id: row.get(0),
            address: row.get(1),
        })
        .collect())
}

/// `replica` stops cleanly: it takes no forwarded requests any more and lists
/// no agents, so the others stop forwarding to it at once. Its row stays until
/// it ages out, so that leases its sessions may still hold are released as a
/// dead replica's.
pub(super) async fn leave(
    client: &impl tokio_postgres::GenericClient,
    replica: &str,
) -> Result<(), QueueError> {
    client
        .execute(
            "UPDATE sapbridge_replicas SET address = NULL WHERE id = $1",
            &[&replica],
        )
        .await
        .map_err(store_error)?;
    client
        .execute(
            "DELETE FROM sapbridge_agent_sessions WHERE replica = $1",
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
