//! The agent sessions each replica lists, so that `GET /v1/systems` on any
//! replica shows the agents connected to all of them.
//!
//! Each replica replaces its rows every few seconds with what its registry
//! holds; rows belong to their replica's row in `sapbridge_replicas` and go with
//! it when a reaper finds that replica dead. Readers skip replicas not seen
//! within [`REPLICA_TIMEOUT`].

use deadpool_postgres::Transaction;
use time::OffsetDateTime;
use tokio_postgres::GenericClient;

use super::super::{ListedAgent, QueueError};
use super::replicas::{DB_NOW, REPLICA_TIMEOUT};
use super::rows::{nanos, store_error};

/// Replaces the sessions `replica` lists with `agents`.
pub(super) async fn publish(
    tx: &Transaction<'_>,
    replica: &str,
    agents: &[ListedAgent],
) -> Result<(), QueueError> {
    tx.execute(
        "DELETE FROM sapbridge_agent_sessions WHERE replica = $1",
        &[&replica],
    )
    .await
    .map_err(store_error)?;
    for agent in agents {
        let listing = serde_json::to_string(&agent.listing)
            .map_err(|e| QueueError::Store(format!("encoding an agent listing: {e}")))?;
        tx.execute(
            "INSERT INTO sapbridge_agent_sessions (replica, systems, http_systems, listing)
             VALUES ($1, $2, $3, $4)",
            &[&replica, &agent.systems, &agent.http_systems, &listing],
        )
        .await
        .map_err(store_error)?;
    }
    Ok(())
}

/// The sessions that replicas other than `replica`, seen within
/// [`REPLICA_TIMEOUT`] (on the database's clock), list.
pub(super) async fn remote(
    client: &impl GenericClient,
    replica: &str,
) -> Result<Vec<ListedAgent>, QueueError> {
    let timeout = nanos(OffsetDateTime::UNIX_EPOCH + REPLICA_TIMEOUT);
    let rows = client
        .query(
            &format!(
                "SELECT s.systems, s.http_systems, s.listing FROM sapbridge_agent_sessions s
                 JOIN sapbridge_replicas r ON r.id = s.replica
                 WHERE s.replica <> $1 AND r.seen_at >= {DB_NOW} - $2"
            ),
            &[&replica, &timeout],
        )
        .await
        .map_err(store_error)?;
    let mut agents = Vec::with_capacity(rows.len());
    for row in rows {
        let listing: String = row.get(2);
        match serde_json::from_str(&listing) {
            Ok(listing) => agents.push(ListedAgent {
                systems: row.get(0),
                http_systems: row.get(1),
                listing,
            }),
            Err(error) => tracing::warn!(%error, "skipping an unreadable agent listing"),
        }
    }
    Ok(agents)
}
