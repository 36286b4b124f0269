//! Restart tests of the SQLite store: a store that vanished without closing (a child
//! process killed with SIGKILL) or was closed leaves a file from which a new store
//! recovers every call; a second store on a file in use is refused. Recovery: every call: leased ones are queued again with their attempt
//! counted, queued ones are claimable, finished ones readable, idempotency keys
//! enforced. (The behaviour tests shared with the memory store are in
//! `queue/tests.rs`.)

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use time::Duration;

use super::super::config::Durability;
use super::super::contract::{by, keyed, later, new_call, ok, retention};
use super::super::{ActionStep, CallKind, CallState, Enqueued, Queue, QueueError, QueueStats};
use super::{SqliteOptions, SqliteQueue, ops};

/// Names the file a [`kill_child`] run works on; unset, that test does nothing.
const CHILD_ENV: &str = "SAPBRIDGE_QUEUE_KILL_CHILD_DB";
/// The line the child prints once its changes are committed.
const READY: &str = "SAPBRIDGE-CHILD-READY";

fn open(path: &Path) -> SqliteQueue {
    SqliteQueue::open(path, SqliteOptions::new(Durability::ProcessCrash)).expect("open")
}

/// Enqueues `count` calls (`c00`, `c01`, … plus `k` with an idempotency key), leases
/// the first five to `s1` and completes `c00`.
async fn fill(q: &dyn Queue, count: usize) {
    for i in 0..count {
        q.enqueue(new_call(&format!("c{i:02}"), "PRD", Duration::hours(1)))
            .await
            .unwrap();
    }
    q.enqueue(keyed("k", "key-1", "f1")).await.unwrap();
    let units = q
        .claim(&["PRD".to_owned()], by("s1", "A"), 5, later())
        .await
        .unwrap();
    assert_eq!(units.len(), 5);
    q.complete("c00", 1, "s1", "agent", ok()).await.unwrap();
}

/// What a new store must find after [`fill`] and a crash.
async fn check_recovered(q: &dyn Queue, count: usize) {
    let units = q
        .claim(&["PRD".to_owned()], by("s2", "A"), 1000, later())
        .await
        .unwrap();
    let ids: Vec<&str> = units.iter().map(|u| u.call_id.as_str()).collect();
    let mut expected: Vec<String> = (1..count).map(|i| format!("c{i:02}")).collect();
    expected.push("k".into());
    assert_eq!(ids, expected);
    for unit in &units {
        let leased_before = ["c01", "c02", "c03", "c04"].contains(&unit.call_id.as_str());
        let attempt = if leased_before { 2 } else { 1 };
        assert_eq!(unit.attempt, attempt, "{}", unit.call_id);
    }
    let done = q.get("c00").await.unwrap().expect("finished call kept");
    assert_eq!(done.state, CallState::Succeeded);
    assert_eq!(done.outcome, Some(ok()));
    assert!(matches!(
        q.enqueue(keyed("k2", "key-1", "f1")).await.unwrap(),
        Enqueued::Existing(r) if r.id == "k"
    ));
    assert!(matches!(
        q.enqueue(keyed("k3", "key-1", "other")).await.unwrap(),
        Enqueued::KeyMismatch
    ));
}

/// The final-state counts kept in memory are what a scan of the file finds: the
/// store reopened on the file counts them afresh.
#[tokio::test]
async fn final_counts_match_the_file_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let q = open(&path);
    fill(&q, 10).await;
    q.complete("c01", 1, "s1", "agent", ok()).await.unwrap();
    q.cancel("c07").await.unwrap();
    q.enqueue(new_call("late", "PRD", Duration::seconds(-1)))
        .await
        .unwrap();
    q.reap(time::OffsetDateTime::now_utc(), retention(1))
        .await
        .unwrap();
    let before = q.stats().await.unwrap();
    assert_eq!(
        (before.succeeded, before.expired, before.cancelled),
        (2, 1, 1)
    );
    drop(q);
    let again = open(&path);
    let after = again.stats().await.unwrap();
    // Leased calls are queued again on open: only the final counts compare.
    let finals = |s: QueueStats| QueueStats {
        queued: 0,
        leased: 0,
        ..s
    };
    assert_eq!(finals(after), finals(before));
}

#[tokio::test]
async fn a_second_store_on_a_file_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let first = open(&path);
    fill(&first, 10).await;
    // Two relays on one file would lease the same calls twice: refused, clearly.
    let Err(error) = SqliteQueue::open(&path, SqliteOptions::new(Durability::ProcessCrash)) else {
        panic!("a second store on the same file must be refused");
    };
    assert!(
        error.to_string().contains("in use by another relay"),
        "{error}"
    );
    // Once the first is gone the file opens again with every call.
    drop(first);
    let second = open(&path);
    check_recovered(&second, 10).await;
}

