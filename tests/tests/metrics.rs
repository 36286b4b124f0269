//! `/metrics` end to end: a relay, a real agent on the simulator with an HTTP
//! backend behind it, and one of each event a named metric family counts. Each
//! family is read before and after its event (parsed by a Prometheus text parser),
//! and the whole scrape is checked by the reference OpenMetrics parser of the
//! Prometheus project (Python's `prometheus_client`, installed by `tests/provision.sh python`).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use axum::Router;
use axum::routing::get;
use sapbridge_tests::{API_KEY, Client, DEADLINE, TestAgent, TestRelay, simulator};
use serde_json::json;

/// An operator's key (the default test keys have no operator scope).
const OPS_KEY: &str = "test-metrics-operator";

/// Every sample of a scrape, by name and labels (sorted `k=v` pairs).
type Samples = HashMap<(String, String), f64>;

/// Reads `/metrics` (with `key` when given) and returns its text.
async fn scrape_text(relay: &TestRelay, key: Option<&str>) -> Result<(u16, String)> {
    let mut request = reqwest::Client::new().get(format!("{}/metrics", relay.url()));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

/// Parses a scrape into samples.
fn parse(text: &str) -> Result<Samples> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).context("parse /metrics")?;
    let mut samples = Samples::new();
    for sample in scrape.samples {
        let mut labels: Vec<String> = sample
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        labels.sort();
        let value = match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            prometheus_parse::Value::Summary(_) => continue,
        };
        samples.insert((sample.metric, labels.join(",")), value);
    }
    Ok(samples)
}

/// The sum of `name`'s samples whose labels contain every `k=v` of `labels`.
fn total(samples: &Samples, name: &str, labels: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|((n, l), _)| {
            n == name
                && labels
                    .iter()
                    .all(|want| l.split(',').any(|have| have == *want))
        })
        .map(|(_, v)| v)
        .sum()
}

async fn scrape(relay: &TestRelay) -> Result<Samples> {
    let (status, text) = scrape_text(relay, None).await?;
    ensure!(status == 200, "/metrics answered {status}: {text}");
    parse(&text)
}

