//! Calls end to end: HTTP client → relay → fake agent → relay → HTTP client.

mod common;

use std::time::Duration;

use common::{FakeAgent, STEP, TestRelay, params};
use reqwest::StatusCode;
use sapbridge_proto::{
    AgentMessage, CallResult, CommitPolicy, ErrorGroup, Outcome, RfcError, TransactionOutcome,
};
use serde_json::{Value, json};

#[tokio::test]
async fn sync_call_returns_the_result() {
    let relay = TestRelay::start().await;
    let mut agent = FakeAgent::connect(&relay, "agent-1", &["PRD"], 4).await;
    let request = relay
        .call("PRD", "stfc_connection", json!({"REQUTEXT": "hello"}))
        .send();
    let client = tokio::spawn(request);
    let unit = agent.next_work().await;
    assert_eq!(unit.system, "PRD");
    assert_eq!(unit.attempt, 1);
    assert_eq!(unit.commit, CommitPolicy::None);
    assert_eq!(unit.calls[0].function, "STFC_CONNECTION");
    assert_eq!(unit.calls[0].parameters["REQUTEXT"], "hello");
    agent
        .succeed(&unit, json!({"ECHOTEXT": "hello", "RESPTEXT": "SAP R/3"}))
        .await;
    let response = client.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], unit.call_id.as_str());
    assert_eq!(body["status"], "succeeded");
    assert_eq!(body["system"], "PRD");
    assert_eq!(body["function"], "STFC_CONNECTION");
    assert_eq!(body["result"]["ECHOTEXT"], "hello");
    assert_eq!(body["agent"], "agent-1");
    for field in ["submitted_at", "completed_at"] {
        let text = body[field].as_str().unwrap();
        assert!(
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .is_ok(),
            "{field}: {text}"
        );
    }
    relay.stop().await;
}

#[tokio::test]
async fn async_call_answers_202_then_polls_to_200() {
    let relay = TestRelay::start().await;
    let response = relay
        .call("PRD", "STFC_CONNECTION", json!({"REQUTEXT": "later"}))
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "queued");
    assert_eq!(
        location,
        format!("/v1/calls/{}", body["id"].as_str().unwrap())
    );

    let poll = relay.get(&location).send().await.unwrap();
    assert_eq!(poll.status(), StatusCode::ACCEPTED);

    // The agent connects only now; the call was waiting for it.
    let mut agent = FakeAgent::connect(&relay, "agent-1", &["PRD"], 1).await;
    let unit = agent.next_work().await;
    let running = relay.get(&location).send().await.unwrap();
    assert_eq!(running.status(), StatusCode::ACCEPTED);
    let running: Value = running.json().await.unwrap();
    assert_eq!(running["status"], "running");
    agent.succeed(&unit, json!({"ECHOTEXT": "later"})).await;
    let done = relay.get(&location).send().await.unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    let done: Value = done.json().await.unwrap();
    assert_eq!(done["result"]["ECHOTEXT"], "later");
    relay.stop().await;
}

#[tokio::test]
async fn sync_call_waits_for_an_agent_that_connects_later() {
    let relay = TestRelay::start().await;
    let client = tokio::spawn(
        relay
            .call("PRD", "STFC_CONNECTION", json!({}))
            .header("Prefer", "wait=30")
            .send(),
    );
    relay.wait_queue_depth(1).await;
    let mut agent = FakeAgent::connect(&relay, "late-agent", &["PRD"], 1).await;
    let unit = agent.next_work().await;
    agent.succeed(&unit, json!({"ECHOTEXT": ""})).await;
    let response = client.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    relay.stop().await;
}

