//! HTTP pass-through end to end: a relay and an agent in this process, a local axum
//! server as the system's HTTP service, real sockets everywhere.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use sapbridge_tests::{API_KEY, Client, DEADLINE, TestAgent, TestRelay, simulator};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// What the backend saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body_len: usize,
}

/// The backend's shared state: requests seen, the CSRF log, and signals.
#[derive(Default)]
struct Backend {
    seen: Mutex<Vec<Seen>>,
    csrf_log: Mutex<Vec<String>>,
    csrf_fetches: Mutex<u32>,
    hanging: Notify,
    endless_bytes: std::sync::atomic::AtomicUsize,
}

type Shared = Arc<Backend>;

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every request under `/api/echo`: records it, answers with its shape as JSON.
async fn echo(State(backend): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    backend.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers.clone(),
        body_len: body.len(),
    });
    let answer = json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "body": String::from_utf8_lossy(&body),
    });
    (
        StatusCode::OK,
        [
            ("content-type", "application/json"),
            ("x-backend", "yes"),
            ("set-cookie", "backend_session=secret"),
        ],
        answer.to_string(),
    )
        .into_response()
}

/// `POST /api/created`: a 201 whose `Location` is relative to the backend.
async fn created() -> Response {
    (StatusCode::CREATED, [("location", "/api/echo/7")], "").into_response()
}

/// `POST /api/upload`: answers the body back with its hash in a header.
async fn upload(body: Bytes) -> Response {
    let hash = hex_sha256(&body);
    (StatusCode::OK, [("x-body-sha256", hash)], body).into_response()
}

