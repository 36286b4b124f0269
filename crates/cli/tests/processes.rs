//! The `sapbridge` and `sapbridge-agent` binaries as users run them: `dev` in one
//! process, `relay` and `agent` as two processes configured by TOML files, and bad
//! configuration refused with exit code 64.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_sapbridge");
/// The agent alone (`sapbridge-agent`), the binary for on-premises hosts.
const AGENT_BIN: &str = env!("CARGO_BIN_EXE_sapbridge-agent");
const DEADLINE: Duration = Duration::from_secs(30);

/// A child process that is killed when dropped, so a failing test leaves nothing.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let (tx, rx) = mpsc::channel();
        let mut child = std::mem::replace(&mut self.0, Command::new("true").spawn().expect("true"));
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status = rx
            .recv_timeout(DEADLINE)
            .expect("process did not stop after SIGTERM");
        status.expect("wait")
    }
}

/// Reads a child's output to its end on a thread; the text arrives on the channel,
/// with terminal colour codes removed.
fn collect(output: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut raw = String::new();
        let _ = BufReader::new(output).read_to_string(&mut raw);
        let mut text = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // An escape sequence: `ESC [` parameters, ending with a letter.
                for end in chars.by_ref() {
                    if end.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                text.push(c);
            }
        }
        let _ = tx.send(text);
    });
    rx
}

/// Starts `sapbridge ARGS` and waits for a stdout line starting with `prefix`
/// (after trimming); returns the rest of that line.
fn start(args: &[&str], prefix: &str) -> (Running, String) {
    let (running, rest, _) = start_with_log(args, prefix, None, None);
    (running, rest)
}

/// [`start`], with the process's log at `level` collected (see [`collect`]) instead
/// of passed through at `warn`, and run in `cwd` if given.
fn start_with_log(
    args: &[&str],
    prefix: &str,
    level: Option<&str>,
    cwd: Option<&Path>,
) -> (Running, String, Option<mpsc::Receiver<String>>) {
    let mut command = Command::new(BIN);
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    let mut child = command
        .args(args)
        .env("SAPBRIDGE_LOG", level.unwrap_or("warn"))
        .stdout(Stdio::piped())
        .stderr(if level.is_some() {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .spawn()
        .expect("spawn sapbridge");
    let log = child.stderr.take().map(collect);
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let wanted = prefix.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.trim().strip_prefix(&wanted) {
                let _ = tx.send(rest.trim().to_owned());
            }
        }
    });
    let rest = rx
        .recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("sapbridge {args:?} never printed {prefix:?}"));
    (Running(child), rest, log)
}

async fn call_until_ok(url: &str, key: &str, text: &str) -> Value {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let response = http
            .post(format!("{url}/v1/systems/SIM/functions/STFC_CONNECTION"))
            .bearer_auth(key)
            .header("prefer", "wait=5")
            .json(&json!({"REQUTEXT": text}))
            .send()
            .await;
        if let Ok(r) = response
            && r.status() == 200
        {
            return r.json().await.expect("json body");
        }
        assert!(tokio::time::Instant::now() < deadline, "no 200 from {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn dev_serves_calls_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (dev, url) = start(
        &[
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--api-key",
            "proc-key",
            "--data-dir",
            data.to_str().unwrap(),
            "--public-url",
            "https://relay.example.com/flows",
        ],
        "relay:",
    );
    let body = call_until_ok(&url, "proc-key", "hello").await;
    assert_eq!(body["result"]["ECHOTEXT"], "hello");
    // `--public-url`: Location headers are absolute under it.
    let accepted = reqwest::Client::new()
        .post(format!("{url}/v1/systems/SIM/functions/STFC_CONNECTION"))
        .bearer_auth("proc-key")
        .header("prefer", "respond-async")
        .json(&json!({}))
        .send()
        .await
        .expect("the relay answers");
    assert_eq!(accepted.status(), 202);
    let location = accepted.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with("https://relay.example.com/flows/v1/calls/"),
        "{location}"
    );
    assert!(
        data.join("sim.db").exists(),
        "the simulator keeps its state in the data dir"
    );
    let status = dev.terminate();
    assert!(status.success(), "dev exited with {status}");
}

