//! Failover, tested (issue 15): three `sapbridge relay` processes on one private
//! PostgreSQL server, two `sapbridge-agent` processes per SAP system, and clients
//! that create customers over the replicas while the harness breaks things.
//!
//! - System `SIM`: the embedded simulator. Its two agents open the same simulator
//!   file, so they are two application servers of **one** SAP system: one customer
//!   master, one number range and one tRFC record of committed TIDs (SQLite's
//!   locking serialises their commits, as SAP's database does).
//! - System `SOAP`: a `sapbridge sim` process serving SOAP-RFC, which keeps **no**
//!   TID record (as real SAP over SOAP); its two agents call it over HTTP. A unit
//!   in doubt there can only end `OUTCOME_UNKNOWN`, never run twice.
//! - Every agent dials its own fault proxy, a round-robin load balancer over the
//!   three replicas that skips those that are down; cutting it breaks the agent's
//!   WebSocket while the agent stays up.
//! - Clients are Power Automate actions ([`FlowClient`]): a unit of work (create +
//!   commit) with an `Idempotency-Key`, retried and polled by Power Automate's
//!   default policy, each request to the next replica (a load balancer). An action
//!   whose retries run out on `5xx` or broken connections is resubmitted with the
//!   same key, as a flow run is resubmitted, until it has a final answer.
//! - Faults, spread over the run by progress, at random: `kill -9` of a replica or
//!   an agent (restarted at once, or an agent left down past the relays' owner
//!   hold, so that its units reach the system's other agent in doubt), a cut of an
//!   agent's connection, and once a restart of PostgreSQL itself (killed as a
//!   crash would, then started again).
//!
//! At the end every process is killed and each system's customer master is read
//! from its simulator file: every call must be final; every successful create is
//! in SAP exactly once (0 lost); no name is in SAP twice (0 duplicates); no
//! create answered as failed is in SAP; a create answered `OUTCOME_UNKNOWN` (only
//! `SOAP` may have them) is in SAP at most once; customers in SAP = successful
//! creates + unknown ones that did commit; no process exited by itself and none
//! logged a panic (their stderr goes to log files in the test's directory). It
//! prints those counts and how long the longest call waited (for a failover).
//!
//! Loopback only, bounded in count and time. The default is the short version CI
//! runs; a long run is
//!
//! ```sh
//! FAILOVER_CREATES=5000 FAILOVER_KILLS=30 \
//!   cargo test --release -p sapbridge --test failover -- --nocapture
//! ```
//!
//! Knobs (environment): `FAILOVER_CREATES` (default 300), `FAILOVER_KILLS` (kills
//! of replicas or agents to reach at least, default 6), `FAILOVER_CLIENTS`
//! (default 8), `FAILOVER_LIMIT_SECS` (hard limit of the client phase, default 300).
//! Without PostgreSQL's server binaries it says so on stderr and passes, except
//! under `CI=true`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rand::Rng;
use sapbridge_sap::sim::{SimOptions, Simulator};
use sapbridge_tests::postgres::{PgServer, skip_or_fail};
use sapbridge_tests::power_automate::{ActionFailed, FlowClient};
use sapbridge_tests::{
    Client, CutProxy, Proc, SOAP_PASSWORD, SOAP_USER, create_customer_unit, customers_like,
    free_port, knob,
};
use tokio::task::JoinSet;

const RELAY_BIN: &str = env!("CARGO_BIN_EXE_sapbridge");
const AGENT_BIN: &str = env!("CARGO_BIN_EXE_sapbridge-agent");
const API_KEY: &str = "failover-api-key";
const AGENT_TOKEN: &str = "failover-agent-token";
/// The environment variable the SOAP agents read their SAP password from.
const PASSWORD_ENV: &str = "SAPBRIDGE_TEST_SOAP_PASSWORD";
const REPLICAS: usize = 3;
const SYSTEMS: [&str; 2] = ["SIM", "SOAP"];
/// The relays' `owner_hold_secs`.
const OWNER_HOLD: Duration = Duration::from_secs(5);
/// How long a process may take to say it is ready.
const READY: Duration = Duration::from_secs(30);

