//! The execution journal: a SQLite file (`data_dir/journal.db`, WAL) keyed by call
//! id that makes a call id run **at most once** — SAP's tRFC TID idea on the agent.
//!
//! Per call id the journal holds what ran (system, functions, commit policy, whether
//! every function is read-only), when it started, the result of each call of a
//! committing unit as it completes, the outcome, and when the relay acknowledged it.
//! A row with a start and no outcome means the agent died mid-unit: the unit is **in
//! doubt** (see [`crate::redelivery`]). Acknowledged rows are kept for the retention
//! (`journal_retention_days`) so a late redelivery is still answered from the journal,
//! then purged by [`sweep`].
//!
//! Durability: every write the caller awaits is committed before the future
//! resolves. Writes go through one writer task that commits many records per
//! transaction (group commit, see `writer`), so journaling
//! costs little throughput.
//! With `journal_sync = "normal"` (SQLite `synchronous=NORMAL`, the default) a
//! commit survives the agent process crashing but not the host losing power or the
//! OS crashing (the WAL is fsynced only at checkpoints); `"full"` fsyncs the WAL on
//! every commit, so at-most-once also holds across power loss, at the cost of one
//! fsync per batch.
//!
//! Concurrency: lookups go through the writer too and are answered from inside its
//! batch (after the batch committed), so a burst of delivered units costs one
//! blocking hop, not one per unit; the startup read of unacknowledged outcomes uses
//! its own connection. One agent process per journal file.

mod sweep;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::types::FromSql;
use rusqlite::{Connection, OptionalExtension, Row, params};
use sapbridge_proto::{CallResult, CommitPolicy, Outcome, Unit};
use tokio::sync::{mpsc, oneshot};

use crate::config::JournalSync;

pub(crate) use sweep::sweep;
use writer::{Done, Request, Write};

/// The journal's file name inside the data directory.
pub(crate) const JOURNAL_FILE: &str = "journal.db";

/// The schema version this agent writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

/// How many records the writer commits in one transaction at most.
const MAX_BATCH: usize = 512;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS calls (
    call_id        TEXT PRIMARY KEY NOT NULL,
    attempt        INTEGER NOT NULL,
    system         TEXT NOT NULL,
    functions      TEXT NOT NULL,
    commit_policy  TEXT NOT NULL,
    read_only      INTEGER NOT NULL,
    started_at_ms  INTEGER,
    finished_at_ms INTEGER,
    outcome        TEXT,
    acked_at_ms    INTEGER
);
CREATE INDEX IF NOT EXISTS calls_unacked ON calls (finished_at_ms)
    WHERE outcome IS NOT NULL AND acked_at_ms IS NULL;
CREATE INDEX IF NOT EXISTS calls_acked ON calls (acked_at_ms)
    WHERE acked_at_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS call_results (
    call_id TEXT NOT NULL,
    idx     INTEGER NOT NULL,
    result  TEXT NOT NULL,
    PRIMARY KEY (call_id, idx)
) WITHOUT ROWID;
";

/// Why the journal cannot be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The file cannot be opened as a SQLite database or its schema cannot be set up.
    #[error("journal {path}: {source}")]
    Open {
        /// The journal file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The file was written by a newer agent whose schema this one does not know.
    #[error(
        "journal {path}: schema version {found} is unknown to this agent (it knows {SCHEMA_VERSION}); \
         use the agent version that wrote it, or move the file away to start afresh"
    )]
    Version {
        /// The journal file.
        path: PathBuf,
        /// The version found.
        found: i64,
    },
    /// A query failed.
    #[error("journal read failed: {0}")]
    Read(#[from] rusqlite::Error),
    /// A write (or its transaction's commit) failed.
    #[error("journal write failed: {0}")]
    Write(String),
    /// A row holds something this agent cannot decode.
    #[error("journal row for call {call_id} is corrupt: column {column}: {reason}")]
    Corrupt {
        /// The row's call id.
        call_id: String,
        /// The column that cannot be decoded.
        column: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The writer task has stopped (the agent or its runtime is exiting).
    #[error("the journal writer has stopped")]
    Closed,
}

/// What a unit is, as the journal records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    /// The call id (the SAP TID).
    pub(crate) call_id: String,
    /// The latest attempt delivered.
    pub(crate) attempt: u32,
    /// The system it runs on.
    pub(crate) system: String,
    /// Its functions, in order.
    pub(crate) functions: Vec<String>,
    /// Its commit policy.
    pub(crate) commit: CommitPolicy,
    /// Whether every function is read-only (the unit may run again when in doubt).
    pub(crate) read_only: bool,
}

