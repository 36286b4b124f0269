//! Webhook deliveries and subscriptions in PostgreSQL: deliveries are inserted
//! in the transaction that inserts their call; due ones are leased with
//! `FOR UPDATE SKIP LOCKED`, so each goes to one replica at a time.

use time::OffsetDateTime;
use tokio_postgres::{GenericClient, Row};

use super::super::{Delivery, DeliveryFilter, DeliveryState, QueueError, Subscription};
use super::rows::{nanos, store_error, time_at};

/// The columns [`delivery`] reads, in its order.
const COLUMNS: &str = "seq, id, call_id, owner, system, url, subscription, state, attempts, \
     created_at, next_at, give_up_at, last_attempt_at, last_status, last_error, delivered_at, \
     payload";

/// Inserts the deliveries of a call in the transaction that inserts the call.
pub(super) async fn insert(
    client: &impl GenericClient,
    deliveries: &[Delivery],
) -> Result<(), QueueError> {
    for d in deliveries {
        client
            .execute(
                "INSERT INTO sapbridge_webhook_deliveries (id, call_id, owner, system, url, \
                 subscription, state, attempts, created_at, next_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9)",
                &[
                    &d.id,
                    &d.call_id,
                    &d.owner,
                    &d.system,
                    &d.url,
                    &d.subscription,
                    &d.state.as_str(),
                    &nanos(d.created_at),
                    &nanos(d.next_at),
                ],
            )
            .await
            .map_err(store_error)?;
    }
    Ok(())
}

/// Leases the due deliveries no other replica holds.
pub(super) async fn claim(
    client: &impl GenericClient,
    state: DeliveryState,
    now: OffsetDateTime,
    until: OffsetDateTime,
    max: usize,
) -> Result<Vec<Delivery>, QueueError> {
    let limit = i64::try_from(max).unwrap_or(i64::MAX);
    let rows = client
        .query(
            &format!(
                "WITH due AS (SELECT seq FROM sapbridge_webhook_deliveries \
                   WHERE state = $4 AND next_at <= $1 \
                     AND (lease_until IS NULL OR lease_until <= $1) \
                   ORDER BY next_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
                 UPDATE sapbridge_webhook_deliveries AS d SET lease_until = $2 \
                 FROM due WHERE d.seq = due.seq RETURNING {}",
                prefixed("d.")
            ),
            &[&nanos(now), &nanos(until), &limit, &state.as_str()],
        )
        .await
        .map_err(store_error)?;
    let mut due = rows.iter().map(delivery).collect::<Result<Vec<_>, _>>()?;
    due.sort_by_key(|d| (d.next_at, d.seq));
    Ok(due)
}

