//! A call belongs to the API key that created it: to any other key — even one whose
//! scope covers the call's system — it does not exist (`404`, the same answer as
//! for an id that never existed or was purged), whether it is queued, running or
//! finished, whether reached by its `Location`, an internal follow-up id or an
//! `Idempotency-Key`; and another key can neither read nor cancel it. A key with
//! `operator = true` reads and cancels the calls of every key of the systems it
//! covers. High-level actions keep working for the key that started them.

mod common;

use std::time::Duration;

use common::sim_agent::execute;
use common::{AGENT_TOKEN, FakeAgent, STEP, TestRelay};
use reqwest::Method;
use sapbridge_sap::sim::{SimOptions, Simulator};
use serde_json::{Value, json};

const ALICE: &str = "alice-secret";
const BOB: &str = "bob-secret";
const CAROL: &str = "carol-secret";
const OPS: &str = "ops-secret";
const PRD_OPS: &str = "prd-ops-secret";

/// Alice, Bob and Carol share their system scope; `ops` is an operator of every
/// system, `prd-ops` of PRD only.
fn config() -> Value {
    let mut config = common::business::business_config();
    config["api_keys"] = json!([
        {"name": "alice", "key": ALICE, "systems": ["PRD", "QAS"]},
        {"name": "bob", "key": BOB, "systems": ["PRD", "QAS"]},
        {"name": "carol", "key": CAROL, "systems": ["*"]},
        {"name": "ops", "key": OPS, "systems": ["*"], "operator": true},
        {"name": "prd-ops", "key": PRD_OPS, "systems": ["PRD"], "operator": true},
    ]);
    config["agent_tokens"] = json!([
        {"name": "plant", "token": AGENT_TOKEN, "systems": ["PRD", "QAS"]},
    ]);
    config
}

/// An answer: status, headers and JSON body (`Null` when none).
struct Answer {
    status: u16,
    location: Option<String>,
    content_type: String,
    body: Value,
}