impl Header {
    /// The header of `unit`.
    pub(crate) fn of(unit: &Unit, read_only: bool) -> Self {
        Self {
            call_id: unit.call_id.clone(),
            attempt: unit.attempt,
            system: unit.system.clone(),
            functions: unit.calls.iter().map(|c| c.function.clone()).collect(),
            commit: unit.commit,
            read_only,
        }
    }
}

/// What the journal knows about one call id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    /// The unit as recorded.
    pub(crate) header: Header,
    /// When SAP was first about to be called (Unix ms); `None` if it never was.
    pub(crate) started_at_ms: Option<i64>,
    /// The outcome; `None` while running, or in doubt.
    pub(crate) outcome: Option<Outcome>,
    /// Whether the relay acknowledged the outcome.
    pub(crate) acked: bool,
    /// The results journaled call by call (committing units only), in order.
    pub(crate) results: Vec<CallResult>,
}

/// An outcome the relay has not acknowledged yet.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Unacked {
    /// The call id.
    pub(crate) call_id: String,
    /// The latest attempt delivered.
    pub(crate) attempt: u32,
    /// The outcome.
    pub(crate) outcome: Outcome,
}

/// A handle on the journal; clones share the file, the writer and the reader.
#[derive(Debug, Clone)]
pub(crate) struct Journal {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    writer: mpsc::UnboundedSender<Request>,
    reader: Mutex<Connection>,
}

impl Journal {
    /// Opens (or creates) the journal at `path`; its writer task runs on the current
    /// tokio runtime. Blocking: call it from `spawn_blocking` or at startup.
    ///
    /// # Errors
    /// [`JournalError::Open`] when the file is not a usable SQLite database,
    /// [`JournalError::Version`] when a newer agent wrote it.
    pub(crate) fn open(path: &Path, sync: JournalSync) -> Result<Self, JournalError> {
        Self::open_with_batch(path, sync, MAX_BATCH)
    }