fn big_body() -> Vec<u8> {
    (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// `POST /api/early`: refuses before reading the body, as SAP Gateway does when a
/// modifying request lacks its CSRF token, and reads the body afterwards, as web
/// servers do (nginx's discard, the ICM's) so the agent's connection stays sound.
async fn early(request: Request) -> Response {
    tokio::spawn(axum::body::to_bytes(request.into_body(), usize::MAX));
    (
        StatusCode::FORBIDDEN,
        [("x-csrf-token", "Required")],
        "CSRF token validation failed",
    )
        .into_response()
}

/// `GET /api/big`: 5 MiB of patterned bytes.
async fn big() -> Response {
    (StatusCode::OK, big_body()).into_response()
}

/// `GET /api/hang`: never answers (signals that it was reached).
async fn hang(State(backend): State<Shared>) -> Response {
    backend.hanging.notify_one();
    std::future::pending::<()>().await;
    StatusCode::OK.into_response()
}

/// `GET /api/partial`: a head and one piece of body, then nothing more.
async fn partial(State(backend): State<Shared>) -> Response {
    let first = futures_util::stream::once(async { Ok::<_, std::io::Error>(Bytes::from("first")) });
    let rest = futures_util::stream::once(async move {
        backend.hanging.notify_one();
        std::future::pending::<Result<Bytes, std::io::Error>>().await
    });
    Response::new(Body::from_stream(futures_util::StreamExt::chain(
        first, rest,
    )))
}

/// `GET /api/endless`: 64 KiB pieces for ever, counting what was taken from it.
async fn endless(State(backend): State<Shared>) -> Response {
    let piece = Bytes::from(vec![b'e'; 64 * 1024]);
    let stream = futures_util::stream::repeat_with(move || {
        backend
            .endless_bytes
            .fetch_add(piece.len(), std::sync::atomic::Ordering::Relaxed);
        Ok::<_, std::io::Error>(piece.clone())
    });
    Response::new(Body::from_stream(stream))
}

/// SAP Gateway's CSRF protocol, strictly: `GET /csrf/svc` with `X-CSRF-Token: Fetch`
/// hands out token `T<n>` and cookie `gw_session=S<n>`; a write to
/// `/csrf/svc/items` needs the current token and its cookie. The first token is
/// treated as expired when first used, so the agent must refetch and retry.
async fn csrf(State(backend): State<Shared>, request: Request) -> Response {
    let method = request.method().clone();
    let token = request
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let cookie = request
        .headers()
        .get("cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let path = request.uri().path().to_owned();
    let body = axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    if method == "GET" && token.eq_ignore_ascii_case("fetch") {
        let n = {
            let mut fetches = backend.csrf_fetches.lock().unwrap();
            *fetches += 1;
            *fetches
        };
        backend
            .csrf_log
            .lock()
            .unwrap()
            .push(format!("GET {path} fetch -> T{n}"));
        return (
            StatusCode::OK,
            [
                ("x-csrf-token", format!("T{n}")),
                ("set-cookie", format!("gw_session=S{n}; path=/; HttpOnly")),
            ],
        )
            .into_response();
    }
    let current = *backend.csrf_fetches.lock().unwrap();
    let valid = current >= 2
        && token == format!("T{current}")
        && cookie.contains(&format!("gw_session=S{current}"));
    let status = if valid { 201 } else { 403 };
    backend.csrf_log.lock().unwrap().push(format!(
        "{method} {path} token={token} body={} -> {status}",
        String::from_utf8_lossy(&body)
    ));
    if valid {
        (StatusCode::CREATED, "created").into_response()
    } else {
        (
            StatusCode::FORBIDDEN,
            [("x-csrf-token", "Required")],
            "CSRF token validation failed",
        )
            .into_response()
    }
}

async fn start_backend() -> Result<(String, Shared)> {
    let backend = Shared::default();
    let app = Router::new()
        .route("/api/echo", any(echo))
        .route("/api/echo/{*rest}", any(echo))
        .route("/apix", any(echo))
        .route("/secret", any(echo))
        .route("/api/upload", axum::routing::post(upload))
        .route("/api/created", axum::routing::post(created))
        .route("/api/early", axum::routing::post(early))
        .route("/api/big", get(big))
        .route("/api/hang", get(hang))
        .route("/api/partial", get(partial))
        .route("/api/endless", get(endless))
        .route("/csrf/svc", any(csrf))
        .route("/csrf/svc/{*rest}", any(csrf))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(Arc::clone(&backend));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}/"), backend))
}

struct Stack {
    relay: TestRelay,
    agent: Option<TestAgent>,
    client: Client,
    backend: Shared,
    _dir: tempfile::TempDir,
}

/// A backend, a relay with `relay_extra`, and an agent whose `SIM` passes HTTP to
/// the backend with `http_extra` merged into its `[systems.http]` block.
async fn stack(relay_extra: Value, http_extra: Value) -> Result<Stack> {
    let (url, backend) = start_backend().await?;
    let dir = tempfile::tempdir()?;
    let relay = TestRelay::start(relay_extra).await?;
    let sim = simulator(dir.path(), Duration::ZERO)?;
    let mut http = json!({"base_url": url, "allow_paths": ["/api", "/csrf/svc"]});
    if let (Some(base), Value::Object(extra)) = (http.as_object_mut(), http_extra) {
        base.extend(extra);
    }
    let agent = TestAgent::start_with_http(&relay, "agent-1", dir.path(), sim, &["*"], 4, http)?;
    let client = Client::new(&relay, Some(API_KEY));
    client.wait_agents("SIM", 1).await?;
    Ok(Stack {
        relay,
        agent: Some(agent),
        client,
        backend,
        _dir: dir,
    })
}

impl Stack {
    async fn stop(mut self) -> Result<()> {
        if let Some(agent) = self.agent.take() {
            agent.stop().await?;
        }
        self.relay.stop().await
    }

    fn seen(&self) -> Vec<Seen> {
        self.backend.seen.lock().unwrap().clone()
    }
}

/// A raw request line with a path no HTTP client library would send unnormalised.
async fn raw_status(relay: &TestRelay, path: &str) -> Result<u16> {
    let mut socket = tokio::net::TcpStream::connect(relay.addr).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer {API_KEY}\r\nConnection: close\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, socket.read_to_end(&mut answer)).await??;
    let text = String::from_utf8_lossy(&answer);
    let status = text.split(' ').nth(1).context("no status line")?.parse()?;
    Ok(status)
}

/// Reads one response (head and a `Content-Length` or chunked body) off a raw
/// connection; the head and body as text.
async fn read_response(socket: &mut tokio::net::TcpStream) -> Result<String> {
    let mut buffer = Vec::new();
    let mut piece = [0u8; 8192];
    let complete = |buffer: &[u8]| -> Option<usize> {
        let end = buffer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map(|v| v.trim().parse::<usize>().unwrap_or(0));
        match length {
            Some(length) => (buffer.len() >= end + length).then_some(end + length),
            None => {
                let tail = buffer[end..].windows(5).position(|w| w == b"0\r\n\r\n")?;
                Some(end + tail + 5)
            }
        }
    };
    loop {
        if let Some(end) = complete(&buffer) {
            return Ok(String::from_utf8_lossy(&buffer[..end]).into_owned());
        }
        let read = tokio::time::timeout(DEADLINE, socket.read(&mut piece))
            .await
            .context("no complete response in time")??;
        anyhow::ensure!(
            read > 0,
            "the connection was closed after {} bytes of response: {}",
            buffer.len(),
            String::from_utf8_lossy(&buffer)
        );
        buffer.extend_from_slice(&piece[..read]);
    }
}

/// A raw connection that posts a body of `declared` bytes to `/api/early` (which
/// answers before reading it) and has sent `first` of it so far.
async fn start_early_upload(
    relay: &TestRelay,
    declared: usize,
    first: &[u8],
) -> Result<tokio::net::TcpStream> {
    let mut socket = tokio::net::TcpStream::connect(relay.addr).await?;
    let head = format!(
        "POST /v1/systems/SIM/http/api/early HTTP/1.1\r\nHost: relay\r\n\
         Authorization: Bearer {API_KEY}\r\nContent-Length: {declared}\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await?;
    socket.write_all(first).await?;
    Ok(socket)
}

#[tokio::test]
async fn methods_bodies_and_queries_pass_through() -> Result<()> {
    let s = stack(json!({}), json!({})).await?;
    let reply = s
        .client
        .send(
            "GET",
            "/v1/systems/SIM/http/api/echo/a%2Fb?x=1&y=%20z",
            None,
            &[],
        )
        .await?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["method"], "GET");
    assert_eq!(reply.body["path"], "/api/echo/a%2Fb");
    assert_eq!(reply.body["query"], "x=1&y=%20z");
    assert_eq!(reply.header("x-backend").as_deref(), Some("yes"));
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let body = format!("{{\"hello\":\"{method}\"}}").into_bytes();
        let reply = s
            .client
            .send(
                method,
                "/v1/systems/SIM/http/api/echo/items?id=7",
                Some(body),
                &[],
            )
            .await?;
        assert_eq!(reply.status, 200, "{method}: {}", reply.body);
        assert_eq!(reply.body["method"], method);
        assert_eq!(reply.body["query"], "id=7");
        assert_eq!(reply.body["body"], format!("{{\"hello\":\"{method}\"}}"));
    }
    let seen = s.seen();
    let methods: Vec<&str> = seen.iter().map(|x| x.method.as_str()).collect();
    assert_eq!(methods, ["GET", "POST", "PUT", "DELETE", "PATCH"]);
    assert_eq!(seen[0].path, "/api/echo/a%2Fb");
    assert_eq!(seen[0].query.as_deref(), Some("x=1&y=%20z"));
    assert_eq!(seen[1].body_len, "{\"hello\":\"POST\"}".len());
    s.stop().await
}

