//! WAL checkpoints on their own thread. SQLite's automatic checkpoint would copy the
//! WAL into the database file (and, in `synchronous = NORMAL`, `fsync` both) inside
//! whichever commit crossed the threshold, blocking the thread that runs the writer
//! (a runtime worker, see `writer::Placement`). Instead, every
//! [`COMMITS_PER_CHECKPOINT`] commits (or [`CHANGES_PER_CHECKPOINT`] changes) the
//! writer asks this thread for a `PASSIVE` checkpoint, which runs beside its
//! next commits.
//!
//! SQLite starts the WAL over only when a write begins after a checkpoint copied
//! every frame, which a writer that keeps committing during every checkpoint never
//! lets happen: under load the WAL would grow without bound. So once the WAL has reached
//! [`WAIT_ABOVE_WAL_FRAMES`], the writer waits (asynchronously: the worker stays
//! free) for the checkpoint it asks for before its next batch; the checkpoints that
//! ran beside its commits copied most of the WAL already, so that wait is short.
//! Below that size the writer does not wait: a wait for every checkpoint would
//! hold back every batch for a copy that can run beside it.
//!
//! The WAL size the writer goes by is the one the last finished checkpoint found.
//! A checkpoint thread starved of CPU would leave that stale while the WAL grows,
//! so when it is two requests behind, the writer waits for the newer of them
//! before its next batch.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::super::QueueError;
use super::schema;

/// Commits between two checkpoints, at most: a commit of one change writes about
/// four pages, so this is near SQLite's own default of a checkpoint per 1,000 WAL
/// pages when calls come one at a time.
pub(super) const COMMITS_PER_CHECKPOINT: u32 = 256;
/// Changes between two checkpoints, at most: under load many changes share a
/// commit and its pages, so big batches reach this first.
pub(super) const CHANGES_PER_CHECKPOINT: usize = 4096;
/// WAL size (in frames, one page each: 16 MiB with 4 KiB pages) from which the
/// writer waits for its next checkpoint; the WAL stays near this size under
/// continuous writes.
pub(super) const WAIT_ABOVE_WAL_FRAMES: i64 = 4096;

/// The writer's end: counts commits and asks for checkpoints.
#[derive(Debug)]
pub(super) struct Checkpoints {
    tx: SyncSender<oneshot::Sender<()>>,
    commits: u32,
    changes: usize,
    /// The WAL's size in frames as the last checkpoint found it.
    wal_frames: Arc<AtomicI64>,
    /// The end of the last checkpoint asked for and not waited on.
    pending: Option<oneshot::Receiver<()>>,
}

impl Checkpoints {
    fn new(tx: SyncSender<oneshot::Sender<()>>) -> Self {
        Self {
            tx,
            commits: 0,
            changes: 0,
            wal_frames: Arc::new(AtomicI64::new(0)),
            pending: None,
        }
    }

    /// One more commit, of `changes` changes. After [`COMMITS_PER_CHECKPOINT`]
    /// commits or [`CHANGES_PER_CHECKPOINT`] changes it asks for a checkpoint; if
    /// the WAL has reached [`WAIT_ABOVE_WAL_FRAMES`] it returns what to wait on
    /// before the next batch (it resolves, `Ok` or `Err`, when the checkpoint is
    /// over or the thread is gone). If the thread has not yet started the last
    /// checkpoint asked for, it returns that one's end instead.
    pub(super) fn committed(&mut self, changes: usize) -> Option<oneshot::Receiver<()>> {
        self.commits += 1;
        self.changes += changes;
        if self.commits < COMMITS_PER_CHECKPOINT && self.changes < CHANGES_PER_CHECKPOINT {
            return None;
        }
        self.commits = 0;
        self.changes = 0;
        let (done, wait) = oneshot::channel();
        match self.tx.try_send(done) {
            Ok(()) => {
                if self.wal_frames.load(Ordering::Relaxed) >= WAIT_ABOVE_WAL_FRAMES {
                    self.pending = None;
                    return Some(wait);
                }
                self.pending = Some(wait);
                None
            }
            // One checkpoint runs and the next one waits for the thread.
            Err(TrySendError::Full(_)) => self.pending.take(),
            Err(TrySendError::Disconnected(_)) => {
                tracing::warn!("the checkpoint thread is gone; the WAL grows until restart");
                None
            }
        }
    }
}

/// Starts the checkpoint thread on its own connection to `path`. It ends when the
/// returned [`Checkpoints`] is dropped (the writer stopped).
///
/// # Errors
/// [`QueueError::Store`] when the connection or the thread cannot be opened.
pub(super) fn start(path: &Path) -> Result<Checkpoints, QueueError> {
    let conn = Connection::open(path)?;
    schema::configure(&conn)?;
    let (tx, rx) = sync_channel(1);
    let checkpoints = Checkpoints::new(tx);
    let found = Arc::clone(&checkpoints.wal_frames);
    std::thread::Builder::new()
        .name("sapbridge-queue-checkpoint".into())
        .spawn(move || run(&conn, &rx, &found))
        .map_err(|e| QueueError::Store(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(checkpoints)
}

fn run(conn: &Connection, requests: &Receiver<oneshot::Sender<()>>, wal_frames: &AtomicI64) {
    while let Ok(done) = requests.recv() {
        let checkpointed = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        match checkpointed {
            Ok((wal_pages, copied)) => {
                tracing::trace!(wal_pages, copied, "WAL checkpoint");
                wal_frames.store(wal_pages, Ordering::Relaxed);
            }
            Err(error) => tracing::warn!(%error, "WAL checkpoint failed; retried later"),
        }
        let _ = done.send(());
    }
    tracing::debug!("checkpoint thread stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Commits until the writer asks for a checkpoint; returns what it waits on.
    fn interval(checkpoints: &mut Checkpoints) -> Option<oneshot::Receiver<()>> {
        for _ in 1..COMMITS_PER_CHECKPOINT {
            assert!(checkpoints.committed(1).is_none());
        }
        checkpoints.committed(1)
    }

    #[test]
    fn the_writer_waits_for_a_lagging_checkpoint_thread() {
        let (tx, rx) = sync_channel(1);
        let mut checkpoints = Checkpoints::new(tx);
        // The thread has not taken the first request: the writer goes on.
        assert!(interval(&mut checkpoints).is_none());
        // The second finds the channel full: the writer waits for the first.
        let mut wait = interval(&mut checkpoints).expect("a lagging thread is waited for");
        assert!(wait.try_recv().is_err(), "not over yet");
        let first = rx.try_recv().unwrap();
        first.send(()).unwrap();
        assert!(wait.try_recv().is_ok());
        // Caught up (channel empty), and a small WAL: no wait.
        assert!(interval(&mut checkpoints).is_none());
    }

    #[test]
    fn the_writer_waits_once_the_wal_is_large() {
        let (tx, rx) = sync_channel(1);
        let mut checkpoints = Checkpoints::new(tx);
        checkpoints
            .wal_frames
            .store(WAIT_ABOVE_WAL_FRAMES, Ordering::Relaxed);
        let wait = interval(&mut checkpoints).expect("a large WAL is waited for");
        drop(rx);
        // A gone thread ends the wait too.
        assert!(wait.blocking_recv().is_err());
    }
}
