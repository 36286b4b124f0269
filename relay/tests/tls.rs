//! The relay terminating TLS itself (`[tls]`), with certificates made in the test
//! (rcgen): a real agent over `wss://` serves calls; API clients get HTTP/2 by
//! ALPN (and HTTP/1.1 when they ask for it); the certificate is replaced under
//! load — on the reload channel (SIGHUP) and when the files change — with no
//! failed call, new handshakes seeing the new certificate and an established
//! connection carrying on; mutual TLS refuses an agent without a client
//! certificate and serves one with it; the agent's public key pin matches or
//! refuses, naming the key it saw.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{AGENT_TOKEN, API_KEY, STEP, config_json};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use sapbridge_agent::AgentConfig;
use sapbridge_agent::doctor::Verdict;
use sapbridge_relay::{RelayConfig, RelayError};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

type Issuer = CertifiedIssuer<'static, KeyPair>;

/// A private CA that signs server and client certificates.
struct Ca {
    issuer: Issuer,
}

/// A certificate and its key, as PEM and DER.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
        Self { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for 127.0.0.1 with a fresh key.
    fn server(&self) -> Leaf {
        self.leaf(vec!["127.0.0.1".into(), "localhost".into()], None)
    }

    /// A client certificate for an agent.
    fn client(&self) -> Leaf {
        self.leaf(
            vec!["agent.plant.example".into()],
            Some(ExtendedKeyUsagePurpose::ClientAuth),
        )
    }

    fn leaf(&self, names: Vec<String>, usage: Option<ExtendedKeyUsagePurpose>) -> Leaf {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(names).expect("params");
        params.extended_key_usages.extend(usage);
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

/// Writes a file by renaming a sibling over it, as a certificate renewal does.
fn replace(path: &Path, text: &str) {
    let fresh = path.with_extension("new");
    std::fs::write(&fresh, text).expect("write");
    std::fs::rename(&fresh, path).expect("rename");
}

/// The relay's certificate files and CA in a temporary directory.
struct Files {
    dir: tempfile::TempDir,
    ca: Ca,
}

impl Files {
    fn new() -> Self {
        let files = Self {
            dir: tempfile::tempdir().expect("dir"),
            ca: Ca::new("relay CA"),
        };
        std::fs::write(files.path("ca.pem"), files.ca.pem()).expect("write CA");
        files
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Installs a new server certificate as `cert.pem` / `key.pem`.
    fn install(&self, leaf: &Leaf) {
        // The key first: a reload that sees the new certificate with the old key
        // fails and is retried at the next poll.
        replace(&self.path("key.pem"), &leaf.key_pem);
        replace(&self.path("cert.pem"), &leaf.cert_pem);
    }

    fn tls(&self, extra: Value) -> Value {
        let mut tls = json!({
            "cert_file": self.path("cert.pem"),
            "key_file": self.path("key.pem"),
        });
        if let (Some(tls), Value::Object(extra)) = (tls.as_object_mut(), extra) {
            tls.extend(extra);
        }
        tls
    }
}

/// A relay serving TLS, with its reload channel.
struct Relay {
    addr: std::net::SocketAddr,
    reload: tokio::sync::mpsc::UnboundedSender<RelayConfig>,
    config: Value,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), RelayError>>,
}

impl Relay {
    async fn start(tls: Value) -> Self {
        let mut config = config_json();
        config["tls"] = tls;
        let parsed: RelayConfig = serde_json::from_value(config.clone()).expect("config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let (reload, reloads) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(sapbridge_relay::run_with_reloads(
            listener,
            parsed,
            shutdown.clone(),
            reloads,
        ));
        Self {
            addr,
            reload,
            config,
            shutdown,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    fn wss(&self) -> String {
        format!("wss://{}/v1/agent/connect", self.addr)
    }

    /// What SIGHUP does: the configuration again, on the reload channel.
    fn hangup(&self) {
        let config = serde_json::from_value(self.config.clone()).expect("config");
        self.reload.send(config).expect("relay running");
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("relay stops in time")
            .expect("relay task");
        result.expect("relay ran cleanly");
    }
}

/// A real agent serving `PRD` (simulator) over `wss://`.
struct Agent {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), sapbridge_agent::AgentError>>,
}

fn agent_config(relay: &Relay, files: &Files, extra: Value) -> AgentConfig {
    let data = files.path(&format!("agent-{}", rand_suffix()));
    let mut config = json!({
        "relay_url": relay.wss(),
        "token": AGENT_TOKEN,
        "agent_id": "tls-agent",
        "data_dir": data,
        "ca_file": files.path("ca.pem"),
        "backoff_initial_ms": 50,
        "backoff_max_ms": 200,
        "systems": [{
            "name": "PRD",
            "backend": {"type": "sim", "db_path": data.join("sim.db")},
            "allow_functions": ["STFC_CONNECTION"],
        }],
    });
    if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
        config.extend(extra);
    }
    serde_json::from_value(config).expect("agent config")
}

fn rand_suffix() -> u64 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) as u64
}

