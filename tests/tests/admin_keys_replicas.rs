//! API keys created through `/v1/admin/keys` on one relay replica hold on another
//! sharing its PostgreSQL database, and a revocation on one is refused on the
//! other, each within the replicas' refresh (bounded waits, no timing asserted).

use std::time::Instant;

use anyhow::{Context, Result};
use sapbridge_tests::postgres::{TestDatabase, skip_or_fail};
use sapbridge_tests::{AGENT_TOKEN, DEADLINE, TestRelay};
use serde_json::{Value, json};

const OPS_KEY: &str = "test-ops-key-replicas";

fn extra(url: &str) -> Value {
    json!({
        "api_keys": [{"name": "ops", "key": OPS_KEY, "systems": ["*"], "operator": true}],
        "agent_tokens": [{"name": "agent", "token": AGENT_TOKEN, "systems": ["SIM"]}],
        "queue": {"store": "postgres", "url": url},
    })
}

async fn status_with(http: &reqwest::Client, relay: &TestRelay, key: &str) -> Result<u16> {
    Ok(http
        .get(format!("{}/v1/systems", relay.url()))
        .bearer_auth(key)
        .send()
        .await?
        .status()
        .as_u16())
}

/// Waits (bounded) until `relay` answers `key` with `status`.
async fn until(http: &reqwest::Client, relay: &TestRelay, key: &str, status: u16) -> Result<()> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if status_with(http, relay, key).await? == status {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the other replica never answered {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_created_and_revoked_on_one_replica_hold_on_the_other() -> Result<()> {
    let db = match TestDatabase::create().await {
        Ok(db) => db,
        Err(error) => {
            skip_or_fail(
                "keys_created_and_revoked_on_one_replica_hold_on_the_other",
                &format!("{error:#}"),
            );
            return Ok(());
        }
    };
    let a = TestRelay::start(extra(db.url())).await?;
    let b = TestRelay::start(extra(db.url())).await?;
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{}/v1/admin/keys", a.url()))
        .bearer_auth(OPS_KEY)
        .json(&json!({"name": "shared-flow", "systems": ["SIM"]}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let key = created["key"].as_str().context("the new key")?.to_owned();
    assert_eq!(
        status_with(&http, &a, &key).await?,
        200,
        "at once where created"
    );
    until(&http, &b, &key, 200).await?;

    let revoked = http
        .delete(format!("{}/v1/admin/keys/shared-flow", b.url()))
        .bearer_auth(OPS_KEY)
        .send()
        .await?;
    assert_eq!(revoked.status().as_u16(), 204);
    assert_eq!(
        status_with(&http, &b, &key).await?,
        401,
        "at once where revoked"
    );
    until(&http, &a, &key, 401).await?;
    a.stop().await?;
    b.stop().await?;
    Ok(())
}
