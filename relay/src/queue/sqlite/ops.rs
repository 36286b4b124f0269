//! The changes: one function per [`Queue`](super::super::Queue) method that
//! writes, each run by the writer inside the batch transaction (so the
//! check-then-change steps below cannot race: there is one writer). Each records
//! the wake-ups it causes in [`Effects`].

use rusqlite::{Connection, OptionalExtension, params};
use sapbridge_proto::{Outcome, Unit};
use time::OffsetDateTime;

use super::super::{
    CallEnd, CallRecord, CallState, Cancelled, Completion, Enqueued, NewCall, QueueError, Reaped,
    Retention, Signals, deadline_unix_ms,
};
use super::rows::{
    calls_json, calls_of, commit_code, commit_of, final_state, kind_json, load, nanos,
    outcome_json, state_code, time_at,
};
use super::writer::Effects;

/// At most this many final calls are deleted per reaper pass (keeps batches short).
const PURGE_LIMIT: i64 = 10_000;

/// The most calls one claim leases (a session holds at most this many credits).
pub(super) const MAX_CLAIM: usize = 1024;

/// The oldest queued, unexpired calls of one system: `?1` system, `?2` now; the
/// caller stops reading after the number it wants. Walks the partial index of
/// queued calls in enqueue order, so calls queued for other systems cost nothing.
/// The `LIMIT` is a literal: a bound one makes SQLite prepare the statement again
/// on every run.
pub(super) const CLAIM_CANDIDATES: &str = "SELECT seq FROM calls INDEXED BY calls_queued_by_system
    WHERE system = ?1 AND state = 'queued' AND expires_at > ?2
    ORDER BY seq LIMIT 1024";

/// Leases the queued call `?1` to session `?2` until `?3`.
pub(super) const LEASE: &str = "UPDATE calls
    SET state = 'leased', lease_session = ?2, lease_until = ?3, attempts = attempts + 1
    WHERE seq = ?1 AND state = 'queued'
    RETURNING id, system, calls, commit_policy, attempts, expires_at";

/// Renews the leases of session `?1` until `?2`.
pub(super) const RENEW: &str =
    "UPDATE calls SET lease_until = ?2 WHERE state = 'leased' AND lease_session = ?1";

/// Returns the leases of session `?1` to the queue.
pub(super) const RELEASE: &str =
    "UPDATE calls SET state = 'queued', lease_session = NULL, lease_until = NULL
    WHERE state = 'leased' AND lease_session = ?1
    RETURNING system";

/// Returns leases past `?1` to the queue.
pub(super) const REQUEUE_LAPSED: &str = "UPDATE calls INDEXED BY calls_leased_session
    SET state = 'queued', lease_session = NULL, lease_until = NULL
    WHERE state = 'leased' AND lease_until <= ?1
    RETURNING system";

/// Expires queued calls past their TTL at `?1` (through the expiry index: the
/// planner would otherwise walk every queued call on each reaper pass).
pub(super) const EXPIRE: &str = "UPDATE calls INDEXED BY calls_queued_expiry
    SET state = 'expired', completed_at = ?1
    WHERE state = 'queued' AND expires_at <= ?1
    RETURNING id";

/// Forgets keys created before `?1` whose call is final.
pub(super) const FORGET_KEYS: &str = "DELETE FROM idempotency_keys
    WHERE created_at <= ?1
      AND NOT EXISTS (SELECT 1 FROM calls c
                      WHERE c.id = idempotency_keys.call_id AND c.completed_at IS NULL)";

/// Deletes up to `?2` final calls completed before `?1` whose key is forgotten;
/// returns the state of each (for the final-state counts).
pub(super) const PURGE: &str = "DELETE FROM calls WHERE seq IN (
    SELECT seq FROM calls
    WHERE completed_at > 0 AND completed_at <= ?1
      AND NOT EXISTS (SELECT 1 FROM idempotency_keys k WHERE k.call_id = calls.id)
    LIMIT ?2)
    RETURNING state";

