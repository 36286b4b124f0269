//! The agent's proxy from the environment, as on a server whose outbound HTTPS
//! goes through a corporate proxy: `HTTPS_PROXY` (with Basic credentials in it)
//! carries a `sapbridge-agent` process to a `wss://` relay process; `NO_PROXY`
//! covering the relay, or `proxy_url = "none"` in `agent.toml`, makes it dial
//! directly; and `doctor` names a proxy that asks for NTLM or Negotiate.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use sapbridge_tests::{Proc, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_sapbridge");
const AGENT_BIN: &str = env!("CARGO_BIN_EXE_sapbridge-agent");
const KEY: &str = "proxy-key-0123456789abcdef";
const TOKEN: &str = "proxy-token-0123456789abcdef";
const PROXY_VARIABLES: [&str; 8] = [
    "https_proxy",
    "HTTPS_PROXY",
    "http_proxy",
    "HTTP_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// A `CONNECT` proxy on loopback. With `basic`, it wants those credentials;
/// with `challenge`, it answers every `CONNECT` 407 offering those schemes.
struct ConnectProxy {
    address: String,
    tunnels: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl ConnectProxy {
    async fn start(basic: Option<(&str, &str)>, challenge: &'static [&'static str]) -> Self {
        let expected = basic.map(|(user, password)| {
            format!(
                "proxy-authorization: basic {}",
                base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    format!("{user}:{password}")
                )
                .to_lowercase()
            )
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let tunnels = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (counted, asked) = (Arc::clone(&tunnels), Arc::clone(&requests));
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let expected = expected.clone();
                let (counted, asked) = (Arc::clone(&counted), Arc::clone(&asked));
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    while !head.ends_with(b"\r\n\r\n") {
                        let Ok(byte) = client.read_u8().await else {
                            return;
                        };
                        head.push(byte);
                    }
                    asked.fetch_add(1, Ordering::SeqCst);
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let Some(target) = head
                        .strip_prefix("CONNECT ")
                        .and_then(|rest| rest.split_whitespace().next())
                    else {
                        let _ = client.write_all(b"HTTP/1.1 405 Not Allowed\r\n\r\n").await;
                        return;
                    };
                    let authorized = expected
                        .as_ref()
                        .is_none_or(|e| head.lines().any(|l| l.to_lowercase() == *e));
                    if !challenge.is_empty() || !authorized {
                        let mut answer =
                            "HTTP/1.1 407 Proxy Authentication Required\r\n".to_owned();
                        for scheme in challenge {
                            answer.push_str(&format!("Proxy-Authenticate: {scheme}\r\n"));
                        }
                        answer.push_str("Content-Length: 0\r\n\r\n");
                        let _ = client.write_all(answer.as_bytes()).await;
                        return;
                    }
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else {
                        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                        return;
                    };
                    let _ = client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await;
                    counted.fetch_add(1, Ordering::SeqCst);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
            }
        });
        Self {
            address,
            tunnels,
            requests,
        }
    }

    fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// A TLS relay process for `SIM`: the process, its address and the CA's PEM.
fn tls_relay(dir: &Path) -> (Proc, String, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "proxy test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let relay_toml = dir.join("relay.toml");
    std::fs::write(
        &relay_toml,
        format!(
            "[[api_keys]]\nname = \"flows\"\nkey = \"{KEY}\"\nsystems = [\"*\"]\n\n\
             [[agent_tokens]]\nname = \"plant\"\ntoken = \"{TOKEN}\"\nsystems = [\"SIM\"]\n\n\
             [tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            dir.join("cert.pem").display(),
            dir.join("key.pem").display()
        ),
    )
    .unwrap();
    let address = format!("127.0.0.1:{}", free_port().unwrap());
    let relay = Proc::spawn_ready(
        Command::new(BIN)
            .args(["relay", "--config", relay_toml.to_str().unwrap()])
            .args(["--listen", &address])
            .env("SAPBRIDGE_LOG", "warn"),
        "listening on https://",
        Duration::from_secs(30),
    )
    .unwrap();
    (relay, address, ca.pem())
}

