//! The relay's connection limits against slow, idle and too many clients, over raw
//! sockets: a kept-alive connection closes after the idle timeout, a request head
//! after its first byte has the header-read timeout, a stalled request body answers
//! 408, connections over `max_connections` answer 503 with `Retry-After` and close,
//! agent WebSockets have their own cap — and none of it cuts a long `Prefer: wait`
//! call or an agent's socket.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{AGENT_TOKEN, API_KEY, FakeAgent, STEP, TestRelay, config_json, open_socket};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite;

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n";

async fn relay_with(limits: Value) -> TestRelay {
    let mut config = config_json();
    if let (Some(config), Value::Object(limits)) = (config.as_object_mut(), limits) {
        config.extend(limits);
    }
    TestRelay::start_with(config).await
}

fn addr(relay: &TestRelay) -> SocketAddr {
    relay.url.trim_start_matches("http://").parse().unwrap()
}

/// Reads one response with a `Content-Length` body; head and body as text.
async fn read_response(socket: &mut TcpStream) -> String {
    let mut buffer = Vec::new();
    let mut piece = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buffer.len() >= end + 4 + length {
                return String::from_utf8_lossy(&buffer).into_owned();
            }
        }
        let read = tokio::time::timeout(STEP, socket.read(&mut piece))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(
            read > 0,
            "closed mid-response: {}",
            String::from_utf8_lossy(&buffer)
        );
        buffer.extend_from_slice(&piece[..read]);
    }
}

/// Sends `request` on a new connection and reads the answer.
async fn exchange(relay: &TestRelay, request: &[u8]) -> (TcpStream, String) {
    let mut socket = TcpStream::connect(addr(relay)).await.unwrap();
    socket.write_all(request).await.unwrap();
    let answer = read_response(&mut socket).await;
    (socket, answer)
}

/// Waits until the relay closes `socket` (bounded by [`STEP`]); how long it took.
async fn closed(socket: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut piece = [0u8; 256];
    match tokio::time::timeout(STEP, socket.read(&mut piece)).await {
        Err(_) => panic!("the connection is still open after {STEP:?}"),
        Ok(Ok(0) | Err(_)) => started.elapsed(),
        Ok(Ok(n)) => panic!("unexpected bytes: {}", String::from_utf8_lossy(&piece[..n])),
    }
}

fn assert_between(what: &str, took: Duration, low_ms: u64, high_ms: u64) {
    assert!(
        took >= Duration::from_millis(low_ms) && took < Duration::from_millis(high_ms),
        "{what} after {took:?}, expected between {low_ms} and {high_ms} ms"
    );
}

#[tokio::test]
async fn a_kept_alive_connection_closes_after_the_idle_timeout() {
    let relay = relay_with(json!({"idle_timeout_secs": 1, "header_read_timeout_secs": 5})).await;
    let (mut socket, answer) = exchange(&relay, HEALTHZ).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Kept alive within the idle timeout.
    tokio::time::sleep(Duration::from_millis(500)).await;
    socket.write_all(HEALTHZ).await.unwrap();
    let answer = read_response(&mut socket).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Then closed by the idle timeout, well before the header-read timeout.
    assert_between(
        "idle connection closed",
        closed(&mut socket).await,
        900,
        4000,
    );
    relay.stop().await;
}

#[tokio::test]
async fn idle_and_header_read_timeouts_are_separate() {
    let relay = relay_with(json!({"idle_timeout_secs": 3, "header_read_timeout_secs": 1})).await;
    let (mut socket, answer) = exchange(&relay, HEALTHZ).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Idle longer than the header-read timeout: still open.
    tokio::time::sleep(Duration::from_secs(2)).await;
    socket.write_all(HEALTHZ).await.unwrap();
    let answer = read_response(&mut socket).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A head begun after a pause must be complete within the header-read timeout.
    tokio::time::sleep(Duration::from_millis(300)).await;
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    assert_between(
        "unfinished head closed",
        closed(&mut socket).await,
        900,
        2500,
    );

    // A fresh connection that sends nothing has the header-read timeout too.
    let mut silent = TcpStream::connect(addr(&relay)).await.unwrap();
    assert_between(
        "silent connection closed",
        closed(&mut silent).await,
        900,
        2500,
    );
    relay.stop().await;
}

/// The head of a call whose body is `declared` bytes long.
fn call_head(declared: usize) -> String {
    format!(
        "POST /v1/systems/PRD/functions/STFC_CONNECTION HTTP/1.1\r\nHost: relay\r\n\
         Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n\
         Prefer: respond-async\r\nContent-Length: {declared}\r\n\r\n"
    )
}

#[tokio::test]
async fn a_stalled_request_body_answers_408_and_closes() {
    let relay = relay_with(json!({
        "body_read_timeout_secs": 1, "header_read_timeout_secs": 5, "idle_timeout_secs": 5,
    }))
    .await;
    let chunked = format!(
        "POST /v1/systems/PRD/functions/STFC_CONNECTION HTTP/1.1\r\nHost: relay\r\n\
         Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\nD\r\n{{\"REQUTEXT\":\"\r\n"
    );
    let declared = format!("{}{{\"REQUTEXT\":\"", call_head(100));
    for request in [declared, chunked] {
        let mut socket = TcpStream::connect(addr(&relay)).await.unwrap();
        socket.write_all(request.as_bytes()).await.unwrap();
        let started = Instant::now();
        let answer = read_response(&mut socket).await;
        assert_between("408", started.elapsed(), 900, 4000);
        let lower = answer.to_ascii_lowercase();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(
            lower.contains("content-type: application/problem+json"),
            "{answer}"
        );
        assert!(lower.contains("connection: close"), "{answer}");
        assert!(answer.contains("/problems/request-timeout"), "{answer}");
        closed(&mut socket).await;
    }
    relay.stop().await;
}

