//! Group commit for the hot changes (enqueue without an idempotency key, claim,
//! complete): callers hand a [`Job`] to the [`Writer`] and await its answer, sent
//! once the transaction that holds it committed, so "accepted" means on the
//! database's disk (`synchronous_commit` as the server has it; `on` by default).
//!
//! A dispatcher takes whatever jobs wait and runs them as one batch on a pooled
//! connection; up to [`MAX_CONCURRENT`] batches run at once, so while one waits
//! for its commit's flush the next one fills. A batch is a handful of set-based
//! statements whatever its size, in two pipelined stages (nothing waits for a
//! round trip it does not depend on):
//! 1. `BEGIN`; one `INSERT … SELECT FROM unnest(…)` of every new call; the calls
//!    to complete, locked in id order (`FOR UPDATE`: no deadlock between
//!    batches); the claim candidates of every system asked for, oldest first,
//!    `FOR UPDATE SKIP LOCKED` (a replica never waits for rows another is
//!    claiming).
//! 2. The outcomes judged one by one in memory with
//!    [`judge_rule`](super::super::judge_rule) (two outcomes for one call in one
//!    batch are judged as if sent one after the other) and written with one
//!    `UPDATE` per verdict; the candidates handed to the claimants in turn with
//!    [`claim_rule`](super::super::claim_rule) and leased with one `UPDATE`; the
//!    final-call counts (`counts`); `COMMIT`. Then the callers get their answers,
//!    the local signals fire, and the notifications for the other replicas go
//!    out on the same connection (in a transaction of their own: see
//!    [`listen`](super::listen)).
//!
//! If a statement of a batch fails, every job in it is run again alone, so one
//! bad change fails only its own caller; if the database is unreachable, or the
//! commit itself failed (the batch may have committed), every caller gets the
//! error at once.

mod claims;
mod new_calls;
mod outcomes;
mod txn;

use std::collections::HashSet;
use std::sync::Arc;

use deadpool_postgres::Pool;
use sapbridge_proto::{Outcome, Unit};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Statement;

use super::super::{
    CallEnd, CallRecord, CallState, Completion, Enqueued, QueueError, Signals, Taker,
};
use super::counts::Deltas;
use super::counts::UPSERT_SQL;
use super::listen::Notes;
use super::rows::{pool_error, prepared, store_error};
use claims::{LEASE_SQL, choose, claim_candidates, lease, units_of};
use new_calls::{insert, place_new_calls, reset};
use outcomes::{REQUEUE_SQL, STORE_SQL, judge, lock_completions, requeue, store_verdicts};
use txn::{Failed, Open, stage};

/// The most jobs in one batch.
pub(super) const MAX_BATCH: usize = 512;
/// The most batches in flight at once (each on its own pooled connection). The
/// database's CPU bounds throughput, not the commit's flush: more batches in
/// flight only make each smaller.
pub(super) const MAX_CONCURRENT: usize = 2;
/// How many changes may wait for the dispatcher before callers wait.
const CHANNEL_CAPACITY: usize = 4096;

/// A pooled connection; batches run their transaction on it with explicit
/// `BEGIN`/`COMMIT`, pipelined with their statements (see [`attempt`]).
pub(super) type Conn = deadpool_postgres::Object;

/// Where a job's answer goes.
type Reply<T> = oneshot::Sender<Result<T, QueueError>>;
/// A new call and its caller.
pub(super) type NewCallEntry = (Box<CallRecord>, Reply<Enqueued>);
/// A claim and its caller.
pub(super) type ClaimEntry = (ClaimJob, Reply<Vec<Unit>>);
/// An outcome and its caller.
pub(super) type CompleteEntry = (Box<CompleteJob>, Reply<Completion>);

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
    Enqueue(Box<CallRecord>, Reply<Enqueued>),
    /// A claim.
    Claim(ClaimJob, Reply<Vec<Unit>>),
    /// An outcome.
    Complete(Box<CompleteJob>, Reply<Completion>),
}

/// A claim's inputs.
#[derive(Debug, Clone)]
pub(super) struct ClaimJob {
    /// The systems it takes calls of.
    pub(super) systems: Vec<String>,
    /// The claiming agent session.
    pub(super) session: String,
    /// Its agent installation.
    pub(super) agent: String,
    /// Whether it may be sent units in doubt.
    pub(super) takes_in_doubt: bool,
    /// The most calls it takes.
    pub(super) max: usize,
    /// When its leases end.
    pub(super) until: OffsetDateTime,
}

