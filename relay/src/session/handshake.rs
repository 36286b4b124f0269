//! The first exchange on an agent socket: the agent's hello, checked against the
//! protocol version and the systems its token may serve, answered with a welcome or
//! a close that says why.

use std::time::Duration;

use axum::extract::ws::Message;
use futures_util::{Sink, Stream};
use sapbridge_proto::{
    AgentMessage, CloseReason, HANDSHAKE_TIMEOUT_SECS, PROTOCOL_VERSION, RelayMessage,
};

use super::frames::{self, Incoming};
use crate::auth::Scope;

/// What an accepted hello announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hello {
    /// The agent installation's id.
    pub(crate) agent_id: String,
    /// Its software version.
    pub(crate) agent_version: String,
    /// The systems it serves.
    pub(crate) systems: Vec<String>,
    /// Its initial credits.
    pub(crate) credits: u32,
}

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
            } => match check(protocol, &systems, allowed) {
                Some(reason) => reason,
                None => {
                    let welcome = RelayMessage::Welcome {
                        protocol: PROTOCOL_VERSION,
                        session_id: session_id.to_owned(),
                        heartbeat_secs: heartbeat.as_secs().max(1),
                    };
                    if frames::send(sink, &welcome).await.is_err() {
                        return Handshake::Refused(None);
                    }
                    return Handshake::Welcomed(Hello {
                        agent_id,
                        agent_version,
                        systems,
                        credits,
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
fn check(protocol: u32, systems: &[String], allowed: &Scope) -> Option<CloseReason> {
    if protocol != PROTOCOL_VERSION {
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
        assert_eq!(
            check(PROTOCOL_VERSION + 1, &["PRD".into()], &scope),
            Some(CloseReason::ProtocolMismatch {
                expected: PROTOCOL_VERSION,
                got: PROTOCOL_VERSION + 1
            })
        );
        assert_eq!(
            check(PROTOCOL_VERSION, &["PRD".into(), "QAS".into()], &scope),
            Some(CloseReason::SystemNotAllowed {
                system: "QAS".into()
            })
        );
        assert_eq!(check(PROTOCOL_VERSION, &["PRD".into()], &scope), None);
    }
}
