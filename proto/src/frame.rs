//! Encoding and decoding of frames: JSON text, size-checked before parsing.

use serde::de::DeserializeOwned;

use serde::Serialize;

use crate::tag_first::TagFirst;
use crate::{AgentMessage, CommitPolicy, FunctionCall, MAX_FRAME_BYTES, RelayMessage, Unit};

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The frame is larger than [`MAX_FRAME_BYTES`].
    #[error("frame of {size} bytes exceeds the limit of {MAX_FRAME_BYTES} bytes")]
    TooLarge {
        /// The frame's size.
        size: usize,
    },
    /// The frame is not a valid message.
    #[error("malformed frame: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Decodes a message: tag first when it can (see [`crate::tag_first`]), else the
/// derived way, which decides what is valid and says why not.
fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, DecodeError>
where
    TagFirst<T>: DeserializeOwned,
{
    if frame.len() > MAX_FRAME_BYTES {
        return Err(DecodeError::TooLarge { size: frame.len() });
    }
    if let Ok(TagFirst(message)) = serde_json::from_slice(frame) {
        return Ok(message);
    }
    Ok(serde_json::from_slice(frame)?)
}

/// Decodes a frame sent by an agent.
///
/// # Errors
/// [`DecodeError::TooLarge`] past [`MAX_FRAME_BYTES`], [`DecodeError::Malformed`]
/// for anything that is not an [`AgentMessage`]. Never panics.
pub fn decode_agent_message(frame: &[u8]) -> Result<AgentMessage, DecodeError> {
    decode(frame)
}

/// Decodes a frame sent by the relay.
///
/// # Errors
/// As [`decode_agent_message`].
pub fn decode_relay_message(frame: &[u8]) -> Result<RelayMessage, DecodeError> {
    decode(frame)
}

/// Encodes an agent message as a JSON text frame.
pub fn encode_agent_message(message: &AgentMessage) -> String {
    // Serializing these types cannot fail: all map keys are strings.
    serde_json::to_string(message).unwrap_or_default()
}

/// Encodes a relay message as a JSON text frame.
pub fn encode_relay_message(message: &RelayMessage) -> String {
    serde_json::to_string(message).unwrap_or_default()
}

/// A unit's fields, borrowed from wherever the relay keeps the call: encodes as the
/// [`Unit`] with the same fields does, without copying the calls into one first.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct UnitRef<'a> {
    /// See [`Unit::call_id`].
    pub call_id: &'a str,
    /// See [`Unit::attempt`].
    pub attempt: u32,
    /// See [`Unit::system`].
    pub system: &'a str,
    /// See [`Unit::deadline_ms`].
    pub deadline_ms: Option<u64>,
    /// See [`Unit::in_doubt`].
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub in_doubt: bool,
    /// See [`Unit::calls`].
    pub calls: &'a [FunctionCall],
    /// See [`Unit::commit`].
    pub commit: CommitPolicy,
    /// See [`Unit::traceparent`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<&'a str>,
}

impl UnitRef<'_> {
    /// The unit, owned.
    pub fn to_unit(&self) -> Unit {
        Unit {
            call_id: self.call_id.to_owned(),
            attempt: self.attempt,
            system: self.system.to_owned(),
            deadline_ms: self.deadline_ms,
            in_doubt: self.in_doubt,
            calls: self.calls.to_vec(),
            commit: self.commit,
            traceparent: self.traceparent.map(str::to_owned),
        }
    }
}

impl<'a> From<&'a Unit> for UnitRef<'a> {
    fn from(unit: &'a Unit) -> Self {
        Self {
            call_id: &unit.call_id,
            attempt: unit.attempt,
            system: &unit.system,
            deadline_ms: unit.deadline_ms,
            in_doubt: unit.in_doubt,
            calls: &unit.calls,
            commit: unit.commit,
            traceparent: unit.traceparent.as_deref(),
        }
    }
}

/// A [`RelayMessage::Work`] frame, encoded when the unit is leased: the relay
/// hands this to the agent's session instead of a copy of the unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkFrame {
    /// The unit's call id (the session counts it in flight).
    pub call_id: String,
    /// The unit's attempt, for logs.
    pub attempt: u32,
    /// The frame's JSON text.
    pub text: String,
}

impl WorkFrame {
    /// Encodes the unit as the text of a [`RelayMessage::Work`] for an agent that
    /// speaks `protocol` ([`crate::PROTOCOL_VERSION`] or, through
    /// [`crate::v1`], the version before it). `now_unix_ms` is the relay's clock,
    /// which protocol 1 needs to turn the relative deadline into its absolute one.
    pub fn encode_for(protocol: u32, unit: UnitRef<'_>, now_unix_ms: u64) -> Self {
        if protocol < crate::PROTOCOL_VERSION {
            return crate::v1::encode_work(unit, now_unix_ms);
        }
        Self::encode(unit)
    }

    /// Encodes the unit as the text of a [`RelayMessage::Work`] of the current
    /// protocol version.
    pub fn encode(unit: UnitRef<'_>) -> Self {
        /// `{"type":"work","unit":…}`: the internally tagged variant's layout.
        #[derive(Serialize)]
        #[serde(tag = "type", rename = "work")]
        struct Work<'a> {
            unit: UnitRef<'a>,
        }
        Self {
            call_id: unit.call_id.to_owned(),
            attempt: unit.attempt,
            // Serializing cannot fail: all map keys are strings.
            text: serde_json::to_string(&Work { unit }).unwrap_or_default(),
        }
    }
}