/// An outcome's inputs.
#[derive(Debug, Clone)]
pub(super) struct CompleteJob {
    /// The call.
    pub(super) call_id: String,
    /// The attempt the outcome answers.
    pub(super) attempt: u32,
    /// The reporting agent session.
    pub(super) session: String,
    /// Its agent installation.
    pub(super) agent: String,
    /// What happened.
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

/// A batch slot, returned to the free ones when dropped (also when its batch
/// panicked). Its number names the batch's counter rows (see `counts`).
struct Slot {
    number: i32,
    free: mpsc::Sender<i32>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // The channel holds every slot number: there is always room.
        let _ = self.free.try_send(self.number);
    }
}

async fn dispatch(shared: Arc<Shared>, mut rx: mpsc::Receiver<Job>) {
    let (free, mut slots) = mpsc::channel(MAX_CONCURRENT);
    for number in 0..MAX_CONCURRENT {
        let _ = free.try_send(i32::try_from(number).unwrap_or(0));
    }
    while let Some(first) = rx.recv().await {
        // While every slot is busy, jobs pile up for the next batch.
        let Some(number) = slots.recv().await else {
            break;
        };
        let slot = Slot {
            number,
            free: free.clone(),
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
            run_batch(&shared, jobs, slot.number).await;
            drop(slot);
        });
    }
    tracing::debug!("postgres queue writer stopped");
}

/// Runs `jobs` as one transaction; if that fails and they are several, each alone.
async fn run_batch(shared: &Shared, jobs: Vec<Job>, slot: i32) {
    let mut batch = Batch::default();
    for job in jobs {
        batch.push(job);
    }
    match attempt(shared, &mut batch, slot).await {
        Ok(done) => done.answer(shared, batch).await,
        Err(Failed { error, split }) if !split || batch.len() == 1 => batch.fail(&error),
        Err(Failed { error, .. }) => {
            tracing::warn!(%error, jobs = batch.len(), "queue batch failed; running its changes one by one");
            let mut jobs = batch.split().into_iter();
            while let Some(job) = jobs.next() {
                let mut alone = Batch::default();
                alone.push(job);
                match attempt(shared, &mut alone, slot).await {
                    Ok(done) => done.answer(shared, alone).await,
                    Err(Failed { error, split }) => {
                        alone.fail(&error);
                        if !split {
                            // The database went away: the rest fail at once.
                            let mut rest = Batch::default();
                            jobs.by_ref().for_each(|job| rest.push(job));
                            rest.fail(&error);
                        }
                    }
                }
            }
        }
    }
}

