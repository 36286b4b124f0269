//! HTTP pass-through across relay replicas: two relays on one PostgreSQL
//! database, an agent with a `[systems.http]` block connected to B only, and
//! pass-through requests sent to A, which forwards them to B signed with the
//! cluster secret. Without PostgreSQL the tests say so on stderr and pass, except
//! under `CI=true`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::StreamExt;
use hmac::{KeyInit, Mac};
use sapbridge_tests::postgres::{TestDatabase, skip_or_fail};
use sapbridge_tests::{API_KEY, Client, CutProxy, DEADLINE, TestAgent, TestRelay, simulator};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};

/// The secret the test cluster's replicas share.
const SECRET: &str = "test-cluster-secret-0123456789abcdef";

/// What the backend saw, and what holds its dripping answer.
#[derive(Default)]
struct Backend {
    headers: Mutex<Vec<HeaderMap>>,
    /// Bytes of `/api/count` bodies read so far.
    received: AtomicUsize,
    /// Lets `/api/drip` send its second piece.
    release: Notify,
}

type Shared = Arc<Backend>;

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `GET /api/hello`: an unusual status and headers, to see them preserved.
async fn hello(State(backend): State<Shared>, request: Request) -> Response {
    backend
        .headers
        .lock()
        .unwrap()
        .push(request.headers().clone());
    let mut response = (
        StatusCode::NON_AUTHORITATIVE_INFORMATION,
        [("x-backend", "b1"), ("content-type", "text/plain")],
        "hello from the backend",
    )
        .into_response();
    let headers = response.headers_mut();
    headers.append("set-cookie", "a=1".parse().unwrap());
    headers.append("set-cookie", "b=2".parse().unwrap());
    response
}

/// `POST /api/upload`: reads the body as it streams in; answers its length and
/// SHA-256.
async fn upload(State(backend): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    backend.headers.lock().unwrap().push(parts.headers);
    let mut stream = body.into_data_stream();
    let mut hash = Sha256::new();
    let mut len = 0usize;
    while let Some(piece) = stream.next().await {
        let Ok(piece) = piece else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        len += piece.len();
        hash.update(&piece);
    }
    let sha: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    (
        StatusCode::CREATED,
        axum::Json(json!({"len": len, "sha256": sha})),
    )
        .into_response()
}

/// `POST /api/count`: counts the body's bytes as they arrive (in
/// `Backend::received`); answers the total.
async fn count(State(backend): State<Shared>, body: Body) -> Response {
    let mut stream = body.into_data_stream();
    let mut len = 0usize;
    while let Some(piece) = stream.next().await {
        let Ok(piece) = piece else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        len += piece.len();
        backend.received.fetch_add(piece.len(), Ordering::SeqCst);
    }
    axum::Json(json!({"len": len})).into_response()
}

/// `GET /api/drip`: one piece at once, the second once the test releases it.
async fn drip(State(backend): State<Shared>) -> Response {
    let stream = futures_util::stream::unfold(0u8, move |step| {
        let backend = Arc::clone(&backend);
        async move {
            match step {
                0 => Some((
                    Ok::<_, std::io::Error>(Bytes::from_static(b"first-piece")),
                    1,
                )),
                1 => {
                    backend.release.notified().await;
                    Some((Ok(Bytes::from_static(b"second-piece")), 2))
                }
                _ => None,
            }
        }
    });
    Body::from_stream(stream).into_response()
}

/// `GET /api/hang`: never answers.
async fn hang() -> Response {
    std::future::pending().await
}

/// 3 MiB of a repeating pattern.
fn big_body() -> Vec<u8> {
    (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect()
}

async fn big() -> Response {
    Body::from(big_body()).into_response()
}

async fn start_backend() -> Result<(String, Shared)> {
    let backend = Shared::default();
    let app = Router::new()
        .route("/api/hello", get(hello))
        .route("/api/upload", post(upload))
        .route("/api/big", get(big))
        .route("/api/count", post(count))
        .route("/api/drip", get(drip))
        .route("/api/hang", get(hang))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(Arc::clone(&backend));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}/"), backend))
}

