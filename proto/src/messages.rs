//! The two message enums, one per direction.

use serde::{Deserialize, Serialize};

use crate::{HttpFailure, HttpRequestHead, HttpResponseHead, Outcome, Unit};

/// Messages the agent sends to the relay.
// Outcomes dominate the traffic and are built once per unit; boxing them would cost
// an allocation per message for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    /// The first message on a connection.
    Hello {
        /// Must equal [`crate::PROTOCOL_VERSION`].
        protocol: u32,
        /// A stable id of this agent installation (host name by default).
        agent_id: String,
        /// The agent's software version.
        agent_version: String,
        /// The systems this agent serves; each must be allowed by its token.
        systems: Vec<String>,
        /// How many units the agent can run at once (its concurrency).
        credits: u32,
        /// What it can run for each of its systems (protocol 2). Empty in a
        /// protocol 1 hello, where every system takes both function calls and
        /// pass-through requests; see [`SystemCapabilities::of`].
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        capabilities: Vec<SystemCapabilities>,
        /// How many sessions this agent process was welcomed to before this one
        /// (by any relay replica): its reconnects since it started, for the
        /// operator's view. Absent (0) from agents that do not count them; an
        /// optional field, so no protocol version changes.
        #[serde(default, skip_serializing_if = "is_zero")]
        reconnects: u64,
    },
    /// Grants the relay `credits` more units, on top of those already granted.
    Credits {
        /// How many more.
        credits: u32,
    },
    /// The agent is shutting down: take back all unused credits and send nothing
    /// new; in-flight units still report their outcomes.
    Drain,
    /// The outcome of a unit. Gives one credit back when it answers a unit leased
    /// on this same session (unless draining); an outcome re-sent after a reconnect
    /// for a unit of an earlier session returns no credit.
    Outcome {
        /// The unit's call id.
        call_id: String,
        /// The attempt this outcome answers.
        attempt: u32,
        /// What happened.
        outcome: Outcome,
    },
    /// Liveness signal, sent every heartbeat interval.
    Heartbeat,
    /// How the agent's systems stand (whether their backends log on), sent only to
    /// a relay whose welcome names [`crate::FEATURE_SYSTEM_STATUS`]: once after the
    /// welcome and whenever it changes. Lists the systems whose backend logs on;
    /// each at most once, each one of the hello's systems.
    SystemStatus {
        /// One entry per system whose backend logs on.
        systems: Vec<SystemStatus>,
    },
    /// The agent closes the connection, saying why.
    Close {
        /// Why.
        reason: CloseReason,
    },
    /// The head of a pass-through response; body chunks follow (see
    /// [`crate::HttpResponseHead`]).
    HttpResponse {
        /// Status and headers.
        response: HttpResponseHead,
    },
    /// A pass-through request failed; ends the stream (aborts the body when the
    /// response head was already sent).
    HttpError {
        /// The stream.
        stream_id: u64,
        /// Why.
        error: HttpFailure,
    },
    /// The relay may send `chunks` more request body chunks on this stream.
    HttpWindow {
        /// The stream.
        stream_id: u64,
        /// How many more.
        chunks: u32,
    },
}

/// How one system of an agent stands (see [`AgentMessage::SystemStatus`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemStatus {
    /// The system; one of the hello's `systems`.
    pub system: String,
    /// Whether its backend logs on.
    pub logon: LogonStatus,
}

/// Whether a backend logs on to SAP. After SAP refused the password, the agent
/// stops logging on with it (so the shared RFC user is never locked) until the
/// password source changes or an operator resets it on the agent's side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LogonStatus {
    /// Logons go through.
    Open,
    /// SAP refused the password; calls fail with `LOGON_FAILURE` without
    /// contacting SAP.
    Blocked {
        /// SAP's answer to the refused logon (at most
        /// [`crate::MAX_STATUS_REASON_BYTES`]).
        reason: String,
        /// When it was refused (RFC 3339, the agent's clock).
        since: String,
    },
}

/// What an agent can run for one of the systems of its hello (protocol 2), so the
/// relay sends it only work it can run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemCapabilities {
    /// The system; one of the hello's `systems`.
    pub system: String,
    /// Whether it runs function calls and units of work on an SAP connection.
    pub functions: bool,
    /// Whether it forwards HTTP pass-through requests (it has an HTTP backend).
    pub http: bool,
    /// Whether its answers to `RFC_FUNCTION_SEARCH` list only the function modules
    /// its allowlist lets through (the relay lists functions for pick lists only
    /// from such agents). Absent (false) from agents that do not filter them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub function_search: bool,
}

