//! The changes: one function per [`Queue`](super::super::Queue) method that
//! writes, each run by the writer inside the batch transaction (so the
//! check-then-change steps below cannot race: there is one writer). Each records
//! the wake-ups it causes in [`Effects`].

use rusqlite::{Connection, OptionalExtension, params};
use sapbridge_proto::{Outcome, Unit};
use time::OffsetDateTime;

use super::super::{
    CallEnd, CallRecord, CallState, Cancelled, Claimant, Completion, Enqueued, Holder, NewCall,
    OpenCall, Overdue, QueueError, Reaped, Retention, Signals, Verdict, claim_rule, judge_rule,
    lease_lapsed_outcome, millis_until, overdue_rule,
};
use super::rows::{
    calls_json, calls_of, commit_of, final_state, load, nanos, outcome_json, state_code, time_at,
};
use super::writer::Effects;

/// At most this many final calls are deleted per reaper pass (keeps batches short).
const PURGE_LIMIT: i64 = 10_000;

/// The most calls one claim leases (a session holds at most this many credits).
pub(super) const MAX_CLAIM: usize = 1024;

/// The oldest queued calls of one system, with what the claim rule needs to know
/// of each: `?1` system; the caller stops reading after the number it wants. Walks
/// the partial index of queued calls in enqueue order, so calls queued for other
/// systems cost nothing. The `LIMIT` is a literal: a bound one makes SQLite prepare
/// the statement again on every run.
pub(super) const CLAIM_CANDIDATES: &str =
    "SELECT seq, lease_session, lease_agent, hold_until, expires_at
    FROM calls INDEXED BY calls_queued_by_system
    WHERE system = ?1 AND state = 'queued'
    ORDER BY seq LIMIT 1024";

/// Leases the queued call `?1` to session `?2` of agent `?4` until `?3`.
pub(super) const LEASE: &str = "UPDATE calls
    SET state = 'leased', lease_session = ?2, lease_agent = ?4, lease_until = ?3,
        hold_until = NULL, attempts = attempts + 1
    WHERE seq = ?1 AND state = 'queued'
    RETURNING id, system, calls, commit_policy, attempts, expires_at, trace";

/// Returns the leases of session `?1` to the queue, held for their agent until
/// `?2` (the holder stays).
pub(super) const RELEASE: &str =
    "UPDATE calls SET state = 'queued', lease_until = NULL, hold_until = ?2
    WHERE state = 'leased' AND lease_session = ?1
    RETURNING system";

/// Returns leases past `?1` to the queue, held for their agent until `?2`.
pub(super) const REQUEUE_LAPSED: &str = "UPDATE calls INDEXED BY calls_leased_session
    SET state = 'queued', lease_until = NULL, hold_until = ?2
    WHERE state = 'leased' AND lease_until <= ?1
    RETURNING system";

