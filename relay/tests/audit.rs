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
