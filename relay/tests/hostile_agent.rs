//! The relay against hostile agents: agents with real tokens speaking the real
//! wire protocol that forge outcomes, answer for calls they were never given,
//! replay stale attempts, or keep a call for ever by heartbeating and never
//! answering. Each check prints its name when it holds
//! (`cargo test -p sapbridge-relay --test hostile_agent -- --nocapture`).

mod common;

use std::time::Duration;

use common::{AGENT_TOKEN, FakeAgent, PRD_TOKEN, STEP, TestRelay, hello, ok};
use reqwest::StatusCode;
use sapbridge_proto::{AgentMessage, RelayMessage};
use serde_json::{Value, json};

/// Prints a check that held.
fn passed(check: &str) {
    println!("check {check}: passed");
}

/// The call's state as its creator sees it.
async fn status(relay: &TestRelay, id: &str) -> Value {
    relay.get_json(&format!("/v1/calls/{id}")).await["status"].clone()
}

/// Submits a call without waiting; returns its id.
async fn submit(relay: &TestRelay, system: &str) -> String {
    let response = relay
        .call(system, "STFC_CONNECTION", json!({"REQUTEXT": "mine"}))
        .header("Prefer", "respond-async")
        .send()
        .await
        .expect("submit");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.expect("body");
    body["id"].as_str().expect("id").to_owned()
}

/// A forged outcome: the result an attacker wants the client to believe.
fn forged(call_id: &str, attempt: u32) -> AgentMessage {
    AgentMessage::Outcome {
        call_id: call_id.to_owned(),
        attempt,
        outcome: ok(json!({"ECHOTEXT": "forged"})),
    }
}

