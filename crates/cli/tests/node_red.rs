//! A Node-RED 4 flow against `sapbridge dev`, as a flow author runs it: the flow in
//! `examples/node-red/follow-location.json` submits an asynchronous call, gets
//! `202`, and polls the `Location` header exactly as the relay sent it with
//! Node-RED's own http-request node, until the result is there.
//!
//! Node-RED comes from npm: the test runs `tests/provision.sh node-red` (`npm ci` in
//! `examples/node-red/` when it is missing). When that cannot install it, the test
//! fails and says why (it does not skip).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sapbridge_tests::{Proc, free_port};
use serde_json::Value;

/// How long Node-RED may take to start and finish the flow.
const FLOW_DEADLINE: Duration = Duration::from_secs(60);

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/node-red")
}

/// Node-RED's entry script, or a failure that says how to install it.
fn node_red() -> PathBuf {
    sapbridge_tests::provide("node-red");
    let red = example_dir().join("node_modules/node-red/red.js");
    assert!(
        red.exists(),
        "Node-RED is missing after tests/provision.sh node-red"
    );
    red
}

/// Starts `sapbridge dev` on a free port (with its URL as `--public-url` when
/// `public`); returns it and its URL once it says it is running.
fn start_dev(dir: &Path, public: bool) -> (Proc, String) {
    let port = free_port().expect("port");
    let url = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_sapbridge"));
    command
        .args(["dev", "--listen", &listen, "--api-key", "node-red-key"])
        .arg("--data-dir")
        .arg(dir.join("dev"));
    if public {
        // The relay's public address, as an operator sets it behind its real
        // name (here the relay itself).
        command.args(["--public-url", &url]);
    }
    let dev = Proc::spawn_ready(&mut command, "sapbridge dev is running", FLOW_DEADLINE)
        .expect("sapbridge dev");
    (dev, url)
}

/// Runs the flow against `url` and returns what it wrote to its result file.
fn run_flow(dir: &Path, url: &str) -> Value {
    let red = node_red();
    let flow = dir.join("follow-location.json");
    std::fs::copy(example_dir().join("follow-location.json"), &flow).expect("copy flow");
    let result = dir.join("result.json");
    let log = std::fs::File::create(dir.join("node-red.log")).expect("log file");
    let mut command = Command::new("node");
    command
        .arg(&red)
        .arg("--settings")
        .arg(example_dir().join("settings.js"))
        .arg("--userDir")
        .arg(dir.join("node-red"))
        .arg(&flow)
        .env("SAPBRIDGE_URL", url)
        .env("SAPBRIDGE_API_KEY", "node-red-key")
        .env("RESULT_FILE", &result)
        .env("NODE_RED_PORT", free_port().expect("port").to_string())
        .stderr(log.try_clone().expect("log"));
    let mut node_red = Proc::spawn(&mut command).expect("node");
    let deadline = std::time::Instant::now() + FLOW_DEADLINE;
    loop {
        // The file node writes the whole result at once; a half-written file does
        // not parse and is read again.
        if let Ok(text) = std::fs::read_to_string(&result)
            && let Ok(value) = serde_json::from_str::<Value>(&text)
        {
            return value;
        }
        if let Some(status) = node_red.exited() {
            let log = std::fs::read_to_string(dir.join("node-red.log")).unwrap_or_default();
            panic!("Node-RED exited ({status}) before the flow finished:\n{log}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the flow wrote no result within {FLOW_DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_node_red_flow_follows_the_location_of_a_202_to_the_result() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_dev, url) = start_dev(dir.path(), true);
    let result = run_flow(dir.path(), &url);
    assert_eq!(result["first_status"], 202, "{result}");
    let location = result["location"].as_str().expect("location");
    assert!(
        location.starts_with(&format!("{url}/v1/calls/c_")),
        "{location}"
    );
    assert_eq!(result["status"], 200, "{result}");
    assert_eq!(result["body"]["status"], "succeeded", "{result}");
    assert_eq!(
        result["body"]["result"]["ECHOTEXT"], "hello from Node-RED",
        "{result}"
    );
}

/// Why `public_url` (or `trusted_proxies` / `absolute_locations`) matters: with a
/// bare path in `Location`, Node-RED's http-request node takes `v1` for a host.
#[test]
fn without_an_absolute_location_node_red_cannot_follow_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_dev, url) = start_dev(dir.path(), false);
    let result = run_flow(dir.path(), &url);
    assert_eq!(result["first_status"], 202, "{result}");
    // The http-request node answers the poll with its error as the status.
    assert_eq!(result["status"], "ENOTFOUND", "{result}");
    let body = result["body"].as_str().unwrap_or_default();
    assert!(body.contains("getaddrinfo ENOTFOUND v1"), "{result}");
}
