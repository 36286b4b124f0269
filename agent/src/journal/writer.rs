//! The journal's single writer: one task owns the write connection, drains a
//! channel of records and commits as many as are waiting (up to a batch limit) in
//! one transaction — group commit. With `journal_sync = "full"` each commit waits
//! for the disk, so it runs on a blocking thread; with `normal` a commit does not
//! wait for the disk and costs less than handing it to another thread and back, so
//! it runs inline on the task. Each caller that awaits its record is answered
//! only after the transaction holding it committed, so a record is durable when its
//! future resolves, while a burst of N records costs one commit (one fsync with
//! `journal_sync = "full"`) instead of N.
//!
//! A failing record is answered with its own error and does not fail the others in
//! its batch; a failing commit fails every record of the batch. The task ends
//! when every [`super::Journal`] handle is dropped (or its runtime shuts down).

use rusqlite::{Connection, Transaction, params};
use tokio::sync::{mpsc, oneshot};

use super::{Entry, Header, JournalError, read_entry};

/// One record for the journal.
#[derive(Debug)]
pub(super) enum Write {
    /// SAP is about to be called for the unit.
    Started {
        /// The unit.
        header: Header,
        /// Unix ms.
        at_ms: i64,
    },
    /// Call `index` of a committing unit returned (JSON of a `CallResult`).
    CallResult {
        /// The unit's call id.
        call_id: String,
        /// The call's index in the unit.
        index: usize,
        /// The result, as JSON.
        result: String,
    },
    /// The unit's outcome (JSON of an `Outcome`).
    Finished {
        /// The unit.
        header: Header,
        /// The outcome, as JSON.
        outcome: String,
        /// Unix ms.
        at_ms: i64,
    },
    /// A finished unit was delivered again: new attempt, unacknowledged again.
    Redelivered {
        /// The call id.
        call_id: String,
        /// The new attempt.
        attempt: u32,
    },
    /// The relay acknowledged the outcome.
    Acked {
        /// The call id.
        call_id: String,
        /// Unix ms.
        at_ms: i64,
    },
    /// Delete the rows acknowledged at or before `before_ms`.
    PurgeAcked {
        /// Unix ms.
        before_ms: i64,
    },
    /// Nothing: answered once everything before it is committed.
    Flush,
    /// Read what the journal holds for a call id (answered once everything before
    /// it is committed, so it sees every earlier record).
    Lookup {
        /// The call id.
        call_id: String,
    },
}

/// What a request's caller is answered.
#[derive(Debug)]
pub(super) enum Done {
    /// A record was committed, changing this many rows.
    Changed(usize),
    /// What a [`Write::Lookup`] found (boxed: an entry is large, a count is not).
    Entry(Option<Box<Entry>>),
}

impl Write {
    /// The call id the record is about, if one (for logs).
    fn call_id(&self) -> &str {
        match self {
            Self::Started { header, .. } | Self::Finished { header, .. } => &header.call_id,
            Self::CallResult { call_id, .. }
            | Self::Redelivered { call_id, .. }
            | Self::Acked { call_id, .. }
            | Self::Lookup { call_id } => call_id,
            Self::PurgeAcked { .. } | Self::Flush => "",
        }
    }
}

/// A record and, if the caller waits, where to say it is committed (with the
/// number of rows it changed, or what a lookup found) or why not.
#[derive(Debug)]
pub(super) struct Request {
    /// The record.
    pub(super) write: Write,
    /// The caller's answer channel.
    pub(super) done: Option<oneshot::Sender<Result<Done, JournalError>>>,
}

/// Starts the writer task on the current tokio runtime, owning `conn`.
///
/// # Errors
/// When called outside a tokio runtime.
pub(super) fn spawn(
    conn: Connection,
    max_batch: usize,
    inline: bool,
) -> Result<mpsc::UnboundedSender<Request>, String> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|e| e.to_string())?;
    let (sender, receiver) = mpsc::unbounded_channel();
    runtime.spawn(run(conn, receiver, max_batch, inline));
    Ok(sender)
}

