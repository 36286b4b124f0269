//! `sapbridge keys list|create|revoke` and `sapbridge keys tokens …` against a
//! `sapbridge relay` process whose file has only an operator key (no agent
//! token): a token created with the CLI lets a `sapbridge-agent` process serve
//! SIM, a key created with the CLI calls it, both show as used, revoking them
//! refuses them; refusals are one line with exit code ≠ 0, the secrets printed
//! once and never echoed.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sapbridge_tests::{Proc, free_port};

const OPS_KEY: &str = "keys-admin-operator-key";

/// Runs `sapbridge ARGS` against `url` with `key` in the environment.
fn sapbridge(url: &str, key: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sapbridge"))
        .args(args)
        .env("SAPBRIDGE_URL", url)
        .env("SAPBRIDGE_API_KEY", key)
        .env_remove("SAPBRIDGE_CLIENT_CONFIG")
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .output()
        .expect("run sapbridge")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exit code")
}

fn start_relay(dir: &Path) -> (Proc, String) {
    let toml = dir.join("relay.toml");
    std::fs::write(
        &toml,
        format!(
            "[[api_keys]]\nname = \"ops\"\nkey = \"{OPS_KEY}\"\nsystems = [\"*\"]\n\
             operator = true\n\n[queue]\nstore = \"sqlite\"\npath = \"relay.db\"\n"
        ),
    )
    .expect("write relay.toml");
    let port = free_port().expect("port");
    let relay = Proc::spawn_ready(
        Command::new(env!("CARGO_BIN_EXE_sapbridge"))
            .args(["relay", "--config", toml.to_str().expect("path")])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("SAPBRIDGE_LOG", "warn"),
        "sapbridge relay listening on",
        Duration::from_secs(60),
    )
    .expect("sapbridge relay without agent tokens, with an operator key");
    (relay, format!("http://127.0.0.1:{port}"))
}

fn start_agent(dir: &Path, url: &str, token: &str) -> Proc {
    let data = dir.join("agent");
    let config = dir.join("agent.toml");
    let ws = format!("{}/v1/agent/connect", url.replacen("http://", "ws://", 1));
    std::fs::write(
        &config,
        format!(
            "relay_url = \"{ws}\"\ntoken = \"{token}\"\nagent_id = \"plant-cli\"\n\
             data_dir = \"{data}\"\nbackoff_initial_ms = 50\nbackoff_max_ms = 200\n\n\
             [[systems]]\nname = \"SIM\"\nallow_functions = [\"STFC_CONNECTION\"]\n\
             backend = {{ type = \"sim\", db_path = \"{data}/sim.db\" }}\n",
            data = data.display()
        ),
    )
    .expect("write agent.toml");
    Proc::spawn(
        Command::new(env!("CARGO_BIN_EXE_sapbridge-agent"))
            .args(["--config", config.to_str().expect("path")])
            .env("SAPBRIDGE_LOG", "error")
            .stderr(Stdio::null()),
    )
    .expect("sapbridge-agent")
}