#[tokio::test]
async fn a_cleanly_closed_store_reopens_with_its_calls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let first = open(&path);
    fill(&first, 10).await;
    drop(first);
    let second = open(&path);
    check_recovered(&second, 10).await;
    drop(second);
    // And a third time: the second store's leases are queued again, nothing lost.
    let third = open(&path);
    let stats = third.stats().await.unwrap();
    assert_eq!((stats.queued, stats.leased, stats.succeeded), (10, 0, 1));
}

/// A call stored by a relay from before action steps were versioned reads back
/// with its step as that relay wrote it (version 0), for its action to decode.
#[tokio::test]
async fn a_step_stored_before_versions_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let store = open(&path);
    store
        .enqueue(new_call("a", "PRD", Duration::hours(1)))
        .await
        .unwrap();
    drop(store);
    let written = r#"{"action":{"customer_get":{"customer":"0000001000"}}}"#;
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("UPDATE calls SET kind = ?1 WHERE id = 'a'", [written])
        .unwrap();
    drop(conn);
    let store = open(&path);
    let record = store.get("a").await.unwrap().expect("stored");
    let step = ActionStep {
        action: "customer_get".into(),
        version: 0,
        data: serde_json::json!({"customer": "0000001000"}),
    };
    assert_eq!(record.kind, CallKind::Action(step));
}

#[tokio::test]
async fn survives_sigkill_of_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "queue::sqlite::tests::kill_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let ready = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains(READY))
    });
    let ready = tokio::time::timeout(std::time::Duration::from_secs(60), ready).await;
    // SIGKILL: no destructor, no checkpoint, no close.
    child.kill().expect("kill child");
    child.wait().expect("reap child");
    assert!(matches!(ready, Ok(Ok(true))), "child never got ready");
    let recovered = open(&path);
    check_recovered(&recovered, 30).await;
}

/// The child of [`survives_sigkill_of_the_process`]: fills the file, says so, and
/// waits to be killed.
#[tokio::test]
#[ignore = "run by survives_sigkill_of_the_process as a child process"]
async fn kill_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let q = open(Path::new(&path));
    fill(&q, 30).await;
    println!("{READY}");
    tokio::time::sleep(std::time::Duration::from_secs(120)).await;
}

#[test]
fn a_file_of_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    drop(open(&path));
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = SqliteQueue::open(&path, SqliteOptions::new(Durability::PowerLoss)).unwrap_err();
    assert!(err.to_string().contains("schema version 99"), "{err}");
}

#[test]
fn a_file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    let err = SqliteQueue::open(&path, SqliteOptions::new(Durability::ProcessCrash)).unwrap_err();
    assert!(err.to_string().contains("relay.db"), "{err}");
}

#[test]
fn every_hot_statement_uses_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    drop(open(&path));
    let conn = rusqlite::Connection::open(&path).unwrap();
    let list = format!("SELECT id FROM calls {}", super::rows::LIST_WHERE);
    let expected = [
        (list.as_str(), "calls_submitted"),
        (ops::CLAIM_CANDIDATES, "calls_queued_by_system"),
        (ops::RELEASE, "calls_leased_session"),
        // Few calls are leased at a time (at most every session's credits).
        (ops::REQUEUE_LAPSED, "calls_leased_session"),
        (ops::OVERDUE, "calls_queued_expiry"),
        (ops::FORGET_KEYS, "idempotency_keys_created"),
        (ops::PURGE, "calls_completed_at"),
    ];
    for (sql, index) in expected {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let mut rows = stmt.raw_query();
        let mut plan = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            plan.push(row.get::<_, String>(3).unwrap());
        }
        let plan = plan.join("\n");
        assert!(plan.contains(index), "{sql}\n{plan}");
        assert!(
            !plan.contains("SCAN calls\n") && !plan.ends_with("SCAN calls"),
            "{sql}\n{plan}"
        );
    }
}

