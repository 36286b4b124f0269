//! The redelivery rules end to end through the [`UnitRunner`], its store and a real
//! journal file, against a fake SAP system that counts calls and answers the TID
//! question as told. An "agent restart" is a second runner on the same journal file.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sapbridge_proto::Parameters;
use sapbridge_sap::{SapConnection, SapSystem};
use serde_json::json;
use tempfile::TempDir;
use tokio::sync::Semaphore;

use super::*;
use crate::allowlist::Allowlist;
use crate::config::JournalSync;
use crate::journal::{Header, JOURNAL_FILE};
use crate::outcomes::{OutcomeStore, ReadyOutcome};
use crate::read_only::{DEFAULT_READ_ONLY_FUNCTIONS, ReadOnlyFunctions};
use crate::runner::UnitRunner;
use crate::test_units::unit_with as unit;

type Log = Arc<Mutex<Vec<String>>>;

/// Answers every function with a RETURN of TYPE S, records calls (commits as
/// `COMMIT:<tid>`), and says of every TID what `tid` says.
#[derive(Clone)]
struct FakeSap {
    log: Log,
    tid: Result<Option<bool>, ()>,
    tids_asked: Arc<Mutex<usize>>,
    /// When set, the commit waits for a permit (to stop the agent mid-commit).
    commit_gate: Option<Arc<Semaphore>>,
}

impl FakeSap {
    fn new(tid: Result<Option<bool>, ()>) -> Self {
        Self {
            log: Log::default(),
            tid,
            tids_asked: Arc::default(),
            commit_gate: None,
        }
    }

    fn calls(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

#[async_trait]
impl SapSystem for FakeSap {
    async fn connect(&self) -> Result<Box<dyn SapConnection>, RfcError> {
        Ok(Box::new(self.clone()))
    }

    async fn tid_committed(&self, _tid: &str) -> Result<Option<bool>, RfcError> {
        *self.tids_asked.lock().unwrap() += 1;
        self.tid
            .map_err(|()| RfcError::new(ErrorGroup::CommunicationFailure, "DOWN", "SAP is down"))
    }
}

#[async_trait]
impl SapConnection for FakeSap {
    async fn call(&mut self, function: &str, _: &Parameters) -> Result<Parameters, RfcError> {
        self.log.lock().unwrap().push(function.to_owned());
        assert_ne!(function, PANICS, "a bug in the connection");
        let serde_json::Value::Object(out) = json!({"RETURN": {"TYPE": "S", "MESSAGE": function}, "N": self.log.lock().unwrap().len()})
        else {
            unreachable!()
        };
        Ok(out)
    }

    async fn commit_with_tid(&mut self, tid: &str) -> Result<Parameters, RfcError> {
        self.log.lock().unwrap().push(format!("COMMIT:{tid}"));
        if let Some(gate) = &self.commit_gate {
            gate.acquire().await.unwrap().forget();
        }
        Ok(Parameters::new())
    }
}

/// One "agent process": a runner and its store on the journal in `dir`.
fn agent(sap: &FakeSap, dir: &Path) -> (UnitRunner, Arc<OutcomeStore>) {
    let journal = Journal::open(&dir.join(JOURNAL_FILE), JournalSync::Normal).unwrap();
    let store = Arc::new(OutcomeStore::open(journal).unwrap());
    let system = ServedSystem {
        agent_id: "agent-1".into(),
        name: "SIM".into(),
        allowlist: Allowlist::parse(&["*"]).unwrap(),
        tables: Allowlist::parse(&["*"]).unwrap(),
        sap: Arc::new(sap.clone()),
    };
    let runner = UnitRunner::new(
        HashMap::from([("SIM".to_owned(), system)]),
        4,
        store.clone(),
        ReadOnlyFunctions::parse(DEFAULT_READ_ONLY_FUNCTIONS).unwrap(),
    );
    (runner, store)
}

/// The next outcome the store has to send.
async fn next_outcome(store: &OutcomeStore) -> ReadyOutcome {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(ready) = store.take_unsent().into_iter().next() {
                return ready;
            }
            store.changed().await;
        }
    })
    .await
    .expect("an outcome in time")
}