/// Stores a new call, or answers with the call its idempotency key names. Without a
/// key, its only write is the insert, its last fallible step (see
/// `Writer::write_one`).
pub(super) fn enqueue(
    conn: &Connection,
    effects: &mut Effects,
    signals: &Signals,
    call: NewCall,
) -> Result<Enqueued, QueueError> {
    if let Some((key, fingerprint)) = &call.idempotency {
        let mut stmt = conn.prepare_cached(
            "SELECT fingerprint, call_id FROM idempotency_keys WHERE scope = ?1 AND key = ?2",
        )?;
        let found: Option<(String, String)> = stmt
            .query_row([&key.scope, &key.key], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        if let Some((first, call_id)) = found {
            if let Some(record) = load(conn, &call_id)? {
                return Ok(if first == *fingerprint {
                    Enqueued::Existing(Box::new(record))
                } else {
                    Enqueued::KeyMismatch
                });
            }
            // The key outlived its call (cannot happen through the reaper): forget it.
            conn.execute(
                "DELETE FROM idempotency_keys WHERE scope = ?1 AND key = ?2",
                [&key.scope, &key.key],
            )?;
        }
    }
    let mut record = CallRecord::new(call);
    // Straight to a session with a free credit, unless older calls of the system
    // wait (they go first: the session claims them).
    let taker = match queued_any(conn, &record.system)? {
        true => None,
        false => signals.pick_taker(&record.system),
    };
    if let Some(taker) = &taker {
        record.state = CallState::Leased {
            session: taker.session().to_owned(),
            until: taker.lease_until(OffsetDateTime::now_utc()),
        };
        record.attempts = 1;
    }
    let inserted = insert(conn, &record);
    if let Err(error) = inserted {
        if let Some(taker) = taker {
            taker.give(1);
        }
        return Err(error);
    }
    match taker {
        Some(taker) => effects.handed.push((taker, record.work_frame())),
        None => {
            effects.work.insert(record.system.clone());
        }
    }
    Ok(Enqueued::Created(Box::new(record)))
}

/// Whether `system` has a queued call.
fn queued_any(conn: &Connection, system: &str) -> Result<bool, QueueError> {
    let found = conn
        .prepare_cached(
            "SELECT 1 FROM calls INDEXED BY calls_queued_by_system
             WHERE system = ?1 AND state = 'queued' LIMIT 1",
        )?
        .query_row([system], |_| Ok(()))
        .optional()?;
    Ok(found.is_some())
}

/// Inserts a new call (queued, or leased to a taker) and its idempotency key.
fn insert(conn: &Connection, record: &CallRecord) -> Result<(), QueueError> {
    let (scope, key, fingerprint) = match &record.idempotency {
        Some((key, fingerprint)) => (Some(&key.scope), Some(&key.key), Some(fingerprint)),
        None => (None, None, None),
    };
    let (lease_session, lease_until) = match &record.state {
        CallState::Leased { session, until } => (Some(session.as_str()), Some(nanos(*until))),
        _ => (None, None),
    };
    conn.prepare_cached(
        "INSERT INTO calls (id, system, kind, calls, commit_policy, state, attempts,
             submitted_at, expires_at, idem_scope, idem_key, idem_fingerprint,
             lease_session, lease_until, owner)
         VALUES (?1, ?2, ?3, ?4, ?5, ?11, ?12, ?6, ?7, ?8, ?9, ?10, ?13, ?14, ?15)",
    )?
    .execute(params![
        record.id,
        record.system,
        kind_json(&record.kind)?,
        calls_json(&record.calls)?,
        commit_code(record.commit),
        nanos(record.submitted_at),
        nanos(record.expires_at),
        scope,
        key,
        fingerprint,
        state_code(&record.state),
        record.attempts,
        lease_session,
        lease_until,
        record.owner,
    ])?;
    if let (Some(scope), Some(key), Some(fingerprint)) = (scope, key, fingerprint) {
        conn.prepare_cached(
            "INSERT OR REPLACE INTO idempotency_keys (scope, key, fingerprint, call_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            scope,
            key,
            fingerprint,
            record.id,
            nanos(record.submitted_at)
        ])?;
    }
    Ok(())
}

