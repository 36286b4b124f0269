//! A throughput comparison of the stores, printed, never asserted (timings depend on
//! the machine). Each configuration runs for [`RUN_FOR`] with `workers` concurrent
//! callers, each looping enqueue → claim → complete on its own system; one loop is
//! one call (three writes).
//!
//! ```sh
//! cargo test -p sapbridge-relay --release queue::throughput -- --ignored --nocapture
//! ```
//!
//! The PostgreSQL store is measured on a database of its own on the test server
//! (see `postgres::testdb`), with the server's `synchronous_commit`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::config::Durability;
use super::contract::{by, later, new_call, ok};
use super::memory::MemoryQueue;
use super::postgres::PostgresQueue;
use super::postgres::testdb::TestDatabase;
use super::sqlite::{SqliteOptions, SqliteQueue};
use super::{Completion, Queue};

/// How long each configuration runs.
const RUN_FOR: Duration = Duration::from_secs(3);

/// One store configuration to measure.
struct Setup {
    name: &'static str,
    durability: Option<Durability>,
    max_batch: usize,
    postgres: bool,
}

const SETUPS: &[Setup] = &[
    Setup {
        name: "memory",
        durability: None,
        max_batch: 0,
        postgres: false,
    },
    Setup {
        name: "sqlite group commit, process-crash",
        durability: Some(Durability::ProcessCrash),
        max_batch: 1024,
        postgres: false,
    },
    Setup {
        name: "sqlite one tx per op, process-crash",
        durability: Some(Durability::ProcessCrash),
        max_batch: 1,
        postgres: false,
    },
    Setup {
        name: "sqlite group commit, power-loss",
        durability: Some(Durability::PowerLoss),
        max_batch: 1024,
        postgres: false,
    },
    Setup {
        name: "sqlite one tx per op, power-loss",
        durability: Some(Durability::PowerLoss),
        max_batch: 1,
        postgres: false,
    },
    Setup {
        name: "postgres group commit (server's sync)",
        durability: None,
        max_batch: 0,
        postgres: true,
    },
];

/// What a store under measurement keeps alive: its directory or its database.
#[derive(Default)]
struct Keep {
    _dir: Option<TempDir>,
    _db: Option<TestDatabase>,
}

/// The store of `setup`; `None` for PostgreSQL without a server.
async fn build(setup: &Setup) -> Option<(Arc<dyn Queue>, Keep)> {
    if setup.postgres {
        let db = TestDatabase::create().await?;
        let queue = PostgresQueue::open(db.url()).await.expect("open");
        return Some((
            Arc::new(queue),
            Keep {
                _db: Some(db),
                ..Keep::default()
            },
        ));
    }
    Some(match setup.durability {
        None => (Arc::new(MemoryQueue::new()), Keep::default()),
        Some(durability) => {
            let dir = tempfile::tempdir().expect("temp dir");
            let options = SqliteOptions {
                max_batch: setup.max_batch,
                ..SqliteOptions::new(durability)
            };
            let queue = SqliteQueue::open(&dir.path().join("bench.db"), options).expect("open");
            (
                Arc::new(queue),
                Keep {
                    _dir: Some(dir),
                    ..Keep::default()
                },
            )
        }
    })
}

/// Runs `workers` loops for `run_for`; returns the calls done and the time taken.
async fn measure(queue: Arc<dyn Queue>, workers: usize, run_for: Duration) -> (u64, Duration) {
    let start = Instant::now();
    let deadline = start + run_for;
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let queue = Arc::clone(&queue);
        tasks.push(tokio::spawn(async move {
            let system = format!("S{worker}");
            let systems = vec![system.clone()];
            let session = format!("session-{worker}");
            let mut done = 0u64;
            while Instant::now() < deadline {
                let id = format!("c-{worker}-{done}");
                queue
                    .enqueue(new_call(&id, &system, time::Duration::hours(1)))
                    .await
                    .expect("enqueue");
                let units = queue
                    .claim(&systems, by(&session, "A"), 1, later())
                    .await
                    .expect("claim");
                assert_eq!(units.len(), 1);
                let completion = queue
                    .complete(&units[0].call_id, 1, &session, "agent", ok())
                    .await
                    .expect("complete");
                assert_eq!(completion, Completion::Stored);
                done += 1;
            }
            done
        }));
    }
    let mut calls = 0;
    for task in tasks {
        calls += task.await.expect("worker");
    }
    (calls, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: prints numbers; run with --release -- --ignored --nocapture"]
async fn queue_throughput() {
    println!();
    println!(
        "{:<38} {:>8} {:>12} {:>12}",
        "store", "workers", "calls/s", "writes/s"
    );
    // Warm up (page cache, CPU clocks) so the first row is not penalised.
    let (queue, _keep) = build(&SETUPS[1]).await.expect("sqlite");
    measure(queue, 8, Duration::from_secs(1)).await;
    // `QUEUE_THROUGHPUT_ONLY=postgres` measures the stores whose name holds it.
    let only = std::env::var("QUEUE_THROUGHPUT_ONLY").unwrap_or_default();
    for workers in [1, 64] {
        for setup in SETUPS.iter().filter(|s| s.name.contains(&only)) {
            let Some((queue, _keep)) = build(setup).await else {
                continue;
            };
            let (calls, elapsed) = measure(queue, workers, RUN_FOR).await;
            let per_sec = calls as f64 / elapsed.as_secs_f64();
            println!(
                "{:<38} {:>8} {:>12.0} {:>12.0}",
                setup.name,
                workers,
                per_sec,
                per_sec * 3.0
            );
        }
    }
}