/// Leaves a journal as an agent that died mid-unit would: started, `results`
/// journaled, no outcome.
async fn crashed_mid_unit(dir: &TempDir, unit: &Unit, read_only: bool, results: &[CallResult]) {
    let journal = Journal::open(&dir.path().join(JOURNAL_FILE), JournalSync::Normal).unwrap();
    journal.started(&Header::of(unit, read_only)).await.unwrap();
    for (index, result) in results.iter().enumerate() {
        journal
            .call_result(&unit.call_id, index, result)
            .await
            .unwrap();
    }
}

fn unknown_key(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Failed { error } if error.group == ErrorGroup::OutcomeUnknown => &error.key,
        other => panic!("expected OUTCOME_UNKNOWN, got {other:?}"),
    }
}

const CREATE: &str = "BAPI_CUSTOMER_CREATEFROMDATA1";

/// A function whose call panics in [`FakeSap`] (a bug, as a backend might have).
const PANICS: &str = "Z_PANICS";

#[tokio::test]
async fn a_finished_call_redelivered_after_a_restart_is_answered_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let sap = FakeSap::new(Ok(None));
    let (runner, store) = agent(&sap, dir.path());
    runner.submit(unit("c_1", 1, &[CREATE], CommitPolicy::None));
    let first = next_outcome(&store).await;
    assert!(store.ack("c_1"));
    store.journal().flush().await.unwrap();
    drop((runner, store));

    let (runner, store) = agent(&sap, dir.path());
    assert!(store.take_unsent().is_empty(), "acknowledged: not re-sent");
    runner.submit(unit("c_1", 2, &[CREATE], CommitPolicy::None));
    let again = next_outcome(&store).await;
    assert_eq!((again.call_id.as_str(), again.attempt), ("c_1", 2));
    assert_eq!(again.outcome, first.outcome);
    assert_eq!(sap.calls(), [CREATE], "SAP was called once");
}

#[tokio::test]
async fn in_doubt_read_only_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let sap = FakeSap::new(Ok(None));
    let reads = unit("c_r", 1, &["RFC_READ_TABLE"], CommitPolicy::None);
    crashed_mid_unit(&dir, &reads, true, &[]).await;
    let (runner, store) = agent(&sap, dir.path());
    runner.submit(unit("c_r", 2, &["RFC_READ_TABLE"], CommitPolicy::None));
    let ready = next_outcome(&store).await;
    assert!(
        matches!(ready.outcome, Outcome::Completed { .. }),
        "{ready:?}"
    );
    assert_eq!(sap.calls(), ["RFC_READ_TABLE"]);
    assert_eq!(*sap.tids_asked.lock().unwrap(), 0);
}

#[tokio::test]
async fn in_doubt_write_without_a_commit_is_never_run_twice() {
    let dir = tempfile::tempdir().unwrap();
    let sap = FakeSap::new(Ok(Some(false)));
    let write = unit("c_w", 1, &[CREATE], CommitPolicy::None);
    crashed_mid_unit(&dir, &write, false, &[]).await;
    let (runner, store) = agent(&sap, dir.path());
    runner.submit(unit("c_w", 2, &[CREATE], CommitPolicy::None));
    let ready = next_outcome(&store).await;
    assert_eq!(unknown_key(&ready.outcome), "OUTCOME_UNKNOWN");
    assert!(sap.calls().is_empty());
    assert_eq!(*sap.tids_asked.lock().unwrap(), 0, "no TID to ask about");

    // The answer is journaled: the next redelivery gets the same one.
    store.ack("c_w");
    runner.submit(unit("c_w", 3, &[CREATE], CommitPolicy::None));
    assert_eq!(next_outcome(&store).await.outcome, ready.outcome);
}

