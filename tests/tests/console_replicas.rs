//! The console's overview shows the same last hour on every relay replica
//! sharing a PostgreSQL database: calls run through replica A (one refused by
//! the agent's allowlist) appear in the chart and in "needs attention" of both A
//! and B, whose figures come from the shared store (bounded waits, no timing
//! asserted).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sapbridge_tests::postgres::{TestDatabase, skip_or_fail};
use sapbridge_tests::{AGENT_TOKEN, DEADLINE, TestAgent, TestRelay, simulator};
use serde_json::{Value, json};

const OPS_KEY: &str = "test-ops-key-console-replicas";

fn extra(url: &str) -> Value {
    json!({
        "api_keys": [{"name": "ops", "key": OPS_KEY, "systems": ["*"], "operator": true}],
        "agent_tokens": [{"name": "agent", "token": AGENT_TOKEN, "systems": ["SIM"]}],
        "queue": {"store": "postgres", "url": url},
    })
}

/// A client that neither follows redirects nor keeps cookies (the test does).
fn client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// The value `Set-Cookie` sets for cookie `name`.
fn cookie_set(response: &reqwest::Response, name: &str) -> Result<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
        .with_context(|| format!("no cookie {name}"))
}

fn csrf_of(html: &str) -> Result<String> {
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).context("a csrf field")? + marker.len();
    let end = html[start..].find('"').context("end of value")?;
    Ok(html[start..start + end].to_owned())
}

/// Signs in to `relay`'s console with the form; returns the session cookie.
async fn sign_in(http: &reqwest::Client, relay: &TestRelay) -> Result<String> {
    let form = http
        .get(format!("{}/console/sign-in", relay.url()))
        .send()
        .await?;
    let form_cookie = cookie_set(&form, "sapbridge_console_signin")?;
    let csrf = csrf_of(&form.text().await?)?;
    let signed_in = http
        .post(format!("{}/console/sign-in", relay.url()))
        .header("cookie", format!("sapbridge_console_signin={form_cookie}"))
        .form(&[("key", OPS_KEY), ("csrf", csrf.as_str())])
        .send()
        .await?;
    anyhow::ensure!(signed_in.status().as_u16() == 303, "sign-in refused");
    cookie_set(&signed_in, "sapbridge_console")
}

/// The description of the chart of `system` on an overview page.
fn chart_desc(overview: &str, system: &str) -> Option<String> {
    let start = format!(r#"<figure class="chart" data-system="{system}">"#);
    let figure = overview.split_once(start.as_str())?.1;
    let desc = figure.split_once("<desc")?.1.split_once('>')?.1;
    Some(desc.split_once("</desc>")?.0.to_owned())
}

/// Gets `relay`'s overview until its chart of SIM says `wanted` and its
/// attention list names the allowlist's refusal; returns the chart's words.
async fn overview_until(
    http: &reqwest::Client,
    relay: &TestRelay,
    cookie: &str,
    wanted: &str,
) -> Result<String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let page = http
            .get(format!("{}/console/", relay.url()))
            .header("cookie", format!("sapbridge_console={cookie}"))
            .send()
            .await?
            .text()
            .await?;
        let desc = chart_desc(&page, "SIM").unwrap_or_default();
        let refusal = page.contains("SIM: 1 call(s) refused by the agent&#39;s allowlist")
            || page.contains("SIM: 1 call(s) refused by the agent's allowlist");
        if desc.starts_with(wanted) && refusal {
            return Ok(desc);
        }
        if Instant::now() >= deadline {
            bail!(
                "{} never showed {wanted:?} and the refusal:\n{page}",
                relay.url()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Calls `function` on SIM through `relay`; its HTTP status.
async fn call(http: &reqwest::Client, relay: &TestRelay, function: &str) -> Result<u16> {
    Ok(http
        .post(format!(
            "{}/v1/systems/SIM/functions/{function}",
            relay.url()
        ))
        .bearer_auth(OPS_KEY)
        .header("prefer", "wait=10")
        .json(&json!({}))
        .send()
        .await?
        .status()
        .as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_shows_the_same_hour() -> Result<()> {
    let db = match TestDatabase::create().await {
        Ok(db) => db,
        Err(error) => {
            skip_or_fail("every_replica_shows_the_same_hour", &format!("{error:#}"));
            return Ok(());
        }
    };
    let a = TestRelay::start(extra(db.url())).await?;
    let b = TestRelay::start(extra(db.url())).await?;
    let dir = tempfile::tempdir()?;
    let sim = simulator(dir.path(), Duration::ZERO)?;
    let agent = TestAgent::start(&a, "agent-a", dir.path(), Arc::clone(&sim), &["STFC_*"], 4)?;
    let http = client()?;

    // Three calls that succeed (the first once the agent is connected), one the
    // agent's allowlist refuses.
    let deadline = Instant::now() + DEADLINE;
    while call(&http, &a, "STFC_CONNECTION").await? != 200 {
        anyhow::ensure!(Instant::now() < deadline, "no agent took a call");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..2 {
        assert_eq!(call(&http, &a, "STFC_CONNECTION").await?, 200);
    }
    assert_eq!(
        call(&http, &a, "RFC_PING").await?,
        403,
        "not on the allowlist"
    );

    let wanted = "4 call(s) finished in the last hour, 1 of them errors (error rate 25.0 %)";
    let on_a = overview_until(&http, &a, &sign_in(&http, &a).await?, wanted).await?;
    let on_b = overview_until(&http, &b, &sign_in(&http, &b).await?, wanted).await?;
    assert_eq!(on_a, on_b, "the same figures on both replicas");

    agent.stop().await?;
    a.stop().await?;
    b.stop().await?;
    Ok(())
}
