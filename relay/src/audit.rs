//! The audit log's writer: what the relay does hands its records to an
//! [`AuditLog`] without waiting, and one task stores them in batches
//! ([`Queue::append_audit`]), so auditing adds a channel send to a request, not a
//! write.
//!
//! Two kinds of entries: a finished record (a request, a refusal, a credential
//! reload), and the end of a call (an agent reported its outcome, or the reaper
//! expired it or failed it with its outcome unknown), which the task
//! turns into a record by reading the call back (its owner, system, function,
//! agent, times), off the session's path.
//!
//! Records waiting in memory are lost if the process dies before the task stored
//! them (the task writes whatever is waiting at once, so that is one batch);
//! shutdown writes everything handed over before. When the store refuses a batch
//! the task tries again a few times, then drops it with an error in the log; when
//! more records wait than [`CAPACITY`], new ones are dropped and counted
//! ([`AuditLog::dropped`]) rather than slowing the requests down.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sapbridge_proto::{CallResult, Outcome};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::queue::{AuditRecord, CallKind, CallRecord, CallState, Queue};

/// The most entries waiting for the task; past it new ones are dropped.
const CAPACITY: usize = 65_536;
/// The most records stored in one batch.
const MAX_BATCH: usize = 512;
/// How often a batch the store refused is tried again before it is dropped.
const ATTEMPTS: u32 = 5;
/// The pause between two attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Something to record.
#[derive(Debug)]
enum Entry {
    /// A finished record.
    Record(Box<AuditRecord>),
    /// A call whose outcome was stored: record it as it is now.
    CallEnded(String),
}

/// The handle records are handed to. Cheap to share; never waits.
#[derive(Debug)]
pub(crate) struct AuditLog {
    entries: mpsc::Sender<Entry>,
    dropped: AtomicU64,
}

/// The task storing the records; [`AuditWriter::finish`] stores what is waiting
/// and ends it.
#[derive(Debug)]
pub(crate) struct AuditWriter {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl AuditLog {
    /// Starts the task that stores records in `queue`.
    pub(crate) fn start(queue: Arc<dyn Queue>) -> (Arc<Self>, AuditWriter) {
        let (entries, rx) = mpsc::channel(CAPACITY);
        let stop = CancellationToken::new();
        let task = tokio::spawn(store_entries(queue, rx, stop.clone()));
        let log = Arc::new(Self {
            entries,
            dropped: AtomicU64::new(0),
        });
        (log, AuditWriter { stop, task })
    }

    /// A log whose records go nowhere (tests that need a state, not its log).
    #[cfg(test)]
    pub(crate) fn detached() -> Arc<Self> {
        let (entries, _) = mpsc::channel(1);
        Arc::new(Self {
            entries,
            dropped: AtomicU64::new(0),
        })
    }

    /// Records `record`.
    pub(crate) fn record(&self, record: AuditRecord) {
        self.send(Entry::Record(Box::new(record)));
    }

    /// Records the end of call `call_id` (its outcome was just stored, or the
    /// reaper ended it).
    pub(crate) fn call_ended(&self, call_id: &str) {
        self.send(Entry::CallEnded(call_id.to_owned()));
    }

    /// How many records were dropped because too many were waiting.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn send(&self, entry: Entry) {
        if self.entries.try_send(entry).is_err() {
            let before = self.dropped.fetch_add(1, Ordering::Relaxed);
            if before.is_power_of_two() || before == 0 {
                tracing::error!(
                    dropped = before + 1,
                    "audit records dropped: the store does not keep up (or is away)"
                );
            }
        }
    }
}

impl AuditWriter {
    /// Stores every record handed over so far and ends the task.
    pub(crate) async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// The task: takes what waits (up to [`MAX_BATCH`]), stores it, repeats; on
/// `stop`, stores what is left and ends.
async fn store_entries(
    queue: Arc<dyn Queue>,
    mut rx: mpsc::Receiver<Entry>,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let stopping = tokio::select! {
            () = stop.cancelled() => true,
            n = rx.recv_many(&mut batch, MAX_BATCH) => n == 0,
        };
        if stopping {
            while let Ok(entry) = rx.try_recv() {
                batch.push(entry);
                if batch.len() == MAX_BATCH {
                    store(queue.as_ref(), std::mem::take(&mut batch), false).await;
                }
            }
            store(queue.as_ref(), batch, false).await;
            return;
        }
        store(queue.as_ref(), std::mem::take(&mut batch), true).await;
    }
}

/// Stores one batch, trying again (when `patient`) while the store refuses.
async fn store(queue: &dyn Queue, entries: Vec<Entry>, patient: bool) {
    if entries.is_empty() {
        return;
    }
    let mut records = Vec::with_capacity(entries.len());
    for entry in entries {
        match entry {
            Entry::Record(record) => records.push(*record),
            Entry::CallEnded(call_id) => match queue.get(&call_id).await {
                Ok(Some(call)) => records.push(call_record(&call)),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, call_id, "audit: could not read the ended call");
                    let mut record = AuditRecord::new("call", OffsetDateTime::now_utc(), "unknown");
                    record.call_id = Some(call_id);
                    records.push(record);
                }
            },
        }
    }
    let attempts = if patient { ATTEMPTS } else { 1 };
    for attempt in 1..=attempts {
        match queue.append_audit(records.clone()).await {
            Ok(()) => return,
            Err(error) if attempt < attempts => {
                tracing::warn!(%error, attempt, "storing audit records failed; trying again");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(error) => {
                tracing::error!(%error, lost = records.len(), "audit records could not be stored");
            }
        }
    }
}