/// A test database, or `None` after reporting the skip.
async fn database(test: &str) -> Option<TestDatabase> {
    match TestDatabase::create().await {
        Ok(db) => Some(db),
        Err(error) => {
            skip_or_fail(test, &format!("{error:#}"));
            None
        }
    }
}

/// A replica on `db` in the cluster, reached by the others at `advertise` (its
/// own address unless given).
async fn replica(
    db: &TestDatabase,
    listener: TcpListener,
    advertise: Option<String>,
) -> Result<TestRelay> {
    replica_with(db, listener, advertise, json!({})).await
}

/// As [`replica`], with `extra` merged into the relay's settings.
async fn replica_with(
    db: &TestDatabase,
    listener: TcpListener,
    advertise: Option<String>,
    extra: Value,
) -> Result<TestRelay> {
    let own = format!("http://{}", listener.local_addr()?);
    let mut settings = json!({
        "queue": {"store": "postgres", "url": db.url()},
        "cluster": {"advertise_url": advertise.unwrap_or(own), "secret": SECRET},
    });
    if let (Some(base), Value::Object(extra)) = (settings.as_object_mut(), extra) {
        base.extend(extra);
    }
    TestRelay::start_on(listener, settings).await
}

/// Two replicas, A without an agent and B with one whose `SIM` passes HTTP to
/// the backend; A lists B's agent. B is reached through `proxy` when given.
struct Cluster {
    a: TestRelay,
    b: TestRelay,
    agent: TestAgent,
    backend: Shared,
    proxy: Option<CutProxy>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start(db: &TestDatabase, behind_proxy: bool) -> Result<Self> {
        Self::start_with(db, behind_proxy, json!({}), json!({})).await
    }

    /// As [`Cluster::start`], with `extra_a` in A's settings and `extra_b` in B's.
    async fn start_with(
        db: &TestDatabase,
        behind_proxy: bool,
        extra_a: Value,
        extra_b: Value,
    ) -> Result<Self> {
        let (url, backend) = start_backend().await?;
        let dir = tempfile::tempdir()?;
        let a = replica_with(db, TcpListener::bind("127.0.0.1:0").await?, None, extra_a).await?;
        let b_listener = TcpListener::bind("127.0.0.1:0").await?;
        let proxy = match behind_proxy {
            true => Some(CutProxy::start(b_listener.local_addr()?).await?),
            false => None,
        };
        let advertise = proxy.as_ref().map(|p| format!("http://{}", p.addr));
        let b = replica_with(db, b_listener, advertise, extra_b).await?;
        let sim = simulator(dir.path(), Duration::ZERO)?;
        // Cookies both ways, so that a repeated response header (Set-Cookie) shows.
        let http = json!({"base_url": url, "allow_paths": ["/api"], "forward_cookies": true});
        let agent = TestAgent::start_with_http(&b, "agent-b", dir.path(), sim, &["*"], 4, http)?;
        // A lists B's agent once B published it: the forwarding can find it.
        let listed = Client::new(&a, Some(API_KEY)).wait_agents("SIM", 1).await?;
        let agents = sapbridge_tests::agents_of(&listed, "SIM");
        ensure!(agents[0]["http"] == json!(true), "{listed}");
        Ok(Self {
            a,
            b,
            agent,
            backend,
            proxy,
            _dir: dir,
        })
    }

    fn backend_requests(&self) -> usize {
        self.backend.headers.lock().unwrap().len()
    }

    async fn stop(self) -> Result<()> {
        self.agent.stop().await?;
        self.b.stop().await?;
        self.a.stop().await
    }
}

/// The replica id a replica recorded for `address`.
async fn replica_id(db: &TestDatabase, address: &str) -> Result<String> {
    let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT id FROM sapbridge_replicas WHERE address = $1",
            &[&address],
        )
        .await
        .context("replica by address")?;
    Ok(row.get(0))
}