/// The columns with a table prefix.
fn prefixed(prefix: &str) -> String {
    COLUMNS
        .split(", ")
        .map(|c| format!("{prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Stores what became of a claimed delivery and ends its lease.
pub(super) async fn save(client: &impl GenericClient, d: &Delivery) -> Result<(), QueueError> {
    client
        .execute(
            "UPDATE sapbridge_webhook_deliveries SET state = $2, attempts = $3, next_at = $4, \
             give_up_at = $5, last_attempt_at = $6, last_status = $7, last_error = $8, \
             delivered_at = $9, payload = $10, lease_until = NULL WHERE id = $1",
            &[
                &d.id,
                &d.state.as_str(),
                &i64::from(d.attempts),
                &nanos(d.next_at),
                &d.give_up_at.map(nanos),
                &d.last_attempt_at.map(nanos),
                &d.last_status.map(i32::from),
                &d.last_error,
                &d.delivered_at.map(nanos),
                &d.payload,
            ],
        )
        .await
        .map_err(store_error)?;
    Ok(())
}

/// The page `filter` selects, in storing order.
pub(super) async fn page(
    client: &impl GenericClient,
    filter: &DeliveryFilter,
) -> Result<Vec<Delivery>, QueueError> {
    let limit = i64::try_from(filter.page_size()).unwrap_or(1);
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM sapbridge_webhook_deliveries \
                 WHERE seq > $1 AND ($2::text IS NULL OR owner = $2) \
                   AND ($3::text IS NULL OR call_id = $3) AND ($4::text IS NULL OR state = $4) \
                 ORDER BY seq LIMIT $5"
            ),
            &[
                &filter.after.unwrap_or(0),
                &filter.owner,
                &filter.call_id,
                &filter.state.map(DeliveryState::as_str),
                &limit,
            ],
        )
        .await
        .map_err(store_error)?;
    rows.iter().map(delivery).collect()
}

/// The delivery `id`.
pub(super) async fn get(
    client: &impl GenericClient,
    id: &str,
) -> Result<Option<Delivery>, QueueError> {
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM sapbridge_webhook_deliveries WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(store_error)?;
    row.as_ref().map(delivery).transpose()
}

/// Makes a delivery with a payload due again.
pub(super) async fn redeliver(
    client: &impl GenericClient,
    id: &str,
    now: OffsetDateTime,
    give_up_at: OffsetDateTime,
) -> Result<Option<Delivery>, QueueError> {
    client
        .execute(
            "UPDATE sapbridge_webhook_deliveries SET state = 'pending', attempts = 0, \
             next_at = $2, give_up_at = $3, delivered_at = NULL, lease_until = NULL \
             WHERE id = $1 AND payload IS NOT NULL",
            &[&id, &nanos(now), &nanos(give_up_at)],
        )
        .await
        .map_err(store_error)?;
    get(client, id).await
}

/// Deletes the delivered and failed deliveries stored before `before`.
pub(super) async fn purge(
    client: &impl GenericClient,
    before: OffsetDateTime,
) -> Result<usize, QueueError> {
    let n = client
        .execute(
            "DELETE FROM sapbridge_webhook_deliveries \
             WHERE state IN ('delivered', 'failed') AND created_at < $1",
            &[&nanos(before)],
        )
        .await
        .map_err(store_error)?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Stores a subscription.
pub(super) async fn subscribe(
    client: &impl GenericClient,
    s: &Subscription,
) -> Result<(), QueueError> {
    client
        .execute(
            "INSERT INTO sapbridge_webhook_subscriptions (id, owner, url, system, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
            &[&s.id, &s.owner, &s.url, &s.system, &nanos(s.created_at)],
        )
        .await
        .map_err(store_error)?;
    Ok(())
}

/// Deletes a subscription (of `owner`, unless `None`); whether there was one.
pub(super) async fn unsubscribe(
    client: &impl GenericClient,
    owner: Option<&str>,
    id: &str,
) -> Result<bool, QueueError> {
    let n = client
        .execute(
            "DELETE FROM sapbridge_webhook_subscriptions \
             WHERE id = $1 AND ($2::text IS NULL OR owner = $2)",
            &[&id, &owner],
        )
        .await
        .map_err(store_error)?;
    Ok(n > 0)
}

/// The subscriptions of `owner` (all for `None`), oldest first.
pub(super) async fn subscriptions(
    client: &impl GenericClient,
    owner: Option<&str>,
) -> Result<Vec<Subscription>, QueueError> {
    let rows = client
        .query(
            "SELECT id, owner, url, system, created_at FROM sapbridge_webhook_subscriptions \
             WHERE $1::text IS NULL OR owner = $1 ORDER BY created_at, id",
            &[&owner],
        )
        .await
        .map_err(store_error)?;
    rows.iter()
        .map(|row| {
            Ok(Subscription {
                id: row.try_get(0).map_err(store_error)?,
                owner: row.try_get(1).map_err(store_error)?,
                url: row.try_get(2).map_err(store_error)?,
                system: row.try_get(3).map_err(store_error)?,
                created_at: time_at(row.try_get(4).map_err(store_error)?),
            })
        })
        .collect()
}

fn delivery(row: &Row) -> Result<Delivery, QueueError> {
    let text =
        |i: usize| -> Result<Option<String>, QueueError> { row.try_get(i).map_err(store_error) };
    let time = |i: usize| -> Result<Option<OffsetDateTime>, QueueError> {
        let t: Option<i64> = row.try_get(i).map_err(store_error)?;
        Ok(t.map(time_at))
    };
    let state: String = row.try_get(7).map_err(store_error)?;
    let state = DeliveryState::parse(&state)
        .ok_or_else(|| QueueError::Corrupt(format!("unknown delivery state {state:?}")))?;
    let attempts: i64 = row.try_get(8).map_err(store_error)?;
    let status: Option<i32> = row.try_get(13).map_err(store_error)?;
    Ok(Delivery {
        seq: row.try_get(0).map_err(store_error)?,
        id: row.try_get(1).map_err(store_error)?,
        call_id: row.try_get(2).map_err(store_error)?,
        owner: text(3)?,
        system: row.try_get(4).map_err(store_error)?,
        url: row.try_get(5).map_err(store_error)?,
        subscription: text(6)?,
        state,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        created_at: time_at(row.try_get(9).map_err(store_error)?),
        next_at: time_at(row.try_get(10).map_err(store_error)?),
        give_up_at: time(11)?,
        last_attempt_at: time(12)?,
        last_status: status.and_then(|s| u16::try_from(s).ok()),
        last_error: text(14)?,
        delivered_at: time(15)?,
        payload: text(16)?,
    })
}
