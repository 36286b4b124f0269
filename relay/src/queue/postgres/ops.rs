//! The changes that run in a transaction of their own rather than in a batch:
//! an enqueue with an idempotency key, releasing a session's leases, a cancel and
//! a reaper pass. Each locks what it changes (in id order, or skipping rows other
//! transactions hold), so replicas running them at once neither race nor deadlock.
//! Each returns the wake-ups to fire once it committed.

use std::collections::HashSet;
use std::sync::Arc;

use deadpool_postgres::Transaction;
use sapbridge_proto::Unit;
use time::OffsetDateTime;

use super::super::{
    CallEnd, CallRecord, CallState, Cancelled, Enqueued, NewCall, Overdue, QueueError, Reaped,
    Retention, Signals, Taker, lease_lapsed_outcome, overdue_rule,
};
use super::counts::{ALONE_SLOT, Deltas};
use super::listen::Notes;
use super::replicas;
use super::rows::{
    attempts_code, attempts_of, calls_json, commit_code, kind_json, load, nanos, outcome_json,
    state_code, store_error, time_at,
};

/// The advisory lock a reaper pass holds: one replica reaps at a time, the others
/// skip their pass.
const REAPER_LOCK: i64 = 0x7361_7062_7265_6170;

/// At most this many calls are ended, and this many purged, per reaper pass.
const REAP_LIMIT: i64 = 10_000;

/// The wake-ups a committed change fires.
#[derive(Default)]
pub(super) struct Effects {
    /// Systems with claimable work.
    pub(super) work: HashSet<String>,
    /// Calls that ended, with no end to hand over.
    pub(super) finished: Vec<String>,
    /// Calls that ended, with their end.
    pub(super) ended: Vec<(String, CallEnd)>,
    /// A new call leased to a local session.
    pub(super) handed: Option<(Arc<Taker>, Unit)>,
    /// Calls that entered or left a final state.
    pub(super) finals: Deltas,
}

impl Effects {
    /// Counts this change's final calls (inside its transaction, as its last
    /// statement).
    pub(super) async fn record(
        &self,
        tx: &Transaction<'_>,
        replica: &str,
    ) -> Result<(), QueueError> {
        self.finals.apply(tx, replica, ALONE_SLOT).await
    }

    /// The notifications for the other replicas, to send once committed.
    pub(super) fn notes(&self, replica: &str) -> Notes {
        let ended = self
            .finished
            .iter()
            .map(String::as_str)
            .chain(self.ended.iter().map(|(id, _)| id.as_str()));
        Notes::new(replica, self.work.iter().map(String::as_str), ended)
    }

    /// Fires the local signals (after the commit).
    pub(super) fn fire(self, signals: &Signals) {
        if let Some((taker, unit)) = self.handed {
            taker.hand_over(unit);
        }
        for system in &self.work {
            signals.work_available(system);
        }
        for call_id in &self.finished {
            signals.call_finished(call_id);
        }
        for (call_id, end) in self.ended {
            signals.call_ended(&call_id, end);
        }
    }

    /// The change did not commit: a taker gets its credit back.
    pub(super) fn abandon(self) {
        if let Some((taker, _)) = self.handed {
            taker.give(1);
        }
    }
}

/// Stores a call with an idempotency key, or answers with the call the key names.
/// The key's primary key decides between concurrent requests on any replica: the
/// second insert waits for the first transaction and then finds its key.
/// Enqueues a call in a transaction of its own: one with an idempotency key
/// ([`enqueue_keyed`]), or one with webhook deliveries, which are inserted with
/// it when it is created.
pub(super) async fn enqueue_alone(
    tx: &Transaction<'_>,
    effects: &mut Effects,
    signals: &Signals,
    replica: &str,
    mut call: NewCall,
) -> Result<Enqueued, QueueError> {
    let deliveries = call.take_deliveries(OffsetDateTime::now_utc());
    let enqueued = if call.idempotency.is_some() {
        enqueue_keyed(tx, effects, signals, replica, call).await?
    } else {
        let record = insert_one(tx, effects, signals, replica, CallRecord::new(call)).await?;
        Enqueued::Created(Box::new(record))
    };
    if matches!(enqueued, Enqueued::Created(_)) {
        super::webhooks::insert(&**tx, &deliveries).await?;
    }
    Ok(enqueued)
}