/// Queued calls past their TTL at `?1`, with what the overdue rule needs (through
/// the expiry index: the planner would otherwise walk every queued call on each
/// reaper pass).
pub(super) const OVERDUE: &str = "SELECT id, lease_agent, hold_until, attempts, expires_at
    FROM calls INDEXED BY calls_queued_expiry
    WHERE state = 'queued' AND expires_at <= ?1";

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
    mut call: NewCall,
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
    let deliveries = call.take_deliveries(OffsetDateTime::now_utc());
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
        record.holder = Some(taker.holder());
        record.attempts = 1;
    }
    let inserted = insert(conn, &record).and_then(|()| super::webhooks::insert(conn, &deliveries));
    if let Err(error) = inserted {
        if let Some(taker) = taker {
            taker.give(1);
        }
        return Err(error);
    }
    match taker {
        Some(taker) => {
            let unit = record.unit(false);
            effects.handed.push((taker, unit));
        }
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
             lease_session, lease_until, owner, lease_agent, trace)
         VALUES (?1, ?2, ?3, ?4, ?5, ?11, ?12, ?6, ?7, ?8, ?9, ?10, ?13, ?14, ?15, ?16, ?17)",
    )?
    .execute(params![
        record.id,
        record.system,
        record.kind.to_json(),
        calls_json(&record.calls)?,
        record.commit.code(),
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
        record.holder.as_ref().map(|h| h.agent.as_str()),
        record.trace,
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

/// Leases up to `max` of the oldest queued calls of `systems` that `claimant` may
/// take (the claim rule of the queue module): the oldest `max` of each system
/// through the queued-calls index, merged by enqueue order, then leased one by one
/// (all inside the writer's transaction). Calls past their TTL are left for the
/// reaper, unless they go back to their own agent.
pub(super) fn claim(
    conn: &Connection,
    systems: &[String],
    claimant: &Claimant<'_>,
    max: usize,
    until: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<Vec<Unit>, QueueError> {
    if max == 0 || systems.is_empty() {
        return Ok(Vec::new());
    }
    let max = max.min(MAX_CLAIM);
    let mut chosen: Vec<(i64, bool)> = Vec::new();
    let mut candidates = conn.prepare_cached(CLAIM_CANDIDATES)?;
    for system in systems {
        let rows = candidates.query_map(params![system], |row| {
            let holder = match (
                row.get::<_, Option<String>>(1)?,
                row.get::<_, Option<String>>(2)?,
            ) {
                (Some(session), Some(agent)) => Some(Holder { session, agent }),
                _ => None,
            };
            let hold_until = row.get::<_, Option<i64>>(3)?.map(time_at);
            let in_doubt = claim_rule(
                holder.as_ref(),
                hold_until,
                time_at(row.get(4)?),
                claimant,
                now,
            );
            Ok(in_doubt.map(|in_doubt| (row.get::<_, i64>(0), in_doubt)))
        })?;
        let mut taken = 0;
        for row in rows {
            if let Some((seq, in_doubt)) = row? {
                chosen.push((seq?, in_doubt));
                taken += 1;
                if taken == max {
                    break;
                }
            }
        }
    }
    if systems.len() > 1 {
        chosen.sort_unstable();
        chosen.truncate(max);
    }
    let until_n = nanos(until);
    let mut lease = conn.prepare_cached(LEASE)?;
    let mut claimed = Vec::with_capacity(chosen.len());
    for (seq, in_doubt) in chosen {
        let mut rows = lease.query(params![seq, claimant.session, until_n, claimant.agent])?;
        if let Some(row) = rows.next()? {
            let calls: String = row.get(2)?;
            let commit: String = row.get(3)?;
            let start_by = time_at(row.get(5)?).min(until);
            claimed.push(Unit {
                call_id: row.get(0)?,
                attempt: row.get(4)?,
                system: row.get(1)?,
                deadline_ms: Some(millis_until(start_by, now)),
                in_doubt,
                calls: calls_of(&calls)?,
                commit: commit_of(&commit)?,
                traceparent: row.get(6)?,
            });
        }
    }
    Ok(claimed)
}

/// Who reported an outcome, for [`complete`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Report<'a> {
    /// The call.
    pub(super) call_id: &'a str,
    /// The attempt the outcome answers.
    pub(super) attempt: u32,
    /// The reporting agent session.
    pub(super) session: &'a str,
    /// Its agent installation.
    pub(super) agent: &'a str,
}

/// Judges an outcome (the outcome rule of the queue module) and applies the
/// verdict: one read, then at most one update as the last fallible step (see
/// `Writer::write_one`).
pub(super) fn complete(
    conn: &Connection,
    effects: &mut Effects,
    report: &Report<'_>,
    outcome: Outcome,
    now: OffsetDateTime,
) -> Result<Completion, QueueError> {
    let call_id = report.call_id;
    let mut stmt = conn.prepare_cached(
        "SELECT commit_policy, completed_at, attempts, lease_session, expires_at, system
         FROM calls WHERE id = ?1",
    )?;
    type Row = (String, Option<i64>, u32, Option<String>, i64, String);
    let found: Option<Row> = stmt
        .query_row([call_id], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
            ))
        })
        .optional()?;
    let Some((commit, completed_at, attempts, lease_session, expires_at, system)) = found else {
        return Ok(Completion::Unknown);
    };
    let open = match completed_at {
        Some(_) => None,
        None => Some(OpenCall {
            holder_session: lease_session.as_deref(),
            attempts,
            commit: commit_of(&commit)?,
            expires_at: time_at(expires_at),
        }),
    };
    let state = match judge_rule(open, report.session, report.attempt, &outcome, now) {
        Verdict::AlreadyFinal => return Ok(Completion::AlreadyFinal),
        Verdict::Refuse => return Ok(Completion::Refused),
        Verdict::Requeue => {
            conn.prepare_cached(
                "UPDATE calls SET state = 'queued', lease_session = NULL, lease_agent = NULL,
                     lease_until = NULL, hold_until = NULL
                 WHERE id = ?1",
            )?
            .execute([call_id])?;
            effects.work.insert(system);
            return Ok(Completion::Requeued);
        }
        Verdict::Store(state) => state,
    };
    conn.prepare_cached(
        "UPDATE calls SET state = ?2, outcome = ?3, agent = ?4, completed_at = ?5,
             lease_until = NULL, hold_until = NULL
         WHERE id = ?1",
    )?
    .execute(params![
        call_id,
        state_code(&state),
        outcome_json(&outcome)?,
        report.agent,
        nanos(now)
    ])?;
    effects.finals.add(&state, 1);
    // Times are stored in nanoseconds: hand waiters the time as it reads back.
    let end = CallEnd {
        state,
        attempts,
        completed_at: time_at(nanos(now)),
        agent: Some(report.agent.to_owned()),
        outcome: Some(outcome),
    };
    effects.ended.push((call_id.to_owned(), end));
    Ok(Completion::Stored)
}

