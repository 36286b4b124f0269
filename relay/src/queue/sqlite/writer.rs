//! Group commit: one writer (a runtime task, or a thread of its own when commits
//! wait for the disk: see [`Placement`]) owns the write connection, takes every
//! change the queue's callers hand it from a channel, and commits whatever has piled
//! up in one transaction per batch. Each caller awaits its own answer on a oneshot, sent only
//! after the batch committed, so "accepted" always means "on disk" (as far as the
//! configured durability goes).
//!
//! While one batch commits (with `synchronous = FULL`: while it is flushed), the
//! next one fills; so many concurrent callers share one commit, and one caller alone
//! still gets a commit right away (no timer, no added latency). On the runtime,
//! where a commit takes tens of microseconds, the next batch would hold only the
//! few changes that arrived during the last one: after a batch of more than one
//! change the writer first gives the runtime's ready tasks a few turns
//! ([`GATHER_TURNS`]) to hand over the changes they are about to make.
//!
//! A change that fails is rolled back alone and its caller gets the error; the rest
//! of the batch commits. Changes of several statements run inside their own
//! `SAVEPOINT` for that; the hot single-statement ones ([`Writer::write_one`]) rely
//! on SQLite undoing a failed statement itself. If the commit itself fails, every
//! change of the batch is rolled back and every caller gets the error. Wake-up
//! signals of a batch fire only after it committed.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use sapbridge_proto::Unit;

use super::super::{CallEnd, QueueError, Signals, Taker};
use super::checkpoint::Checkpoints;
use super::counts::{FinalCounts, FinalDelta};

/// How many changes may wait for the writer before callers wait to hand theirs over.
const CHANNEL_CAPACITY: usize = 4096;

/// The most scheduler turns the writer task yields before a batch, while each turn
/// still brings changes (see [`gather`]): a few turns let the tasks that are about
/// to write join the batch; past them a batch waits for nothing more.
const GATHER_TURNS: usize = 4;

/// The wake-ups a change causes, fired once its batch committed.
#[derive(Debug, Default)]
pub(super) struct Effects {
    /// Systems that have claimable work now.
    pub(super) work: HashSet<String>,
    /// Calls that reached a final state.
    pub(super) finished: Vec<String>,
    /// Calls that reached a final state, with how they ended.
    pub(super) ended: Vec<(String, CallEnd)>,
    /// Calls leased to a session's taker, to hand over.
    pub(super) handed: Vec<(Arc<Taker>, Unit)>,
    /// Calls that entered or left a final state.
    pub(super) finals: FinalDelta,
    /// Changes of the batch refused for want of space.
    refused: u64,
    /// Changes of the batch to the audit log: small rows that fit where a call
    /// would not, so their commit does not prove the store has room again.
    pub(super) audit_changes: usize,
}

impl Effects {
    fn absorb(&mut self, other: Self) {
        self.work.extend(other.work);
        self.finished.extend(other.finished);
        self.ended.extend(other.ended);
        self.handed.extend(other.handed);
        self.finals.absorb(other.finals);
        self.audit_changes += other.audit_changes;
    }

    /// The changes were not committed: the takers get their credits back.
    fn abandon(self) {
        for (taker, _) in self.handed {
            taker.give(1);
        }
    }

