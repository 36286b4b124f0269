//! The agent dials a `wss://` relay whose certificate is issued by a private CA
//! given as `ca_file`; without the CA file the dial fails and is retried.

mod support;

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use sapbridge_proto::{Outcome, RelayMessage};
use support::{Agent, FakeRelay, FakeSap, config, unit};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A private CA (PEM) and a TLS acceptor whose certificate for 127.0.0.1 it signed.
fn private_ca_and_acceptor() -> anyhow::Result<(String, TlsAcceptor)> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let leaf_key = KeyPair::generate()?;
    let leaf_params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    let leaf = leaf_params.signed_by(&leaf_key, &ca)?;

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let chain = vec![CertificateDer::from(leaf.der().to_vec())];
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok((ca.pem(), TlsAcceptor::from(Arc::new(server))))
}

#[tokio::test]
async fn wss_with_an_extra_ca_file() -> anyhow::Result<()> {
    let (ca_pem, acceptor) = private_ca_and_acceptor()?;
    let dir = support::temp_dir("tls");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_pem)?;

    let mut relay = FakeRelay::start_with(Some(acceptor)).await?;
    assert!(relay.url.starts_with("wss://"));
    let mut config = config(&relay.url, &["STFC_CONNECTION"], 1);
    config.ca_file = Some(ca_file);
    let agent = Agent::start(config, &FakeSap::default());

    let mut conn = relay.conn().await?;
    conn.handshake(15).await?;
    conn.send(RelayMessage::Work {
        unit: unit("c_tls", "STFC_CONNECTION"),
    })
    .await?;
    let (call_id, _, outcome) = conn.outcome().await?;
    assert_eq!(call_id, "c_tls");
    assert!(matches!(outcome, Outcome::Completed { .. }));
    agent.shutdown.cancel();
    agent.join().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test]
async fn wss_without_the_ca_is_not_trusted() -> anyhow::Result<()> {
    let (_, acceptor) = private_ca_and_acceptor()?;
    let relay = FakeRelay::start_with(Some(acceptor)).await?;
    let agent = Agent::start(config(&relay.url, &["*"], 1), &FakeSap::default());
    // The TLS handshake fails on the agent's side, so no connection ever arrives;
    // give it a few backoff rounds, then it must still stop cleanly.
    let mut relay = relay;
    let nothing = tokio::time::timeout(std::time::Duration::from_millis(500), relay.conn()).await;
    assert!(
        nothing.is_err(),
        "an untrusted relay must not get a session"
    );
    agent.shutdown.cancel();
    agent.join().await
}
