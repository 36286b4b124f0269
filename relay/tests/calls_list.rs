//! `GET /v1/calls`: the calls a key may see, newest first, as summaries (never
//! parameters or results), filtered by system, function, status, owner key and
//! submission time, in pages with a cursor. A key lists its own calls only; an
//! operator key lists every key's calls of the systems it covers. Bad filters
//! are 400 problems.

mod common;

use common::{FakeAgent, TestRelay};
use serde_json::{Value, json};

const ALICE: &str = "alice-secret";
const BOB: &str = "bob-secret";
const OPS: &str = "ops-secret";
const PRD_OPS: &str = "prd-ops-secret";

fn config() -> Value {
    let mut config = common::business::business_config();
    config["api_keys"] = json!([
        {"name": "alice", "key": ALICE, "systems": ["PRD", "QAS"]},
        {"name": "bob", "key": BOB, "systems": ["PRD", "QAS"]},
        {"name": "ops", "key": OPS, "systems": ["*"], "operator": true},
        {"name": "prd-ops", "key": PRD_OPS, "systems": ["PRD"], "operator": true},
    ]);
    config["agent_tokens"] = json!([
        {"name": "plant", "token": common::AGENT_TOKEN, "systems": ["PRD", "QAS"]},
    ]);
    config
}

/// Submits `function` on `system` for `key` without waiting; returns the call id.
async fn submit(relay: &TestRelay, key: &str, system: &str, function: &str) -> String {
    let response = relay
        .http
        .post(relay.url_of(&format!("/v1/systems/{system}/functions/{function}")))
        .bearer_auth(key)
        .header("prefer", "respond-async")
        .json(&json!({"REQUTEXT": "secret parameter"}))
        .send()
        .await
        .expect("submit");
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    location.trim_start_matches("/v1/calls/").to_owned()
}

/// `GET path` as `key`: status, content type and JSON body.
async fn get(relay: &TestRelay, key: &str, path: &str) -> (u16, String, Value) {
    let response = relay
        .http
        .get(relay.url_of(path))
        .bearer_auth(key)
        .send()
        .await
        .expect("list");
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = response.json().await.expect("JSON body");
    (status, content_type, body)
}

