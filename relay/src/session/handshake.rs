//! The first exchange on an agent socket: the agent's hello, checked against the
//! protocol versions this relay speaks (its own and the one before:
//! [`OLDEST_AGENT_PROTOCOL`]) and the systems its token may serve, answered with a
//! welcome in the agent's version or a close that says why.

use std::time::Duration;

use axum::extract::ws::Message;
use futures_util::{Sink, Stream};
use sapbridge_proto::{
    AgentMessage, CloseReason, HANDSHAKE_TIMEOUT_SECS, OLDEST_AGENT_PROTOCOL, PROTOCOL_VERSION,
    RelayMessage, SystemCapabilities,
};

use super::frames::{self, Incoming};
use crate::agents::Hello;
use crate::auth::Scope;

/// The handshake's end: a welcomed agent, or a closed socket.
#[derive(Debug)]
pub(crate) enum Handshake {
    /// The agent was welcomed.
    Welcomed(Hello),
    /// The socket was closed, with a reason when the relay closed it.
    Refused(Option<CloseReason>),
}

/// Runs the handshake: waits up to [`HANDSHAKE_TIMEOUT_SECS`] for the hello, checks it,
/// sends the welcome or closes the socket.
pub(crate) async fn run<S, R, E>(
    sink: &mut S,
    stream: &mut R,
    allowed: &Scope,
    session_id: &str,
    heartbeat: Duration,
) -> Handshake
where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
    E: std::fmt::Display,
{
    let first = tokio::time::timeout(Duration::from_secs(HANDSHAKE_TIMEOUT_SECS), async {
        loop {
            match frames::read(stream).await {
                Incoming::Control => continue,
                other => return other,
            }
        }
    })
    .await;
    let refusal = match first {
        Err(_elapsed) => CloseReason::ProtocolError {
            detail: format!("no hello within {HANDSHAKE_TIMEOUT_SECS} s"),
        },
        Ok(Incoming::Closed) => return Handshake::Refused(None),
        Ok(Incoming::Bad(reason)) => reason,
        // Control frames are skipped by the read loop above.
        Ok(Incoming::Control) => CloseReason::ProtocolError {
            detail: "unexpected control frame".into(),
        },
        Ok(Incoming::Chunk(_)) => CloseReason::ProtocolError {
            detail: "expected hello, got a body chunk".into(),
        },
        Ok(Incoming::Message(message)) => match *message {
            AgentMessage::Hello {
                protocol,
                agent_id,
                agent_version,
                systems,
                credits,
                capabilities,
                reconnects,
            } => match check(protocol, &systems, &capabilities, allowed) {
                Some(reason) => reason,
                None => {
                    let welcome = RelayMessage::Welcome {
                        protocol,
                        session_id: session_id.to_owned(),
                        heartbeat_secs: heartbeat.as_secs().max(1),
                        // Protocol 1 agents get the welcome they know.
                        features: if protocol > 1 {
                            vec![sapbridge_proto::FEATURE_SYSTEM_STATUS.to_owned()]
                        } else {
                            Vec::new()
                        },
                    };
                    if frames::send(sink, &welcome).await.is_err() {
                        return Handshake::Refused(None);
                    }
                    return Handshake::Welcomed(Hello {
                        protocol,
                        agent_id,
                        agent_version,
                        systems,
                        capabilities,
                        credits,
                        reconnects,
                    });
                }
            },
            other => CloseReason::ProtocolError {
                detail: format!("expected hello, got {}", message_kind(&other)),
            },
        },
    };
    tracing::warn!(reason = %refusal, code = refusal.code(), "agent refused");
    frames::close(sink, refusal.clone()).await;
    Handshake::Refused(Some(refusal))
}

/// Why a hello must be refused, if it must.
fn check(
    protocol: u32,
    systems: &[String],
    capabilities: &[SystemCapabilities],
    allowed: &Scope,
) -> Option<CloseReason> {
    if !(OLDEST_AGENT_PROTOCOL..=PROTOCOL_VERSION).contains(&protocol) {
        return Some(CloseReason::ProtocolMismatch {
            expected: PROTOCOL_VERSION,
            got: protocol,
        });
    }
    if systems.is_empty() {
        return Some(CloseReason::ProtocolError {
            detail: "the hello names no system".into(),
        });
    }
    if let Some(stray) = capabilities.iter().find(|c| !systems.contains(&c.system)) {
        return Some(CloseReason::ProtocolError {
            detail: format!(
                "the hello's capabilities name system {:?}, which its systems do not",
                stray.system
            ),
        });
    }
    systems
        .iter()
        .find(|s| !allowed.covers(s))
        .map(|system| CloseReason::SystemNotAllowed {
            system: system.clone(),
        })
}

/// A message's type name, for protocol error details.
pub(crate) fn message_kind(message: &AgentMessage) -> &'static str {
    match message {
        AgentMessage::Hello { .. } => "hello",
        AgentMessage::Credits { .. } => "credits",
        AgentMessage::Drain => "drain",
        AgentMessage::Outcome { .. } => "outcome",
        AgentMessage::Heartbeat => "heartbeat",
        AgentMessage::SystemStatus { .. } => "system_status",
        AgentMessage::Close { .. } => "close",
        AgentMessage::HttpResponse { .. } => "http_response",
        AgentMessage::HttpError { .. } => "http_error",
        AgentMessage::HttpWindow { .. } => "http_window",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn refuses_wrong_version_and_foreign_systems() {
        let scope = Scope::Systems(HashSet::from(["PRD".to_owned()]));
        let prd = ["PRD".to_owned()];
        for unknown in [0, OLDEST_AGENT_PROTOCOL - 1, PROTOCOL_VERSION + 1] {
            assert_eq!(
                check(unknown, &prd, &[], &scope),
                Some(CloseReason::ProtocolMismatch {
                    expected: PROTOCOL_VERSION,
                    got: unknown
                })
            );
        }
        assert_eq!(
            check(PROTOCOL_VERSION, &["PRD".into(), "QAS".into()], &[], &scope),
            Some(CloseReason::SystemNotAllowed {
                system: "QAS".into()
            })
        );
        // The previous version is served; the current one of course.
        assert_eq!(check(OLDEST_AGENT_PROTOCOL, &prd, &[], &scope), None);
        assert_eq!(check(PROTOCOL_VERSION, &prd, &[], &scope), None);
        // Capabilities may only describe the hello's own systems.
        let stray = SystemCapabilities {
            system: "QAS".into(),
            functions: true,
            http: true,
            function_search: true,
        };
        assert!(matches!(
            check(PROTOCOL_VERSION, &prd, &[stray], &scope),
            Some(CloseReason::ProtocolError { .. })
        ));
    }
}
