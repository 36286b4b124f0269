//! The new calls of a batch: direct dispatch to local sessions with free
//! credits, and one `INSERT … SELECT FROM unnest(…)` for all of them.

use std::collections::HashSet;
use std::sync::Arc;

use time::OffsetDateTime;

use super::super::super::{CallState, QueueError, Signals, Taker};
use super::super::rows::{
    attempts_code, calls_json, commit_code, kind_json, nanos, state_code, store_error,
};
use super::{Conn, NewCallEntry, prepared};

/// Puts new calls back to queued (their batch did not commit).
pub(super) fn reset(enqueues: &mut [NewCallEntry]) {
    for (record, _) in enqueues {
        record.state = CallState::Queued;
        record.holder = None;
        record.attempts = 0;
    }
}

/// Direct dispatch: leases each new call to a local session with a free credit,
/// unless an older call of its system waits (that one goes first). Returns the
/// index of each call so leased, with its taker.
pub(super) async fn place_new_calls(
    tx: &Conn,
    signals: &Signals,
    enqueues: &mut [NewCallEntry],
    now: OffsetDateTime,
) -> Result<Vec<(usize, Arc<Taker>)>, QueueError> {
    let mut picked: Vec<(usize, Arc<Taker>)> = Vec::new();
    for (i, (record, _)) in enqueues.iter().enumerate() {
        if let Some(taker) = signals.pick_taker(&record.system) {
            picked.push((i, taker));
        }
    }
    if picked.is_empty() {
        return Ok(picked);
    }
    let systems: Vec<&str> = picked
        .iter()
        .map(|(i, _)| enqueues[*i].0.system.as_str())
        .collect();
    let rows = tx
        .query(
            &prepared(
                tx,
                "SELECT s FROM unnest($1::text[]) AS s
             WHERE EXISTS (SELECT 1 FROM sapbridge_calls
                           WHERE system = s AND state = 'queued')",
            )
            .await?,
            &[&systems],
        )
        .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(error) => {
            for (_, taker) in picked {
                taker.give(1);
            }
            return Err(store_error(error));
        }
    };
    let mut waiting: HashSet<String> = rows.iter().map(|row| row.get(0)).collect();
    let mut picked = picked.into_iter().peekable();
    let mut handed = Vec::new();
    for (i, (record, _)) in enqueues.iter_mut().enumerate() {
        let taker = match picked.peek() {
            Some((at, _)) if *at == i => picked.next().map(|(_, taker)| taker),
            _ => None,
        };
        match taker {
            Some(taker) if !waiting.contains(&record.system) => {
                record.state = CallState::Leased {
                    session: taker.session().to_owned(),
                    until: taker.lease_until(now),
                };
                record.holder = Some(taker.holder());
                record.attempts = 1;
                handed.push((i, taker));
            }
            other => {
                if let Some(taker) = other {
                    taker.give(1);
                }
                // Later calls of this system queue behind this one.
                waiting.insert(record.system.clone());
            }
        }
    }
    Ok(handed)
}

/// Inserts every new call in one statement.
pub(super) async fn insert(
    tx: &Conn,
    enqueues: &[NewCallEntry],
    replica: &str,
) -> Result<(), QueueError> {
    if enqueues.is_empty() {
        return Ok(());
    }
    let n = enqueues.len();
    let mut ids = Vec::with_capacity(n);
    let mut systems = Vec::with_capacity(n);
    let mut kinds = Vec::with_capacity(n);
    let mut calls = Vec::with_capacity(n);
    let mut commits = Vec::with_capacity(n);
    let mut states = Vec::with_capacity(n);
    let mut attempts = Vec::with_capacity(n);
    let mut submitted = Vec::with_capacity(n);
    let mut expires = Vec::with_capacity(n);
    let mut sessions: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut untils: Vec<Option<i64>> = Vec::with_capacity(n);
    let mut agents: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut owners: Vec<Option<&str>> = Vec::with_capacity(n);
    for (record, _) in enqueues {
        ids.push(record.id.as_str());
        systems.push(record.system.as_str());
        kinds.push(kind_json(&record.kind)?);
        calls.push(calls_json(&record.calls)?);
        commits.push(commit_code(record.commit));
        states.push(state_code(&record.state));
        attempts.push(attempts_code(record.attempts));
        submitted.push(nanos(record.submitted_at));
        expires.push(nanos(record.expires_at));
        match &record.state {
            CallState::Leased { session, until } => {
                sessions.push(Some(session.as_str()));
                untils.push(Some(nanos(*until)));
            }
            _ => {
                sessions.push(None);
                untils.push(None);
            }
        }
        agents.push(record.holder.as_ref().map(|h| h.agent.as_str()));
        owners.push(record.owner.as_deref());
    }
    tx.execute(
        &prepared(
            tx,
            "INSERT INTO sapbridge_calls (id, system, kind, calls, commit_policy, state, attempts,
             submitted_at, expires_at, lease_session, lease_until, lease_agent, owner,
             lease_replica)
         SELECT u.*, CASE WHEN u.lease_session IS NULL THEN NULL ELSE $14 END
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
             $6::text[], $7::int4[], $8::int8[], $9::int8[], $10::text[], $11::int8[],
             $12::text[], $13::text[])
             AS u(id, system, kind, calls, commit_policy, state, attempts, submitted_at,
                  expires_at, lease_session, lease_until, lease_agent, owner)",
        )
        .await?,
        &[
            &ids, &systems, &kinds, &calls, &commits, &states, &attempts, &submitted, &expires,
            &sessions, &untils, &agents, &owners, &replica,
        ],
    )
    .await
    .map_err(store_error)?;
    Ok(())
}
