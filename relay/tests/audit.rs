//! The audit log records a call's end even when no agent reported it: a call no
//! agent took expires in the queue, and its record says so (the end-to-end
//! scenario with agents, refusals and reloads is `tests/tests/audit.rs`).

mod common;

use std::time::Duration;

use common::{STEP, TestRelay, config_json};
use reqwest::StatusCode;
use serde_json::{Value, json};

const OPS_KEY: &str = "test-key-ops";

#[tokio::test]
async fn a_call_that_expires_in_the_queue_is_recorded() {
    let mut config = config_json();
    config["api_keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "ops", "key": OPS_KEY, "systems": ["*"], "operator": true}));
    let relay = TestRelay::start_with(config).await;
    let response = relay
        .call("PRD", "STFC_CONNECTION", json!({}))
        .header("prefer", "respond-async")
        .header("sapbridge-queue-ttl", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let call: Value = response.json().await.unwrap();
    let id = call["id"].as_str().unwrap().to_owned();

    let deadline = tokio::time::Instant::now() + STEP;
    let record = loop {
        let page: Value = relay
            .http
            .get(format!("{}/v1/audit?call_id={id}", relay.url))
            .bearer_auth(OPS_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = page["items"].as_array().unwrap();
        if let Some(ended) = items.iter().find(|r| r["event"] == "call") {
            // Its request came first.
            assert_eq!(items[0]["event"], "request");
            assert_eq!(items[0]["outcome"], "queued");
            assert_eq!(items[0]["status"], 202);
            break ended.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never recorded: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(record["outcome"], "expired");
    assert_eq!(record["key"], "all");
    assert_eq!(record["system"], "PRD");
    assert_eq!(record["target"], "STFC_CONNECTION");
    assert_eq!(record["agent"], Value::Null);
    assert!(record["duration_ms"].as_i64().is_some_and(|ms| ms >= 1000));
    relay.stop().await;
}

/// The client address recorded for a call sent with `X-Forwarded-For: chain`
/// to a relay trusting `proxies`.
async fn recorded_client(proxies: &[&str], chain: &str) -> String {
    let mut config = config_json();
    config["api_keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "ops", "key": OPS_KEY, "systems": ["*"], "operator": true}));
    config["trusted_proxies"] = json!(proxies);
    let relay = TestRelay::start_with(config).await;
    let response = relay
        .call("PRD", "STFC_CONNECTION", json!({}))
        .header("prefer", "respond-async")
        .header("x-forwarded-for", chain)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = tokio::time::Instant::now() + STEP;
    let client = loop {
        let page: Value = relay
            .http
            .get(format!("{}/v1/audit?call_id={id}", relay.url))
            .bearer_auth(OPS_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(request) = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["event"] == "request")
        {
            break request["client"].as_str().unwrap().to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never recorded: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    relay.stop().await;
    client
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_recorded_and_never_a_clients_own_claim() {
    // The test's connection comes from 127.0.0.1: as a trusted proxy, the hop it
    // appended names the client; what the client wrote before that is not believed.
    assert_eq!(
        recorded_client(&["127.0.0.1"], "203.0.113.5, 198.51.100.7").await,
        "198.51.100.7"
    );
    // Not a trusted proxy: the header is the client's own claim and changes nothing.
    assert_eq!(
        recorded_client(&["10.0.0.0/8"], "198.51.100.7").await,
        "127.0.0.1"
    );
    assert_eq!(recorded_client(&[], "198.51.100.7").await, "127.0.0.1");
}
