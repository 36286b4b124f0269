//! Clock skew does not matter (protocol 2): a unit carries its deadline as the time
//! remaining and the agent measures it on its monotonic clock, so an agent whose
//! wall clock is an hour ahead of or behind the relay's runs every call sent with
//! `Sapbridge-Queue-Ttl: 60`. (Protocol 1 sent an absolute deadline: an agent ten
//! minutes ahead refused every such call as expired.)
//!
//! Its own test binary: the agent's clock offset (`sapbridge_agent::clock`, feature
//! `test-clock`) holds for the whole process.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use sapbridge_agent::clock;
use sapbridge_tests::{API_KEY, Client, TestAgent, TestRelay, simulator};
use serde_json::json;

const HOUR_MS: i64 = 3_600_000;

/// Calls `STFC_CONNECTION` with a 60 s queue TTL `n` times; each must succeed.
async fn calls_succeed(client: &Client, label: &str, n: usize) -> Result<()> {
    for i in 0..n {
        let text = format!("{label} {i}");
        let reply = client
            .post(
                "/v1/systems/SIM/functions/STFC_CONNECTION",
                &json!({"REQUTEXT": text}),
                &[("prefer", "wait=30"), ("sapbridge-queue-ttl", "60")],
            )
            .await?;
        assert_eq!(reply.status, 200, "{label}: {}", reply.body);
        assert_eq!(
            reply.body["result"]["ECHOTEXT"], text,
            "{label}: {}",
            reply.body
        );
    }
    Ok(())
}

/// How far the agent's clock is from the system's, in ms.
fn agent_skew_ms() -> i64 {
    let system = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    clock::now_unix_ms() - system
}

#[tokio::test]
async fn calls_with_a_short_ttl_succeed_with_the_agent_clock_an_hour_off() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let relay = TestRelay::start(json!({})).await?;
    let client = Client::new(&relay, Some(API_KEY));
    for (offset_ms, label) in [(HOUR_MS, "+1 h"), (-HOUR_MS, "-1 h")] {
        clock::set_offset_ms(offset_ms);
        assert!(
            (agent_skew_ms() - offset_ms).abs() < 60_000,
            "the agent's clock is shifted"
        );
        let sim = simulator(dir.path(), Duration::ZERO)?;
        let agent = TestAgent::start(&relay, "skewed", dir.path(), sim, &["*"], 4)?;
        client.wait_agents("SIM", 1).await?;
        calls_succeed(&client, label, 5).await?;
        // The clock jumps by two hours while the agent runs.
        clock::set_offset_ms(-offset_ms);
        calls_succeed(&client, &format!("{label}, then jumped"), 5).await?;
        agent.stop().await?;
        client.wait_agents("SIM", 0).await?;
    }
    clock::set_offset_ms(0);
    relay.stop().await
}
