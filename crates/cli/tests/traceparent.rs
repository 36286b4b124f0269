//! W3C Trace Context through sapbridge: a workflow engine's `traceparent` is
//! continued by the relay (same trace id, the relay's own span id), echoed in the
//! answer, stored with the call and handed to the agent, whose log lines of the
//! unit carry the trace id — for a call answered at once and for one queued first.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sapbridge_proto::TraceParent;
use sapbridge_tests::{Proc, free_port};
use serde_json::{Value, json};

const KEY: &str = "trace-key";
const CLIENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Waits until the JSON log has a line of the agent's unit span for `call_id`;
/// returns its trace id.
fn agent_trace_id(log: &std::path::Path, call_id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines() {
            let Ok(entry) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let span = &entry["span"];
            if entry["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("sapbridge_agent"))
                && span["name"] == "unit"
                && span["call_id"] == call_id
            {
                return span["trace_id"].as_str().unwrap_or_default().to_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no agent log line of call {call_id}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_traceparent_is_continued_echoed_and_reaches_the_agents_logs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port().expect("port");
    let url = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("dev.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_sapbridge"));
    command
        .args([
            "--log-format",
            "json",
            "--log",
            "info,sapbridge_agent=debug",
        ])
        .args(["dev", "--api-key", KEY])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path().join("dev"))
        .stderr(Stdio::from(std::fs::File::create(&log).expect("log")));
    let _dev = Proc::spawn_ready(
        &mut command,
        "sapbridge dev is running",
        Duration::from_secs(60),
    )
    .expect("sapbridge dev");
    let http = reqwest::blocking::Client::new();
    let client = TraceParent::parse(CLIENT).expect("valid");
    let call = |traceparent: Option<&str>, prefer: &str| {
        let mut request = http
            .post(format!("{url}/v1/systems/SIM/functions/STFC_CONNECTION"))
            .bearer_auth(KEY)
            .header("prefer", prefer)
            .json(&json!({"REQUTEXT": "traced"}));
        if let Some(value) = traceparent {
            request = request.header("traceparent", value);
        }
        request.send().expect("call")
    };

    // Answered at once: echoed with the relay's span, in the agent's log.
    let answer = call(Some(CLIENT), "wait=10");
    assert_eq!(answer.status(), 200);
    let echoed = answer.headers()["traceparent"]
        .to_str()
        .expect("text")
        .to_owned();
    let echoed = TraceParent::parse(&echoed).expect("a valid traceparent");
    assert_eq!(echoed.trace_id, client.trace_id, "the same trace");
    assert_ne!(echoed.parent_id, client.parent_id, "the relay's own span");
    assert_eq!(echoed.flags, client.flags);
    let body: Value = answer.json().expect("json");
    let call_id = body["id"].as_str().expect("id");
    assert_eq!(agent_trace_id(&log, call_id), client.trace_id_hex());

    // Queued first (202), then run: the trace comes from the store.
    let answer = call(Some(CLIENT), "respond-async");
    assert_eq!(answer.status(), 202);
    let location = answer.headers()["location"]
        .to_str()
        .expect("text")
        .to_owned();
    let call_id = location.rsplit('/').next().expect("id").to_owned();
    assert_eq!(agent_trace_id(&log, &call_id), client.trace_id_hex());

    // None sent, or one that does not parse: the relay starts a trace.
    for sent in [None, Some("00-not-a-trace-01")] {
        let answer = call(sent, "wait=10");
        assert_eq!(answer.status(), 200);
        let started = answer.headers()["traceparent"]
            .to_str()
            .expect("text")
            .to_owned();
        let started = TraceParent::parse(&started).expect("a valid traceparent");
        assert_ne!(started.trace_id, client.trace_id);
        let body: Value = answer.json().expect("json");
        let call_id = body["id"].as_str().expect("id");
        assert_eq!(agent_trace_id(&log, call_id), started.trace_id_hex());
    }
}