/// The record of a reload of the keys and agent tokens (SIGHUP): `ok`, or
/// `refused` when the new configuration did not validate (the keys stay).
pub(crate) fn reload_record(outcome: &str, detail: String) -> AuditRecord {
    let mut record = AuditRecord::new("config", OffsetDateTime::now_utc(), outcome);
    record.target = Some("reload keys and agent tokens".to_owned());
    record.detail = Some(detail);
    record
}

/// The record of a call that ended: its owner, system, what ran, its outcome,
/// how long it took from submission, the agent.
pub(crate) fn call_record(call: &CallRecord) -> AuditRecord {
    let at = call.completed_at.unwrap_or_else(OffsetDateTime::now_utc);
    let mut record = AuditRecord::new("call", at, call_outcome(call));
    record.key = call.owner.clone();
    record.system = Some(call.system.clone());
    record.target = Some(call_target(call));
    record.call_id = Some(call.id.clone());
    record.duration_ms = i64::try_from((at - call.submitted_at).whole_milliseconds()).ok();
    record.agent = call.agent.clone();
    record.detail = call_error(call).map(|e| {
        if e.key.is_empty() {
            e.message.clone()
        } else {
            e.key.clone()
        }
    });
    record
}

/// What a call runs, as the audit log names it: its action, or its functions
/// (comma-separated).
pub(crate) fn call_target(call: &CallRecord) -> String {
    match &call.kind {
        CallKind::Action(step) => step.action.clone(),
        CallKind::Function | CallKind::Transaction => call
            .calls
            .iter()
            .map(|c| c.function.as_str())
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// A call's outcome in the audit log: its state, or for a failed call the SAP
/// error group that failed it, in kebab case (`not-allowed`,
/// `abap-application-failure`, ...).
fn call_outcome(call: &CallRecord) -> String {
    match (&call.state, call_error(call)) {
        (CallState::Failed, Some(error)) => serde_json::to_value(error.group)
            .ok()
            .and_then(|v| v.as_str().map(|s| s.to_ascii_lowercase().replace('_', "-")))
            .unwrap_or_else(|| "failed".to_owned()),
        (state, _) => state.as_str().to_owned(),
    }
}

/// The error a call failed with, if an agent reported one.
fn call_error(call: &CallRecord) -> Option<&sapbridge_proto::RfcError> {
    match call.outcome.as_ref()? {
        Outcome::Failed { error } => Some(error),
        Outcome::Completed { results, .. } => results.iter().find_map(|r| match r {
            CallResult::Error(error) => Some(error),
            CallResult::Ok(_) => None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::memory::MemoryQueue;
    use crate::queue::{AuditFilter, NewCall};
    use sapbridge_proto::{CommitPolicy, ErrorGroup, FunctionCall, RfcError};

    #[tokio::test]
    async fn records_and_call_ends_are_stored_in_order_and_flushed_on_finish() {
        let queue: Arc<dyn Queue> = Arc::new(MemoryQueue::new());
        let now = OffsetDateTime::now_utc();
        queue
            .enqueue(NewCall {
                id: "c1".into(),
                system: "PRD".into(),
                kind: CallKind::Function,
                calls: vec![FunctionCall {
                    function: "Z_DENIED".into(),
                    parameters: Default::default(),
                }],
                commit: CommitPolicy::None,
                submitted_at: now,
                expires_at: now + time::Duration::hours(1),
                idempotency: None,
                owner: Some("flow".into()),
                trace: None,
                webhooks: Vec::new(),
            })
            .await
            .unwrap();
        let claimant = crate::queue::Claimant {
            session: "s",
            agent: "A",
            takes_in_doubt: true,
        };
        queue
            .claim(
                &["PRD".into()],
                claimant,
                1,
                now + time::Duration::minutes(1),
            )
            .await
            .unwrap();
        let refused = Outcome::Failed {
            error: RfcError::new(
                ErrorGroup::NotAllowed,
                "NOT_ALLOWED",
                "not on the allowlist",
            ),
        };
        queue
            .complete("c1", 1, "s", "agent-7", refused)
            .await
            .unwrap();

        let (log, writer) = AuditLog::start(Arc::clone(&queue));
        log.record(AuditRecord::new("config", now, "ok"));
        log.call_ended("c1");
        writer.finish().await;

        let stored = queue
            .audit(AuditFilter {
                limit: 10,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[0].event, "config");
        let call = &stored[1];
        assert_eq!(
            (call.event.as_str(), call.outcome.as_str()),
            ("call", "not-allowed")
        );
        assert_eq!(call.key.as_deref(), Some("flow"));
        assert_eq!(call.agent.as_deref(), Some("agent-7"));
        assert_eq!(call.target.as_deref(), Some("Z_DENIED"));
        assert_eq!(call.detail.as_deref(), Some("NOT_ALLOWED"));
        assert!(call.duration_ms.is_some_and(|d| d >= 0));
        assert_eq!(log.dropped(), 0);
    }
}
