//! The relay's connection timeouts against pass-through: a download and an upload
//! that are slow but steady outlive the header-read, idle and body-read timeouts,
//! and an upload that stalls answers 408. A relay and an agent in this process, a
//! local axum server as the system's HTTP service.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::{get, post};
use futures_util::StreamExt;
use sapbridge_tests::{API_KEY, Client, DEADLINE, TestAgent, TestRelay, simulator};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Pieces of the slow download and upload, and the pause between two.
const PIECES: usize = 10;
const PAUSE: Duration = Duration::from_millis(350);
const PIECE: &[u8] = b"0123456789abcdef";

/// A download of [`PIECES`] pieces, one every [`PAUSE`].
async fn slow_download() -> Body {
    let pieces = futures_util::stream::iter(0..PIECES).then(|_| async {
        tokio::time::sleep(PAUSE).await;
        Ok::<_, std::io::Error>(Bytes::from_static(PIECE))
    });
    Body::from_stream(pieces)
}

/// Answers with the length of the body it read.
async fn upload(body: Bytes) -> String {
    body.len().to_string()
}

struct Stack {
    relay: TestRelay,
    agent: TestAgent,
    _dir: tempfile::TempDir,
}

/// A backend, a relay whose connection timeouts are all 1 s, and an agent passing
/// `SIM`'s HTTP to the backend.
async fn stack() -> Result<Stack> {
    let app = Router::new()
        .route("/api/slow", get(slow_download))
        .route("/api/upload", post(upload));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let backend = format!("http://{}/", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir()?;
    let relay = TestRelay::start(json!({
        "header_read_timeout_secs": 1,
        "idle_timeout_secs": 1,
        "body_read_timeout_secs": 1,
    }))
    .await?;
    let sim = simulator(dir.path(), Duration::ZERO)?;
    let http = json!({"base_url": backend, "allow_paths": ["/api"]});
    let agent = TestAgent::start_with_http(&relay, "agent-1", dir.path(), sim, &["*"], 4, http)?;
    Client::new(&relay, Some(API_KEY))
        .wait_agents("SIM", 1)
        .await?;
    Ok(Stack {
        relay,
        agent,
        _dir: dir,
    })
}

impl Stack {
    async fn stop(self) -> Result<()> {
        self.agent.stop().await?;
        self.relay.stop().await
    }
}

/// A client that opens a new connection per request (a pooled one may have been
/// closed by the 1 s idle timeout as it is reused).
fn unpooled() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(DEADLINE)
        .build()?)
}

#[tokio::test]
async fn slow_but_steady_pass_through_bodies_outlive_the_timeouts() -> Result<()> {
    let stack = stack().await?;
    let http = unpooled()?;
    let started = tokio::time::Instant::now();
    let download = http
        .get(format!(
            "{}/v1/systems/SIM/http/api/slow",
            stack.relay.url()
        ))
        .bearer_auth(API_KEY)
        .send()
        .await?;
    ensure!(download.status() == 200, "download: {}", download.status());
    let body = download.bytes().await.context("the slow download")?;
    ensure!(body.len() == PIECES * PIECE.len(), "{} bytes", body.len());
    ensure!(started.elapsed() > Duration::from_secs(3));

    let pieces = futures_util::stream::iter(0..PIECES).then(|_| async {
        tokio::time::sleep(PAUSE).await;
        Ok::<_, std::io::Error>(Bytes::from_static(PIECE))
    });
    let started = tokio::time::Instant::now();
    let upload = http
        .post(format!(
            "{}/v1/systems/SIM/http/api/upload",
            stack.relay.url()
        ))
        .bearer_auth(API_KEY)
        .body(reqwest::Body::wrap_stream(pieces))
        .send()
        .await?;
    ensure!(upload.status() == 200, "upload: {}", upload.status());
    let length = upload.text().await?;
    ensure!(length == (PIECES * PIECE.len()).to_string(), "{length}");
    ensure!(started.elapsed() > Duration::from_secs(3));
    stack.stop().await
}

#[tokio::test]
async fn a_stalled_pass_through_upload_answers_408() -> Result<()> {
    let stack = stack().await?;
    let mut socket = tokio::net::TcpStream::connect(stack.relay.addr).await?;
    let head = format!(
        "POST /v1/systems/SIM/http/api/upload HTTP/1.1\r\nHost: relay\r\n\
         Authorization: Bearer {API_KEY}\r\nContent-Length: 1000\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await?;
    socket.write_all(&[b'x'; 100]).await?;
    // Everything until the relay closes the connection.
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, socket.read_to_end(&mut answer))
        .await
        .context("the stalled upload was never cut")??;
    let answer = String::from_utf8_lossy(&answer);
    ensure!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    ensure!(answer.contains("/problems/request-timeout"), "{answer}");
    stack.stop().await
}
