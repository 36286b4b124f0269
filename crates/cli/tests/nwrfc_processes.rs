//! The `nwrfc` backend end to end with real processes: a relay and the
//! `sapbridge-agent` binary configured with `type = "nwrfc"` systems on the stub
//! library (SAP's NW RFC C interface over the simulator). A call goes through; a
//! system whose library is missing is reported as unavailable, at start and per
//! call, while the agent serves its other systems; and a tRFC unit whose agent is
//! killed (-9) after SAP committed it, before the agent recorded it, creates
//! exactly one customer when the next agent resubmits it.

#[path = "../../nwrfc/tests/fixtures/stub_library.rs"]
mod stub_library;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use sapbridge_sap::sim::{SIM_PASSWORD, SIM_USER, SimOptions, Simulator};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_sapbridge");
const AGENT_BIN: &str = env!("CARGO_BIN_EXE_sapbridge-agent");
const DEADLINE: Duration = Duration::from_secs(30);
const KEY: &str = "nwrfc-key";

/// A child process, killed (SIGKILL) when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the relay on a free port; returns it and its URL.
fn relay(dir: &Path) -> (Running, String) {
    let toml = dir.join("relay.toml");
    std::fs::write(
        &toml,
        format!(
            "[[api_keys]]\nname = \"flows\"\nkey = \"{KEY}\"\nsystems = [\"*\"]\n\n\
             [[agent_tokens]]\nname = \"plant\"\ntoken = \"nwrfc-token\"\nsystems = [\"RFC\", \"GONE\", \"SIM\"]\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args([
            "relay",
            "--config",
            toml.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .env("SAPBRIDGE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.trim().strip_prefix("sapbridge relay listening on") {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    let url = rx.recv_timeout(DEADLINE).expect("the relay listens");
    (Running(child), url)
}

/// Writes the agent's file: `RFC` on the stub (tRFC for customer creation),
/// `GONE` on a library that does not exist, `SIM` on the simulator.
fn agent_toml(dir: &Path, relay_url: &str, db: &Path) -> std::path::PathBuf {
    let password = dir.join("sap.password");
    std::fs::write(&password, format!("{SIM_PASSWORD}\n")).unwrap();
    let ws = format!(
        "{}/v1/agent/connect",
        relay_url.replacen("http://", "ws://", 1)
    );
    let text = format!(
        r#"
relay_url = "{ws}"
token = "nwrfc-token"
agent_id = "plant-rfc"
data_dir = "{data}"
backoff_initial_ms = 50
backoff_max_ms = 200

[[systems]]
name = "RFC"
allow_functions = ["STFC_CONNECTION", "BAPI_CUSTOMER_*", "BAPI_TRANSACTION_*"]
[systems.backend]
type = "nwrfc"
library = "{library}"
ashost = "{db}"
sysnr = "00"
client = "001"
user = "{SIM_USER}"
password_file = "{password}"
timeout_secs = 20
trfc_functions = ["BAPI_CUSTOMER_CREATEFROMDATA1"]

[[systems]]
name = "GONE"
allow_functions = ["STFC_CONNECTION"]
[systems.backend]
type = "nwrfc"
library = "{gone}"
ashost = "sap.example.com"
sysnr = "00"
client = "001"
user = "RFC"
password_env = "UNUSED_PASSWORD"

[[systems]]
name = "SIM"
allow_functions = ["STFC_CONNECTION"]
backend = {{ type = "sim", db_path = "{sim}" }}
"#,
        data = dir.join("agent").display(),
        library = stub_library::stub_library().display(),
        db = db.display(),
        password = password.display(),
        gone = dir.join("no-sdk/libsapnwrfc.so").display(),
        sim = dir.join("sim-only.db").display(),
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts `sapbridge-agent`; its log (stderr) arrives line by line on the channel.
fn agent(config: &Path, submit_delay_ms: u64) -> (Running, mpsc::Receiver<String>) {
    let mut child = Command::new(AGENT_BIN)
        .args(["--config", config.to_str().unwrap()])
        .env("SAPBRIDGE_LOG", "info")
        .env(
            "SAPBRIDGE_STUB_SUBMIT_DELAY_MS",
            submit_delay_ms.to_string(),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (Running(child), rx)
}

/// POSTs until the relay stops answering 503 (no agent yet); returns status and body.
async fn post(url: &str, path: &str, body: &Value, prefer: &str) -> (u16, Value) {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let response = http
            .post(format!("{url}{path}"))
            .bearer_auth(KEY)
            .header("prefer", prefer)
            .json(body)
            .send()
            .await
            .expect("the relay answers");
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status != 503 {
            return (status, body);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no agent came: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn calls_reach_sap_over_rfc_and_a_missing_sdk_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rfc.db");
    let (_relay, url) = relay(dir.path());
    let config = agent_toml(dir.path(), &url, &db);
    let (_agent, log) = agent(&config, 0);

    let (status, body) = post(
        &url,
        "/v1/systems/RFC/functions/STFC_CONNECTION",
        &json!({"REQUTEXT": "über RFC"}),
        "wait=20",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["ECHOTEXT"], "über RFC");
    assert_eq!(body["agent"], "plant-rfc");

    let (status, body) = post(
        &url,
        "/v1/systems/SIM/functions/STFC_CONNECTION",
        &json!({"REQUTEXT": "sim"}),
        "wait=20",
    )
    .await;
    assert_eq!(status, 200, "the agent serves its other systems: {body}");

    let (status, body) = post(
        &url,
        "/v1/systems/GONE/functions/STFC_CONNECTION",
        &json!({}),
        "wait=20",
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["rfc_error"]["key"], "NWRFC_UNAVAILABLE", "{body}");
    let message = body["rfc_error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("no-sdk/libsapnwrfc.so"), "{message}");

    // Said at start, not only at the first call.
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let line = log
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .expect("the agent logs why GONE is unavailable");
        if line.contains("system GONE is unavailable") {
            assert!(line.contains("no-sdk/libsapnwrfc.so"), "{line}");
            break;
        }
    }
}

#[tokio::test]
async fn a_trfc_unit_killed_after_sap_committed_it_creates_one_customer() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rfc.db");
    let sim = Simulator::open(&db, SimOptions::default()).unwrap();
    let before = sim.customer_count().unwrap();
    let (_relay, url) = relay(dir.path());
    let config = agent_toml(dir.path(), &url, &db);
    // The first agent's stub waits 60 s after committing the unit: it is killed
    // in that window, before it journals the outcome or confirms the TID.
    let (mut first, _log) = agent(&config, 60_000);
    let unit = json!({"calls": [{"function": "BAPI_CUSTOMER_CREATEFROMDATA1", "parameters": {
        "PI_COMPANYDATA": {"NAME": "Exactly Once GmbH", "CITY": "Walldorf", "POSTL_COD1": "69190",
            "COUNTRY": "DE", "LANGU": "D", "CURRENCY": "EUR"},
        "PI_COPYREFERENCE": {"SALESORG": "1000", "DISTR_CHAN": "10", "DIVISION": "00", "REF_CUSTMR": "0000001000"}
    }}], "commit": true});
    let (status, body) = post(&url, "/v1/systems/RFC/transactions", &unit, "respond-async").await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().expect("a call id").to_owned();

    let deadline = std::time::Instant::now() + DEADLINE;
    while sim.customer_count().unwrap() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "SAP never committed the unit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.0.kill().unwrap();
    first.0.wait().unwrap();

    let (_second, _log) = agent(&config, 0);
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let done = loop {
        let response = http
            .get(format!("{url}/v1/calls/{id}"))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        if response.status() != 202 {
            assert_eq!(response.status(), 200);
            break response.json::<Value>().await.unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the call never finished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["committed"], true, "{done}");
    assert_eq!(done["attempts"], 2, "the second agent ran it: {done}");
    assert_eq!(
        sim.customer_count().unwrap(),
        before + 1,
        "one customer, not two: {done}"
    );
}

/// What `GET /v1/systems` shows of the agent's logon to `system`, once `done`
/// accepts it (polled: the agent reports it after the call that found it).
async fn wait_for_logon(url: &str, system: &str, done: impl Fn(&Value) -> bool) -> Value {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let body: Value = http
            .get(format!("{url}/v1/systems"))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let logon = sapbridge_tests::agents_of(&body, system)
            .first()
            .map_or(Value::Null, |a| a["logon"].clone());
        if done(&logon) {
            return logon;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{system}: logon shows {logon}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_refused_password_shows_in_systems_until_the_password_is_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rfc.db");
    let (_relay, url) = relay(dir.path());
    let config = agent_toml(dir.path(), &url, &db);
    let password = dir.path().join("sap.password");
    std::fs::write(&password, "wrong-password\n").unwrap();
    let (agent_process, _log) = agent(&config, 0);

    for _ in 0..2 {
        let (status, body) = post(
            &url,
            "/v1/systems/RFC/functions/STFC_CONNECTION",
            &json!({}),
            "wait=20",
        )
        .await;
        assert_eq!(status, 502, "{body}");
        assert_eq!(body["rfc_error"]["group"], "LOGON_FAILURE", "{body}");
    }
    let logon = wait_for_logon(&url, "RFC", |l| l["state"] == "blocked").await;
    let reason = logon["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("password"), "SAP's reason: {logon}");
    assert!(logon["since"].is_string(), "{logon}");
    assert!(!logon.to_string().contains("wrong-password"), "{logon}");

    // An operator lifts the block (SIGHUP, as `systemctl reload` sends): it shows
    // at once, and the next call logs on again — once, and is refused again.
    let hup = Command::new("kill")
        .args(["-HUP", &agent_process.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_for_logon(&url, "RFC", |l| l["state"] == "open").await;
    let (status, body) = post(
        &url,
        "/v1/systems/RFC/functions/STFC_CONNECTION",
        &json!({}),
        "wait=20",
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        body["rfc_error"]["key"], "RFC_LOGON_FAILURE",
        "SAP answered: {body}"
    );
    wait_for_logon(&url, "RFC", |l| l["state"] == "blocked").await;
    // The simulator does not log on: nothing is said of it.
    let (status, _) = post(
        &url,
        "/v1/systems/SIM/functions/STFC_CONNECTION",
        &json!({}),
        "wait=20",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        wait_for_logon(&url, "SIM", |_| true).await,
        Value::Null,
        "the simulator has no logon"
    );

    // The password is fixed in its file: the next call logs on, and says so.
    std::fs::write(&password, format!("{SIM_PASSWORD}\n")).unwrap();
    let (status, body) = post(
        &url,
        "/v1/systems/RFC/functions/STFC_CONNECTION",
        &json!({"REQUTEXT": "fixed"}),
        "wait=20",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    wait_for_logon(&url, "RFC", |l| l["state"] == "open").await;
}
