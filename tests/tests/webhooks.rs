//! Webhooks end to end: a relay, a real agent on the simulator and a receiver on
//! loopback. A call with `Sapbridge-Callback` is delivered to the receiver signed
//! as Standard Webhooks says, and the reference implementation (PyPI's
//! `standardwebhooks`, installed by `tests/provision.sh python`) verifies the signature; a
//! receiver that answers 503 first gets the delivery again after the back-off,
//! with the same `webhook-id`; the listing shows attempts and status but never
//! the receiver's body; redelivery sends it again. A subscription (Power
//! Automate's trigger shape) delivers every call of its key until it is deleted.
//! Callback URLs that reach where the relay must not (loopback, private and
//! metadata addresses in every spelling, a name resolving to loopback, other
//! schemes, hosts not allowed) are refused, and nothing reaches the receiver.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use sapbridge_tests::{AGENT_TOKEN, API_KEY, Client, DEADLINE, TestAgent, TestRelay, simulator};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The webhook secret of the test key (24 bytes, base64).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// A key without a webhook secret.
const PLAIN_KEY: &str = "test-key-without-secret";
/// What the receiver answers in its body: it must never reach a client.
const RECEIVER_BODY: &str = "receiver-private-answer-7731";

/// One request the receiver got.
#[derive(Debug)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

/// A webhook receiver on loopback answering with the status set in `status`.
struct Receiver {
    url: String,
    status: Arc<AtomicU16>,
    got: mpsc::UnboundedReceiver<Received>,
}

impl Receiver {
    async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let status = Arc::new(AtomicU16::new(200));
        let (tx, got) = mpsc::unbounded_channel();
        let app = axum::Router::new()
            .route(
                "/hook",
                axum::routing::post(
                    |State((tx, status)): State<(
                        mpsc::UnboundedSender<Received>,
                        Arc<AtomicU16>,
                    )>,
                     headers: HeaderMap,
                     body: Bytes| async move {
                        let _ = tx.send(Received { headers, body });
                        let code = axum::http::StatusCode::from_u16(status.load(Ordering::SeqCst))
                            .unwrap_or(axum::http::StatusCode::OK);
                        (code, RECEIVER_BODY)
                    },
                ),
            )
            .with_state((tx, Arc::clone(&status)));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { url, status, got })
    }

    async fn next(&mut self, within: Duration) -> Result<Received> {
        tokio::time::timeout(within, self.got.recv())
            .await
            .context("no webhook arrived in time")?
            .context("receiver stopped")
    }

    fn nothing_yet(&mut self) -> bool {
        self.got.try_recv().is_err()
    }
}