/// Returns every lease of `session` to the queue, held for its agent.
pub(super) fn release_session(
    conn: &Connection,
    effects: &mut Effects,
    session: &str,
    hold_until: OffsetDateTime,
) -> Result<usize, QueueError> {
    let mut stmt = conn.prepare_cached(RELEASE)?;
    let systems = stmt
        .query_map(params![session, nanos(hold_until)], |row| {
            row.get::<_, String>(0)
        })?
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
        .query_map(params![now_n, nanos(now + retention.owner_hold)], |row| {
            row.get::<_, String>(0)
        })?
        .collect::<Result<Vec<_>, _>>()?;
    reaped.requeued = systems.len();
    effects.work.extend(systems);
    end_overdue(conn, effects, now, &mut reaped)?;

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

/// Ends the queued calls past their TTL that the overdue rule says end now: expired
/// when no agent ever took them, failed with `OUTCOME_UNKNOWN` when one did.
fn end_overdue(
    conn: &Connection,
    effects: &mut Effects,
    now: OffsetDateTime,
    reaped: &mut Reaped,
) -> Result<(), QueueError> {
    let now_n = nanos(now);
    let overdue = conn
        .prepare_cached(OVERDUE)?
        .query_map([now_n], |row| {
            let agent: Option<String> = row.get(1)?;
            let hold_until = row.get::<_, Option<i64>>(2)?.map(time_at);
            let verdict = overdue_rule(agent.is_some(), hold_until, time_at(row.get(4)?), now);
            Ok((
                row.get::<_, String>(0)?,
                agent,
                row.get::<_, u32>(3)?,
                verdict,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (id, agent, attempts, verdict) in overdue {
        match verdict {
            Overdue::Wait => {}
            Overdue::Expire => {
                conn.prepare_cached(
                    "UPDATE calls SET state = 'expired', completed_at = ?2 WHERE id = ?1",
                )?
                .execute(params![id, now_n])?;
                effects.finals.add(&CallState::Expired, 1);
                reaped.ended.push(id.clone());
                effects.finished.push(id);
                reaped.expired += 1;
            }
            Overdue::FailUnknown => {
                let outcome = lease_lapsed_outcome(&id, agent.as_deref());
                conn.prepare_cached(
                    "UPDATE calls SET state = 'failed', completed_at = ?2, outcome = ?3
                     WHERE id = ?1",
                )?
                .execute(params![id, now_n, outcome_json(&outcome)?])?;
                effects.finals.add(&CallState::Failed, 1);
                reaped.ended.push(id.clone());
                effects.ended.push((
                    id,
                    CallEnd {
                        state: CallState::Failed,
                        attempts,
                        completed_at: time_at(now_n),
                        agent: None,
                        outcome: Some(outcome),
                    },
                ));
                reaped.failed_unknown += 1;
            }
        }
    }
    Ok(())
}