#[tokio::test]
async fn the_backends_location_is_not_rewritten_under_public_url() -> Result<()> {
    let s = stack(
        json!({"public_url": "https://relay.example.com/"}),
        json!({}),
    )
    .await?;
    let reply = s
        .client
        .send("POST", "/v1/systems/SIM/http/api/created", None, &[])
        .await?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.header("location").as_deref(), Some("/api/echo/7"));
    // The relay's own answers get the absolute form.
    let reply = s
        .client
        .send(
            "POST",
            "/v1/systems/SIM/functions/STFC_CONNECTION",
            Some(b"{}".to_vec()),
            &[("Prefer", "respond-async")],
        )
        .await?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let location = reply.header("location").context("no Location")?;
    assert!(
        location.starts_with("https://relay.example.com/v1/calls/"),
        "{location}"
    );
    s.stop().await
}

#[tokio::test]
async fn credentials_and_hop_by_hop_headers_never_reach_the_backend() -> Result<()> {
    let s = stack(json!({}), json!({})).await?;
    let reply = s
        .client
        .send(
            "POST",
            "/v1/systems/SIM/http/api/echo",
            Some(b"x".to_vec()),
            &[
                ("x-api-key", API_KEY),
                ("x-custom", "kept"),
                ("cookie", "client=1"),
                ("connection", "keep-alive, x-hop"),
                ("x-hop", "dropped"),
                ("accept", "application/json"),
            ],
        )
        .await?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.header("set-cookie").is_none(),
        "backend cookies stay on-premises by default"
    );
    let seen = s.seen();
    let headers = &seen[0].headers;
    let all = format!("{headers:?}");
    assert!(!all.contains(API_KEY), "the backend saw the API key: {all}");
    assert!(headers.get("authorization").is_none());
    assert!(headers.get("x-api-key").is_none());
    assert!(
        headers.get("cookie").is_none(),
        "cookies are off by default"
    );
    assert!(headers.get("x-hop").is_none());
    assert_eq!(headers["x-custom"], "kept");
    assert_eq!(headers["accept"], "application/json");
    assert_eq!(seen[0].body_len, 1);
    s.stop().await
}

