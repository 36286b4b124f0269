//! The frame sequences the session fuzzer feeds: what a relay might send, honest or
//! not, as WebSocket frames, with clock jumps and shutdowns between them.

use bytes::Bytes;
use proptest::prelude::*;
use sapbridge_proto::{
    CloseReason, CommitPolicy, FEATURE_SYSTEM_STATUS, FunctionCall, HttpRequestHead,
    MAX_HEARTBEAT_SECS, MAX_UNIT_DEADLINE_MS, PROTOCOL_VERSION, Parameters, RelayMessage, Unit,
    encode_chunk, encode_relay_message,
};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use super::super::unit;

/// One thing the relay does.
#[derive(Debug, Clone)]
pub(super) enum Step {
    /// Sends a WebSocket frame.
    Frame(Message),
    /// Lets the clock run, in milliseconds.
    Advance(u64),
    /// The agent is told to shut down.
    Shutdown,
}

/// How the relay ends the case.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ending {
    /// It hangs up: the stream ends.
    HangUp,
    /// It falls silent with the connection open.
    Silence,
}

fn u64_extreme() -> BoxedStrategy<u64> {
    prop_oneof![
        prop::sample::select(vec![
            0,
            1,
            2,
            15,
            MAX_HEARTBEAT_SECS,
            MAX_HEARTBEAT_SECS + 1,
            MAX_UNIT_DEADLINE_MS,
            MAX_UNIT_DEADLINE_MS + 1,
            1 << 62,
            u64::MAX - 1,
            u64::MAX,
        ]),
        any::<u64>(),
    ]
    .boxed()
}

fn u32_extreme() -> BoxedStrategy<u32> {
    prop_oneof![
        prop::sample::select(vec![0, 1, 2, 16, 17, 1024, u32::MAX - 1, u32::MAX]),
        any::<u32>(),
    ]
    .boxed()
}

/// Mostly a few ids that repeat (so duplicates and acks meet their units), some
/// hostile ones.
fn call_id() -> BoxedStrategy<String> {
    prop_oneof![
        16 => "c_[0-9]",
        1 => "\\PC{0,12}",
        1 => Just("c_\n1".to_owned()),
        1 => Just("c".repeat(200)),
    ]
    .boxed()
}

fn unit_strategy() -> BoxedStrategy<Unit> {
    let calls = prop::collection::vec(
        prop::sample::select(vec!["STFC_CONNECTION", "RFC_READ_TABLE", "BAPI_X"]),
        0..3,
    );
    (
        call_id(),
        prop_oneof![8 => 1..4u32, 1 => u32_extreme()],
        prop::sample::select(vec!["SIM", "SIM", "SIM", "PRD", ""]),
        prop_oneof![
            3 => Just(None),
            3 => (0..120_000u64).prop_map(Some),
            1 => u64_extreme().prop_map(Some),
        ],
        any::<bool>(),
        calls,
        prop::sample::select(vec![
            CommitPolicy::None,
            CommitPolicy::CommitOnSuccess,
            CommitPolicy::Rollback,
        ]),
    )
        .prop_map(
            |(call_id, attempt, system, deadline_ms, in_doubt, calls, commit)| Unit {
                call_id,
                attempt,
                system: system.to_owned(),
                deadline_ms,
                in_doubt,
                calls: calls
                    .into_iter()
                    .map(|function| FunctionCall {
                        function: function.to_owned(),
                        parameters: Parameters::new(),
                    })
                    .collect(),
                commit,
                traceparent: None,
            },
        )
        .boxed()
}

fn stream_id() -> BoxedStrategy<u64> {
    prop_oneof![4 => 0u64..4, 1 => u64_extreme()].boxed()
}

fn close_reason() -> BoxedStrategy<CloseReason> {
    prop_oneof![
        Just(CloseReason::ShuttingDown),
        Just(CloseReason::HeartbeatTimeout),
        "\\PC{0,16}".prop_map(|detail| CloseReason::ProtocolError { detail }),
        (u32_extreme(), u32_extreme())
            .prop_map(|(expected, got)| CloseReason::ProtocolMismatch { expected, got }),
        any::<usize>().prop_map(|size| CloseReason::FrameTooLarge { size }),
    ]
    .boxed()
}

/// A pass-through request, honest-looking or not.
fn http_request() -> BoxedStrategy<RelayMessage> {
    (
        stream_id(),
        prop::sample::select(vec!["SIM", "PRD"]),
        prop::sample::select(vec!["GET", "POST", "BAD METHOD"]),
        prop::sample::select(vec!["/api/x", "/secret", "/api/../x", "/api/.\t./x"]),
        any::<bool>(),
        u64_extreme(),
    )
        .prop_map(
            |(stream_id, system, method, path, body, timeout_ms)| RelayMessage::HttpRequest {
                request: HttpRequestHead {
                    stream_id,
                    system: system.to_owned(),
                    method: method.to_owned(),
                    path: path.to_owned(),
                    query: None,
                    headers: Vec::new(),
                    body,
                    timeout_ms,
                },
            },
        )
        .boxed()
}