/// A `Sapbridge-Forwarded` header as README documents it, made here
/// independently of the relay's code.
fn signed(secret: &str, to: &str, method: &str, target: &str, nonce: &str) -> String {
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = json!({
        "v": 1, "from": "r_test", "to": to, "method": method, "target": target,
        "ts": ts, "nonce": nonce,
        "caller": {"name": "all", "systems": ["*"], "operator": false},
    });
    let encoded = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("json"));
    let mut mac = hmac::Hmac::<sha2_hmac::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(b"sapbridge-forwarded-v1.");
    mac.update(encoded.as_bytes());
    let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{encoded}.{tag}")
}

/// A pass-through request sent to A reaches the backend through B's agent: a
/// GET with its status and headers preserved, a 6 MiB POST body streamed in
/// pieces (no `Content-Length`), a 3 MiB response; the backend never sees the
/// API key or the signed forwarding header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_through_on_a_reaches_the_agent_on_b() -> Result<()> {
    let Some(db) = database("pass_through_on_a_reaches_the_agent_on_b").await else {
        return Ok(());
    };
    let cluster = Cluster::start(&db, false).await?;
    let http = reqwest::Client::new();
    let on_a = |path: &str| format!("{}/v1/systems/SIM/http{path}", cluster.a.url());

    let reply = http
        .get(on_a("/api/hello"))
        .bearer_auth(API_KEY)
        .header("x-api-key", API_KEY)
        .send()
        .await?;
    assert_eq!(reply.status().as_u16(), 203);
    assert_eq!(reply.headers()["x-backend"], "b1");
    let cookies: Vec<_> = reply.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    assert_eq!(reply.text().await?, "hello from the backend");
    {
        let seen = cluster.backend.headers.lock().unwrap();
        let headers = &seen[0];
        for name in ["authorization", "x-api-key", "sapbridge-forwarded"] {
            assert!(headers.get(name).is_none(), "{name} reached the backend");
        }
    }

    let piece = vec![7u8; 64 * 1024];
    let pieces = 96; // 6 MiB
    let expected = hex_sha256(&piece.repeat(pieces));
    let stream = futures_util::stream::iter(
        (0..pieces).map(move |_| Ok::<Bytes, std::io::Error>(Bytes::from(piece.clone()))),
    );
    let reply = http
        .post(on_a("/api/upload"))
        .bearer_auth(API_KEY)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await?;
    assert_eq!(reply.status().as_u16(), 201);
    let body: Value = reply.json().await?;
    assert_eq!(body["len"], json!(pieces * 64 * 1024));
    assert_eq!(body["sha256"], json!(expected));

    let reply = http
        .get(on_a("/api/big"))
        .bearer_auth(API_KEY)
        .send()
        .await?;
    assert_eq!(reply.status().as_u16(), 200);
    let bytes = reply.bytes().await?;
    assert_eq!(hex_sha256(&bytes), hex_sha256(&big_body()));

    // The caller's scope as A established it holds on B: a key for OTHER only
    // is refused on A (403), and an unknown key too (401), before any hop.
    let scoped = Client::new(&cluster.a, Some(sapbridge_tests::SCOPED_KEY));
    assert_eq!(
        scoped.get("/v1/systems/SIM/http/api/hello").await?.status,
        403
    );
    let nobody = Client::new(&cluster.a, Some("not-a-key"));
    assert_eq!(
        nobody.get("/v1/systems/SIM/http/api/hello").await?.status,
        401
    );
    assert_eq!(
        cluster.backend_requests(),
        2,
        "hello and upload (big records nothing)"
    );
    cluster.stop().await
}

