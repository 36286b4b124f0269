//! The claims of a batch: candidates locked `FOR UPDATE SKIP LOCKED`, handed to
//! the claimants in turn with [`claim_rule`], leased with one statement.

use std::collections::{BTreeMap, HashMap, HashSet};

use sapbridge_proto::Unit;
use time::OffsetDateTime;
use tokio_postgres::Statement;

use super::super::super::{Claimant, Holder, QueueError, claim_rule, millis_until};
use super::super::rows::{attempts_of, calls_of, commit_of, nanos, store_error, time_at};
use super::{ClaimEntry, Conn, prepared};

/// The most calls one claim leases (a session holds at most this many credits).
const MAX_CLAIM: usize = 1024;

/// A queued call a claim may take, as locked.
#[derive(Debug)]
pub(super) struct Candidate {
    seq: i64,
    id: String,
    holder: Option<Holder>,
    hold_until: Option<OffsetDateTime>,
    expires_at: OffsetDateTime,
}

/// Locks the oldest queued calls of each system the batch's claims ask for, as
/// many as they ask for together, skipping those another transaction holds.
pub(super) async fn claim_candidates(
    tx: &Conn,
    claims: &[ClaimEntry],
) -> Result<HashMap<String, Vec<Candidate>>, QueueError> {
    let mut wanted: BTreeMap<&str, i64> = BTreeMap::new();
    for (claim, _) in claims {
        let max = i64::try_from(claim.max.min(MAX_CLAIM)).unwrap_or(0);
        if max == 0 {
            continue;
        }
        for system in &claim.systems {
            let n = wanted.entry(system.as_str()).or_default();
            *n = (*n + max).min(MAX_CLAIM as i64);
        }
    }
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let systems: Vec<&str> = wanted.keys().copied().collect();
    let limits: Vec<i64> = wanted.values().copied().collect();
    let rows = tx
        .query(
            &prepared(
                tx,
                "SELECT c.seq, c.id, c.system, c.lease_session, c.lease_agent, c.hold_until,
                    c.expires_at
             FROM unnest($1::text[], $2::int8[]) AS w(system, n)
             CROSS JOIN LATERAL (
                 SELECT seq, id, system, lease_session, lease_agent, hold_until, expires_at
                 FROM sapbridge_calls
                 WHERE system = w.system AND state = 'queued'
                 ORDER BY seq LIMIT w.n
                 FOR UPDATE SKIP LOCKED) AS c",
            )
            .await?,
            &[&systems, &limits],
        )
        .await
        .map_err(store_error)?;
    let mut found: HashMap<String, Vec<Candidate>> = HashMap::new();
    for row in rows {
        let holder = match (
            row.get::<_, Option<String>>(3),
            row.get::<_, Option<String>>(4),
        ) {
            (Some(session), Some(agent)) => Some(Holder { session, agent }),
            _ => None,
        };
        found
            .entry(row.get::<_, String>(2))
            .or_default()
            .push(Candidate {
                seq: row.get(0),
                id: row.get(1),
                holder,
                hold_until: row.get::<_, Option<i64>>(5).map(time_at),
                expires_at: time_at(row.get(6)),
            });
    }
    Ok(found)
}

/// The calls each claim leases: `(seq, in_doubt)` oldest first.
pub(super) struct Choice {
    per_claim: Vec<Vec<(i64, bool)>>,
}

