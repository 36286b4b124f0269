//! The relay ⇄ agent wire protocol of sapbridge.
//!
//! One serde enum per direction: [`AgentMessage`] (agent → relay) and
//! [`RelayMessage`] (relay → agent). Every frame is one WebSocket text message holding
//! one JSON-encoded message; [`decode_agent_message`] and [`decode_relay_message`]
//! check the frame size before parsing and never panic on bad input.
//!
//! The conversation:
//! 1. the agent sends [`AgentMessage::Hello`] (protocol version, agent id, systems,
//!    what it can run for each, credits); the relay answers [`RelayMessage::Welcome`] or closes with
//!    [`RelayMessage::Close`] and a [`CloseReason`] (version mismatch, system not
//!    allowed for the token, ...);
//! 2. the relay sends at most as many [`RelayMessage::Work`] as the agent has credits;
//!    every [`AgentMessage::Outcome`] gives one credit back, [`AgentMessage::Credits`]
//!    adds more, [`AgentMessage::Drain`] withdraws all of them (graceful shutdown);
//!    each unit carries its deadline as milliseconds remaining, never as a clock
//!    reading (on-premises clocks drift), and whether it is in doubt (may have
//!    started on another agent);
//! 3. the relay answers every stored outcome with [`RelayMessage::Ack`]; until then
//!    the agent keeps the outcome and sends it again after a reconnect;
//! 4. both sides send [`AgentMessage::Heartbeat`] / [`RelayMessage::Heartbeat`] every
//!    heartbeat interval; a peer silent for two intervals is dead;
//! 5. HTTP pass-through requests travel beside the units, outside the credits: JSON
//!    control messages ([`RelayMessage::HttpRequest`], [`AgentMessage::HttpResponse`],
//!    ...) plus body pieces as binary frames ([`BodyChunk`], never JSON), paced per
//!    stream by windows; see the `passthrough` and `chunk` modules' docs;
//! 6. additions within a protocol version are features: the welcome names those the
//!    relay takes ([`FEATURE_SYSTEM_STATUS`]: the agent reports with
//!    [`AgentMessage::SystemStatus`] whether its systems' backends log on), and an
//!    agent sends nothing a relay did not name, so a newer agent never breaks an
//!    older relay.

mod chunk;
mod error;
mod frame;
mod messages;
mod outbox;
mod passthrough;
mod secret;
mod tag_first;
mod trace;
pub mod v1;
mod work;

pub use chunk::{
    BodyChunk, CHUNK_HEADER_BYTES, CHUNK_MAGIC, CHUNK_PAYLOAD_BYTES, ChunkError, encode_chunk,
    is_chunk_frame,
};
pub use error::{ErrorGroup, RfcError};
pub use frame::{
    DecodeError, UnitRef, WorkFrame, decode_agent_message, decode_relay_message,
    encode_agent_message, encode_relay_message,
};
pub use messages::{
    AgentMessage, CloseReason, LogonStatus, RelayMessage, SystemCapabilities, SystemStatus,
};
pub use outbox::{Outbox, TURNS_PER_FLUSH};
pub use passthrough::{
    HOP_BY_HOP_HEADERS, HttpFailure, HttpFailureKind, HttpRequestHead, HttpResponseHead,
    INITIAL_WINDOW_CHUNKS, WireHeader, header_value_from_wire, header_value_to_wire, is_hop_by_hop,
};
pub use secret::Secret;
pub use trace::TraceParent;
pub use work::{CallResult, CommitPolicy, FunctionCall, Outcome, TransactionOutcome, Unit};

/// The protocol version this build speaks; checked in the hello. Version 2 made the
/// unit's deadline relative, added the unit's `in_doubt` flag and the hello's
/// `capabilities` (see [`v1`] for what changed).
pub const PROTOCOL_VERSION: u32 = 2;

/// The oldest agent protocol version a relay still serves: agents upgrade late, so
/// the relay speaks one version behind (and says in its log and `GET /v1/systems`
/// which agents should upgrade).
pub const OLDEST_AGENT_PROTOCOL: u32 = PROTOCOL_VERSION - 1;

/// The welcome feature saying the relay takes [`AgentMessage::SystemStatus`].
pub const FEATURE_SYSTEM_STATUS: &str = "system_status";

/// The most features a welcome may name, and the longest name, in bytes (an agent
/// closes the session on a welcome beyond them).
pub const MAX_FEATURES: usize = 32;
/// See [`MAX_FEATURES`].
pub const MAX_FEATURE_BYTES: usize = 64;

/// The longest reason of a [`LogonStatus::Blocked`], in bytes (the agent cuts
/// SAP's message to it; the relay refuses a longer one), and the longest `since`.
pub const MAX_STATUS_REASON_BYTES: usize = 1024;
/// See [`MAX_STATUS_REASON_BYTES`].
pub const MAX_STATUS_SINCE_BYTES: usize = 64;

/// The largest frame either side accepts, in bytes. A larger frame is a protocol
/// error: the receiver closes the connection with [`CloseReason::FrameTooLarge`].
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// How long a peer may take to send its first message after the socket opened.
pub const HANDSHAKE_TIMEOUT_SECS: u64 = 10;

/// The heartbeat interval the relay proposes unless configured otherwise.
pub const DEFAULT_HEARTBEAT_SECS: u64 = 15;

/// The longest heartbeat interval an agent accepts in a welcome (one hour): a peer
/// is dead after two silent intervals, so a longer interval would leave a broken
/// connection unnoticed for longer than any operator waits. A welcome proposing
/// more (or 0) is a protocol error; a relay must not be configured beyond it.
pub const MAX_HEARTBEAT_SECS: u64 = 3_600;

/// The longest deadline a unit may carry in [`Unit::deadline_ms`] (30 days): the
/// relay sends the earlier of the call's queue TTL and its lease, and a lease is
/// minutes long. A larger value is a protocol error, not a deadline; a relay must
/// not be configured with a lease beyond it.
pub const MAX_UNIT_DEADLINE_MS: u64 = 30 * 24 * 3_600 * 1_000;

/// The parameters (or results) of a function call: names to JSON values, following
/// PyRFC's conventions (a structure is an object, a table an array of objects).
pub type Parameters = serde_json::Map<String, serde_json::Value>;