/// Writes `agent.toml` for the relay at `address`, with `extra` lines.
fn agent_toml(dir: &Path, name: &str, address: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "relay_url = \"wss://{address}/v1/agent/connect\"\ntoken = \"{TOKEN}\"\n\
             ca_file = \"{}\"\n{extra}\nagent_id = \"behind-proxy\"\ndata_dir = \"{}\"\n\
             backoff_initial_ms = 50\nbackoff_max_ms = 200\n\n\
             [[systems]]\nname = \"SIM\"\nallow_functions = [\"STFC_CONNECTION\"]\n\
             backend = {{ type = \"sim\", db_path = \"{}\" }}\n",
            dir.join("ca.pem").display(),
            dir.join("agent").display(),
            dir.join("sim.db").display(),
        ),
    )
    .unwrap();
    path
}

/// A command with no proxy variable but those in `env`.
fn with_env(program: &str, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(program);
    for name in PROXY_VARIABLES {
        command.env_remove(name);
    }
    command
        .envs(env.iter().copied())
        .env("SAPBRIDGE_LOG", "warn")
        .env_remove("SAPBRIDGE_AGENT_CONFIG");
    command
}

/// `sapbridge-agent doctor` with `env`: its report and whether it passed.
async fn doctor(config: &Path, env: &[(&str, &str)]) -> (String, bool) {
    let mut command = with_env(AGENT_BIN, env);
    command
        .args(["doctor", "--config", config.to_str().unwrap()])
        .stdin(Stdio::null());
    let output: Output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        output.status.success(),
    )
}

fn line<'a>(report: &'a str, what: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.contains(&format!("{what}:")))
        .unwrap_or_else(|| panic!("no {what} line in {report}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn https_proxy_carries_the_agent_and_no_proxy_or_none_bypass_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, address, ca_pem) = tls_relay(dir.path());
    let proxy = ConnectProxy::start(Some(("corp\\agent", "pw:4711@x")), &[]).await;
    // Credentials in the URL are percent-encoded, as in any URL.
    let https_proxy = format!("http://corp%5Cagent:pw%3A4711%40x@{}", proxy.address);
    let config = agent_toml(dir.path(), "agent.toml", &address, "");

    let _agent = Proc::spawn(
        with_env(AGENT_BIN, &[("HTTPS_PROXY", &https_proxy)])
            .args(["--config", config.to_str().unwrap()]),
    )
    .unwrap();
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let response = http
            .post(format!(
                "https://{address}/v1/systems/SIM/functions/STFC_CONNECTION"
            ))
            .bearer_auth(KEY)
            .header("prefer", "wait=5")
            .json(&serde_json::json!({"REQUTEXT": "via HTTPS_PROXY"}))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["result"]["ECHOTEXT"], "via HTTPS_PROXY");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no agent through HTTPS_PROXY: HTTP {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(proxy.tunnels(), 1, "the agent's one connection");

    // The doctor says where the proxy came from, and never the password.
    let (report, healthy) = doctor(&config, &[("HTTPS_PROXY", &https_proxy)]).await;
    assert!(healthy, "{report}");
    let proxy_line = line(&report, "proxy");
    assert!(
        proxy_line.contains(&proxy.address)
            && proxy_line.contains("from HTTPS_PROXY")
            && proxy_line.contains("with credentials"),
        "{proxy_line}"
    );
    assert!(!report.contains("4711"), "{report}");
    assert_eq!(proxy.tunnels(), 2, "the doctor went through the proxy too");

    // NO_PROXY covering the relay, and proxy_url = "none": direct.
    let before = proxy.requests();
    let (report, healthy) = doctor(
        &config,
        &[
            ("HTTPS_PROXY", &https_proxy),
            ("NO_PROXY", "localhost,127.0.0.0/8"),
        ],
    )
    .await;
    assert!(healthy && !report.contains("proxy:"), "{report}");
    let none = agent_toml(dir.path(), "none.toml", &address, "proxy_url = \"none\"");
    let (report, healthy) = doctor(&none, &[("HTTPS_PROXY", &https_proxy)]).await;
    assert!(healthy && !report.contains("proxy:"), "{report}");
    assert_eq!(proxy.requests(), before, "the proxy was asked nonetheless");

    // agent.toml's proxy_url wins over the environment.
    let elsewhere = ConnectProxy::start(None, &[]).await;
    let own = agent_toml(
        dir.path(),
        "own.toml",
        &address,
        &format!("proxy_url = \"http://{}\"", elsewhere.address),
    );
    let (report, healthy) = doctor(&own, &[("HTTPS_PROXY", &https_proxy)]).await;
    assert!(healthy, "{report}");
    assert_eq!((elsewhere.tunnels(), proxy.requests()), (1, before));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_doctor_names_a_proxy_authentication_scheme_sapbridge_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, address, _) = tls_relay(dir.path());
    let config = agent_toml(dir.path(), "agent.toml", &address, "");

    let windows = ConnectProxy::start(None, &["NTLM", "Negotiate"]).await;
    let url = format!("http://{}", windows.address);
    let (report, healthy) = doctor(&config, &[("HTTPS_PROXY", &url)]).await;
    assert!(!healthy, "{report}");
    let connection = line(&report, "connection");
    assert!(
        connection.contains("FAIL")
            && connection.contains("the proxy asks for NTLM or Negotiate")
            && connection.contains("does not support; use Basic or allow the relay's host"),
        "{connection}"
    );

    // A Basic proxy without credentials: it wants some.
    let basic = ConnectProxy::start(Some(("u", "p")), &[]).await;
    let url = format!("http://{}", basic.address);
    let (report, _) = doctor(&config, &[("HTTPS_PROXY", &url)]).await;
    let connection = line(&report, "connection");
    assert!(
        connection.contains("HTTP 407") && connection.contains("wants credentials"),
        "{connection}"
    );
}

