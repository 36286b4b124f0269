//! The doctor's relay checks: token, TLS configuration, the connection (with what
//! a failure most likely means: nothing listening, plain HTTP and TLS mixed up, a
//! certificate not trusted, a path that is not the agent endpoint), and whether the
//! relay accepts the token for the configured systems.
//!
//! The token is offered in a hello with no credits under a doctor's agent id, so
//! the relay sends no work and takes the session for no running agent's; the
//! doctor then says goodbye.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sapbridge_proto::{
    AgentMessage, CloseReason, HANDSHAKE_TIMEOUT_SECS, PROTOCOL_VERSION, RelayMessage,
    decode_relay_message, encode_agent_message,
};
use tokio_tungstenite::tungstenite::Message;

use super::{Section, failed, ok, skipped};
use crate::config::AgentConfig;
use crate::config::TOKEN_ADVICE;
use crate::tls;
use crate::transport::{Proxy, RelaySocket, dial};

pub(super) async fn examine(config: &AgentConfig) -> Section {
    // Without its query, which may hold a reverse proxy's key.
    let url = config
        .relay_url
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut section = Section {
        title: format!("relay {url}"),
        checks: Vec::new(),
    };
    let token = match config.resolve_token() {
        Ok(token) => {
            section.checks.push(ok("agent token", "read"));
            token
        }
        Err(error) => {
            section
                .checks
                .push(failed("agent token", format!("{error}; {TOKEN_ADVICE}")));
            section.checks.push(skipped("connection", "no token"));
            return section;
        }
    };
    let secure = config.relay_url.starts_with("wss:");
    let tls = if secure || config.ca_file.is_some() {
        match tls::relay_client_config(config) {
            Ok(tls) => {
                let roots = match &config.ca_file {
                    Some(path) => format!("system roots and {}", path.display()),
                    None => "system roots".to_owned(),
                };
                let mut detail = format!("trusting the {roots}");
                if let Some(cert) = &config.client_cert_file {
                    detail.push_str(&format!(
                        "; presenting the client certificate {}",
                        cert.display()
                    ));
                }
                match config.relay_spki_sha256.len() {
                    0 => {}
                    1 => {
                        detail.push_str("; the relay's key must match the pin in relay_spki_sha256")
                    }
                    n => detail.push_str(&format!(
                        "; the relay's key must match one of the {n} pins in relay_spki_sha256"
                    )),
                }
                section.checks.push(ok("TLS", detail));
                Some(tls)
            }
            Err(error) => {
                section.checks.push(failed("TLS", error.to_string()));
                section
                    .checks
                    .push(skipped("connection", "no TLS configuration"));
                return section;
            }
        }
    } else {
        None
    };
    let proxy = match Proxy::from_config(config) {
        Ok(proxy) => {
            if let Some(proxy) = &proxy {
                let auth = if proxy.authorization.is_some() {
                    ", with credentials"
                } else {
                    ""
                };
                let from = match proxy.source {
                    "proxy_url" => String::new(),
                    variable => format!(" (from {variable})"),
                };
                section.checks.push(ok(
                    "proxy",
                    format!("CONNECT through {}{from}{auth}", proxy.address),
                ));
            }
            proxy
        }
        Err(error) => {
            section.checks.push(failed("proxy", error));
            section
                .checks
                .push(skipped("connection", "no proxy credentials"));
            return section;
        }
    };
    let tls = if secure { tls } else { None };
    let socket = match dial(&config.relay_url, &token, tls, proxy.as_ref()).await {
        Ok(socket) => {
            section.checks.push(ok(
                "connection",
                if secure {
                    "WebSocket over TLS opened"
                } else {
                    "WebSocket opened (plain, no TLS: only for a relay on this machine or \
                     behind a TLS proxy on a trusted network)"
                },
            ));
            socket
        }
        Err(error) => {
            section
                .checks
                .push(failed("connection", error.advice(secure)));
            return section;
        }
    };
    section.checks.push(offer_token(socket, config).await);
    section
}

/// Offers the token in a hello with no credits and reads the answer.
async fn offer_token(mut socket: RelaySocket, config: &AgentConfig) -> super::Check {
    let systems: Vec<String> = config.systems.iter().map(|s| s.name.clone()).collect();
    let hello = AgentMessage::Hello {
        reconnects: 0,
        protocol: PROTOCOL_VERSION,
        agent_id: format!("{}-doctor", config.agent_id),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        systems: systems.clone(),
        credits: 0,
        capabilities: Vec::new(),
    };
    let what = "token and systems";
    if let Err(error) = socket
        .send(Message::text(encode_agent_message(&hello)))
        .await
    {
        return failed(what, format!("the relay closed the connection: {error}"));
    }
    let answer = tokio::time::timeout(
        Duration::from_secs(HANDSHAKE_TIMEOUT_SECS),
        first_message(&mut socket),
    )
    .await;
    let goodbye = AgentMessage::Close {
        reason: CloseReason::ShuttingDown,
    };
    let _ = socket
        .send(Message::text(encode_agent_message(&goodbye)))
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
    match answer {
        Ok(Ok(RelayMessage::Welcome { protocol, .. })) => ok(
            what,
            format!(
                "the relay accepts the token for {} (wire protocol {protocol})",
                systems.join(", ")
            ),
        ),
        Ok(Ok(RelayMessage::Close {
            reason: CloseReason::SystemNotAllowed { system },
        })) => failed(
            what,
            format!(
                "the relay's agent token does not allow system {system}: add it to the \
                 token's `systems` in relay.toml, or remove the system here"
            ),
        ),
        Ok(Ok(RelayMessage::Close { reason })) => {
            failed(what, format!("the relay closed the session: {reason}"))
        }
        Ok(Ok(other)) => failed(what, format!("unexpected first message: {other:?}")),
        Ok(Err(error)) => failed(what, error),
        Err(_) => failed(
            what,
            format!("no answer to the hello within {HANDSHAKE_TIMEOUT_SECS} s"),
        ),
    }
}

async fn first_message(socket: &mut RelaySocket) -> Result<RelayMessage, String> {
    loop {
        match socket.next().await {
            None => return Err("the relay closed the connection".into()),
            Some(Err(error)) => return Err(format!("the connection failed: {error}")),
            Some(Ok(Message::Text(text))) => {
                return decode_relay_message(text.as_bytes())
                    .map_err(|e| format!("the relay sent what is not its protocol: {e}"));
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(format!(
                    "the relay closed the connection{}",
                    frame.map_or(String::new(), |f| format!(": {}", f.reason))
                ));
            }
            Some(Ok(_)) => {}
        }
    }
}