/// One agent: which system it serves, its id, its proxy to the replicas.
struct Agent {
    system: &'static str,
    id: String,
    proxy: CutProxy,
    proc: Option<Proc>,
    /// When an agent killed to stay down comes back.
    back_at: Option<Instant>,
}

/// Every process the harness kills and restarts.
struct Cluster {
    dir: PathBuf,
    relay_ports: Vec<u16>,
    relays: Vec<Option<Proc>>,
    agents: Vec<Agent>,
}

impl Cluster {
    fn start_relay(&mut self, i: usize) -> Result<()> {
        let proc = Proc::spawn_ready(
            Command::new(RELAY_BIN)
                .args(["relay", "--config"])
                .arg(self.dir.join("relay.toml"))
                .args(["--listen", &format!("127.0.0.1:{}", self.relay_ports[i])])
                .env("SAPBRIDGE_LOG", "error")
                .stderr(log_file(&self.dir, &format!("relay-{i}"))?),
            "listening on",
            READY,
        )
        .with_context(|| format!("relay {i}"))?;
        self.relays[i] = Some(proc);
        Ok(())
    }

    fn start_agent(&mut self, i: usize) -> Result<()> {
        let config = self.dir.join(format!("{}.toml", self.agents[i].id));
        let proc = Proc::spawn(
            Command::new(AGENT_BIN)
                .arg("--config")
                .arg(&config)
                .env("SAPBRIDGE_LOG", "error")
                .env(PASSWORD_ENV, SOAP_PASSWORD)
                .stderr(log_file(&self.dir, &self.agents[i].id)?),
        )?;
        self.agents[i].proc = Some(proc);
        Ok(())
    }

    fn kill_relay(&mut self, i: usize) -> Result<()> {
        drop(self.relays[i].take());
        self.start_relay(i)
    }

    /// Kills agent `i` and restarts it at once, or (`stay_down`) leaves it down
    /// that long: past the relay's owner hold its units go to the system's other
    /// agent, in doubt.
    fn kill_agent(&mut self, i: usize, stay_down: Option<Duration>) -> Result<()> {
        drop(self.agents[i].proc.take());
        match stay_down {
            Some(down) => {
                self.agents[i].back_at = Some(Instant::now() + down);
                Ok(())
            }
            None => self.start_agent(i),
        }
    }

    /// Whether an agent of `system` is down (killed to stay down).
    fn system_has_one_down(&self, system: &str) -> bool {
        self.agents
            .iter()
            .any(|a| a.system == system && a.back_at.is_some())
    }

    /// Restarts any process that exited by itself (a crash the harness did not
    /// cause) and says which.
    fn revive(&mut self) -> Result<Vec<String>> {
        let mut crashed = Vec::new();
        for i in 0..self.relays.len() {
            if let Some(status) = self.relays[i].as_mut().and_then(Proc::exited) {
                crashed.push(format!("relay {i} exited by itself: {status}"));
                self.start_relay(i)?;
            }
        }
        for i in 0..self.agents.len() {
            if self.agents[i]
                .back_at
                .is_some_and(|at| at <= Instant::now())
            {
                self.agents[i].back_at = None;
                self.start_agent(i)?;
            }
            if let Some(status) = self.agents[i].proc.as_mut().and_then(Proc::exited) {
                crashed.push(format!(
                    "agent {} exited by itself: {status}",
                    self.agents[i].id
                ));
                self.start_agent(i)?;
            }
        }
        Ok(crashed)
    }
}

/// Where a process's stderr goes: `logs/<name>.log` under `dir`, appended to
/// across its restarts (the relays' errors during a database restart are many;
/// a panic there is found by [`panics_in`]).
fn log_file(dir: &Path, name: &str) -> Result<std::fs::File> {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let path = logs.join(format!("{name}.log"));
    std::fs::File::options()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))
}

