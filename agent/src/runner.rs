//! Running delivered units: one task per unit, at most `concurrency` executing at
//! once, outcomes into the [`OutcomeStore`].
//!
//! Each task first asks the journal what it knows of the call id
//! ([`crate::redelivery::plan`]): a unit that already ran is answered from the
//! journal, one in doubt is resolved by the redelivery rules, only a new (or safely
//! re-runnable) unit reaches SAP, with its start and results journaled on the way
//! ([`JournalProgress`]). Read-only units (`read_only_functions`) skip the journal
//! altogether: running one twice changes nothing, so there is nothing to guard,
//! and reads — most of a workflow's calls — cost no disk write on the agent.
//!
//! The relay should never send more units than the agent granted credits; the
//! semaphore here makes the limit hold even if it does (extra units wait for a slot).
//! Unit tasks outlive sessions: a unit still running when the connection drops
//! finishes, and its outcome is sent on the next session.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use sapbridge_proto::{
    AgentMessage, CallResult, ErrorGroup, MAX_FRAME_BYTES, Outcome, RfcError, Unit,
    encode_agent_message,
};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::executor::{UnitProgress, execute};
use crate::journal::{Header, Journal};
use crate::outcomes::{Delivery, OutcomeStore};
use crate::read_only::ReadOnlyFunctions;
use crate::redelivery::{Plan, plan};
use crate::systems::ServedSystem;

/// Spawns and tracks unit tasks.
#[derive(Debug)]
pub(crate) struct UnitRunner {
    systems: Arc<HashMap<String, ServedSystem>>,
    store: Arc<OutcomeStore>,
    read_only: Arc<ReadOnlyFunctions>,
    slots: Arc<Semaphore>,
    tasks: TaskTracker,
    abandon: CancellationToken,
}

impl UnitRunner {
    /// A runner for the served systems with `concurrency` slots, journaling into
    /// `store`'s journal.
    pub(crate) fn new(
        systems: HashMap<String, ServedSystem>,
        concurrency: u32,
        store: Arc<OutcomeStore>,
        read_only: ReadOnlyFunctions,
    ) -> Self {
        Self {
            systems: Arc::new(systems),
            store,
            read_only: Arc::new(read_only),
            slots: Arc::new(Semaphore::new(concurrency.max(1) as usize)),
            tasks: TaskTracker::new(),
            abandon: CancellationToken::new(),
        }
    }

    /// The store of running units and held outcomes.
    pub(crate) fn store(&self) -> &OutcomeStore {
        &self.store
    }

