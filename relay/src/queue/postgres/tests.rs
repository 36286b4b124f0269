//! What the PostgreSQL store does beyond the queue contract: several stores
//! (replicas) on one database, its migrations, and replicas that die.

use std::collections::HashSet;
use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use super::super::contract::{by, later, new_call, ok, retention};
use super::super::{CallState, Queue};
use super::PostgresQueue;
use super::replicas::REPLICA_TIMEOUT;
use super::testdb::TestDatabase;

fn prd() -> Vec<String> {
    vec!["PRD".to_owned()]
}

/// Replicas claiming the same system at once take different calls, and together
/// every call once (`FOR UPDATE SKIP LOCKED`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_claiming_at_once_never_take_one_call_twice() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let a: Arc<dyn Queue> = Arc::new(PostgresQueue::open(db.url()).await.expect("open a"));
    let b: Arc<dyn Queue> = Arc::new(PostgresQueue::open(db.url()).await.expect("open b"));
    const CALLS: usize = 300;
    for i in 0..CALLS {
        let q = if i % 2 == 0 { &a } else { &b };
        q.enqueue(new_call(&format!("c{i:03}"), "PRD", Duration::hours(1)))
            .await
            .expect("enqueue");
    }
    let mut claimers = Vec::new();
    for (n, queue) in [&a, &b, &a, &b].into_iter().enumerate() {
        let queue = Arc::clone(queue);
        claimers.push(tokio::spawn(async move {
            let session = format!("s{n}");
            let mut mine = Vec::new();
            loop {
                let units = queue
                    .claim(&prd(), by(&session, "A"), 7, later())
                    .await
                    .expect("claim");
                if units.is_empty() {
                    return mine;
                }
                mine.extend(units.into_iter().map(|u| u.call_id));
            }
        }));
    }
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.expect("claimer"));
    }
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), all.len(), "a call was leased twice");
    assert_eq!(all.len(), CALLS, "every call once");
}

/// Replicas that start together on an empty database both open it (one
/// migrates, the other waits and finds the schema), and a database migrated by a
/// newer relay is refused.
#[tokio::test]
async fn replicas_starting_together_migrate_once_and_newer_schemas_are_refused() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (a, b) = tokio::join!(PostgresQueue::open(db.url()), PostgresQueue::open(db.url()));
    let (a, _b) = (a.expect("open a"), b.expect("open b"));
    let client = a.client().await.expect("client");
    let versions = client
        .query("SELECT version FROM sapbridge_schema", &[])
        .await
        .expect("schema");
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].get::<_, i32>(0), super::schema::SCHEMA_VERSION);
    client
        .execute("UPDATE sapbridge_schema SET version = version + 1", &[])
        .await
        .expect("bump");
    let refused = PostgresQueue::open(db.url()).await.expect_err("refused");
    assert!(refused.to_string().contains("newer sapbridge"), "{refused}");
}

/// A replica that stops answering (killed) leaves its sessions' leases behind:
/// another replica's reaper returns them once the replica is silent for
/// `REPLICA_TIMEOUT` (its heartbeat is aged by hand here), long before their
/// deadlines, held for the same agent.
#[tokio::test]
async fn a_dead_replicas_leases_return_before_their_deadlines() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let a = PostgresQueue::open(db.url()).await.expect("open a");
    let b = PostgresQueue::open(db.url()).await.expect("open b");
    a.enqueue(new_call("x", "PRD", Duration::hours(1)))
        .await
        .expect("enqueue");
    let until = OffsetDateTime::now_utc() + Duration::hours(1);
    let units = a
        .claim(&prd(), by("s1", "A"), 1, until)
        .await
        .expect("claim");
    assert_eq!(units.len(), 1);
    let now = OffsetDateTime::now_utc();
    // A is alive: nothing moves.
    assert_eq!(b.reap(now, retention(1)).await.expect("reap").requeued, 0);
    drop(a);
    // A's last heartbeat ages past the timeout (on the database's clock).
    let client = b.client().await.expect("client");
    let age = REPLICA_TIMEOUT + Duration::seconds(1);
    let age = i64::try_from(age.whole_nanoseconds()).expect("nanoseconds");
    let aged = client
        .execute(
            "UPDATE sapbridge_replicas SET seen_at = seen_at - $1 WHERE id <> $2",
            &[&age, &b.shared.replica],
        )
        .await
        .expect("age");
    assert_eq!(aged, 1);
    assert_eq!(b.reap(now, retention(1)).await.expect("reap").requeued, 1);
    let record = b.get("x").await.expect("get").expect("stored");
    assert_eq!(record.state, CallState::Queued);
    assert_eq!(record.holder.as_ref().map(|h| h.agent.as_str()), Some("A"));
    // Its agent, reconnected to B, gets it back first, not in doubt.
    assert!(
        b.claim(&prd(), by("s2", "B"), 1, later())
            .await
            .expect("claim")
            .is_empty()
    );
    let units = b
        .claim(&prd(), by("s3", "A"), 1, later())
        .await
        .expect("claim");
    assert_eq!((units[0].attempt, units[0].in_doubt), (2, false));
}