/// Neither body is held whole on the way through A and B: the client reads the
/// first piece of a response whose backend has not sent the rest yet, and the
/// backend reads the first piece of a request body whose client has not sent
/// the rest yet. Also prints the latency of a small GET through B's own agent and
/// forwarded by A (numbers, not asserts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_through_the_hop_without_being_held_whole() -> Result<()> {
    let Some(db) = database("bodies_stream_through_the_hop_without_being_held_whole").await else {
        return Ok(());
    };
    let cluster = Cluster::start(&db, false).await?;
    let http = reqwest::Client::new();
    let on = |relay: &TestRelay, path: &str| format!("{}/v1/systems/SIM/http{path}", relay.url());

    let mut reply = tokio::time::timeout(
        DEADLINE,
        http.get(on(&cluster.a, "/api/drip"))
            .bearer_auth(API_KEY)
            .send(),
    )
    .await??;
    assert_eq!(reply.status().as_u16(), 200);
    let first = tokio::time::timeout(DEADLINE, reply.chunk())
        .await
        .context("the first piece did not come through before the rest")??;
    assert_eq!(first.as_deref(), Some(&b"first-piece"[..]));
    cluster.backend.release.notify_one();
    let rest = tokio::time::timeout(DEADLINE, reply.bytes()).await??;
    assert_eq!(&rest[..], b"second-piece");

    let (pieces, receiver) = mpsc::channel::<Bytes>(1);
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let piece = receiver.recv().await?;
        Some((Ok::<_, std::io::Error>(piece), receiver))
    });
    let upload = tokio::spawn(
        http.post(on(&cluster.a, "/api/count"))
            .bearer_auth(API_KEY)
            .body(reqwest::Body::wrap_stream(stream))
            .send(),
    );
    pieces.send(Bytes::from(vec![1u8; 64 * 1024])).await?;
    let waited = tokio::time::Instant::now() + DEADLINE;
    while cluster.backend.received.load(Ordering::SeqCst) < 64 * 1024 {
        ensure!(
            tokio::time::Instant::now() < waited,
            "the backend saw nothing of a body whose first piece was sent"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    pieces.send(Bytes::from(vec![2u8; 64 * 1024])).await?;
    drop(pieces);
    let reply = tokio::time::timeout(DEADLINE, upload).await???;
    assert_eq!(reply.status().as_u16(), 200);
    let body: Value = reply.json().await?;
    assert_eq!(body["len"], json!(128 * 1024));

    for (label, relay) in [
        ("through B's own agent", &cluster.b),
        ("forwarded by A to B", &cluster.a),
    ] {
        let mut took = Vec::new();
        for _ in 0..200 {
            let started = std::time::Instant::now();
            let reply = http
                .get(on(relay, "/api/hello"))
                .bearer_auth(API_KEY)
                .send()
                .await?;
            ensure!(reply.status().as_u16() == 203);
            reply.bytes().await?;
            took.push(started.elapsed());
        }
        took.sort();
        println!(
            "pass-through GET {label}: p50 {:?}, p99 {:?} (200 sequential requests)",
            took[100], took[197]
        );
    }
    cluster.stop().await
}

/// B refuses a forwarding header that is garbage, signed with another secret,
/// or replayed, with a problem (401), even next to a valid API key; a header
/// signed as documented with the cluster's secret is taken once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_replayed_forwarding_is_refused() -> Result<()> {
    let Some(db) = database("forged_or_replayed_forwarding_is_refused").await else {
        return Ok(());
    };
    let cluster = Cluster::start(&db, false).await?;
    let b_id = replica_id(&db, &cluster.b.url()).await?;
    let target = "/v1/systems/SIM/http/api/hello";
    let keyless = Client::new(&cluster.b, None);
    let keyed = Client::new(&cluster.b, Some(API_KEY));

    let refused = |reply: &sapbridge_tests::Reply, says: &str| {
        assert_eq!(reply.status, 401, "{:?}", reply.body);
        assert_eq!(
            reply.header("content-type").as_deref(),
            Some("application/problem+json")
        );
        assert_eq!(reply.body["type"], "/problems/forwarded-request-refused");
        let detail = reply.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(says), "{detail}");
        assert!(!detail.contains(SECRET));
    };
    let garbage = [("sapbridge-forwarded", "not.a-signature")];
    refused(&keyless.send("GET", target, None, &garbage).await?, "");
    refused(&keyed.send("GET", target, None, &garbage).await?, "");
    let forged = signed(
        "another-secret-entirely-0123456789ab",
        &b_id,
        "GET",
        target,
        "00112233445566778899aabbccddeeff",
    );
    let forged = [("sapbridge-forwarded", forged.as_str())];
    refused(
        &keyless.send("GET", target, None, &forged).await?,
        "signature",
    );
    // Signed with the right secret, for another path: refused.
    let other_path = signed(
        SECRET,
        &b_id,
        "GET",
        "/v1/systems/SIM/http/api/big",
        "0f0f0f0f0f0f0f0f0f0f",
    );
    let other_path = [("sapbridge-forwarded", other_path.as_str())];
    refused(
        &keyless.send("GET", target, None, &other_path).await?,
        "path",
    );
    // No header and no key: the ordinary 401.
    let reply = keyless.get(target).await?;
    assert_eq!(
        (reply.status, reply.body["type"].clone()),
        (401, json!("/problems/unauthorized"))
    );
    assert_eq!(cluster.backend_requests(), 0);

    let good = signed(
        SECRET,
        &b_id,
        "GET",
        target,
        "aabbccddeeff00112233445566778899",
    );
    let good = [("sapbridge-forwarded", good.as_str())];
    let reply = keyless.send("GET", target, None, &good).await?;
    assert_eq!(reply.status, 203, "{:?}", reply.body);
    refused(&keyless.send("GET", target, None, &good).await?, "replayed");
    assert_eq!(cluster.backend_requests(), 1);
    cluster.stop().await
}

