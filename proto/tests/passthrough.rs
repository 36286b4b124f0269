//! Property tests of the pass-through wire format: chunk decoding never panics and
//! round-trips, and the JSON control messages round-trip like the others.

use bytes::Bytes;
use proptest::prelude::*;
use sapbridge_proto::{
    AgentMessage, BodyChunk, CHUNK_HEADER_BYTES, CHUNK_PAYLOAD_BYTES, ChunkError, HttpFailure,
    HttpFailureKind, HttpRequestHead, HttpResponseHead, RelayMessage, decode_agent_message,
    decode_relay_message, encode_agent_message, encode_chunk, encode_relay_message,
    header_value_from_wire, header_value_to_wire, is_chunk_frame,
};

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        (
            "[a-z-]{1,12}",
            prop::collection::vec(any::<u8>(), 0..16).prop_map(|v| header_value_to_wire(&v)),
        ),
        0..5,
    )
}

fn failure() -> impl Strategy<Value = HttpFailure> {
    (
        prop_oneof![
            Just(HttpFailureKind::NotConfigured),
            Just(HttpFailureKind::NotAllowed),
            Just(HttpFailureKind::BadRequest),
            Just(HttpFailureKind::TooLarge),
            Just(HttpFailureKind::Busy),
            Just(HttpFailureKind::Unreachable),
            Just(HttpFailureKind::Timeout),
            Just(HttpFailureKind::Protocol),
        ],
        ".{0,30}",
    )
        .prop_map(|(kind, detail)| HttpFailure::new(kind, detail))
}

fn relay_message() -> impl Strategy<Value = RelayMessage> {
    prop_oneof![
        (
            any::<u64>(),
            "[A-Z]{1,5}",
            "[A-Z]{3,7}",
            "/[a-z/%0-9]{0,20}",
            prop::option::of("[a-z=&%0-9]{0,20}"),
            headers(),
            any::<bool>(),
            any::<u64>(),
        )
            .prop_map(
                |(stream_id, system, method, path, query, headers, body, timeout_ms)| {
                    RelayMessage::HttpRequest {
                        request: HttpRequestHead {
                            stream_id,
                            system,
                            method,
                            path,
                            query,
                            headers,
                            body,
                            timeout_ms,
                        },
                    }
                }
            ),
        (any::<u64>(), any::<u32>())
            .prop_map(|(stream_id, chunks)| RelayMessage::HttpWindow { stream_id, chunks }),
        any::<u64>().prop_map(|stream_id| RelayMessage::HttpCancel { stream_id }),
    ]
}

fn agent_message() -> impl Strategy<Value = AgentMessage> {
    prop_oneof![
        (any::<u64>(), 100u16..600, headers()).prop_map(|(stream_id, status, headers)| {
            AgentMessage::HttpResponse {
                response: HttpResponseHead {
                    stream_id,
                    status,
                    headers,
                },
            }
        }),
        (any::<u64>(), failure())
            .prop_map(|(stream_id, error)| AgentMessage::HttpError { stream_id, error }),
        (any::<u64>(), any::<u32>())
            .prop_map(|(stream_id, chunks)| AgentMessage::HttpWindow { stream_id, chunks }),
    ]
}

proptest! {
    #[test]
    fn chunk_garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = BodyChunk::decode(Bytes::from(bytes));
    }

    #[test]
    fn chunk_like_garbage_is_an_error_or_consistent(
        flags in any::<u8>(),
        id in any::<u64>(),
        payload in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut frame = vec![0xB7, flags];
        frame.extend_from_slice(&id.to_be_bytes());
        frame.extend_from_slice(&payload);
        match BodyChunk::decode(Bytes::from(frame)) {
            Ok(chunk) => {
                prop_assert!(flags <= 1);
                prop_assert_eq!(chunk.stream_id, id);
                prop_assert_eq!(chunk.last, flags == 1);
                prop_assert_eq!(&chunk.payload[..], &payload[..]);
            }
            Err(e) => prop_assert_eq!(e, ChunkError::UnknownFlags { flags }),
        }
    }

    #[test]
    fn chunks_round_trip(
        id in any::<u64>(),
        last in any::<bool>(),
        payload in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let frame = encode_chunk(id, last, &payload).unwrap();
        prop_assert!(is_chunk_frame(&frame));
        prop_assert_eq!(frame.len(), CHUNK_HEADER_BYTES + payload.len());
        let chunk = BodyChunk::decode(frame).unwrap();
        prop_assert_eq!(chunk.stream_id, id);
        prop_assert_eq!(chunk.last, last);
        prop_assert_eq!(&chunk.payload[..], &payload[..]);
    }

    #[test]
    fn truncated_chunks_are_errors(id in any::<u64>(), cut in 1usize..=CHUNK_HEADER_BYTES) {
        let frame = encode_chunk(id, true, b"").unwrap();
        let short = frame.slice(..CHUNK_HEADER_BYTES - cut);
        prop_assert!(
            matches!(BodyChunk::decode(short), Err(ChunkError::TooShort { .. })),
            "a short frame must be an error",
        );
    }

    #[test]
    fn relay_passthrough_messages_round_trip(msg in relay_message()) {
        let text = encode_relay_message(&msg);
        prop_assert!(!is_chunk_frame(text.as_bytes()));
        prop_assert_eq!(decode_relay_message(text.as_bytes()).unwrap(), msg);
    }

    #[test]
    fn agent_passthrough_messages_round_trip(msg in agent_message()) {
        let text = encode_agent_message(&msg);
        prop_assert!(!is_chunk_frame(text.as_bytes()));
        prop_assert_eq!(decode_agent_message(text.as_bytes()).unwrap(), msg);
    }

    #[test]
    fn header_values_round_trip(value in prop::collection::vec(any::<u8>(), 0..64)) {
        let wire = header_value_to_wire(&value);
        let back = header_value_from_wire(&wire);
        prop_assert_eq!(back.as_deref(), Some(value.as_slice()));
    }
}

#[test]
fn oversized_chunk_payload_is_refused() {
    let mut frame = encode_chunk(7, false, &vec![1u8; CHUNK_PAYLOAD_BYTES])
        .unwrap()
        .to_vec();
    assert!(BodyChunk::decode(Bytes::from(frame.clone())).is_ok());
    frame.push(0);
    assert_eq!(
        BodyChunk::decode(Bytes::from(frame)),
        Err(ChunkError::TooLarge {
            size: CHUNK_PAYLOAD_BYTES + 1
        })
    );
}

#[test]
fn passthrough_wire_shape_is_stable() {
    let msg = RelayMessage::HttpCancel { stream_id: 3 };
    assert_eq!(
        encode_relay_message(&msg),
        r#"{"type":"http_cancel","stream_id":3}"#
    );
    let msg = AgentMessage::HttpError {
        stream_id: 3,
        error: HttpFailure::new(HttpFailureKind::NotAllowed, "no"),
    };
    assert_eq!(
        encode_agent_message(&msg),
        r#"{"type":"http_error","stream_id":3,"error":{"kind":"not_allowed","detail":"no"}}"#
    );
}