    fn fire(self, signals: &Signals, finals: &FinalCounts) {
        finals.apply(&self.finals);
        for (taker, unit) in self.handed {
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
}

/// One change waiting for the writer, type-erased so one channel carries them all.
trait Job: Send {
    /// Runs the change inside the open batch transaction. `false` when it panicked
    /// outside a savepoint: then the whole batch must be rolled back.
    fn run(&mut self, conn: &Connection, effects: &mut Effects) -> bool;
    /// Answers the caller: the change's own result if the batch committed, else
    /// the commit's error.
    fn answer(self: Box<Self>, committed: Result<(), &QueueError>);
}

/// A change and where its answer goes.
struct Pending<T, F> {
    work: Option<F>,
    /// Whether the change runs in a savepoint of its own (see [`Writer::write`]).
    guarded: bool,
    result: Option<Result<T, QueueError>>,
    reply: oneshot::Sender<Result<T, QueueError>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send,
    F: FnOnce(&Connection, &mut Effects) -> Result<T, QueueError> + Send,
{
    fn run(&mut self, conn: &Connection, effects: &mut Effects) -> bool {
        let Some(work) = self.work.take() else {
            return true;
        };
        if self.guarded {
            let result = in_savepoint(conn, effects, work);
            effects.refused += u64::from(matches!(result, Err(QueueError::Full(_))));
            self.result = Some(result);
            return true;
        }
        let mut own = Effects::default();
        match catch_unwind(AssertUnwindSafe(|| work(conn, &mut own))) {
            Ok(result) => {
                match &result {
                    Ok(_) => effects.absorb(own),
                    Err(error) => {
                        own.abandon();
                        effects.refused += u64::from(matches!(error, QueueError::Full(_)));
                    }
                }
                self.result = Some(result);
                true
            }
            Err(_) => {
                own.abandon();
                false
            }
        }
    }

    fn answer(self: Box<Self>, committed: Result<(), &QueueError>) {
        let result = match committed {
            Ok(()) => self.result.unwrap_or(Err(QueueError::Closed)),
            Err(error) => Err(error.clone()),
        };
        // The caller may have gone (its future was dropped): nothing to tell.
        let _ = self.reply.send(result);
    }
}

/// Runs `work` in a savepoint: kept on success, rolled back on error or panic.
fn in_savepoint<T>(
    conn: &Connection,
    effects: &mut Effects,
    work: impl FnOnce(&Connection, &mut Effects) -> Result<T, QueueError>,
) -> Result<T, QueueError> {
    conn.prepare_cached("SAVEPOINT change")?.execute([])?;
    let mut own = Effects::default();
    let result = catch_unwind(AssertUnwindSafe(|| work(conn, &mut own)))
        .unwrap_or_else(|_| Err(QueueError::Store("a queue change panicked".into())));
    match result {
        Ok(value) => {
            conn.prepare_cached("RELEASE change")?.execute([])?;
            effects.absorb(own);
            Ok(value)
        }
        Err(error) => {
            own.abandon();
            if let Err(undo) = conn.execute_batch("ROLLBACK TO change; RELEASE change") {
                tracing::error!(%undo, "could not roll back a failed queue change");
            }
            Err(error)
        }
    }
}

/// A change that needs room for a sizeable call ([`PROBE_BYTES`]) and undoes
/// itself: [`QueueError::Full`] when the file has not that much room left (on the
/// writer's connection, so under its size cap).
///
/// # Errors
/// [`QueueError::Full`] without room, [`QueueError::Store`] for other failures.
pub(super) fn probe_space(conn: &Connection, _: &mut Effects) -> Result<(), QueueError> {
    let probed = conn.execute_batch(&format!(
        "SAVEPOINT probe; CREATE TABLE sapbridge_space_probe (x); \
         INSERT INTO sapbridge_space_probe VALUES (zeroblob({PROBE_BYTES})); \
         ROLLBACK TO probe; RELEASE probe;"
    ));
    if probed.is_err() && !conn.is_autocommit() {
        // The savepoint is still open when SQLite did not roll back by itself.
        let _ = conn.execute_batch("ROLLBACK TO probe; RELEASE probe;");
    }
    probed?;
    Ok(())
}

/// How much room [`probe_space`] asks for: a call with large parameters.
const PROBE_BYTES: usize = 64 * 1024;

/// Whether the store has room: set when a batch or one of its changes failed for
/// want of space ([`QueueError::Full`]), cleared by the next batch that commits
/// without such a failure.
#[derive(Debug, Default)]
pub(super) struct Space {
    full: AtomicBool,
    refusals: AtomicU64,
}

impl Space {
    /// Whether the last batch found no room.
    pub(super) fn full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// Changes refused for want of space since the store opened.
    pub(super) fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }

    /// Notes a batch's refusals; `room_shown`: it held a change other than the
    /// audit log's, which alone may clear the flag.
    fn after_batch(&self, refused: u64, room_shown: bool) {
        if refused > 0 && !self.full.swap(true, Ordering::Relaxed) {
            tracing::error!("the queue store is full: new calls answer 503 until space is free");
        } else if refused == 0 && room_shown && self.full.swap(false, Ordering::Relaxed) {
            tracing::warn!("the queue store has room again");
        }
        self.refusals.fetch_add(refused, Ordering::Relaxed);
    }
}

/// The handle callers use to hand changes to the writer thread.
#[derive(Debug, Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    /// Starts the writer thread on `conn`, committing at most `max_batch` changes
    /// per transaction. The thread ends when the last [`Writer`] is dropped, after
    /// committing what was handed to it.
    ///
    /// # Errors
    /// [`QueueError::Store`] when the thread cannot be started.
    ///
    /// `place` decides where batches run: see [`Placement`].
    pub(super) fn start(
        conn: Connection,
        signals: Arc<Signals>,
        finals: Arc<FinalCounts>,
        max_batch: usize,
        checkpoints: Checkpoints,
        place: Placement,
        space: Arc<Space>,
    ) -> Result<Self, QueueError> {
        let (jobs, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let max_batch = max_batch.max(1);
        let batcher = Batcher {
            conn,
            rx,
            batch: Vec::with_capacity(max_batch),
            max_batch,
            signals,
            finals,
            checkpoints,
            space,
        };
        let runtime = match place {
            Placement::Runtime => tokio::runtime::Handle::try_current().ok(),
            Placement::Thread => None,
        };
        match runtime {
            Some(runtime) => {
                runtime.spawn(run_task(batcher));
            }
            None => {
                std::thread::Builder::new()
                    .name("sapbridge-queue-writer".into())
                    .spawn(move || run(batcher))
                    .map_err(|e| {
                        QueueError::Store(format!("cannot start the writer thread: {e}"))
                    })?;
            }
        }
        Ok(Self { jobs })
    }

    /// Runs `work` in the next batch and returns its result once that batch
    /// committed. The change runs in a savepoint of its own: if it fails, what it
    /// wrote is undone and the rest of the batch commits.
    ///
    /// Cancel safety: once handed over, the change runs and commits even if this
    /// future is dropped; only the answer is lost.
    ///
    /// # Errors
    /// The change's own error, the batch's commit error, or [`QueueError::Closed`]
    /// when the writer has stopped.
    pub(super) async fn write<T, F>(&self, work: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Effects) -> Result<T, QueueError> + Send + 'static,
    {
        self.submit(work, true).await
    }

    /// [`Writer::write`] for a change that writes with one statement, as its last
    /// fallible step: if it fails, SQLite has undone that statement already, so no
    /// savepoint is needed (which would add two statements to every change on the
    /// hot paths). Should it panic, the whole batch is rolled back and every caller
    /// in it gets the error.
    pub(super) async fn write_one<T, F>(&self, work: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Effects) -> Result<T, QueueError> + Send + 'static,
    {
        self.submit(work, false).await
    }

    async fn submit<T, F>(&self, work: F, guarded: bool) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Effects) -> Result<T, QueueError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Pending {
            work: Some(work),
            guarded,
            result: None,
            reply,
        });
        self.jobs.send(job).await.map_err(|_| QueueError::Closed)?;
        answer.await.map_err(|_| QueueError::Closed)?
    }

    /// Whether the writer thread is gone.
    pub(super) fn is_closed(&self) -> bool {
        self.jobs.is_closed()
    }
}