/// A forwarded request is served by the replica it was sent to or not at all:
/// A, which has no agent, answers a request forwarded to it with the lone
/// relay's 503 instead of forwarding it on to B, while the same request from a
/// client is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_request_is_never_forwarded_again() -> Result<()> {
    let Some(db) = database("a_forwarded_request_is_never_forwarded_again").await else {
        return Ok(());
    };
    let cluster = Cluster::start(&db, false).await?;
    let a_id = replica_id(&db, &cluster.a.url()).await?;
    let target = "/v1/systems/SIM/http/api/hello";
    let hop = signed(
        SECRET,
        &a_id,
        "GET",
        target,
        "1234567890abcdef1234567890abcdef",
    );
    let reply = Client::new(&cluster.a, None)
        .send(
            "GET",
            target,
            None,
            &[("sapbridge-forwarded", hop.as_str())],
        )
        .await?;
    assert_eq!(reply.status, 503, "{:?}", reply.body);
    assert_eq!(reply.body["type"], "/problems/no-agent");
    assert!(reply.header("retry-after").is_some());
    assert_eq!(cluster.backend_requests(), 0, "forwarded a second time");

    let reply = Client::new(&cluster.a, Some(API_KEY)).get(target).await?;
    assert_eq!(reply.status, 203);
    assert_eq!(cluster.backend_requests(), 1);
    cluster.stop().await
}

/// B gone (its address refuses connections while its row still says it is
/// alive): A answers a clear 503 problem with `Retry-After`, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_replica_gone_answers_503() -> Result<()> {
    let Some(db) = database("the_target_replica_gone_answers_503").await else {
        return Ok(());
    };
    let mut cluster = Cluster::start(&db, true).await?;
    let on_a = Client::new(&cluster.a, Some(API_KEY));
    let target = "/v1/systems/SIM/http/api/hello";
    assert_eq!(on_a.get(target).await?.status, 203);
    // The listener B advertised closes, and its connections are cut.
    drop(cluster.proxy.take());
    let started = std::time::Instant::now();
    let reply = on_a.get(target).await?;
    assert_eq!(reply.status, 503, "{:?}", reply.body);
    assert_eq!(reply.body["type"], "/problems/replica-unavailable");
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    assert!(reply.header("retry-after").is_some());
    let reply = on_a
        .send(
            "POST",
            "/v1/systems/SIM/http/api/upload",
            Some(vec![1; 1000]),
            &[],
        )
        .await?;
    assert_eq!(reply.status, 503, "{:?}", reply.body);
    println!("503 for a gone replica after {:?}", started.elapsed());
    assert_eq!(cluster.backend_requests(), 1);
    cluster.stop().await
}

