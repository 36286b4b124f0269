//! Group commit for the hot changes (enqueue without an idempotency key, claim,
//! complete): callers hand a [`Job`] to the [`Writer`] and await its answer, sent
//! once the transaction that holds it committed, so "accepted" means on the
//! database's disk (`synchronous_commit` as the server has it; `on` by default).
//!
//! A dispatcher takes whatever jobs wait and runs them as one batch on a pooled
//! connection; up to [`MAX_CONCURRENT`] batches run at once, so while some wait
//! for their commit's flush the next one fills. A batch is a handful of
//! set-based statements whatever its size, sent pipelined (no round trip waits for
//! another that it does not depend on):
//! 1. `INSERT … SELECT FROM unnest(…)` of every new call;
//! 2. the calls to complete, locked in id order (`FOR UPDATE`: no deadlock between
//!    batches), judged one by one in memory with [`judge_rule`] (so two outcomes
//!    for one call in one batch are judged as if sent one after the other), then
//!    written back with one `UPDATE` per verdict;
//! 3. the claim candidates of every system asked for, oldest first, `FOR UPDATE
//!    SKIP LOCKED` (a replica never waits for rows another is claiming), handed to
//!    the claimants in turn with [`claim_rule`] and leased with one `UPDATE`;
//! 4. the notifications of work and ended calls for the other replicas;
//! 5. `COMMIT`, then the local signals fire.
//!
//! If a batch fails, every job in it is run again alone, so one bad change fails
//! only its own caller.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use deadpool_postgres::Pool;
use deadpool_postgres::Transaction;
use sapbridge_proto::{Outcome, Unit, WorkFrame};
use time::OffsetDateTime;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::super::{
    CallEnd, CallRecord, CallState, Claimant, Completion, Enqueued, Holder, OpenCall, QueueError,
    Signals, Taker, Verdict, claim_rule, judge_rule, millis_until,
};
use super::listen::{ENDED_CHANNEL, WORK_CHANNEL, payloads};
use super::rows::{
    attempts_code, attempts_of, calls_json, calls_of, commit_code, commit_of, kind_json, nanos,
    outcome_json, pool_error, state_code, store_error, time_at,
};

/// The most jobs in one batch.
pub(super) const MAX_BATCH: usize = 512;
/// The most batches in flight at once (each on its own pooled connection).
pub(super) const MAX_CONCURRENT: usize = 4;
/// The most calls one claim leases (a session holds at most this many credits).
const MAX_CLAIM: usize = 1024;
/// How many changes may wait for the dispatcher before callers wait.
const CHANNEL_CAPACITY: usize = 4096;

/// What the batches share.
#[derive(Debug)]
pub(super) struct Shared {
    /// The connection pool.
    pub(super) pool: Pool,
    /// This store's signals.
    pub(super) signals: Arc<Signals>,
    /// This replica's id (its notifications carry it).
    pub(super) replica: String,
}

/// A change handed to the writer.
pub(super) enum Job {
    /// A new call without an idempotency key, as its queued record.
    Enqueue(
        Box<CallRecord>,
        oneshot::Sender<Result<Enqueued, QueueError>>,
    ),
    /// A claim.
    Claim(ClaimJob, oneshot::Sender<Result<Vec<Unit>, QueueError>>),
    /// An outcome.
    Complete(CompleteJob, oneshot::Sender<Result<Completion, QueueError>>),
}

/// A claim's inputs.
#[derive(Debug, Clone)]
pub(super) struct ClaimJob {
    pub(super) systems: Vec<String>,
    pub(super) session: String,
    pub(super) agent: String,
    pub(super) takes_in_doubt: bool,
    pub(super) max: usize,
    pub(super) until: OffsetDateTime,
}

/// An outcome's inputs.
#[derive(Debug, Clone)]
pub(super) struct CompleteJob {
    pub(super) call_id: String,
    pub(super) attempt: u32,
    pub(super) session: String,
    pub(super) agent: String,
    pub(super) outcome: Outcome,
}

/// The handle callers use to hand changes over.
#[derive(Debug, Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the dispatcher; it stops when the last handle is dropped, after
    /// running what it was handed.
    pub(super) fn start(shared: Arc<Shared>) -> Self {
        let (jobs, rx) = mpsc::channel(CHANNEL_CAPACITY);
        tokio::spawn(dispatch(shared, rx));
        Self { jobs }
    }

    /// Hands `job` over (built around the reply sender) and awaits its answer.
    ///
    /// Cancel safety: once handed over, the change runs and commits even if this
    /// future is dropped; only the answer is lost.
    pub(super) async fn run<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, QueueError>>) -> Job,
    ) -> Result<T, QueueError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(job(reply))
            .await
            .map_err(|_| QueueError::Closed)?;
        answer.await.map_err(|_| QueueError::Closed)?
    }

    /// Whether the dispatcher has stopped.
    pub(super) fn is_closed(&self) -> bool {
        self.jobs.is_closed()
    }
}

