//! An integer written as `10.0` (PowerShell and many JSON libraries write them
//! so) is accepted where SAP expects an integer — by the agent and SAP before the
//! relay knows the interface, and by the relay's own check once it does — while
//! `2.5` is refused.

use std::time::Duration;

use anyhow::Result;
use sapbridge_tests::{API_KEY, Client, TestAgent, TestRelay, simulator};
use serde_json::json;

#[tokio::test]
async fn integral_floats_are_integers() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let relay = TestRelay::start(json!({})).await?;
    let sim = simulator(dir.path(), Duration::ZERO)?;
    let allow = [
        "RFC_READ_TABLE",
        "RFC_GET_FUNCTION_INTERFACE",
        "DDIF_FIELDINFO_GET",
    ];
    let agent = TestAgent::start(&relay, "agent-1", dir.path(), sim, &allow, 4)?;
    let client = Client::new(&relay, Some(API_KEY));
    client.wait_agents("SIM", 1).await?;
    let read = |rows: serde_json::Value| json!({"QUERY_TABLE": "KNA1", "ROWCOUNT": rows, "FIELDS": [{"FIELDNAME": "KUNNR"}]});

    // Not cached: the agent and the simulator take 2.0 as 2.
    let uncached = client
        .call("SIM", "RFC_READ_TABLE", &read(json!(2.0)))
        .await?;
    assert_eq!(uncached.status, 200, "{}", uncached.body);
    assert_eq!(
        uncached.body["result"]["DATA"].as_array().map(Vec::len),
        Some(2)
    );

    // Cached: the relay checks the call itself, and takes 2.0 too.
    let interface = client
        .get("/v1/systems/SIM/functions/RFC_READ_TABLE")
        .await?;
    assert_eq!(interface.status, 200, "{}", interface.body);
    let cached = client
        .call("SIM", "RFC_READ_TABLE", &read(json!(2.0)))
        .await?;
    assert_eq!(cached.status, 200, "{}", cached.body);
    assert_eq!(
        cached.body["result"]["DATA"].as_array().map(Vec::len),
        Some(2)
    );
    let fraction = client
        .call("SIM", "RFC_READ_TABLE", &read(json!(2.5)))
        .await?;
    assert_eq!(fraction.status, 400, "{}", fraction.body);
    assert!(
        fraction.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("ROWCOUNT")),
        "{}",
        fraction.body
    );
    agent.stop().await?;
    relay.stop().await
}