    /// Takes a delivered unit: resolves and runs it in its own task, unless its call
    /// id is already running or its outcome is already held (redelivery), in which
    /// case SAP is not called again.
    pub(crate) fn submit(&self, unit: Unit) {
        // The relay sends the time remaining: the clock starts at delivery, and a
        // deadline too far ahead for this clock is no deadline.
        let deadline = unit
            .deadline_ms
            .and_then(|ms| Instant::now().checked_add(Duration::from_millis(ms)));
        match self.store.claim(&unit.call_id, unit.attempt) {
            Delivery::Claimed => {}
            Delivery::AlreadyRunning => {
                info!(call_id = %unit.call_id, attempt = unit.attempt,
                    "redelivered unit is still running; its outcome follows when done");
                return;
            }
            Delivery::AlreadyDone => {
                info!(call_id = %unit.call_id, attempt = unit.attempt,
                    "redelivered unit already ran; sending the held outcome");
                return;
            }
        }
        // The relay's traceparent is believed only as far as it parses (W3C).
        let trace_id = unit
            .traceparent
            .as_deref()
            .and_then(sapbridge_proto::TraceParent::parse)
            .map(|t| t.trace_id_hex())
            .unwrap_or_default();
        let span = info_span!("unit", call_id = %unit.call_id, system = %unit.system,
            attempt = unit.attempt, calls = unit.calls.len(),
            function = %unit.calls.first().map_or("", |c| c.function.as_str()),
            trace_id = %trace_id);
        let systems = self.systems.clone();
        let store = self.store.clone();
        let read_only = self.read_only.unit_is_read_only(&unit);
        let slots = self.slots.clone();
        let abandon = self.abandon.clone();
        self.tasks.spawn(
            async move {
                let header = Header::of(&unit, read_only);
                let run = async {
                    let system = systems.get(&unit.system);
                    // A read-only unit is not journaled: whatever a journal could
                    // say of it, running it (again) is the answer.
                    if !read_only {
                        match plan(&unit, store.journal(), system, read_only).await {
                            Plan::Run => {}
                            Plan::Resend(outcome) => return Done::Journaled(outcome),
                            Plan::Answer(outcome) => return Done::New(outcome),
                        }
                    }
                    // The semaphore is never closed, so acquiring only waits.
                    let _slot = slots.acquire_owned().await.ok();
                    let started = Instant::now();
                    let progress = JournalProgress {
                        journal: (!read_only).then(|| store.journal()),
                        header: &header,
                    };
                    let outcome = execute(&unit, system, deadline, &progress).await;
                    log_outcome(&outcome, started.elapsed());
                    Done::New(fit_in_frame(&unit, outcome))
                };
                // A panic (a bug) must not leave the call "running" for ever: it
                // may have reached SAP, so its outcome is unknown, journaled like
                // any other so a redelivery gets the same answer.
                let run = std::panic::AssertUnwindSafe(run).catch_unwind();
                tokio::select! {
                    done = run => match done {
                        Ok(Done::New(outcome)) => store.complete(&header, outcome).await,
                        Ok(Done::Journaled(outcome)) => store.resend(&unit.call_id, outcome),
                        Err(_) => {
                            error!("the unit's task panicked; reporting its outcome as unknown");
                            store.complete(&header, panicked(&unit.call_id)).await;
                        }
                    },
                    () = abandon.cancelled() => {
                        warn!("unit abandoned at the end of the shutdown grace; its outcome is unknown");
                        store.abandon(&unit.call_id);
                    }
                }
            }
            .instrument(span),
        );
    }

    /// Waits until every unit task ended, at most `grace`; then abandons the rest.
    /// Returns how many were abandoned.
    pub(crate) async fn finish(&self, grace: Duration) -> usize {
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_ok() {
            return 0;
        }
        let left = self.tasks.len();
        self.abandon.cancel();
        self.tasks.wait().await;
        left
    }
}

/// How a unit task ends.
enum Done {
    /// A new outcome, to journal and send.
    New(Outcome),
    /// An outcome the journal already holds, to send again.
    Journaled(Outcome),
}

/// The outcome of a unit whose task panicked: it may have reached SAP.
fn panicked(call_id: &str) -> Outcome {
    Outcome::Failed {
        error: RfcError::new(
            ErrorGroup::OutcomeUnknown,
            "AGENT_INTERNAL_ERROR",
            format!(
                "the agent failed internally while running call {call_id}; it may or may not \
                 have run in SAP. It is not run again; check in SAP whether its changes exist \
                 before resubmitting it under a new call id"
            ),
        ),
    }
}

/// Journals a unit's start and its call results as the executor reports them
/// (nothing for a read-only unit: `journal` is `None`).
struct JournalProgress<'a> {
    journal: Option<&'a Journal>,
    header: &'a Header,
}

impl UnitProgress for JournalProgress<'_> {
    async fn starting(&self) -> Result<(), String> {
        let Some(journal) = self.journal else {
            return Ok(());
        };
        journal
            .started(self.header)
            .await
            .map_err(|e| e.to_string())
    }

    async fn call_done(&self, index: usize, result: &CallResult) -> Result<(), String> {
        let Some(journal) = self.journal else {
            return Ok(());
        };
        journal
            .call_result(&self.header.call_id, index, result)
            .await
            .map_err(|e| e.to_string())
    }
}

fn log_outcome(outcome: &Outcome, elapsed: Duration) {
    let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    match outcome {
        Outcome::Completed {
            results,
            transaction,
        } => {
            let committed = transaction.as_ref().map(|t| t.committed);
            debug!(
                elapsed_ms,
                results = results.len(),
                ?committed,
                "unit completed"
            );
        }
        Outcome::Failed { error } => {
            info!(elapsed_ms, group = error.group.as_str(), key = %error.key,
                message = %error.message, "unit failed");
        }
    }
}

