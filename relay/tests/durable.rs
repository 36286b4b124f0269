//! The relay on the SQLite store: accepted calls outlive the relay, finished calls
//! stay readable and idempotency keys stay enforced across a restart on the same
//! file, and readiness reflects the store.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{FakeAgent, STEP, TestRelay, config_json};
use reqwest::StatusCode;
use sapbridge_proto::AgentMessage;
use serde_json::{Value, json};

/// The test configuration with the SQLite store at `path`.
fn sqlite_config(path: &Path) -> Value {
    let mut config = config_json();
    config["queue"] = json!({"store": "sqlite", "path": path});
    config
}

/// Polls `location` until it answers something other than 202.
async fn poll_final(relay: &TestRelay, location: &str) -> (StatusCode, Value) {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let response = relay.get(location).send().await.expect("poll");
        let status = response.status();
        let body: Value = response.json().await.expect("json");
        if status != StatusCode::ACCEPTED {
            return (status, body);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{location} never finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn queued_calls_survive_a_restart_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    let config = sqlite_config(&dir.path().join("relay.db"));

    let relay = TestRelay::start_with(config.clone()).await;
    let mut locations = Vec::new();
    for i in 0..20 {
        let response = relay
            .call(
                "PRD",
                "STFC_CONNECTION",
                json!({"REQUTEXT": format!("k{i}")}),
            )
            .header("Prefer", "respond-async")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        locations.push(location);
    }
    relay.wait_queue_depth(20).await;
    relay.stop().await;

    // A new relay on the same file: the calls are still queued.
    let relay = TestRelay::start_with(config).await;
    relay.wait_queue_depth(20).await;
    let queued: Value = relay
        .get(&locations[0])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(queued["status"], "queued");
    // One credit: units come one at a time, oldest first.
    let mut agent = FakeAgent::connect(&relay, "agent-1", &["PRD"], 1).await;
    for i in 0..20 {
        let unit = agent.next_work().await;
        let text = unit.calls[0].parameters["REQUTEXT"].clone();
        assert_eq!(text, format!("k{i}"));
        agent.succeed(&unit, json!({"ECHOTEXT": text})).await;
    }
    for (i, location) in locations.iter().enumerate() {
        let (status, body) = poll_final(&relay, location).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["result"]["ECHOTEXT"], format!("k{i}"));
    }
    relay.stop().await;
}

#[tokio::test]
async fn results_and_idempotency_keys_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = sqlite_config(&dir.path().join("relay.db"));
    let send = |relay: &TestRelay, text: &str| {
        relay
            .call("PRD", "STFC_CONNECTION", json!({"REQUTEXT": text}))
            .header("Idempotency-Key", "\"restart-1\"")
    };

    let relay = TestRelay::start_with(config.clone()).await;
    let mut agent = FakeAgent::connect(&relay, "agent-1", &["PRD"], 1).await;
    let client = tokio::spawn(send(&relay, "one").send());
    let unit = agent.next_work().await;
    let running = send(&relay, "one")
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(running.status(), StatusCode::ACCEPTED);
    let location = format!("/v1/calls/{}", unit.call_id);
    assert_eq!(running.headers()["location"], location.as_str());
    agent.succeed(&unit, json!({"ECHOTEXT": "one"})).await;
    let first = client.await.unwrap().unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();
    drop(agent);
    relay.stop().await;

    let relay = TestRelay::start_with(config).await;
    let mut agent = FakeAgent::connect(&relay, "agent-1", &["PRD"], 1).await;
    let location = format!("/v1/calls/{}", first["id"].as_str().unwrap());
    let (status, stored) = poll_final(&relay, &location).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored["result"]["ECHOTEXT"], "one");
    let again = send(&relay, "one").send().await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["result"], first["result"]);
    let other = send(&relay, "two").send().await.unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // The agent never saw a second unit.
    agent.send(&AgentMessage::Heartbeat).await;
    assert_eq!(agent.recv_within(Duration::from_millis(200)).await, None);
    relay.stop().await;
}