/// The relay's count of refused outcomes.
async fn refused_count(relay: &TestRelay) -> u64 {
    let text = relay
        .http
        .get(format!("{}/metrics", relay.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix("sapbridge_agent_outcomes_refused_total "))
        .and_then(|n| n.trim().parse().ok())
        .expect("the refused-outcomes counter")
}

#[tokio::test]
async fn outcomes_are_believed_only_from_the_lease_holder() {
    let relay = TestRelay::start().await;
    // An honest agent serving QAS only, and Mallory, whose token serves PRD only.
    let mut honest = FakeAgent::connect(&relay, "honest", &["QAS"], 1).await;
    let mut mallory = FakeAgent::open(&relay, PRD_TOKEN, hello("mallory", &["PRD"], 0)).await;
    assert!(matches!(
        mallory.recv().await,
        Some(RelayMessage::Welcome { .. })
    ));

    // Another system's call, leased to the honest agent.
    let qas = submit(&relay, "QAS").await;
    let qas_unit = honest.next_work().await;
    assert_eq!(qas_unit.call_id, qas);
    mallory.send(&forged(&qas, 1)).await;
    assert_eq!(
        mallory.recv_within(Duration::from_millis(300)).await,
        None,
        "no ack"
    );
    assert_eq!(status(&relay, &qas).await, "running");
    passed("an outcome for another system's call is refused, not acknowledged");

    // A call of its own system that was never leased to it (it has no credits).
    let prd = submit(&relay, "PRD").await;
    for attempt in [0, 1, 2] {
        mallory.send(&forged(&prd, attempt)).await;
    }
    assert_eq!(mallory.recv_within(Duration::from_millis(300)).await, None);
    assert_eq!(status(&relay, &prd).await, "queued");
    passed("an outcome for a call never leased to the session is refused");

    // A call leased to it, answered for an attempt it was not given.
    mallory.send(&AgentMessage::Credits { credits: 1 }).await;
    let unit = mallory.next_work().await;
    assert_eq!((unit.call_id.as_str(), unit.attempt), (prd.as_str(), 1));
    mallory.send(&forged(&prd, 2)).await;
    assert_eq!(mallory.recv_within(Duration::from_millis(300)).await, None);
    assert_eq!(status(&relay, &prd).await, "running");
    passed("an outcome for another attempt of its own lease is refused");

    // The honest answers count; the forged result never reached a client.
    honest
        .succeed(&qas_unit, json!({"ECHOTEXT": "honest"}))
        .await;
    mallory
        .succeed(&unit, json!({"ECHOTEXT": "own lease"}))
        .await;
    let body: Value = relay.get_json(&format!("/v1/calls/{qas}")).await;
    assert_eq!(body["result"]["ECHOTEXT"], "honest", "{body}");
    assert_eq!(body["agent"], "honest");
    passed("the lease holder's outcome is stored, the forged one never was");

    assert_eq!(refused_count(&relay).await, 5);
    passed("refused outcomes are counted in /metrics");
    drop((honest, mallory));
    relay.stop().await;
}

/// Keeps `agent` alive (heartbeats) without answering anything for `period`;
/// returns the units it received meanwhile.
async fn heartbeat_without_answering(
    agent: &mut FakeAgent,
    period: Duration,
) -> Vec<sapbridge_proto::Unit> {
    let end = tokio::time::Instant::now() + period;
    let mut units = Vec::new();
    while tokio::time::Instant::now() < end {
        agent.send(&AgentMessage::Heartbeat).await;
        if let Some(RelayMessage::Work { unit }) =
            agent.recv_within(Duration::from_millis(300)).await
        {
            units.push(unit);
        }
    }
    units
}

#[tokio::test]
async fn a_lease_is_a_deadline_not_a_subscription() {
    let mut config = common::config_json();
    config["lease_secs"] = json!(2);
    config["heartbeat_secs"] = json!(1);
    config["owner_hold_secs"] = json!(1);
    let relay = TestRelay::start_with(config).await;
    let mut hung = FakeAgent::connect(&relay, "hung", &["PRD"], 1).await;
    let response = relay
        .call("PRD", "STFC_CONNECTION", json!({}))
        .header("Prefer", "respond-async")
        .header("Sapbridge-Queue-Ttl", "5")
        .send()
        .await
        .unwrap();
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let unit = hung.next_work().await;
    assert!(unit.deadline_ms.is_some_and(|ms| ms <= 2_000), "{unit:?}");
    passed("a unit carries the time left to start it, at most the lease");

    // Heartbeats keep the connection, not the call: past the lease the call is
    // queued again (held for this agent, never sent to the session that has it),
    // and past its TTL and the hold it ends as outcome unknown.
    let again = heartbeat_without_answering(&mut hung, Duration::from_secs(4)).await;
    assert!(
        again.is_empty(),
        "sent to the same session again: {again:?}"
    );
    let deadline = tokio::time::Instant::now() + STEP;
    let body = loop {
        let response = relay.get(&format!("/v1/calls/{id}")).send().await.unwrap();
        if response.status() != StatusCode::ACCEPTED {
            assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
            break response.json::<Value>().await.unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the call never ended"
        );
        hung.send(&AgentMessage::Heartbeat).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(body["type"], "/problems/outcome-unknown", "{body}");
    assert_eq!(body["rfc_error"]["key"], "LEASE_LAPSED", "{body}");
    passed("a call held by an agent that never answers ends at its TTL, outcome unknown");

    // Its late answer changes nothing.
    hung.send(&AgentMessage::Outcome {
        call_id: id.clone(),
        attempt: 1,
        outcome: ok(json!({"ECHOTEXT": "late"})),
    })
    .await;
    let body: Value = relay.get_json(&format!("/v1/calls/{id}")).await;
    assert_eq!(body["rfc_error"]["key"], "LEASE_LAPSED");
    passed("a late outcome does not change a final call");
    drop(hung);
    relay.stop().await;
}

#[tokio::test]
async fn a_lapsed_lease_reaches_another_agent_only_in_doubt() {
    let mut config = common::config_json();
    config["lease_secs"] = json!(1);
    config["heartbeat_secs"] = json!(1);
    config["owner_hold_secs"] = json!(1);
    let relay = TestRelay::start_with(config).await;
    let mut hung = FakeAgent::open(&relay, AGENT_TOKEN, hello("hung", &["PRD"], 1)).await;
    assert!(matches!(
        hung.recv().await,
        Some(RelayMessage::Welcome { .. })
    ));
    let client = tokio::spawn(relay.call("PRD", "STFC_CONNECTION", json!({})).send());
    let first = hung.next_work().await;
    assert!(!first.in_doubt);
    let mut other = FakeAgent::connect(&relay, "other", &["PRD"], 1).await;
    // The hung agent keeps heartbeating; the other agent gets the unit once the
    // lease and the hold are over, marked in doubt.
    let deadline = tokio::time::Instant::now() + STEP;
    let unit = loop {
        hung.send(&AgentMessage::Heartbeat).await;
        other.send(&AgentMessage::Heartbeat).await;
        if let Some(RelayMessage::Work { unit }) =
            other.recv_within(Duration::from_millis(300)).await
        {
            break unit;
        }
        assert!(tokio::time::Instant::now() < deadline, "never redelivered");
    };
    assert_eq!(
        (unit.call_id.as_str(), unit.attempt, unit.in_doubt),
        (first.call_id.as_str(), 2, true)
    );
    passed("past its lease and hold a call goes to another agent, in doubt");
    other.succeed(&unit, json!({"ECHOTEXT": "other"})).await;
    let body: Value = client.await.unwrap().unwrap().json().await.unwrap();
    assert_eq!(body["agent"], "other");
    // The hung agent's late answer for its lapsed attempt changes nothing (the
    // call is final: it is acknowledged so the agent may forget it).
    hung.send(&forged(&first.call_id, 1)).await;
    assert!(matches!(hung.recv().await, Some(RelayMessage::Ack { .. })));
    let body: Value = relay
        .get_json(&format!("/v1/calls/{}", first.call_id))
        .await;
    assert_eq!(
        (body["agent"].as_str(), body["result"]["ECHOTEXT"].as_str()),
        (Some("other"), Some("other"))
    );
    passed("the first agent's late outcome changes nothing once another answered");
    drop((hung, other));
    relay.stop().await;
}

/// The logon state `GET /v1/systems` shows for `agent` on `system`.
async fn logon_shown(relay: &TestRelay, system: &str, agent: &str) -> Value {
    let body = relay.get_json("/v1/systems").await;
    body["systems"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["system"] == system)
        .flat_map(|s| s["agents"].as_array().cloned().unwrap_or_default())
        .find(|a| a["agent_id"] == agent)
        .map_or(Value::Null, |a| a["logon"].clone())
}

/// Waits until `GET /v1/systems` shows `expected` for `agent` on `system`.
async fn wait_logon(relay: &TestRelay, system: &str, agent: &str, expected: &Value) {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let shown = logon_shown(relay, system, agent).await;
        if &shown == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{system}/{agent}: shows {shown}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn blocked(system: &str, reason: &str) -> sapbridge_proto::SystemStatus {
    sapbridge_proto::SystemStatus {
        system: system.to_owned(),
        logon: sapbridge_proto::LogonStatus::Blocked {
            reason: reason.to_owned(),
            since: "2026-12-07T04:00:00Z".to_owned(),
        },
    }
}

#[tokio::test]
async fn a_system_status_is_believed_only_for_the_agents_own_systems() {
    let relay = TestRelay::start().await;
    let mut honest = FakeAgent::open(&relay, AGENT_TOKEN, hello("honest", &["QAS"], 1)).await;
    match honest.recv().await {
        Some(RelayMessage::Welcome { features, .. }) => assert_eq!(
            features,
            vec![sapbridge_proto::FEATURE_SYSTEM_STATUS.to_owned()]
        ),
        other => panic!("expected a welcome, got {other:?}"),
    }
    assert_eq!(logon_shown(&relay, "QAS", "honest").await, Value::Null);
    let refused = "Name or password is incorrect (repeat logon)";
    honest
        .send(&AgentMessage::SystemStatus {
            systems: vec![blocked("QAS", refused)],
        })
        .await;
    let expected = json!({"state": "blocked", "reason": refused, "since": "2026-12-07T04:00:00Z"});
    wait_logon(&relay, "QAS", "honest", &expected).await;
    passed("a blocked logon reported by the agent shows in /v1/systems");
    honest
        .send(&AgentMessage::SystemStatus {
            systems: vec![sapbridge_proto::SystemStatus {
                system: "QAS".into(),
                logon: sapbridge_proto::LogonStatus::Open,
            }],
        })
        .await;
    wait_logon(&relay, "QAS", "honest", &json!({"state": "open"})).await;
    passed("and its end too");

    // Reports the relay must not believe: each closes the session with a reason
    // and leaves what the honest agent said alone.
    let too_long = "x".repeat(sapbridge_proto::MAX_STATUS_REASON_BYTES + 1);
    for (label, systems) in [
        ("a system outside the hello", vec![blocked("PRD", "forged")]),
        (
            "a system twice",
            vec![blocked("QAS", "one"), blocked("QAS", "two")],
        ),
        ("an oversized reason", vec![blocked("QAS", &too_long)]),
    ] {
        let mut mallory = FakeAgent::open(&relay, AGENT_TOKEN, hello("mallory", &["QAS"], 0)).await;
        assert!(matches!(
            mallory.recv().await,
            Some(RelayMessage::Welcome { .. })
        ));
        mallory.send(&AgentMessage::SystemStatus { systems }).await;
        match mallory.recv().await {
            Some(RelayMessage::Close {
                reason: sapbridge_proto::CloseReason::ProtocolError { detail },
            }) => assert!(detail.contains("system_status"), "{label}: {detail}"),
            other => panic!("{label}: expected a protocol error, got {other:?}"),
        }
        passed(&format!("a status naming {label} closes the session"));
    }
    assert_eq!(
        logon_shown(&relay, "QAS", "honest").await,
        json!({"state": "open"})
    );
    assert_eq!(logon_shown(&relay, "PRD", "mallory").await, Value::Null);
    drop(honest);
    relay.stop().await;
}