#[tokio::test]
async fn a_slow_but_steady_request_body_is_not_cut() {
    let relay = relay_with(json!({"body_read_timeout_secs": 1})).await;
    let body = br#"{"REQUTEXT":"one piece every 400 ms"}"#;
    let mut socket = TcpStream::connect(addr(&relay)).await.unwrap();
    socket
        .write_all(call_head(body.len()).as_bytes())
        .await
        .unwrap();
    let started = Instant::now();
    for piece in body.chunks(body.len().div_ceil(6)) {
        socket.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(started.elapsed() > Duration::from_secs(2));
    let answer = read_response(&mut socket).await;
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    relay.stop().await;
}

fn assert_too_many_connections(answer: &str) {
    let lower = answer.to_ascii_lowercase();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(lower.contains("retry-after: 5"), "{answer}");
    assert!(lower.contains("connection: close"), "{answer}");
    assert!(
        lower.contains("content-type: application/problem+json"),
        "{answer}"
    );
    assert!(
        answer.contains("/problems/too-many-connections"),
        "{answer}"
    );
}

#[tokio::test]
async fn connections_over_the_cap_answer_503_with_retry_after_and_close() {
    let relay = relay_with(json!({"max_connections": 2})).await;
    // Two kept-alive connections fill the cap.
    let (mut first, answer) = exchange(&relay, HEALTHZ).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (_second, answer) = exchange(&relay, HEALTHZ).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let (mut over, answer) = exchange(&relay, HEALTHZ).await;
    assert_too_many_connections(&answer);
    closed(&mut over).await;
    // With a body, too.
    let request = format!("{}{{\"REQUTEXT\":\"x\"}}", call_head(15));
    let (mut over, answer) = exchange(&relay, request.as_bytes()).await;
    assert_too_many_connections(&answer);
    closed(&mut over).await;

    // A closed connection frees its slot.
    first.shutdown().await.unwrap();
    closed(&mut first).await;
    let deadline = Instant::now() + STEP;
    loop {
        let (_socket, answer) = exchange(&relay, HEALTHZ).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert_too_many_connections(&answer);
        assert!(Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay.stop().await;
}

#[tokio::test]
async fn agent_sockets_leave_the_client_cap_and_get_in_when_it_is_full() {
    let relay = relay_with(json!({"max_connections": 2})).await;
    // Agents connect through a client slot and give it back at the upgrade.
    let mut agents = Vec::new();
    for n in 0..3 {
        agents.push(FakeAgent::connect(&relay, &format!("agent-{n}"), &["PRD"], 1).await);
    }
    let (first, answer) = exchange(&relay, HEALTHZ).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (second, answer) = exchange(&relay, HEALTHZ).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (_over, answer) = exchange(&relay, HEALTHZ).await;
    assert_too_many_connections(&answer);
    // Clients filling the cap do not keep an agent out.
    agents.push(FakeAgent::connect(&relay, "agent-late", &["PRD"], 1).await);
    let (_over, answer) = exchange(&relay, HEALTHZ).await;
    assert_too_many_connections(&answer);

    // Once the clients leave, every agent is still connected.
    drop((first, second));
    let deadline = Instant::now() + STEP;
    loop {
        let response = relay.get("/v1/systems").send().await.unwrap();
        if response.status() == 200 {
            let body: Value = response.json().await.unwrap();
            let prd = body["systems"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["system"] == "PRD")
                .unwrap()
                .clone();
            assert_eq!(prd["agents"].as_array().unwrap().len(), 4, "{prd}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the client slots never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(agents);
    relay.stop().await;
}

#[tokio::test]
async fn agent_sockets_past_max_agent_connections_answer_503() {
    let relay = relay_with(json!({"max_agent_connections": 1})).await;
    let first = FakeAgent::connect(&relay, "agent-1", &["PRD"], 1).await;
    match open_socket(&relay, AGENT_TOKEN).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            assert_eq!(response.headers()["retry-after"], "5");
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned();
            assert!(body.contains("/problems/too-many-agents"), "{body}");
        }
        Err(other) => panic!("expected a 503, got {other}"),
        Ok(_) => panic!("a second agent socket was accepted past max_agent_connections"),
    }
    // The slot comes back when the first socket closes.
    drop(first);
    let deadline = Instant::now() + STEP;
    while open_socket(&relay, AGENT_TOKEN).await.is_err() {
        assert!(Instant::now() < deadline, "the agent slot never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay.stop().await;
}

#[tokio::test]
async fn a_long_prefer_wait_call_and_an_agent_socket_outlive_the_timeouts() {
    let relay = relay_with(json!({
        "header_read_timeout_secs": 1, "idle_timeout_secs": 1, "body_read_timeout_secs": 1,
    }))
    .await;
    let mut agent = FakeAgent::connect(&relay, "agent-1", &["PRD"], 1).await;
    // The agent's socket sits quiet for longer than every timeout.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let call = relay
        .call("PRD", "STFC_CONNECTION", json!({"REQUTEXT": "slow"}))
        .header("Prefer", "wait=20")
        .send();
    let client = tokio::spawn(call);
    let unit = agent.next_work().await;
    // The call is answered long after every timeout.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    agent.succeed(&unit, json!({"ECHOTEXT": "slow"})).await;
    let response = client.await.unwrap().expect("the waiting call's answer");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["result"]["ECHOTEXT"], "slow");
    relay.stop().await;
}