/// `keys list` / `keys tokens list` until the row of `name` passes `wanted`.
fn row_until(url: &str, list: &[&str], name: &str, wanted: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = sapbridge(url, OPS_KEY, list);
        assert_eq!(code(&listed), 0, "{listed:?}");
        let text = stdout(&listed);
        let row = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_default()
            .to_owned();
        if wanted(&row) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{name}'s row never passed: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn keys_and_tokens_are_managed_through_a_running_relay() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_relay, url) = start_relay(dir.path());

    // An agent token, printed alone on stdout, once.
    let created = sapbridge(
        &url,
        OPS_KEY,
        &["keys", "tokens", "create", "plant-cli", "--system", "SIM"],
    );
    assert_eq!(code(&created), 0, "{created:?}");
    let token = stdout(&created).trim().to_owned();
    assert!(
        token.starts_with("sbt_") && !token.contains('\n'),
        "{token}"
    );
    assert!(stderr(&created).contains("shown this once"), "{created:?}");
    let _agent = start_agent(dir.path(), &url, &token);

    // An API key for the system the token brought.
    let created = sapbridge(
        &url,
        OPS_KEY,
        &["keys", "create", "flow-cli", "--system", "SIM"],
    );
    assert_eq!(code(&created), 0, "{created:?}");
    let key = stdout(&created).trim().to_owned();
    assert!(key.starts_with("sbk_"), "{key}");
    let called = sapbridge(
        &url,
        &key,
        &[
            "call",
            "SIM",
            "STFC_CONNECTION",
            "REQUTEXT=via cli",
            "--timeout",
            "30",
        ],
    );
    assert_eq!(code(&called), 0, "{called:?}");
    assert!(stdout(&called).contains("ECHOTEXT: via cli"), "{called:?}");

    // Listed as tables, used, never a secret.
    // The last column, LAST USED, holds a time.
    let used = |row: &str| row.split_whitespace().last().is_some_and(|c| c != "-");
    let keys = row_until(&url, &["keys", "list"], "flow-cli", used);
    assert!(keys.starts_with("NAME"), "{keys}");
    assert!(
        keys.contains("ops") && keys.contains("configuration"),
        "{keys}"
    );
    assert!(!keys.contains(&key) && !keys.contains(OPS_KEY), "{keys}");
    let tokens = row_until(&url, &["keys", "tokens", "list"], "plant-cli", used);
    assert!(!tokens.contains(&token), "{tokens}");
    let json = sapbridge(
        &url,
        OPS_KEY,
        &["keys", "tokens", "list", "--output", "json"],
    );
    let body: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(body["items"][0]["name"], "plant-cli", "{body}");
    assert!(body["items"][0]["last_used_at"].is_string(), "{body}");

    // Refusals: one line on stderr, exit code by kind.
    let taken = sapbridge(
        &url,
        OPS_KEY,
        &["keys", "create", "flow-cli", "--system", "SIM"],
    );
    assert_eq!(code(&taken), 1, "{taken:?}");
    assert_eq!(stderr(&taken).lines().count(), 1, "{taken:?}");
    assert!(stderr(&taken).starts_with("sapbridge: 409 "), "{taken:?}");
    let wildcard = sapbridge(
        &url,
        OPS_KEY,
        &["keys", "tokens", "create", "any", "--system", "*"],
    );
    assert_eq!(code(&wildcard), 1, "{wildcard:?}");
    let not_operator = sapbridge(&url, &key, &["keys", "list"]);
    assert_eq!(code(&not_operator), 3, "{not_operator:?}");
    assert!(stderr(&not_operator).contains("403"), "{not_operator:?}");
    let wrong = sapbridge(&url, "wrong-key-123", &["keys", "tokens", "list"]);
    assert_eq!(code(&wrong), 3, "{wrong:?}");
    assert!(!stderr(&wrong).contains("wrong-key-123"), "{wrong:?}");
    let no_url = Command::new(env!("CARGO_BIN_EXE_sapbridge"))
        .args(["keys", "list"])
        .env_remove("SAPBRIDGE_URL")
        .env("SAPBRIDGE_API_KEY", OPS_KEY)
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .env_remove("SAPBRIDGE_CLIENT_CONFIG")
        .output()
        .expect("run");
    assert_eq!(code(&no_url), 64, "{no_url:?}");

    // Revoked: the key is refused, the token's agent is gone and SIM with it.
    let revoked = sapbridge(&url, OPS_KEY, &["keys", "revoke", "flow-cli"]);
    assert_eq!(code(&revoked), 0, "{revoked:?}");
    let refused = sapbridge(&url, &key, &["call", "SIM", "STFC_CONNECTION"]);
    assert_eq!(code(&refused), 3, "{refused:?}");
    let again = sapbridge(&url, OPS_KEY, &["keys", "revoke", "flow-cli"]);
    assert_eq!(code(&again), 3, "{again:?}");
    assert!(stderr(&again).starts_with("sapbridge: 404 "), "{again:?}");
    let configured = sapbridge(&url, OPS_KEY, &["keys", "revoke", "ops"]);
    assert_eq!(code(&configured), 1, "{configured:?}");
    let revoked = sapbridge(&url, OPS_KEY, &["keys", "tokens", "revoke", "plant-cli"]);
    assert_eq!(code(&revoked), 0, "{revoked:?}");
    let unknown = sapbridge(&url, OPS_KEY, &["call", "SIM", "STFC_CONNECTION"]);
    assert_eq!(code(&unknown), 3, "SIM is no longer known: {unknown:?}");
    // Listed as revoked: the REVOKED column (third from the end) holds a time.
    row_until(&url, &["keys", "tokens", "list"], "plant-cli", |row| {
        let cells: Vec<&str> = row.split_whitespace().collect();
        cells.len() >= 3 && cells[cells.len() - 3] != "-"
    });

    // The offline entry still works.
    let entry = Command::new(env!("CARGO_BIN_EXE_sapbridge"))
        .args([
            "keys", "new", "--token", "--name", "offline", "--system", "SIM",
        ])
        .output()
        .expect("run");
    assert_eq!(code(&entry), 0, "{entry:?}");
    assert!(stdout(&entry).contains("[[agent_tokens]]"), "{entry:?}");
}