#[tokio::test]
async fn call_of_a_vanished_agent_is_redelivered_to_it_first() {
    let relay = TestRelay::start().await;
    let client = tokio::spawn(relay.call("PRD", "STFC_CONNECTION", json!({})).send());
    let mut first = FakeAgent::connect(&relay, "agent-1", &["PRD"], 1).await;
    let unit = first.next_work().await;
    assert_eq!(unit.attempt, 1);
    drop(first);
    // Another agent does not get it while the one that had it may come back (its
    // journal alone knows whether the unit started)...
    let mut second = FakeAgent::connect(&relay, "agent-2", &["PRD"], 1).await;
    assert_eq!(second.recv_within(Duration::from_millis(500)).await, None);
    // ... the same agent, reconnected, does, at once and not in doubt.
    let mut back = FakeAgent::connect(&relay, "agent-1", &["PRD"], 1).await;
    let again = back.next_work().await;
    assert_eq!(again.call_id, unit.call_id);
    assert_eq!((again.attempt, again.in_doubt), (2, false));
    back.succeed(&again, json!({"ECHOTEXT": "x"})).await;
    let body: Value = client.await.unwrap().unwrap().json().await.unwrap();
    assert_eq!(body["agent"], "agent-1");
    assert_eq!(body["attempts"], 2);
    relay.stop().await;
}

#[tokio::test]
async fn call_of_a_vanished_agent_goes_to_another_in_doubt_after_the_hold() {
    let mut config = common::config_json();
    config["owner_hold_secs"] = json!(1);
    let relay = TestRelay::start_with(config).await;
    let client = tokio::spawn(relay.call("PRD", "STFC_CONNECTION", json!({})).send());
    let mut first = FakeAgent::connect(&relay, "agent-1", &["PRD"], 1).await;
    let unit = first.next_work().await;
    drop(first);
    let mut second = FakeAgent::connect(&relay, "agent-2", &["PRD"], 1).await;
    let again = second.next_work().await;
    assert_eq!(again.call_id, unit.call_id);
    assert_eq!((again.attempt, again.in_doubt), (2, true));
    second.succeed(&again, json!({"ECHOTEXT": "x"})).await;
    let body: Value = client.await.unwrap().unwrap().json().await.unwrap();
    assert_eq!(body["agent"], "agent-2");
    assert_eq!(body["attempts"], 2);
    relay.stop().await;
}

#[tokio::test]
async fn an_agent_never_gets_more_units_than_credits() {
    let relay = TestRelay::start().await;
    for i in 0..3 {
        let response = relay
            .call("PRD", "STFC_CONNECTION", json!({"REQUTEXT": i.to_string()}))
            .header("Prefer", "respond-async")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    let mut agent = FakeAgent::connect(&relay, "agent-1", &["PRD"], 1).await;
    for _ in 0..3 {
        let unit = agent.next_work().await;
        // With its one credit in use, nothing else arrives.
        assert_eq!(agent.recv_within(Duration::from_millis(300)).await, None);
        agent.succeed(&unit, json!({})).await;
    }
    relay.stop().await;
}

#[tokio::test]
async fn call_expires_after_its_queue_ttl() {
    let relay = TestRelay::start().await;
    let started = std::time::Instant::now();
    let response = relay
        .call("PRD", "STFC_CONNECTION", json!({}))
        .header("Prefer", "wait=20")
        .header("Sapbridge-Queue-Ttl", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < STEP);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "/problems/expired");
    assert_eq!(body["status"], 504);
    assert!(body["call_id"].is_string());
    relay.stop().await;
}