/// The ids a listing gives `key` (one page; asserts it is the last).
async fn ids(relay: &TestRelay, key: &str, query: &str) -> Vec<String> {
    let (status, _, body) = get(relay, key, &format!("/v1/calls?{query}")).await;
    assert_eq!(status, 200, "{query}: {body}");
    assert!(body["next"].is_null(), "{query}: {body}");
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn calls_are_listed_by_filter_and_owner_newest_first_in_pages() {
    let relay = TestRelay::start_with(config()).await;
    let a1 = submit(&relay, ALICE, "PRD", "STFC_CONNECTION").await;
    let a2 = submit(&relay, ALICE, "PRD", "STFC_CONNECTION").await;
    let b1 = submit(&relay, BOB, "PRD", "STFC_CONNECTION").await;
    let a3 = submit(&relay, ALICE, "QAS", "RFC_PING").await;
    let a4 = submit(&relay, ALICE, "PRD", "STFC_CONNECTION").await;

    // A key's own calls only, newest first; summaries without parameters.
    assert_eq!(
        ids(&relay, ALICE, "").await,
        [a4.as_str(), a3.as_str(), a2.as_str(), a1.as_str()]
    );
    assert_eq!(ids(&relay, BOB, "").await, [b1.as_str()]);
    // Naming another key's name lists nothing, not that key's calls.
    assert!(ids(&relay, BOB, "key=alice").await.is_empty());
    assert_eq!(ids(&relay, ALICE, "key=alice").await.len(), 4);
    let (_, content_type, body) = get(&relay, ALICE, "/v1/calls?system=QAS").await;
    assert_eq!(content_type, "application/json");
    let item = &body["items"][0];
    assert_eq!(item["id"], a3.as_str());
    assert_eq!(item["system"], "QAS");
    assert_eq!(item["function"], "RFC_PING");
    assert_eq!(item["kind"], "function");
    assert_eq!(item["status"], "queued");
    assert_eq!(item["attempts"], 0);
    assert_eq!(item["key"], "alice");
    assert!(item["submitted_at"].is_string());
    assert!(item["completed_at"].is_null());
    assert!(!body.to_string().contains("secret parameter"), "{body}");

    // Operators: every key's calls of the systems they cover.
    assert_eq!(
        ids(&relay, OPS, "").await,
        [
            a4.as_str(),
            a3.as_str(),
            b1.as_str(),
            a2.as_str(),
            a1.as_str()
        ]
    );
    assert_eq!(
        ids(&relay, PRD_OPS, "").await,
        [a4.as_str(), b1.as_str(), a2.as_str(), a1.as_str()]
    );
    assert!(ids(&relay, PRD_OPS, "system=QAS").await.is_empty());
    assert_eq!(ids(&relay, OPS, "key=bob").await, [b1.as_str()]);

    // Function (upper-cased as function modules are), status, time range.
    assert_eq!(ids(&relay, ALICE, "function=rfc_ping").await, [a3.as_str()]);
    assert_eq!(
        ids(&relay, OPS, "function=STFC_CONNECTION&system=PRD").await,
        [a4.as_str(), b1.as_str(), a2.as_str(), a1.as_str()]
    );
    let cancelled = relay
        .http
        .delete(relay.url_of(&format!("/v1/calls/{a2}")))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 200);
    let mut agent = FakeAgent::connect(&relay, "agent-1", &["PRD"], 1).await;
    let unit = agent.next_work().await;
    assert_eq!(unit.call_id, a1);
    agent
        .succeed(&unit, json!({"ECHOTEXT": "secret result"}))
        .await;
    assert_eq!(ids(&relay, ALICE, "status=cancelled").await, [a2.as_str()]);
    assert_eq!(ids(&relay, ALICE, "status=succeeded").await, [a1.as_str()]);
    let (_, _, body) = get(&relay, ALICE, "/v1/calls?status=succeeded").await;
    assert_eq!(body["items"][0]["agent"], "agent-1");
    assert_eq!(body["items"][0]["attempts"], 1);
    assert!(body["items"][0]["completed_at"].is_string());
    assert!(!body.to_string().contains("secret result"), "{body}");
    // The next PRD call (a2 is cancelled: b1) goes to the agent.
    let next = agent.next_work().await;
    assert_eq!(next.call_id, b1);
    assert_eq!(ids(&relay, OPS, "status=running").await, [b1.as_str()]);
    assert!(ids(&relay, ALICE, "status=expired").await.is_empty());
    // Empty fields (an HTML form's) count as absent.
    assert_eq!(
        ids(
            &relay,
            ALICE,
            "system=&function=&status=&key=&since=&until=&cursor=&limit="
        )
        .await
        .len(),
        4
    );
    assert!(
        ids(&relay, ALICE, "since=2999-01-01T00:00:00Z")
            .await
            .is_empty()
    );
    assert!(
        ids(&relay, ALICE, "until=2000-01-01T00:00:00Z")
            .await
            .is_empty()
    );
    assert_eq!(
        ids(
            &relay,
            ALICE,
            "since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z"
        )
        .await
        .len(),
        4
    );

    // Pages of 3, then the rest after the cursor.
    let (_, _, first) = get(&relay, OPS, "/v1/calls?limit=3").await;
    let page: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(page, [a4.as_str(), a3.as_str(), b1.as_str()]);
    let cursor = first["next"].as_str().expect("a next page");
    assert_eq!(
        ids(&relay, OPS, &format!("limit=3&cursor={cursor}")).await,
        [a2.as_str(), a1.as_str()]
    );
    // The cursor keeps the filters it is given with.
    assert_eq!(
        ids(&relay, OPS, &format!("limit=3&cursor={cursor}&key=bob")).await,
        Vec::<String>::new()
    );
    agent.succeed(&next, json!({})).await;
    relay.stop().await;
}

#[tokio::test]
async fn bad_filters_are_problems() {
    let relay = TestRelay::start_with(config()).await;
    for query in [
        "status=bogus",
        "status=leased",
        "since=yesterday",
        "until=2026-13-01T00:00:00Z",
        "limit=0",
        "limit=1001",
        "limit=ten",
        "cursor=not-a-cursor",
        "cursor=YXVkaXQ6MQ",
        "owner=alice",
    ] {
        let (status, content_type, body) = get(&relay, OPS, &format!("/v1/calls?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(content_type, "application/problem+json", "{query}");
        assert_eq!(body["status"], 400, "{query}");
    }
    let anonymous = relay
        .http
        .get(relay.url_of("/v1/calls"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    relay.stop().await;
}
