//! `sapbridge-agent doctor` / `sapbridge agent doctor` as an administrator runs
//! them. The relay: a token accepted, refused, or not allowed a system; a wrong
//! path; plain HTTP and TLS mixed up both ways; an untrusted certificate; nothing
//! listening; no token. The systems: the NW RFC stub library (found, logon,
//! functions), a wrong password (SAP's error, one logon, the functions skipped), a
//! missing library (named, with what to do), and the embedded simulator. The exit
//! code says whether anything failed; no secret appears.

#[path = "../../nwrfc/tests/fixtures/stub_library.rs"]
mod stub_library;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sapbridge_sap::sim::{SIM_PASSWORD, SIM_USER};
use sapbridge_tests::{Proc, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_sapbridge");
const AGENT_BIN: &str = env!("CARGO_BIN_EXE_sapbridge-agent");
const WRONG_PASSWORD: &str = "not-the-password-4711";
const TOKEN: &str = "doctor-token-0815";

/// A relay process on a known port whose token serves `systems`; its address.
fn relay(dir: &Path, systems: &[&str]) -> (Proc, String) {
    let systems: Vec<String> = systems.iter().map(|s| format!("{s:?}")).collect();
    relay_with(
        dir,
        &format!(
            "[[api_keys]]\nname = \"flows\"\nkey = \"doctor-key\"\nsystems = [\"*\"]\n\n\
             [[agent_tokens]]\nname = \"plant\"\ntoken = \"{TOKEN}\"\nsystems = [{}]\n",
            systems.join(", ")
        ),
    )
}

/// A relay process on a known port configured by `toml`; its address.
fn relay_with(dir: &Path, toml: &str) -> (Proc, String) {
    let path = dir.join("relay.toml");
    std::fs::write(&path, toml).unwrap();
    let address = format!("127.0.0.1:{}", free_port().unwrap());
    let proc = Proc::spawn_ready(
        Command::new(BIN)
            .args([
                "relay",
                "--config",
                path.to_str().unwrap(),
                "--listen",
                &address,
            ])
            .env("SAPBRIDGE_LOG", "warn"),
        "listening",
        Duration::from_secs(30),
    )
    .unwrap();
    (proc, address)
}

fn nwrfc_system(name: &str, library: &Path, db: &Path, password: &Path, allow: &str) -> String {
    format!(
        r#"
[[systems]]
name = "{name}"
allow_functions = [{allow}]
[systems.backend]
type = "nwrfc"
library = "{library}"
ashost = "{db}"
sysnr = "00"
client = "001"
user = "{SIM_USER}"
password_file = "{password}"
timeout_secs = 20
"#,
        library = library.display(),
        db = db.display(),
        password = password.display(),
    )
}

fn sim_system(dir: &Path, allow: &str) -> String {
    format!(
        r#"
[[systems]]
name = "SIM"
allow_functions = [{allow}]
backend = {{ type = "sim", db_path = "{sim}" }}
"#,
        sim = dir.join("sim.db").display()
    )
}

fn write_config(dir: &Path, file: &str, relay: &str, systems: &[String]) -> PathBuf {
    write_agent(
        dir,
        file,
        &format!("relay_url = \"{relay}\"\ntoken = \"{TOKEN}\"\n"),
        systems,
    )
}

fn write_agent(dir: &Path, file: &str, head: &str, systems: &[String]) -> PathBuf {
    let text = format!(
        "{head}agent_id = \"doctor\"\ndata_dir = \"{}\"\n{}",
        dir.join("agent").display(),
        systems.concat()
    );
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("SAPBRIDGE_LOG", "warn")
        .env_remove("SAPBRIDGE_AGENT_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs")
}

/// The report's line for `what` under `system` (`relay` for the relay's).
fn line<'a>(report: &'a str, system: &str, what: &str) -> &'a str {
    let header = if system == "relay" {
        "relay ".to_owned()
    } else {
        format!("system {system} (")
    };
    report
        .lines()
        .skip_while(|l| !l.starts_with(&header))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .find(|l| {
            l.trim_start()[4..]
                .trim_start()
                .starts_with(&format!("{what}:"))
        })
        .unwrap_or_else(|| panic!("no line `{what}` for {system} in:\n{report}"))
}