#[tokio::test]
async fn a_vanished_agents_call_is_redelivered_with_the_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start_with(sqlite_config(&dir.path().join("relay.db"))).await;
    let ready = relay
        .http
        .get(format!("{}/readyz", relay.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let client = tokio::spawn(
        relay
            .call("PRD", "STFC_CONNECTION", json!({"REQUTEXT": "again"}))
            .send(),
    );
    let mut first = FakeAgent::connect(&relay, "agent-1", &["PRD"], 1).await;
    let unit = first.next_work().await;
    assert_eq!(unit.attempt, 1);
    drop(first);
    // Back to the agent that had it (reconnected), which alone knows whether it
    // started; another agent would get it only after the hold, in doubt.
    let mut second = FakeAgent::connect(&relay, "agent-1", &["PRD"], 1).await;
    let unit = second.next_work().await;
    assert_eq!((unit.attempt, unit.in_doubt), (2, false));
    second.succeed(&unit, json!({"ECHOTEXT": "again"})).await;
    let response = client.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["agent"], "agent-1");
    relay.stop().await;
}

#[tokio::test]
async fn a_store_that_cannot_be_opened_stops_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    let config = sqlite_config(&dir.path().join("missing-dir").join("relay.db"));
    let config: sapbridge_relay::RelayConfig = serde_json::from_value(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let token = tokio_util::sync::CancellationToken::new();
    let err = sapbridge_relay::run(listener, config, token)
        .await
        .unwrap_err();
    assert!(
        matches!(err, sapbridge_relay::RelayError::Store(_)),
        "{err}"
    );
}

/// An asynchronous `STFC_CONNECTION` whose `REQUTEXT` is `text`.
async fn submit_async(relay: &TestRelay, text: &str) -> reqwest::Response {
    relay
        .call("PRD", "STFC_CONNECTION", json!({"REQUTEXT": text}))
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap()
}

/// The relay's `/readyz` status.
async fn readyz(relay: &TestRelay) -> StatusCode {
    relay
        .http
        .get(format!("{}/readyz", relay.url))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn a_full_store_answers_503_turns_readyz_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let mut config = sqlite_config(&path);
    config["queue"]["max_size_mib"] = json!(1);
    let relay = TestRelay::start_with(config).await;
    assert_eq!(readyz(&relay).await, StatusCode::OK);

    // No agent: calls stay queued, each with 64 KiB of parameters, until the
    // 1 MiB store is full.
    let big = "x".repeat(64 * 1024);
    let mut accepted = Vec::new();
    let refused = loop {
        let response = submit_async(&relay, &big).await;
        if response.status() == StatusCode::ACCEPTED {
            accepted.push(response.headers()["location"].to_str().unwrap().to_owned());
            assert!(
                accepted.len() < 64,
                "a 1 MiB store took {} calls of 64 KiB",
                accepted.len()
            );
            continue;
        }
        break response;
    };
    let status = refused.status();
    let retry_after = refused.headers().get("retry-after").cloned();
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert_eq!(retry_after.unwrap(), "30");
    assert_eq!(problem["type"], "/problems/store-full", "{problem}");
    assert!(accepted.len() >= 5, "only {} calls fit", accepted.len());
    assert_eq!(readyz(&relay).await, StatusCode::SERVICE_UNAVAILABLE);
    let metrics = relay
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let full: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sapbridge_store_full_total "))
        .and_then(|n| n.parse().ok())
        .expect("the counter");
    assert!(full >= 1, "{metrics}");
    // Nothing accepted was lost: every call is still there, queued.
    for location in &accepted {
        let status = relay.get(location).send().await.unwrap().status();
        assert_eq!(status, StatusCode::ACCEPTED, "{location}");
    }

    // Given room (here: a larger cap, as an operator would after freeing disk),
    // the same file takes calls again and every accepted call is still there.
    relay.stop().await;
    let mut config = sqlite_config(&path);
    config["queue"]["max_size_mib"] = json!(4);
    let relay = TestRelay::start_with(config).await;
    assert_eq!(readyz(&relay).await, StatusCode::OK);
    for location in &accepted {
        let status = relay.get(location).send().await.unwrap().status();
        assert_eq!(status, StatusCode::ACCEPTED, "{location} after the restart");
    }
    assert_eq!(
        submit_async(&relay, &big).await.status(),
        StatusCode::ACCEPTED
    );
    relay.stop().await;
}