/// The version 1 layout, as relays before schema version 2 wrote it.
const SCHEMA_V1: &str = "
CREATE TABLE calls (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, system TEXT NOT NULL,
    kind TEXT NOT NULL, calls TEXT NOT NULL, commit_policy TEXT NOT NULL, state TEXT NOT NULL,
    lease_session TEXT, lease_until INTEGER, attempts INTEGER NOT NULL DEFAULT 0,
    submitted_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, completed_at INTEGER,
    agent TEXT, outcome TEXT, idem_scope TEXT, idem_key TEXT, idem_fingerprint TEXT
);
CREATE INDEX calls_by_state ON calls (state, seq);
CREATE INDEX calls_queued_expiry ON calls (expires_at) WHERE state = 'queued';
CREATE INDEX calls_leased_session ON calls (lease_session, lease_until) WHERE state = 'leased';
CREATE INDEX calls_completed ON calls (completed_at) WHERE completed_at IS NOT NULL;
CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL, call_id TEXT NOT NULL,
    created_at INTEGER NOT NULL, PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_call ON idempotency_keys (call_id);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
PRAGMA user_version = 1;
";

#[tokio::test]
async fn a_version_1_file_is_migrated_with_its_calls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(SCHEMA_V1).unwrap();
    let far = 4_000_000_000_000_000_000_i64;
    conn.execute(
        "INSERT INTO calls (id, system, kind, calls, commit_policy, state, attempts,
             submitted_at, expires_at, completed_at, agent, outcome)
         VALUES ('done', 'PRD', '\"function\"', '[]', 'none', 'succeeded', 1, 1, ?1, 2, 'a',
                 '{\"status\":\"failed\",\"error\":{\"group\":\"EXPIRED\",\"key\":\"K\",\"message\":\"m\"}}'),
                ('open', 'PRD', '\"function\"', '[]', 'none', 'queued', 0, 1, ?1, NULL, NULL, NULL)",
        [far],
    )
    .unwrap();
    drop(conn);

    let q = open(&path);
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.queued, stats.succeeded), (1, 1), "{stats:?}");
    assert_eq!(
        q.get("done").await.unwrap().unwrap().state,
        CallState::Succeeded
    );
    let units = q
        .claim(&["PRD".to_owned()], by("s", "A"), 10, later())
        .await
        .unwrap();
    assert_eq!(units.len(), 1);
    assert_eq!(units[0].call_id, "open");
    drop(q);

    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, super::schema::SCHEMA_VERSION);
    let indexes: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'calls' ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        indexes.contains(&"calls_queued_by_system".to_owned()),
        "{indexes:?}"
    );
    assert!(
        indexes.contains(&"calls_completed_at".to_owned()),
        "{indexes:?}"
    );
    assert!(
        indexes.contains(&"calls_submitted".to_owned()),
        "{indexes:?}"
    );
    assert!(
        !indexes.contains(&"calls_by_state".to_owned()),
        "{indexes:?}"
    );
    assert!(
        !indexes.contains(&"calls_completed".to_owned()),
        "{indexes:?}"
    );
}

/// The version 2 layout (the calls table without `owner`), as relays before schema
/// version 3 wrote it; only what the migration touches.
const SCHEMA_V2: &str = "
CREATE TABLE calls (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, system TEXT NOT NULL,
    kind TEXT NOT NULL, calls TEXT NOT NULL, commit_policy TEXT NOT NULL, state TEXT NOT NULL,
    lease_session TEXT, lease_until INTEGER, attempts INTEGER NOT NULL DEFAULT 0,
    submitted_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, completed_at INTEGER,
    agent TEXT, outcome TEXT, idem_scope TEXT, idem_key TEXT, idem_fingerprint TEXT
);
CREATE INDEX calls_queued_by_system ON calls (system, seq) WHERE state = 'queued';
CREATE INDEX calls_queued_expiry ON calls (expires_at) WHERE state = 'queued';
CREATE INDEX calls_leased_session ON calls (lease_session, lease_until) WHERE state = 'leased';
CREATE INDEX calls_completed_at ON calls (completed_at) WHERE completed_at > 0;
CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL, call_id TEXT NOT NULL,
    created_at INTEGER NOT NULL, PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_call ON idempotency_keys (call_id);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
PRAGMA user_version = 2;
";