/// The lines of the processes' logs that report a panic (a panicking task the
/// process survived counts too), each with its log's name.
fn panics_in(dir: &Path) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir.join("logs"))? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        for line in text.lines().filter(|l| l.contains("panicked")) {
            found.push(format!("{}: {line}", name.clone().unwrap_or_default()));
        }
    }
    Ok(found)
}

fn write_relay_config(dir: &Path, database: &str) -> Result<()> {
    let systems = format!("{SYSTEMS:?}");
    std::fs::write(
        dir.join("relay.toml"),
        format!(
            r#"
heartbeat_secs = 2
# A replica killed with leases: they lapse after this (or when the replica is
# judged dead), then go back to their agents first.
lease_secs = 10
owner_hold_secs = {owner_hold}
default_wait_secs = 10

[queue]
store = "postgres"
url = "{database}"

[[api_keys]]
name = "failover"
key = "{API_KEY}"
systems = ["*"]

[[agent_tokens]]
name = "failover-agents"
token = "{AGENT_TOKEN}"
systems = {systems}
"#,
            owner_hold = OWNER_HOLD.as_secs()
        ),
    )?;
    Ok(())
}

fn write_agent_config(dir: &Path, agent: &Agent, soap_url: &str) -> Result<()> {
    let backend = match agent.system {
        "SIM" => format!(
            "type = \"sim\"\ndb_path = \"{}\"\nlatency_ms = 2\nfault_rate = 0.0\n",
            dir.join("sim.db").display()
        ),
        _ => format!(
            "type = \"soap\"\nbase_url = \"{soap_url}\"\nclient = \"001\"\nuser = \"{SOAP_USER}\"\npassword_env = \"{PASSWORD_ENV}\"\n"
        ),
    };
    std::fs::write(
        dir.join(format!("{}.toml", agent.id)),
        format!(
            r#"
relay_url = "{relay}"
token = "{AGENT_TOKEN}"
agent_id = "{id}"
data_dir = "{data}"
concurrency = 8
backoff_initial_ms = 50
backoff_max_ms = 500

[[systems]]
name = "{system}"
allow_functions = ["BAPI_CUSTOMER_*", "BAPI_TRANSACTION_*", "RFC_READ_TABLE"]

[systems.backend]
{backend}"#,
            relay = agent.proxy.ws_url(),
            id = agent.id,
            data = dir.join(&agent.id).display(),
            system = agent.system,
        ),
    )?;
    Ok(())
}

/// How one create ended.
#[derive(Debug, Clone)]
enum Ending {
    /// 2xx, committed; the customer number when the answer had it.
    Created(Option<String>),
    /// `OUTCOME_UNKNOWN`: SAP may or may not have it.
    Unknown(String),
    /// Any other final answer.
    Failed(String),
}

#[derive(Debug)]
struct Record {
    system: &'static str,
    ending: Ending,
    /// From the first request to the final answer.
    took: Duration,
    retries: u32,
    resubmits: u32,
}

