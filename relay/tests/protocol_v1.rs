//! A relay serves agents one protocol version behind: a session recorded between
//! a protocol 1 agent and a protocol 1 relay (`fixtures/agent-v1-session.jsonl`,
//! captured on the wire with a WebSocket proxy between `sapbridge-agent` and
//! `sapbridge relay` of version 0.1.0) is replayed against this relay.
//!
//! The replay plays the agent: it sends the recorded agent frames (ids mapped to
//! the live ones) and checks that every relay frame has the recorded layout
//! (protocol 1's absolute `deadline_unix_ms`, no `in_doubt`, the same fields) and
//! content, while a client makes the same calls over HTTP that produced the
//! recording, and gets the recorded answers.

mod common;

use std::collections::HashMap;

use base64::Engine;
use bytes::Bytes;
use common::{AGENT_TOKEN, API_KEY, STEP, TestRelay, open_socket};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use sapbridge_proto::{BodyChunk, OLDEST_AGENT_PROTOCOL};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// The recorded session: one JSON object per frame, `dir` `agent` or `relay`,
/// the frame as `text` or base64 `binary`.
const SESSION: &str = include_str!("fixtures/agent-v1-session.jsonl");

/// The recording's system; replayed as PRD (the test relay's).
const RECORDED_SYSTEM: &str = "SIM";

struct Frame {
    from_agent: bool,
    text: Option<Value>,
    binary: Option<Bytes>,
}

fn frames() -> Vec<Frame> {
    SESSION
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("fixture line"))
        .filter(|line| line["dir"] != "end")
        .map(|line| Frame {
            from_agent: line["dir"] == "agent",
            text: line["text"]
                .as_str()
                .map(|t| serde_json::from_str(t).expect("recorded JSON frame")),
            binary: line["binary"].as_str().map(|b| {
                Bytes::from(
                    base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .expect("base64"),
                )
            }),
        })
        .collect()
}

/// The live ids for the recorded ones.
#[derive(Default)]
struct Ids {
    calls: HashMap<String, String>,
    streams: HashMap<u64, u64>,
}

/// Replaces recorded ids and the recorded system in an agent frame.
fn map_agent_frame(mut frame: Value, ids: &Ids) -> Value {
    if let Some(id) = frame["call_id"].as_str() {
        frame["call_id"] = json!(ids.calls.get(id).expect("a call id the relay sent"));
    }
    if let Some(stream) = frame["response"]["stream_id"].as_u64() {
        frame["response"]["stream_id"] = json!(ids.streams[&stream]);
    }
    if let Some(systems) = frame["systems"].as_array_mut() {
        for system in systems {
            if system == RECORDED_SYSTEM {
                *system = json!("PRD");
            }
        }
    }
    frame
}

/// A client request the recording's work or pass-through frame came from.
fn client_request(relay: &TestRelay, recorded: &Value) -> JoinHandle<(StatusCode, Value)> {
    let http = relay.http.clone();
    let base = relay.url.clone();
    let request = match recorded["type"].as_str() {
        Some("work") => {
            let unit = &recorded["unit"];
            let calls = unit["calls"].as_array().expect("calls");
            if unit["commit"] == "none" {
                let call = &calls[0];
                let function = call["function"].as_str().expect("function");
                http.post(format!("{base}/v1/systems/PRD/functions/{function}"))
                    .json(&call["parameters"])
            } else {
                let calls: Vec<Value> = calls
                    .iter()
                    .map(|c| json!({"function": c["function"], "parameters": c["parameters"]}))
                    .collect();
                http.post(format!("{base}/v1/systems/PRD/transactions"))
                    .json(&json!({"calls": calls, "commit": unit["commit"] == "commit_on_success"}))
            }
        }
        _ => {
            let request = &recorded["request"];
            let method: reqwest::Method = request["method"]
                .as_str()
                .expect("method")
                .parse()
                .expect("method");
            let path = request["path"].as_str().expect("path");
            let mut builder = http.request(method, format!("{base}/v1/systems/PRD/http{path}"));
            if request["body"] == true {
                builder = builder.body("some body");
            }
            builder
        }
    };
    let request = request
        .bearer_auth(API_KEY)
        .header("Sapbridge-Queue-Ttl", "120");
    tokio::spawn(async move {
        let response = request.send().await.expect("client request");
        let status = response.status();
        let body = response.bytes().await.expect("body");
        let body = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        (status, body)
    })
}

/// The keys of a JSON object, sorted.
fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