#[tokio::test]
async fn delete_cancels_a_queued_call_only() {
    let relay = TestRelay::start().await;
    let response = relay
        .call("PRD", "STFC_CONNECTION", json!({}))
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let url = format!("{}{location}", relay.url);
    let delete = || relay.http.delete(&url).bearer_auth(common::API_KEY).send();
    let cancelled = delete().await.unwrap();
    assert_eq!(cancelled.status(), StatusCode::OK);
    let body: Value = cancelled.json().await.unwrap();
    assert_eq!(body["status"], "cancelled");
    assert_eq!(delete().await.unwrap().status(), StatusCode::CONFLICT);
    assert_eq!(
        relay.get(&location).send().await.unwrap().status(),
        StatusCode::GONE
    );

    // A leased call cannot be cancelled.
    let response = relay
        .call("PRD", "STFC_CONNECTION", json!({}))
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let mut agent = FakeAgent::connect(&relay, "agent-1", &["PRD"], 1).await;
    let unit = agent.next_work().await;
    let url = format!("{}{location}", relay.url);
    let conflict = relay
        .http
        .delete(&url)
        .bearer_auth(common::API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(conflict.status(), StatusCode::CONFLICT);
    agent.succeed(&unit, json!({})).await;
    relay.stop().await;
}

fn abap_error(key: &str) -> RfcError {
    RfcError::new(
        ErrorGroup::AbapApplicationFailure,
        key,
        "table not available",
    )
    .with_message("SV", "E", "029")
    .with_vars("T008X", "", "", "")
}

#[tokio::test]
async fn errors_map_to_problems() {
    let relay = TestRelay::start().await;
    let mut agent = FakeAgent::connect(&relay, "agent-1", &["PRD"], 1).await;
    let cases = [
        (
            Outcome::Completed {
                results: vec![CallResult::Error(abap_error("TABLE_NOT_AVAILABLE"))],
                transaction: None,
            },
            422,
            "/problems/abap-application-failure",
        ),
        (
            Outcome::Failed {
                error: RfcError::new(ErrorGroup::NotAllowed, "NOT_ALLOWED", "not on the list"),
            },
            403,
            "/problems/not-allowed",
        ),
        (
            Outcome::Failed {
                error: RfcError::new(
                    ErrorGroup::ExternalRuntimeFailure,
                    "RFC_INVALID_PARAMETER",
                    "NO_SUCH",
                ),
            },
            400,
            "/problems/invalid-parameters",
        ),
        (
            Outcome::Failed {
                error: RfcError::new(
                    ErrorGroup::CommunicationFailure,
                    "RFC_COMMUNICATION_FAILURE",
                    "down",
                ),
            },
            502,
            "/problems/communication-failure",
        ),
    ];
    for (outcome, status, kind) in cases {
        let client = tokio::spawn(relay.call("PRD", "RFC_READ_TABLE", json!({})).send());
        let unit = agent.next_work().await;
        agent.finish(&unit, outcome).await;
        let response = client.await.unwrap().unwrap();
        assert_eq!(response.status().as_u16(), status);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["type"], kind);
        assert_eq!(body["call_id"], unit.call_id.as_str());
        assert!(body["rfc_error"]["group"].is_string(), "{body}");
    }
    relay.stop().await;
}

#[tokio::test]
async fn transactions_commit_or_report_the_rollback() {
    let relay = TestRelay::start().await;
    let mut agent = FakeAgent::connect(&relay, "agent-1", &["PRD"], 1).await;
    let body = json!({"calls": [
        {"function": "BAPI_CUSTOMER_CREATEFROMDATA1", "parameters": {"PI_PERSONALDATA": {"LASTNAME": "X"}}},
        {"function": "bapi_customer_getdetail2", "parameters": {"CUSTOMERNO": "0000000000"}}
    ]});
    let post = |body: &Value| {
        relay
            .http
            .post(format!("{}/v1/systems/PRD/transactions", relay.url))
            .bearer_auth(common::API_KEY)
            .json(body)
            .send()
    };

    let client = tokio::spawn(post(&body));
    let unit = agent.next_work().await;
    assert_eq!(unit.commit, CommitPolicy::CommitOnSuccess);
    assert_eq!(unit.calls[1].function, "BAPI_CUSTOMER_GETDETAIL2");
    let committed = Outcome::Completed {
        results: vec![
            CallResult::Ok(params(json!({"CUSTOMERNO": "0000100001"}))),
            CallResult::Ok(params(json!({"RETURN": {"TYPE": "S"}}))),
        ],
        transaction: Some(TransactionOutcome {
            committed: true,
            failed_call: None,
            reason: None,
            result: Some(CallResult::Ok(params(json!({"RETURN": {"TYPE": ""}})))),
        }),
    };
    agent.finish(&unit, committed).await;
    let response = client.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["committed"], true);
    assert_eq!(
        answer["results"][0]["function"],
        "BAPI_CUSTOMER_CREATEFROMDATA1"
    );
    assert_eq!(answer["results"][0]["result"]["CUSTOMERNO"], "0000100001");
    assert!(answer["commit"].is_object());

    let client = tokio::spawn(post(&body));
    let unit = agent.next_work().await;
    let message = "Customer 0000000000 does not exist";
    let rolled_back = Outcome::Completed {
        results: vec![
            CallResult::Ok(params(json!({"CUSTOMERNO": "0000100002"}))),
            CallResult::Ok(params(json!({"RETURN": {"TYPE": "E", "MESSAGE": message}}))),
        ],
        transaction: Some(TransactionOutcome {
            committed: false,
            failed_call: Some(1),
            reason: None,
            result: Some(CallResult::Ok(params(json!({})))),
        }),
    };
    agent.finish(&unit, rolled_back).await;
    let response = client.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/transaction-rolled-back");
    assert_eq!(problem["committed"], false);
    assert_eq!(problem["failed_call"], 1);
    assert_eq!(problem["detail"], message);
    assert_eq!(problem["return"][0]["MESSAGE"], message);
    assert_eq!(problem["results"].as_array().unwrap().len(), 2);

    let empty = post(&json!({"calls": []})).await.unwrap();
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);
    relay.stop().await;
}