/// Drains the channel batch by batch; each batch is committed inline or on a
/// blocking thread (which also keeps a paused test clock from jumping while the
/// disk works). While one batch commits, the next one queues up.
async fn run(
    conn: Connection,
    mut receiver: mpsc::UnboundedReceiver<Request>,
    max_batch: usize,
    inline: bool,
) {
    let mut conn = conn;
    let mut batch = Vec::with_capacity(max_batch);
    while let Some(first) = receiver.recv().await {
        batch.push(first);
        while batch.len() < max_batch {
            match receiver.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let committed = if inline {
            let results = commit_batch(&mut conn, &batch);
            Ok((conn, batch, results))
        } else {
            tokio::task::spawn_blocking(move || {
                let results = commit_batch(&mut conn, &batch);
                (conn, batch, results)
            })
            .await
        };
        // A panic in SQLite code or a runtime shutting down: the callers of the
        // dropped batch (and all later ones) see the journal closed.
        let Ok((returned_conn, mut done, results)) = committed else {
            return;
        };
        conn = returned_conn;
        for (request, result) in done.drain(..).zip(results) {
            if let Err(error) = &result {
                // A failed lookup is reported by its caller.
                if !matches!(request.write, Write::Lookup { .. }) {
                    tracing::error!(call_id = request.write.call_id(), error = %error,
                        "journal write failed");
                }
            }
            if let Some(reply) = request.done {
                // The caller may have stopped waiting; the record is written anyway.
                let _ = reply.send(result);
            }
        }
        batch = done;
    }
}

fn commit_batch(conn: &mut Connection, batch: &[Request]) -> Vec<Result<Done, JournalError>> {
    let all_fail = |message: String| {
        batch
            .iter()
            .map(|_| Err(JournalError::Write(message.clone())))
            .collect()
    };
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => return all_fail(e.to_string()),
    };
    let results = batch
        .iter()
        .map(|request| match &request.write {
            // Read inside the batch: it sees the records before it, which commit
            // before the answer goes out.
            Write::Lookup { call_id } => {
                read_entry(&tx, call_id).map(|entry| Done::Entry(entry.map(Box::new)))
            }
            write => apply(&tx, write)
                .map(Done::Changed)
                .map_err(|e| JournalError::Write(e.to_string())),
        })
        .collect();
    match tx.commit() {
        Ok(()) => results,
        Err(e) => all_fail(e.to_string()),
    }
}

fn apply(tx: &Transaction<'_>, write: &Write) -> rusqlite::Result<usize> {
    match write {
        Write::Started { header, at_ms } => {
            tx.prepare_cached("DELETE FROM call_results WHERE call_id = ?1")?
                .execute(params![header.call_id])?;
            upsert(tx, header, Some(*at_ms), None, None)
        }
        Write::CallResult {
            call_id,
            index,
            result,
        } => tx
            .prepare_cached(
                "INSERT OR REPLACE INTO call_results (call_id, idx, result) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![
                call_id,
                i64::try_from(*index).unwrap_or(i64::MAX),
                result
            ]),
        Write::Finished {
            header,
            outcome,
            at_ms,
        } => {
            let changed = upsert(tx, header, None, Some(outcome), Some(*at_ms))?;
            // The outcome holds the results now.
            tx.prepare_cached("DELETE FROM call_results WHERE call_id = ?1")?
                .execute(params![header.call_id])?;
            Ok(changed)
        }
        Write::Redelivered { call_id, attempt } => tx
            .prepare_cached(
                "UPDATE calls SET attempt = ?2, acked_at_ms = NULL
                 WHERE call_id = ?1 AND outcome IS NOT NULL",
            )?
            .execute(params![call_id, attempt]),
        Write::Acked { call_id, at_ms } => tx
            .prepare_cached(
                "UPDATE calls SET acked_at_ms = ?2 WHERE call_id = ?1 AND outcome IS NOT NULL",
            )?
            .execute(params![call_id, at_ms]),
        Write::PurgeAcked { before_ms } => {
            tx.prepare_cached(
                "DELETE FROM call_results WHERE call_id IN
                 (SELECT call_id FROM calls WHERE acked_at_ms IS NOT NULL AND acked_at_ms <= ?1)",
            )?
            .execute(params![before_ms])?;
            tx.prepare_cached(
                "DELETE FROM calls WHERE acked_at_ms IS NOT NULL AND acked_at_ms <= ?1",
            )?
            .execute(params![before_ms])
        }
        Write::Flush | Write::Lookup { .. } => Ok(0),
    }
}

/// Inserts or updates the unit's row. A start (`started_at_ms`) clears any outcome;
/// an outcome keeps the start already recorded.
fn upsert(
    tx: &Transaction<'_>,
    header: &Header,
    started_at_ms: Option<i64>,
    outcome: Option<&String>,
    finished_at_ms: Option<i64>,
) -> rusqlite::Result<usize> {
    let functions = serde_json::to_string(&header.functions).unwrap_or_default();
    let commit = header.commit.code();
    tx.prepare_cached(
        "INSERT INTO calls (call_id, attempt, system, functions, commit_policy, read_only,
                            started_at_ms, finished_at_ms, outcome, acked_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL)
         ON CONFLICT (call_id) DO UPDATE SET
            attempt = excluded.attempt,
            system = excluded.system,
            functions = excluded.functions,
            commit_policy = excluded.commit_policy,
            read_only = excluded.read_only,
            started_at_ms = coalesce(excluded.started_at_ms, started_at_ms),
            finished_at_ms = excluded.finished_at_ms,
            outcome = excluded.outcome,
            acked_at_ms = NULL",
    )?
    .execute(params![
        header.call_id,
        header.attempt,
        header.system,
        functions,
        commit,
        header.read_only,
        started_at_ms,
        finished_at_ms,
        outcome,
    ])
}
