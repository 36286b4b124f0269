//! The binary body chunk: one WebSocket **binary** frame carrying a piece of a
//! pass-through request or response body.
//!
//! ```text
//! offset  size  field
//! 0       1     magic 0xB7 (a JSON frame starts with `{`, so the two never mix)
//! 1       1     flags: bit 0 = last chunk of this body; other bits must be 0
//! 2       8     stream id, unsigned big-endian
//! 10      n     payload, 0 to CHUNK_PAYLOAD_BYTES bytes
//! ```
//!
//! Decoding checks the length, magic, flags and payload size and never panics; the
//! payload is a zero-copy slice of the frame.

use bytes::{BufMut, Bytes, BytesMut};

/// The first byte of every chunk frame.
pub const CHUNK_MAGIC: u8 = 0xB7;
/// Bytes before the payload.
pub const CHUNK_HEADER_BYTES: usize = 10;
/// The largest payload of one chunk (64 KiB); senders cut bodies into pieces of at
/// most this size.
pub const CHUNK_PAYLOAD_BYTES: usize = 64 * 1024;
/// Flag: this is the last chunk of the body.
const FLAG_LAST: u8 = 0b0000_0001;

/// A piece of a pass-through body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyChunk {
    /// The stream the body belongs to.
    pub stream_id: u64,
    /// Whether this is the body's last chunk.
    pub last: bool,
    /// The bytes, at most [`CHUNK_PAYLOAD_BYTES`].
    pub payload: Bytes,
}

/// Why a binary frame is not a valid chunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// Shorter than the header.
    #[error("chunk frame of {len} bytes is shorter than its {CHUNK_HEADER_BYTES}-byte header")]
    TooShort {
        /// The frame's length.
        len: usize,
    },
    /// The first byte is not [`CHUNK_MAGIC`].
    #[error("binary frame starts with {byte:#04x}, not the chunk magic")]
    NotAChunk {
        /// The first byte.
        byte: u8,
    },
    /// Flag bits this version does not know are set.
    #[error("chunk has unknown flags {flags:#010b}")]
    UnknownFlags {
        /// The flags byte.
        flags: u8,
    },
    /// The payload exceeds [`CHUNK_PAYLOAD_BYTES`].
    #[error("chunk payload of {size} bytes exceeds {CHUNK_PAYLOAD_BYTES}")]
    TooLarge {
        /// The payload's size.
        size: usize,
    },
}

/// Whether a binary frame claims to be a chunk (starts with [`CHUNK_MAGIC`]); other
/// binary frames are JSON messages.
pub fn is_chunk_frame(frame: &[u8]) -> bool {
    frame.first() == Some(&CHUNK_MAGIC)
}

impl BodyChunk {
    /// A chunk; `payload` must not exceed [`CHUNK_PAYLOAD_BYTES`] (see
    /// [`BodyChunk::encode`]).
    pub fn new(stream_id: u64, last: bool, payload: Bytes) -> Self {
        Self {
            stream_id,
            last,
            payload,
        }
    }

    /// Encodes the chunk as one binary frame (one copy of the payload).
    ///
    /// # Errors
    /// [`ChunkError::TooLarge`] when the payload exceeds [`CHUNK_PAYLOAD_BYTES`].
    pub fn encode(&self) -> Result<Bytes, ChunkError> {
        encode_chunk(self.stream_id, self.last, &self.payload)
    }

    /// Decodes a binary frame.
    ///
    /// # Errors
    /// A [`ChunkError`] for a short frame, a wrong magic, unknown flags or an
    /// oversized payload. Never panics.
    pub fn decode(frame: Bytes) -> Result<Self, ChunkError> {
        if frame.len() < CHUNK_HEADER_BYTES {
            return Err(ChunkError::TooShort { len: frame.len() });
        }
        let magic = frame[0];
        if magic != CHUNK_MAGIC {
            return Err(ChunkError::NotAChunk { byte: magic });
        }
        let flags = frame[1];
        if flags & !FLAG_LAST != 0 {
            return Err(ChunkError::UnknownFlags { flags });
        }
        let size = frame.len() - CHUNK_HEADER_BYTES;
        if size > CHUNK_PAYLOAD_BYTES {
            return Err(ChunkError::TooLarge { size });
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&frame[2..CHUNK_HEADER_BYTES]);
        Ok(Self {
            stream_id: u64::from_be_bytes(id),
            last: flags & FLAG_LAST != 0,
            payload: frame.slice(CHUNK_HEADER_BYTES..),
        })
    }
}

/// Encodes one chunk frame from its parts (one copy of the payload).
///
/// # Errors
/// [`ChunkError::TooLarge`] when `payload` exceeds [`CHUNK_PAYLOAD_BYTES`].
pub fn encode_chunk(stream_id: u64, last: bool, payload: &[u8]) -> Result<Bytes, ChunkError> {
    if payload.len() > CHUNK_PAYLOAD_BYTES {
        return Err(ChunkError::TooLarge {
            size: payload.len(),
        });
    }
    let mut frame = BytesMut::with_capacity(CHUNK_HEADER_BYTES + payload.len());
    frame.put_u8(CHUNK_MAGIC);
    frame.put_u8(if last { FLAG_LAST } else { 0 });
    frame.put_u64(stream_id);
    frame.put_slice(payload);
    Ok(frame.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_stable() {
        let frame = encode_chunk(0x0102_0304_0506_0708, true, b"ab").unwrap();
        assert_eq!(
            &frame[..],
            &[0xB7, 1, 1, 2, 3, 4, 5, 6, 7, 8, b'a', b'b'][..]
        );
        let chunk = BodyChunk::decode(frame).unwrap();
        assert_eq!(chunk.stream_id, 0x0102_0304_0506_0708);
        assert!(chunk.last);
        assert_eq!(&chunk.payload[..], b"ab");
    }

    #[test]
    fn bad_frames_are_named() {
        assert_eq!(
            BodyChunk::decode(Bytes::from_static(&[0xB7, 0])),
            Err(ChunkError::TooShort { len: 2 })
        );
        let mut frame = encode_chunk(1, false, b"").unwrap().to_vec();
        frame[1] = 0x80;
        assert!(matches!(
            BodyChunk::decode(Bytes::from(frame.clone())),
            Err(ChunkError::UnknownFlags { .. })
        ));
        frame[0] = b'{';
        assert!(matches!(
            BodyChunk::decode(Bytes::from(frame)),
            Err(ChunkError::NotAChunk { byte: b'{' })
        ));
        let big = vec![0u8; CHUNK_PAYLOAD_BYTES + 1];
        assert!(encode_chunk(1, false, &big).is_err());
    }
}
