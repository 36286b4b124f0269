//! `sapbridge call` and `sapbridge customers` against a `sapbridge dev` process:
//! what they print, and their exit codes by outcome.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use sapbridge_tests::{Proc, free_port};
use serde_json::Value;

const KEY: &str = "client-test-key";

/// `sapbridge dev` with `latency_ms` per simulated call; its URL once running.
fn start_dev(dir: &Path, latency_ms: u64) -> (Proc, String) {
    let port = free_port().expect("port");
    let mut command = Command::new(env!("CARGO_BIN_EXE_sapbridge"));
    command
        .args(["dev", "--api-key", KEY])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--sim-latency-ms", &latency_ms.to_string()])
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

/// Runs `sapbridge ARGS` against `url` with the key in the environment.
fn sapbridge(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sapbridge"))
        .args(args)
        .env("SAPBRIDGE_URL", url)
        .env("SAPBRIDGE_API_KEY", KEY)
        .env_remove("SAPBRIDGE_CLIENT_CONFIG")
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .output()
        .expect("run sapbridge")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exit code")
}

#[test]
fn calls_and_customers_print_their_answer_and_exit_by_outcome() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_dev, url) = start_dev(dir.path(), 0);

    let ok = sapbridge(
        &url,
        &["call", "SIM", "STFC_CONNECTION", "REQUTEXT=hello cli"],
    );
    assert_eq!(code(&ok), 0, "{ok:?}");
    assert!(
        stdout(&ok).contains("ECHOTEXT: hello cli"),
        "{}",
        stdout(&ok)
    );

    let json = sapbridge(
        &url,
        &[
            "call",
            "SIM",
            "RFC_READ_TABLE",
            "QUERY_TABLE=KNA1",
            "FIELDS:=[{\"FIELDNAME\":\"KUNNR\"}]",
            "ROWCOUNT:=1",
            "--output",
            "json",
        ],
    );
    assert_eq!(code(&json), 0, "{json:?}");
    let body: Value = serde_json::from_slice(&json.stdout).expect("JSON output");
    assert_eq!(body["status"], "succeeded");
    assert_eq!(body["result"]["DATA"].as_array().map(Vec::len), Some(1));

    let failed = sapbridge(&url, &["call", "SIM", "Z_DOES_NOT_EXIST"]);
    assert_eq!(code(&failed), 1, "{failed:?}");
    assert!(
        stdout(&failed).contains("FU_NOT_FOUND"),
        "{}",
        stdout(&failed)
    );

    let unknown = sapbridge(&url, &["call", "NOPE", "RFC_PING"]);
    assert_eq!(code(&unknown), 3, "{unknown:?}");

    let wrong_key = Command::new(env!("CARGO_BIN_EXE_sapbridge"))
        .args(["call", "SIM", "RFC_PING", "--url", &url])
        .env("SAPBRIDGE_API_KEY", "wrong")
        .output()
        .expect("run");
    assert_eq!(code(&wrong_key), 3, "{wrong_key:?}");
    let text = String::from_utf8_lossy(&wrong_key.stdout);
    assert!(text.contains("401"), "{text}");
    assert!(
        !text.contains("wrong"),
        "the key must not be echoed: {text}"
    );

    let closed = format!("http://127.0.0.1:{}", free_port().expect("port"));
    let unreachable = sapbridge(&closed, &["call", "SIM", "RFC_PING"]);
    assert_eq!(code(&unreachable), 5, "{unreachable:?}");
    let said = String::from_utf8_lossy(&unreachable.stderr);
    assert!(said.contains(&closed), "names the URL: {said}");

    let usage = sapbridge(&url, &["call", "SIM", "RFC_PING", "NOVALUE"]);
    assert_eq!(code(&usage), 64, "{usage:?}");

    // Customers: create (idempotent), read, change, search.
    let create = |key: &str| {
        sapbridge(
            &url,
            &[
                "customers",
                "create",
                "SIM",
                "name=CLI Test GmbH",
                "city=Walldorf",
                "country=DE",
                "--idempotency-key",
                key,
                "--output",
                "json",
            ],
        )
    };
    let created = create("cli-create-1");
    assert_eq!(code(&created), 0, "{created:?}");
    let customer: Value = serde_json::from_slice(&created.stdout).expect("JSON");
    let number = customer["customer"].as_str().expect("number").to_owned();
    let again: Value = serde_json::from_slice(&create("cli-create-1").stdout).expect("JSON");
    assert_eq!(again["customer"], number.as_str(), "one customer per key");

    let updated = sapbridge(
        &url,
        &["customers", "update", "SIM", &number, "city=Berlin"],
    );
    assert_eq!(code(&updated), 0, "{updated:?}");
    let read = sapbridge(&url, &["customers", "get", "SIM", &number]);
    assert_eq!(code(&read), 0, "{read:?}");
    assert!(stdout(&read).contains("city: Berlin"), "{}", stdout(&read));
    let found = sapbridge(
        &url,
        &[
            "customers",
            "search",
            "SIM",
            "name=CLI Test*",
            "--output",
            "json",
        ],
    );
    assert_eq!(code(&found), 0, "{found:?}");
    assert!(stdout(&found).contains(&number), "{}", stdout(&found));
    let missing = sapbridge(&url, &["customers", "get", "SIM", "0009999999"]);
    assert_eq!(code(&missing), 3, "{missing:?}");
}