fn relay_message() -> BoxedStrategy<RelayMessage> {
    let request = http_request();
    prop_oneof![
        1 => (
            u32_extreme(),
            prop_oneof![Just("s_1".to_owned()), "\\PC{0,8}"],
            u64_extreme(),
            prop::collection::vec(
                prop_oneof![Just(FEATURE_SYSTEM_STATUS.to_owned()), "\\PC{0,70}"],
                0..40
            ),
        )
            .prop_map(|(protocol, session_id, heartbeat_secs, features)| RelayMessage::Welcome {
                protocol,
                session_id,
                heartbeat_secs,
                features,
            }),
        8 => unit_strategy().prop_map(|unit| RelayMessage::Work { unit }),
        3 => call_id().prop_map(|call_id| RelayMessage::Ack { call_id }),
        3 => Just(RelayMessage::Heartbeat),
        1 => close_reason().prop_map(|reason| RelayMessage::Close { reason }),
        3 => request,
        2 => (stream_id(), prop_oneof![4 => 0..=16u32, 1 => u32_extreme()])
            .prop_map(|(stream_id, chunks)| RelayMessage::HttpWindow { stream_id, chunks }),
        1 => stream_id().prop_map(|stream_id| RelayMessage::HttpCancel { stream_id }),
    ]
    .boxed()
}

/// What an honest relay might send (in an order it might not): units within the
/// bounds, acks, heartbeats, pass-through requests, grants and cancels.
fn benign_message() -> BoxedStrategy<RelayMessage> {
    let unit = (
        "c_[0-9]",
        1..3u32,
        prop::sample::select(vec!["STFC_CONNECTION", "RFC_READ_TABLE"]),
        prop_oneof![Just(None), (0..120_000u64).prop_map(Some)],
    )
        .prop_map(|(call_id, attempt, function, deadline_ms)| {
            let mut unit = unit(&call_id, function);
            unit.attempt = attempt;
            unit.deadline_ms = deadline_ms;
            RelayMessage::Work { unit }
        });
    prop_oneof![
        6 => unit,
        3 => "c_[0-9]".prop_map(|call_id| RelayMessage::Ack { call_id }),
        3 => Just(RelayMessage::Heartbeat),
        2 => http_request(),
        2 => (0..4u64, 0..=16u32).prop_map(|(stream_id, chunks)| RelayMessage::HttpWindow { stream_id, chunks }),
        1 => (0..4u64).prop_map(|stream_id| RelayMessage::HttpCancel { stream_id }),
    ]
    .boxed()
}

/// A valid message's JSON, damaged: cut, a byte inserted, or its first number
/// replaced by one no integer type holds.
fn mutated_json() -> BoxedStrategy<String> {
    (
        relay_message(),
        any::<prop::sample::Index>(),
        any::<u8>(),
        0..4u8,
    )
        .prop_map(|(message, at, byte, how)| {
            let text = encode_relay_message(&message);
            let at = at.index(text.len() + 1);
            let at = (0..=at)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            match how {
                0 => text[..at].to_owned(),
                1 => format!("{}{}{}", &text[..at], char::from(byte), &text[at..]),
                2 => match text.find(|c: char| c.is_ascii_digit()) {
                    Some(start) => {
                        let end = text[start..]
                            .find(|c: char| !c.is_ascii_digit())
                            .map_or(text.len(), |n| start + n);
                        let huge = ["-1", "1e400", "99999999999999999999999", "0.5"];
                        format!(
                            "{}{}{}",
                            &text[..start],
                            huge[at % huge.len()],
                            &text[end..]
                        )
                    }
                    None => text,
                },
                _ => text.replace("\"type\":\"", "\"type\":\"x"),
            }
        })
        .boxed()
}

fn chunk_frame() -> BoxedStrategy<Bytes> {
    prop_oneof![
        (
            stream_id(),
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(id, last, payload)| encode_chunk(id, last, &payload).unwrap_or_default()),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(|mut raw| {
            raw.insert(0, sapbridge_proto::CHUNK_MAGIC);
            Bytes::from(raw)
        }),
    ]
    .boxed()
}

fn frame() -> BoxedStrategy<Message> {
    prop_oneof![
        60 => benign_message().prop_map(|m| Message::text(encode_relay_message(&m))),
        6 => relay_message().prop_map(|m| Message::text(encode_relay_message(&m))),
        2 => mutated_json().prop_map(Message::text),
        1 => "\\PC{0,32}".prop_map(Message::text),
        3 => chunk_frame().prop_map(Message::Binary),
        1 => relay_message().prop_map(|m| Message::Binary(encode_relay_message(&m).into())),
        1 => Just(Message::Ping(Bytes::new())),
        1 => Just(Message::Close(Some(CloseFrame {
            code: 1000.into(),
            reason: "bye".into(),
        }))),
    ]
    .boxed()
}

fn step() -> BoxedStrategy<Step> {
    prop_oneof![
        20 => frame().prop_map(Step::Frame),
        4 => prop_oneof![9 => 0..2_000u64, 1 => 0..(3 * MAX_HEARTBEAT_SECS * 1_000)]
            .prop_map(Step::Advance),
        1 => Just(Step::Shutdown),
    ]
    .boxed()
}

/// A sequence, mostly opened by a valid welcome (so most cases get past the
/// handshake), sometimes by whatever came out.
pub(super) fn steps() -> impl Strategy<Value = (Vec<Step>, Ending)> {
    let welcome = prop_oneof![
        4 => (1..=MAX_HEARTBEAT_SECS).prop_map(|heartbeat_secs| {
            vec![Step::Frame(Message::text(encode_relay_message(&RelayMessage::Welcome {
                protocol: PROTOCOL_VERSION,
                session_id: "s_fuzz".into(),
                heartbeat_secs,
                features: vec![FEATURE_SYSTEM_STATUS.to_owned()],
            })))]
        }),
        1 => Just(Vec::new()),
    ];
    (
        welcome,
        prop::collection::vec(step(), 0..60),
        prop_oneof![Just(Ending::HangUp), Just(Ending::Silence)],
    )
        .prop_map(|(mut first, rest, ending)| {
            first.extend(rest);
            (first, ending)
        })
}