/// A SOAP backend with `proxy_url` sends its requests to the proxy: here the
/// "proxy" is the SOAP endpoint itself, which answers absolute-form requests, and
/// the configured SAP host does not resolve — so a call succeeds only through it.
#[tokio::test]
async fn a_soap_backend_reaches_sap_through_its_proxy_url() {
    use sapbridge_sap::logon_guard::PasswordSource;
    use sapbridge_sap::soap::{SoapConfig, SoapSystem};
    use sapbridge_sap::{Parameters, SapSystem};

    let dir = tempfile::tempdir().unwrap();
    let sim = sapbridge_tests::simulator(dir.path(), Duration::ZERO).unwrap();
    let endpoint = sapbridge_tests::SoapSap::start(sim).await.unwrap();
    let config = |proxy_url: Option<String>| SoapConfig {
        base_url: "http://sap.invalid:8000/".into(),
        client: "001".into(),
        user: sapbridge_tests::SOAP_USER.into(),
        password: PasswordSource::Value(sapbridge_proto::Secret::new(
            sapbridge_tests::SOAP_PASSWORD,
        )),
        timeout: Duration::from_secs(10),
        ca_file: None,
        proxy_url,
    };
    let mut request = Parameters::new();
    request.insert("REQUTEXT".into(), serde_json::json!("through the proxy"));

    let proxied = SoapSystem::new(config(Some(endpoint.url()))).unwrap();
    let mut session = proxied.connect().await.expect("logon through the proxy");
    let answer = session.call("STFC_CONNECTION", &request).await.unwrap();
    assert_eq!(answer["ECHOTEXT"], "through the proxy");

    let direct = SoapSystem::new(config(None)).unwrap();
    let failed = match direct.connect().await {
        Ok(mut session) => session.call("STFC_CONNECTION", &request).await.err(),
        Err(error) => Some(error),
    };
    assert!(failed.is_some(), "sap.invalid answered without the proxy");
}

/// A pass-through backend with `[systems.http] proxy_url` is reached through a
/// `CONNECT` tunnel of that proxy.
#[tokio::test(flavor = "multi_thread")]
async fn a_passthrough_backend_is_reached_through_its_proxy_url() {
    use sapbridge_tests::{API_KEY, Client, TestAgent, TestRelay, simulator};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/api/hello",
        axum::routing::get(|| async { axum::Json(serde_json::json!({"from": "backend"})) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let proxy = ConnectProxy::start(None, &[]).await;

    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(serde_json::Value::Null).await.unwrap();
    let http = serde_json::json!({
        "base_url": format!("http://{backend}/"),
        "allow_paths": ["/api"],
        "proxy_url": format!("http://{}", proxy.address),
    });
    let sim = simulator(dir.path(), Duration::ZERO).unwrap();
    let agent =
        TestAgent::start_with_http(&relay, "agent-1", dir.path(), sim, &["*"], 2, http).unwrap();
    let client = Client::new(&relay, Some(API_KEY));
    client.wait_agents("SIM", 1).await.unwrap();
    let reply = client.get("/v1/systems/SIM/http/api/hello").await.unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["from"], "backend");
    assert_eq!(
        proxy.tunnels(),
        1,
        "the backend was reached around the proxy"
    );
    agent.stop().await.unwrap();
    relay.stop().await.unwrap();
}