#[tokio::test]
async fn idempotency_key_returns_the_stored_answer() {
    let relay = TestRelay::start().await;
    let mut agent = FakeAgent::connect(&relay, "agent-1", &["PRD"], 1).await;
    let send = |text: &str, prefer: &str| {
        relay
            .call("PRD", "STFC_CONNECTION", json!({"REQUTEXT": text}))
            .header("Idempotency-Key", "\"k-1\"")
            .header("Prefer", prefer)
            .send()
    };
    let client = tokio::spawn(send("one", "wait=30"));
    let unit = agent.next_work().await;
    let location = format!("/v1/calls/{}", unit.call_id);

    // A retry while the first still runs joins it: 202 with the first call's
    // Location, at once or after its own wait.
    let running = send("one", "respond-async").await.unwrap();
    assert_eq!(running.status(), StatusCode::ACCEPTED);
    assert_eq!(running.headers()["location"], location.as_str());
    assert_eq!(running.headers()["retry-after"], "1");
    let running: Value = running.json().await.unwrap();
    assert_eq!(running["status"], "running");
    let started = std::time::Instant::now();
    let waited = send("one", "wait=1").await.unwrap();
    assert_eq!(waited.status(), StatusCode::ACCEPTED);
    assert_eq!(waited.headers()["location"], location.as_str());
    assert!(started.elapsed() >= Duration::from_millis(900), "no wait");
    // Another body is refused while it runs too.
    let other = send("two", "respond-async").await.unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // A retry that waits gets the final answer when the call ends.
    let joined = tokio::spawn(send("one", "wait=30"));

    agent.succeed(&unit, json!({"ECHOTEXT": "one"})).await;
    let first: Value = client.await.unwrap().unwrap().json().await.unwrap();
    let joined = joined.await.unwrap().unwrap();
    assert_eq!(joined.status(), StatusCode::OK);
    let joined: Value = joined.json().await.unwrap();
    assert_eq!(joined, first);
    let again = send("one", "respond-async").await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["result"]["ECHOTEXT"], "one");
    let other = send("two", "wait=1").await.unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // The agent never saw a second unit.
    agent.send(&AgentMessage::Heartbeat).await;
    assert_eq!(agent.recv_within(Duration::from_millis(200)).await, None);
    relay.stop().await;
}

#[tokio::test]
async fn public_url_makes_location_absolute() {
    let mut config = common::config_json();
    config["public_url"] = json!("https://relay.example.com/");
    let relay = TestRelay::start_with(config).await;
    let response = relay
        .call("PRD", "STFC_CONNECTION", json!({}))
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!(
            "https://relay.example.com/v1/calls/{}",
            body["id"].as_str().unwrap()
        )
    );
    // The absolute URL's path is the same resource.
    let path = location.trim_start_matches("https://relay.example.com");
    assert_eq!(
        relay.get(path).send().await.unwrap().status(),
        StatusCode::ACCEPTED
    );
    relay.stop().await;
}