async fn send(
    relay: &TestRelay,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut request = relay
        .http
        .request(method, format!("{}{path}", relay.url))
        .bearer_auth(key);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let location = header("location");
    let content_type = header("content-type").unwrap_or_default();
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    Answer {
        status,
        location,
        content_type,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

async fn get(relay: &TestRelay, key: &str, path: &str) -> Answer {
    send(relay, key, Method::GET, path, None, &[]).await
}

async fn delete(relay: &TestRelay, key: &str, path: &str) -> Answer {
    send(relay, key, Method::DELETE, path, None, &[]).await
}

/// Submits `STFC_CONNECTION` on PRD for `key` without waiting; returns its `Location`.
async fn submit(relay: &TestRelay, key: &str, text: &str, headers: &[(&str, &str)]) -> String {
    let mut all = vec![("prefer", "respond-async")];
    all.extend_from_slice(headers);
    let answer = send(
        relay,
        key,
        Method::POST,
        "/v1/systems/PRD/functions/STFC_CONNECTION",
        Some(json!({"REQUTEXT": text})),
        &all,
    )
    .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    answer.location.expect("Location")
}

/// Asserts that `answer` is the 404 of a call that does not exist, for `location`,
/// and says nothing else about it.
fn assert_no_such_call(answer: &Answer, location: &str) {
    assert_eq!(answer.status, 404, "{location}: {}", answer.body);
    assert_eq!(answer.content_type, "application/problem+json");
    let id = location.trim_start_matches("/v1/calls/");
    let expected = json!({
        "type": "/problems/call-not-found", "title": "Call not found", "status": 404,
        "detail": "no such call", "call_id": id,
    });
    assert_eq!(answer.body, expected, "{location}");
}

#[tokio::test]
async fn another_keys_call_does_not_exist_queued_running_or_finished() {
    let relay = TestRelay::start_with(config()).await;
    let location = submit(&relay, ALICE, "alice's", &[]).await;

    // Queued: Bob can neither read nor cancel it (by either header).
    assert_no_such_call(&get(&relay, BOB, &location).await, &location);
    assert_no_such_call(&delete(&relay, BOB, &location).await, &location);
    let by_header = relay
        .http
        .delete(format!("{}{location}", relay.url))
        .header("x-api-key", BOB)
        .send()
        .await
        .unwrap();
    assert_eq!(by_header.status(), 404);
    // A key of every system is no operator either.
    assert_no_such_call(&get(&relay, CAROL, &location).await, &location);
    assert_no_such_call(&delete(&relay, CAROL, &location).await, &location);
    let mine = get(&relay, ALICE, &location).await;
    assert_eq!(mine.status, 202);
    assert_eq!(mine.body["status"], "queued", "Bob's DELETE cancelled it");

    // Running.
    let mut agent = FakeAgent::connect(&relay, "agent-1", &["PRD"], 1).await;
    let unit = agent.next_work().await;
    assert_eq!(location, format!("/v1/calls/{}", unit.call_id));
    assert_no_such_call(&get(&relay, BOB, &location).await, &location);
    assert_no_such_call(&delete(&relay, BOB, &location).await, &location);
    assert_eq!(
        get(&relay, ALICE, &location).await.body["status"],
        "running"
    );

    // Finished: the result never reaches Bob.
    agent
        .succeed(&unit, json!({"ECHOTEXT": "alice's secret result"}))
        .await;
    let mine = get(&relay, ALICE, &location).await;
    assert_eq!(mine.status, 200);
    assert_eq!(mine.body["result"]["ECHOTEXT"], "alice's secret result");
    for key in [BOB, CAROL] {
        assert_no_such_call(&get(&relay, key, &location).await, &location);
        assert_no_such_call(&delete(&relay, key, &location).await, &location);
    }
    relay.stop().await;
}

#[tokio::test]
async fn operators_read_and_cancel_every_call_of_their_systems() {
    let relay = TestRelay::start_with(config()).await;
    // A queued call of Alice's: the operator reads it and cancels it.
    let queued = submit(&relay, ALICE, "cancel me", &[]).await;
    let read = get(&relay, OPS, &queued).await;
    assert_eq!(read.status, 202, "{}", read.body);
    let cancelled = delete(&relay, PRD_OPS, &queued).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(get(&relay, ALICE, &queued).await.status, 410);

    // A finished call: the operator reads the result.
    let done = submit(&relay, ALICE, "read me", &[]).await;
    let mut agent = FakeAgent::connect(&relay, "agent-1", &["PRD", "QAS"], 1).await;
    let unit = agent.next_work().await;
    agent.succeed(&unit, json!({"ECHOTEXT": "read me"})).await;
    for key in [OPS, PRD_OPS] {
        let read = get(&relay, key, &done).await;
        assert_eq!(read.status, 200, "{}", read.body);
        assert_eq!(read.body["result"]["ECHOTEXT"], "read me");
    }

    // An operator of PRD does not see QAS calls.
    let qas = send(
        &relay,
        ALICE,
        Method::POST,
        "/v1/systems/QAS/functions/STFC_CONNECTION",
        Some(json!({})),
        &[("prefer", "respond-async")],
    )
    .await;
    let qas = qas.location.expect("Location");
    assert_no_such_call(&get(&relay, PRD_OPS, &qas).await, &qas);
    assert_no_such_call(&delete(&relay, PRD_OPS, &qas).await, &qas);
    assert_eq!(get(&relay, OPS, &qas).await.status, 202);
    let unit = agent.next_work().await;
    agent.succeed(&unit, json!({})).await;
    relay.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_never_reaches_another_keys_call() {
    let relay = TestRelay::start_with(config()).await;
    let key = [("idempotency-key", "\"account-4711\"")];
    let alice = submit(&relay, ALICE, "same body", &key).await;
    // Same key, same body: Bob gets a call of his own, not Alice's.
    let bob = submit(&relay, BOB, "same body", &key).await;
    assert_ne!(bob, alice);
    // Same key, another body: not 422, which would tell that the key is in use.
    let carol = submit(&relay, CAROL, "another body", &key).await;
    assert_ne!(carol, alice);
    // Not even for an operator.
    let ops = submit(&relay, OPS, "same body", &key).await;
    assert_ne!(ops, alice);
    assert_no_such_call(&get(&relay, BOB, &alice).await, &alice);
    // Alice's retry is hers.
    assert_eq!(submit(&relay, ALICE, "same body", &key).await, alice);

    // Once Alice's call has finished, Bob's retry still does not get its outcome.
    let mut agent = FakeAgent::connect(&relay, "agent-1", &["PRD"], 1).await;
    let mut answered = Vec::new();
    for _ in 0..4 {
        let unit = agent.next_work().await;
        let text = unit.calls[0].parameters["REQUTEXT"].clone();
        agent
            .succeed(&unit, json!({"ECHOTEXT": text, "FROM": unit.call_id}))
            .await;
        answered.push(format!("/v1/calls/{}", unit.call_id));
    }
    answered.sort();
    let mut submitted = vec![alice.clone(), bob.clone(), carol, ops];
    submitted.sort();
    assert_eq!(answered, submitted, "four calls ran, one per key");
    let retry = send(
        &relay,
        BOB,
        Method::POST,
        "/v1/systems/PRD/functions/STFC_CONNECTION",
        Some(json!({"REQUTEXT": "same body"})),
        &key,
    )
    .await;
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert_eq!(
        format!("/v1/calls/{}", retry.body["id"].as_str().unwrap()),
        bob
    );
    assert_eq!(
        format!(
            "/v1/calls/{}",
            retry.body["result"]["FROM"].as_str().unwrap()
        ),
        bob
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_foreign_call_answers_as_a_purged_or_unknown_one() {
    let mut config = config();
    config["result_retention_secs"] = json!(1);
    let relay = TestRelay::start_with(config).await;
    let mut agent = FakeAgent::connect(&relay, "agent-1", &["PRD"], 1).await;
    let purged = submit(&relay, ALICE, "soon gone", &[]).await;
    let unit = agent.next_work().await;
    agent.succeed(&unit, json!({})).await;
    let deadline = tokio::time::Instant::now() + STEP;
    while get(&relay, ALICE, &purged).await.status != 404 {
        assert!(tokio::time::Instant::now() < deadline, "never purged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let foreign = submit(&relay, ALICE, "kept", &[]).await;
    let unit = agent.next_work().await;
    let never = format!("{}x", foreign);
    for (key, location) in [
        (BOB, &foreign),
        (ALICE, &purged),
        (BOB, &purged),
        (BOB, &never),
        (ALICE, &never),
    ] {
        assert_no_such_call(&get(&relay, key, location).await, location);
        assert_no_such_call(&delete(&relay, key, location).await, location);
    }
    agent.succeed(&unit, json!({})).await;
    relay.stop().await;
}

/// Answers units with a simulator from a fake agent, so a test sees each unit's id.
async fn run_on(sim: &Simulator, agent: &mut FakeAgent) -> String {
    let unit = agent.next_work().await;
    let outcome = execute(sim, &unit).await;
    agent.finish(&unit, outcome).await;
    format!("/v1/calls/{}", unit.call_id)
}

#[tokio::test]
async fn actions_and_their_follow_up_units_belong_to_their_key() {
    let relay = TestRelay::start_with(config()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.db");
    let sim = tokio::task::spawn_blocking(move || Simulator::open(&path, SimOptions::default()))
        .await
        .unwrap()
        .unwrap();
    // The function interface is a chain of two units, polled at the first's Location.
    let started = send(
        &relay,
        ALICE,
        Method::GET,
        "/v1/systems/PRD/functions/BAPI_CUSTOMER_GETLIST",
        None,
        &[("prefer", "respond-async")],
    )
    .await;
    assert_eq!(started.status, 202, "{}", started.body);
    let root = started.location.expect("Location");
    let mut agent = FakeAgent::connect(&relay, "agent-1", &["PRD"], 1).await;
    assert_eq!(run_on(&sim, &mut agent).await, root);
    assert_no_such_call(&get(&relay, BOB, &root).await, &root);
    // Alice's poll queues the follow-up; its id is no more Bob's than the first.
    assert_eq!(get(&relay, ALICE, &root).await.status, 202);
    let unit = agent.next_work().await;
    let follow_up = format!("/v1/calls/{}", unit.call_id);
    assert_ne!(follow_up, root);
    assert_no_such_call(&get(&relay, BOB, &follow_up).await, &follow_up);
    assert_no_such_call(&delete(&relay, BOB, &follow_up).await, &follow_up);
    assert_eq!(get(&relay, ALICE, &follow_up).await.status, 202);
    let outcome = execute(&sim, &unit).await;
    agent.finish(&unit, outcome).await;
    let done = get(&relay, ALICE, &root).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["function"], "BAPI_CUSTOMER_GETLIST");
    assert_no_such_call(&get(&relay, BOB, &root).await, &root);
    assert_eq!(get(&relay, OPS, &root).await.body, done.body);

    // A customer create polled to its end by its creator, and by no one else.
    let created = send(
        &relay,
        ALICE,
        Method::POST,
        "/v1/systems/PRD/customers",
        Some(json!({"name": "Owner GmbH", "city": "Walldorf", "country": "DE"})),
        &[("prefer", "respond-async")],
    )
    .await;
    assert_eq!(created.status, 202, "{}", created.body);
    let location = created.location.expect("Location");
    run_on(&sim, &mut agent).await;
    assert_no_such_call(&get(&relay, BOB, &location).await, &location);
    let done = get(&relay, ALICE, &location).await;
    assert_eq!(done.status, 201, "{}", done.body);
    assert!(
        done.body["customer"]
            .as_str()
            .is_some_and(|c| c.len() == 10)
    );
    relay.stop().await;
}