async fn dispatch(shared: Arc<Shared>, mut rx: mpsc::Receiver<Job>) {
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT));
    while let Some(first) = rx.recv().await {
        // While every slot is busy, jobs pile up for the next batch.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            run_batch(&shared, jobs).await;
            drop(slot);
        });
    }
    tracing::debug!("postgres queue writer stopped");
}

/// Runs `jobs` as one transaction; if that fails and they are several, each alone.
async fn run_batch(shared: &Shared, jobs: Vec<Job>) {
    let mut batch = Batch::default();
    for job in jobs {
        batch.push(job);
    }
    let single = batch.len() == 1;
    match attempt(shared, &mut batch).await {
        Ok(done) => done.answer(shared, batch),
        Err(error) if single => batch.fail(&error),
        Err(error) => {
            tracing::warn!(%error, jobs = batch.len(), "queue batch failed; running its changes one by one");
            for job in batch.split() {
                let mut alone = Batch::default();
                alone.push(job);
                match attempt(shared, &mut alone).await {
                    Ok(done) => done.answer(shared, alone),
                    Err(error) => alone.fail(&error),
                }
            }
        }
    }
}

/// The jobs of one batch, by kind, in the order they were handed over.
#[derive(Default)]
struct Batch {
    enqueues: Vec<(
        Box<CallRecord>,
        oneshot::Sender<Result<Enqueued, QueueError>>,
    )>,
    claims: Vec<(ClaimJob, oneshot::Sender<Result<Vec<Unit>, QueueError>>)>,
    completes: Vec<(CompleteJob, oneshot::Sender<Result<Completion, QueueError>>)>,
}

impl Batch {
    fn push(&mut self, job: Job) {
        match job {
            Job::Enqueue(record, reply) => self.enqueues.push((record, reply)),
            Job::Claim(claim, reply) => self.claims.push((claim, reply)),
            Job::Complete(complete, reply) => self.completes.push((complete, reply)),
        }
    }

    fn len(&self) -> usize {
        self.enqueues.len() + self.claims.len() + self.completes.len()
    }

    fn split(self) -> Vec<Job> {
        let mut jobs: Vec<Job> = Vec::with_capacity(self.len());
        jobs.extend(self.enqueues.into_iter().map(|(r, tx)| Job::Enqueue(r, tx)));
        jobs.extend(
            self.completes
                .into_iter()
                .map(|(c, tx)| Job::Complete(c, tx)),
        );
        jobs.extend(self.claims.into_iter().map(|(c, tx)| Job::Claim(c, tx)));
        jobs
    }

    fn fail(self, error: &QueueError) {
        for (_, reply) in self.enqueues {
            let _ = reply.send(Err(error.clone()));
        }
        for (_, reply) in self.claims {
            let _ = reply.send(Err(error.clone()));
        }
        for (_, reply) in self.completes {
            let _ = reply.send(Err(error.clone()));
        }
    }
}

/// What a committed batch answers and fires.
struct Done {
    completions: Vec<Completion>,
    units: Vec<Vec<Unit>>,
    handed: Vec<(Arc<Taker>, WorkFrame)>,
    work: HashSet<String>,
    ended: Vec<(String, CallEnd)>,
}

impl Done {
    fn answer(self, shared: &Shared, batch: Batch) {
        for (taker, frame) in self.handed {
            taker.hand_over(frame);
        }
        for system in &self.work {
            shared.signals.work_available(system);
        }
        for (call_id, end) in self.ended {
            shared.signals.call_ended(&call_id, end);
        }
        for (record, reply) in batch.enqueues {
            let _ = reply.send(Ok(Enqueued::Created(record)));
        }
        for ((_, reply), units) in batch.claims.into_iter().zip(self.units) {
            let _ = reply.send(Ok(units));
        }
        for ((_, reply), completion) in batch.completes.into_iter().zip(self.completions) {
            let _ = reply.send(Ok(completion));
        }
    }
}