fn assert_mark(report: &str, system: &str, what: &str, mark: &str, detail: &str) {
    let l = line(report, system, what);
    assert!(
        l.trim_start().starts_with(mark) && l.contains(detail),
        "{system} {what}: expected `{mark}` with `{detail}`, got `{l}`\n{report}"
    );
}

#[test]
fn the_doctor_names_the_library_the_logon_and_each_function() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, address) = relay(dir.path(), &["RFC", "LOCKED", "GONE", "SIM"]);
    let relay_url = format!("ws://{address}/v1/agent/connect");
    let good = dir.path().join("good.password");
    let bad = dir.path().join("bad.password");
    std::fs::write(&good, format!("{SIM_PASSWORD}\n")).unwrap();
    std::fs::write(&bad, format!("{WRONG_PASSWORD}\n")).unwrap();
    let stub = stub_library::stub_library();
    let db = dir.path().join("rfc.db");
    let allow = r#""STFC_CONNECTION", "Z_NOT_THERE", "BAPI_CUSTOMER_*""#;
    let config = write_config(
        dir.path(),
        "agent.toml",
        &relay_url,
        &[
            nwrfc_system("RFC", stub, &db, &good, allow),
            nwrfc_system("LOCKED", stub, &db, &bad, allow),
            nwrfc_system(
                "GONE",
                &dir.path().join("no-sdk/libsapnwrfc.so"),
                &db,
                &good,
                allow,
            ),
            sim_system(dir.path(), r#""RFC_READ_TABLE", "Z_NOT_THERE""#),
        ],
    );

    let output = run(AGENT_BIN, &["doctor", "--config", config.to_str().unwrap()]);
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{report}\n{stderr}");
    println!("{report}");

    // The relay takes the token for every system.
    assert_mark(&report, "relay", "agent token", "ok", "read");
    assert_mark(&report, "relay", "connection", "ok", "WebSocket opened");
    assert_mark(
        &report,
        "relay",
        "token and systems",
        "ok",
        "accepts the token for RFC, LOCKED, GONE, SIM",
    );
    // The stub: library and version, logon with the release, each function.
    assert_mark(&report, "RFC", "NW RFC library", "ok", "patch level");
    assert_mark(
        &report,
        "RFC",
        "NW RFC library",
        "ok",
        &stub.display().to_string(),
    );
    assert_mark(&report, "RFC", "logon", "ok", "release");
    assert_mark(&report, "RFC", "function STFC_CONNECTION", "ok", "exists");
    assert_mark(
        &report,
        "RFC",
        "function Z_NOT_THERE",
        "FAIL",
        "does not exist",
    );
    assert_mark(
        &report,
        "RFC",
        "function BAPI_CUSTOMER_*",
        "skip",
        "pattern",
    );
    // A wrong password: SAP's own error, nothing else tried.
    assert_mark(&report, "LOCKED", "logon", "FAIL", "LOGON_FAILURE");
    assert_mark(
        &report,
        "LOCKED",
        "function STFC_CONNECTION",
        "skip",
        "no logon",
    );
    // No library: named, with what to do.
    assert_mark(&report, "GONE", "backend", "FAIL", "no-sdk/libsapnwrfc.so");
    assert_mark(
        &report,
        "GONE",
        "backend",
        "FAIL",
        "install SAP's NW RFC SDK",
    );
    // The embedded simulator.
    assert_mark(&report, "SIM", "logon", "ok", "RFC_PING answered");
    assert_mark(&report, "SIM", "function RFC_READ_TABLE", "ok", "exists");
    assert_mark(
        &report,
        "SIM",
        "function Z_NOT_THERE",
        "FAIL",
        "does not exist",
    );
    assert!(report.ends_with("4 check(s) failed\n"), "{report}");
    for text in [&report, &stderr] {
        assert!(
            !text.contains(WRONG_PASSWORD),
            "the password leaked:\n{text}"
        );
        assert!(!text.contains(SIM_PASSWORD), "the password leaked:\n{text}");
    }

    // A healthy configuration passes, through both binaries.
    let healthy = write_config(
        dir.path(),
        "healthy.toml",
        &relay_url,
        &[
            nwrfc_system("RFC", stub, &db, &good, r#""STFC_CONNECTION""#),
            sim_system(dir.path(), r#""STFC_CONNECTION", "BAPI_*""#),
        ],
    );
    for (program, args) in [
        (AGENT_BIN, vec!["doctor", "--config"]),
        (BIN, vec!["agent", "doctor", "--config"]),
    ] {
        let mut args = args;
        args.push(healthy.to_str().unwrap());
        let output = run(program, &args);
        let report = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{program}: {report}");
        assert!(report.ends_with("all checks passed\n"), "{report}");
    }
}

/// A TLS server on loopback with a self-signed certificate: it completes TLS
/// handshakes and hangs up; for clients that dial it as the relay.
async fn tls_server() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(socket).await;
            });
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread")]
async fn the_doctor_says_what_is_wrong_with_the_relay_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, address) = relay(dir.path(), &["SIM"]);
    let tls = tls_server().await;
    let closed = format!("127.0.0.1:{}", free_port().unwrap());
    let sim = [sim_system(dir.path(), r#""STFC_CONNECTION""#)];
    let other = [format!(
        "[[systems]]\nname = \"OTHER\"\nallow_functions = []\nbackend = {{ type = \"sim\", db_path = \"{}\" }}\n",
        dir.path().join("other.db").display()
    )];
    let endpoint = format!("ws://{address}/v1/agent/connect");
    let cases: Vec<(&str, PathBuf, &str, &str)> = vec![
        (
            "a wrong path",
            write_config(
                dir.path(),
                "path.toml",
                &format!("ws://{address}/v1/agent"),
                &sim,
            ),
            "connection",
            "must end with /v1/agent/connect",
        ),
        (
            "a token the relay does not know",
            write_agent(
                dir.path(),
                "token.toml",
                &format!("relay_url = \"{endpoint}\"\ntoken = \"not-the-token\"\n"),
                &sim,
            ),
            "connection",
            "rejected the agent token (HTTP 401)",
        ),
        (
            "a system the token may not serve",
            write_config(dir.path(), "system.toml", &endpoint, &other),
            "token and systems",
            "does not allow system OTHER",
        ),
        (
            "wss:// to a relay speaking plain HTTP",
            write_config(
                dir.path(),
                "wss.toml",
                &format!("wss://{address}/v1/agent/connect"),
                &sim,
            ),
            "connection",
            "use ws://",
        ),
        (
            "ws:// to a relay speaking TLS",
            write_config(
                dir.path(),
                "ws.toml",
                &format!("ws://{tls}/v1/agent/connect"),
                &sim,
            ),
            "connection",
            "use wss://",
        ),
        (
            "an untrusted certificate",
            write_config(
                dir.path(),
                "cert.toml",
                &format!("wss://{tls}/v1/agent/connect"),
                &sim,
            ),
            "connection",
            "set `ca_file`",
        ),
        (
            "nothing listening",
            write_config(
                dir.path(),
                "closed.toml",
                &format!("ws://{closed}/v1/agent/connect"),
                &sim,
            ),
            "connection",
            "nothing listens",
        ),
        (
            "a token file that is missing",
            write_agent(
                dir.path(),
                "missing.toml",
                &format!(
                    "relay_url = \"{endpoint}\"\ntoken_file = \"{}\"\n",
                    dir.path().join("no-such-token").display()
                ),
                &sim,
            ),
            "agent token",
            "SAPBRIDGE_AGENT_TOKEN",
        ),
    ];
    for (label, config, what, hint) in cases {
        let output = tokio::task::spawn_blocking(move || {
            run(AGENT_BIN, &["doctor", "--config", config.to_str().unwrap()])
        })
        .await
        .unwrap();
        let report = String::from_utf8_lossy(&output.stdout).into_owned();
        assert_eq!(output.status.code(), Some(1), "{label}:\n{report}");
        assert!(
            line(&report, "relay", what).contains("FAIL")
                && line(&report, "relay", what).contains(hint),
            "{label}: expected `{hint}` in `{what}`:\n{report}"
        );
        assert!(
            !report.contains(TOKEN) && !report.contains("not-the-token"),
            "{report}"
        );
        println!("{label}: {}", line(&report, "relay", what).trim());
    }
}

/// The running agent's log says the same as the doctor, naming the relay URL:
/// here, that nothing listens there.
#[test]
fn the_running_agent_logs_what_a_failed_connection_means() {
    let dir = tempfile::tempdir().unwrap();
    let closed = format!("ws://127.0.0.1:{}/v1/agent/connect", free_port().unwrap());
    let config = write_config(
        dir.path(),
        "agent.toml",
        &closed,
        &[sim_system(dir.path(), r#""STFC_CONNECTION""#)],
    );
    let mut agent = Proc(
        Command::new(AGENT_BIN)
            .args(["--config", config.to_str().unwrap()])
            .env("SAPBRIDGE_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = agent.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .expect("the agent logs why it cannot connect");
        if line.contains("nothing listens") {
            assert!(line.contains(&closed), "the URL is named: {line}");
            assert!(!line.contains(TOKEN), "{line}");
            break;
        }
    }
}

/// `sapbridge keys new` output: the secret (shown once) and the TOML entry.
fn new_secret(args: &[&str]) -> (String, String) {
    let output = run(BIN, &[&["keys", "new"], args].concat());
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let secret = text.lines().nth(1).unwrap().to_owned();
    let entry = text
        .split_once("# For relay.toml (the relay keeps only the hash):\n")
        .unwrap()
        .1
        .to_owned();
    assert!(
        !entry.contains(&secret),
        "only the hash goes into relay.toml"
    );
    (secret, entry)
}

/// A key and a token made by `sapbridge keys new` work in a relay that holds
/// only their hashes: the key reads `/v1/systems`, the agent's doctor finds the
/// token accepted; a name that TOML would need escaped is refused.
#[tokio::test(flavor = "multi_thread")]
async fn keys_new_makes_secrets_the_relay_takes_by_their_hash() {
    let dir = tempfile::tempdir().unwrap();
    let (key, key_entry) = new_secret(&["--name", "flows", "--system", "SIM"]);
    let (token, token_entry) = new_secret(&["--token", "--name", "plant", "--system", "SIM"]);
    assert!(
        key.starts_with("sbk_") && token.starts_with("sbt_"),
        "{key} {token}"
    );
    assert_ne!(new_secret(&[]).0, key, "random each time");
    let (_relay, address) = relay_with(dir.path(), &format!("{key_entry}\n{token_entry}"));
    let http = reqwest::Client::new();
    for (secret, status) in [(key.as_str(), 200), ("sbk_wrong", 401)] {
        let answer = http
            .get(format!("http://{address}/v1/systems"))
            .bearer_auth(secret)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), status);
    }
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let config = write_agent(
        dir.path(),
        "agent.toml",
        &format!(
            "relay_url = \"ws://{address}/v1/agent/connect\"\ntoken_file = \"{}\"\n",
            token_file.display()
        ),
        &[sim_system(dir.path(), r#""STFC_CONNECTION""#)],
    );
    let output = tokio::task::spawn_blocking(move || {
        run(AGENT_BIN, &["doctor", "--config", config.to_str().unwrap()])
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_mark(
        &report,
        "relay",
        "token and systems",
        "ok",
        "accepts the token for SIM",
    );

    let refused = run(BIN, &["keys", "new", "--name", "a\"b"]);
    assert_eq!(refused.status.code(), Some(64), "{refused:?}");
}

/// A `CONNECT` proxy on loopback that wants Basic `user:password`: it counts the
/// tunnels it opened, and [`ConnectProxy::cut`] drops those open.
struct ConnectProxy {
    address: String,
    tunnels: Arc<std::sync::atomic::AtomicUsize>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl ConnectProxy {
    async fn start(user: &str, password: &str) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let expected = format!(
            "Proxy-Authorization: Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("{user}:{password}")
            )
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let tunnels = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let counted = Arc::clone(&tunnels);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let expected = expected.clone();
                let counted = Arc::clone(&counted);
                let mut cuts = cuts.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    while !head.ends_with(b"\r\n\r\n") {
                        let Ok(byte) = client.read_u8().await else {
                            return;
                        };
                        head.push(byte);
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let Some(target) = head
                        .strip_prefix("CONNECT ")
                        .and_then(|rest| rest.split_whitespace().next())
                    else {
                        let _ = client
                            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                            .await;
                        return;
                    };
                    if !head.lines().any(|l| l == expected) {
                        let _ = client
                            .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
                            .await;
                        return;
                    }
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else {
                        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                        return;
                    };
                    let _ = client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await;
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    cuts.mark_unchanged();
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Self {
            address,
            tunnels,
            cut,
        }
    }

    fn tunnels(&self) -> usize {
        self.tunnels.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Drops every open tunnel, as a proxy restarting does.
    fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

/// An agent behind an authenticating `CONNECT` proxy serves calls, comes back
/// through the proxy when it drops the tunnel, and the doctor says when the proxy
/// refuses its credentials.
#[tokio::test(flavor = "multi_thread")]
async fn the_agent_reaches_the_relay_through_an_authenticating_connect_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, address) = relay(dir.path(), &["SIM"]);
    let proxy = ConnectProxy::start("corp", "proxy-pw-4711").await;
    let password = dir.path().join("proxy.password");
    std::fs::write(&password, "proxy-pw-4711\n").unwrap();
    let head = |password: &Path| {
        format!(
            "relay_url = \"ws://{address}/v1/agent/connect\"\ntoken = \"{TOKEN}\"\n\
             proxy_url = \"http://{}\"\nproxy_user = \"corp\"\nproxy_password_file = \"{}\"\n\
             backoff_initial_ms = 50\nbackoff_max_ms = 200\n",
            proxy.address,
            password.display()
        )
    };
    let sim = [sim_system(dir.path(), r#""STFC_CONNECTION""#)];
    let config = write_agent(dir.path(), "agent.toml", &head(&password), &sim);
    let _agent = Proc(
        Command::new(AGENT_BIN)
            .args(["--config", config.to_str().unwrap()])
            .env("SAPBRIDGE_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    let call = |text: &'static str| {
        let http = http.clone();
        let address = address.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let response = http
                    .post(format!(
                        "http://{address}/v1/systems/SIM/functions/STFC_CONNECTION"
                    ))
                    .bearer_auth("doctor-key")
                    .header("prefer", "wait=5")
                    .json(&serde_json::json!({"REQUTEXT": text}))
                    .send()
                    .await
                    .unwrap();
                if response.status() == 200 {
                    let body: serde_json::Value = response.json().await.unwrap();
                    return body["result"]["ECHOTEXT"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no agent through the proxy"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(call("through the proxy").await, "through the proxy");
    assert_eq!(proxy.tunnels(), 1);
    proxy.cut();
    assert_eq!(call("after the cut").await, "after the cut");
    assert!(
        proxy.tunnels() >= 2,
        "the agent came back through the proxy"
    );

    // The doctor: through the proxy, and what a wrong proxy password means.
    let output = tokio::task::spawn_blocking({
        let config = config.clone();
        move || run(AGENT_BIN, &["doctor", "--config", config.to_str().unwrap()])
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_mark(&report, "relay", "proxy", "ok", "with credentials");
    assert_mark(
        &report,
        "relay",
        "token and systems",
        "ok",
        "accepts the token for SIM",
    );
    let wrong = dir.path().join("wrong.password");
    std::fs::write(&wrong, "not-it\n").unwrap();
    let bad = write_agent(dir.path(), "bad.toml", &head(&wrong), &sim);
    let output = tokio::task::spawn_blocking(move || {
        run(AGENT_BIN, &["doctor", "--config", bad.to_str().unwrap()])
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_mark(&report, "relay", "connection", "FAIL", "HTTP 407");
    assert!(
        !report.contains("proxy-pw-4711") && !report.contains("not-it"),
        "{report}"
    );
}
