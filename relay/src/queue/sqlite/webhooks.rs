//! Webhook deliveries and subscriptions in SQLite: deliveries are inserted in the
//! writer's batch that inserts their call; claims, saves, redeliveries and purges
//! are writer jobs; listings run on the read connections.

use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;

use super::super::{Delivery, DeliveryFilter, DeliveryState, QueueError, Subscription};
use super::rows::{nanos, time_at};
use super::writer::Effects;

/// The columns [`delivery`] reads, in its order.
const COLUMNS: &str = "seq, id, call_id, owner, system, url, subscription, state, attempts, \
     created_at, next_at, give_up_at, last_attempt_at, last_status, last_error, delivered_at, \
     payload";

/// Inserts the deliveries of a call inside the writer's open transaction.
pub(super) fn insert(conn: &Connection, deliveries: &[Delivery]) -> Result<(), QueueError> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO webhook_deliveries (id, call_id, owner, system, url, subscription, state, \
         attempts, created_at, next_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, ?9)",
    )?;
    for d in deliveries {
        insert.execute(params![
            d.id,
            d.call_id,
            d.owner,
            d.system,
            d.url,
            d.subscription,
            d.state.as_str(),
            nanos(d.created_at),
            nanos(d.next_at),
        ])?;
    }
    Ok(())
}

/// Whether a delivery in `state` is due at `now` (on a read connection, so an
/// idle sender costs the writer nothing).
pub(super) fn any_due(
    conn: &Connection,
    state: DeliveryState,
    now: OffsetDateTime,
) -> Result<bool, QueueError> {
    let found = conn
        .prepare_cached(
            "SELECT 1 FROM webhook_deliveries WHERE state = ?1 AND next_at <= ?2 \
             AND (lease_until IS NULL OR lease_until <= ?2) LIMIT 1",
        )?
        .query_row(params![state.as_str(), nanos(now)], |_| Ok(()))
        .optional()?;
    Ok(found.is_some())
}

/// Leases the due deliveries (see [`Queue::claim_deliveries`](super::super::Queue)).
pub(super) fn claim(
    conn: &Connection,
    effects: &mut Effects,
    state: DeliveryState,
    now: OffsetDateTime,
    until: OffsetDateTime,
    max: usize,
) -> Result<Vec<Delivery>, QueueError> {
    effects.audit_changes += 1;
    let mut select = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM webhook_deliveries \
         WHERE state = ?3 AND next_at <= ?1 \
           AND (lease_until IS NULL OR lease_until <= ?1) \
         ORDER BY next_at LIMIT ?2"
    ))?;
    let limit = i64::try_from(max).unwrap_or(i64::MAX);
    let due = select
        .query_map(params![nanos(now), limit, state.as_str()], delivery)?
        .collect::<Result<Vec<_>, _>>()?;
    let mut lease =
        conn.prepare_cached("UPDATE webhook_deliveries SET lease_until = ?2 WHERE seq = ?1")?;
    for d in &due {
        lease.execute(params![d.seq, nanos(until)])?;
    }
    Ok(due)
}

/// Stores what became of a claimed delivery and ends its lease.
pub(super) fn save(
    conn: &Connection,
    effects: &mut Effects,
    d: &Delivery,
) -> Result<(), QueueError> {
    effects.audit_changes += 1;
    conn.prepare_cached(
        "UPDATE webhook_deliveries SET state = ?2, attempts = ?3, next_at = ?4, give_up_at = ?5, \
         last_attempt_at = ?6, last_status = ?7, last_error = ?8, delivered_at = ?9, \
         payload = ?10, lease_until = NULL WHERE id = ?1",
    )?
    .execute(params![
        d.id,
        d.state.as_str(),
        d.attempts,
        nanos(d.next_at),
        d.give_up_at.map(nanos),
        d.last_attempt_at.map(nanos),
        d.last_status,
        d.last_error,
        d.delivered_at.map(nanos),
        d.payload,
    ])?;
    Ok(())
}

