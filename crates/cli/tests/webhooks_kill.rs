//! Webhook deliveries survive `kill -9` of the relay: a `sapbridge relay` process
//! on a SQLite store runs a call whose callback receiver is down (its port
//! refuses), so the delivery waits for its next attempt; the relay is killed
//! with SIGKILL, the receiver comes up, and the relay started again on the same
//! file delivers it, with the delivery id the listing showed before the kill.
//!
//! Loopback only; bounded by the deadlines below.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use sapbridge_tests::{AGENT_TOKEN, API_KEY, Client, Proc, TestAgent, free_port, simulator};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_sapbridge");
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Back-off after the first failed attempt is 5 s, after the second 10 s.
const DELIVERED_WITHIN: Duration = Duration::from_secs(45);

fn start_relay(dir: &std::path::Path, port: u16) -> Result<Proc> {
    let config = dir.join("relay.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[api_keys]]
name = "flows"
key = "{API_KEY}"
systems = ["*"]
webhook_secret = "{SECRET}"

[[agent_tokens]]
name = "agent"
token = "{AGENT_TOKEN}"
systems = ["SIM"]

[queue]
store = "sqlite"
path = "relay.db"

[webhooks]
allowed_hosts = ["127.0.0.1"]
allow_private_networks = true
allow_http = true
"#
        ),
    )?;
    Proc::spawn_ready(
        Command::new(BIN)
            .args(["relay", "--config", config.to_str().context("path")?])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("SAPBRIDGE_LOG", "warn"),
        "sapbridge relay listening on",
        Duration::from_secs(20),
    )
}

async fn delivery_of(client: &Client, call_id: &str) -> Result<Option<Value>> {
    let reply = client
        .get(&format!("/v1/webhooks/deliveries?call_id={call_id}"))
        .await?;
    ensure!(reply.status == 200, "{} {}", reply.status, reply.body);
    Ok(reply.body["deliveries"].get(0).cloned())
}

#[tokio::test]
async fn a_delivery_survives_kill_9_and_arrives_once_the_receiver_is_back() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let receiver_port = free_port()?;
    let hook = format!("http://127.0.0.1:{receiver_port}/hook");
    let relay = start_relay(dir.path(), port)?;
    let base = format!("http://127.0.0.1:{port}");
    let agent = TestAgent::start_via(
        &format!("ws://127.0.0.1:{port}/v1/agent/connect"),
        "agent-1",
        dir.path(),
        simulator(dir.path(), Duration::ZERO)?,
        &["STFC_*"],
        4,
    )?;
    let client = Client::at(base.clone(), Some(API_KEY));
    client.wait_agents("SIM", 1).await?;

    let reply = client
        .post(
            "/v1/systems/SIM/functions/STFC_CONNECTION",
            &json!({"REQUTEXT": "survive"}),
            &[("prefer", "wait=30"), ("sapbridge-callback", hook.as_str())],
        )
        .await?;
    ensure!(reply.status == 200, "{} {}", reply.status, reply.body);
    let call_id = reply.body["id"].as_str().context("id")?.to_owned();

    // The first attempt finds nobody listening: pending, due again later.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let before = loop {
        if let Some(d) = delivery_of(&client, &call_id).await?
            && d["attempts"].as_u64() >= Some(1)
        {
            break d;
        }
        ensure!(tokio::time::Instant::now() < deadline, "never attempted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(before["state"], "pending", "{before}");
    assert!(
        before["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("connect")),
        "{before}"
    );
    let id = before["id"].as_str().context("delivery id")?.to_owned();

    // kill -9, then the receiver comes up, then the relay again.
    drop(relay);
    agent.kill().await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", receiver_port)).await?;
    let (tx, mut got) = tokio::sync::mpsc::unbounded_channel::<(String, Value)>();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let tx = tx.clone();
                async move {
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send((id, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                    "ok"
                }
            },
        ),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let _relay = start_relay(dir.path(), port)?;

    let (delivered_id, payload) = tokio::time::timeout(DELIVERED_WITHIN, got.recv())
        .await
        .context("the delivery did not arrive after the restart")?
        .context("receiver stopped")?;
    assert_eq!(delivered_id, id);
    assert_eq!(payload["data"]["call_id"], call_id.as_str());
    assert_eq!(payload["data"]["body"]["result"]["ECHOTEXT"], "survive");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let d = delivery_of(&client, &call_id).await?.context("delivery")?;
        if d["state"] == "delivered" {
            assert!(d["attempts"].as_u64() >= Some(2), "{d}");
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "not marked delivered: {d}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