#[tokio::test]
async fn relay_and_agent_as_two_processes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay_toml = dir.path().join("relay.toml");
    std::fs::write(
        &relay_toml,
        r#"
worker_threads = 5

[[api_keys]]
name = "flows"
key = "two-process-key"
systems = ["*"]

[[agent_tokens]]
name = "plant-1"
token = "two-process-token"
systems = ["SIM"]
"#,
    )
    .expect("write relay.toml");
    let (relay, url, relay_log) = start_with_log(
        &[
            "relay",
            "--config",
            relay_toml.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        "sapbridge relay listening on",
        Some("info"),
        None,
    );
    let ws = format!("{}/v1/agent/connect", url.replacen("http://", "ws://", 1));
    let agent_toml = dir.path().join("agent.toml");
    std::fs::write(
        &agent_toml,
        format!(
            r#"
relay_url = "{ws}"
token_file = "{token}"
agent_id = "plant-1"
data_dir = "{data}"
worker_threads = 3

[[systems]]
name = "SIM"
allow_functions = ["STFC_CONNECTION", "RFC_*"]

[systems.backend]
type = "sim"
db_path = "{data}/sim.db"
latency_ms = 0
fault_rate = 0.0
"#,
            token = dir.path().join("token").display(),
            data = dir.path().join("agent").display(),
        ),
    )
    .expect("write agent.toml");
    std::fs::write(dir.path().join("token"), "two-process-token\n").expect("token file");
    // The agent as `sapbridge agent`, then as the agent-only binary: each serves
    // calls, stops on SIGTERM, and sizes its runtime by the file.
    let config = agent_toml.to_str().unwrap();
    for (program, args) in [
        (BIN, vec!["agent", "--config", config]),
        (AGENT_BIN, vec!["--config", config]),
    ] {
        let mut agent = Running(
            Command::new(program)
                .args(&args)
                .env("SAPBRIDGE_LOG", "info")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn agent"),
        );
        let log = collect(agent.0.stderr.take().expect("stderr"));
        let text = format!("two processes, {program}");
        let body = call_until_ok(&url, "two-process-key", &text).await;
        assert_eq!(body["result"]["ECHOTEXT"], text);
        assert_eq!(body["agent"], "plant-1");
        let status = agent.terminate();
        assert!(status.success(), "{program}: agent exited with {status}");
        let log = log.recv_timeout(DEADLINE).expect("agent log");
        let started = log
            .lines()
            .find(|line| line.contains("agent runtime started"))
            .unwrap_or_else(|| panic!("no runtime line in {program}'s log:\n{log}"));
        assert!(started.contains("worker_threads=3"), "{started}");
    }
    let status = relay.terminate();
    assert!(status.success(), "relay exited with {status}");
    // So was the relay's, by its own file.
    let log = relay_log
        .expect("relay log")
        .recv_timeout(DEADLINE)
        .expect("relay log");
    let started = log
        .lines()
        .find(|line| line.contains("relay runtime started"))
        .unwrap_or_else(|| panic!("no runtime line in the relay's log:\n{log}"));
    assert!(started.contains("worker_threads=5"), "{started}");
}

/// A random secret, as `openssl rand -hex 32` makes one.
fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    hex::encode(bytes)
}