/// Keeps an outcome within one frame. Until results travel in chunks, a result that
/// would make the frame too large is replaced by a `RESULT_TOO_LARGE` error (the
/// calls did run, so the unit stays `Completed` and keeps its transaction's end);
/// otherwise the relay would refuse the frame and the agent resend it forever.
fn fit_in_frame(unit: &Unit, outcome: Outcome) -> Outcome {
    // Fast path without encoding the frame: the outcome's JSON length, counted,
    // plus a bound on the envelope (type, call id escaped at worst 6 bytes a byte,
    // attempt).
    let envelope_bound = 64 + unit.call_id.len() * 6;
    if json_len(&outcome).saturating_add(envelope_bound) <= MAX_FRAME_BYTES {
        return outcome;
    }
    let size = |outcome: &Outcome| {
        encode_agent_message(&AgentMessage::Outcome {
            call_id: unit.call_id.clone(),
            attempt: u32::MAX,
            outcome: outcome.clone(),
        })
        .len()
    };
    let total = size(&outcome);
    if total <= MAX_FRAME_BYTES {
        return outcome;
    }
    warn!(
        size = total,
        limit = MAX_FRAME_BYTES,
        "outcome too large for one frame; results dropped"
    );
    let too_large = |result: CallResult| match result {
        CallResult::Ok(_) => CallResult::Error(RfcError::new(
            ErrorGroup::ExternalRuntimeFailure,
            "RESULT_TOO_LARGE",
            format!(
                "the unit's results ({total} bytes) exceed the frame limit of {MAX_FRAME_BYTES} bytes"
            ),
        )),
        error => error,
    };
    let shrunk = match outcome {
        Outcome::Completed {
            results,
            transaction,
        } => Outcome::Completed {
            results: results.into_iter().map(too_large).collect(),
            transaction: transaction.map(|mut tx| {
                tx.result = tx.result.map(too_large);
                tx
            }),
        },
        failed @ Outcome::Failed { .. } => failed,
    };
    if size(&shrunk) <= MAX_FRAME_BYTES {
        shrunk
    } else {
        Outcome::Failed {
            error: RfcError::new(
                ErrorGroup::ExternalRuntimeFailure,
                "RESULT_TOO_LARGE",
                format!("the unit's outcome ({total} bytes) exceeds the frame limit"),
            ),
        }
    }
}

/// The length of `value`'s JSON, counted without building it.
fn json_len(value: &Outcome) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Outcomes serialize infallibly (string map keys); a failure counts as too big.
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

#[cfg(test)]
mod tests {
    use sapbridge_proto::{CommitPolicy, Parameters, TransactionOutcome};
    use serde_json::Value;

    use super::*;

    fn unit() -> Unit {
        Unit {
            call_id: "c_big".into(),
            attempt: 1,
            system: "SIM".into(),
            deadline_ms: None,
            in_doubt: false,
            calls: Vec::new(),
            commit: CommitPolicy::CommitOnSuccess,
            traceparent: None,
        }
    }

    #[test]
    fn small_outcomes_pass_unchanged() {
        let outcome = Outcome::Completed {
            results: vec![CallResult::Ok(Parameters::new())],
            transaction: None,
        };
        assert_eq!(fit_in_frame(&unit(), outcome.clone()), outcome);
    }

    #[test]
    fn oversized_results_become_errors_but_keep_the_transaction_end() {
        let mut big = Parameters::new();
        big.insert("DATA".into(), Value::from("x".repeat(MAX_FRAME_BYTES)));
        let tx = TransactionOutcome {
            committed: true,
            failed_call: None,
            reason: None,
            result: None,
        };
        let outcome = Outcome::Completed {
            results: vec![CallResult::Ok(big)],
            transaction: Some(tx.clone()),
        };
        let Outcome::Completed {
            results,
            transaction,
        } = fit_in_frame(&unit(), outcome)
        else {
            panic!("still completed");
        };
        assert!(matches!(&results[0], CallResult::Error(e) if e.key == "RESULT_TOO_LARGE"));
        assert_eq!(transaction, Some(tx));
    }
}