fn header(r: &Received, name: &str) -> String {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Verifies a delivery with the reference implementation of Standard Webhooks;
/// returns the payload it verified.
fn verify_with_reference(r: &Received) -> Result<Value> {
    let dir = tempfile::tempdir()?;
    let body = dir.path().join("body");
    std::fs::write(&body, &r.body)?;
    let script = "import sys, json\n\
        from standardwebhooks.webhooks import Webhook\n\
        payload = open(sys.argv[1], 'rb').read()\n\
        headers = {'webhook-id': sys.argv[2], 'webhook-timestamp': sys.argv[3], 'webhook-signature': sys.argv[4]}\n\
        print(json.dumps(Webhook(sys.argv[5]).verify(payload, headers)))\n";
    sapbridge_tests::provide("python");
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&body)
        .arg(header(r, "webhook-id"))
        .arg(header(r, "webhook-timestamp"))
        .arg(header(r, "webhook-signature"))
        .arg(SECRET)
        .output()
        .context("run python3 (the reference Standard Webhooks implementation)")?;
    ensure!(
        output.status.success(),
        "the reference implementation refused the delivery: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// The relay's configuration: a key with a webhook secret, one without, and
/// `webhooks` as its `[webhooks]` table.
fn config(webhooks: Value) -> Value {
    json!({
        "api_keys": [
            {"name": "all", "key": API_KEY, "systems": ["*"], "webhook_secret": SECRET},
            {"name": "plain", "key": PLAIN_KEY, "systems": ["*"]},
        ],
        "agent_tokens": [{"name": "agent", "token": AGENT_TOKEN, "systems": ["SIM"]}],
        "customer_defaults": {
            "reference_customer": "1000", "sales_org": "1000", "distribution_channel": "10",
            "division": "00", "language": "EN", "currency": "EUR",
        },
        "webhooks": webhooks,
    })
}

/// The deliveries of call `call_id`, as its key lists them.
async fn deliveries_of(client: &Client, call_id: &str) -> Result<Vec<Value>> {
    let reply = client
        .get(&format!("/v1/webhooks/deliveries?call_id={call_id}"))
        .await?;
    ensure!(
        reply.status == 200,
        "listing: {} {}",
        reply.status,
        reply.body
    );
    Ok(reply.body["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// Waits until the delivery of `call_id` is in state `state`; returns it.
async fn wait_delivery(client: &Client, call_id: &str, state: &str) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let found = deliveries_of(client, call_id).await?;
        if let Some(d) = found.iter().find(|d| d["state"] == state) {
            return Ok(d.clone());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the delivery of {call_id} never became {state}: {found:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A relay with `webhooks` as its `[webhooks]` table, an agent on the simulator
/// allowing `allow`, and a client with the key that has a webhook secret.
struct Setup {
    _dir: tempfile::TempDir,
    relay: TestRelay,
    agent: TestAgent,
    client: Client,
}

impl Setup {
    async fn start(webhooks: Value, allow: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let relay = TestRelay::start(config(webhooks)).await?;
        let agent = TestAgent::start(
            &relay,
            "agent-1",
            dir.path(),
            simulator(dir.path(), Duration::ZERO)?,
            allow,
            4,
        )?;
        let client = Client::new(&relay, Some(API_KEY));
        client.wait_agents("SIM", 1).await?;
        Ok(Self {
            _dir: dir,
            relay,
            agent,
            client,
        })
    }

    async fn stop(self) -> Result<()> {
        self.agent.stop().await?;
        self.relay.stop().await
    }
}

/// The `[webhooks]` table of a relay that sends to the receiver on loopback.
fn loopback() -> Value {
    json!({"allowed_hosts": ["127.0.0.1"], "allow_private_networks": true, "allow_http": true})
}

#[tokio::test]
async fn a_callback_is_signed_retried_listed_and_redelivered() -> Result<()> {
    let mut receiver = Receiver::start().await?;
    let setup = Setup::start(loopback(), &["STFC_*"]).await?;
    let (relay, client) = (&setup.relay, &setup.client);

    // The receiver is down for the first attempt (503), up for the second.
    receiver.status.store(503, Ordering::SeqCst);
    let reply = client
        .post(
            "/v1/systems/SIM/functions/STFC_CONNECTION",
            &json!({"REQUTEXT": "hello webhook"}),
            &[
                ("prefer", "respond-async"),
                ("sapbridge-callback", receiver.url.as_str()),
            ],
        )
        .await?;
    ensure!(reply.status == 202, "{} {}", reply.status, reply.body);
    let call_id = reply.body["id"].as_str().context("call id")?.to_owned();

    let first = receiver.next(DEADLINE).await?;
    receiver.status.store(200, Ordering::SeqCst);
    let payload = verify_with_reference(&first)?;
    assert_eq!(payload["type"], "call.completed");
    assert_eq!(payload["data"]["call_id"], call_id.as_str());
    assert_eq!(payload["data"]["system"], "SIM");
    assert_eq!(payload["data"]["status_code"], 200);
    assert_eq!(
        payload["data"]["body"]["result"]["ECHOTEXT"], "hello webhook",
        "the body is the call's answer: {payload}"
    );
    assert_eq!(header(&first, "content-type"), "application/json");
    let id = header(&first, "webhook-id");
    assert!(id.starts_with("msg_"), "{id}");

    // Retried after the back-off, with the same id and a fresh signature.
    let second = receiver.next(DEADLINE).await?;
    assert_eq!(header(&second, "webhook-id"), id);
    verify_with_reference(&second)?;
    let delivered = wait_delivery(client, &call_id, "delivered").await?;
    assert_eq!(delivered["id"], id.as_str());
    assert_eq!(delivered["attempts"], 2);
    assert_eq!(delivered["last_status"], 200);
    assert_eq!(delivered["url"], receiver.url.as_str());
    assert!(
        !delivered.to_string().contains(RECEIVER_BODY),
        "the receiver's body reached a client: {delivered}"
    );
    let one = client.get(&format!("/v1/webhooks/deliveries/{id}")).await?;
    assert_eq!(one.status, 200);
    assert_eq!(one.body["state"], "delivered");

    // A tampered body fails the reference check (the check can fail).
    let tampered = Received {
        headers: second.headers.clone(),
        body: Bytes::from(second.body.iter().copied().rev().collect::<Vec<u8>>()),
    };
    ensure!(
        verify_with_reference(&tampered).is_err(),
        "a tampered body verified"
    );

    // Sent again on demand: the same id.
    let again = client
        .post(
            &format!("/v1/webhooks/deliveries/{id}/redeliver"),
            &json!({}),
            &[],
        )
        .await?;
    assert_eq!(again.status, 202, "{}", again.body);
    let third = receiver.next(DEADLINE).await?;
    assert_eq!(header(&third, "webhook-id"), id);

    // Another key sees neither the delivery nor may redeliver it.
    let plain = Client::new(relay, Some(PLAIN_KEY));
    assert_eq!(
        plain
            .get(&format!("/v1/webhooks/deliveries/{id}"))
            .await?
            .status,
        404
    );
    assert!(deliveries_of(&plain, &call_id).await?.is_empty());
    let refused = plain
        .post(
            &format!("/v1/webhooks/deliveries/{id}/redeliver"),
            &json!({}),
            &[],
        )
        .await?;
    assert_eq!(refused.status, 404);

    setup.stop().await
}

#[tokio::test]
async fn a_subscription_delivers_every_call_of_its_key_until_deleted() -> Result<()> {
    let mut receiver = Receiver::start().await?;
    let setup = Setup::start(
        loopback(),
        &["STFC_*", "BAPI_CUSTOMER_*", "BAPI_TRANSACTION_*"],
    )
    .await?;
    let client = &setup.client;

    let made = client
        .post(
            "/v1/webhooks/subscriptions",
            &json!({"url": receiver.url, "system": "SIM"}),
            &[],
        )
        .await?;
    assert_eq!(made.status, 201, "{}", made.body);
    let location = made.header("location").context("Location")?;
    assert!(
        location.starts_with("/v1/webhooks/subscriptions/sub_"),
        "{location}"
    );
    let listed = client.get("/v1/webhooks/subscriptions").await?;
    assert_eq!(
        listed.body["subscriptions"].as_array().map(Vec::len),
        Some(1)
    );

    // An action (a customer created) is delivered with its 201 and Location.
    let created = client
        .post(
            "/v1/systems/SIM/customers",
            &json!({"name": "Webhook GmbH", "city": "Berlin", "country": "DE"}),
            &[("prefer", "wait=30")],
        )
        .await?;
    assert_eq!(created.status, 201, "{}", created.body);
    let got = receiver.next(DEADLINE).await?;
    let payload = verify_with_reference(&got)?;
    assert_eq!(payload["data"]["status_code"], 201, "{payload}");
    let number = created.body["customer"]
        .as_str()
        .context("customer number")?;
    assert_eq!(payload["data"]["body"]["customer"], number);
    assert!(
        payload["data"]["location"]
            .as_str()
            .is_some_and(|l| l.ends_with(&format!("/customers/{number}"))),
        "{payload}"
    );

    // Deleted (as Power Automate does when the flow is turned off): no more.
    let deleted = client.send("DELETE", &location, None, &[]).await?;
    assert_eq!(deleted.status, 204);
    assert_eq!(
        client.send("DELETE", &location, None, &[]).await?.status,
        404
    );
    let reply = client
        .call("SIM", "STFC_CONNECTION", &json!({"REQUTEXT": "after"}))
        .await?;
    assert_eq!(reply.status, 200);
    let call_id = reply.body["id"].as_str().context("id")?;
    assert!(deliveries_of(client, call_id).await?.is_empty());
    assert!(receiver.nothing_yet());

    setup.stop().await
}

#[tokio::test]
async fn callbacks_the_relay_must_not_send_are_refused() -> Result<()> {
    let mut receiver = Receiver::start().await?;
    let port = receiver
        .url
        .split(':')
        .nth(2)
        .and_then(|p| p.split('/').next())
        .context("port")?
        .to_owned();
    // Any host over http, but no private networks.
    let setup = Setup::start(
        json!({"allowed_hosts": ["*"], "allow_http": true}),
        &["STFC_*"],
    )
    .await?;
    let (relay, client) = (&setup.relay, &setup.client);
    let call_with = |url: String| {
        let client = client.clone();
        async move {
            client
                .post(
                    "/v1/systems/SIM/functions/STFC_CONNECTION",
                    &json!({}),
                    &[
                        ("prefer", "respond-async"),
                        ("sapbridge-callback", url.as_str()),
                    ],
                )
                .await
        }
    };
    for address in [
        "127.0.0.1",
        "127.1",
        "2130706433",
        "0x7f.0.0.1",
        "0.0.0.0",
        "10.0.0.1",
        "172.17.0.1",
        "192.168.0.1",
        "169.254.169.254",
        "100.100.100.200",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:a9fe:a9fe]",
        "[fe80::1]",
        "[fd00::1]",
    ] {
        let reply = call_with(format!("http://{address}:{port}/hook")).await?;
        assert_eq!(reply.status, 400, "{address}: {}", reply.body);
        let detail = reply.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("not public"), "{address}: {detail}");
    }
    for (url, why) in [
        ("file:///etc/passwd".to_owned(), "https"),
        (format!("ftp://127.0.0.1:{port}/"), "https"),
        (
            format!("http://user:pw@hooks.example.com:{port}/"),
            "credentials",
        ),
        ("/relative".to_owned(), "absolute"),
    ] {
        let reply = call_with(url.clone()).await?;
        assert_eq!(reply.status, 400, "{url}: {}", reply.body);
        let detail = reply.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(why), "{url}: {detail}");
    }
    // A key with no secret to sign with may not ask.
    let plain = Client::new(relay, Some(PLAIN_KEY));
    let reply = plain
        .post(
            "/v1/systems/SIM/functions/STFC_CONNECTION",
            &json!({}),
            &[("sapbridge-callback", "https://hooks.example.com/x")],
        )
        .await?;
    assert_eq!(reply.status, 400);
    assert!(
        reply.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("webhook_secret")
    );
    let reply = plain
        .post(
            "/v1/webhooks/subscriptions",
            &json!({"url": "https://hooks.example.com/x"}),
            &[],
        )
        .await?;
    assert_eq!(reply.status, 400);

    // A name is accepted when given (its addresses are not known yet) and
    // refused where the connection is made: the receiver on loopback gets nothing.
    let reply = call_with(format!("http://localhost:{port}/hook")).await?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let call_id = reply.body["id"].as_str().context("id")?.to_owned();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let refused = loop {
        let found = deliveries_of(client, &call_id).await?;
        if let Some(d) = found.iter().find(|d| d["attempts"].as_u64() >= Some(1)) {
            break d.clone();
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "never attempted: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(refused["state"], "pending", "retried later: {refused}");
    let why = refused["last_error"].as_str().unwrap_or_default();
    assert!(why.contains("not public"), "{refused}");
    assert!(receiver.nothing_yet(), "a request reached loopback");

    // The allowlist: a relay that allows one host refuses the others; one that
    // allows none refuses all.
    let strict = TestRelay::start(config(json!({"allowed_hosts": ["hooks.example.com"]}))).await?;
    let strict_client = Client::new(&strict, Some(API_KEY));
    for (url, status) in [
        ("https://hooks.example.com/x", 202),
        ("https://evil.example.com/x", 400),
        ("http://hooks.example.com/x", 400),
    ] {
        let reply = strict_client
            .post(
                "/v1/systems/SIM/functions/STFC_CONNECTION",
                &json!({}),
                &[("prefer", "respond-async"), ("sapbridge-callback", url)],
            )
            .await?;
        assert_eq!(reply.status, status, "{url}: {}", reply.body);
    }
    strict.stop().await?;
    let closed = TestRelay::start(config(json!({}))).await?;
    let reply = Client::new(&closed, Some(API_KEY))
        .post(
            "/v1/systems/SIM/functions/STFC_CONNECTION",
            &json!({}),
            &[("sapbridge-callback", "https://hooks.example.com/x")],
        )
        .await?;
    assert_eq!(reply.status, 400);
    assert!(
        reply.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("allowed_hosts")
    );
    closed.stop().await?;

    setup.stop().await
}