/// The README's "Relay and agent as separate processes" with the shipped files:
/// `deploy/relay.toml` configures no key and no token (the relay refuses it as it
/// is, and with a key but no token), and with a generated key and token appended
/// as their SHA-256, relay and agent (`deploy/agent.toml`) serve a call.
#[tokio::test]
async fn the_shipped_configs_serve_calls_only_with_generated_secrets() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let shipped = std::fs::read_to_string(deploy.join("relay.toml")).expect("relay.toml");
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, token) = (random_secret(), random_secret());
    let sha256 = |secret: &str| hex::encode(Sha256::digest(secret.as_bytes()));
    let key_entry = format!(
        "[[api_keys]]\nname = \"walkthrough\"\nkey_sha256 = \"{}\"\nsystems = [\"SIM\"]\n",
        sha256(&key)
    );
    let token_entry = format!(
        "[[agent_tokens]]\nname = \"walkthrough-agent\"\ntoken_sha256 = \"{}\"\nsystems = [\"SIM\"]\n",
        sha256(&token)
    );
    let refusals = [
        (String::new(), "no api_keys configured"),
        (key_entry.clone(), "no agent_tokens configured"),
    ];
    for (added, refusal) in refusals {
        let path = dir.path().join("refused.toml");
        std::fs::write(&path, format!("{shipped}\n{added}")).expect("write");
        let mut relay = Running(
            Command::new(BIN)
                .args(["relay", "--config", path.to_str().unwrap()])
                .args(["--listen", "127.0.0.1:0"])
                .current_dir(dir.path())
                .env("SAPBRIDGE_LOG", "off")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn relay"),
        );
        let stderr = collect(relay.0.stderr.take().expect("stderr"));
        // The text ends when the process does: a relay that started never ends it.
        let stderr = stderr
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("the relay started without {refusal:?}"));
        assert_eq!(relay.0.wait().expect("wait").code(), Some(64), "{stderr}");
        assert!(stderr.contains(refusal), "{stderr}");
    }

    let relay_toml = dir.path().join("relay.toml");
    std::fs::write(
        &relay_toml,
        format!("{shipped}\n{key_entry}\n{token_entry}"),
    )
    .expect("write");
    let (relay, url, _) = start_with_log(
        &[
            "relay",
            "--config",
            relay_toml.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            // The shipped file's queue is under /var/lib (the units' and images'
            // state directory); as in the README, the walkthrough's is local.
            "--set",
            "queue.path=relay.db",
        ],
        "sapbridge relay listening on",
        None,
        Some(dir.path()),
    );
    let ws = format!("{}/v1/agent/connect", url.replacen("http://", "ws://", 1));
    let agent_toml = deploy.join("agent.toml");
    let agent = Running(
        Command::new(AGENT_BIN)
            .args(["--config", agent_toml.to_str().unwrap(), "--relay-url", &ws])
            .current_dir(dir.path())
            .env("SAPBRIDGE_AGENT_TOKEN", &token)
            .env("SAPBRIDGE_DATA_DIR", "agent-data")
            .env("SAPBRIDGE_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn agent"),
    );
    let body = call_until_ok(&url, &key, "two processes").await;
    assert_eq!(body["result"]["ECHOTEXT"], "two processes");
    assert!(dir.path().join("agent-data/journal.db").exists());
    assert!(
        dir.path().join("relay.db").exists(),
        "queue not where --set put it"
    );
    assert!(agent.terminate().success());
    assert!(relay.terminate().success());
}

#[test]
fn bad_config_exits_64_with_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (BIN, Some("relay"), "no_such_field = 1\n"),
        (
            BIN,
            Some("relay"),
            "[[api_keys]]\nname = \"k\"\nsystems = [\"*\"]\n",
        ),
        (
            BIN,
            Some("agent"),
            "relay_url = \"ftp://x\"\ntoken = \"t\"\n",
        ),
        (AGENT_BIN, None, "relay_url = \"ftp://x\"\ntoken = \"t\"\n"),
        (AGENT_BIN, None, "[[systems]]\nname = 1\n"),
    ];
    for (i, (program, command, text)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, text).expect("write");
        let out = Command::new(program)
            .args(command.iter().copied())
            .args(["--config", path.to_str().unwrap()])
            .env("SAPBRIDGE_LOG", "off")
            .output()
            .expect("run");
        assert_eq!(
            out.status.code(),
            Some(64),
            "{program} {command:?} {text:?}: {out:?}"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("configuration error"), "{stderr}");
    }
}

#[tokio::test]
async fn dev_reaches_sapbridge_sim_over_soap_rfc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let password = dir.path().join("pw");
    std::fs::write(&password, "sim-secret\n").expect("password file");
    let sim_data = dir.path().join("sim");
    let (sim, soap_url) = start(
        &[
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            sim_data.to_str().unwrap(),
            "--user",
            "RFCUSER",
            "--password-file",
            password.to_str().unwrap(),
        ],
        "sapbridge sim serving SOAP-RFC on",
    );
    let base = soap_url.trim_end_matches("/sap/bc/soap/rfc").to_owned() + "/";
    let data = dir.path().join("dev");
    let (dev, url) = start(
        &[
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--api-key",
            "soap-key",
            "--data-dir",
            data.to_str().unwrap(),
            "--sap-url",
            &base,
            "--sap-user",
            "RFCUSER",
            "--sap-password-file",
            password.to_str().unwrap(),
        ],
        "relay:",
    );
    let body = call_until_ok(&url, "soap-key", "via soap").await;
    assert_eq!(body["result"]["ECHOTEXT"], "via soap");
    assert!(
        !data.join("sim.db").exists(),
        "dev must not open an embedded simulator when --sap-url is given"
    );
    let table = reqwest::Client::new()
        .post(format!("{url}/v1/systems/SIM/functions/RFC_READ_TABLE"))
        .bearer_auth("soap-key")
        .json(&json!({"QUERY_TABLE": "KNA1", "DELIMITER": "|", "FIELDS": [{"FIELDNAME": "KUNNR"}]}))
        .send()
        .await
        .expect("read table");
    assert_eq!(table.status(), 200);
    let table: Value = table.json().await.expect("json");
    assert!(
        table["result"]["DATA"]
            .as_array()
            .is_some_and(|rows| rows.len() >= 5),
        "{table}"
    );
    assert!(dev.terminate().success());
    assert!(sim.terminate().success());
}

