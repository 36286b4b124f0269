//! The limits that protect SAP and the relay, over HTTP: a key's rate (429 +
//! `Retry-After`, `rate-limited`), a key's calls queued or running (429,
//! `too-many-in-flight`), a system's queued calls (503, `queue-full`); each
//! counted in `/metrics` and recorded in the audit log as a refusal. No agent
//! serves the systems, so calls stay queued; the rates are slow enough that no
//! token comes back during a test (the buckets' timing is tested with a clock of
//! their own in `limits.rs`).

mod common;

use std::time::Duration;

use common::{API_KEY, STEP, TestRelay, config_json};
use reqwest::StatusCode;
use serde_json::{Value, json};

const LIMITED_KEY: &str = "test-key-limited";
const OPS_KEY: &str = "test-key-ops";

fn config(limited: Value, queue: Value) -> Value {
    let mut config = config_json();
    let keys = config["api_keys"].as_array_mut().unwrap();
    let mut limited_key = json!({"name": "limited", "key": LIMITED_KEY, "systems": ["*"]});
    for (name, value) in limited.as_object().unwrap() {
        limited_key[name] = value.clone();
    }
    keys.push(limited_key);
    keys.push(json!({"name": "ops", "key": OPS_KEY, "systems": ["*"], "operator": true}));
    if !queue.is_null() {
        config["queue"] = queue;
    }
    config
}

/// An asynchronous call with `key` (202 when queued).
async fn submit(relay: &TestRelay, key: &str, system: &str) -> reqwest::Response {
    relay
        .http
        .post(format!(
            "{}/v1/systems/{system}/functions/STFC_CONNECTION",
            relay.url
        ))
        .bearer_auth(key)
        .header("prefer", "respond-async")
        .json(&json!({}))
        .send()
        .await
        .unwrap()
}

async fn metrics(relay: &TestRelay) -> String {
    relay
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the metric line starting with `series ` (0 when absent).
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// Checks a refusal: its status, problem type and `Retry-After`; returns the
/// `Retry-After` seconds.
async fn refused(response: reqwest::Response, status: StatusCode, slug: &str) -> u64 {
    assert_eq!(response.status(), status);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], format!("/problems/{slug}"), "{problem}");
    assert!(retry_after >= 1);
    retry_after
}