impl Agent {
    fn start(config: AgentConfig) -> Self {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(sapbridge_agent::run(config, shutdown.clone()));
        Self { shutdown, task }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("agent stops in time")
            .expect("agent task");
        result.expect("agent ran cleanly");
    }
}

/// An API client trusting `ca` only.
fn client(ca: &Ca, http1_only: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).expect("CA"))
        .timeout(STEP);
    let builder = if http1_only {
        builder.http1_only()
    } else {
        builder
    };
    builder.build().expect("client")
}

/// One synchronous call; its status and body.
async fn call(
    client: &reqwest::Client,
    relay: &Relay,
    text: &str,
) -> reqwest::Result<(u16, Value)> {
    let response = client
        .post(relay.url("/v1/systems/PRD/functions/STFC_CONNECTION"))
        .bearer_auth(API_KEY)
        .json(&json!({"REQUTEXT": text}))
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

/// Waits until `PRD` lists `n` agents.
async fn wait_agents(client: &reqwest::Client, relay: &Relay, n: usize) {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let body: Value = client
            .get(relay.url("/v1/systems"))
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("GET /v1/systems")
            .json()
            .await
            .expect("JSON");
        let count = body["systems"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["system"] == "PRD")
            .and_then(|s| s["agents"].as_array())
            .map_or(0, Vec::len);
        if count == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "PRD has {count} agents, want {n}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_echo(answer: &(u16, Value), text: &str) {
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert!(answer.1.to_string().contains(text), "{}", answer.1);
}

/// A rustls client trusting `ca`, with an optional client certificate.
fn rustls_client(ca: &Ca, identity: Option<&Leaf>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.issuer.der().clone())
        .expect("CA into the roots");
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match identity {
        Some(leaf) => {
            let key = rustls_pemfile::private_key(&mut leaf.key_pem.as_bytes())
                .expect("key PEM")
                .expect("a key");
            builder
                .with_client_auth_cert(vec![leaf.der.clone()], key)
                .expect("identity")
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// A fresh TLS connection: the certificate the relay presented, and the stream.
async fn handshake(
    relay: &Relay,
    tls: Arc<ClientConfig>,
) -> std::io::Result<(
    CertificateDer<'static>,
    tokio_rustls::client::TlsStream<TcpStream>,
)> {
    let tcp = TcpStream::connect(relay.addr).await?;
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let stream = TlsConnector::from(tls).connect(name, tcp).await?;
    let presented = stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("certificates")[0]
        .clone();
    Ok((presented, stream))
}

#[tokio::test]
async fn a_wss_agent_serves_calls_and_api_clients_get_http2_by_alpn() {
    let files = Files::new();
    files.install(&files.ca.server());
    let relay = Relay::start(files.tls(Value::Null)).await;
    let agent = Agent::start(agent_config(&relay, &files, Value::Null));

    let h2 = client(&files.ca, false);
    wait_agents(&h2, &relay, 1).await;
    let response = h2.get(relay.url("/healthz")).send().await.expect("healthz");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_echo(
        &call(&h2, &relay, "over h2").await.expect("call"),
        "over h2",
    );
    // Concurrent calls share the one HTTP/2 connection.
    let calls = (0..8).map(|i| {
        let h2 = h2.clone();
        let relay = &relay;
        async move { call(&h2, relay, &format!("stream {i}")).await }
    });
    for (i, answer) in futures_util::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        assert_echo(&answer.expect("call"), &format!("stream {i}"));
    }

    let h1 = client(&files.ca, true);
    let response = h1.get(relay.url("/healthz")).send().await.expect("healthz");
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_echo(
        &call(&h1, &relay, "over h1").await.expect("call"),
        "over h1",
    );

    // Plain HTTP on the TLS port is not served.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/healthz", relay.addr))
        .timeout(STEP)
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");

    // The served certificate's end of validity is on /metrics (rcgen's default
    // validity ends on 1 January 4096).
    let metrics = h1
        .get(relay.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let expiry = format!(
        "sapbridge_tls_certificate_expiry_timestamp_seconds{{file=\"{}\"}} {}",
        files.path("cert.pem").display(),
        time::macros::datetime!(4096-01-01 0:00 UTC).unix_timestamp()
    );
    assert!(metrics.contains(&expiry), "no `{expiry}` in {metrics}");

    agent.stop().await;
    relay.stop().await;
}

/// Calls in a loop until `stop`: over one kept-alive client, or over a new
/// connection each time. Returns (calls, failures as text).
fn load(
    relay: &Relay,
    ca: &Ca,
    fresh_connections: bool,
    stop: Arc<AtomicBool>,
) -> JoinHandle<(usize, Vec<String>)> {
    let url = relay.url("/v1/systems/PRD/functions/STFC_CONNECTION");
    let kept = client(ca, false);
    let ca_pem = ca.pem();
    tokio::spawn(async move {
        let (mut calls, mut failures) = (0, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            let client = if fresh_connections {
                reqwest::Client::builder()
                    .use_rustls_tls()
                    .tls_built_in_root_certs(false)
                    .add_root_certificate(
                        reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA"),
                    )
                    .pool_max_idle_per_host(0)
                    .timeout(STEP)
                    .build()
                    .expect("client")
            } else {
                kept.clone()
            };
            let answer = client
                .post(&url)
                .bearer_auth(API_KEY)
                .json(&json!({"REQUTEXT": "load"}))
                .send()
                .await;
            calls += 1;
            match answer {
                Ok(response) if response.status() == 200 => {}
                Ok(response) => failures.push(format!("HTTP {}", response.status())),
                Err(error) => failures.push(format!("{error:?}")),
            }
        }
        (calls, failures)
    })
}

/// Handshakes until the relay presents `want` (or fails the test after [`STEP`]).
async fn wait_presented(relay: &Relay, tls: &Arc<ClientConfig>, want: &CertificateDer<'_>) {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let (presented, _) = handshake(relay, Arc::clone(tls)).await.expect("handshake");
        if presented == *want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay never presented the new certificate"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GET /healthz on an open HTTP/1 connection.
async fn healthz_on(sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>) -> u16 {
    let request = http::Request::get("/healthz")
        .header(http::header::HOST, "127.0.0.1")
        .body(Empty::new())
        .expect("request");
    sender
        .send_request(request)
        .await
        .expect("answer on the old connection")
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_certificate_is_replaced_under_load_without_a_failed_call() {
    let files = Files::new();
    let first = files.ca.server();
    files.install(&first);
    let relay = Relay::start(files.tls(json!({"reload_poll_secs": 1}))).await;
    let agent = Agent::start(agent_config(&relay, &files, Value::Null));
    let api = client(&files.ca, false);
    wait_agents(&api, &relay, 1).await;
    let tls = rustls_client(&files.ca, None);

    // A connection made before the reloads, kept open through them.
    let (presented, stream) = handshake(&relay, Arc::clone(&tls))
        .await
        .expect("handshake");
    assert_eq!(presented, first.der);
    let (mut old, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1 on the old connection");
    tokio::spawn(connection);
    assert_eq!(healthz_on(&mut old).await, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let kept = load(&relay, &files.ca, false, Arc::clone(&stop));
    let fresh = load(&relay, &files.ca, true, Arc::clone(&stop));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Replaced files are picked up by the poll.
    let second = files.ca.server();
    files.install(&second);
    wait_presented(&relay, &tls, &second.der).await;
    assert_eq!(healthz_on(&mut old).await, 200);

    // And by SIGHUP; a broken file is refused and the current certificate stays.
    std::fs::write(files.path("cert.pem"), "not a certificate").expect("write");
    relay.hangup();
    let third = files.ca.server();
    files.install(&third);
    relay.hangup();
    wait_presented(&relay, &tls, &third.der).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(healthz_on(&mut old).await, 200);

    stop.store(true, Ordering::Relaxed);
    for (name, task) in [("kept-alive", kept), ("fresh-connection", fresh)] {
        let (calls, failures) = task.await.expect("load task");
        assert!(calls > 5, "{name}: only {calls} calls");
        assert!(failures.is_empty(), "{name}: {failures:?} of {calls}");
        eprintln!("{name}: {calls} calls, none failed");
    }
    // The agent's WebSocket, opened before the reloads, still serves.
    assert_echo(&call(&api, &relay, "after").await.expect("call"), "after");
    agent.stop().await;
    relay.stop().await;
}

#[tokio::test]
async fn with_a_client_ca_agents_need_a_certificate_and_api_clients_do_not() {
    let files = Files::new();
    files.install(&files.ca.server());
    let agents_ca = Ca::new("agents CA");
    std::fs::write(files.path("agents-ca.pem"), agents_ca.pem()).expect("write");
    let relay =
        Relay::start(files.tls(json!({"client_ca_file": files.path("agents-ca.pem")}))).await;
    let api = client(&files.ca, false);
    assert_eq!(
        api.get(relay.url("/healthz"))
            .send()
            .await
            .expect("healthz")
            .status(),
        200
    );

    // Without a certificate the upgrade is refused, saying why.
    let mut request = relay.wss().into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {AGENT_TOKEN}").parse().expect("header"),
    );
    let refused = tokio_tungstenite::connect_async_tls_with_config(
        request.clone(),
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(rustls_client(
            &files.ca, None,
        ))),
    )
    .await;
    let Err(tungstenite::Error::Http(response)) = refused else {
        panic!("an agent without a certificate was let in: {refused:?}");
    };
    assert_eq!(response.status(), 403);
    let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default());
    assert!(body.contains("client-certificate-required"), "{body}");
    // A certificate from another CA fails the handshake itself.
    let stranger = Ca::new("another CA").client();
    let refused = handshake(&relay, rustls_client(&files.ca, Some(&stranger))).await;
    let refused = match refused {
        Err(error) => error.to_string(),
        // TLS 1.3: the client learns of the refusal at its first read.
        Ok((_, mut stream)) => {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .await;
            let mut buf = [0u8; 64];
            stream
                .read(&mut buf)
                .await
                .expect_err("a refused certificate")
                .to_string()
        }
    };
    assert!(refused.contains("UnknownCA"), "{refused}");

    // The real agent: without its certificate it stays out, with it it serves.
    let bare = Agent::start(agent_config(&relay, &files, Value::Null));
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_agents(&api, &relay, 0).await;
    bare.stop().await;
    let identity = agents_ca.client();
    std::fs::write(files.path("agent.pem"), &identity.cert_pem).expect("write");
    std::fs::write(files.path("agent.key"), &identity.key_pem).expect("write");
    let agent = Agent::start(agent_config(
        &relay,
        &files,
        json!({"client_cert_file": files.path("agent.pem"), "client_key_file": files.path("agent.key")}),
    ));
    wait_agents(&api, &relay, 1).await;
    assert_echo(&call(&api, &relay, "mtls").await.expect("call"), "mtls");
    agent.stop().await;
    relay.stop().await;

    // `client_auth = "required"`: API clients need one too.
    let relay = Relay::start(files.tls(json!({
        "client_ca_file": files.path("agents-ca.pem"),
        "client_auth": "required",
    })))
    .await;
    let without = client(&files.ca, false)
        .get(relay.url("/healthz"))
        .send()
        .await;
    assert!(
        without.is_err(),
        "answered without a certificate: {without:?}"
    );
    let mut identity_pem = identity.cert_pem.clone();
    identity_pem.push_str(&identity.key_pem);
    let with = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(files.ca.pem().as_bytes()).expect("CA"),
        )
        .identity(reqwest::Identity::from_pem(identity_pem.as_bytes()).expect("identity"))
        .timeout(STEP)
        .build()
        .expect("client");
    assert_eq!(
        with.get(relay.url("/healthz"))
            .send()
            .await
            .expect("healthz")
            .status(),
        200
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_pinned_relay_key_is_served_and_another_is_refused_by_name() {
    let files = Files::new();
    let leaf = files.ca.server();
    files.install(&leaf);
    std::fs::write(files.path("served.pem"), &leaf.cert_pem).expect("write");
    let relay = Relay::start(files.tls(Value::Null)).await;
    let api = client(&files.ca, false);

    let pins = sapbridge_agent::pins_of_pem(leaf.cert_pem.as_bytes()).expect("pin");
    let (right, right_hex) = pins[0].clone();
    let other = sapbridge_agent::pins_of_pem(files.ca.server().cert_pem.as_bytes()).expect("pin");
    let wrong = other[0].0.clone();

    // The doctor: a matching pin (base64 or hex) connects; another names the key seen.
    for pin in [&right, &right_hex] {
        let config = agent_config(&relay, &files, json!({"relay_spki_sha256": [pin]}));
        let report = sapbridge_agent::doctor::doctor(&config).await;
        let connection = report.sections[0]
            .checks
            .iter()
            .find(|c| c.what == "connection")
            .expect("a connection check");
        assert_eq!(connection.verdict, Verdict::Ok, "{report}");
        assert!(report.to_string().contains("relay_spki_sha256"), "{report}");
    }
    let config = agent_config(&relay, &files, json!({"relay_spki_sha256": [wrong]}));
    let report = sapbridge_agent::doctor::doctor(&config).await;
    let connection = report.sections[0]
        .checks
        .iter()
        .find(|c| c.what == "connection")
        .expect("a connection check");
    assert_eq!(connection.verdict, Verdict::Failed, "{report}");
    assert!(
        connection.detail.contains(&right) && connection.detail.contains("sapbridge keys pin"),
        "{}",
        connection.detail
    );

    // The running agent: a wrong pin keeps it out, the right one lets it serve.
    let pinned_wrong = Agent::start(config);
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_agents(&api, &relay, 0).await;
    pinned_wrong.stop().await;
    let agent = Agent::start(agent_config(
        &relay,
        &files,
        json!({"relay_spki_sha256": [wrong, right]}),
    ));
    wait_agents(&api, &relay, 1).await;
    assert_echo(&call(&api, &relay, "pinned").await.expect("call"), "pinned");
    agent.stop().await;
    relay.stop().await;
}

/// HTTP/2 between requests: frames such as window updates are not a request head,
/// so a connection idle past the header-read timeout still takes requests; past
/// the idle timeout it is closed with GOAWAY.
#[tokio::test]
async fn an_http2_connection_lives_by_the_idle_timeout_and_ends_with_goaway() {
    let files = Files::new();
    files.install(&files.ca.server());
    let mut config = config_json();
    config["tls"] = files.tls(Value::Null);
    config["header_read_timeout_secs"] = json!(1);
    config["idle_timeout_secs"] = json!(3);
    let parsed: RelayConfig = serde_json::from_value(config).expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let relay = tokio::spawn(sapbridge_relay::run(listener, parsed, shutdown.clone()));

    let mut tls = (*rustls_client(&files.ca, None)).clone();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let stream = TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .expect("handshake");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()));
    // The client pings while idle: bytes between requests that are no request.
    let (mut sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_millis(300))
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/2");
    let connection = tokio::spawn(connection);
    let healthz = |sender: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>| {
        let request = http::Request::get(format!("https://{addr}/healthz"))
            .body(Empty::new())
            .expect("request");
        sender.send_request(request)
    };
    let first = healthz(&mut sender).await.expect("first answer");
    assert_eq!(first.status(), 200);
    http_body_util::BodyExt::collect(first.into_body())
        .await
        .expect("first body");
    // Past the header-read timeout, within the idle timeout.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let second = healthz(&mut sender)
        .await
        .expect("a request after 2 s idle");
    assert_eq!(second.status(), 200);
    http_body_util::BodyExt::collect(second.into_body())
        .await
        .expect("second body");
    // Past the idle timeout: the relay ends the connection, with GOAWAY.
    let ended = tokio::time::timeout(Duration::from_secs(8), connection)
        .await
        .expect("the idle connection ended")
        .expect("connection task");
    assert!(ended.is_ok(), "not a clean GOAWAY: {ended:?}");
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), relay).await;
}