/// A replica says why it does not forward: without a cluster secret of its own
/// (503 naming `[cluster]`), or when the replica with the agent takes no
/// forwarded requests (no address); and a replica that stops cleanly is
/// forgotten at once, so the answer becomes the lone relay's `no-agent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_say_why_they_do_not_forward() -> Result<()> {
    let Some(db) = database("replicas_say_why_they_do_not_forward").await else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let (url, _backend) = start_backend().await?;
    let on_postgres = json!({"queue": {"store": "postgres", "url": db.url()}});
    let plain = TestRelay::start(on_postgres.clone()).await?;
    let mut no_address = on_postgres.clone();
    no_address["cluster"] = json!({"secret": SECRET});
    let unadvertised = TestRelay::start(no_address).await?;
    let b = replica(&db, TcpListener::bind("127.0.0.1:0").await?, None).await?;
    let sim = simulator(dir.path(), Duration::ZERO)?;
    let http = json!({"base_url": url, "allow_paths": ["/api"]});
    let agent = TestAgent::start_with_http(&b, "agent-b", dir.path(), sim, &["*"], 4, http)?;
    let target = "/v1/systems/SIM/http/api/hello";
    let on_plain = Client::new(&plain, Some(API_KEY));
    on_plain.wait_agents("SIM", 1).await?;
    let reply = on_plain.get(target).await?;
    assert_eq!(reply.status, 503, "{:?}", reply.body);
    assert_eq!(reply.body["type"], "/problems/no-agent");
    let detail = reply.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("[cluster]"), "{detail}");

    // B stops cleanly: its address and agents are withdrawn at once, and the
    // agent moves to the replica that has a secret and no address.
    agent.stop().await?;
    b.stop().await?;
    let on_unadvertised = Client::new(&unadvertised, Some(API_KEY));
    // Asked for the first time after B stopped (nothing cached): no 15 s of
    // "replica-unavailable" while B's row ages.
    let reply = on_unadvertised.get(target).await?;
    assert_eq!(reply.status, 503, "{:?}", reply.body);
    assert_eq!(reply.body["type"], "/problems/no-agent", "{:?}", reply.body);
    let detail = reply.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("no agent serving SIM is connected"),
        "{detail}"
    );
    let sim = simulator(dir.path(), Duration::ZERO)?;
    let http = json!({"base_url": url, "allow_paths": ["/api"]});
    let agent =
        TestAgent::start_with_http(&unadvertised, "agent-u", dir.path(), sim, &["*"], 4, http)?;
    // `plain` has no agent; the one with the agent takes no forwarded requests.
    let b2 = replica(&db, TcpListener::bind("127.0.0.1:0").await?, None).await?;
    let on_b2 = Client::new(&b2, Some(API_KEY));
    on_b2.wait_agents("SIM", 1).await?;
    let reply = on_b2.get(target).await?;
    assert_eq!(reply.status, 503, "{:?}", reply.body);
    assert_eq!(reply.body["type"], "/problems/no-agent");
    let detail = reply.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("take no forwarded requests"), "{detail}");
    agent.stop().await?;
    b2.stop().await?;
    unadvertised.stop().await?;
    plain.stop().await
}