#[tokio::test]
async fn in_doubt_commit_that_sap_confirms_reports_the_journaled_results() {
    let dir = tempfile::tempdir().unwrap();
    let sap = FakeSap::new(Ok(Some(true)));
    let tx = unit("c_tx", 1, &[CREATE, CREATE], CommitPolicy::CommitOnSuccess);
    let mut journaled = Parameters::new();
    journaled.insert("CUSTOMERNO".into(), "0000100001".into());
    let results = [CallResult::Ok(journaled.clone()), CallResult::Ok(journaled)];
    crashed_mid_unit(&dir, &tx, false, &results).await;
    let (runner, store) = agent(&sap, dir.path());
    runner.submit(unit(
        "c_tx",
        2,
        &[CREATE, CREATE],
        CommitPolicy::CommitOnSuccess,
    ));
    let ready = next_outcome(&store).await;
    let Outcome::Completed {
        results: reported,
        transaction: Some(transaction),
    } = ready.outcome
    else {
        panic!("{:?}", ready.outcome)
    };
    assert_eq!(reported, results);
    assert!(transaction.committed);
    assert!(
        transaction
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("TID c_tx committed, recovered"),
        "{transaction:?}"
    );
    assert!(sap.calls().is_empty(), "SAP is asked, not called");
}

#[tokio::test]
async fn in_doubt_commit_that_sap_never_saw_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let sap = FakeSap::new(Ok(Some(false)));
    let tx = unit("c_tx", 1, &[CREATE], CommitPolicy::CommitOnSuccess);
    crashed_mid_unit(&dir, &tx, false, &[]).await;
    let (runner, store) = agent(&sap, dir.path());
    runner.submit(unit("c_tx", 2, &[CREATE], CommitPolicy::CommitOnSuccess));
    let ready = next_outcome(&store).await;
    let Outcome::Completed {
        transaction: Some(transaction),
        ..
    } = &ready.outcome
    else {
        panic!("{:?}", ready.outcome)
    };
    assert!(transaction.committed);
    assert_eq!(sap.calls(), [CREATE, "COMMIT:c_tx"]);
}

#[tokio::test]
async fn in_doubt_commit_without_a_tid_answer_is_outcome_unknown() {
    for tid in [Ok(None), Err(())] {
        let dir = tempfile::tempdir().unwrap();
        let sap = FakeSap::new(tid);
        let tx = unit("c_tx", 1, &[CREATE], CommitPolicy::CommitOnSuccess);
        crashed_mid_unit(&dir, &tx, false, &[]).await;
        let (runner, store) = agent(&sap, dir.path());
        runner.submit(unit("c_tx", 2, &[CREATE], CommitPolicy::CommitOnSuccess));
        let ready = next_outcome(&store).await;
        assert_eq!(unknown_key(&ready.outcome), "OUTCOME_UNKNOWN", "{tid:?}");
        let Outcome::Failed { error } = &ready.outcome else {
            unreachable!()
        };
        assert!(error.message.contains("may or may not have run"), "{error}");
        assert!(error.message.contains("check in SAP"), "{error}");
        assert!(sap.calls().is_empty(), "{tid:?}: never a second execution");
        assert_eq!(*sap.tids_asked.lock().unwrap(), 1);
    }
}

#[tokio::test]
async fn an_agent_stopped_mid_commit_recovers_the_results_it_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let mut sap = FakeSap::new(Ok(Some(true)));
    let gate = Arc::new(Semaphore::new(0));
    sap.commit_gate = Some(gate.clone());
    let (runner, store) = agent(&sap, dir.path());
    runner.submit(unit(
        "c_tx",
        1,
        &[CREATE, "BAPI_CUSTOMER_CHANGEFROMDATA1"],
        CommitPolicy::CommitOnSuccess,
    ));
    while sap.calls().len() < 3 {
        tokio::task::yield_now().await;
    }
    assert_eq!(runner.finish(Duration::ZERO).await, 1, "stopped mid-commit");
    assert!(store.take_unsent().is_empty());
    drop((runner, store));

    let log_before = sap.calls();
    let (runner, store) = agent(&sap, dir.path());
    runner.submit(unit(
        "c_tx",
        2,
        &[CREATE, "BAPI_CUSTOMER_CHANGEFROMDATA1"],
        CommitPolicy::CommitOnSuccess,
    ));
    let ready = next_outcome(&store).await;
    let Outcome::Completed {
        results,
        transaction: Some(transaction),
    } = ready.outcome
    else {
        panic!("{:?}", ready.outcome)
    };
    assert!(transaction.committed);
    assert_eq!(
        results.len(),
        2,
        "both results were journaled before the commit"
    );
    assert!(
        matches!(&results[1], CallResult::Ok(out) if out["N"] == 2),
        "{results:?}"
    );
    assert_eq!(sap.calls(), log_before, "SAP is not called again");
}