/// A change that fails (here: a call id stored already) fails alone: the changes
/// batched with it are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_change_fails_only_its_caller() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let q: Arc<dyn Queue> = Arc::new(PostgresQueue::open(db.url()).await.expect("open"));
    q.enqueue(new_call("dup", "PRD", Duration::hours(1)))
        .await
        .expect("first");
    let mut tasks = Vec::new();
    for i in 0..40 {
        let q = Arc::clone(&q);
        let id = if i == 20 {
            "dup".to_owned()
        } else {
            format!("c{i}")
        };
        tasks.push(tokio::spawn(async move {
            q.enqueue(new_call(&id, "PRD", Duration::hours(1))).await
        }));
    }
    let mut failed = 0;
    for task in tasks {
        if task.await.expect("task").is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 1);
    assert_eq!(q.stats().await.expect("stats").queued, 40);
}

/// The listening connections of the test database's stores, `(pid, last query)`.
async fn listeners(q: &PostgresQueue) -> Vec<(i32, String)> {
    let client = q.client().await.expect("client");
    client
        .query(
            "SELECT pid, query FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = $1",
            &[&super::listen::APPLICATION_NAME],
        )
        .await
        .expect("pg_stat_activity")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// Waits (bounded) until the work signal of `PRD` fires on `to` after `from`
/// enqueues a call: only a notification carries it across.
async fn work_crosses(from: &PostgresQueue, to: &PostgresQueue, id: &str) {
    let work = to.signals().work("PRD");
    let notified = work.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    from.enqueue(new_call(id, "PRD", Duration::hours(1)))
        .await
        .expect("enqueue");
    tokio::time::timeout(std::time::Duration::from_secs(10), notified)
        .await
        .unwrap_or_else(|_| panic!("the work signal for {id} did not cross"));
}

/// A call submitted on replica A and finished by an agent on replica B wakes its
/// waiters on A (only a notification carries the end across), and the end is
/// committed by the time the notification arrives: it is sent after the commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_end_crosses_replicas_once_committed() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let a = PostgresQueue::open(db.url()).await.expect("open a");
    let b = PostgresQueue::open(db.url()).await.expect("open b");
    a.enqueue(new_call("x", "PRD", Duration::hours(1)))
        .await
        .expect("enqueue");
    let units = b
        .claim(&prd(), by("s", "A"), 1, later())
        .await
        .expect("claim");
    assert_eq!(units.len(), 1);
    let watch = a.signals().watch_call("x");
    let finished = watch.notify().notified();
    tokio::pin!(finished);
    finished.as_mut().enable();
    b.complete("x", 1, "s", "A", ok()).await.expect("complete");
    tokio::time::timeout(std::time::Duration::from_secs(10), finished)
        .await
        .expect("the end of x did not cross to replica a");
    let record = a.get("x").await.expect("get").expect("x");
    assert!(
        matches!(record.state, CallState::Succeeded),
        "{:?}",
        record.state
    );
}

/// The listening connection is replaced when it drops (here: terminated by the
/// server), and wake-ups cross replicas again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_reconnects_when_its_connection_drops() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let a = PostgresQueue::open(db.url()).await.expect("open a");
    let b = PostgresQueue::open(db.url()).await.expect("open b");
    work_crosses(&a, &b, "before").await;
    let before = listeners(&a).await;
    assert_eq!(before.len(), 2, "{before:?}");
    let client = a.client().await.expect("client");
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = $1",
            &[&super::listen::APPLICATION_NAME],
        )
        .await
        .expect("terminate");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let now = listeners(&a).await;
        let fresh = now
            .iter()
            .filter(|(pid, query)| {
                query.starts_with("LISTEN") && before.iter().all(|(old, _)| old != pid)
            })
            .count();
        if fresh == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "listeners: {now:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    work_crosses(&a, &b, "after").await;
}

/// The second stage of a batch is sent with its `COMMIT` in one pipeline: when
/// one of its statements fails (here: a trigger refuses the final-call count),
/// the others of that stage are rolled back with it and the caller gets the
/// error; the outcome is stored once the count works again.
#[tokio::test]
async fn a_statement_failing_next_to_the_pipelined_commit_commits_nothing() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let q = PostgresQueue::open(db.url()).await.expect("open");
    q.enqueue(new_call("a", "PRD", Duration::hours(1)))
        .await
        .expect("enqueue");
    q.claim(&prd(), by("s1", "A"), 1, later())
        .await
        .expect("claim");
    let client = q.client().await.expect("client");
    client
        .batch_execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql
                 AS $$ BEGIN RAISE EXCEPTION 'counting refused'; END $$;
             CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON sapbridge_final_counts
                 FOR EACH ROW EXECUTE FUNCTION refuse();",
        )
        .await
        .expect("trigger");
    let refused = q
        .complete("a", 1, "s1", "A", super::super::contract::ok())
        .await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("counting refused")),
        "{refused:?}"
    );
    let record = q.get("a").await.expect("get").expect("stored");
    assert!(
        matches!(record.state, CallState::Leased { .. }),
        "{:?}",
        record.state
    );
    assert_eq!(record.outcome, None);
    client
        .batch_execute("DROP TRIGGER refuse ON sapbridge_final_counts")
        .await
        .expect("drop trigger");
    let stored = q
        .complete("a", 1, "s1", "A", super::super::contract::ok())
        .await;
    assert_eq!(stored.expect("complete"), super::super::Completion::Stored);
    assert_eq!(q.stats().await.expect("stats").succeeded, 1);
}
