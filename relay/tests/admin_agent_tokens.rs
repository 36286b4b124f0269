//! `/v1/admin/agent-tokens`: operator keys create agent tokens (the token shown
//! once, never listed, only its SHA-256 stored), an agent connects with one at
//! once and serves the systems it names (new systems become known), revoking it
//! closes that agent with a reason and refuses new connects; tokens of the
//! configuration are listed but not revoked here; other keys may do none of it.
//! Keys and tokens show when they were last used. A relay with an operator key
//! may start without agent tokens in its file.

mod common;

use common::{AGENT_TOKEN, API_KEY, FakeAgent, TestRelay, config_json, hello, open_socket};
use reqwest::StatusCode;
use sapbridge_proto::{CloseReason, RelayMessage};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const OPERATOR_KEY: &str = "test-key-operator";

fn config() -> Value {
    let mut config = config_json();
    config["api_keys"]
        .as_array_mut()
        .expect("api_keys")
        .push(json!({"name": "ops", "key": OPERATOR_KEY, "systems": ["*"], "operator": true}));
    config
}

async fn create(relay: &TestRelay, key: &str, body: Value) -> (StatusCode, Option<String>, Value) {
    let answer = relay
        .http
        .post(relay.url_of("/v1/admin/agent-tokens"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("POST");
    let status = answer.status();
    let location = answer
        .headers()
        .get("location")
        .map(|l| l.to_str().expect("ascii").to_owned());
    (status, location, answer.json().await.unwrap_or(Value::Null))
}

async fn list(relay: &TestRelay, path: &str) -> Value {
    relay
        .http
        .get(relay.url_of(path))
        .bearer_auth(OPERATOR_KEY)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON")
}

fn item<'a>(listed: &'a Value, name: &str) -> &'a Value {
    listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {listed}"))
}

