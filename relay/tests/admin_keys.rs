//! `/v1/admin/keys`: operator keys create API keys (the key shown once, never
//! listed), the new key works at once, revoking it refuses it at once; keys of the
//! configuration are listed but not revoked here; other keys may do none of it.
//! With an SQLite store, created keys survive a restart of the relay.

mod common;

use common::{API_KEY, TestRelay, config_json};
use reqwest::StatusCode;
use serde_json::{Value, json};

const OPERATOR_KEY: &str = "test-key-operator";

fn config() -> Value {
    let mut config = config_json();
    config["api_keys"]
        .as_array_mut()
        .expect("api_keys")
        .push(json!({"name": "ops", "key": OPERATOR_KEY, "systems": ["*"], "operator": true}));
    config
}

async fn create(relay: &TestRelay, key: &str, body: Value) -> (StatusCode, Value) {
    let answer = relay
        .http
        .post(relay.url_of("/v1/admin/keys"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("POST");
    let status = answer.status();
    (status, answer.json().await.unwrap_or(Value::Null))
}

async fn systems_with(relay: &TestRelay, key: &str) -> StatusCode {
    relay
        .http
        .get(relay.url_of("/v1/systems"))
        .bearer_auth(key)
        .send()
        .await
        .expect("GET")
        .status()
}

async fn list(relay: &TestRelay) -> Value {
    relay
        .http
        .get(relay.url_of("/v1/admin/keys"))
        .bearer_auth(OPERATOR_KEY)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON")
}

async fn revoke(relay: &TestRelay, key: &str, name: &str) -> StatusCode {
    relay
        .http
        .delete(relay.url_of(&format!("/v1/admin/keys/{name}")))
        .bearer_auth(key)
        .send()
        .await
        .expect("DELETE")
        .status()
}

async fn create_use_list_and_revoke(relay: &TestRelay) {
    let (status, created) = create(
        relay,
        OPERATOR_KEY,
        json!({"name": "flow-1", "systems": ["PRD"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["key"].as_str().expect("the key, once").to_owned();
    assert!(secret.starts_with("sbk_"), "{created}");
    assert_eq!(created["source"], "store");
    assert_eq!(created["created_by"], "ops");
    assert_eq!(created["operator"], false);

    // The key works at once, within its scope.
    assert_eq!(systems_with(relay, &secret).await, StatusCode::OK);
    let audit = relay
        .http
        .get(relay.url_of("/v1/audit"))
        .bearer_auth(&secret)
        .send()
        .await
        .expect("GET");
    assert_eq!(audit.status(), StatusCode::FORBIDDEN, "not an operator key");

    // Listed with the configuration's keys, never with a secret.
    let listed = list(relay).await;
    let text = listed.to_string();
    assert!(
        !text.contains(&secret) && !text.contains(OPERATOR_KEY),
        "{text}"
    );
    let items = listed["items"].as_array().expect("items");
    let flow = items
        .iter()
        .find(|i| i["name"] == "flow-1")
        .expect("flow-1");
    assert_eq!(flow["systems"], json!(["PRD"]));
    assert!(flow["revoked_at"].is_null());
    let ops = items.iter().find(|i| i["name"] == "ops").expect("ops");
    assert_eq!(ops["source"], "configuration");

    // A name is taken once; bad requests say why.
    let (status, _) = create(
        relay,
        OPERATOR_KEY,
        json!({"name": "flow-1", "systems": ["PRD"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = create(
        relay,
        OPERATOR_KEY,
        json!({"name": "all", "systems": ["PRD"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "a configured key's name");
    for bad in [
        json!({"name": "", "systems": ["PRD"]}),
        json!({"name": "a b", "systems": ["PRD"]}),
        json!({"name": "x", "systems": []}),
        json!({"name": "x", "systems": ["NOPE"]}),
        json!({"name": "x", "systems": ["PRD"], "extra": 1}),
    ] {
        let (status, problem) = create(relay, OPERATOR_KEY, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {problem}");
    }

    // Only operators manage keys.
    let (status, _) = create(relay, API_KEY, json!({"name": "mine", "systems": ["*"]})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        revoke(relay, API_KEY, "flow-1").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        revoke(relay, &secret, "flow-1").await,
        StatusCode::FORBIDDEN
    );

    // Revoked: refused at once, listed as such; once only.
    assert_eq!(
        revoke(relay, OPERATOR_KEY, "flow-1").await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(systems_with(relay, &secret).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        revoke(relay, OPERATOR_KEY, "flow-1").await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        revoke(relay, OPERATOR_KEY, "all").await,
        StatusCode::CONFLICT
    );
    let listed = list(relay).await;
    let flow = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "flow-1")
        .cloned()
        .expect("still listed");
    assert!(flow["revoked_at"].is_string(), "{flow}");
}

#[tokio::test]
async fn operators_create_list_and_revoke_keys() {
    let relay = TestRelay::start_with(config()).await;
    create_use_list_and_revoke(&relay).await;
    relay.stop().await;
}

#[tokio::test]
async fn stored_keys_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config();
    config["queue"] = json!({"store": "sqlite", "path": dir.path().join("relay.db")});
    let relay = TestRelay::start_with(config.clone()).await;
    let (status, created) = create(
        &relay,
        OPERATOR_KEY,
        json!({"name": "admin-2", "systems": ["*"], "operator": true}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let secret = created["key"].as_str().expect("key").to_owned();
    relay.stop().await;

    let relay = TestRelay::start_with(config).await;
    assert_eq!(systems_with(&relay, &secret).await, StatusCode::OK);
    // An operator key created through the API may manage keys too.
    let (status, _) = create(
        &relay,
        &secret,
        json!({"name": "flow-2", "systems": ["QAS"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    relay.stop().await;
}