/// Where the writer runs its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placement {
    /// As a task on the async runtime, each batch run inline on a worker. A commit
    /// that does not wait for the disk (`synchronous = NORMAL`, checkpoints on their
    /// own thread) takes tens of microseconds, less than handing it to another
    /// thread and back: on a busy relay the caller, the writer and the waiting
    /// request all stay on one worker. (Outside a runtime: as [`Placement::Thread`].)
    Runtime,
    /// On a thread of its own: for commits that wait for the disk (`FULL`), which
    /// must not stall a runtime worker.
    Thread,
}

/// What the writer owns: the connection, the channel, and what a commit touches.
struct Batcher {
    conn: Connection,
    rx: mpsc::Receiver<Box<dyn Job>>,
    batch: Vec<Box<dyn Job>>,
    max_batch: usize,
    signals: Arc<Signals>,
    finals: Arc<FinalCounts>,
    checkpoints: Checkpoints,
    space: Arc<Space>,
}

impl Batcher {
    /// One batch: `first` and whatever else is waiting (up to `max_batch`
    /// changes), committed and answered. Returns the checkpoint to wait for before
    /// the next batch, if any.
    fn batch(&mut self, first: Box<dyn Job>) -> Option<oneshot::Receiver<()>> {
        self.batch.push(first);
        while self.batch.len() < self.max_batch {
            match self.rx.try_recv() {
                Ok(job) => self.batch.push(job),
                Err(_) => break,
            }
        }
        let changes = self.batch.len();
        self.commit();
        self.checkpoints.committed(changes)
    }

