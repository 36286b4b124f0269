//! The outcomes of a batch: the calls locked in id order, each outcome judged in
//! turn with [`judge_rule`], and the verdicts written with one statement each.

use std::collections::{HashMap, HashSet};

use time::OffsetDateTime;
use tokio_postgres::Statement;

use super::super::super::{CallEnd, Completion, OpenCall, QueueError, Verdict, judge_rule};
use super::super::rows::{
    attempts_of, commit_of, nanos, outcome_json, state_code, store_error, time_at,
};
use super::{CompleteEntry, Conn, prepared};

/// What the outcome rule needs of a call to complete, as locked.
#[derive(Debug, Clone)]
pub(super) struct Judged {
    commit: sapbridge_proto::CommitPolicy,
    final_now: bool,
    attempts: u32,
    holder_session: Option<String>,
    expires_at: OffsetDateTime,
    system: String,
}

/// Locks the calls the batch completes, in id order.
pub(super) async fn lock_completions(
    tx: &Conn,
    completes: &[CompleteEntry],
) -> Result<HashMap<String, Judged>, QueueError> {
    if completes.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<&str> = completes.iter().map(|(c, _)| c.call_id.as_str()).collect();
    let rows = tx
        .query(
            &prepared(
                tx,
                "SELECT id, commit_policy, completed_at IS NOT NULL, attempts, lease_session,
                    expires_at, system
             FROM sapbridge_calls WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            )
            .await?,
            &[&ids],
        )
        .await
        .map_err(store_error)?;
    let mut found = HashMap::with_capacity(rows.len());
    for row in rows {
        found.insert(
            row.get::<_, String>(0),
            Judged {
                commit: commit_of(row.get(1))?,
                final_now: row.get(2),
                attempts: attempts_of(row.get(3)),
                holder_session: row.get(4),
                expires_at: time_at(row.get(5)),
                system: row.get(6),
            },
        );
    }
    Ok(found)
}

/// The verdicts on a batch's outcomes, the last change per call.
#[derive(Default)]
pub(super) struct Verdicts {
    /// The answer to each outcome, in batch order.
    pub(super) completions: Vec<Completion>,
    /// Calls to store final: id, state code, outcome JSON, agent.
    pub(super) stored: Vec<(String, &'static str, String, String)>,
    /// Calls queued again for anyone.
    pub(super) requeued: Vec<String>,
    /// Their systems (work for them).
    pub(super) requeued_systems: HashSet<String>,
    /// The stored calls' ends, for their waiters.
    pub(super) ended: Vec<(String, CallEnd)>,
    /// Calls stored or requeued here: no claim of this batch takes them.
    pub(super) finished: HashSet<String>,
}

/// Judges each outcome in turn against the calls as locked, as if each were
/// applied before the next is judged.
pub(super) fn judge(
    completes: &[CompleteEntry],
    mut calls: HashMap<String, Judged>,
    now: OffsetDateTime,
) -> Result<Verdicts, QueueError> {
    let mut out = Verdicts::default();
    let completed_at = time_at(nanos(now));
    for (job, _) in completes {
        let Some(call) = calls.get_mut(&job.call_id) else {
            out.completions.push(Completion::Unknown);
            continue;
        };
        let open = (!call.final_now).then_some(OpenCall {
            holder_session: call.holder_session.as_deref(),
            attempts: call.attempts,
            commit: call.commit,
            expires_at: call.expires_at,
        });
        match judge_rule(open, &job.session, job.attempt, &job.outcome, now) {
            Verdict::AlreadyFinal => out.completions.push(Completion::AlreadyFinal),
            Verdict::Refuse => out.completions.push(Completion::Refused),
            Verdict::Requeue => {
                call.holder_session = None;
                out.requeued.push(job.call_id.clone());
                out.requeued_systems.insert(call.system.clone());
                out.finished.insert(job.call_id.clone());
                out.completions.push(Completion::Requeued);
            }
            Verdict::Store(state) => {
                call.final_now = true;
                out.stored.push((
                    job.call_id.clone(),
                    state_code(&state),
                    outcome_json(&job.outcome)?,
                    job.agent.clone(),
                ));
                out.ended.push((
                    job.call_id.clone(),
                    CallEnd {
                        state,
                        attempts: call.attempts,
                        completed_at,
                        agent: Some(job.agent.clone()),
                        outcome: Some(job.outcome.clone()),
                    },
                ));
                out.finished.insert(job.call_id.clone());
                out.completions.push(Completion::Stored);
            }
        }
    }
    // A call requeued and then stored in one batch is stored (its holder was
    // cleared, so this cannot happen today; kept exact all the same).
    let stored: HashSet<&str> = out.stored.iter().map(|s| s.0.as_str()).collect();
    out.requeued.retain(|id| !stored.contains(id.as_str()));
    Ok(out)
}

/// Stores outcomes: `$1` ids, `$2` state codes, `$3` outcomes, `$4` agents, `$5`
/// the completion time.
pub(super) const STORE_SQL: &str = "UPDATE sapbridge_calls c
    SET state = u.state, outcome = u.outcome, agent = u.agent, completed_at = $5,
        lease_until = NULL, hold_until = NULL
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(id, state, outcome, agent)
    WHERE c.id = u.id";

/// Queues the calls `$1` again for anyone.
pub(super) const REQUEUE_SQL: &str = "UPDATE sapbridge_calls
    SET state = 'queued', lease_session = NULL, lease_agent = NULL, lease_until = NULL,
        hold_until = NULL
    WHERE id = ANY($1)";

/// Writes the stored outcomes in one statement ([`STORE_SQL`], prepared).
pub(super) async fn store_verdicts(
    tx: &Conn,
    statement: &Statement,
    verdicts: &Verdicts,
) -> Result<(), QueueError> {
    if verdicts.stored.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = verdicts.stored.iter().map(|s| s.0.as_str()).collect();
    let states: Vec<&str> = verdicts.stored.iter().map(|s| s.1).collect();
    let outcomes: Vec<&str> = verdicts.stored.iter().map(|s| s.2.as_str()).collect();
    let agents: Vec<&str> = verdicts.stored.iter().map(|s| s.3.as_str()).collect();
    let completed_at = verdicts
        .ended
        .first()
        .map_or(0, |(_, end)| nanos(end.completed_at));
    tx.execute(
        statement,
        &[&ids, &states, &outcomes, &agents, &completed_at],
    )
    .await
    .map_err(store_error)?;
    Ok(())
}

/// Queues calls again for anyone (their agent did not start them in time;
/// [`REQUEUE_SQL`], prepared).
pub(super) async fn requeue(
    tx: &Conn,
    statement: &Statement,
    ids: &[String],
) -> Result<(), QueueError> {
    if ids.is_empty() {
        return Ok(());
    }
    tx.execute(statement, &[&ids]).await.map_err(store_error)?;
    Ok(())
}