/// Leases up to `max` of the oldest queued, unexpired calls of `systems`: the
/// oldest `max` of each system through the queued-calls index, merged by enqueue
/// order, then leased one by one (all inside the writer's transaction). Calls past
/// their TTL are left for the reaper to expire.
pub(super) fn claim(
    conn: &Connection,
    systems: &[String],
    session: &str,
    max: usize,
    until: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<Vec<Unit>, QueueError> {
    if max == 0 || systems.is_empty() {
        return Ok(Vec::new());
    }
    let max = max.min(MAX_CLAIM);
    let now = nanos(now);
    let mut seqs: Vec<i64> = Vec::new();
    let mut candidates = conn.prepare_cached(CLAIM_CANDIDATES)?;
    for system in systems {
        let rows = candidates.query_map(params![system, now], |row| row.get(0))?;
        for seq in rows.take(max) {
            seqs.push(seq?);
        }
    }
    if systems.len() > 1 {
        seqs.sort_unstable();
        seqs.truncate(max);
    }
    let until = nanos(until);
    let mut lease = conn.prepare_cached(LEASE)?;
    let mut claimed = Vec::with_capacity(seqs.len());
    for seq in seqs {
        let mut rows = lease.query(params![seq, session, until])?;
        if let Some(row) = rows.next()? {
            let calls: String = row.get(2)?;
            let commit: String = row.get(3)?;
            claimed.push(Unit {
                call_id: row.get(0)?,
                attempt: row.get(4)?,
                system: row.get(1)?,
                deadline_unix_ms: deadline_unix_ms(time_at(row.get(5)?)),
                calls: calls_of(&calls)?,
                commit: commit_of(&commit)?,
            });
        }
    }
    Ok(claimed)
}

/// Stores an outcome unless the call is final already: one read, then one update as
/// the last fallible step (see `Writer::write_one`).
pub(super) fn complete(
    conn: &Connection,
    effects: &mut Effects,
    call_id: &str,
    agent: &str,
    outcome: Outcome,
    now: OffsetDateTime,
) -> Result<Completion, QueueError> {
    let mut stmt = conn
        .prepare_cached("SELECT commit_policy, completed_at, attempts FROM calls WHERE id = ?1")?;
    let found: Option<(String, Option<i64>, u32)> = stmt
        .query_row([call_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .optional()?;
    let Some((commit, completed_at, attempts)) = found else {
        return Ok(Completion::Unknown);
    };
    if completed_at.is_some() {
        return Ok(Completion::AlreadyFinal);
    }
    // Any attempt's outcome counts while the call is open: the agent's journal
    // guarantees the unit ran at most once, so the first outcome is the truth.
    let state = CallState::from_outcome(commit_of(&commit)?, &outcome);
    conn.prepare_cached(
        "UPDATE calls SET state = ?2, outcome = ?3, agent = ?4, completed_at = ?5,
             lease_session = NULL, lease_until = NULL
         WHERE id = ?1",
    )?
    .execute(params![
        call_id,
        state_code(&state),
        outcome_json(&outcome)?,
        agent,
        nanos(now)
    ])?;
    effects.finals.add(&state, 1);
    // Times are stored in nanoseconds: hand waiters the time as it reads back.
    let end = CallEnd {
        state,
        attempts,
        completed_at: time_at(nanos(now)),
        agent: Some(agent.to_owned()),
        outcome: Some(outcome),
    };
    effects.ended.push((call_id.to_owned(), end));
    Ok(Completion::Stored)
}

/// Renews every lease of `session`.
pub(super) fn renew_leases(
    conn: &Connection,
    session: &str,
    until: OffsetDateTime,
) -> Result<usize, QueueError> {
    let changed = conn
        .prepare_cached(RENEW)?
        .execute(params![session, nanos(until)])?;
    Ok(changed)
}

/// Returns every lease of `session` to the queue.
pub(super) fn release_session(
    conn: &Connection,
    effects: &mut Effects,
    session: &str,
) -> Result<usize, QueueError> {
    let mut stmt = conn.prepare_cached(RELEASE)?;
    let systems = stmt
        .query_map([session], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let released = systems.len();
    effects.work.extend(systems);
    Ok(released)
}

/// Cancels a call if it is still queued.
pub(super) fn cancel(
    conn: &Connection,
    effects: &mut Effects,
    call_id: &str,
    now: OffsetDateTime,
) -> Result<Cancelled, QueueError> {
    let Some(mut record) = load(conn, call_id)? else {
        return Ok(Cancelled::Unknown);
    };
    if record.state != CallState::Queued {
        return Ok(Cancelled::TooLate(Box::new(record)));
    }
    conn.prepare_cached("UPDATE calls SET state = 'cancelled', completed_at = ?2 WHERE id = ?1")?
        .execute(params![call_id, nanos(now)])?;
    record.state = CallState::Cancelled;
    record.completed_at = Some(now);
    effects.finals.add(&record.state, 1);
    effects.finished.push(call_id.to_owned());
    Ok(Cancelled::Done(Box::new(record)))
}

/// One reaper pass; see [`Queue::reap`](super::super::Queue::reap).
pub(super) fn reap(
    conn: &Connection,
    effects: &mut Effects,
    now: OffsetDateTime,
    retention: Retention,
) -> Result<Reaped, QueueError> {
    let mut reaped = Reaped::default();
    let now_n = nanos(now);
    let systems = conn
        .prepare_cached(REQUEUE_LAPSED)?
        .query_map([now_n], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    reaped.requeued = systems.len();
    effects.work.extend(systems);

    let expired = conn
        .prepare_cached(EXPIRE)?
        .query_map([now_n], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    reaped.expired = expired.len();
    effects.finals.add(
        &CallState::Expired,
        i64::try_from(expired.len()).unwrap_or(i64::MAX),
    );
    effects.finished.extend(expired);

    // Keys of open calls stay enforced whatever their age.
    reaped.keys_forgotten = conn
        .prepare_cached(FORGET_KEYS)?
        .execute([nanos(now - retention.idempotency)])?;

    // A call whose key is still enforced is kept, so a retry gets its outcome.
    let purged = conn
        .prepare_cached(PURGE)?
        .query_map(
            params![nanos(now - retention.results), PURGE_LIMIT],
            |row| row.get::<_, String>(0),
        )?
        .collect::<Result<Vec<_>, _>>()?;
    reaped.purged = purged.len();
    for state in purged.iter().filter_map(|code| final_state(code)) {
        effects.finals.add(&state, -1);
    }
    Ok(reaped)
}