/// Hands the candidates to the claims in turn, each taking the oldest it may
/// ([`claim_rule`]) that no earlier claim took.
pub(super) fn choose(
    claims: &[ClaimEntry],
    candidates: HashMap<String, Vec<Candidate>>,
    finished: &HashSet<String>,
    now: OffsetDateTime,
) -> Choice {
    let mut taken: HashSet<i64> = HashSet::new();
    let mut per_claim = Vec::with_capacity(claims.len());
    for (claim, _) in claims {
        let claimant = Claimant {
            session: &claim.session,
            agent: &claim.agent,
            takes_in_doubt: claim.takes_in_doubt,
        };
        let mut mine: Vec<(i64, bool)> = Vec::new();
        let max = claim.max.min(MAX_CLAIM);
        for system in &claim.systems {
            let Some(list) = candidates.get(system) else {
                continue;
            };
            let mut from_system = 0;
            for c in list {
                if from_system == max {
                    break;
                }
                if taken.contains(&c.seq) || finished.contains(&c.id) {
                    continue;
                }
                let rule = claim_rule(
                    c.holder.as_ref(),
                    c.hold_until,
                    c.expires_at,
                    &claimant,
                    now,
                );
                if let Some(in_doubt) = rule {
                    mine.push((c.seq, in_doubt));
                    from_system += 1;
                }
            }
        }
        mine.sort_unstable();
        mine.truncate(max);
        taken.extend(mine.iter().map(|(seq, _)| *seq));
        per_claim.push(mine);
    }
    Choice { per_claim }
}

/// A leased call, as the lease's `UPDATE` returned it.
pub(super) struct Leased {
    id: String,
    system: String,
    calls: String,
    commit: String,
    attempts: i32,
    expires_at: i64,
    trace: Option<String>,
}

/// Leases the calls `$1` to sessions `$2` of agents `$3` until `$4`, for replica
/// `$5`.
pub(super) const LEASE_SQL: &str = "UPDATE sapbridge_calls c
    SET state = 'leased', lease_session = u.session, lease_agent = u.agent,
        lease_until = u.until, hold_until = NULL, attempts = c.attempts + 1,
        lease_replica = $5
    FROM unnest($1::int8[], $2::text[], $3::text[], $4::int8[]) AS u(seq, session, agent, until)
    WHERE c.seq = u.seq AND c.state = 'queued'
    RETURNING c.seq, c.id, c.system, c.calls, c.commit_policy, c.attempts, c.expires_at,
        c.trace";

/// Leases every chosen call of `claims` in one statement ([`LEASE_SQL`],
/// prepared).
pub(super) async fn lease(
    tx: &Conn,
    statement: &Statement,
    claims: &[ClaimEntry],
    choice: &Choice,
    replica: &str,
) -> Result<HashMap<i64, Leased>, QueueError> {
    let mut seqs = Vec::new();
    let mut sessions = Vec::new();
    let mut agents = Vec::new();
    let mut untils = Vec::new();
    for ((claim, _), chosen) in claims.iter().zip(&choice.per_claim) {
        for (seq, _) in chosen {
            seqs.push(*seq);
            sessions.push(claim.session.as_str());
            agents.push(claim.agent.as_str());
            untils.push(nanos(claim.until));
        }
    }
    if seqs.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = tx
        .query(statement, &[&seqs, &sessions, &agents, &untils, &replica])
        .await
        .map_err(store_error)?;
    Ok(rows
        .into_iter()
        .map(|row| {
            (
                row.get::<_, i64>(0),
                Leased {
                    id: row.get(1),
                    system: row.get(2),
                    calls: row.get(3),
                    commit: row.get(4),
                    attempts: row.get(5),
                    expires_at: row.get(6),
                    trace: row.get(7),
                },
            )
        })
        .collect())
}

/// The units each claim gets.
pub(super) fn units_of(
    claims: &[ClaimEntry],
    choice: &Choice,
    mut leased: HashMap<i64, Leased>,
    now: OffsetDateTime,
) -> Result<Vec<Vec<Unit>>, QueueError> {
    let mut out = Vec::with_capacity(claims.len());
    for ((claim, _), chosen) in claims.iter().zip(&choice.per_claim) {
        let mut units = Vec::with_capacity(chosen.len());
        for (seq, in_doubt) in chosen {
            let Some(row) = leased.remove(seq) else {
                continue;
            };
            let start_by = time_at(row.expires_at).min(claim.until);
            units.push(Unit {
                call_id: row.id,
                attempt: attempts_of(row.attempts),
                system: row.system,
                deadline_ms: Some(millis_until(start_by, now)),
                in_doubt: *in_doubt,
                calls: calls_of(&row.calls)?,
                commit: commit_of(&row.commit)?,
                traceparent: row.trace,
            });
        }
        out.push(units);
    }
    Ok(out)
}
