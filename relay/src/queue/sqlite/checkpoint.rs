//! WAL checkpoints on their own thread: SQLite's automatic checkpoint would copy the
//! WAL into the database file (and, in `synchronous = NORMAL`, `fsync` both) inside
//! whichever commit crossed the threshold, stalling every caller of that batch. The
//! writer turns it off and instead nudges this thread every
//! [`COMMITS_PER_CHECKPOINT`] commits; a `PASSIVE` checkpoint here runs beside the
//! writer (WAL lets one writer and one checkpointer work at once) and never blocks
//! it.

use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use rusqlite::Connection;

use super::super::QueueError;
use super::schema;

/// Commits between two nudges: a commit writes a handful of pages, so this is near
/// SQLite's own default of a checkpoint per 1,000 WAL pages.
pub(super) const COMMITS_PER_CHECKPOINT: u32 = 128;

/// The writer's end: counts commits and nudges the checkpointer.
#[derive(Debug)]
pub(super) struct Nudge {
    tx: SyncSender<()>,
    commits: u32,
}

impl Nudge {
    /// One more commit; every [`COMMITS_PER_CHECKPOINT`]th asks for a checkpoint
    /// (without waiting: one already asked for and not started is enough).
    pub(super) fn committed(&mut self) {
        self.commits += 1;
        if self.commits >= COMMITS_PER_CHECKPOINT {
            self.commits = 0;
            match self.tx.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) => {}
                Err(TrySendError::Disconnected(())) => {
                    tracing::warn!("the checkpoint thread is gone; the WAL grows until restart");
                }
            }
        }
    }
}

/// Starts the checkpoint thread on its own connection to `path`. It ends when the
/// returned [`Nudge`] is dropped (the writer stopped).
///
/// # Errors
/// [`QueueError::Store`] when the connection or the thread cannot be opened.
pub(super) fn start(path: &Path) -> Result<Nudge, QueueError> {
    let conn = Connection::open(path)?;
    schema::configure(&conn)?;
    let (tx, rx) = sync_channel(1);
    std::thread::Builder::new()
        .name("sapbridge-queue-checkpoint".into())
        .spawn(move || run(&conn, &rx))
        .map_err(|e| QueueError::Store(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(Nudge { tx, commits: 0 })
}

fn run(conn: &Connection, nudges: &Receiver<()>) {
    while nudges.recv().is_ok() {
        let checkpointed = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        match checkpointed {
            Ok((wal_pages, copied)) => {
                tracing::trace!(wal_pages, copied, "WAL checkpoint");
            }
            Err(error) => {
                tracing::warn!(%error, "WAL checkpoint failed; retried on the next nudge")
            }
        }
    }
    tracing::debug!("checkpoint thread stopped");
}