#[tokio::test]
async fn a_version_2_file_gets_owners_where_they_are_known() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(SCHEMA_V2).unwrap();
    let far = 4_000_000_000_000_000_000_i64;
    conn.execute(
        "INSERT INTO calls (id, system, kind, calls, commit_policy, state, attempts,
             submitted_at, expires_at, idem_scope, idem_key, idem_fingerprint)
         VALUES ('keyed', 'PRD', '\"function\"', '[]', 'none', 'queued', 0, 1, ?1,
                 'flow', 'k1', 'f1'),
                ('plain', 'PRD', '\"function\"', '[]', 'none', 'queued', 0, 1, ?1,
                 NULL, NULL, NULL)",
        [far],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO idempotency_keys VALUES ('flow', 'k1', 'f1', 'keyed', 1)",
        [],
    )
    .unwrap();
    drop(conn);

    let q = open(&path);
    let keyed_call = q.get("keyed").await.unwrap().unwrap();
    assert_eq!(keyed_call.owner.as_deref(), Some("flow"));
    assert_eq!(q.get("plain").await.unwrap().unwrap().owner, None);
    // The key still names its call.
    assert!(matches!(
        q.enqueue(keyed("again", "k1", "f1")).await.unwrap(),
        Enqueued::Existing(r) if r.id == "keyed"
    ));
    drop(q);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, super::schema::SCHEMA_VERSION);
}

/// SQLite prepares a statement again on every run once a plan-relevant variable is
/// rebound (a bound `LIMIT`, a variable compared against a partial index's
/// `IS NOT NULL`): the hot statements must have none.
#[test]
fn hot_statements_are_not_prepared_again_on_each_run() {
    use rusqlite::StatementStatus;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    drop(open(&path));
    let conn = rusqlite::Connection::open(&path).unwrap();
    for sql in [ops::CLAIM_CANDIDATES, ops::LEASE, ops::RELEASE] {
        let mut stmt = conn.prepare(sql).unwrap();
        let params = stmt.parameter_count();
        for round in 0..3 {
            for index in 1..=params {
                stmt.raw_bind_parameter(index, round).unwrap();
            }
            let mut rows = stmt.raw_query();
            while rows.next().unwrap().is_some() {}
        }
        assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0, "{sql}");
    }
}

/// SQLite starts the WAL over only when a write begins after a checkpoint copied
/// every frame: a writer that kept committing while the checkpoint thread worked
/// grew it without end. With the writer waiting for a checkpoint once the WAL is
/// past its limit, the file stops growing near that limit.
#[tokio::test]
async fn the_wal_starts_over_under_continuous_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let q = open(&path);
    let wal = dir.path().join("relay.db-wal");
    let limit = super::checkpoint::WAIT_ABOVE_WAL_FRAMES;
    // A frame is a 4 KiB page and its 24-byte header.
    let frame_bytes = 4096 + 24;
    // Sequential enqueues, one commit of at least one frame each: three times the
    // limit's frames, which a WAL that never starts over would hold.
    for n in 0..3 * limit {
        q.enqueue(new_call(&format!("c{n}"), "PRD", Duration::hours(1)))
            .await
            .unwrap();
    }
    let frames = i64::try_from(std::fs::metadata(&wal).unwrap().len()).unwrap() / frame_bytes;
    assert!(
        frames < 2 * limit,
        "the WAL grew to {frames} frames (the writer waits from {limit})"
    );
}

/// A store at its size cap refuses changes as `Full` (nothing half-written: the
/// calls before are intact), says so in `ping`, counts the refusals, and takes
/// changes again once pages are free, found by `ping`'s probe without any other
/// write.
#[tokio::test]
async fn a_full_store_refuses_as_full_and_the_probe_sees_room_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let options = SqliteOptions {
        max_size_mib: Some(1),
        ..SqliteOptions::new(Durability::ProcessCrash)
    };
    let q = SqliteQueue::open(&path, options).unwrap();
    let big = serde_json::Value::from("x".repeat(64 * 1024));
    let mut stored = 0;
    let error = loop {
        let mut call = new_call(&format!("c{stored:03}"), "PRD", Duration::hours(1));
        call.calls[0]
            .parameters
            .insert("REQUTEXT".into(), big.clone());
        match q.enqueue(call).await {
            Ok(_) => stored += 1,
            Err(error) => break error,
        }
        assert!(stored < 64, "a 1 MiB store took {stored} calls of 64 KiB");
    };
    assert!(matches!(error, QueueError::Full(_)), "{error:?}");
    assert!(stored >= 5, "{stored}");
    assert!(matches!(q.ping().await, Err(QueueError::Full(_))));
    assert!(q.full_refusals() >= 1);
    assert_eq!(q.stats().await.unwrap().queued, stored);

    // Another connection frees pages (as a purge would): the probe finds room.
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute("DELETE FROM calls WHERE id < 'c005'", [])
        .unwrap();
    drop(other);
    q.ping().await.expect("room again");
    let mut call = new_call("after", "PRD", Duration::hours(1));
    call.calls[0].parameters.insert("REQUTEXT".into(), big);
    q.enqueue(call).await.expect("stored once there is room");
}