/// Runs the batch in one transaction and commits it. The takers chosen for new
/// calls get their credits back if it fails; the records are left as queued.
async fn attempt(shared: &Shared, batch: &mut Batch) -> Result<Done, QueueError> {
    let mut client = shared.pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(store_error)?;
    let now = OffsetDateTime::now_utc();
    let handed = place_new_calls(&tx, &shared.signals, &mut batch.enqueues, now).await;
    let handed = match handed {
        Ok(handed) => handed,
        Err(error) => {
            reset(&mut batch.enqueues);
            return Err(error);
        }
    };
    let result = write(&tx, shared, batch, handed.len(), now).await;
    let result = match result {
        Ok(done) => tx.commit().await.map_err(store_error).map(|()| done),
        Err(error) => Err(error),
    };
    match result {
        Ok(mut done) => {
            done.handed = handed
                .into_iter()
                .map(|(i, taker)| {
                    let frame = taker.frame_for(&batch.enqueues[i].0);
                    (taker, frame)
                })
                .collect();
            Ok(done)
        }
        Err(error) => {
            for (_, taker) in handed {
                taker.give(1);
            }
            reset(&mut batch.enqueues);
            Err(error)
        }
    }
}

/// Puts new calls back to queued (their batch did not commit).
fn reset(
    enqueues: &mut [(
        Box<CallRecord>,
        oneshot::Sender<Result<Enqueued, QueueError>>,
    )],
) {
    for (record, _) in enqueues {
        record.state = CallState::Queued;
        record.holder = None;
        record.attempts = 0;
    }
}

