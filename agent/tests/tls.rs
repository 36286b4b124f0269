//! The agent dials a `wss://` relay whose certificate is issued by a private CA
//! given as `ca_file`; without the CA file the dial fails and is retried. The same
//! for an `https://` pass-through backend and its own `ca_file`.

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use sapbridge_agent::HttpConfig;
use sapbridge_proto::{
    AgentMessage, BodyChunk, HttpFailureKind, HttpRequestHead, Outcome, RelayMessage,
    decode_agent_message,
};
use support::{Agent, FakeRelay, FakeSap, config, unit, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_tungstenite::tungstenite::Message;

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

/// [`private_ca_and_acceptor`] with the CA written to `ca.pem` in a fresh
/// directory: `(directory, CA file, acceptor)`.
fn private_ca_file(name: &str) -> anyhow::Result<(PathBuf, PathBuf, TlsAcceptor)> {
    let (ca_pem, acceptor) = private_ca_and_acceptor()?;
    let dir = support::temp_dir(name);
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_pem)?;
    Ok((dir, ca_file, acceptor))
}

#[tokio::test]
async fn wss_with_an_extra_ca_file() -> anyhow::Result<()> {
    let (dir, ca_file, acceptor) = private_ca_file("tls")?;

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

/// An HTTPS backend on 127.0.0.1 answering every request `200 over tls`; returns
/// its base URL.
async fn https_backend(acceptor: TlsAcceptor) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://127.0.0.1:{}/", listener.local_addr()?.port());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if tls.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nover tls";
                let _ = tls.write_all(answer).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Ok(url)
}

/// Sends `GET /hello` as pass-through stream 1; the response head's status and the
/// body, or the failure the agent reported.
async fn get_hello(
    conn: &mut support::Conn,
) -> anyhow::Result<Result<(u16, Vec<u8>), (HttpFailureKind, String)>> {
    conn.send(RelayMessage::HttpRequest {
        request: HttpRequestHead {
            stream_id: 1,
            system: "SIM".into(),
            method: "GET".into(),
            path: "/hello".into(),
            query: None,
            headers: vec![],
            body: false,
            timeout_ms: 10_000,
        },
    })
    .await?;
    let mut status = None;
    let mut body = Vec::new();
    loop {
        match within("a pass-through frame", conn.ws.next()).await? {
            Some(Ok(Message::Text(text))) => match decode_agent_message(text.as_bytes())? {
                AgentMessage::HttpResponse { response } => status = Some(response.status),
                AgentMessage::HttpError { error, .. } => {
                    return Ok(Err((error.kind, error.detail)));
                }
                _ => {}
            },
            Some(Ok(Message::Binary(frame))) => {
                let chunk = BodyChunk::decode(Bytes::from(frame.to_vec()))?;
                body.extend_from_slice(&chunk.payload);
                if chunk.last {
                    let status = status.ok_or_else(|| anyhow::anyhow!("body before head"))?;
                    return Ok(Ok((status, body)));
                }
            }
            Some(Ok(_)) => {}
            other => anyhow::bail!("the agent's socket ended: {other:?}"),
        }
    }
}

#[tokio::test]
async fn https_pass_through_with_the_backends_ca_file() -> anyhow::Result<()> {
    let (dir, ca_file, acceptor) = private_ca_file("https")?;
    let backend = https_backend(acceptor).await?;

    let mut relay = FakeRelay::start().await?;
    for trusted in [true, false] {
        let mut config = config(&relay.url, &["STFC_CONNECTION"], 1);
        let mut http = HttpConfig::new(backend.clone(), vec!["/".into()]);
        http.ca_file = trusted.then(|| ca_file.clone());
        config.systems[0].http = Some(http);
        let agent = Agent::start(config, &FakeSap::default());
        let mut conn = relay.conn().await?;
        conn.handshake(15).await?;
        let answer = get_hello(&mut conn).await?;
        if trusted {
            assert_eq!(answer, Ok((200, b"over tls".to_vec())));
        } else {
            // The system's roots do not know the private CA: the backend is not
            // trusted, and the failure says so.
            let (kind, detail) = answer.expect_err("an untrusted backend must fail");
            assert_eq!(kind, HttpFailureKind::Unreachable);
            assert!(detail.contains("certificate"), "{detail}");
        }
        agent.shutdown.cancel();
        agent.join().await?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
