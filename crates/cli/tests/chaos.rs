//! Chaos test: nothing lost, nothing done twice.
//!
//! A relay and an agent run as separate `sapbridge` processes; the agent reaches the
//! relay through a fault proxy that cuts its connections at random, and the relay
//! and the agent are `kill -9`ed and restarted at random moments. Meanwhile clients
//! create customers through units of work (`POST /v1/systems/SIM/transactions`),
//! each with its own `Idempotency-Key`, retrying on 5xx, timeouts and refused
//! connections the way Power Automate retries. At the end the simulator's KNA1 is
//! read directly: every create must have reached a final state, every successful
//! create must exist exactly once, and no create may exist twice.
//!
//! Loopback only, bounded in count and time, stops by itself. The default is the
//! short version CI runs; the long soak is
//!
//! ```sh
//! SAPBRIDGE_CHAOS_CREATES=2000 SAPBRIDGE_CHAOS_KILLS=20 \
//!   cargo test --release -p sapbridge --test chaos -- --nocapture
//! ```
//!
//! Knobs (environment): `SAPBRIDGE_CHAOS_CREATES` (default 60), `SAPBRIDGE_CHAOS_KILLS`
//! (kills of relay or agent to reach at least, default 4), `SAPBRIDGE_CHAOS_CLIENTS`
//! (default 8), `SAPBRIDGE_CHAOS_FAULT_MS` (longest pause between checks for the next fault, default 600),
//! `SAPBRIDGE_CHAOS_LIMIT_SECS` (hard limit, default 150).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use sapbridge_sap::sim::{SimOptions, Simulator};
use sapbridge_tests::{CutProxy, Proc, create_customer_unit, customers_like, knob};
use serde_json::Value;
use tokio::task::JoinSet;

const BIN: &str = env!("CARGO_BIN_EXE_sapbridge");
const API_KEY: &str = "chaos-api-key";
const AGENT_TOKEN: &str = "chaos-agent-token";

/// Everything the chaos loop restarts.
struct Cluster {
    dir: PathBuf,
    relay_port: u16,
    relay: Option<Proc>,
    agent: Option<Proc>,
}

impl Cluster {
    fn start_relay(&mut self) {
        let relay = Proc::spawn_ready(
            Command::new(BIN)
                .args(["relay", "--config"])
                .arg(self.dir.join("relay.toml"))
                .args(["--listen", &format!("127.0.0.1:{}", self.relay_port)])
                .env("SAPBRIDGE_LOG", "error"),
            "listening on",
            Duration::from_secs(30),
        )
        .expect("relay never said it was listening");
        self.relay = Some(relay);
    }

    fn start_agent(&mut self) {
        let agent = Proc::spawn(
            Command::new(BIN)
                .args(["agent", "--config"])
                .arg(self.dir.join("agent.toml"))
                .env("SAPBRIDGE_LOG", "error"),
        )
        .expect("spawn agent");
        self.agent = Some(agent);
    }

    /// Restarts any process that exited by itself (a crash the test did not
    /// cause) and says which.
    fn revive(&mut self) -> Vec<String> {
        let mut crashed = Vec::new();
        if let Some(status) = self.relay.as_mut().and_then(Proc::exited) {
            crashed.push(format!("relay exited by itself: {status}"));
            self.relay = None;
            self.start_relay();
        }
        if let Some(status) = self.agent.as_mut().and_then(Proc::exited) {
            crashed.push(format!("agent exited by itself: {status}"));
            self.agent = None;
            self.start_agent();
        }
        crashed
    }

    fn kill_relay(&mut self) {
        drop(self.relay.take());
        self.start_relay();
    }

    fn kill_agent(&mut self) {
        drop(self.agent.take());
        self.start_agent();
    }
}

#[derive(Debug, Default)]
struct Tally {
    succeeded: HashMap<String, String>,
    failed: HashMap<String, String>,
    retries: AtomicUsize,
}

