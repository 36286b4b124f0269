//! The HTTP API's error answers: every one is `application/problem+json`.

mod common;

use common::{API_KEY, QAS_KEY, TestRelay};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert!(body["type"].as_str().unwrap().starts_with("/problems/"));
    assert!(body["title"].is_string() && body["detail"].is_string());
    body
}

#[tokio::test]
async fn keys_are_required_and_scoped() {
    let relay = TestRelay::start().await;
    let url = format!("{}/v1/systems/PRD/functions/STFC_CONNECTION", relay.url);
    let missing = relay.http.post(&url).json(&json!({})).send().await.unwrap();
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    problem(missing, StatusCode::UNAUTHORIZED).await;
    let wrong = relay
        .http
        .post(&url)
        .bearer_auth("wrong")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    problem(wrong, StatusCode::UNAUTHORIZED).await;
    let scoped = relay
        .http
        .post(&url)
        .header("X-API-Key", QAS_KEY)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    problem(scoped, StatusCode::FORBIDDEN).await;
    // The same key is fine for QAS (queued, answered 202 at once).
    let allowed = relay
        .http
        .post(format!("{}/v1/systems/QAS/functions/RFC_PING", relay.url))
        .header("X-API-Key", QAS_KEY)
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), StatusCode::ACCEPTED);
    // ... and its call is the key's own: another key, even one of every system,
    // does not see it (ownership: `ownership.rs`).
    let location = allowed.headers()["location"].to_str().unwrap().to_owned();
    let seen = relay
        .http
        .get(format!("{}{location}", relay.url))
        .header("X-API-Key", QAS_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(seen.status(), StatusCode::ACCEPTED);
    let other = relay.get(&location).send().await.unwrap();
    problem(other, StatusCode::NOT_FOUND).await;
    relay.stop().await;
}

#[tokio::test]
async fn bad_bodies_and_unknown_things() {
    let relay = TestRelay::start().await;
    let post = |path: &str, body: &'static str| {
        relay
            .http
            .post(format!("{}{path}", relay.url))
            .bearer_auth(API_KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let fun = "/v1/systems/PRD/functions/STFC_CONNECTION";
    problem(
        post(fun, r#"{"REQUTEXT": "#).await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    problem(post(fun, "[1, 2]").await.unwrap(), StatusCode::BAD_REQUEST).await;
    // A body of only whitespace is a blank expression in a flow, not "no
    // parameters".
    let blank = problem(post(fun, " \r\n ").await.unwrap(), StatusCode::BAD_REQUEST).await;
    assert!(
        blank["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("whitespace"),
        "{blank}"
    );
    let unknown = post("/v1/systems/NOPE/functions/STFC_CONNECTION", "{}")
        .await
        .unwrap();
    problem(unknown, StatusCode::NOT_FOUND).await;
    problem(
        post("/v1/nothing", "{}").await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    // GET is the function's metadata; DELETE means nothing there.
    let delete_fun = relay
        .http
        .delete(format!("{}{fun}", relay.url))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    problem(delete_fun, StatusCode::METHOD_NOT_ALLOWED).await;
    let unknown_call = relay.get("/v1/calls/c_nope").send().await.unwrap();
    problem(unknown_call, StatusCode::NOT_FOUND).await;
    let bad_ttl = relay
        .call("PRD", "STFC_CONNECTION", json!({}))
        .header("Sapbridge-Queue-Ttl", "soon")
        .send()
        .await
        .unwrap();
    problem(bad_ttl, StatusCode::BAD_REQUEST).await;
    relay.stop().await;
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let mut config = common::config_json();
    config["body_limit_bytes"] = 1024.into();
    let relay = TestRelay::start_with(config).await;
    let big = format!("{{\"REQUTEXT\": \"{}\"}}", "a".repeat(4096));
    let response = relay
        .http
        .post(format!(
            "{}/v1/systems/PRD/functions/STFC_CONNECTION",
            relay.url
        ))
        .bearer_auth(API_KEY)
        .body(big.clone())
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;

    // Without Content-Length (chunked), the limit applies while reading.
    let addr = relay.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/systems/PRD/functions/STFC_CONNECTION HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {API_KEY}\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in big.as_bytes().chunks(512) {
        let framed = format!(
            "{:x}\r\n{}\r\n",
            chunk.len(),
            String::from_utf8_lossy(chunk)
        );
        if stream.write_all(framed.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(common::STEP, stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{answer}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let relay = TestRelay::start().await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = relay
            .http
            .get(format!("{}{path}", relay.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let metrics = relay
        .http
        .get(format!("{}/metrics", relay.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("sapbridge_calls_stored{status=\"succeeded\"} 0"));
    assert!(metrics.contains("sapbridge_agents_connected 0"));
    relay.stop().await;
}
