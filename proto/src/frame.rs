//! Encoding and decoding of frames: JSON text, size-checked before parsing.

use serde::de::DeserializeOwned;

use crate::{AgentMessage, MAX_FRAME_BYTES, RelayMessage};

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

fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, DecodeError> {
    if frame.len() > MAX_FRAME_BYTES {
        return Err(DecodeError::TooLarge { size: frame.len() });
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
