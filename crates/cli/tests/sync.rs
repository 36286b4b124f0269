//! `sapbridge sync customers` against a `sapbridge dev` process: 10,000 rows (the
//! knob `SYNC_ROWS` changes it), interrupted once with Ctrl-C and once with
//! `kill -9`, then run to the end: every row done exactly once (one SAP customer
//! per row, counted in `KNA1`), the report complete, and an interactive call made
//! during the sync answered (its latency is printed, not asserted).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sapbridge_tests::{Proc, free_port, knob};
use serde_json::{Value, json};

const KEY: &str = "sync-test-key";
const PREFIX: &str = "Bulk Sync Row";

fn start_dev(dir: &Path) -> (Proc, String) {
    let port = free_port().expect("port");
    let mut command = Command::new(env!("CARGO_BIN_EXE_sapbridge"));
    command
        .args(["dev", "--api-key", KEY])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.join("dev"));
    let dev = Proc::spawn_ready(
        &mut command,
        "sapbridge dev is running",
        Duration::from_secs(60),
    )
    .expect("sapbridge dev");
    (dev, format!("http://127.0.0.1:{port}"))
}

/// A sync of `file` against `url`, running.
fn spawn_sync(url: &str, file: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sapbridge"))
        .args(["sync", "customers", "SIM"])
        .arg(file)
        .args(["--key-column", "ID", "--number-column", "SAPNR"])
        .args(["--map", "name=NAME,city=CITY,country=COUNTRY"])
        .env("SAPBRIDGE_URL", url)
        .env("SAPBRIDGE_API_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sync")
}

/// Lines in the state file so far.
fn state_lines(state: &Path) -> usize {
    std::fs::File::open(state).map_or(0, |f| BufReader::new(f).lines().count())
}

/// Waits until the state file holds `n` rows (or the sync exited).
fn wait_rows(child: &mut Child, state: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while state_lines(state) < n {
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "the sync ended before {n} rows"
        );
        assert!(Instant::now() < deadline, "no {n} rows within 600 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn finish(mut child: Child) -> (ExitStatus, String) {
    let mut said = String::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            said.push_str(&line);
            said.push('\n');
        }
    }
    (child.wait().expect("wait"), said)
}

/// `KNA1` rows whose name starts with [`PREFIX`].
fn synced_in_sap(http: &reqwest::blocking::Client, url: &str) -> usize {
    let body: Value = http
        .post(format!("{url}/v1/systems/SIM/functions/RFC_READ_TABLE"))
        .bearer_auth(KEY)
        .json(&json!({
            "QUERY_TABLE": "KNA1",
            "DELIMITER": "|",
            "FIELDS": [{"FIELDNAME": "KUNNR"}],
            "OPTIONS": [{"TEXT": format!("NAME1 LIKE '{PREFIX}%'")}],
        }))
        .send()
        .and_then(reqwest::blocking::Response::json)
        .expect("read KNA1");
    body["result"]["DATA"].as_array().expect("DATA").len()
}

#[test]
fn ten_thousand_rows_interrupted_twice_end_with_one_customer_each() {
    let rows = usize::try_from(knob("SYNC_ROWS", 10_000)).expect("rows");
    let dir = tempfile::tempdir().expect("temp dir");
    let (_dev, url) = start_dev(dir.path());
    let file: PathBuf = dir.path().join("accounts.csv");
    let mut csv = String::from("ID,NAME,CITY,COUNTRY,SAPNR\n");
    for i in 0..rows {
        csv.push_str(&format!("A{i:06},{PREFIX} {i},Walldorf,DE,\n"));
    }
    std::fs::write(&file, csv).expect("write rows");
    let state = dir.path().join("accounts.csv.sync-state.jsonl");
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    assert_eq!(synced_in_sap(&http, &url), 0);

    // Ctrl-C at a fifth: the rows in flight finish, exit 4, state kept.
    let mut first = spawn_sync(&url, &file);
    wait_rows(&mut first, &state, rows / 5);
    let status = Command::new("kill")
        .args(["-INT", &first.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let (status, said) = finish(first);
    assert_eq!(status.code(), Some(4), "{said}");
    assert!(said.contains("interrupted"), "{said}");

    // kill -9 at a half: rows in flight are lost to the state file, not to SAP.
    let mut second = spawn_sync(&url, &file);
    wait_rows(&mut second, &state, rows / 2);
    second.kill().expect("kill -9");
    let _ = second.wait();

    // To the end, with an interactive call in the middle of it.
    let mut third = spawn_sync(&url, &file);
    wait_rows(&mut third, &state, rows * 3 / 5);
    let asked = Instant::now();
    let interactive = http
        .post(format!("{url}/v1/systems/SIM/functions/STFC_CONNECTION"))
        .bearer_auth(KEY)
        .header("prefer", "wait=10")
        .json(&json!({"REQUTEXT": "interactive"}))
        .send()
        .expect("interactive call");
    let latency = asked.elapsed();
    assert_eq!(interactive.status(), 200);
    println!("an interactive call during the sync answered in {latency:?}");
    let (status, said) = finish(third);
    println!("{said}");
    assert_eq!(status.code(), Some(0), "{said}");
    assert!(said.contains("resuming"), "{said}");

    // Every row once: the report, the numbers, and SAP's own count.
    let report =
        std::fs::read_to_string(dir.path().join("accounts.csv.sync-report.csv")).expect("report");
    let mut reader = csv_lines(&report);
    assert_eq!(reader.remove(0), "key,action,customer,status,message");
    assert_eq!(reader.len(), rows);
    let mut numbers = std::collections::HashSet::new();
    for line in &reader {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields[1], "created", "{line}");
        assert_eq!(fields[3], "succeeded", "{line}");
        assert!(numbers.insert(fields[2].to_owned()), "number twice: {line}");
    }
    assert_eq!(synced_in_sap(&http, &url), rows, "one SAP customer per row");

    // A run after the end sends nothing.
    let (status, said) = finish(spawn_sync(&url, &file));
    assert_eq!(status.code(), Some(0), "{said}");
    assert!(said.contains("0 this run"), "{said}");
    assert_eq!(synced_in_sap(&http, &url), rows);
}

fn csv_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.is_empty()).collect()
}