    /// As [`Journal::open`], committing at most `max_batch` records per transaction
    /// (1 turns group commit off; the benchmark compares both).
    ///
    /// # Errors
    /// As [`Journal::open`].
    pub(crate) fn open_with_batch(
        path: &Path,
        sync: JournalSync,
        max_batch: usize,
    ) -> Result<Self, JournalError> {
        let open_error = |source| JournalError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_error)?;
        let found = prepare(&mut conn, sync).map_err(open_error)?;
        if found > SCHEMA_VERSION {
            return Err(JournalError::Version {
                path: path.to_path_buf(),
                found,
            });
        }
        let reader = Connection::open(path).map_err(open_error)?;
        reader
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_error)?;
        let inline = sync == JournalSync::Normal;
        let writer = writer::spawn(conn, max_batch.max(1), inline).map_err(JournalError::Write)?;
        Ok(Self {
            shared: Arc::new(Shared {
                writer,
                reader: Mutex::new(reader),
            }),
        })
    }

    /// What the journal holds for `call_id`, if anything.
    ///
    /// # Errors
    /// [`JournalError::Read`] when the query fails, [`JournalError::Corrupt`] when
    /// the row cannot be decoded.
    pub(crate) async fn lookup(&self, call_id: &str) -> Result<Option<Entry>, JournalError> {
        // Through the writer: lookups share its batches (one blocking hop for many)
        // instead of each taking a blocking thread and the reader's lock.
        match self
            .request(Write::Lookup {
                call_id: call_id.to_owned(),
            })
            .await?
        {
            Done::Entry(entry) => Ok(entry.map(|entry| *entry)),
            Done::Changed(_) => Ok(None),
        }
    }

    /// The outcomes not acknowledged yet, oldest first, and the rows that could not
    /// be decoded. Blocking (read at startup).
    ///
    /// # Errors
    /// [`JournalError::Read`] when the query itself fails.
    pub(crate) fn unacked(&self) -> Result<(Vec<Unacked>, Vec<JournalError>), JournalError> {
        let reader = self
            .shared
            .reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut statement = reader.prepare(
            "SELECT call_id, attempt, outcome FROM calls
             WHERE outcome IS NOT NULL AND acked_at_ms IS NULL
             ORDER BY finished_at_ms, rowid",
        )?;
        let mut rows = statement.query([])?;
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        while let Some(row) = rows.next()? {
            let call_id: String = row.get(0)?;
            let decoded = column::<i64>(row, 1, "attempt", &call_id)
                .and_then(|attempt| attempt_of(attempt, &call_id))
                .and_then(|attempt| {
                    let text = column::<String>(row, 2, "outcome", &call_id)?;
                    let outcome = json_of(&text, "outcome", &call_id)?;
                    Ok(Unacked {
                        call_id: call_id.clone(),
                        attempt,
                        outcome,
                    })
                });
            match decoded {
                Ok(unacked) => good.push(unacked),
                Err(error) => bad.push(error),
            }
        }
        Ok((good, bad))
    }

    /// Records durably that SAP is about to be called for the unit (forgetting any
    /// earlier attempt's partial results).
    ///
    /// # Errors
    /// [`JournalError::Write`] or [`JournalError::Closed`]: the start is not recorded.
    pub(crate) async fn started(&self, header: &Header) -> Result<(), JournalError> {
        self.write(Write::Started {
            header: header.clone(),
            at_ms: now_ms(),
        })
        .await
        .map(drop)
    }

    /// Records durably the result of call `index` of a committing unit.
    ///
    /// # Errors
    /// As [`Journal::started`].
    pub(crate) async fn call_result(
        &self,
        call_id: &str,
        index: usize,
        result: &CallResult,
    ) -> Result<(), JournalError> {
        self.write(Write::CallResult {
            call_id: call_id.to_owned(),
            index,
            result: to_json(result),
        })
        .await
        .map(drop)
    }

    /// Records durably the outcome of a unit (unacknowledged).
    ///
    /// # Errors
    /// As [`Journal::started`].
    pub(crate) async fn finished(
        &self,
        header: &Header,
        outcome: &Outcome,
    ) -> Result<(), JournalError> {
        self.write(Write::Finished {
            header: header.clone(),
            outcome: to_json(outcome),
            at_ms: now_ms(),
        })
        .await
        .map(drop)
    }

    /// Notes that a finished unit was delivered again as `attempt`: its outcome is
    /// unacknowledged again. Not awaited: losing it only means one more re-send.
    pub(crate) fn redelivered(&self, call_id: &str, attempt: u32) {
        self.send(Write::Redelivered {
            call_id: call_id.to_owned(),
            attempt,
        });
    }

    /// Notes the relay's acknowledgement. Not awaited: losing it only means the
    /// outcome is sent once more after a restart.
    pub(crate) fn acked(&self, call_id: &str) {
        self.send(Write::Acked {
            call_id: call_id.to_owned(),
            at_ms: now_ms(),
        });
    }

    /// Deletes the rows acknowledged at or before `before_ms` (Unix ms); returns how
    /// many.
    ///
    /// # Errors
    /// As [`Journal::started`].
    pub(crate) async fn purge_acked_before(&self, before_ms: i64) -> Result<usize, JournalError> {
        self.write(Write::PurgeAcked { before_ms }).await
    }

    /// Resolves once every write sent before it is committed.
    ///
    /// # Errors
    /// [`JournalError::Closed`] when the writer has stopped.
    pub(crate) async fn flush(&self) -> Result<(), JournalError> {
        self.write(Write::Flush).await.map(drop)
    }

    async fn write(&self, write: Write) -> Result<usize, JournalError> {
        match self.request(write).await? {
            Done::Changed(changed) => Ok(changed),
            Done::Entry(_) => Ok(0),
        }
    }

    async fn request(&self, write: Write) -> Result<Done, JournalError> {
        let (done, result) = oneshot::channel();
        self.shared
            .writer
            .send(Request {
                write,
                done: Some(done),
            })
            .map_err(|_| JournalError::Closed)?;
        result.await.map_err(|_| JournalError::Closed)?
    }

    fn send(&self, write: Write) {
        let _ = self.shared.writer.send(Request { write, done: None });
    }
}

