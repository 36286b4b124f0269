//! The agent endpoint over real WebSockets: authentication, the hello checks, the
//! heartbeat timeout, discovery and shutdown.

mod common;

use std::time::Duration;

use common::{AGENT_TOKEN, FakeAgent, PRD_TOKEN, TestRelay, config_json, hello, open_socket};
use sapbridge_proto::{AgentMessage, CloseReason, PROTOCOL_VERSION, RelayMessage};
use serde_json::Value;
use tokio_tungstenite::tungstenite;

#[tokio::test]
async fn wrong_or_missing_token_gets_401() {
    let relay = TestRelay::start().await;
    match open_socket(&relay, "not-a-token").await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    // An API key is not an agent token.
    assert!(open_socket(&relay, common::API_KEY).await.is_err());
    relay.stop().await;
}

#[tokio::test]
async fn protocol_mismatch_is_closed_with_its_reason() {
    let relay = TestRelay::start().await;
    let old = AgentMessage::Hello {
        reconnects: 0,
        protocol: PROTOCOL_VERSION + 1,
        agent_id: "old".into(),
        agent_version: "0.0.1".into(),
        systems: vec!["PRD".into()],
        credits: 1,
        capabilities: Vec::new(),
    };
    let mut agent = FakeAgent::open(&relay, AGENT_TOKEN, old).await;
    let expected = CloseReason::ProtocolMismatch {
        expected: PROTOCOL_VERSION,
        got: PROTOCOL_VERSION + 1,
    };
    assert_eq!(
        agent.recv().await,
        Some(RelayMessage::Close {
            reason: expected.clone()
        })
    );
    assert_eq!(agent.recv().await, None);
    let frame = agent.close_frame.expect("close frame");
    assert_eq!(u16::from(frame.code), expected.code());
    assert_eq!(frame.reason.as_str(), expected.to_string());
    relay.stop().await;
}

#[tokio::test]
async fn token_may_only_serve_its_systems() {
    let relay = TestRelay::start().await;
    let mut agent = FakeAgent::open(&relay, PRD_TOKEN, hello("a", &["PRD", "QAS"], 1)).await;
    assert_eq!(
        agent.recv().await,
        Some(RelayMessage::Close {
            reason: CloseReason::SystemNotAllowed {
                system: "QAS".into()
            }
        })
    );
    let mut allowed = FakeAgent::open(&relay, PRD_TOKEN, hello("b", &["PRD"], 1)).await;
    assert!(matches!(
        allowed.recv().await,
        Some(RelayMessage::Welcome { .. })
    ));
    relay.stop().await;
}

#[tokio::test]
async fn silent_agent_is_closed_after_two_heartbeats() {
    let mut config = config_json();
    config["heartbeat_secs"] = 1.into();
    config["lease_secs"] = 5.into();
    let relay = TestRelay::start_with(config).await;
    let mut agent = FakeAgent::open(&relay, AGENT_TOKEN, hello("quiet", &["PRD"], 1)).await;
    match agent.recv().await {
        Some(RelayMessage::Welcome { heartbeat_secs, .. }) => assert_eq!(heartbeat_secs, 1),
        other => panic!("expected welcome, got {other:?}"),
    }
    // The agent reads (the relay's heartbeats arrive) but never writes.
    let started = std::time::Instant::now();
    assert_eq!(
        agent.recv_within(Duration::from_secs(5)).await,
        Some(RelayMessage::Close {
            reason: CloseReason::HeartbeatTimeout
        })
    );
    assert!(started.elapsed() >= Duration::from_millis(1500));
    relay.stop().await;
}

#[tokio::test]
async fn systems_list_connected_agents() {
    let relay = TestRelay::start().await;
    let agent = FakeAgent::connect(&relay, "agent-7", &["PRD"], 3).await;
    let body: Value = relay
        .get("/v1/systems")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let systems = body["systems"].as_array().unwrap();
    let prd = systems.iter().find(|s| s["system"] == "PRD").unwrap();
    assert_eq!(prd["online"], true);
    let listed = &prd["agents"][0];
    assert_eq!(listed["agent_id"], "agent-7");
    assert_eq!(listed["agent_version"], "test-1.0");
    assert_eq!(listed["session_id"], agent.session_id.as_str());
    assert_eq!(listed["credits"], 3);
    assert_eq!(listed["in_flight"], 0);
    assert!(listed["connected_at"].is_string());
    let qas = systems.iter().find(|s| s["system"] == "QAS").unwrap();
    assert_eq!(qas["online"], false);

    // A QAS-only key sees only QAS.
    let scoped: Value = relay
        .http
        .get(format!("{}/v1/systems", relay.url))
        .header("X-API-Key", common::QAS_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(scoped["systems"].as_array().unwrap().len(), 1);
    relay.stop().await;
}

#[tokio::test]
async fn shutdown_tells_agents() {
    let relay = TestRelay::start().await;
    let mut agent = FakeAgent::connect(&relay, "agent-1", &["PRD"], 1).await;
    let stopping = tokio::spawn(relay.stop());
    assert_eq!(
        agent.recv().await,
        Some(RelayMessage::Close {
            reason: CloseReason::ShuttingDown
        })
    );
    stopping.await.unwrap();
}

#[tokio::test]
async fn the_listing_shows_the_reconnects_an_agent_counts() {
    let relay = TestRelay::start().await;
    let mut reconnected = hello("agent-9", &["PRD"], 1);
    if let AgentMessage::Hello { reconnects, .. } = &mut reconnected {
        *reconnects = 4;
    }
    let mut agent = FakeAgent::open(&relay, AGENT_TOKEN, reconnected).await;
    assert!(matches!(
        agent.recv().await,
        Some(RelayMessage::Welcome { .. })
    ));
    let body: Value = relay
        .get("/v1/systems")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let prd = body["systems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["system"] == "PRD")
        .unwrap();
    assert_eq!(prd["agents"][0]["reconnects"], 4, "{prd}");
    relay.stop().await;
}