async fn enqueue_keyed(
    tx: &Transaction<'_>,
    effects: &mut Effects,
    signals: &Signals,
    replica: &str,
    call: NewCall,
) -> Result<Enqueued, QueueError> {
    let Some((key, fingerprint)) = call.idempotency.clone() else {
        return Err(QueueError::Store("a keyed enqueue without a key".into()));
    };
    // Twice at most: once more after forgetting a key whose call is gone.
    for _ in 0..2 {
        let inserted = tx
            .query_opt(
                "INSERT INTO sapbridge_idempotency_keys (scope, key, fingerprint, call_id, created_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1",
                &[&key.scope, &key.key, &fingerprint, &call.id, &nanos(call.submitted_at)],
            )
            .await
            .map_err(store_error)?;
        if inserted.is_some() {
            let record = insert_one(tx, effects, signals, replica, CallRecord::new(call)).await?;
            return Ok(Enqueued::Created(Box::new(record)));
        }
        let found = tx
            .query_opt(
                "SELECT fingerprint, call_id FROM sapbridge_idempotency_keys
                 WHERE scope = $1 AND key = $2",
                &[&key.scope, &key.key],
            )
            .await
            .map_err(store_error)?;
        let Some(found) = found else {
            continue;
        };
        let first: String = found.get(0);
        let call_id: String = found.get(1);
        if let Some(record) = load(&**tx, &call_id, false).await? {
            return Ok(if first == fingerprint {
                Enqueued::Existing(Box::new(record))
            } else {
                Enqueued::KeyMismatch
            });
        }
        // The key outlived its call (the reaper never lets it): forget it.
        tx.execute(
            "DELETE FROM sapbridge_idempotency_keys WHERE scope = $1 AND key = $2",
            &[&key.scope, &key.key],
        )
        .await
        .map_err(store_error)?;
    }
    Err(QueueError::Store(format!(
        "idempotency key of call {} kept changing under this request",
        call.id
    )))
}

/// Inserts one new call: leased to a local session with a free credit when none
/// of its system waits, else queued.
async fn insert_one(
    tx: &Transaction<'_>,
    effects: &mut Effects,
    signals: &Signals,
    replica: &str,
    mut record: CallRecord,
) -> Result<CallRecord, QueueError> {
    let mut taker = signals.pick_taker(&record.system);
    if let Some(picked) = taker.take() {
        let waiting = tx
            .query_opt(
                "SELECT 1 FROM sapbridge_calls WHERE system = $1 AND state = 'queued' LIMIT 1",
                &[&record.system],
            )
            .await;
        match waiting {
            Ok(None) => taker = Some(picked),
            Ok(Some(_)) => picked.give(1),
            Err(error) => {
                picked.give(1);
                return Err(store_error(error));
            }
        }
    }
    if let Some(taker) = &taker {
        record.state = CallState::Leased {
            session: taker.session().to_owned(),
            until: taker.lease_until(OffsetDateTime::now_utc()),
        };
        record.holder = Some(taker.holder());
        record.attempts = 1;
    }
    let (scope, key, fingerprint) = match &record.idempotency {
        Some((key, fingerprint)) => (Some(&key.scope), Some(&key.key), Some(fingerprint)),
        None => (None, None, None),
    };
    let (lease_session, lease_until) = match &record.state {
        CallState::Leased { session, until } => (Some(session.as_str()), Some(nanos(*until))),
        _ => (None, None),
    };
    let inserted = tx
        .execute(
            "INSERT INTO sapbridge_calls (id, system, kind, calls, commit_policy, state,
                 attempts, submitted_at, expires_at, idem_scope, idem_key, idem_fingerprint,
                 lease_session, lease_until, owner, lease_agent, lease_replica, trace)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                     $17, $18)",
            &[
                &record.id,
                &record.system,
                &kind_json(&record.kind)?,
                &calls_json(&record.calls)?,
                &commit_code(record.commit),
                &state_code(&record.state),
                &attempts_code(record.attempts),
                &nanos(record.submitted_at),
                &nanos(record.expires_at),
                &scope,
                &key,
                &fingerprint,
                &lease_session,
                &lease_until,
                &record.owner,
                &record.holder.as_ref().map(|h| h.agent.as_str()),
                &lease_session.map(|_| replica),
                &record.trace,
            ],
        )
        .await;
    if let Err(error) = inserted {
        if let Some(taker) = taker {
            taker.give(1);
        }
        return Err(store_error(error));
    }
    match taker {
        Some(taker) => {
            let unit = record.unit(false);
            effects.handed = Some((taker, unit));
        }
        None => {
            effects.work.insert(record.system.clone());
        }
    }
    Ok(record)
}