#[tokio::test]
async fn a_read_only_unit_skips_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let sap = FakeSap::new(Ok(None));
    let (runner, store) = agent(&sap, dir.path());
    let read = unit("c_read", 1, &["RFC_READ_TABLE"], CommitPolicy::None);
    runner.submit(read.clone());
    let ready = next_outcome(&store).await;
    assert!(matches!(ready.outcome, Outcome::Completed { .. }));
    store.journal().flush().await.unwrap();
    assert!(
        store.journal().lookup("c_read").await.unwrap().is_none(),
        "a read-only unit leaves nothing in the journal"
    );
    // Held until the ack like any outcome; a redelivery before it resends it.
    runner.submit(Unit { attempt: 2, ..read });
    assert_eq!(next_outcome(&store).await.attempt, 2);
    assert_eq!(sap.calls().len(), 1, "SAP ran it once");
    assert!(store.ack("c_read"));
    assert_eq!(store.unacked(), 0);
}

#[tokio::test]
async fn an_unreadable_journal_row_is_outcome_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let sap = FakeSap::new(Ok(Some(false)));
    let (runner, store) = agent(&sap, dir.path());
    rusqlite::Connection::open(dir.path().join(JOURNAL_FILE))
        .unwrap()
        .execute(
            "INSERT INTO calls VALUES ('c_bad', 1, 'SIM', 'oops', 'none', 0, 1, NULL, NULL, NULL)",
            [],
        )
        .unwrap();
    runner.submit(unit("c_bad", 2, &[CREATE], CommitPolicy::None));
    let ready = next_outcome(&store).await;
    assert_eq!(unknown_key(&ready.outcome), "JOURNAL_UNREADABLE");
    let Outcome::Failed { error } = &ready.outcome else {
        unreachable!()
    };
    assert!(error.message.contains("functions"), "{error}");
    assert!(sap.calls().is_empty());
}

#[tokio::test]
async fn a_redelivery_unknown_to_the_journal_asks_sap_before_running_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let sap = FakeSap::new(Ok(Some(true)));
    let (runner, store) = agent(&sap, dir.path());
    // First deliveries run without asking; a redelivery that ran elsewhere does not.
    runner.submit(unit("c_new", 1, &[CREATE], CommitPolicy::CommitOnSuccess));
    next_outcome(&store).await;
    assert_eq!(*sap.tids_asked.lock().unwrap(), 0);
    runner.submit(unit(
        "c_elsewhere",
        3,
        &[CREATE],
        CommitPolicy::CommitOnSuccess,
    ));
    let ready = next_outcome(&store).await;
    let Outcome::Completed {
        results,
        transaction: Some(transaction),
    } = ready.outcome
    else {
        panic!("{:?}", ready.outcome)
    };
    assert!(
        transaction.committed && results.is_empty(),
        "{transaction:?}"
    );
    assert_eq!(sap.calls(), [CREATE, "COMMIT:c_new"], "not run again");

    let dir = tempfile::tempdir().unwrap();
    let sap = FakeSap::new(Ok(Some(false)));
    let (runner, store) = agent(&sap, dir.path());
    runner.submit(unit("c_lost", 2, &[CREATE], CommitPolicy::CommitOnSuccess));
    next_outcome(&store).await;
    assert_eq!(
        sap.calls(),
        [CREATE, "COMMIT:c_lost"],
        "never committed: runs"
    );
}