/// Direct dispatch: leases each new call to a local session with a free credit,
/// unless an older call of its system waits (that one goes first). Returns the
/// index of each call so leased, with its taker.
async fn place_new_calls(
    tx: &Transaction<'_>,
    signals: &Signals,
    enqueues: &mut [(
        Box<CallRecord>,
        oneshot::Sender<Result<Enqueued, QueueError>>,
    )],
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

/// The statements of a batch, inside its transaction.
async fn write(
    tx: &Transaction<'_>,
    shared: &Shared,
    batch: &Batch,
    handed: usize,
    now: OffsetDateTime,
) -> Result<Done, QueueError> {
    let (inserted, judged, candidates) = tokio::try_join!(
        insert(tx, &batch.enqueues, &shared.replica),
        lock_completions(tx, &batch.completes),
        claim_candidates(tx, &batch.claims),
    )?;
    let _ = inserted;
    let mut work: HashSet<String> = HashSet::new();
    if batch.enqueues.len() > handed {
        for (record, _) in &batch.enqueues {
            if record.state == CallState::Queued {
                work.insert(record.system.clone());
            }
        }
    }
    let verdicts = judge(&batch.completes, judged, now)?;
    for system in &verdicts.requeued_systems {
        work.insert(system.clone());
    }
    let choice = choose(&batch.claims, candidates, &verdicts.finished, now);
    let ended_ids: Vec<&str> = verdicts.ended.iter().map(|(id, _)| id.as_str()).collect();
    let mut notes: Vec<(&str, String)> = Vec::new();
    for payload in payloads(&shared.replica, work.iter().map(String::as_str)) {
        notes.push((WORK_CHANNEL, payload));
    }
    for payload in payloads(&shared.replica, ended_ids.iter().copied()) {
        notes.push((ENDED_CHANNEL, payload));
    }
    let (_, _, leased, ()) = tokio::try_join!(
        store_verdicts(tx, &verdicts),
        requeue(tx, &verdicts.requeued),
        lease(tx, &batch.claims, &choice, &shared.replica),
        notify(tx, &notes),
    )?;
    let units = units_of(&batch.claims, &choice, leased, now)?;
    Ok(Done {
        completions: verdicts.completions,
        units,
        handed: Vec::new(),
        work,
        ended: verdicts.ended,
    })
}

/// Inserts every new call in one statement.
async fn insert(
    tx: &Transaction<'_>,
    enqueues: &[(
        Box<CallRecord>,
        oneshot::Sender<Result<Enqueued, QueueError>>,
    )],
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

/// What the outcome rule needs of a call to complete, as locked.
#[derive(Debug, Clone)]
struct Judged {
    commit: sapbridge_proto::CommitPolicy,
    final_now: bool,
    attempts: u32,
    holder_session: Option<String>,
    expires_at: OffsetDateTime,
    system: String,
}

/// Locks the calls the batch completes, in id order.
async fn lock_completions(
    tx: &Transaction<'_>,
    completes: &[(CompleteJob, oneshot::Sender<Result<Completion, QueueError>>)],
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
struct Verdicts {
    completions: Vec<Completion>,
    /// Calls to store final: id, state code, outcome JSON, agent.
    stored: Vec<(String, &'static str, String, String)>,
    requeued: Vec<String>,
    requeued_systems: HashSet<String>,
    ended: Vec<(String, CallEnd)>,
    /// Calls stored or requeued here: no claim of this batch takes them.
    finished: HashSet<String>,
}

/// Judges each outcome in turn against the calls as locked, as if each were
/// applied before the next is judged.
fn judge(
    completes: &[(CompleteJob, oneshot::Sender<Result<Completion, QueueError>>)],
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
        let open = (!call.final_now).then(|| OpenCall {
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

/// Writes the stored outcomes in one statement.
async fn store_verdicts(tx: &Transaction<'_>, verdicts: &Verdicts) -> Result<(), QueueError> {
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
        &prepared(
            tx,
            "UPDATE sapbridge_calls c
         SET state = u.state, outcome = u.outcome, agent = u.agent, completed_at = $5,
             lease_until = NULL, hold_until = NULL
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
              AS u(id, state, outcome, agent)
         WHERE c.id = u.id",
        )
        .await?,
        &[&ids, &states, &outcomes, &agents, &completed_at],
    )
    .await
    .map_err(store_error)?;
    Ok(())
}

/// Queues calls again for anyone (their agent did not start them in time).
async fn requeue(tx: &Transaction<'_>, ids: &[String]) -> Result<(), QueueError> {
    if ids.is_empty() {
        return Ok(());
    }
    tx.execute(
        &prepared(
            tx,
            "UPDATE sapbridge_calls
         SET state = 'queued', lease_session = NULL, lease_agent = NULL, lease_until = NULL,
             hold_until = NULL
         WHERE id = ANY($1)",
        )
        .await?,
        &[&ids],
    )
    .await
    .map_err(store_error)?;
    Ok(())
}

/// A queued call a claim may take, as locked.
#[derive(Debug)]
struct Candidate {
    seq: i64,
    id: String,
    holder: Option<Holder>,
    hold_until: Option<OffsetDateTime>,
    expires_at: OffsetDateTime,
}

/// Locks the oldest queued calls of each system the batch's claims ask for, as
/// many as they ask for together, skipping those another transaction holds.
async fn claim_candidates(
    tx: &Transaction<'_>,
    claims: &[(ClaimJob, oneshot::Sender<Result<Vec<Unit>, QueueError>>)],
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
struct Choice {
    per_claim: Vec<Vec<(i64, bool)>>,
}

/// Hands the candidates to the claims in turn, each taking the oldest it may
/// ([`claim_rule`]) that no earlier claim took.
fn choose(
    claims: &[(ClaimJob, oneshot::Sender<Result<Vec<Unit>, QueueError>>)],
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
struct Leased {
    id: String,
    system: String,
    calls: String,
    commit: String,
    attempts: i32,
    expires_at: i64,
}

/// Leases every chosen call of `claims` in one statement.
async fn lease(
    tx: &Transaction<'_>,
    claims: &[(ClaimJob, oneshot::Sender<Result<Vec<Unit>, QueueError>>)],
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
        .query(
            &prepared(
                tx,
                "UPDATE sapbridge_calls c
             SET state = 'leased', lease_session = u.session, lease_agent = u.agent,
                 lease_until = u.until, hold_until = NULL, attempts = c.attempts + 1,
                 lease_replica = $5
             FROM unnest($1::int8[], $2::text[], $3::text[], $4::int8[])
                  AS u(seq, session, agent, until)
             WHERE c.seq = u.seq AND c.state = 'queued'
             RETURNING c.seq, c.id, c.system, c.calls, c.commit_policy, c.attempts,
                       c.expires_at",
            )
            .await?,
            &[&seqs, &sessions, &agents, &untils, &replica],
        )
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
                },
            )
        })
        .collect())
}

/// The units each claim gets.
fn units_of(
    claims: &[(ClaimJob, oneshot::Sender<Result<Vec<Unit>, QueueError>>)],
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
            });
        }
        out.push(units);
    }
    Ok(out)
}

/// `sql` prepared on this connection once and cached: a batch then costs no
/// parse round trips.
async fn prepared(
    tx: &Transaction<'_>,
    sql: &str,
) -> Result<tokio_postgres::Statement, QueueError> {
    tx.prepare_cached(sql).await.map_err(store_error)
}

/// Sends the notifications (delivered when the transaction commits).
pub(super) async fn notify(
    tx: &Transaction<'_>,
    notes: &[(&str, String)],
) -> Result<(), QueueError> {
    if notes.is_empty() {
        return Ok(());
    }
    let channels: Vec<&str> = notes.iter().map(|(c, _)| *c).collect();
    let texts: Vec<&str> = notes.iter().map(|(_, p)| p.as_str()).collect();
    tx.query(
        &prepared(
            tx,
            "SELECT pg_notify(n.c, n.p) FROM unnest($1::text[], $2::text[]) AS n(c, p)",
        )
        .await?,
        &[&channels, &texts],
    )
    .await
    .map_err(store_error)?;
    Ok(())
}
