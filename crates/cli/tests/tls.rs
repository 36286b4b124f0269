//! TLS as an operator runs it, with processes: `sapbridge relay --tls-cert
//! --tls-key` serves `https://` and `wss://`; `sapbridge keys pin` prints the pin
//! that the agent's `relay_spki_sha256` takes; a `sapbridge-agent` process with it
//! serves calls; `kill -HUP` with a renewed certificate (new key) makes new
//! handshakes get it while the agent's connection carries on; and `doctor` with
//! the old pin fails, naming the new key.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use sapbridge_tests::{Proc, free_port};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

const BIN: &str = env!("CARGO_BIN_EXE_sapbridge");
const AGENT_BIN: &str = env!("CARGO_BIN_EXE_sapbridge-agent");
const KEY: &str = "tls-key-0123456789abcdef";
const TOKEN: &str = "tls-token-0123456789abcdef";

/// Writes a new certificate for 127.0.0.1 (fresh key) as `cert.pem`/`key.pem`.
fn issue(ca: &CertifiedIssuer<'static, KeyPair>, dir: &Path) -> CertificateDer<'static> {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    for (name, text) in [("key.pem", key.serialize_pem()), ("cert.pem", cert.pem())] {
        let fresh = dir.join(format!("{name}.new"));
        std::fs::write(&fresh, text).unwrap();
        std::fs::rename(&fresh, dir.join(name)).unwrap();
    }
    cert.der().clone()
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

/// The `relay_spki_sha256 = [...]` line `sapbridge keys pin` prints for `cert`.
fn pin_line(cert: &Path) -> String {
    let output = run(BIN, &["keys", "pin", cert.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    text.lines()
        .find(|l| l.starts_with("relay_spki_sha256 = [\"sha256/"))
        .unwrap_or_else(|| panic!("no pin line in {text}"))
        .to_owned()
}

/// The certificate a new handshake gets.
async fn presented(address: &str, ca: &CertificateDer<'static>) -> CertificateDer<'static> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let stream = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_relay_process_reloads_on_sighup_and_a_pinned_agent_serves_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let first = issue(&ca, dir.path());
    let cert_file = dir.path().join("cert.pem");
    let first_pin = pin_line(&cert_file);

    let relay_toml = dir.path().join("relay.toml");
    std::fs::write(
        &relay_toml,
        format!(
            "[[api_keys]]\nname = \"flows\"\nkey = \"{KEY}\"\nsystems = [\"*\"]\n\n\
             [[agent_tokens]]\nname = \"plant\"\ntoken = \"{TOKEN}\"\nsystems = [\"SIM\"]\n"
        ),
    )
    .unwrap();
    let address = format!("127.0.0.1:{}", free_port().unwrap());
    let relay = Proc::spawn_ready(
        Command::new(BIN)
            .args(["relay", "--config", relay_toml.to_str().unwrap()])
            .args(["--listen", &address])
            .args(["--tls-cert", cert_file.to_str().unwrap()])
            .args(["--tls-key", dir.path().join("key.pem").to_str().unwrap()])
            .env("SAPBRIDGE_LOG", "warn"),
        "listening on https://",
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(presented(&address, ca.der()).await, first);

    let agent_toml = dir.path().join("agent.toml");
    let agent_config = |pin: &str| {
        format!(
            "relay_url = \"wss://{address}/v1/agent/connect\"\ntoken = \"{TOKEN}\"\n\
             ca_file = \"{}\"\n{pin}\nagent_id = \"pinned\"\ndata_dir = \"{}\"\n\
             backoff_initial_ms = 50\nbackoff_max_ms = 200\n\n\
             [[systems]]\nname = \"SIM\"\nallow_functions = [\"STFC_CONNECTION\"]\n\
             backend = {{ type = \"sim\", db_path = \"{}\" }}\n",
            ca_file.display(),
            dir.path().join("agent").display(),
            dir.path().join("sim.db").display(),
        )
    };
    std::fs::write(&agent_toml, agent_config(&first_pin)).unwrap();
    let _agent = Proc::spawn(
        Command::new(AGENT_BIN)
            .args(["--config", agent_toml.to_str().unwrap()])
            .env("SAPBRIDGE_LOG", "warn"),
    )
    .unwrap();

    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let call = |text: &'static str| {
        let (http, address) = (http.clone(), address.clone());
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let response = http
                    .post(format!(
                        "https://{address}/v1/systems/SIM/functions/STFC_CONNECTION"
                    ))
                    .bearer_auth(KEY)
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
                    "no pinned agent over wss://: HTTP {}",
                    response.status()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(call("pinned").await, "pinned");

    // A renewed certificate with a new key, and SIGHUP.
    let second = issue(&ca, dir.path());
    let hup = Command::new("kill")
        .args(["-HUP", &relay.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while presented(&address, ca.der()).await != second {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay never presented the renewed certificate"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The agent's connection, pinned to the old key, still serves.
    assert_eq!(call("after the renewal").await, "after the renewal");

    // A new connection with the old pin is refused, and the doctor names the new key.
    let new_pin = pin_line(&cert_file);
    let seen = new_pin.split('"').nth(1).expect("a quoted pin").to_owned();
    let output = tokio::task::spawn_blocking({
        let agent_toml = agent_toml.clone();
        move || {
            run(
                AGENT_BIN,
                &["doctor", "--config", agent_toml.to_str().unwrap()],
            )
        }
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(!output.status.success(), "{report}");
    let connection = report
        .lines()
        .find(|l| l.contains("connection:"))
        .unwrap_or_else(|| panic!("no connection line in {report}"));
    assert!(
        connection.contains("FAIL") && connection.contains(&seen),
        "{connection}"
    );
    std::fs::write(&agent_toml, agent_config(&new_pin)).unwrap();
    let output = tokio::task::spawn_blocking({
        let agent_toml = agent_toml.clone();
        move || {
            run(
                AGENT_BIN,
                &["doctor", "--config", agent_toml.to_str().unwrap()],
            )
        }
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{report}");
    assert!(report.contains("relay_spki_sha256"), "{report}");
}