#[tokio::test]
async fn cookies_and_basic_auth_when_configured() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let password = dir.path().join("pw");
    std::fs::write(&password, "backend-secret\n")?;
    let s = stack(
        json!({}),
        json!({"forward_cookies": true, "user": "ODATA", "password_file": password}),
    )
    .await?;
    let reply = s
        .client
        .send(
            "GET",
            "/v1/systems/SIM/http/api/echo",
            None,
            &[("cookie", "client=1")],
        )
        .await?;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("set-cookie").as_deref(),
        Some("backend_session=secret")
    );
    let seen = s.seen();
    assert_eq!(seen[0].headers["cookie"], "client=1");
    // ODATA:backend-secret
    assert_eq!(
        seen[0].headers["authorization"],
        "Basic T0RBVEE6YmFja2VuZC1zZWNyZXQ="
    );
    s.stop().await
}

#[tokio::test]
async fn five_mebibytes_stream_both_ways_intact() -> Result<()> {
    let s = stack(json!({}), json!({})).await?;
    let body = big_body();
    let expected = hex_sha256(&body);
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{}/v1/systems/SIM/http/api/upload", s.relay.url()))
        .bearer_auth(API_KEY)
        .body(body.clone())
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let backend_hash = response
        .headers()
        .get("x-body-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let echoed = response.bytes().await?;
    assert_eq!(
        backend_hash.as_deref(),
        Some(expected.as_str()),
        "upload intact"
    );
    assert_eq!(hex_sha256(&echoed), expected, "echo intact");

    // A streamed upload without Content-Length, and a download.
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(100_000).map(|c| Ok(c.to_vec())).collect();
    let response = http
        .post(format!("{}/v1/systems/SIM/http/api/upload", s.relay.url()))
        .bearer_auth(API_KEY)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            pieces,
        )))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    assert_eq!(hex_sha256(&response.bytes().await?), expected);
    let response = http
        .get(format!("{}/v1/systems/SIM/http/api/big", s.relay.url()))
        .bearer_auth(API_KEY)
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    assert_eq!(hex_sha256(&response.bytes().await?), expected);
    s.stop().await
}

#[tokio::test]
async fn the_agent_allowlist_denies_other_paths_and_traversal() -> Result<()> {
    let s = stack(json!({}), json!({})).await?;
    // The root of the base URL is a path like any other (routed, then denied).
    for path in [
        "/v1/systems/SIM/http/apix",
        "/v1/systems/SIM/http/secret",
        "/v1/systems/SIM/http/",
        "/v1/systems/SIM/http",
    ] {
        let reply = s.client.get(path).await?;
        assert_eq!(reply.status, 403, "{path}: {}", reply.body);
        assert_eq!(reply.body["type"], "/problems/not-allowed");
        assert!(
            reply
                .header("content-type")
                .is_some_and(|c| c.starts_with("application/problem+json"))
        );
    }
    for path in [
        "/v1/systems/SIM/http/api/../secret",
        "/v1/systems/SIM/http/api/%2e%2e/secret",
        "/v1/systems/SIM/http/api/echo/x%2F..%2F..%2Fsecret",
        "/v1/systems/SIM/http/api/%252e%252e/secret",
    ] {
        assert_eq!(raw_status(&s.relay, path).await?, 403, "{path}");
    }
    assert!(s.seen().is_empty(), "nothing denied reached the backend");
    let reply = s.client.get("/v1/systems/SIM/http/api/echo").await?;
    assert_eq!(reply.status, 200);
    s.stop().await
}

