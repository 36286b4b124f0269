//! Helpers for the business-action tests: a relay whose system `PRD` is served by
//! a simulator-backed agent, with customer defaults configured, and a JSON client.

use reqwest::Method;
use serde_json::{Value, json};

use super::sim_agent::SimAgent;
use super::{API_KEY, TestRelay, config_json};

/// The system the simulator serves in these tests.
pub const SYSTEM: &str = "PRD";

/// The test configuration plus `[customer_defaults]` as `sapbridge dev` sets them.
pub fn business_config() -> Value {
    let mut config = config_json();
    config["customer_defaults"] = json!({
        "reference_customer": "1000",
        "sales_org": "1000",
        "distribution_channel": "10",
        "division": "00",
        "language": "EN",
        "currency": "EUR",
    });
    config
}

/// A relay and a simulator agent serving [`SYSTEM`].
pub async fn relay_with_sim() -> (TestRelay, SimAgent) {
    let relay = TestRelay::start_with(business_config()).await;
    let agent = SimAgent::start(&relay, "sim-agent", SYSTEM).await;
    (relay, agent)
}

/// An answer: status, JSON body (`Null` when none) and headers.
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends `method path` with an optional JSON body and extra headers.
pub async fn send(
    relay: &TestRelay,
    method: Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut request = relay
        .http
        .request(method, format!("{}{path}", relay.url))
        .bearer_auth(API_KEY);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        body,
        headers,
    }
}

/// `GET path`.
pub async fn get(relay: &TestRelay, path: &str) -> Answer {
    send(relay, Method::GET, path, None, &[]).await
}

/// `POST path` with `body`.
pub async fn post(relay: &TestRelay, path: &str, body: Value) -> Answer {
    send(relay, Method::POST, path, Some(body), &[]).await
}

/// `PATCH path` with `body`.
pub async fn patch(relay: &TestRelay, path: &str, body: Value) -> Answer {
    send(relay, Method::PATCH, path, Some(body), &[]).await
}

/// Polls `location` until it answers something other than 202.
pub async fn poll(relay: &TestRelay, location: &str) -> Answer {
    let deadline = tokio::time::Instant::now() + super::STEP;
    loop {
        let answer = get(relay, location).await;
        if answer.status != 202 {
            return answer;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{location} stayed 202: {}",
            answer.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The number of rows of `KNA1`.
pub async fn kna1_count(relay: &TestRelay) -> usize {
    let answer = get(
        relay,
        &format!("/v1/systems/{SYSTEM}/tables/KNA1?fields=KUNNR&limit=100000"),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["rows"].as_array().map_or(0, Vec::len)
}