/// Waits until `name{labels}` has grown past `before`.
async fn grows(relay: &TestRelay, name: &str, labels: &[&str], before: &Samples) -> Result<()> {
    let was = total(before, name, labels);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let now = scrape(relay).await?;
        if total(&now, name, labels) > was {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{name}{labels:?} stayed at {was} after {DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks `text` with the Prometheus project's reference OpenMetrics parser.
fn reference_parse(text: &str) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("metrics.txt");
    std::fs::write(&path, text)?;
    let script = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        families = list(text_string_to_metric_families(open(sys.argv[1]).read()))\n\
        print(len(families))\n";
    sapbridge_tests::provide("python");
    let output = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .output()
        .context("run python3 (needed for the reference OpenMetrics parser)")?;
    ensure!(
        output.status.success(),
        "the reference OpenMetrics parser refused /metrics:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// A backend answering `GET /api/echo` with a small body.
async fn backend() -> Result<String> {
    let app = Router::new().route("/api/echo", get(|| async { "hello from the backend" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}/"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_named_family_moves_when_its_event_happens() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let relay = TestRelay::start(json!({})).await?;
    let sim = simulator(dir.path(), Duration::ZERO)?;
    let http = json!({"base_url": backend().await?, "allow_paths": ["/api"]});
    let agent = TestAgent::start_with_http(
        &relay,
        "agent-1",
        dir.path(),
        sim,
        &["RFC_PING", "STFC_CONNECTION"],
        4,
        http,
    )?;
    let client = Client::new(&relay, Some(API_KEY));
    client.wait_agents("SIM", 1).await?;
    grows(
        &relay,
        "sapbridge_agent_sessions_total",
        &["result=welcomed"],
        &Samples::new(),
    )
    .await?;
    let first = scrape(&relay).await?;
    ensure!(total(&first, "sapbridge_agents_connected", &[]) == 1.0);
    ensure!(total(&first, "sapbridge_system_agents", &["system=SIM"]) == 1.0);

    // A call that succeeds: accepted, leased, queued and executing times, finished.
    let before = scrape(&relay).await?;
    let reply = client.call("SIM", "RFC_PING", &json!({})).await?;
    ensure!(reply.status == 200, "{reply:?}");
    for (name, labels) in [
        ("sapbridge_calls_accepted_total", vec!["system=SIM"]),
        ("sapbridge_leases_total", vec!["system=SIM"]),
        ("sapbridge_call_queued_seconds", vec!["system=SIM"]),
        ("sapbridge_call_executing_seconds", vec!["system=SIM"]),
        (
            "sapbridge_calls_total",
            vec!["system=SIM", "function=RFC_PING", "outcome=succeeded"],
        ),
        ("sapbridge_calls_stored", vec!["status=succeeded"]),
    ] {
        grows(&relay, name, &labels, &before).await?;
    }

    // A call SAP fails (a parameter the function does not have).
    let before = scrape(&relay).await?;
    let reply = client
        .call("SIM", "STFC_CONNECTION", &json!({"NO_SUCH_PARAMETER": "x"}))
        .await?;
    ensure!(reply.status >= 400, "{reply:?}");
    grows(
        &relay,
        "sapbridge_calls_total",
        &["function=STFC_CONNECTION", "outcome=failed"],
        &before,
    )
    .await?;

    // A call the agent's allowlist refuses.
    let before = scrape(&relay).await?;
    let reply = client.call("SIM", "RFC_SYSTEM_INFO", &json!({})).await?;
    ensure!(reply.status == 403, "{reply:?}");
    grows(
        &relay,
        "sapbridge_agent_refusals_total",
        &["system=SIM", "reason=NOT_ALLOWED"],
        &before,
    )
    .await?;

    // The same Idempotency-Key twice: the second is answered from the first.
    let before = scrape(&relay).await?;
    for _ in 0..2 {
        let reply = client
            .post(
                "/v1/systems/SIM/functions/RFC_PING",
                &json!({}),
                &[
                    ("idempotency-key", "metrics-replay-1"),
                    ("prefer", "wait=30"),
                ],
            )
            .await?;
        ensure!(reply.status == 200, "{reply:?}");
    }
    grows(
        &relay,
        "sapbridge_idempotent_replays_total",
        &["system=SIM"],
        &before,
    )
    .await?;

    // A call to a system no agent serves, cancelled while queued: the queue depth
    // and oldest call of that system first, then the cancellation.
    let before = scrape(&relay).await?;
    let queued = client
        .call_async("OTHER", "RFC_PING", &json!({}), &[])
        .await?;
    ensure!(queued.status == 202, "{queued:?}");
    grows(
        &relay,
        "sapbridge_system_queue_depth",
        &["system=OTHER"],
        &before,
    )
    .await?;
    let location = queued.header("location").context("Location")?;
    let cancelled = client.send("DELETE", &location, None, &[]).await?;
    ensure!(cancelled.status == 200, "{cancelled:?}");
    grows(
        &relay,
        "sapbridge_calls_total",
        &["system=OTHER", "outcome=cancelled"],
        &before,
    )
    .await?;

    // A call no agent takes before its TTL: expired by the reaper.
    let before = scrape(&relay).await?;
    let expiring = client
        .call_async(
            "OTHER",
            "RFC_PING",
            &json!({}),
            &[("sapbridge-queue-ttl", "1")],
        )
        .await?;
    ensure!(expiring.status == 202, "{expiring:?}");
    grows(&relay, "sapbridge_calls_expired_total", &[], &before).await?;

    // A pass-through request: counted with its status class and bytes both ways.
    let before = scrape(&relay).await?;
    let reply = reqwest::Client::new()
        .get(format!("{}/v1/systems/SIM/http/api/echo", relay.url()))
        .bearer_auth(API_KEY)
        .send()
        .await?;
    ensure!(reply.status() == 200, "{reply:?}");
    ensure!(reply.text().await? == "hello from the backend");
    grows(
        &relay,
        "sapbridge_passthrough_requests_total",
        &["system=SIM", "status=2xx"],
        &before,
    )
    .await?;
    grows(
        &relay,
        "sapbridge_passthrough_bytes_total",
        &["system=SIM", "direction=response"],
        &before,
    )
    .await?;

    // Credentials that do not check: an API key and an agent token.
    let before = scrape(&relay).await?;
    let wrong = Client::new(&relay, Some("not-a-key"))
        .call("SIM", "RFC_PING", &json!({}))
        .await?;
    ensure!(wrong.status == 401, "{wrong:?}");
    grows(
        &relay,
        "sapbridge_auth_failures_total",
        &["credential=api_key"],
        &before,
    )
    .await?;
    let refused = reqwest::Client::new()
        .get(format!("{}/v1/agent/connect", relay.url()))
        .bearer_auth("not-a-token")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await?;
    ensure!(refused.status() == 401, "{refused:?}");
    grows(
        &relay,
        "sapbridge_auth_failures_total",
        &["credential=agent_token"],
        &before,
    )
    .await?;

    // The agent goes: the gauges follow.
    agent.stop().await?;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while total(&scrape(&relay).await?, "sapbridge_agents_connected", &[]) != 0.0 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "agent still counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (_, text) = scrape_text(&relay, None).await?;
    reference_parse(&text)?;
    relay.stop().await
}

#[tokio::test]
async fn metrics_may_require_an_operator_key() -> Result<()> {
    let relay = TestRelay::start(json!({
        "metrics_require_key": true,
        "api_keys": [
            {"name": "all", "key": API_KEY, "systems": ["*"]},
            {"name": "ops", "key": OPS_KEY, "systems": ["*"], "operator": true},
        ],
    }))
    .await?;
    let (status, _) = scrape_text(&relay, None).await?;
    ensure!(status == 401, "no key: {status}");
    let (status, _) = scrape_text(&relay, Some(API_KEY)).await?;
    ensure!(status == 403, "a key without the operator scope: {status}");
    let (status, text) = scrape_text(&relay, Some(OPS_KEY)).await?;
    ensure!(status == 200, "the operator's key: {status}");
    let samples = parse(&text)?;
    ensure!(
        samples
            .keys()
            .any(|(name, _)| name == "sapbridge_queue_depth"),
        "{text}"
    );
    relay.stop().await
}