/// The README's quick start is `cargo run --release -- dev`: with two binaries in
/// the package, cargo needs `default-run` to know it means `sapbridge`.
#[test]
fn cargo_run_means_the_full_binary() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("read Cargo.toml");
    let manifest: toml::Table = manifest.parse().expect("Cargo.toml is TOML");
    assert_eq!(
        manifest["package"]
            .get("default-run")
            .and_then(|v| v.as_str()),
        Some("sapbridge")
    );
}

/// The relay's first log lines, up to the one saying it serves, with `args`.
fn relay_log_lines(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let toml = dir.join("relay.toml");
    std::fs::write(
        &toml,
        "[[api_keys]]\nname = \"flows\"\nkey = \"log-key\"\nsystems = [\"*\"]\n\n\
         [[agent_tokens]]\nname = \"plant\"\ntoken = \"log-token\"\nsystems = [\"SIM\"]\n",
    )
    .unwrap();
    let mut command = Command::new(BIN);
    command
        .args([
            "relay",
            "--config",
            toml.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(args)
        .env("SAPBRIDGE_LOG", "info")
        .env_remove("SAPBRIDGE_LOG_FORMAT")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = Running(command.spawn().unwrap());
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.contains("relay serving")) {
        lines.push(
            rx.recv_timeout(DEADLINE)
                .expect("the relay logs that it serves"),
        );
    }
    lines
}

#[test]
fn the_log_is_plain_on_a_pipe_and_one_json_object_a_line_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    // stderr is a pipe here, not a terminal: no colour codes.
    let text = relay_log_lines(dir.path(), &[], &[]);
    assert!(text.iter().all(|l| !l.contains('\u{1b}')), "{text:?}");

    for (args, env) in [
        (vec!["--log-format", "json"], vec![]),
        (vec![], vec![("SAPBRIDGE_LOG_FORMAT", "json")]),
    ] {
        let lines = relay_log_lines(dir.path(), &args, &env);
        for line in &lines {
            let object: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"));
            assert!(object["timestamp"].is_string(), "{line}");
            assert!(object["level"].is_string(), "{line}");
            assert!(object["fields"]["message"].is_string(), "{line}");
        }
        assert!(
            lines.iter().any(|l| l.contains("\"level\":\"INFO\"")),
            "{lines:?}"
        );
    }
}

/// The relay file of the reload test: `keys` and `tokens` as (name, secret).
fn keys_toml(keys: &[(&str, &str)], tokens: &[(&str, &str)]) -> String {
    let mut text = String::new();
    for (name, key) in keys {
        text.push_str(&format!(
            "[[api_keys]]\nname = \"{name}\"\nkey = \"{key}\"\nsystems = [\"*\"]\n\n"
        ));
    }
    for (name, token) in tokens {
        text.push_str(&format!(
            "[[agent_tokens]]\nname = \"{name}\"\ntoken = \"{token}\"\nsystems = [\"SIM\"]\n\n"
        ));
    }
    text
}