#[test]
fn a_call_longer_than_the_wait_is_polled_or_left_running() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_dev, url) = start_dev(dir.path(), 2_500);

    // The relay's wait (1 s) ends first: 202, and no time left to poll.
    let pending = sapbridge(&url, &["call", "SIM", "RFC_PING", "--timeout", "1"]);
    assert_eq!(code(&pending), 4, "{pending:?}");
    assert!(
        stdout(&pending).contains("/v1/calls/c_"),
        "{}",
        stdout(&pending)
    );

    // With time to poll, the client follows Location to the result.
    let polled = sapbridge(
        &url,
        &[
            "call",
            "SIM",
            "STFC_CONNECTION",
            "REQUTEXT=slow",
            "--timeout",
            "30",
        ],
    );
    assert_eq!(code(&polled), 0, "{polled:?}");
    assert!(
        stdout(&polled).contains("ECHOTEXT: slow"),
        "{}",
        stdout(&polled)
    );
}

#[test]
fn the_client_file_gives_the_url_and_a_key_file_beside_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_dev, url) = start_dev(dir.path(), 0);
    let config = dir.path().join("conf");
    std::fs::create_dir_all(&config).expect("dir");
    std::fs::write(config.join("key"), format!("{KEY}\n")).expect("key file");
    std::fs::write(
        config.join("client.toml"),
        format!("url = \"{url}\"\nkey_file = \"key\"\n"),
    )
    .expect("client file");
    let output = Command::new(env!("CARGO_BIN_EXE_sapbridge"))
        .args(["call", "SIM", "RFC_PING"])
        .env_remove("SAPBRIDGE_URL")
        .env_remove("SAPBRIDGE_API_KEY")
        .env("XDG_CONFIG_HOME", dir.path().join("nothing"))
        .arg("--client-config")
        .arg(config.join("client.toml"))
        .output()
        .expect("run");
    assert_eq!(code(&output), 0, "{output:?}");

    let none = Command::new(env!("CARGO_BIN_EXE_sapbridge"))
        .args(["call", "SIM", "RFC_PING"])
        .env_remove("SAPBRIDGE_URL")
        .env_remove("SAPBRIDGE_API_KEY")
        .env_remove("SAPBRIDGE_CLIENT_CONFIG")
        .env("XDG_CONFIG_HOME", dir.path().join("nothing"))
        .output()
        .expect("run");
    assert_eq!(code(&none), 64, "{none:?}");
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("SAPBRIDGE_URL"),
        "{none:?}"
    );
}