#[test]
fn public_url_must_be_an_absolute_http_url() {
    for bad in [
        "relay.example.com",
        "ftp://relay.example.com",
        "https://x.example/?a=1",
        "/v1",
    ] {
        let mut config = common::config_json();
        config["public_url"] = json!(bad);
        let config: sapbridge_relay::RelayConfig = serde_json::from_value(config).unwrap();
        let error = config.validate().expect_err(bad).to_string();
        assert!(error.contains("public_url"), "{bad}: {error}");
    }
}

/// The `Location` of an asynchronous call made with `headers`, and the call id.
async fn async_location(relay: &TestRelay, headers: &[(&str, &str)]) -> (String, String) {
    let mut request = relay
        .call("PRD", "STFC_CONNECTION", json!({}))
        .header("Prefer", "respond-async");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    (location, body["id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn locations_are_absolute_as_configured_and_forwarding_is_believed_only_from_proxies() {
    // absolute_locations: from the request's Host; a client's forwarding headers
    // are not believed (it is no trusted proxy).
    let mut config = common::config_json();
    config["absolute_locations"] = json!(true);
    let relay = TestRelay::start_with(config).await;
    let (location, id) = async_location(
        &relay,
        &[
            ("x-forwarded-host", "evil.example.com"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "proto=https;host=evil.example.com"),
        ],
    )
    .await;
    assert_eq!(location, format!("{}/v1/calls/{id}", relay.url));
    // Followed as given, it answers.
    let polled = relay
        .http
        .get(&location)
        .bearer_auth(common::API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(polled.status(), StatusCode::ACCEPTED);
    assert_eq!(polled.headers()["location"], location.as_str());
    relay.stop().await;

    // Behind a trusted proxy (the test connects from 127.0.0.1): its headers
    // say how clients reach the relay.
    let mut config = common::config_json();
    config["trusted_proxies"] = json!(["127.0.0.0/8", "::1"]);
    let relay = TestRelay::start_with(config).await;
    let (location, id) = async_location(
        &relay,
        &[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "sap.example.com"),
            ("x-forwarded-prefix", "/bridge"),
        ],
    )
    .await;
    assert_eq!(
        location,
        format!("https://sap.example.com/bridge/v1/calls/{id}")
    );
    let (location, id) = async_location(
        &relay,
        &[(
            "forwarded",
            "for=192.0.2.1;proto=https;host=\"relay.example.com:8443\"",
        )],
    )
    .await;
    assert_eq!(
        location,
        format!("https://relay.example.com:8443/v1/calls/{id}")
    );
    // A malformed forwarded host leaves the Location a path, never something odd.
    let (location, id) = async_location(&relay, &[("x-forwarded-host", "a@evil.com/x")]).await;
    assert_eq!(location, format!("/v1/calls/{id}"));
    relay.stop().await;

    // A public_url wins over everything.
    let mut config = common::config_json();
    config["public_url"] = json!("https://relay.example.com/sapbridge/");
    config["trusted_proxies"] = json!(["127.0.0.1"]);
    let relay = TestRelay::start_with(config).await;
    let (location, id) = async_location(&relay, &[("x-forwarded-host", "other.example.com")]).await;
    assert_eq!(
        location,
        format!("https://relay.example.com/sapbridge/v1/calls/{id}")
    );
    relay.stop().await;

    // An entry that is no address is refused at start.
    let mut config = common::config_json();
    config["trusted_proxies"] = json!(["proxy.example.com"]);
    let parsed: Result<sapbridge_relay::RelayConfig, _> = serde_json::from_value(config);
    let problem = parsed.unwrap().validate().unwrap_err().to_string();
    assert!(problem.contains("trusted_proxies"), "{problem}");
}
