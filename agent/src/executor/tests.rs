//! Unit execution against a fake SAP connection: checks, plain units,
//! transactions (commit, rollback, dry run) and RETURN parsing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sapbridge_sap::SapSystem;
use serde_json::json;

use super::*;
use crate::allowlist::Allowlist;
use crate::test_units::unit;

/// A fake SAP system: answers from a script by function name and records calls.
#[derive(Default)]
struct FakeSap {
    log: Arc<Mutex<Vec<String>>>,
    tids: Arc<Mutex<Vec<String>>>,
    connects: Arc<Mutex<usize>>,
    answers: Vec<(&'static str, Result<Value, RfcError>)>,
    refuse_connect: Option<RfcError>,
}

struct FakeSession {
    log: Arc<Mutex<Vec<String>>>,
    tids: Arc<Mutex<Vec<String>>>,
    answers: Vec<(&'static str, Result<Value, RfcError>)>,
}

#[async_trait]
impl SapSystem for FakeSap {
    async fn connect(&self) -> Result<Box<dyn SapConnection>, RfcError> {
        *self.connects.lock().unwrap() += 1;
        if let Some(error) = &self.refuse_connect {
            return Err(error.clone());
        }
        Ok(Box::new(FakeSession {
            log: self.log.clone(),
            tids: self.tids.clone(),
            answers: self.answers.clone(),
        }))
    }
}

#[async_trait]
impl SapConnection for FakeSession {
    async fn call(&mut self, function: &str, _: &Parameters) -> Result<Parameters, RfcError> {
        self.log.lock().unwrap().push(function.to_owned());
        match self.answers.iter().find(|(name, _)| *name == function) {
            Some((_, Ok(Value::Object(map)))) => Ok(map.clone()),
            Some((_, Ok(_))) | None => Ok(Parameters::new()),
            Some((_, Err(error))) => Err(error.clone()),
        }
    }

    async fn commit_with_tid(&mut self, tid: &str) -> Result<Parameters, RfcError> {
        self.tids.lock().unwrap().push(tid.to_owned());
        self.call(COMMIT_FUNCTION, &Parameters::new()).await
    }
}

/// Journal hooks that record what they are told and fail when told to.
#[derive(Default)]
struct Progress {
    events: Mutex<Vec<String>>,
    fail_start: bool,
    fail_call: Option<usize>,
}

impl UnitProgress for Progress {
    async fn starting(&self) -> Result<(), String> {
        self.events.lock().unwrap().push("start".into());
        if self.fail_start {
            return Err("disk full".into());
        }
        Ok(())
    }

