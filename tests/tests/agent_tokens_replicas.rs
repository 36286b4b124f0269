//! Agent tokens created through `/v1/admin/agent-tokens` on one relay replica let
//! an agent connect to another sharing its PostgreSQL database, and serve a new
//! system there (a call made on the first replica is answered through the agent
//! on the second); revoking the token on the first closes the agent on the
//! second, with a reason, within the replicas' refresh (bounded waits, no timing
//! asserted). Last uses written on one replica show on the other.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use sapbridge_proto::{
    AgentMessage, CallResult, CloseReason, Outcome, PROTOCOL_VERSION, RelayMessage,
    decode_relay_message, encode_agent_message,
};
use sapbridge_tests::postgres::{TestDatabase, skip_or_fail};
use sapbridge_tests::{AGENT_TOKEN, API_KEY, DEADLINE, TestRelay};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const OPS_KEY: &str = "test-ops-key-token-replicas";

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn extra(url: &str) -> Value {
    json!({
        "api_keys": [
            {"name": "ops", "key": OPS_KEY, "systems": ["*"], "operator": true},
            {"name": "all", "key": API_KEY, "systems": ["*"]},
        ],
        "agent_tokens": [{"name": "agent", "token": AGENT_TOKEN, "systems": ["SIM"]}],
        "queue": {"store": "postgres", "url": url},
    })
}

/// Connects to `relay` with `token`; `None` when the relay refuses it (401).
async fn connect(relay: &TestRelay, token: &str) -> Result<Option<Socket>> {
    let mut request = relay.ws_url().into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(Some(socket)),
        Err(tokio_tungstenite::tungstenite::Error::Http(answer))
            if answer.status().as_u16() == 401 =>
        {
            Ok(None)
        }
        Err(error) => Err(error.into()),
    }
}

async fn send(socket: &mut Socket, message: &AgentMessage) -> Result<()> {
    socket
        .send(Message::text(encode_agent_message(message)))
        .await?;
    Ok(())
}

/// The next message other than a heartbeat (bounded); `None` once closed.
async fn recv(socket: &mut Socket) -> Result<Option<RelayMessage>> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(frame) = tokio::time::timeout(left, socket.next())
            .await
            .context("nothing from the relay in time")?
        else {
            return Ok(None);
        };
        match frame? {
            Message::Text(text) => {
                let message = decode_relay_message(text.as_bytes())?;
                if message != RelayMessage::Heartbeat {
                    return Ok(Some(message));
                }
            }
            Message::Close(_) => return Ok(None),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_made_on_one_replica_serves_and_is_revoked_on_the_other() -> Result<()> {
    let db = match TestDatabase::create().await {
        Ok(db) => db,
        Err(error) => {
            skip_or_fail(
                "a_token_made_on_one_replica_serves_and_is_revoked_on_the_other",
                &format!("{error:#}"),
            );
            return Ok(());
        }
    };
    let a = TestRelay::start(extra(db.url())).await?;
    let b = TestRelay::start(extra(db.url())).await?;
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{}/v1/admin/agent-tokens", a.url()))
        .bearer_auth(OPS_KEY)
        .json(&json!({"name": "plant-new", "systems": ["NEW"]}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = created["token"]
        .as_str()
        .context("the new token")?
        .to_owned();

    // B takes the token within its refresh.
    let deadline = Instant::now() + DEADLINE;
    let mut socket = loop {
        if let Some(socket) = connect(&b, &token).await? {
            break socket;
        }
        anyhow::ensure!(Instant::now() < deadline, "B never took the token");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    send(
        &mut socket,
        &AgentMessage::Hello {
            reconnects: 0,
            protocol: PROTOCOL_VERSION,
            agent_id: "plant-new-1".into(),
            agent_version: "test-1.0".into(),
            systems: vec!["NEW".into()],
            credits: 1,
            capabilities: Vec::new(),
        },
    )
    .await?;
    match recv(&mut socket).await? {
        Some(RelayMessage::Welcome { .. }) => {}
        other => bail!("expected welcome, got {other:?}"),
    }

    // A call to the new system on A runs on the agent connected to B.
    let call = http
        .post(format!(
            "{}/v1/systems/NEW/functions/STFC_CONNECTION",
            a.url()
        ))
        .bearer_auth(API_KEY)
        .header("prefer", "respond-async")
        .json(&json!({"REQUTEXT": "across"}))
        .send()
        .await?;
    assert_eq!(call.status().as_u16(), 202);
    let location = call
        .headers()
        .get("location")
        .context("Location")?
        .to_str()?
        .to_owned();
    let unit = match recv(&mut socket).await? {
        Some(RelayMessage::Work { unit }) => unit,
        other => bail!("expected work, got {other:?}"),
    };
    let result = serde_json::from_value(json!({"ECHOTEXT": "across"}))?;
    send(
        &mut socket,
        &AgentMessage::Outcome {
            call_id: unit.call_id.clone(),
            attempt: unit.attempt,
            outcome: Outcome::Completed {
                results: vec![CallResult::Ok(result)],
                transaction: None,
            },
        },
    )
    .await?;
    match recv(&mut socket).await? {
        Some(RelayMessage::Ack { call_id }) => assert_eq!(call_id, unit.call_id),
        other => bail!("expected ack, got {other:?}"),
    }
    let location = if location.starts_with('/') {
        format!("{}{location}", a.url())
    } else {
        location
    };
    let answer: Value = http
        .get(&location)
        .bearer_auth(API_KEY)
        .header("prefer", "wait=10")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(answer["result"]["ECHOTEXT"], "across", "{answer}");

    // Last uses are shared: the token's connect on B and the key's call on A
    // show in the other replica's lists.
    let last_used = |relay: &TestRelay, list: &'static str, name: &'static str| {
        let http = http.clone();
        let url = format!("{}/v1/admin/{list}", relay.url());
        async move {
            let listed: Value = http
                .get(url)
                .bearer_auth(OPS_KEY)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let used = listed["items"]
                .as_array()
                .and_then(|items| items.iter().find(|i| i["name"] == name))
                .map(|i| i["last_used_at"].is_string());
            anyhow::Ok(used == Some(true))
        }
    };
    let deadline = Instant::now() + DEADLINE;
    while !(last_used(&a, "agent-tokens", "plant-new").await?
        && last_used(&b, "keys", "all").await?)
    {
        anyhow::ensure!(Instant::now() < deadline, "last uses never shared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Revoked on A: B closes the agent with the reason, and refuses it after.
    let revoked = http
        .delete(format!("{}/v1/admin/agent-tokens/plant-new", a.url()))
        .bearer_auth(OPS_KEY)
        .send()
        .await?;
    assert_eq!(revoked.status().as_u16(), 204);
    assert_eq!(
        recv(&mut socket).await?,
        Some(RelayMessage::Close {
            reason: CloseReason::SystemNotAllowed {
                system: "NEW".into()
            }
        })
    );
    assert!(connect(&b, &token).await?.is_none(), "B refuses the token");
    assert!(connect(&a, &token).await?.is_none(), "A refuses the token");
    a.stop().await?;
    b.stop().await?;
    Ok(())
}