#[test]
fn rows_that_sap_refuses_are_reported_and_updates_change_customers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_dev, url) = start_dev(dir.path());
    let file = dir.path().join("mixed.jsonl");
    let lines = [
        json!({"ID": "ok-1", "NAME": "Mixed Row One", "CITY": "Walldorf", "COUNTRY": "DE"}),
        // An existing customer of the simulator: an update.
        json!({"ID": "upd-1", "NAME": "Referenzkunde Inland", "CITY": "Mannheim", "COUNTRY": "DE", "SAPNR": "0000001000"}),
        // A customer number that does not exist: SAP refuses the update.
        json!({"ID": "bad-1", "NAME": "Nobody", "CITY": "X", "COUNTRY": "DE", "SAPNR": "0009999999"}),
    ];
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(&file, text.join("\n")).expect("write rows");
    let (status, said) = finish(spawn_sync(&url, &file));
    assert_eq!(status.code(), Some(1), "{said}");
    let report =
        std::fs::read_to_string(dir.path().join("mixed.jsonl.sync-report.csv")).expect("report");
    let lines = csv_lines(&report);
    assert!(lines[1].starts_with("ok-1,created,"), "{report}");
    assert!(lines[1].contains(",succeeded,"), "{report}");
    assert_eq!(lines[2], "upd-1,updated,0000001000,succeeded,", "{report}");
    assert!(
        lines[3].starts_with("bad-1,updated,0009999999,failed,"),
        "{report}"
    );
    let customer: Value = reqwest::blocking::Client::new()
        .get(format!("{url}/v1/systems/SIM/customers/0000001000"))
        .bearer_auth(KEY)
        .send()
        .and_then(reqwest::blocking::Response::json)
        .expect("customer");
    assert_eq!(customer["city"], "Mannheim");
}

/// A share the relay enforces: the sync's own API key with `max_in_flight = 1`.
/// More rows in flight than that are answered `429`; each waits for `Retry-After`
/// and goes again, and none is reported failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_with_max_in_flight_holds_the_sync_to_its_share_without_failed_rows() {
    use sapbridge_tests::{TestAgent, TestRelay, simulator};
    let dir = tempfile::tempdir().expect("temp dir");
    let relay = TestRelay::start(json!({
        "api_keys": [{"name": "bulk", "key": KEY, "systems": ["*"], "max_in_flight": 1}],
        "customer_defaults": {
            "reference_customer": "1000", "sales_org": "1000", "distribution_channel": "10",
            "division": "00", "language": "EN", "currency": "EUR",
        },
    }))
    .await
    .expect("relay");
    let sim = simulator(dir.path(), Duration::from_millis(20)).expect("simulator");
    let agent = TestAgent::start(&relay, "agent-1", dir.path(), sim, &["*"], 8).expect("agent");
    let file = dir.path().join("share.csv");
    let mut csv = String::from("ID,NAME,CITY,COUNTRY,SAPNR\n");
    for i in 0..40 {
        csv.push_str(&format!("S{i:03},Share Row {i},Walldorf,DE,\n"));
    }
    std::fs::write(&file, csv).expect("rows");
    let url = relay.url();
    let run = {
        let file = file.clone();
        // The sync's default concurrency (4) is over the key's share (1).
        tokio::task::spawn_blocking(move || finish(spawn_sync(&url, &file)))
    };
    let (status, said) = run.await.expect("sync task");
    assert_eq!(status.code(), Some(0), "{said}");
    assert!(said.contains("40 created"), "{said}");
    let metrics = reqwest::get(format!("{}/metrics", relay.url()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let refused = metrics
        .lines()
        .find(|l| l.starts_with("sapbridge_limit_refusals_total{reason=\"in_flight\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .expect("in_flight refusals");
    println!("429s the sync waited out: {refused}");
    assert!(
        refused > 0.0,
        "the key's share was never reached: {metrics}"
    );
    agent.stop().await.expect("agent");
    relay.stop().await.expect("relay");
}