/// The final answer for one create, retrying like a workflow engine does.
async fn create(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    key: &str,
    tally: &Tally,
    deadline: Instant,
) -> Result<String, String> {
    let body = create_customer_unit(name, "Chaosweg 1");
    let mut backoff = Duration::from_millis(100);
    let mut pending: Option<String> = None;
    while Instant::now() < deadline {
        let response = match &pending {
            Some(location) => {
                http.get(format!("{base}{location}"))
                    .bearer_auth(API_KEY)
                    .send()
                    .await
            }
            None => {
                http.post(format!("{base}/v1/systems/SIM/transactions"))
                    .bearer_auth(API_KEY)
                    .header("idempotency-key", format!("\"{key}\""))
                    .header("prefer", "wait=5")
                    .json(&body)
                    .send()
                    .await
            }
        };
        let retry = match response {
            Err(_) => true, // refused, reset or timed out: the relay may be restarting
            Ok(r) => {
                let status = r.status().as_u16();
                let location = r
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let answer: Value = r.json().await.unwrap_or(Value::Null);
                match status {
                    200 | 201 => {
                        let number = answer["results"][0]["result"]["CUSTOMERNO"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned();
                        return if answer["committed"] == true && !number.is_empty() {
                            Ok(number)
                        } else {
                            Err(format!("200 without a committed customer: {answer}"))
                        };
                    }
                    202 => {
                        pending = location.or(pending);
                        backoff = Duration::from_millis(100);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    409 | 408 | 429 | 500..=599 => {
                        let outcome_unknown = answer["type"]
                            .as_str()
                            .is_some_and(|t| t.ends_with("outcome-unknown"));
                        if outcome_unknown {
                            return Err(format!("outcome unknown: {answer}"));
                        }
                        true
                    }
                    _ => return Err(format!("{status}: {answer}")),
                }
            }
        };
        if retry {
            tally.retries.fetch_add(1, Ordering::Relaxed);
            // A poll that failed goes back to re-posting: the key makes it safe.
            pending = None;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
    Err("no final answer before the time limit".into())
}

async fn customers_named(db: &Path, prefix: &str) -> Vec<(String, String)> {
    let sim = Simulator::open(db, SimOptions::default()).expect("open simulator");
    customers_like(&sim, prefix).await.expect("read KNA1")
}

fn write_configs(dir: &Path, proxy: SocketAddr) {
    std::fs::write(
        dir.join("relay.toml"),
        format!(
            r#"
heartbeat_secs = 2
lease_secs = 10

[queue]
store = "sqlite"
path = "{db}"

[[api_keys]]
name = "chaos"
key = "{API_KEY}"
systems = ["*"]

[[agent_tokens]]
name = "chaos-agent"
token = "{AGENT_TOKEN}"
systems = ["SIM"]
"#,
            db = dir.join("relay.db").display()
        ),
    )
    .expect("relay.toml");
    std::fs::write(
        dir.join("agent.toml"),
        format!(
            r#"
relay_url = "ws://{proxy}/v1/agent/connect"
token = "{AGENT_TOKEN}"
agent_id = "chaos-agent"
data_dir = "{data}"
concurrency = 8
backoff_initial_ms = 50
backoff_max_ms = 500

[[systems]]
name = "SIM"
allow_functions = ["BAPI_CUSTOMER_*", "BAPI_TRANSACTION_*", "RFC_READ_TABLE"]

[systems.backend]
type = "sim"
db_path = "{sim}"
latency_ms = 5
fault_rate = 0.0
"#,
            data = dir.join("agent").display(),
            sim = dir.join("sim.db").display(),
        ),
    )
    .expect("agent.toml");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_lost_nothing_done_twice() {
    let creates = knob("SAPBRIDGE_CHAOS_CREATES", 60) as usize;
    let kills_wanted = knob("SAPBRIDGE_CHAOS_KILLS", 4) as usize;
    let clients = knob("SAPBRIDGE_CHAOS_CLIENTS", 8).max(1) as usize;
    let fault_ms = knob("SAPBRIDGE_CHAOS_FAULT_MS", 600).max(50);
    let limit = Duration::from_secs(knob("SAPBRIDGE_CHAOS_LIMIT_SECS", 150));
    let started = Instant::now();
    let deadline = started + limit;

    let dir = tempfile::tempdir().expect("tempdir");
    let relay_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let relay_addr: SocketAddr = format!("127.0.0.1:{relay_port}").parse().expect("addr");
    let proxy = CutProxy::start(relay_addr).await.expect("proxy");
    write_configs(dir.path(), proxy.addr);
    let mut cluster = Cluster {
        dir: dir.path().to_owned(),
        relay_port,
        relay: None,
        agent: None,
    };
    cluster.start_relay();
    cluster.start_agent();

    let run = format!("CHAOS {:08X}", rand::rng().random::<u32>());
    let base = format!("http://{relay_addr}");
    let tally = Arc::new(Mutex::new(Tally::default()));
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..clients {
        let (tally, next, base, run) = (tally.clone(), next.clone(), base.clone(), run.clone());
        let finished = finished.clone();
        workers.spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client");
            let counter = Tally::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= creates {
                    break;
                }
                let name = format!("{run} {i:05}");
                let key = format!("{run}-{i}");
                let result = create(&http, &base, &name, &key, &counter, deadline).await;
                finished.fetch_add(1, Ordering::Relaxed);
                let mut t = tally.lock().expect("tally");
                match result {
                    Ok(number) => t.succeeded.insert(name, number),
                    Err(why) => t.failed.insert(name, why),
                };
            }
            tally
                .lock()
                .expect("tally")
                .retries
                .fetch_add(counter.retries.load(Ordering::Relaxed), Ordering::Relaxed);
        });
    }

    // The chaos loop: faults spread over the run by progress (so a fast machine
    // cannot finish the creates between two faults), each at a random moment
    // within its stretch, until the clients are done (or the time limit).
    let (mut relay_kills, mut agent_kills, mut cuts) = (0usize, 0usize, 0usize);
    let mut crashes: Vec<String> = Vec::new();
    let chaos = {
        let done = done.clone();
        let finished = finished.clone();
        async move {
            // Twice as many faults as wanted kills: about half are kills, the
            // rest connection cuts; more kills are added until enough happened.
            let faults = (kills_wanted * 2).max(1);
            let stretch = (creates / (faults + 1)).max(1);
            let mut next_at = rand::rng().random_range(stretch / 2..=stretch * 3 / 2);
            while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                let pause = rand::rng().random_range(1..=fault_ms.min(50));
                tokio::time::sleep(Duration::from_millis(pause)).await;
                crashes.extend(tokio::task::block_in_place(|| cluster.revive()));
                if finished.load(Ordering::Relaxed) < next_at {
                    continue;
                }
                next_at += rand::rng()
                    .random_range(stretch / 2..=stretch * 3 / 2)
                    .max(1);
                let kills = relay_kills + agent_kills;
                let kill_needed = kills < kills_wanted;
                match rand::rng().random_range(0..4) {
                    0 | 1 if kill_needed || rand::rng().random_bool(0.3) => {
                        if rand::rng().random_bool(0.5) {
                            relay_kills += 1;
                            tokio::task::block_in_place(|| cluster.kill_relay());
                        } else {
                            agent_kills += 1;
                            tokio::task::block_in_place(|| cluster.kill_agent());
                        }
                    }
                    2 if kill_needed => {
                        agent_kills += 1;
                        tokio::task::block_in_place(|| cluster.kill_agent());
                    }
                    _ => {
                        cuts += 1;
                        proxy.cut();
                    }
                }
            }
            (cluster, relay_kills, agent_kills, cuts, crashes)
        }
    };
    let chaos = tokio::spawn(chaos);
    while let Some(joined) = workers.join_next().await {
        joined.expect("client task panicked");
    }
    done.store(true, Ordering::Relaxed);
    let (cluster, relay_kills, agent_kills, cuts, crashes) = chaos.await.expect("chaos task");
    drop(cluster); // kill -9 both; the simulator's file is read below as it is on disk

    let found = customers_named(&dir.path().join("sim.db"), &run).await;
    let mut by_name: HashMap<String, Vec<String>> = HashMap::new();
    for (kunnr, name) in found {
        by_name.entry(name).or_default().push(kunnr);
    }
    let tally = Arc::try_unwrap(tally)
        .expect("tally")
        .into_inner()
        .expect("tally");
    let duplicates: usize = by_name.values().map(|v| v.len().saturating_sub(1)).sum();
    let lost: Vec<&String> = tally
        .succeeded
        .iter()
        .filter(|(name, number)| !by_name.get(*name).is_some_and(|v| v.contains(number)))
        .map(|(name, _)| name)
        .collect();
    let phantoms: Vec<&String> = tally
        .failed
        .keys()
        .filter(|name| by_name.contains_key(*name))
        .collect();
    let unfinished = creates - tally.succeeded.len() - tally.failed.len();
    let kills = relay_kills + agent_kills;

    println!(
        "chaos: {creates} creates by {clients} clients in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    println!(
        "chaos: faults: {relay_kills} relay kill -9, {agent_kills} agent kill -9, {cuts} connection cuts; {} client retries",
        tally.retries.load(Ordering::Relaxed)
    );
    println!(
        "chaos: succeeded {}, failed {}, unfinished {unfinished}, customers in SAP {}",
        tally.succeeded.len(),
        tally.failed.len(),
        by_name.len()
    );
    println!(
        "chaos: lost {}, duplicates {duplicates}, failed-but-created {}",
        lost.len(),
        phantoms.len()
    );
    for (name, why) in tally.failed.iter().take(5) {
        println!("chaos: failed {name}: {why}");
    }
    for crash in &crashes {
        println!("chaos: {crash}");
    }

    assert_eq!(unfinished, 0, "every call must reach a final state");
    assert!(
        tally.failed.is_empty(),
        "no create may fail: {:?}",
        tally.failed
    );
    assert!(lost.is_empty(), "lost creates: {lost:?}");
    assert_eq!(duplicates, 0, "duplicate customers: {by_name:?}");
    assert!(
        phantoms.is_empty(),
        "created although answered failed: {phantoms:?}"
    );
    assert_eq!(
        by_name.len(),
        tally.succeeded.len(),
        "customers in SAP = successful creates"
    );
    assert!(
        kills >= kills_wanted.min(1),
        "the run must include kills (got {kills})"
    );
    if kills < kills_wanted {
        println!(
            "chaos: note: only {kills} kills of {kills_wanted} wanted happened before the creates finished"
        );
    }
}