#[tokio::test]
async fn a_system_without_http_block_refuses_pass_through() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let relay = TestRelay::start(json!({})).await?;
    let sim = simulator(dir.path(), Duration::ZERO)?;
    let agent = TestAgent::start(&relay, "agent-1", dir.path(), sim, &["*"], 4)?;
    let client = Client::new(&relay, Some(API_KEY));
    client.wait_agents("SIM", 1).await?;
    let reply = client.get("/v1/systems/SIM/http/api").await?;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(reply.body["type"], "/problems/not-allowed");
    // Auth and scope apply as on every route.
    let anonymous = Client::new(&relay, None);
    assert_eq!(anonymous.get("/v1/systems/SIM/http/api").await?.status, 401);
    let scoped = Client::new(&relay, Some(sapbridge_tests::SCOPED_KEY));
    assert_eq!(scoped.get("/v1/systems/SIM/http/api").await?.status, 403);
    agent.stop().await?;
    relay.stop().await
}

#[tokio::test]
async fn csrf_token_is_fetched_refetched_once_and_cached() -> Result<()> {
    let s = stack(json!({}), json!({"csrf": true})).await?;
    let reply = s
        .client
        .send(
            "POST",
            "/v1/systems/SIM/http/csrf/svc/items",
            Some(b"one".to_vec()),
            &[],
        )
        .await?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let reply = s
        .client
        .send(
            "POST",
            "/v1/systems/SIM/http/csrf/svc/items",
            Some(b"two".to_vec()),
            &[],
        )
        .await?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let log = s.backend.csrf_log.lock().unwrap().clone();
    assert_eq!(
        log,
        [
            "GET /csrf/svc fetch -> T1",
            "POST /csrf/svc/items token=T1 body=one -> 403",
            "GET /csrf/svc fetch -> T2",
            "POST /csrf/svc/items token=T2 body=one -> 201",
            "POST /csrf/svc/items token=T2 body=two -> 201",
        ]
    );
    s.stop().await
}

#[tokio::test]
async fn no_connected_agent_answers_503_with_retry_after() -> Result<()> {
    let relay = TestRelay::start(json!({})).await?;
    let client = Client::new(&relay, Some(API_KEY));
    let reply = client.get("/v1/systems/SIM/http/api/echo").await?;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(reply.header("retry-after").is_some());
    assert_eq!(reply.body["status"], 503);
    relay.stop().await
}

#[tokio::test]
async fn agent_killed_before_the_response_answers_502() -> Result<()> {
    let mut s = stack(json!({}), json!({})).await?;
    let client = s.client.clone();
    let request = tokio::spawn(async move { client.get("/v1/systems/SIM/http/api/hang").await });
    tokio::time::timeout(DEADLINE, s.backend.hanging.notified()).await?;
    s.agent.take().context("agent")?.kill().await;
    let reply = tokio::time::timeout(DEADLINE, request).await???;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert_eq!(reply.body["type"], "/problems/agent-lost");
    s.stop().await
}

#[tokio::test]
async fn agent_killed_mid_body_cuts_the_response_off() -> Result<()> {
    let mut s = stack(json!({}), json!({})).await?;
    let response = reqwest::Client::new()
        .get(format!("{}/v1/systems/SIM/http/api/partial", s.relay.url()))
        .bearer_auth(API_KEY)
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    tokio::time::timeout(DEADLINE, s.backend.hanging.notified()).await?;
    s.agent.take().context("agent")?.kill().await;
    let body = tokio::time::timeout(DEADLINE, response.bytes()).await?;
    assert!(
        body.is_err(),
        "a cut-off body must not look complete: {body:?}"
    );
    s.stop().await
}