/// A unit the relay marks in doubt (an earlier attempt went to another agent) and
/// this journal has never seen: the in-doubt rules decide, as if this agent had
/// seen it start, so another agent's run is never repeated here.
#[tokio::test]
async fn a_unit_in_doubt_elsewhere_follows_the_in_doubt_rules() {
    let in_doubt = |id: &str, functions: &[&str], commit| Unit {
        in_doubt: true,
        ..unit(id, 2, functions, commit)
    };
    // A write without a commit: never run, whatever SAP says of TIDs.
    let dir = tempfile::tempdir().unwrap();
    let sap = FakeSap::new(Ok(Some(false)));
    let (runner, store) = agent(&sap, dir.path());
    runner.submit(in_doubt("c_w", &[CREATE], CommitPolicy::None));
    let ready = next_outcome(&store).await;
    assert_eq!(unknown_key(&ready.outcome), "OUTCOME_UNKNOWN");
    let Outcome::Failed { error } = &ready.outcome else {
        unreachable!()
    };
    assert!(error.message.contains("another agent"), "{error}");
    assert!(sap.calls().is_empty());

    // A read runs: running it twice changes nothing.
    runner.submit(in_doubt("c_r", &["RFC_READ_TABLE"], CommitPolicy::None));
    assert!(matches!(
        next_outcome(&store).await.outcome,
        Outcome::Completed { .. }
    ));
    assert_eq!(sap.calls(), ["RFC_READ_TABLE"]);

    // A transaction SAP says committed: answered committed, not run.
    let dir = tempfile::tempdir().unwrap();
    let sap = FakeSap::new(Ok(Some(true)));
    let (runner, store) = agent(&sap, dir.path());
    runner.submit(in_doubt("c_tx", &[CREATE], CommitPolicy::CommitOnSuccess));
    let ready = next_outcome(&store).await;
    assert!(
        matches!(&ready.outcome, Outcome::Completed { transaction: Some(t), .. } if t.committed),
        "{ready:?}"
    );
    assert!(sap.calls().is_empty());

    // A transaction on a system that keeps no TIDs: OUTCOME_UNKNOWN, not run.
    let dir = tempfile::tempdir().unwrap();
    let sap = FakeSap::new(Ok(None));
    let (runner, store) = agent(&sap, dir.path());
    runner.submit(in_doubt("c_tx", &[CREATE], CommitPolicy::CommitOnSuccess));
    assert_eq!(
        unknown_key(&next_outcome(&store).await.outcome),
        "OUTCOME_UNKNOWN"
    );
    assert!(sap.calls().is_empty());

    // A transaction SAP says never committed: it runs (its commit carries the TID).
    let dir = tempfile::tempdir().unwrap();
    let sap = FakeSap::new(Ok(Some(false)));
    let (runner, store) = agent(&sap, dir.path());
    runner.submit(in_doubt("c_tx", &[CREATE], CommitPolicy::CommitOnSuccess));
    assert!(matches!(
        next_outcome(&store).await.outcome,
        Outcome::Completed { .. }
    ));
    assert_eq!(sap.calls(), [CREATE.to_owned(), "COMMIT:c_tx".to_owned()]);
}

/// A unit whose task panics (a bug) is reported OUTCOME_UNKNOWN instead of staying
/// "running" for ever: its slot comes back, and a redelivery gets the same
/// journaled answer without calling SAP again.
#[tokio::test]
async fn a_unit_whose_task_panics_ends_outcome_unknown_and_frees_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let sap = FakeSap::new(Ok(None));
    let (runner, store) = agent(&sap, dir.path());
    runner.submit(unit("c_p", 1, &[PANICS], CommitPolicy::None));
    let ready = next_outcome(&store).await;
    assert_eq!(unknown_key(&ready.outcome), "AGENT_INTERNAL_ERROR");
    assert_eq!(store.running(), 0, "not running any more");
    store.ack("c_p");
    runner.submit(unit("c_p", 2, &[PANICS], CommitPolicy::None));
    assert_eq!(next_outcome(&store).await.outcome, ready.outcome);
    assert_eq!(sap.calls(), [PANICS], "SAP was not called again");
    // The agent still runs other units (the runner has 4 slots; run 5).
    for i in 0..5 {
        runner.submit(unit(&format!("c_{i}"), 1, &[CREATE], CommitPolicy::None));
        assert!(matches!(
            next_outcome(&store).await.outcome,
            Outcome::Completed { .. }
        ));
    }
}