/// Returns every lease of `session` to the queue, held for its agent.
pub(super) async fn release_session(
    tx: &Transaction<'_>,
    effects: &mut Effects,
    session: &str,
    hold_until: OffsetDateTime,
) -> Result<usize, QueueError> {
    let rows = tx
        .query(
            "WITH mine AS (
                 SELECT seq FROM sapbridge_calls
                 WHERE state = 'leased' AND lease_session = $1
                 ORDER BY id FOR UPDATE)
             UPDATE sapbridge_calls c SET state = 'queued', lease_until = NULL, hold_until = $2
             FROM mine
             WHERE c.seq = mine.seq AND c.state = 'leased' AND c.lease_session = $1
             RETURNING c.system",
            &[&session, &nanos(hold_until)],
        )
        .await
        .map_err(store_error)?;
    let released = rows.len();
    effects
        .work
        .extend(rows.iter().map(|row| row.get::<_, String>(0)));
    Ok(released)
}

/// Cancels a call if it is still queued.
pub(super) async fn cancel(
    tx: &Transaction<'_>,
    effects: &mut Effects,
    call_id: &str,
    now: OffsetDateTime,
) -> Result<Cancelled, QueueError> {
    let Some(mut record) = load(&**tx, call_id, true).await? else {
        return Ok(Cancelled::Unknown);
    };
    if record.state != CallState::Queued {
        return Ok(Cancelled::TooLate(Box::new(record)));
    }
    tx.execute(
        "UPDATE sapbridge_calls SET state = 'cancelled', completed_at = $2 WHERE id = $1",
        &[&call_id, &nanos(now)],
    )
    .await
    .map_err(store_error)?;
    record.state = CallState::Cancelled;
    record.completed_at = Some(time_at(nanos(now)));
    effects.finals.add(state_code(&record.state), 1);
    effects.finished.push(call_id.to_owned());
    Ok(Cancelled::Done(Box::new(record)))
}

/// One reaper pass; see [`Queue::reap`](super::super::Queue::reap). Only one
/// replica reaps at a time: the others find the lock taken and skip their pass.
pub(super) async fn reap(
    tx: &Transaction<'_>,
    effects: &mut Effects,
    now: OffsetDateTime,
    retention: Retention,
) -> Result<Reaped, QueueError> {
    let mut reaped = Reaped::default();
    let locked: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&REAPER_LOCK])
        .await
        .map_err(store_error)?
        .get(0);
    if !locked {
        return Ok(reaped);
    }
    let now_n = nanos(now);
    let requeued = tx
        .query(
            "WITH lapsed AS (
                 SELECT seq FROM sapbridge_calls
                 WHERE state = 'leased' AND lease_until <= $1
                 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
             UPDATE sapbridge_calls c SET state = 'queued', lease_until = NULL, hold_until = $2
             FROM lapsed WHERE c.seq = lapsed.seq
             RETURNING c.system",
            &[&now_n, &nanos(now + retention.owner_hold), &REAP_LIMIT],
        )
        .await
        .map_err(store_error)?;
    reaped.requeued = requeued.len();
    effects
        .work
        .extend(requeued.iter().map(|row| row.get::<_, String>(0)));
    reaped.requeued +=
        replicas::release_dead(tx, &mut effects.work, now + retention.owner_hold).await?;
    end_overdue(tx, effects, now, &mut reaped).await?;

    // Keys of open calls stay enforced whatever their age.
    let forgotten = tx
        .execute(
            "DELETE FROM sapbridge_idempotency_keys k
             WHERE created_at <= $1
               AND NOT EXISTS (SELECT 1 FROM sapbridge_calls c
                               WHERE c.id = k.call_id AND c.completed_at IS NULL)",
            &[&nanos(now - retention.idempotency)],
        )
        .await
        .map_err(store_error)?;
    reaped.keys_forgotten = usize::try_from(forgotten).unwrap_or(usize::MAX);

    // A call whose key is still enforced is kept, so a retry gets its outcome.
    let purged = tx
        .query(
            "DELETE FROM sapbridge_calls WHERE seq IN (
                 SELECT seq FROM sapbridge_calls c
                 WHERE completed_at IS NOT NULL AND completed_at <= $1
                   AND NOT EXISTS (SELECT 1 FROM sapbridge_idempotency_keys k
                                   WHERE k.call_id = c.id)
                 LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING state",
            &[&nanos(now - retention.results), &REAP_LIMIT],
        )
        .await
        .map_err(store_error)?;
    reaped.purged = purged.len();
    for row in &purged {
        effects.finals.add(row.get(0), -1);
    }
    Ok(reaped)
}