    /// Runs and commits the batch, then answers every caller in it.
    fn commit(&mut self) {
        let conn = &self.conn;
        let mut effects = Effects::default();
        let statement = |sql: &str| -> Result<(), QueueError> {
            conn.prepare_cached(sql)?.execute([])?;
            Ok(())
        };
        let committed = statement("BEGIN IMMEDIATE").and_then(|()| {
            for job in &mut self.batch {
                if !job.run(conn, &mut effects) {
                    return Err(QueueError::Store(
                        "a queue change panicked; its batch was rolled back".into(),
                    ));
                }
            }
            statement("COMMIT")
        });
        // SQLite may roll the whole transaction back on SQLITE_FULL (then COMMIT
        // finds none): the batch failed for want of space, every change of it.
        let committed = match committed {
            Err(QueueError::Store(_)) if effects.refused > 0 => Err(QueueError::Full(
                "no room left; the batch was rolled back".into(),
            )),
            other => other,
        };
        let refused = match &committed {
            Err(QueueError::Full(_)) => self.batch.len() as u64,
            _ => effects.refused,
        };
        let room_shown = self.batch.len() > effects.audit_changes;
        self.space.after_batch(refused, room_shown);
        match &committed {
            Ok(()) => effects.fire(&self.signals, &self.finals),
            Err(error) => {
                effects.abandon();
                tracing::error!(%error, changes = self.batch.len(), "queue batch not committed");
                if !conn.is_autocommit() {
                    let undone = conn.execute_batch("ROLLBACK");
                    if let Err(undo) = undone {
                        tracing::error!(%undo, "could not roll back a failed queue batch");
                    }
                }
            }
        }
        for job in self.batch.drain(..) {
            job.answer(committed.as_ref().map(|_| ()));
        }
    }
}

/// The writer task: gather, batch, commit, answer, until every sender is gone.
async fn run_task(mut writer: Batcher) {
    let mut busy = false;
    while let Some(job) = writer.rx.recv().await {
        // A lone caller (the last batch was one change) is committed at once.
        if busy {
            gather(&writer.rx, writer.max_batch).await;
        }
        busy = !writer.rx.is_empty();
        if let Some(checkpointed) = writer.batch(job) {
            let _ = checkpointed.await;
        }
    }
    tracing::debug!("queue writer stopped");
}

/// Yields to the runtime's ready tasks (at most [`GATHER_TURNS`] times) while each
/// turn brings more changes into `rx` and the batch is not full: the requests and
/// outcomes being handled right now then share the coming commit instead of each
/// paying for one of their own.
async fn gather(rx: &mpsc::Receiver<Box<dyn Job>>, max_batch: usize) {
    let mut waiting = rx.len();
    for _ in 0..GATHER_TURNS {
        tokio::task::yield_now().await;
        let now = rx.len();
        if now == waiting || now + 1 >= max_batch {
            break;
        }
        waiting = now;
    }
}