/// The jobs of one batch, by kind, in the order they were handed over.
#[derive(Default)]
struct Batch {
    enqueues: Vec<NewCallEntry>,
    claims: Vec<ClaimEntry>,
    completes: Vec<CompleteEntry>,
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

/// What a committed batch answers, fires and notifies.
struct Done {
    completions: Vec<Completion>,
    units: Vec<Vec<Unit>>,
    handed: Vec<(Arc<Taker>, Unit)>,
    work: HashSet<String>,
    ended: Vec<(String, CallEnd)>,
    /// The batch's connection, back in the pool once the notifications went out.
    conn: Option<Conn>,
    notes: Notes,
}

impl Done {
    /// Answers the callers, fires the local signals, then notifies the other
    /// replicas.
    async fn answer(self, shared: &Shared, batch: Batch) {
        for (taker, unit) in self.handed {
            taker.hand_over(unit);
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
        if let Some(conn) = self.conn {
            self.notes.send(&conn).await;
        }
    }
}

/// Runs the batch in one transaction and commits it. The takers chosen for new
/// calls get their credits back if it fails; the records are left as queued.
async fn attempt(shared: &Shared, batch: &mut Batch, slot: i32) -> Result<Done, Failed> {
    let conn = shared.pool.get().await.map_err(|e| Failed {
        error: pool_error(e),
        split: false,
    })?;
    let now = OffsetDateTime::now_utc();
    // Direct dispatch looks for queued calls before the transaction (a read).
    let handed = match place_new_calls(&conn, &shared.signals, &mut batch.enqueues, now).await {
        Ok(handed) => handed,
        Err(error) => {
            let split = !conn.is_closed();
            return Err(Failed { error, split });
        }
    };
    let open = Open(Some(conn));
    let written = match open.conn() {
        Some(conn) => write(conn, shared, batch, handed.len(), now, slot).await,
        None => Err(Failed::commit(QueueError::Closed)),
    };
    match written {
        Ok(mut done) => {
            done.conn = open.committed();
            done.handed = handed
                .into_iter()
                .map(|(i, taker)| {
                    let unit = batch.enqueues[i].0.unit(false);
                    (taker, unit)
                })
                .collect();
            Ok(done)
        }
        Err(mut failed) => {
            failed.split &= open.conn().is_some_and(|conn| !conn.is_closed());
            open.roll_back().await;
            for (_, taker) in handed {
                taker.give(1);
            }
            reset(&mut batch.enqueues);
            Err(failed)
        }
    }
}

/// The statements of the second stage, prepared in the first: each is then sent
/// at its future's first poll, so the pipelined `COMMIT` that follows them is
/// sent after them.
struct Prepared {
    store: Statement,
    requeue: Statement,
    lease: Statement,
    count: Statement,
}

impl Prepared {
    async fn new(conn: &Conn) -> Result<Self, QueueError> {
        Ok(Self {
            store: prepared(conn, STORE_SQL).await?,
            requeue: prepared(conn, REQUEUE_SQL).await?,
            lease: prepared(conn, LEASE_SQL).await?,
            count: prepared(conn, UPSERT_SQL).await?,
        })
    }
}

/// The batch's transaction, in two pipelined stages: `BEGIN` with the inserts and
/// the reads that lock (stage 1); the writes that depend on those reads with
/// `COMMIT` (stage 2). If a statement fails, PostgreSQL ends the transaction at
/// the `COMMIT` with a rollback, and the failure is what this returns.
async fn write(
    conn: &Conn,
    shared: &Shared,
    batch: &Batch,
    handed: usize,
    now: OffsetDateTime,
    slot: i32,
) -> Result<Done, Failed> {
    let begin = async {
        conn.batch_execute("BEGIN")
            .await
            .map_err(|e| Failed::statement(store_error(e)))
    };
    let ((), (), judged, candidates, statements) = tokio::try_join!(
        biased;
        begin,
        async { stage(insert(conn, &batch.enqueues, &shared.replica).await) },
        async { stage(lock_completions(conn, &batch.completes).await) },
        async { stage(claim_candidates(conn, &batch.claims).await) },
        async { stage(Prepared::new(conn).await) },
    )?;
    let mut work: HashSet<String> = HashSet::new();
    if batch.enqueues.len() > handed {
        for (record, _) in &batch.enqueues {
            if record.state == CallState::Queued {
                work.insert(record.system.clone());
            }
        }
    }
    let verdicts = stage(judge(&batch.completes, judged, now))?;
    for system in &verdicts.requeued_systems {
        work.insert(system.clone());
    }
    let choice = choose(&batch.claims, candidates, &verdicts.finished, now);
    let notes = Notes::new(
        &shared.replica,
        work.iter().map(String::as_str),
        verdicts.ended.iter().map(|(id, _)| id.as_str()),
    );
    let mut finals = Deltas::default();
    for (_, code, _, _) in &verdicts.stored {
        finals.add(code, 1);
    }
    let s = &statements;
    let commit = async {
        conn.batch_execute("COMMIT")
            .await
            .map_err(|e| Failed::commit(store_error(e)))
    };
    // Polled in order (`biased`): each sends its request at its first poll,
    // `COMMIT` last.
    let ((), (), leased, (), ()) = tokio::try_join!(
        biased;
        async { stage(store_verdicts(conn, &s.store, &verdicts).await) },
        async { stage(requeue(conn, &s.requeue, &verdicts.requeued).await) },
        async { stage(lease(conn, &s.lease, &batch.claims, &choice, &shared.replica).await) },
        async {
            stage(
                finals
                    .apply_prepared(conn, &s.count, &shared.replica, slot)
                    .await,
            )
        },
        commit,
    )?;
    let units = stage(units_of(&batch.claims, &choice, leased, now))?;
    Ok(Done {
        completions: verdicts.completions,
        units,
        handed: Vec::new(),
        work,
        ended: verdicts.ended,
        conn: None,
        notes,
    })
}