/// Starts `sapbridge-agent` as `agent_id` with `token`, serving SIM.
fn reload_agent(dir: &Path, ws: &str, agent_id: &str, token: &str) -> Running {
    let data = dir.join(agent_id);
    let config = dir.join(format!("{agent_id}.toml"));
    std::fs::write(
        &config,
        format!(
            "relay_url = \"{ws}\"\ntoken = \"{token}\"\nagent_id = \"{agent_id}\"\n\
             data_dir = \"{data}\"\nbackoff_initial_ms = 50\nbackoff_max_ms = 200\n\n\
             [[systems]]\nname = \"SIM\"\nallow_functions = [\"STFC_CONNECTION\"]\n\
             backend = {{ type = \"sim\", db_path = \"{data}/sim.db\" }}\n",
            data = data.display()
        ),
    )
    .unwrap();
    Running(
        Command::new(AGENT_BIN)
            .args(["--config", config.to_str().unwrap()])
            .env("SAPBRIDGE_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// `GET /v1/systems` with `key`: the status, and SIM's agents by id with their
/// session ids.
async fn sim_agents(url: &str, key: &str) -> (u16, Vec<(String, String)>) {
    let response = reqwest::Client::new()
        .get(format!("{url}/v1/systems"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let mut agents: Vec<(String, String)> = sapbridge_tests::agents_of(&body, "SIM")
        .into_iter()
        .map(|a| {
            (
                a["agent_id"].as_str().unwrap_or_default().to_owned(),
                a["session_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    agents.sort();
    (status, agents)
}

/// Polls [`sim_agents`] until `done` holds.
async fn wait_agents(
    url: &str,
    key: &str,
    done: impl Fn(u16, &[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (status, agents) = sim_agents(url, key).await;
        if done(status, &agents) {
            return agents;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{status}: {agents:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn keys_and_tokens_reload_on_sighup_and_only_revoked_agents_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("relay.toml");
    std::fs::write(
        &toml,
        keys_toml(
            &[("old", "key-old-0123456789")],
            &[
                ("stays", "tok-stays-0123456789"),
                ("goes", "tok-goes-0123456789"),
            ],
        ),
    )
    .unwrap();
    let (relay, url) = start(
        &[
            "relay",
            "--config",
            toml.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        "sapbridge relay listening on",
    );
    let ws = format!("{}/v1/agent/connect", url.replacen("http://", "ws://", 1));
    let _stays = reload_agent(dir.path(), &ws, "stays", "tok-stays-0123456789");
    let _goes = reload_agent(dir.path(), &ws, "goes", "tok-goes-0123456789");
    let before = wait_agents(&url, "key-old-0123456789", |status, agents| {
        status == 200 && agents.len() == 2
    })
    .await;

    // A new key instead of the old one; the "goes" token revoked.
    std::fs::write(
        &toml,
        keys_toml(
            &[("new", "key-new-0123456789")],
            &[("stays", "tok-stays-0123456789")],
        ),
    )
    .unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &relay.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let after = wait_agents(&url, "key-new-0123456789", |status, agents| {
        status == 200 && agents.len() == 1
    })
    .await;
    assert_eq!(
        after,
        vec![before.iter().find(|(id, _)| id == "stays").unwrap().clone()],
        "the agent whose token stays keeps its session; the revoked one is gone"
    );
    assert_eq!(sim_agents(&url, "key-old-0123456789").await.0, 401);
    let body = call_until_ok(&url, "key-new-0123456789", "after the reload").await;
    assert_eq!(body["agent"], "stays");

    // A file that does not validate changes nothing.
    std::fs::write(&toml, "[[api_keys]]\nname = \"broken\"\n").unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &relay.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let body = call_until_ok(&url, "key-new-0123456789", "still").await;
    assert_eq!(body["agent"], "stays");
    // The revoked agent stays out.
    assert_eq!(
        sim_agents(&url, "key-new-0123456789").await.1.len(),
        1,
        "the revoked token cannot come back"
    );
}

#[test]
fn completions_cover_every_command_and_parse_as_shell_scripts() {
    let output = Command::new(BIN)
        .args(["completions", "bash"])
        .output()
        .expect("completions");
    assert!(output.status.success());
    let script = String::from_utf8(output.stdout).unwrap();
    for word in [
        "dev",
        "relay",
        "agent",
        "doctor",
        "sim",
        "keys",
        "--log-format",
        "--config",
    ] {
        assert!(script.contains(word), "bash completions lack {word}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sapbridge.bash");
    std::fs::write(&file, &script).unwrap();
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&file)
        .status()
        .expect("bash");
    assert!(syntax.success(), "bash -n refused the script");
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        let output = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(
            output.status.success() && !output.stdout.is_empty(),
            "{shell}"
        );
    }
    let unknown = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(
        unknown.status.code(),
        Some(2),
        "clap refuses an unknown shell"
    );
}

#[test]
fn dev_says_it_is_running_only_once_its_relay_serves() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A directory where the relay's store file goes: the store cannot open.
    std::fs::create_dir_all(data.join("relay.db")).unwrap();
    let mut child = Running(
        Command::new(BIN)
            .args(["dev", "--listen", "127.0.0.1:0", "--api-key", "k"])
            .arg("--data-dir")
            .arg(&data)
            .env("SAPBRIDGE_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = collect(child.0.stdout.take().unwrap());
    let stderr = collect(child.0.stderr.take().unwrap());
    let deadline = std::time::Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "dev did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.recv_timeout(DEADLINE).unwrap();
    let stderr = stderr.recv_timeout(DEADLINE).unwrap();
    assert!(!status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains("is running"), "{stdout}");
    assert!(
        stderr.contains("relay.db"),
        "the reason names the store: {stderr}"
    );
}