async fn revoke(relay: &TestRelay, key: &str, name: &str) -> StatusCode {
    relay
        .http
        .delete(relay.url_of(&format!("/v1/admin/agent-tokens/{name}")))
        .bearer_auth(key)
        .send()
        .await
        .expect("DELETE")
        .status()
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[tokio::test]
async fn operators_create_list_and_revoke_agent_tokens() {
    let relay = TestRelay::start_with(config()).await;
    let (status, location, created) = create(
        &relay,
        OPERATOR_KEY,
        json!({"name": "plant-dev", "systems": ["DEV", "PRD"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["token"]
        .as_str()
        .expect("the token, once")
        .to_owned();
    assert!(
        secret.starts_with("sbt_") && secret.len() == 52,
        "{created}"
    );
    assert!(
        location
            .as_deref()
            .is_some_and(|l| l.ends_with("/v1/admin/agent-tokens/plant-dev")),
        "{location:?}"
    );
    assert_eq!(created["source"], "store");
    assert_eq!(created["created_by"], "ops");
    assert_eq!(created["systems"], json!(["DEV", "PRD"]));

    // Its new system is known at once, and an agent serves it with the token.
    let systems = relay.get_json("/v1/systems").await;
    assert!(systems.to_string().contains("\"DEV\""), "{systems}");
    let mut agent = FakeAgent::open(&relay, &secret, hello("dev-1", &["DEV"], 1)).await;
    assert!(matches!(
        agent.recv().await,
        Some(RelayMessage::Welcome { .. })
    ));
    let called = relay
        .call("DEV", "STFC_CONNECTION", json!({"REQUTEXT": "hi"}))
        .header("prefer", "respond-async")
        .send()
        .await
        .expect("POST");
    assert_eq!(called.status(), StatusCode::ACCEPTED, "DEV takes calls");
    let unit = agent.next_work().await;
    agent.succeed(&unit, json!({"ECHOTEXT": "hi"})).await;

    // Listed with the configuration's tokens, never the secret nor its hash;
    // with when it was last used (the connect), as the keys are.
    let listed = list(&relay, "/v1/admin/agent-tokens").await;
    let text = listed.to_string();
    assert!(
        !text.contains(&secret) && !text.contains(&sha256_hex(&secret)),
        "{text}"
    );
    assert!(!text.contains(AGENT_TOKEN), "{text}");
    let plant_dev = item(&listed, "plant-dev");
    assert!(plant_dev["revoked_at"].is_null());
    assert!(plant_dev["last_used_at"].is_string(), "{plant_dev}");
    let plant = item(&listed, "plant");
    assert_eq!(plant["source"], "configuration");
    assert_eq!(plant["systems"], json!(["PRD", "QAS"]));
    assert!(plant["last_used_at"].is_null(), "not used yet: {plant}");
    let keys = list(&relay, "/v1/admin/keys").await;
    assert!(item(&keys, "all")["last_used_at"].is_string(), "{keys}");
    assert!(item(&keys, "qas")["last_used_at"].is_null(), "{keys}");

    // A name is taken once (the configuration's too); bad requests say why.
    for taken in ["plant-dev", "plant"] {
        let (status, _, problem) = create(
            &relay,
            OPERATOR_KEY,
            json!({"name": taken, "systems": ["PRD"]}),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{taken}: {problem}");
        assert_eq!(problem["status"], 409);
    }
    for bad in [
        json!({"name": "", "systems": ["PRD"]}),
        json!({"name": "a b", "systems": ["PRD"]}),
        json!({"name": "x", "systems": []}),
        json!({"name": "x", "systems": ["*"]}),
        json!({"name": "x", "systems": ["PRD", "*"]}),
        json!({"name": "x", "systems": ["A B"]}),
        json!({"name": "x", "systems": ["PRD"], "operator": true}),
        json!({"name": "x"}),
    ] {
        let (status, _, problem) = create(&relay, OPERATOR_KEY, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {problem}");
        assert_eq!(problem["status"], 400, "problem+json: {problem}");
    }

    // Only operators manage tokens.
    let (status, _, _) = create(&relay, API_KEY, json!({"name": "mine", "systems": ["PRD"]})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let listing = relay
        .get("/v1/admin/agent-tokens")
        .send()
        .await
        .expect("GET");
    assert_eq!(listing.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        revoke(&relay, API_KEY, "plant-dev").await,
        StatusCode::FORBIDDEN
    );
    let anonymous = relay
        .http
        .get(relay.url_of("/v1/admin/agent-tokens"))
        .send()
        .await
        .expect("GET");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // Revoked: the agent is closed with a reason, new connects are refused,
    // the system it alone named is gone; listed as revoked; once only.
    assert_eq!(
        revoke(&relay, OPERATOR_KEY, "plant-dev").await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        agent.recv().await,
        Some(RelayMessage::Close {
            reason: CloseReason::SystemNotAllowed {
                system: "DEV".into()
            }
        })
    );
    assert!(agent.recv().await.is_none(), "the socket closes");
    let refused = open_socket(&relay, &secret).await.expect_err("refused");
    assert!(
        matches!(&refused, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 401),
        "{refused:?}"
    );
    let unknown = relay
        .call("DEV", "STFC_CONNECTION", json!({}))
        .send()
        .await
        .expect("POST");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        revoke(&relay, OPERATOR_KEY, "plant-dev").await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        revoke(&relay, OPERATOR_KEY, "plant").await,
        StatusCode::CONFLICT
    );
    let listed = list(&relay, "/v1/admin/agent-tokens").await;
    assert!(item(&listed, "plant-dev")["revoked_at"].is_string());

    // The audit log holds the creation and the revocation, by the operator.
    let deadline = std::time::Instant::now() + common::STEP;
    loop {
        let audit = list(&relay, "/v1/audit?key=ops&limit=1000").await;
        let by_ops = |method: &str, target: &str, status: u16| {
            audit["items"].as_array().is_some_and(|items| {
                items.iter().any(|r| {
                    r["method"] == method && r["target"] == target && r["status"] == status
                })
            })
        };
        if by_ops("POST", "/v1/admin/agent-tokens", 201)
            && by_ops("DELETE", "/v1/admin/agent-tokens/plant-dev", 204)
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{audit}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    relay.stop().await;
}

#[tokio::test]
async fn only_the_hash_is_stored_and_tokens_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("relay.db");
    let mut config = config();
    config["queue"] = json!({"store": "sqlite", "path": path});
    let relay = TestRelay::start_with(config.clone()).await;
    let (status, _, created) = create(
        &relay,
        OPERATOR_KEY,
        json!({"name": "plant-2", "systems": ["QAS"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["token"].as_str().expect("token").to_owned();
    relay.stop().await;

    let db = rusqlite::Connection::open(&path).expect("open the store");
    let stored: (String, String) = db
        .query_row(
            "SELECT sha256, systems FROM agent_tokens WHERE name = 'plant-2'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("the stored token");
    assert_eq!(stored, (sha256_hex(&secret), "[\"QAS\"]".to_owned()));
    let used: i64 = db
        .query_row(
            "SELECT count(*) FROM credential_uses WHERE kind = 'api_key' AND name = 'ops'",
            [],
            |row| row.get(0),
        )
        .expect("uses");
    assert_eq!(used, 1, "the operator key's use is stored");
    drop(db);
    for entry in std::fs::read_dir(dir.path()).expect("dir") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret is in no file of the store"
        );
    }

    let relay = TestRelay::start_with(config).await;
    let mut agent = FakeAgent::open(&relay, &secret, hello("qas-2", &["QAS"], 1)).await;
    assert!(matches!(
        agent.recv().await,
        Some(RelayMessage::Welcome { .. })
    ));
    relay.stop().await;
}

#[tokio::test]
async fn a_relay_with_an_operator_key_starts_without_agent_tokens() {
    let mut config = config();
    config["agent_tokens"] = json!([]);
    let relay = TestRelay::start_with(config).await;
    let systems = relay.get_json("/v1/systems").await;
    assert_eq!(systems, json!({"systems": []}));
    let (status, _, created) = create(
        &relay,
        OPERATOR_KEY,
        json!({"name": "first", "systems": ["PRD"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["token"].as_str().expect("token");
    let mut agent = FakeAgent::open(&relay, secret, hello("first", &["PRD"], 1)).await;
    assert!(matches!(
        agent.recv().await,
        Some(RelayMessage::Welcome { .. })
    ));
    let systems = relay.get_json("/v1/systems").await;
    assert_eq!(systems["systems"][0]["system"], "PRD", "{systems}");
    relay.stop().await;
}

#[tokio::test]
async fn a_reload_adds_and_removes_the_systems_of_the_files_tokens() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (reloads, rx) = tokio::sync::mpsc::unbounded_channel();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let parse = |config: Value| -> sapbridge_relay::RelayConfig {
        serde_json::from_value(config).expect("config")
    };
    let task = tokio::spawn(sapbridge_relay::run_with_reloads(
        listener,
        parse(config()),
        shutdown.clone(),
        rx,
    ));
    let http = reqwest::Client::new();
    let systems = || async {
        let body: Value = http
            .get(format!("{url}/v1/systems"))
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON");
        body["systems"]
            .as_array()
            .expect("systems")
            .iter()
            .map(|s| s["system"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    let until = |wanted: Vec<&'static str>| {
        let systems = &systems;
        async move {
            let deadline = std::time::Instant::now() + common::STEP;
            loop {
                let now = systems().await;
                if now == wanted {
                    return;
                }
                assert!(std::time::Instant::now() < deadline, "{now:?}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    until(vec!["PRD", "QAS"]).await;
    let mut added = config();
    added["agent_tokens"]
        .as_array_mut()
        .expect("tokens")
        .push(json!({"name": "lab", "token": "test-agent-lab", "systems": ["LAB"]}));
    reloads.send(parse(added)).expect("reload");
    until(vec!["LAB", "PRD", "QAS"]).await;
    let mut fewer = config();
    fewer["agent_tokens"] = json!([{"name": "prd", "token": "test-agent-prd", "systems": ["PRD"]}]);
    reloads.send(parse(fewer)).expect("reload");
    until(vec!["PRD"]).await;
    shutdown.cancel();
    task.await.expect("join").expect("relay");
}