/// Ends the queued calls past their TTL that the overdue rule says end now:
/// expired when no agent ever took them, failed with `OUTCOME_UNKNOWN` when one did.
async fn end_overdue(
    tx: &Transaction<'_>,
    effects: &mut Effects,
    now: OffsetDateTime,
    reaped: &mut Reaped,
) -> Result<(), QueueError> {
    let now_n = nanos(now);
    let rows = tx
        .query(
            "SELECT id, lease_agent, hold_until, attempts, expires_at FROM sapbridge_calls
             WHERE state = 'queued' AND expires_at <= $1
             ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
            &[&now_n, &REAP_LIMIT],
        )
        .await
        .map_err(store_error)?;
    let mut expired: Vec<String> = Vec::new();
    let mut failed: Vec<(String, String)> = Vec::new();
    for row in rows {
        let id: String = row.get(0);
        let agent: Option<String> = row.get(1);
        let hold_until = row.get::<_, Option<i64>>(2).map(time_at);
        match overdue_rule(agent.is_some(), hold_until, time_at(row.get(4)), now) {
            Overdue::Wait => {}
            Overdue::Expire => expired.push(id),
            Overdue::FailUnknown => {
                let outcome = lease_lapsed_outcome(&id, agent.as_deref());
                failed.push((id.clone(), outcome_json(&outcome)?));
                effects.ended.push((
                    id,
                    CallEnd {
                        state: CallState::Failed,
                        attempts: attempts_of(row.get(3)),
                        completed_at: time_at(now_n),
                        agent: None,
                        outcome: Some(outcome),
                    },
                ));
            }
        }
    }
    if !expired.is_empty() {
        tx.execute(
            "UPDATE sapbridge_calls SET state = 'expired', completed_at = $2 WHERE id = ANY($1)",
            &[&expired, &now_n],
        )
        .await
        .map_err(store_error)?;
    }
    if !failed.is_empty() {
        let ids: Vec<&str> = failed.iter().map(|(id, _)| id.as_str()).collect();
        let outcomes: Vec<&str> = failed.iter().map(|(_, o)| o.as_str()).collect();
        tx.execute(
            "UPDATE sapbridge_calls c SET state = 'failed', completed_at = $3, outcome = u.outcome
             FROM unnest($1::text[], $2::text[]) AS u(id, outcome) WHERE c.id = u.id",
            &[&ids, &outcomes, &now_n],
        )
        .await
        .map_err(store_error)?;
    }
    reaped.expired = expired.len();
    reaped.failed_unknown = failed.len();
    reaped.ended.extend(expired.iter().cloned());
    reaped.ended.extend(failed.iter().map(|(id, _)| id.clone()));
    let (expired_n, failed_n) = (i64::try_from(expired.len()), i64::try_from(failed.len()));
    effects
        .finals
        .add(state_code(&CallState::Expired), expired_n.unwrap_or(0));
    effects
        .finals
        .add(state_code(&CallState::Failed), failed_n.unwrap_or(0));
    effects.finished.extend(expired);
    Ok(())
}
