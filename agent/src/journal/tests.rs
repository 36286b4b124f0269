//! Journal tests on temporary files: records survive a reopen, acks and purges,
//! corrupt rows and unknown schema versions are clear errors, and the group-commit
//! throughput measurement (`#[ignore]`d: run with `--ignored --nocapture`).

use std::sync::Arc;
use std::time::Instant;

use sapbridge_proto::{CallResult, CommitPolicy, ErrorGroup, Outcome, Parameters, RfcError};
use tempfile::TempDir;

use super::*;

/// A journal in a fresh temporary directory (kept alive by the returned guard).
pub(crate) fn temp_journal() -> (Journal, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let journal =
        Journal::open(&dir.path().join(JOURNAL_FILE), JournalSync::Normal).expect("journal");
    (journal, dir)
}

fn header(call_id: &str, commit: CommitPolicy) -> Header {
    Header {
        call_id: call_id.into(),
        attempt: 1,
        system: "SIM".into(),
        functions: vec!["BAPI_CUSTOMER_CREATEFROMDATA1".into()],
        commit,
        read_only: false,
    }
}

fn failed(key: &str) -> Outcome {
    Outcome::Failed {
        error: RfcError::new(ErrorGroup::Expired, key, "late"),
    }
}

fn ok_result(n: u64) -> CallResult {
    let mut out = Parameters::new();
    out.insert("N".into(), n.into());
    CallResult::Ok(out)
}

fn raw(dir: &TempDir) -> Connection {
    Connection::open(dir.path().join(JOURNAL_FILE)).unwrap()
}

#[tokio::test]
async fn records_survive_a_reopen() {
    let (journal, dir) = temp_journal();
    let tx = header("c_tx", CommitPolicy::CommitOnSuccess);
    journal.started(&tx).await.unwrap();
    journal.call_result("c_tx", 0, &ok_result(0)).await.unwrap();
    journal.call_result("c_tx", 1, &ok_result(1)).await.unwrap();
    journal
        .finished(&header("c_done", CommitPolicy::None), &failed("A"))
        .await
        .unwrap();
    drop(journal);

    let journal = Journal::open(&dir.path().join(JOURNAL_FILE), JournalSync::Full).unwrap();
    let entry = journal.lookup("c_tx").await.unwrap().unwrap();
    assert_eq!(entry.header, tx);
    assert!(entry.started_at_ms.is_some());
    assert_eq!(entry.outcome, None, "in doubt");
    assert_eq!(entry.results, [ok_result(0), ok_result(1)]);

    let done = journal.lookup("c_done").await.unwrap().unwrap();
    assert_eq!(done.outcome, Some(failed("A")));
    assert_eq!(done.started_at_ms, None, "SAP was never called");
    assert!(!done.acked);
    assert_eq!(journal.lookup("c_none").await.unwrap(), None);

    let (unacked, bad) = journal.unacked().unwrap();
    assert!(bad.is_empty());
    assert_eq!(unacked.len(), 1);
    assert_eq!(unacked[0].call_id, "c_done");
}

#[tokio::test]
async fn a_new_start_forgets_the_earlier_attempts_results() {
    let (journal, _dir) = temp_journal();
    let mut tx = header("c_tx", CommitPolicy::CommitOnSuccess);
    journal.started(&tx).await.unwrap();
    journal.call_result("c_tx", 0, &ok_result(7)).await.unwrap();
    tx.attempt = 2;
    journal.started(&tx).await.unwrap();
    let entry = journal.lookup("c_tx").await.unwrap().unwrap();
    assert_eq!(entry.header.attempt, 2);
    assert!(entry.results.is_empty());
    journal.finished(&tx, &failed("X")).await.unwrap();
    let entry = journal.lookup("c_tx").await.unwrap().unwrap();
    assert!(entry.started_at_ms.is_some(), "the start is kept");
    assert_eq!(entry.outcome, Some(failed("X")));
}