/// A replica whose own agents are all at their stream limit forwards to a
/// replica with a free one instead of answering 503 busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_agents_are_busy_forwards() -> Result<()> {
    let Some(db) = database("a_replica_whose_agents_are_busy_forwards").await else {
        return Ok(());
    };
    let (url, backend) = start_backend().await?;
    let (dir_a, dir_b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let own = format!("http://{}", listener.local_addr()?);
    let a = TestRelay::start_on(
        listener,
        json!({
            "queue": {"store": "postgres", "url": db.url()},
            "cluster": {"advertise_url": own, "secret": SECRET},
            "http_max_in_flight_per_agent": 1,
        }),
    )
    .await?;
    let b = replica(&db, TcpListener::bind("127.0.0.1:0").await?, None).await?;
    let http_block = json!({"base_url": url, "allow_paths": ["/api"]});
    let sim_a = simulator(dir_a.path(), Duration::ZERO)?;
    let agent_a = TestAgent::start_with_http(
        &a,
        "agent-a",
        dir_a.path(),
        sim_a,
        &["*"],
        4,
        http_block.clone(),
    )?;
    let sim_b = simulator(dir_b.path(), Duration::ZERO)?;
    let agent_b =
        TestAgent::start_with_http(&b, "agent-b", dir_b.path(), sim_b, &["*"], 4, http_block)?;
    let on_a = Client::new(&a, Some(API_KEY));
    on_a.wait_agents("SIM", 2).await?;

    // A's only agent carries its one stream: the drip, held open.
    let http = reqwest::Client::new();
    let mut held = tokio::time::timeout(
        DEADLINE,
        http.get(format!("{}/v1/systems/SIM/http/api/drip", a.url()))
            .bearer_auth(API_KEY)
            .send(),
    )
    .await??;
    let first = tokio::time::timeout(DEADLINE, held.chunk()).await??;
    assert_eq!(first.as_deref(), Some(&b"first-piece"[..]));
    let reply = on_a.get("/v1/systems/SIM/http/api/hello").await?;
    assert_eq!(reply.status, 203, "{:?}", reply.body);
    assert_eq!(backend.headers.lock().unwrap().len(), 1);
    backend.release.notify_one();
    let rest = tokio::time::timeout(DEADLINE, held.bytes()).await??;
    assert_eq!(&rest[..], b"second-piece");
    agent_a.stop().await?;
    agent_b.stop().await?;
    b.stop().await?;
    a.stop().await
}

/// The pass-through body limit of the replica the client called holds across the
/// hop (B's limit is the default 16 MiB, A's 1 MiB): declared or streamed past
/// it, a body sent to A answers 413 (a problem); within it, it passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_answer_413_across_the_hop() -> Result<()> {
    let Some(db) = database("bodies_over_the_limit_answer_413_across_the_hop").await else {
        return Ok(());
    };
    let limit = json!({"http_body_limit_bytes": 1024 * 1024});
    let cluster = Cluster::start_with(&db, false, limit, json!({})).await?;
    let on_a = Client::new(&cluster.a, Some(API_KEY));
    let path = "/v1/systems/SIM/http/api/upload";
    let body = vec![7u8; 2 * 1024 * 1024];
    let reply = on_a.send("POST", path, Some(body.clone()), &[]).await?;
    assert_eq!(reply.status, 413, "{:?}", reply.body);
    assert_eq!(reply.body["type"], "/problems/payload-too-large");
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let response = reqwest::Client::new()
        .post(format!("{}{path}", cluster.a.url()))
        .bearer_auth(API_KEY)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            pieces,
        )))
        .send()
        .await?;
    assert_eq!(response.status(), 413);
    let reply = on_a.send("POST", path, Some(vec![1u8; 1000]), &[]).await?;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(reply.body["len"], json!(1000));
    cluster.stop().await
}

/// A backend that does not answer gives the same 504 problem through the hop as
/// through a local agent, after the pass-through timeout (1 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_backend_answers_504_across_the_hop() -> Result<()> {
    let Some(db) = database("a_slow_backend_answers_504_across_the_hop").await else {
        return Ok(());
    };
    let timeout = json!({"http_timeout_secs": 1});
    let cluster = Cluster::start_with(&db, false, timeout.clone(), timeout).await?;
    let started = std::time::Instant::now();
    let reply = tokio::time::timeout(
        DEADLINE,
        Client::new(&cluster.a, Some(API_KEY)).get("/v1/systems/SIM/http/api/hang"),
    )
    .await??;
    assert_eq!(reply.status, 504, "{:?}", reply.body);
    assert_eq!(reply.body["type"], "/problems/gateway-timeout");
    println!("504 across the hop after {:?}", started.elapsed());
    cluster.stop().await
}