impl SystemCapabilities {
    /// What a hello announcing `capabilities` offers for `system`: its entry, or
    /// everything but `function_search` when the list is empty (a protocol 1
    /// hello), or nothing when the list names other systems only.
    pub fn of(capabilities: &[Self], system: &str) -> Self {
        if capabilities.is_empty() {
            return Self {
                system: system.to_owned(),
                functions: true,
                http: true,
                function_search: false,
            };
        }
        capabilities
            .iter()
            .find(|c| c.system == system)
            .cloned()
            .unwrap_or_else(|| Self {
                system: system.to_owned(),
                functions: false,
                http: false,
                function_search: false,
            })
    }
}

/// Messages the relay sends to the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RelayMessage {
    /// The answer to a valid hello.
    Welcome {
        /// The relay's protocol version (equal to the agent's).
        protocol: u32,
        /// Id of this agent session, for logs on both sides.
        session_id: String,
        /// How often both sides send heartbeats; silence for two intervals is death.
        heartbeat_secs: u64,
        /// What this relay takes beyond its protocol version's messages, such as
        /// [`crate::FEATURE_SYSTEM_STATUS`]; empty from older relays, never sent to
        /// protocol 1 agents. An agent uses a feature only when this names it and
        /// ignores names it does not know.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        features: Vec<String>,
    },
    /// A unit to execute. The relay never sends more units than the agent has credits.
    Work {
        /// The unit.
        unit: Unit,
    },
    /// The relay has stored the outcome of this call; the agent may forget it.
    Ack {
        /// The call id.
        call_id: String,
    },
    /// Liveness signal, sent every heartbeat interval.
    Heartbeat,
    /// The relay closes the connection, saying why.
    Close {
        /// Why.
        reason: CloseReason,
    },
    /// Opens a pass-through stream: an HTTP request for the system's HTTP service;
    /// body chunks follow when `request.body` is true. Not subject to credits.
    HttpRequest {
        /// Method, path, headers.
        request: HttpRequestHead,
    },
    /// The agent may send `chunks` more response body chunks on this stream.
    HttpWindow {
        /// The stream.
        stream_id: u64,
        /// How many more.
        chunks: u32,
    },
    /// The relay abandons the stream (client gone, timeout, body over the limit);
    /// the agent aborts the backend request and sends nothing more for it.
    HttpCancel {
        /// The stream.
        stream_id: u64,
    },
}

/// Why a side closes the connection. Both sides log it; the WebSocket close frame
/// carries [`CloseReason::code`] and a short text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CloseReason {
    /// The peers speak different protocol versions.
    ProtocolMismatch {
        /// The version the closing side speaks.
        expected: u32,
        /// The version the peer announced.
        got: u32,
    },
    /// The agent's token does not allow serving a system it named.
    SystemNotAllowed {
        /// The system.
        system: String,
    },
    /// A frame could not be decoded or broke the protocol.
    ProtocolError {
        /// What was wrong.
        detail: String,
    },
    /// A frame exceeded [`crate::MAX_FRAME_BYTES`].
    FrameTooLarge {
        /// Its size in bytes.
        size: usize,
    },
    /// The peer was silent for two heartbeat intervals.
    HeartbeatTimeout,
    /// The side is shutting down.
    ShuttingDown,
}

impl CloseReason {
    /// The WebSocket close code for this reason (RFC 6455 section 7.4).
    pub fn code(&self) -> u16 {
        match self {
            Self::ProtocolMismatch { .. } | Self::ProtocolError { .. } => 1002,
            Self::SystemNotAllowed { .. } => 1008,
            Self::FrameTooLarge { .. } => 1009,
            Self::HeartbeatTimeout => 1001,
            Self::ShuttingDown => 1001,
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ProtocolMismatch { expected, got } => {
                write!(
                    f,
                    "protocol version mismatch: expected {expected}, got {got}"
                )
            }
            Self::SystemNotAllowed { system } => {
                write!(f, "the agent token may not serve system {system}")
            }
            Self::ProtocolError { detail } => write!(f, "protocol error: {detail}"),
            Self::FrameTooLarge { size } => write!(f, "frame of {size} bytes is too large"),
            Self::HeartbeatTimeout => f.write_str("peer silent for two heartbeat intervals"),
            Self::ShuttingDown => f.write_str("shutting down"),
        }
    }
}

/// For `skip_serializing_if`: a count of zero is left out.
#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes a reference
fn is_zero(n: &u64) -> bool {
    *n == 0
}