#[tokio::test]
async fn acks_mark_and_the_sweep_purges_only_old_acked_rows() {
    let (journal, _dir) = temp_journal();
    for id in ["c1", "c2", "c3"] {
        journal
            .finished(&header(id, CommitPolicy::None), &failed(id))
            .await
            .unwrap();
    }
    journal
        .started(&header("c_doubt", CommitPolicy::None))
        .await
        .unwrap();
    journal.acked("c1");
    journal.acked("c2");
    journal.redelivered("c2", 5);
    journal.flush().await.unwrap();
    let c2 = journal.lookup("c2").await.unwrap().unwrap();
    assert!(
        !c2.acked,
        "a redelivery makes the outcome unacknowledged again"
    );
    assert_eq!(c2.header.attempt, 5);
    assert!(journal.lookup("c1").await.unwrap().unwrap().acked);

    assert_eq!(
        journal.purge_acked_before(0).await.unwrap(),
        0,
        "too recent"
    );
    assert_eq!(journal.purge_acked_before(now_ms() + 1).await.unwrap(), 1);
    assert_eq!(journal.lookup("c1").await.unwrap(), None);
    for kept in ["c2", "c3", "c_doubt"] {
        assert!(journal.lookup(kept).await.unwrap().is_some(), "{kept}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_sweep_runs_at_start_and_stops_on_shutdown() {
    let (journal, _dir) = temp_journal();
    journal
        .finished(&header("c1", CommitPolicy::None), &failed("1"))
        .await
        .unwrap();
    journal.acked("c1");
    journal.flush().await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(sweep(
        journal.clone(),
        std::time::Duration::ZERO,
        stop.clone(),
    ));
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while journal.lookup("c1").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the sweep did not purge");
        tokio::task::yield_now().await;
    }
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn corrupt_rows_are_clear_errors() {
    let (journal, dir) = temp_journal();
    let conn = raw(&dir);
    conn.execute_batch(
        "INSERT INTO calls VALUES ('c_json', 1, 'SIM', '[]', 'none', 0, 1, 2, '{not json', NULL);
         INSERT INTO calls VALUES ('c_policy', 1, 'SIM', '[]', 'sometimes', 0, 1, NULL, NULL, NULL);
         INSERT INTO calls VALUES ('c_attempt', -4, 'SIM', '[]', 'none', 0, 1, 2, '{}', NULL);
         INSERT INTO calls VALUES ('c_type', 'one', 'SIM', '[]', 'none', 0, 1, NULL, NULL, NULL);
         INSERT INTO calls VALUES ('c_gap', 1, 'SIM', '[]', 'commit_on_success', 0, 1, NULL, NULL, NULL);
         INSERT INTO call_results VALUES ('c_gap', 1, '{\"ok\":{}}');",
    )
    .unwrap();
    let expect = [
        ("c_json", "outcome"),
        ("c_policy", "commit_policy"),
        ("c_attempt", "attempt"),
        ("c_type", "attempt"),
        ("c_gap", "call_results.idx"),
    ];
    for (call_id, column) in expect {
        let error = journal.lookup(call_id).await.unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(&error, JournalError::Corrupt { column: c, .. } if *c == column),
            "{call_id}: {message}"
        );
        assert!(message.contains(call_id), "{message}");
    }
    let (good, bad) = journal.unacked().unwrap();
    assert!(good.is_empty());
    assert_eq!(bad.len(), 2, "{bad:?}");
}

#[test]
fn unknown_schema_version_and_foreign_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(JOURNAL_FILE);
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let error = Journal::open(&path, JournalSync::Normal).unwrap_err();
    assert!(
        matches!(error, JournalError::Version { found: 99, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("schema version 99"), "{error}");

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, b"this is not a SQLite database, not at all......").unwrap();
    let error = Journal::open(&garbage, JournalSync::Normal).unwrap_err();
    assert!(matches!(error, JournalError::Open { .. }), "{error}");
    assert!(error.to_string().contains("garbage.db"), "{error}");
}

/// Writes `writers * per_writer` records (a start and an outcome each) from
/// concurrent tasks, each awaiting durability; returns records per second.
async fn throughput(sync: JournalSync, max_batch: usize, writers: usize, per_writer: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let journal =
        Journal::open_with_batch(&dir.path().join(JOURNAL_FILE), sync, max_batch).unwrap();
    let journal = Arc::new(journal);
    let began = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let journal = journal.clone();
        tasks.spawn(async move {
            for i in 0..per_writer {
                let header = header(&format!("c_{w}_{i}"), CommitPolicy::None);
                journal.started(&header).await.unwrap();
                journal.finished(&header, &failed("X")).await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    (writers * per_writer * 2) as f64 / began.elapsed().as_secs_f64()
}

/// Group commit against one transaction per record. Prints numbers; asserts none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: cargo test -p sapbridge-agent -- --ignored --nocapture journal_throughput"]
async fn journal_throughput() {
    for sync in [JournalSync::Normal, JournalSync::Full] {
        for writers in [1, 64] {
            let per_writer = 4000 / writers;
            let grouped = throughput(sync, MAX_BATCH, writers, per_writer).await;
            let single = throughput(sync, 1, writers, per_writer).await;
            println!(
                "journal_sync={sync:?} writers={writers}: group commit {grouped:.0} records/s, \
                 one transaction per record {single:.0} records/s ({:.1}x)",
                grouped / single
            );
        }
    }
}