#[tokio::test]
async fn slow_backend_answers_504() -> Result<()> {
    let s = stack(json!({"http_timeout_secs": 1}), json!({})).await?;
    let reply = s.client.get("/v1/systems/SIM/http/api/hang").await?;
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert_eq!(reply.body["type"], "/problems/gateway-timeout");
    // The stream was cancelled on the agent: the next request still works.
    let reply = s.client.get("/v1/systems/SIM/http/api/echo").await?;
    assert_eq!(reply.status, 200);
    s.stop().await
}

#[tokio::test]
async fn bodies_over_the_limit_answer_413() -> Result<()> {
    let s = stack(json!({"http_body_limit_bytes": 1024 * 1024}), json!({})).await?;
    let body = vec![7u8; 2 * 1024 * 1024];
    let reply = s
        .client
        .send(
            "POST",
            "/v1/systems/SIM/http/api/upload",
            Some(body.clone()),
            &[],
        )
        .await?;
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(reply.body["type"], "/problems/payload-too-large");
    // Without Content-Length the limit holds while streaming.
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let response = reqwest::Client::new()
        .post(format!("{}/v1/systems/SIM/http/api/upload", s.relay.url()))
        .bearer_auth(API_KEY)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            pieces,
        )))
        .send()
        .await?;
    assert_eq!(response.status(), 413);
    // Bodies within the limit still pass.
    let reply = s
        .client
        .send(
            "POST",
            "/v1/systems/SIM/http/api/upload",
            Some(vec![1u8; 1000]),
            &[],
        )
        .await?;
    assert_eq!(reply.status, 200);
    s.stop().await
}

#[tokio::test]
async fn an_answer_before_the_whole_body_reaches_the_client_and_keeps_the_connection() -> Result<()>
{
    let s = stack(json!({}), json!({})).await?;
    let half = vec![5u8; 256 * 1024];
    let mut socket = start_early_upload(&s.relay, half.len() * 2, &half).await?;
    // The backend refused with half of the body still unsent: the client gets that
    // answer, not a reset.
    let first = read_response(&mut socket).await?;
    assert!(first.starts_with("HTTP/1.1 403"), "{first}");
    assert!(first.ends_with("CSRF token validation failed"), "{first}");
    // The relay reads the rest of the body and the connection serves the next
    // request (closing it with the body unread would reset the client's writes).
    socket
        .write_all(&half)
        .await
        .context("the relay closed the connection after the early answer")?;
    let next = format!(
        "GET /v1/systems/SIM/http/api/echo HTTP/1.1\r\nHost: relay\r\n\
         Authorization: Bearer {API_KEY}\r\n\r\n"
    );
    socket.write_all(next.as_bytes()).await?;
    let second = read_response(&mut socket).await?;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    s.stop().await
}

#[tokio::test]
async fn the_rest_of_an_answered_body_is_awaited_no_longer_than_the_timeout() -> Result<()> {
    let s = stack(json!({"http_timeout_secs": 1}), json!({})).await?;
    let mut socket = start_early_upload(&s.relay, 1_000_000, &[5u8; 1000]).await?;
    let first = read_response(&mut socket).await?;
    assert!(first.starts_with("HTTP/1.1 403"), "{first}");
    // The client sends nothing more: after the timeout the relay lets it go.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(DEADLINE, socket.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "the connection was held: {closed:?}"
    );
    s.stop().await
}

#[tokio::test]
async fn a_client_that_stops_reading_stalls_the_backend_instead_of_filling_memory() -> Result<()> {
    let s = stack(json!({}), json!({})).await?;
    let response = reqwest::Client::new()
        .get(format!("{}/v1/systems/SIM/http/api/endless", s.relay.url()))
        .bearer_auth(API_KEY)
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    // The client reads nothing more: the backend must stall once the windows and
    // the socket buffers on the way are full.
    let produced = || {
        s.backend
            .endless_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut last = produced();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = produced();
        if now == last && now > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the backend never stalled: {now} bytes produced"
        );
        last = now;
    }
    assert!(last < 64 * 1024 * 1024, "{last} bytes buffered on the way");
    drop(response);
    // The abandoned stream is cancelled; the agent serves the next request.
    let reply = s.client.get("/v1/systems/SIM/http/api/echo").await?;
    assert_eq!(reply.status, 200);
    s.stop().await
}