/// The writer thread: batch, commit, answer, until every sender is gone.
fn run(mut writer: Batcher) {
    while let Some(job) = writer.rx.blocking_recv() {
        if let Some(checkpointed) = writer.batch(job) {
            let _ = checkpointed.blocking_recv();
        }
    }
    tracing::debug!("queue writer stopped");
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc as std_mpsc;

    use super::*;

    /// A writer on a fresh file with one table `t(v TEXT PRIMARY KEY)`, on its own
    /// thread.
    fn writer(dir: &tempfile::TempDir) -> (Writer, std::path::PathBuf) {
        let path = dir.path().join("w.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v TEXT PRIMARY KEY);")
            .unwrap();
        let checkpoints = super::super::checkpoint::start(&path).unwrap();
        let writer = Writer::start(
            conn,
            Arc::new(Signals::default()),
            Arc::new(FinalCounts::default()),
            64,
            checkpoints,
            Placement::Thread,
            Arc::default(),
        )
        .unwrap();
        (writer, path)
    }

    fn rows(path: &std::path::Path) -> Vec<String> {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn.prepare("SELECT v FROM t ORDER BY v").unwrap();
        stmt.query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn insert(v: &'static str) -> impl FnOnce(&Connection, &mut Effects) -> Result<(), QueueError> {
        move |conn, _| {
            conn.execute("INSERT INTO t (v) VALUES (?1)", [v])?;
            Ok(())
        }
    }

    /// Holds the writer inside a change until `jobs` more changes wait behind it, so
    /// those form the next batch together.
    async fn next_batch_of(writer: &Writer, jobs: usize) -> tokio::task::JoinHandle<()> {
        let (entered, inside) = std_mpsc::channel();
        let (release, wait) = std_mpsc::channel::<()>();
        let blocker = writer.clone();
        let held = tokio::spawn(async move {
            blocker
                .write(move |_, _| {
                    entered.send(()).unwrap();
                    wait.recv().unwrap();
                    Ok(())
                })
                .await
                .unwrap();
        });
        tokio::task::spawn_blocking(move || inside.recv().unwrap())
            .await
            .unwrap();
        let queued = writer.clone();
        tokio::spawn(async move {
            while queued.jobs.max_capacity() - queued.jobs.capacity() < jobs {
                tokio::task::yield_now().await;
            }
            release.send(()).unwrap();
        });
        held
    }

    #[tokio::test]
    async fn a_failed_change_is_undone_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, path) = writer(&dir);
        writer.write_one(insert("a")).await.unwrap();
        let held = next_batch_of(&writer, 4).await;
        let w = writer.clone();
        let guarded_fails = tokio::spawn(async move {
            w.write(|conn, effects| {
                insert("b")(conn, effects)?;
                insert("a")(conn, effects) // duplicate: fails after a write
            })
            .await
        });
        let w = writer.clone();
        let one_fails = tokio::spawn(async move { w.write_one(insert("a")).await });
        let w = writer.clone();
        let ok_one = tokio::spawn(async move { w.write_one(insert("c")).await });
        let w = writer.clone();
        let ok_guarded = tokio::spawn(async move { w.write(insert("d")).await });
        held.await.unwrap();
        assert!(guarded_fails.await.unwrap().is_err());
        assert!(one_fails.await.unwrap().is_err());
        ok_one.await.unwrap().unwrap();
        ok_guarded.await.unwrap().unwrap();
        assert_eq!(rows(&path), ["a", "c", "d"], "b was undone with its change");
    }

    #[tokio::test]
    async fn a_panicking_unguarded_change_rolls_its_batch_back() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, path) = writer(&dir);
        let held = next_batch_of(&writer, 2).await;
        let w = writer.clone();
        let before = tokio::spawn(async move { w.write(insert("x")).await });
        let w = writer.clone();
        let panics = tokio::spawn(async move {
            w.write_one(|conn, effects| -> Result<(), QueueError> {
                insert("y")(conn, effects)?;
                panic!("a bug after the write");
            })
            .await
        });
        held.await.unwrap();
        assert!(before.await.unwrap().is_err(), "its batch was rolled back");
        assert!(panics.await.unwrap().is_err());
        assert!(rows(&path).is_empty());
        // The writer goes on.
        writer.write_one(insert("z")).await.unwrap();
        assert_eq!(rows(&path), ["z"]);
    }
}