/// One create as a flow run does it, resubmitted (same key) while its action
/// fails on retryable trouble, until a final answer or `deadline`.
async fn create(
    flow: &FlowClient,
    system: &'static str,
    name: &str,
    key: &str,
    deadline: Instant,
) -> Option<Record> {
    let body = create_customer_unit(name, "Failoverweg 3");
    let path = format!("/v1/systems/{system}/transactions");
    let started = Instant::now();
    let (mut retries, mut resubmits) = (0, 0);
    while Instant::now() < deadline {
        let ending = match flow.post(&path, &body, key, None).await {
            Ok((reply, trace)) => {
                retries += trace.retries;
                let number = reply.body["results"][0]["result"]["CUSTOMERNO"]
                    .as_str()
                    .map(str::to_owned);
                if reply.status == 200 && reply.body["committed"] == true {
                    Ending::Created(number)
                } else {
                    Ending::Failed(format!("{} {}", reply.status, reply.body))
                }
            }
            Err(ActionFailed::Status(reply)) => {
                let kind = reply.body["type"].as_str().unwrap_or_default();
                if kind.ends_with("/outcome-unknown") {
                    Ending::Unknown(reply.body.to_string())
                } else if matches!(reply.status, 408 | 429 | 500..=599) {
                    resubmits += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                } else {
                    Ending::Failed(format!("{} {}", reply.status, reply.body))
                }
            }
            Err(ActionFailed::Transport(_) | ActionFailed::TimedOut) => {
                resubmits += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        return Some(Record {
            system,
            ending,
            took: started.elapsed(),
            retries,
            resubmits,
        });
    }
    None
}

/// Customers (number by name) whose name starts with `prefix` in the simulator
/// file `db`.
async fn customers_in(db: &Path, prefix: &str) -> Result<HashMap<String, Vec<String>>> {
    let sim = Simulator::open(db, SimOptions::default())?;
    let mut by_name: HashMap<String, Vec<String>> = HashMap::new();
    for (kunnr, name) in customers_like(&sim, prefix).await? {
        by_name.entry(name).or_default().push(kunnr);
    }
    Ok(by_name)
}

/// Waits until replica 0 lists two agents for every system.
async fn wait_for_agents(base: &str) -> Result<()> {
    let client = Client::at(base.to_owned(), Some(API_KEY));
    let deadline = Instant::now() + READY;
    loop {
        let mut ready = true;
        if let Ok(reply) = client.get("/v1/systems").await {
            for system in SYSTEMS {
                ready &= sapbridge_tests::agents_of(&reply.body, system).len() == 2;
            }
        } else {
            ready = false;
        }
        if ready {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "the agents did not all connect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Debug, Default)]
struct Faults {
    relay_kills: usize,
    agent_kills: usize,
    cuts: usize,
    /// Agent kills that left the agent down past the owner hold.
    stayed_down: usize,
    pg_restarts: usize,
    pg_restart_took: Duration,
    crashes: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_loses_nothing_and_runs_nothing_twice() -> Result<()> {
    const TEST: &str = "failover_loses_nothing_and_runs_nothing_twice";
    let creates = knob("FAILOVER_CREATES", 300) as usize;
    let kills_wanted = knob("FAILOVER_KILLS", 6) as usize;
    let clients = knob("FAILOVER_CLIENTS", 8).max(1) as usize;
    let limit = Duration::from_secs(knob("FAILOVER_LIMIT_SECS", 300));

    let pg = match tokio::task::spawn_blocking(PgServer::start).await? {
        Ok(server) => Arc::new(server),
        Err(error) => {
            skip_or_fail(TEST, &format!("no private PostgreSQL server: {error:#}"));
            return Ok(());
        }
    };
    let dir = tempfile::tempdir()?;
    write_relay_config(dir.path(), &pg.url("postgres"))?;

    // The SOAP system: `sapbridge sim`, its own state file.
    let password_file = dir.path().join("sap-password");
    std::fs::write(&password_file, SOAP_PASSWORD)?;
    let soap_port = free_port()?;
    let soap_data = dir.path().join("soap-sap");
    let soap_sap = Proc::spawn_ready(
        Command::new(RELAY_BIN)
            .args(["sim", "--listen", &format!("127.0.0.1:{soap_port}")])
            .arg("--data-dir")
            .arg(&soap_data)
            .args(["--user", SOAP_USER])
            .arg("--password-file")
            .arg(&password_file)
            .env("SAPBRIDGE_LOG", "error")
            .stderr(log_file(dir.path(), "soap-sap")?),
        "serving SOAP-RFC",
        READY,
    )?;
    let soap_url = format!("http://127.0.0.1:{soap_port}/");

    let relay_ports = (0..REPLICAS)
        .map(|_| free_port())
        .collect::<Result<Vec<_>>>()?;
    let relay_addrs: Vec<SocketAddr> = relay_ports
        .iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect();
    let mut agents = Vec::new();
    for system in SYSTEMS {
        for n in 1..=2 {
            agents.push(Agent {
                system,
                id: format!("{}-agent-{n}", system.to_lowercase()),
                proxy: CutProxy::balance(relay_addrs.clone()).await?,
                proc: None,
                back_at: None,
            });
        }
    }
    for agent in &agents {
        write_agent_config(dir.path(), agent, &soap_url)?;
    }
    let mut cluster = Cluster {
        dir: dir.path().to_owned(),
        relay_ports,
        relays: (0..REPLICAS).map(|_| None).collect(),
        agents,
    };
    for i in 0..REPLICAS {
        cluster.start_relay(i)?;
    }
    for i in 0..cluster.agents.len() {
        cluster.start_agent(i)?;
    }
    let bases: Vec<String> = relay_addrs.iter().map(|a| format!("http://{a}")).collect();
    wait_for_agents(&bases[0]).await?;

    let run = format!("FAILOVER {:08X}", rand::rng().random::<u32>());
    let started = Instant::now();
    let deadline = started + limit;
    let records: Arc<Mutex<HashMap<String, Record>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    for c in 0..clients {
        let (records, next, finished, run) =
            (records.clone(), next.clone(), finished.clone(), run.clone());
        // Each client starts its round-robin at another replica.
        let mut order = bases.clone();
        order.rotate_left(c % REPLICAS);
        let flow = FlowClient::balance(order, API_KEY);
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= creates {
                    break;
                }
                let system = SYSTEMS[i % SYSTEMS.len()];
                let name = format!("{run} {i:05}");
                let key = format!("{run}-{i}");
                let record = create(&flow, system, &name, &key, deadline).await;
                finished.fetch_add(1, Ordering::Relaxed);
                if let Some(record) = record {
                    records
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(name, record);
                }
            }
        });
    }

    // The faults: spread over the run by progress (so a fast machine cannot
    // finish between two), each at a random moment within its stretch; the
    // PostgreSQL restart about halfway.
    let done = Arc::new(AtomicBool::new(false));
    let chaos = {
        let (done, finished, pg) = (done.clone(), finished.clone(), pg.clone());
        tokio::spawn(async move {
            let mut faults = Faults::default();
            let total = (kills_wanted * 2).max(2);
            let stretch = (creates / (total + 1)).max(1);
            let mut next_at = rand::rng().random_range(stretch / 2..=stretch * 3 / 2);
            let pg_at = creates / 2;
            let mut said = Instant::now();
            while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                let pause = rand::rng().random_range(1..=50);
                tokio::time::sleep(Duration::from_millis(pause)).await;
                let revived = tokio::task::block_in_place(|| cluster.revive())?;
                faults.crashes.extend(revived);
                let progress = finished.load(Ordering::Relaxed);
                if said.elapsed() >= Duration::from_secs(30) {
                    said = Instant::now();
                    println!(
                        "failover: {progress} of {creates} final after {:.0}s; {} replica and {} agent kills so far",
                        started.elapsed().as_secs_f64(),
                        faults.relay_kills,
                        faults.agent_kills
                    );
                }
                if faults.pg_restarts == 0 && progress >= pg_at {
                    let pg = pg.clone();
                    let began = Instant::now();
                    tokio::task::spawn_blocking(move || pg.restart()).await??;
                    faults.pg_restarts += 1;
                    faults.pg_restart_took = began.elapsed();
                    continue;
                }
                if progress < next_at {
                    continue;
                }
                next_at += rand::rng()
                    .random_range(stretch / 2..=stretch * 3 / 2)
                    .max(1);
                let kill_needed = faults.relay_kills + faults.agent_kills < kills_wanted;
                let roll = rand::rng().random_range(0..4);
                if kill_needed || roll < 2 {
                    if rand::rng().random_bool(0.5) {
                        let i = rand::rng().random_range(0..REPLICAS);
                        faults.relay_kills += 1;
                        tokio::task::block_in_place(|| cluster.kill_relay(i))?;
                    } else {
                        let i = rand::rng().random_range(0..cluster.agents.len());
                        let agent = &cluster.agents[i];
                        // Now and then an agent stays down past the owner hold
                        // (never both of one system): its units go to the other
                        // agent in doubt.
                        let stay_down = (agent.back_at.is_none()
                            && !cluster.system_has_one_down(agent.system)
                            && rand::rng().random_bool(0.3))
                        .then_some(OWNER_HOLD + Duration::from_secs(2));
                        faults.agent_kills += 1;
                        faults.stayed_down += usize::from(stay_down.is_some());
                        tokio::task::block_in_place(|| cluster.kill_agent(i, stay_down))?;
                    }
                } else {
                    let i = rand::rng().random_range(0..cluster.agents.len());
                    faults.cuts += 1;
                    cluster.agents[i].proxy.cut();
                }
            }
            anyhow::Ok((cluster, faults))
        })
    };
    while let Some(joined) = workers.join_next().await {
        joined.context("client task panicked")?;
    }
    let client_phase = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let (cluster, mut faults) = chaos.await??;
    // kill -9 everything; the simulators' files are read below as they are on disk.
    drop(cluster);
    drop(soap_sap);
    faults.crashes.extend(panics_in(dir.path())?);

    let in_sap: HashMap<&str, HashMap<String, Vec<String>>> = HashMap::from([
        ("SIM", customers_in(&dir.path().join("sim.db"), &run).await?),
        ("SOAP", customers_in(&soap_data.join("sim.db"), &run).await?),
    ]);
    let records = Arc::try_unwrap(records)
        .map_err(|_| anyhow::anyhow!("records still shared"))?
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    report(
        &records,
        &in_sap,
        &faults,
        Summary {
            creates,
            clients,
            kills_wanted,
            client_phase,
        },
    )
}

struct Summary {
    creates: usize,
    clients: usize,
    kills_wanted: usize,
    client_phase: Duration,
}

/// Prints the run's counts and asserts them.
fn report(
    records: &HashMap<String, Record>,
    in_sap: &HashMap<&str, HashMap<String, Vec<String>>>,
    faults: &Faults,
    summary: Summary,
) -> Result<()> {
    let (mut created, mut unknown, mut failed) = (0usize, 0usize, Vec::new());
    let (mut lost, mut phantoms, mut unknown_created, mut wrong_number) =
        (Vec::new(), Vec::new(), 0usize, Vec::new());
    let mut unknown_by_system: HashMap<&str, usize> = HashMap::new();
    // Committed by an earlier attempt whose results only another agent's journal
    // holds: SAP said the TID committed.
    let mut without_results = 0usize;
    for (name, record) in records {
        let found = in_sap
            .get(record.system)
            .and_then(|m| m.get(name))
            .map_or(&[][..], Vec::as_slice);
        match &record.ending {
            Ending::Created(number) => {
                created += 1;
                without_results += usize::from(number.is_none());
                if found.is_empty() {
                    lost.push(name.clone());
                }
                if let Some(number) = number
                    && !found.is_empty()
                    && !found.contains(number)
                {
                    wrong_number.push(format!("{name}: answered {number}, SAP has {found:?}"));
                }
            }
            Ending::Unknown(why) => {
                if unknown < 3 {
                    println!("failover: outcome unknown {name}: {why}");
                }
                unknown += 1;
                *unknown_by_system.entry(record.system).or_default() += 1;
                unknown_created += usize::from(!found.is_empty());
            }
            Ending::Failed(why) => {
                failed.push(format!("{name}: {why}"));
                if !found.is_empty() {
                    phantoms.push(name.clone());
                }
            }
        }
    }
    let duplicates: usize = in_sap
        .values()
        .flat_map(|m| m.values())
        .map(|v| v.len().saturating_sub(1))
        .sum();
    let customers: usize = in_sap.values().map(HashMap::len).sum();
    let per_system: Vec<String> = in_sap
        .iter()
        .map(|(s, m)| format!("{s} {}", m.len()))
        .collect();
    let unfinished = summary.creates - records.len();
    let mut waits: Vec<(Duration, &String)> = records.iter().map(|(n, r)| (r.took, n)).collect();
    waits.sort();
    let at = |q: f64| {
        let i = ((waits.len() as f64 * q).ceil() as usize).clamp(1, waits.len().max(1)) - 1;
        waits.get(i).map_or(0.0, |w| w.0.as_secs_f64())
    };
    let retries: u32 = records.values().map(|r| r.retries).sum();
    let resubmits: u32 = records.values().map(|r| r.resubmits).sum();
    let kills = faults.relay_kills + faults.agent_kills;

    println!(
        "failover: {} creates (SIM and SOAP alternating) by {} clients over {REPLICAS} replicas and 2 agents per system in {:.1}s",
        summary.creates,
        summary.clients,
        summary.client_phase.as_secs_f64()
    );
    println!(
        "failover: faults: {} replica kill -9, {} agent kill -9 ({} of them down past the owner hold), {} agent connection cuts, {} PostgreSQL restart ({:.1}s); Power Automate retries {retries}, resubmitted runs {resubmits}",
        faults.relay_kills,
        faults.agent_kills,
        faults.stayed_down,
        faults.cuts,
        faults.pg_restarts,
        faults.pg_restart_took.as_secs_f64()
    );
    println!(
        "failover: final {} of {}: succeeded {created} ({without_results} without call results: committed by an earlier attempt), outcome unknown {unknown} ({unknown_by_system:?}; {unknown_created} of them committed), failed {}, never final {unfinished}",
        records.len(),
        summary.creates,
        failed.len()
    );
    println!(
        "failover: customers in SAP {customers} ({}) = successful creates {created} + unknown that committed {unknown_created}",
        per_system.join(", ")
    );
    println!(
        "failover: lost {}, duplicates {duplicates}, failed-but-created {}, wrong customer number {}",
        lost.len(),
        phantoms.len(),
        wrong_number.len()
    );
    if let Some((longest, name)) = waits.last() {
        println!(
            "failover: call time p50 {:.3}s, p99 {:.3}s; longest wait (for a failover) {:.1}s ({name})",
            at(0.5),
            at(0.99),
            longest.as_secs_f64()
        );
    }
    for why in failed.iter().take(5) {
        println!("failover: failed {why}");
    }
    for crash in &faults.crashes {
        println!("failover: {crash}");
    }

    ensure!(unfinished == 0, "{unfinished} calls never became final");
    ensure!(lost.is_empty(), "lost creates: {lost:?}");
    ensure!(duplicates == 0, "duplicate customers: {in_sap:?}");
    ensure!(
        phantoms.is_empty(),
        "created although answered failed: {phantoms:?}"
    );
    ensure!(wrong_number.is_empty(), "{wrong_number:?}");
    ensure!(failed.is_empty(), "creates failed: {failed:?}");
    ensure!(
        !unknown_by_system.contains_key("SIM"),
        "SIM keeps a TID record: nothing there may end in doubt ({unknown_by_system:?})"
    );
    ensure!(
        customers == created + unknown_created,
        "customers in SAP ({customers}) != successful creates ({created}) + unknown that committed ({unknown_created})"
    );
    ensure!(
        faults.crashes.is_empty(),
        "processes crashed or panicked: {:?}",
        faults.crashes
    );
    ensure!(faults.pg_restarts == 1, "PostgreSQL was not restarted");
    if kills < summary.kills_wanted {
        bail!(
            "only {kills} kills of {} wanted happened before the creates finished",
            summary.kills_wanted
        );
    }
    Ok(())
}