/// The page `filter` selects, in storing order.
pub(super) fn page(
    conn: &Connection,
    filter: &DeliveryFilter,
) -> Result<Vec<Delivery>, QueueError> {
    let mut select = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM webhook_deliveries \
         WHERE seq > ?1 AND (?2 IS NULL OR owner = ?2) AND (?3 IS NULL OR call_id = ?3) \
           AND (?4 IS NULL OR state = ?4) \
         ORDER BY seq LIMIT ?5"
    ))?;
    let limit = i64::try_from(filter.page_size()).unwrap_or(1);
    let rows = select.query_map(
        params![
            filter.after.unwrap_or(0),
            filter.owner,
            filter.call_id,
            filter.state.map(DeliveryState::as_str),
            limit,
        ],
        delivery,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The delivery `id`.
pub(super) fn get(conn: &Connection, id: &str) -> Result<Option<Delivery>, QueueError> {
    let mut select = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM webhook_deliveries WHERE id = ?1"
    ))?;
    Ok(select.query_row([id], delivery).optional()?)
}

/// Makes a delivery with a payload due again (see
/// [`Queue::redeliver`](super::super::Queue)).
pub(super) fn redeliver(
    conn: &Connection,
    effects: &mut Effects,
    id: &str,
    now: OffsetDateTime,
    give_up_at: OffsetDateTime,
) -> Result<Option<Delivery>, QueueError> {
    effects.audit_changes += 1;
    conn.prepare_cached(
        "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_at = ?2, \
         give_up_at = ?3, delivered_at = NULL, lease_until = NULL \
         WHERE id = ?1 AND payload IS NOT NULL",
    )?
    .execute(params![id, nanos(now), nanos(give_up_at)])?;
    get(conn, id)
}

/// Deletes the delivered and failed deliveries stored before `before`.
pub(super) fn purge(
    conn: &Connection,
    effects: &mut Effects,
    before: OffsetDateTime,
) -> Result<usize, QueueError> {
    effects.audit_changes += 1;
    Ok(conn.execute(
        "DELETE FROM webhook_deliveries \
         WHERE state IN ('delivered', 'failed') AND created_at < ?1",
        [nanos(before)],
    )?)
}

/// Stores a subscription.
pub(super) fn subscribe(
    conn: &Connection,
    effects: &mut Effects,
    s: &Subscription,
) -> Result<(), QueueError> {
    effects.audit_changes += 1;
    conn.execute(
        "INSERT INTO webhook_subscriptions (id, owner, url, system, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![s.id, s.owner, s.url, s.system, nanos(s.created_at)],
    )?;
    Ok(())
}

/// Deletes a subscription (of `owner`, unless `None`); whether there was one.
pub(super) fn unsubscribe(
    conn: &Connection,
    effects: &mut Effects,
    owner: Option<&str>,
    id: &str,
) -> Result<bool, QueueError> {
    effects.audit_changes += 1;
    let n = conn.execute(
        "DELETE FROM webhook_subscriptions WHERE id = ?1 AND (?2 IS NULL OR owner = ?2)",
        params![id, owner],
    )?;
    Ok(n > 0)
}

/// The subscriptions of `owner` (all for `None`), oldest first.
pub(super) fn subscriptions(
    conn: &Connection,
    owner: Option<&str>,
) -> Result<Vec<Subscription>, QueueError> {
    let mut select = conn.prepare_cached(
        "SELECT id, owner, url, system, created_at FROM webhook_subscriptions \
         WHERE ?1 IS NULL OR owner = ?1 ORDER BY created_at, id",
    )?;
    let rows = select.query_map([owner], |row| {
        Ok(Subscription {
            id: row.get(0)?,
            owner: row.get(1)?,
            url: row.get(2)?,
            system: row.get(3)?,
            created_at: time_at(row.get(4)?),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn delivery(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    let state: String = row.get(7)?;
    let state = DeliveryState::parse(&state).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            7,
            rusqlite::types::Type::Text,
            format!("unknown delivery state {state:?}").into(),
        )
    })?;
    Ok(Delivery {
        seq: row.get(0)?,
        id: row.get(1)?,
        call_id: row.get(2)?,
        owner: row.get(3)?,
        system: row.get(4)?,
        url: row.get(5)?,
        subscription: row.get(6)?,
        state,
        attempts: row.get(8)?,
        created_at: time_at(row.get(9)?),
        next_at: time_at(row.get(10)?),
        give_up_at: row.get::<_, Option<i64>>(11)?.map(time_at),
        last_attempt_at: row.get::<_, Option<i64>>(12)?.map(time_at),
        last_status: row.get(13)?,
        last_error: row.get(14)?,
        delivered_at: row.get::<_, Option<i64>>(15)?.map(time_at),
        payload: row.get(16)?,
    })
}