    async fn call_done(&self, index: usize, _: &CallResult) -> Result<(), String> {
        self.events.lock().unwrap().push(format!("result {index}"));
        if self.fail_call == Some(index) {
            return Err("disk full".into());
        }
        Ok(())
    }
}

type CallLog = Arc<Mutex<Vec<String>>>;

fn served(fake: FakeSap, allow: &[&str]) -> (ServedSystem, CallLog, Arc<Mutex<usize>>) {
    let log = fake.log.clone();
    let connects = fake.connects.clone();
    let system = ServedSystem {
        agent_id: "agent-1".into(),
        name: "SIM".into(),
        allowlist: Allowlist::parse(allow).unwrap(),
        tables: Allowlist::parse(&["*"]).unwrap(),
        sap: Arc::new(fake),
    };
    (system, log, connects)
}

fn abap_error(key: &str) -> RfcError {
    RfcError::new(
        ErrorGroup::AbapApplicationFailure,
        key,
        format!("{key} raised"),
    )
}

fn failed_group(outcome: &Outcome) -> ErrorGroup {
    match outcome {
        Outcome::Failed { error } => error.group,
        other => panic!("expected Failed, got {other:?}"),
    }
}

fn transaction(outcome: &Outcome) -> (&[CallResult], &TransactionOutcome) {
    match outcome {
        Outcome::Completed {
            results,
            transaction: Some(tx),
        } => (results, tx),
        other => panic!("expected a completed transaction, got {other:?}"),
    }
}

#[tokio::test]
async fn denied_function_never_touches_sap() {
    let (system, log, connects) = served(FakeSap::default(), &["STFC_CONNECTION"]);
    let outcome = execute(
        &unit(&["RFC_READ_TABLE"], CommitPolicy::None),
        Some(&system),
        None,
        &(),
    )
    .await;
    let Outcome::Failed { error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(error.group, ErrorGroup::NotAllowed);
    assert_eq!(error.key, "NOT_ALLOWED");
    assert!(error.message.contains("RFC_READ_TABLE") && error.message.contains("SIM"));
    assert_eq!(*connects.lock().unwrap(), 0);
    assert!(log.lock().unwrap().is_empty());
}

#[tokio::test]
async fn unknown_system_is_not_allowed() {
    let outcome = execute(
        &unit(&["STFC_CONNECTION"], CommitPolicy::None),
        None,
        None,
        &(),
    )
    .await;
    assert_eq!(failed_group(&outcome), ErrorGroup::NotAllowed);
}

#[tokio::test]
async fn expired_unit_never_touches_sap() {
    let (system, _, connects) = served(FakeSap::default(), &["*"]);
    let expired = unit(&["STFC_CONNECTION"], CommitPolicy::None);
    let now = Instant::now();
    let passed = now.checked_sub(Duration::from_millis(5)).unwrap();
    let outcome = execute(&expired, Some(&system), Some(passed), &()).await;
    assert_eq!(failed_group(&outcome), ErrorGroup::Expired);
    assert_eq!(*connects.lock().unwrap(), 0);
    let ahead = now + Duration::from_secs(60);
    let outcome = execute(&expired, Some(&system), Some(ahead), &()).await;
    assert!(matches!(outcome, Outcome::Completed { .. }));
}

#[tokio::test]
async fn connect_failure_is_reported() {
    let refused = RfcError::new(
        ErrorGroup::LogonFailure,
        "RFC_LOGON_FAILURE",
        "bad password",
    );
    let fake = FakeSap {
        refuse_connect: Some(refused.clone()),
        ..Default::default()
    };
    let (system, _, _) = served(fake, &["*"]);
    let outcome = execute(
        &unit(&["STFC_CONNECTION"], CommitPolicy::None),
        Some(&system),
        None,
        &(),
    )
    .await;
    assert_eq!(outcome, Outcome::Failed { error: refused });
}

#[tokio::test]
async fn plain_unit_runs_in_order_and_stops_at_the_first_error() {
    let fake = FakeSap {
        answers: vec![("B", Err(abap_error("BOOM"))), ("A", Ok(json!({"X": 1})))],
        ..Default::default()
    };
    let (system, log, _) = served(fake, &["*"]);
    let outcome = execute(
        &unit(&["A", "B", "C"], CommitPolicy::None),
        Some(&system),
        None,
        &(),
    )
    .await;
    let Outcome::Completed {
        results,
        transaction,
    } = outcome
    else {
        panic!()
    };
    assert_eq!(transaction, None);
    assert_eq!(results.len(), 2);
    assert!(matches!(&results[1], CallResult::Error(e) if e.key == "BOOM"));
    assert_eq!(*log.lock().unwrap(), ["A", "B"]);
}

#[tokio::test]
async fn plain_unit_keeps_return_errors_as_sap_gave_them() {
    let fake = FakeSap {
        answers: vec![("A", Ok(json!({"RETURN": {"TYPE": "E", "MESSAGE": "no"}})))],
        ..Default::default()
    };
    let (system, log, _) = served(fake, &["*"]);
    let outcome = execute(
        &unit(&["A", "B"], CommitPolicy::None),
        Some(&system),
        None,
        &(),
    )
    .await;
    let Outcome::Completed { results, .. } = outcome else {
        panic!()
    };
    assert_eq!(results.len(), 2);
    assert_eq!(*log.lock().unwrap(), ["A", "B"]);
}

#[tokio::test]
async fn successful_transaction_commits_with_wait() {
    let fake = FakeSap {
        answers: vec![(
            "CREATE",
            Ok(json!({"RETURN": [{"TYPE": "S", "MESSAGE": "ok"}]})),
        )],
        ..Default::default()
    };
    let (system, log, _) = served(fake, &["*"]);
    let outcome = execute(
        &unit(&["CREATE", "CHANGE"], CommitPolicy::CommitOnSuccess),
        Some(&system),
        None,
        &(),
    )
    .await;
    let (results, tx) = transaction(&outcome);
    assert_eq!(results.len(), 2);
    assert!(tx.committed);
    assert_eq!(tx.failed_call, None);
    assert_eq!(tx.reason, None);
    assert_eq!(*log.lock().unwrap(), ["CREATE", "CHANGE", COMMIT_FUNCTION]);
}

#[tokio::test]
async fn return_error_rolls_back_and_names_the_call() {
    let fake = FakeSap {
        answers: vec![(
            "CHANGE",
            Ok(json!({"RETURN": [{"TYPE": "S", "MESSAGE": "fine"},
                                 {"TYPE": "E", "MESSAGE": "Customer 42 is locked"}]})),
        )],
        ..Default::default()
    };
    let (system, log, _) = served(fake, &["*"]);
    let outcome = execute(
        &unit(
            &["CREATE", "CHANGE", "NEVER"],
            CommitPolicy::CommitOnSuccess,
        ),
        Some(&system),
        None,
        &(),
    )
    .await;
    let (results, tx) = transaction(&outcome);
    assert_eq!(results.len(), 2);
    assert!(!tx.committed);
    assert_eq!(tx.failed_call, Some(1));
    assert_eq!(tx.reason.as_deref(), Some("Customer 42 is locked"));
    assert_eq!(
        *log.lock().unwrap(),
        ["CREATE", "CHANGE", ROLLBACK_FUNCTION]
    );
}

#[tokio::test]
async fn call_error_rolls_back_with_the_error_message() {
    let fake = FakeSap {
        answers: vec![("CREATE", Err(abap_error("LOCKED")))],
        ..Default::default()
    };
    let (system, log, _) = served(fake, &["*"]);
    let outcome = execute(
        &unit(&["CREATE", "NEVER"], CommitPolicy::CommitOnSuccess),
        Some(&system),
        None,
        &(),
    )
    .await;
    let (_, tx) = transaction(&outcome);
    assert!(!tx.committed);
    assert_eq!(tx.failed_call, Some(0));
    assert_eq!(tx.reason.as_deref(), Some("LOCKED raised"));
    assert_eq!(*log.lock().unwrap(), ["CREATE", ROLLBACK_FUNCTION]);
}

#[tokio::test]
async fn commit_return_error_means_not_committed() {
    let fake = FakeSap {
        answers: vec![(
            COMMIT_FUNCTION,
            Ok(json!({"RETURN": {"TYPE": "A", "MESSAGE": "update task failed"}})),
        )],
        ..Default::default()
    };
    let (system, _, _) = served(fake, &["*"]);
    let outcome = execute(
        &unit(&["CREATE"], CommitPolicy::CommitOnSuccess),
        Some(&system),
        None,
        &(),
    )
    .await;
    let (_, tx) = transaction(&outcome);
    assert!(!tx.committed);
    assert_eq!(tx.failed_call, None);
    assert_eq!(tx.reason.as_deref(), Some("update task failed"));
    assert!(matches!(tx.result, Some(CallResult::Ok(_))));
}

#[tokio::test]
async fn the_commit_carries_the_call_id_as_tid_and_results_are_journaled_first() {
    let fake = FakeSap::default();
    let tids = fake.tids.clone();
    let (system, log, _) = served(fake, &["*"]);
    let progress = Progress::default();
    let outcome = execute(
        &unit(&["CREATE", "CHANGE"], CommitPolicy::CommitOnSuccess),
        Some(&system),
        None,
        &progress,
    )
    .await;
    assert!(transaction(&outcome).1.committed);
    assert_eq!(*tids.lock().unwrap(), ["c_1"]);
    assert_eq!(*log.lock().unwrap(), ["CREATE", "CHANGE", COMMIT_FUNCTION]);
    assert_eq!(
        *progress.events.lock().unwrap(),
        ["start", "result 0", "result 1"]
    );
}

#[tokio::test]
async fn plain_units_journal_only_their_start() {
    let (system, _, _) = served(FakeSap::default(), &["*"]);
    let progress = Progress::default();
    execute(
        &unit(&["A", "B"], CommitPolicy::None),
        Some(&system),
        None,
        &progress,
    )
    .await;
    assert_eq!(*progress.events.lock().unwrap(), ["start"]);
}

#[tokio::test]
async fn a_journal_that_cannot_record_the_start_keeps_sap_untouched() {
    let (system, log, connects) = served(FakeSap::default(), &["*"]);
    let progress = Progress {
        fail_start: true,
        ..Default::default()
    };
    let outcome = execute(
        &unit(&["CREATE"], CommitPolicy::CommitOnSuccess),
        Some(&system),
        None,
        &progress,
    )
    .await;
    let Outcome::Failed { error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(error.key, "JOURNAL_UNAVAILABLE");
    assert!(error.message.contains("disk full"), "{error}");
    assert!(log.lock().unwrap().is_empty());
    assert_eq!(*connects.lock().unwrap(), 0);
}

#[tokio::test]
async fn a_journal_that_cannot_record_a_result_rolls_the_unit_back() {
    let (system, log, _) = served(FakeSap::default(), &["*"]);
    let progress = Progress {
        fail_call: Some(0),
        ..Default::default()
    };
    let outcome = execute(
        &unit(&["CREATE", "NEVER"], CommitPolicy::CommitOnSuccess),
        Some(&system),
        None,
        &progress,
    )
    .await;
    let (results, tx) = transaction(&outcome);
    assert_eq!(results.len(), 1);
    assert!(!tx.committed);
    assert_eq!(tx.failed_call, Some(0));
    assert!(
        tx.reason.as_deref().unwrap_or_default().contains("journal"),
        "{tx:?}"
    );
    assert_eq!(*log.lock().unwrap(), ["CREATE", ROLLBACK_FUNCTION]);
}

#[tokio::test]
async fn rollback_policy_always_rolls_back() {
    let (system, log, _) = served(FakeSap::default(), &["*"]);
    let outcome = execute(
        &unit(&["CREATE"], CommitPolicy::Rollback),
        Some(&system),
        None,
        &(),
    )
    .await;
    let (results, tx) = transaction(&outcome);
    assert_eq!(results.len(), 1);
    assert!(!tx.committed);
    assert_eq!(tx.failed_call, None);
    assert_eq!(*log.lock().unwrap(), ["CREATE", ROLLBACK_FUNCTION]);
}

#[tokio::test]
async fn transaction_needs_commit_and_rollback_allowed() {
    let (system, _, connects) = served(FakeSap::default(), &["CREATE"]);
    let outcome = execute(
        &unit(&["CREATE"], CommitPolicy::CommitOnSuccess),
        Some(&system),
        None,
        &(),
    )
    .await;
    assert_eq!(failed_group(&outcome), ErrorGroup::NotAllowed);
    assert_eq!(*connects.lock().unwrap(), 0);
}

#[test]
fn return_error_reads_structures_and_tables() {
    let params = |v: Value| v.as_object().unwrap().clone();
    assert_eq!(
        return_error(&params(json!({"RETURN": {"TYPE": "", "MESSAGE": ""}}))),
        None
    );
    assert_eq!(return_error(&params(json!({"RETURN": []}))), None);
    assert_eq!(return_error(&params(json!({"OTHER": {"TYPE": "E"}}))), None);
    assert_eq!(
        return_error(&params(json!({"RETURN": {"TYPE": "E", "MESSAGE": "bad"}}))).as_deref(),
        Some("bad")
    );
    assert_eq!(
        return_error(&params(json!({"RETURN": [{"TYPE": "W"}, {"TYPE": "A"}]}))).as_deref(),
        Some("RETURN holds a message of TYPE A")
    );
}

#[tokio::test]
async fn function_searches_answer_only_what_the_allowlist_lets_through() {
    let fake = FakeSap {
        answers: vec![(
            "RFC_FUNCTION_SEARCH",
            Ok(json!({"FUNCTIONS": [
                {"FUNCNAME": "BAPI_CUSTOMER_GETLIST", "STEXT": "Customer: list"},
                {"FUNCNAME": "RFC_READ_TABLE", "STEXT": "Read a table"},
                {"FUNCNAME": "STFC_CONNECTION", "STEXT": "Connection test"},
            ]})),
        )],
        ..FakeSap::default()
    };
    let (system, _, _) = served(
        fake,
        &["RFC_FUNCTION_SEARCH", "BAPI_CUSTOMER_*", "STFC_CONNECTION"],
    );
    let outcome = execute(
        &unit(&["RFC_FUNCTION_SEARCH"], CommitPolicy::None),
        Some(&system),
        None,
        &(),
    )
    .await;
    let Outcome::Completed { results, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    let Some(CallResult::Ok(output)) = results.first() else {
        panic!("{outcome:?}")
    };
    let names: Vec<&str> = output["FUNCTIONS"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|row| row["FUNCNAME"].as_str())
        .collect();
    assert_eq!(names, ["BAPI_CUSTOMER_GETLIST", "STFC_CONNECTION"]);

    // The search itself needs the allowlist's permission.
    let (system, log, _) = served(FakeSap::default(), &["BAPI_CUSTOMER_*"]);
    let outcome = execute(
        &unit(&["RFC_FUNCTION_SEARCH"], CommitPolicy::None),
        Some(&system),
        None,
        &(),
    )
    .await;
    assert_eq!(failed_group(&outcome), ErrorGroup::NotAllowed);
    assert!(log.lock().unwrap().is_empty());
}