/// Waits until the audit log holds a record of `key` with `outcome`.
async fn audited(relay: &TestRelay, key: &str, outcome: &str) -> Value {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let page: Value = relay
            .http
            .get(format!(
                "{}/v1/audit?key={key}&outcome={outcome}",
                relay.url
            ))
            .bearer_auth(OPS_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(record) = page["items"].as_array().and_then(|i| i.first()) {
            return record.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no audit record of {key} with outcome {outcome}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_keys_rate_limit_answers_429_with_retry_after() {
    // Burst 2, then one token every 1,000 s: the third request is refused.
    let relay = TestRelay::start_with(config(
        json!({"rate_per_sec": 0.001, "burst": 2}),
        Value::Null,
    ))
    .await;
    for _ in 0..2 {
        assert_eq!(
            submit(&relay, LIMITED_KEY, "PRD").await.status(),
            StatusCode::ACCEPTED
        );
    }
    let retry_after = refused(
        submit(&relay, LIMITED_KEY, "PRD").await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
    )
    .await;
    assert!(
        (900..=1000).contains(&retry_after),
        "the next token in ~1000 s, not {retry_after}"
    );
    // Any request to a system takes a token, on every system.
    refused(
        relay
            .http
            .get(format!(
                "{}/v1/systems/QAS/tables/KNA1?fields=KUNNR",
                relay.url
            ))
            .bearer_auth(LIMITED_KEY)
            .send()
            .await
            .unwrap(),
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
    )
    .await;
    // Other keys are not limited by it; polls and listings are not limited.
    assert_eq!(
        submit(&relay, API_KEY, "PRD").await.status(),
        StatusCode::ACCEPTED
    );
    let systems = relay
        .http
        .get(format!("{}/v1/systems", relay.url))
        .bearer_auth(LIMITED_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(systems.status(), StatusCode::OK);

    let text = metrics(&relay).await;
    assert_eq!(
        metric(&text, "sapbridge_rate_limited_total{key=\"limited\"}"),
        2
    );
    assert_eq!(
        metric(&text, "sapbridge_limit_refusals_total{reason=\"rate\"}"),
        2
    );
    assert_eq!(
        metric(&text, "sapbridge_rate_limited_total{key=\"all\"}"),
        0
    );
    let record = audited(&relay, "limited", "rate-limited").await;
    assert_eq!(record["status"], 429);
    assert_eq!(record["system"], "PRD");
    relay.stop().await;
}

#[tokio::test]
async fn a_keys_calls_in_flight_are_capped() {
    let relay = TestRelay::start_with(config(json!({"max_in_flight": 2}), Value::Null)).await;
    let mut locations = Vec::new();
    for _ in 0..2 {
        let response = submit(&relay, LIMITED_KEY, "PRD").await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        locations.push(response.headers()["location"].to_str().unwrap().to_owned());
    }
    refused(
        submit(&relay, LIMITED_KEY, "QAS").await,
        StatusCode::TOO_MANY_REQUESTS,
        "too-many-in-flight",
    )
    .await;
    // Other keys are not held back by it.
    assert_eq!(
        submit(&relay, API_KEY, "PRD").await.status(),
        StatusCode::ACCEPTED
    );
    // One of the key's calls ends (cancelled): it may send another.
    let cancelled = relay
        .http
        .delete(relay.url_of(&locations[0]))
        .bearer_auth(LIMITED_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), StatusCode::OK);
    assert_eq!(
        submit(&relay, LIMITED_KEY, "PRD").await.status(),
        StatusCode::ACCEPTED
    );
    refused(
        submit(&relay, LIMITED_KEY, "PRD").await,
        StatusCode::TOO_MANY_REQUESTS,
        "too-many-in-flight",
    )
    .await;

    let text = metrics(&relay).await;
    assert_eq!(
        metric(
            &text,
            "sapbridge_limit_refusals_total{reason=\"in_flight\"}"
        ),
        2
    );
    let record = audited(&relay, "limited", "too-many-in-flight").await;
    assert_eq!(record["status"], 429);
    relay.stop().await;
}

#[tokio::test]
async fn a_systems_queue_depth_is_capped() {
    let relay = TestRelay::start_with(config(json!({}), json!({"max_depth_per_system": 2}))).await;
    for _ in 0..2 {
        assert_eq!(
            submit(&relay, API_KEY, "PRD").await.status(),
            StatusCode::ACCEPTED
        );
    }
    let retry_after = refused(
        submit(&relay, LIMITED_KEY, "PRD").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "queue-full",
    )
    .await;
    assert_eq!(retry_after, 5);
    // Another system's queue is its own.
    assert_eq!(
        submit(&relay, API_KEY, "QAS").await.status(),
        StatusCode::ACCEPTED
    );
    let text = metrics(&relay).await;
    assert_eq!(
        metric(
            &text,
            "sapbridge_limit_refusals_total{reason=\"queue_depth\"}"
        ),
        1
    );
    let record = audited(&relay, "limited", "queue-full").await;
    assert_eq!(record["status"], 503);
    assert_eq!(record["system"], "PRD");
    relay.stop().await;
}

#[test]
fn limits_out_of_range_are_refused_with_their_field() {
    let cases = [
        (json!({"rate_per_sec": 0}), Value::Null, "rate_per_sec"),
        (json!({"rate_per_sec": -1.5}), Value::Null, "rate_per_sec"),
        (json!({"burst": 3}), Value::Null, "burst needs rate_per_sec"),
        (
            json!({"rate_per_sec": 1, "burst": 0}),
            Value::Null,
            "burst must be",
        ),
        (json!({"max_in_flight": 0}), Value::Null, "max_in_flight"),
        (
            json!({}),
            json!({"max_depth_per_system": 0}),
            "max_depth_per_system",
        ),
    ];
    for (limited, queue, expected) in cases {
        let config: sapbridge_relay::RelayConfig =
            serde_json::from_value(config(limited.clone(), queue)).unwrap();
        let error = config.validate().expect_err(&limited.to_string());
        assert!(
            error.to_string().contains(expected),
            "{limited}: {error} should name {expected}"
        );
    }
    let fine: sapbridge_relay::RelayConfig = serde_json::from_value(config(
        json!({"rate_per_sec": 0.5, "burst": 5, "max_in_flight": 10}),
        json!({"max_depth_per_system": 1000}),
    ))
    .unwrap();
    fine.validate().unwrap();
}