/// Sets the pragmas and the schema; returns the schema version found.
fn prepare(conn: &mut Connection, sync: JournalSync) -> rusqlite::Result<i64> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    let synchronous = match sync {
        JournalSync::Normal => "NORMAL",
        JournalSync::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", synchronous)?;
    let found: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if found == 0 {
        let tx = conn.transaction()?;
        tx.execute_batch(SCHEMA)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
        return Ok(SCHEMA_VERSION);
    }
    Ok(found)
}

fn read_entry(conn: &Connection, call_id: &str) -> Result<Option<Entry>, JournalError> {
    let row = conn
        .prepare_cached(
            "SELECT attempt, system, functions, commit_policy, read_only, started_at_ms,
                    outcome, acked_at_ms
             FROM calls WHERE call_id = ?1",
        )?
        .query_row(params![call_id], |row| Ok(decode_entry(row, call_id)))
        .optional()?;
    let Some(entry) = row else {
        return Ok(None);
    };
    let mut entry = entry?;
    let mut statement = conn
        .prepare_cached("SELECT idx, result FROM call_results WHERE call_id = ?1 ORDER BY idx")?;
    let mut rows = statement.query(params![call_id])?;
    while let Some(row) = rows.next()? {
        let index = column::<i64>(row, 0, "call_results.idx", call_id)?;
        if usize::try_from(index).ok() != Some(entry.results.len()) {
            return Err(corrupt(
                call_id,
                "call_results.idx",
                format!("result {index} follows {} results", entry.results.len()),
            ));
        }
        let text = column::<String>(row, 1, "call_results.result", call_id)?;
        entry
            .results
            .push(json_of(&text, "call_results.result", call_id)?);
    }
    Ok(Some(entry))
}

fn decode_entry(row: &Row<'_>, call_id: &str) -> Result<Entry, JournalError> {
    let attempt = attempt_of(column(row, 0, "attempt", call_id)?, call_id)?;
    let functions: String = column(row, 2, "functions", call_id)?;
    let commit: String = column(row, 3, "commit_policy", call_id)?;
    let commit = CommitPolicy::from_code(&commit).ok_or_else(|| {
        corrupt(
            call_id,
            "commit_policy",
            format!("unknown policy {commit:?}"),
        )
    })?;
    let outcome: Option<String> = column(row, 6, "outcome", call_id)?;
    let acked: Option<i64> = column(row, 7, "acked_at_ms", call_id)?;
    Ok(Entry {
        header: Header {
            call_id: call_id.to_owned(),
            attempt,
            system: column(row, 1, "system", call_id)?,
            functions: json_of(&functions, "functions", call_id)?,
            commit,
            read_only: column::<i64>(row, 4, "read_only", call_id)? != 0,
        },
        started_at_ms: column(row, 5, "started_at_ms", call_id)?,
        outcome: outcome
            .map(|text| json_of(&text, "outcome", call_id))
            .transpose()?,
        acked: acked.is_some(),
        results: Vec::new(),
    })
}

fn column<T: FromSql>(
    row: &Row<'_>,
    index: usize,
    name: &'static str,
    call_id: &str,
) -> Result<T, JournalError> {
    row.get(index)
        .map_err(|e| corrupt(call_id, name, e.to_string()))
}

fn attempt_of(attempt: i64, call_id: &str) -> Result<u32, JournalError> {
    u32::try_from(attempt)
        .map_err(|_| corrupt(call_id, "attempt", format!("{attempt} is out of range")))
}

fn json_of<T: serde::de::DeserializeOwned>(
    text: &str,
    name: &'static str,
    call_id: &str,
) -> Result<T, JournalError> {
    serde_json::from_str(text).map_err(|e| corrupt(call_id, name, e.to_string()))
}

fn corrupt(call_id: &str, column: &'static str, reason: String) -> JournalError {
    JournalError::Corrupt {
        call_id: call_id.to_owned(),
        column,
        reason,
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Outcomes and results serialize infallibly: every map key is a string.
    serde_json::to_string(value).unwrap_or_default()
}

/// Now, in Unix milliseconds, on the agent's clock ([`crate::clock`]).
pub(crate) fn now_ms() -> i64 {
    crate::clock::now_unix_ms()
}

#[cfg(test)]
pub(crate) mod tests;
