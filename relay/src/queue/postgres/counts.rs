//! Retained final calls per state, exact without counting them: every change that
//! moves calls into or out of a final state adds its delta, inside its own
//! transaction, to a counter row of its replica and writer slot, and the stats
//! sum the rows. No two concurrent transactions of a replica write one row (each
//! batch slot has its own; changes that run alone share [`ALONE_SLOT`], written
//! last, after their calls are locked), so counting adds no lock waits to the
//! hot path and no deadlock. Counting the calls instead took a scan of every
//! retained call on each `/metrics` scrape.

use std::collections::BTreeMap;

use tokio_postgres::{GenericClient, Statement};

use super::super::{QueueError, QueueStats, SystemBacklog};
use super::rows::store_error;

/// Adds `$4` to the count of state `$3` of replica `$1`'s slot `$2`.
pub(super) const UPSERT_SQL: &str = "INSERT INTO sapbridge_final_counts (replica, slot, state, n)
    SELECT $1, $2, u.state, u.n FROM unnest($3::text[], $4::int8[]) AS u(state, n)
    ON CONFLICT (replica, slot, state) DO UPDATE SET n = sapbridge_final_counts.n + EXCLUDED.n";

/// The slot of the changes that run in a transaction of their own.
pub(super) const ALONE_SLOT: i32 = -1;

/// Calls that entered (`+n`) or left (`-n`) each final state, by state code.
#[derive(Debug, Default)]
pub(super) struct Deltas(BTreeMap<String, i64>);

impl Deltas {
    /// `n` more (or, negative, fewer) calls in the final state `code`.
    pub(super) fn add(&mut self, code: &str, n: i64) {
        *self.0.entry(code.to_owned()).or_default() += n;
    }

    /// Adds the deltas to the counter rows of `replica`'s `slot`.
    pub(super) async fn apply(
        &self,
        tx: &impl deadpool_postgres::GenericClient,
        replica: &str,
        slot: i32,
    ) -> Result<(), QueueError> {
        if self.0.values().all(|n| *n == 0) {
            return Ok(());
        }
        let statement = super::rows::prepared(tx, UPSERT_SQL).await?;
        self.apply_prepared(tx, &statement, replica, slot).await
    }

    /// [`Deltas::apply`] with [`UPSERT_SQL`] prepared already: the request is
    /// sent at the first poll.
    pub(super) async fn apply_prepared(
        &self,
        tx: &impl deadpool_postgres::GenericClient,
        statement: &Statement,
        replica: &str,
        slot: i32,
    ) -> Result<(), QueueError> {
        let changed: Vec<(&str, i64)> = self
            .0
            .iter()
            .filter(|(_, n)| **n != 0)
            .map(|(code, n)| (code.as_str(), *n))
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        let codes: Vec<&str> = changed.iter().map(|(c, _)| *c).collect();
        let deltas: Vec<i64> = changed.iter().map(|(_, n)| *n).collect();
        tx.execute(statement, &[&replica, &slot, &codes, &deltas])
            .await
            .map_err(store_error)?;
        Ok(())
    }
}

/// Retained final calls per state code.
pub(super) async fn finals(client: &impl GenericClient) -> Result<Vec<(String, i64)>, QueueError> {
    let rows = client
        .query(
            "SELECT state, sum(n)::int8 FROM sapbridge_final_counts GROUP BY state",
            &[],
        )
        .await
        .map_err(store_error)?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// Calls by state: the open ones through their partial indexes, the final ones
/// from their counters (see `counts`).
pub(super) async fn stats(client: &impl GenericClient) -> Result<QueueStats, QueueError> {
    let open = client
        .query_one(
            "SELECT (SELECT count(*) FROM sapbridge_calls WHERE state = 'queued'),
                    (SELECT count(*) FROM sapbridge_calls WHERE state = 'leased')",
            &[],
        )
        .await
        .map_err(store_error)?;
    let mut found = QueueStats {
        queued: u64::try_from(open.get::<_, i64>(0)).unwrap_or(0),
        leased: u64::try_from(open.get::<_, i64>(1)).unwrap_or(0),
        ..QueueStats::default()
    };
    for (code, n) in finals(client).await? {
        match super::rows::final_state(code.as_str()) {
            Some(state) => *found.count_mut(&state) = u64::try_from(n).unwrap_or(0),
            None => tracing::warn!(
                state = code,
                "unknown final call state in the queue database"
            ),
        }
    }
    Ok(found)
}

/// Queued calls per system, with the oldest's acceptance.
pub(super) async fn backlog(client: &impl GenericClient) -> Result<Vec<SystemBacklog>, QueueError> {
    let rows = client
        .query(
            "SELECT system, count(*), min(submitted_at), min(expires_at) FROM sapbridge_calls
             WHERE state = 'queued' GROUP BY system",
            &[],
        )
        .await
        .map_err(store_error)?;
    Ok(rows
        .iter()
        .map(|row| SystemBacklog {
            system: row.get(0),
            queued: u64::try_from(row.get::<_, i64>(1)).unwrap_or(0),
            oldest: super::rows::time_at(row.get(2)),
            next_expiry: super::rows::time_at(row.get(3)),
        })
        .collect())
}