#[tokio::test]
async fn a_recorded_protocol_1_session_is_served() {
    assert_eq!(OLDEST_AGENT_PROTOCOL, 1, "the fixture is of protocol 1");
    let relay = TestRelay::start().await;
    let mut socket = open_socket(&relay, AGENT_TOKEN).await.expect("socket");
    let mut ids = Ids::default();
    let mut clients: Vec<(Value, JoinHandle<(StatusCode, Value)>)> = Vec::new();
    let frames = frames();
    let mut passthrough: Vec<JoinHandle<(StatusCode, Value)>> = Vec::new();
    for (index, frame) in frames.iter().enumerate() {
        if frame.from_agent {
            let message = match (&frame.text, &frame.binary) {
                (Some(text), _) => Message::text(map_agent_frame(text.clone(), &ids).to_string()),
                (None, Some(binary)) => {
                    let chunk = BodyChunk::decode(binary.clone()).expect("recorded chunk");
                    let live =
                        BodyChunk::new(ids.streams[&chunk.stream_id], chunk.last, chunk.payload);
                    Message::binary(live.encode().expect("chunk"))
                }
                (None, None) => unreachable!(),
            };
            socket.send(message).await.expect("send");
            continue;
        }
        // A relay frame: what the client did to cause it comes first.
        let recorded = frame.text.clone();
        if let Some(recorded) = &recorded
            && matches!(recorded["type"].as_str(), Some("work" | "http_request"))
        {
            let handle = client_request(&relay, recorded);
            if recorded["type"] == "work" {
                clients.push((recorded.clone(), handle));
            } else {
                passthrough.push(handle);
            }
        }
        let live = loop {
            let next = tokio::time::timeout(STEP, socket.next())
                .await
                .unwrap_or_else(|_| panic!("frame {index}: the relay sent nothing"))
                .expect("socket open")
                .expect("frame");
            match next {
                Message::Ping(_) | Message::Pong(_) => continue,
                other => break other,
            }
        };
        match (recorded, live) {
            (Some(recorded), Message::Text(text)) => {
                let live: Value = serde_json::from_str(&text).expect("JSON frame");
                assert_eq!(live["type"], recorded["type"], "frame {index}: {live}");
                match recorded["type"].as_str() {
                    Some("welcome") => {
                        assert_eq!(keys(&live), keys(&recorded));
                        assert_eq!(live["protocol"], 1, "answered in the agent's version");
                        assert_listed_for_upgrade(&relay).await;
                    }
                    Some("work") => {
                        let (unit, old) = (&live["unit"], &recorded["unit"]);
                        assert_eq!(
                            keys(unit),
                            keys(old),
                            "frame {index}: protocol 1's unit layout"
                        );
                        assert_eq!(unit["calls"], old["calls"]);
                        assert_eq!(unit["commit"], old["commit"]);
                        assert_eq!(unit["attempt"], old["attempt"]);
                        assert_eq!(unit["system"], "PRD");
                        // Absolute, on the relay's clock: the TTL (120 s, before the
                        // 300 s lease) from now.
                        let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
                        let deadline = unit["deadline_unix_ms"].as_i64().expect("deadline");
                        assert!(
                            (now_ms + 110_000..=now_ms + 121_000).contains(&deadline),
                            "{deadline} vs {now_ms}"
                        );
                        let old_id = old["call_id"].as_str().unwrap().to_owned();
                        ids.calls
                            .insert(old_id, unit["call_id"].as_str().unwrap().to_owned());
                    }
                    Some("ack") => {
                        let old = recorded["call_id"].as_str().unwrap();
                        assert_eq!(
                            live["call_id"].as_str(),
                            ids.calls.get(old).map(String::as_str)
                        );
                    }
                    Some("http_request") => {
                        let (request, old) = (&live["request"], &recorded["request"]);
                        assert_eq!(keys(request), keys(old));
                        for field in ["method", "path", "body"] {
                            assert_eq!(request[field], old[field], "{field}");
                        }
                        let old_stream = old["stream_id"].as_u64().unwrap();
                        ids.streams
                            .insert(old_stream, request["stream_id"].as_u64().unwrap());
                    }
                    other => panic!("frame {index}: unexpected recorded relay frame {other:?}"),
                }
            }
            (None, Message::Binary(bytes)) => {
                let live = BodyChunk::decode(bytes).expect("chunk");
                let old = BodyChunk::decode(frame.binary.clone().unwrap()).unwrap();
                assert_eq!((live.last, live.payload), (old.last, old.payload));
                assert_eq!(Some(&live.stream_id), ids.streams.get(&old.stream_id));
            }
            (recorded, live) => panic!("frame {index}: recorded {recorded:?}, got {live:?}"),
        }
    }
    // The clients got what the recorded session answered.
    let mut statuses = Vec::new();
    for (recorded, client) in clients {
        let (status, body) = tokio::time::timeout(STEP, client)
            .await
            .expect("answered")
            .expect("client task");
        let function = recorded["unit"]["calls"][0]["function"].clone();
        statuses.push((
            function.as_str().unwrap_or_default().to_owned(),
            status.as_u16(),
        ));
        if status == StatusCode::OK {
            assert!(
                body["status"] == "succeeded" || body["committed"] == true,
                "{body}"
            );
        }
    }
    assert_eq!(
        statuses,
        [
            ("STFC_CONNECTION".to_owned(), 200),
            ("BAPI_CUSTOMER_CREATEFROMDATA1".to_owned(), 200),
            ("RFC_READ_TABLE".to_owned(), 200),
            ("RFC_SYSTEM_INFO".to_owned(), 403),
            ("RFC_READ_TABLE".to_owned(), 403),
        ]
    );
    // The pass-through requests got the recorded backend's answers.
    let mut answers = Vec::new();
    for client in passthrough {
        let (status, body) = tokio::time::timeout(STEP, client)
            .await
            .expect("pass-through answered")
            .expect("client task");
        answers.push((
            status.as_u16(),
            body.as_str()
                .is_some_and(|b| b.contains("hello from backend")),
        ));
    }
    assert_eq!(answers, [(200, true), (501, false)]);
    drop(socket);
    relay.stop().await;
}

/// `GET /v1/systems` lists the protocol 1 agent, marked for upgrade.
async fn assert_listed_for_upgrade(relay: &TestRelay) {
    let systems = relay.get_json("/v1/systems").await;
    let prd = systems["systems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["system"] == "PRD")
        .unwrap()
        .clone();
    assert_eq!(prd["agents"][0]["protocol"], 1, "{prd}");
    assert_eq!(prd["agents"][0]["upgrade_recommended"], true, "{prd}");
}
