//! Property tests: decoding never panics, oversize frames are refused, and every
//! message survives an encode/decode round trip.

use proptest::prelude::*;
use sapbridge_proto::{
    AgentMessage, CallResult, CloseReason, CommitPolicy, DecodeError, ErrorGroup, FunctionCall,
    MAX_FRAME_BYTES, Outcome, Parameters, RelayMessage, RfcError, SystemCapabilities,
    TransactionOutcome, Unit, UnitRef, WorkFrame, decode_agent_message, decode_relay_message,
    encode_agent_message, encode_relay_message,
};
use serde_json::Value;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[A-Z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn parameters() -> impl Strategy<Value = Parameters> {
    prop::collection::btree_map("[A-Z_]{1,12}", json_value(), 0..4)
        .prop_map(|m| m.into_iter().collect())
}

fn rfc_error() -> impl Strategy<Value = RfcError> {
    (
        prop_oneof![
            Just(ErrorGroup::AbapApplicationFailure),
            Just(ErrorGroup::CommunicationFailure),
            Just(ErrorGroup::NotAllowed),
            Just(ErrorGroup::OutcomeUnknown),
        ],
        "[A-Z_]{0,20}",
        ".{0,40}",
        "[A-Z0-9]{0,3}",
    )
        .prop_map(|(g, k, m, n)| {
            RfcError::new(g, k, m)
                .with_message("SV", "E", &n)
                .with_vars("a", "", "c", "")
        })
}

fn call_result() -> impl Strategy<Value = CallResult> {
    prop_oneof![
        parameters().prop_map(CallResult::Ok),
        rfc_error().prop_map(CallResult::Error)
    ]
}

fn unit() -> impl Strategy<Value = Unit> {
    (
        "[a-z0-9_]{1,30}",
        1u32..10,
        "[A-Z0-9]{1,8}",
        prop::option::of(any::<u64>()),
        any::<bool>(),
        prop::collection::vec(
            ("[A-Z_]{1,30}", parameters()).prop_map(|(function, parameters)| FunctionCall {
                function,
                parameters,
            }),
            1..4,
        ),
        prop_oneof![
            Just(CommitPolicy::None),
            Just(CommitPolicy::CommitOnSuccess),
            Just(CommitPolicy::Rollback)
        ],
        prop::option::of(".{0,60}"),
    )
        .prop_map(
            |(call_id, attempt, system, deadline_ms, in_doubt, calls, commit, traceparent)| Unit {
                call_id,
                attempt,
                system,
                deadline_ms,
                in_doubt,
                calls,
                commit,
                traceparent,
            },
        )
}

fn agent_message() -> impl Strategy<Value = AgentMessage> {
    let outcome = prop_oneof![
        (
            prop::collection::vec(call_result(), 0..3),
            prop::option::of((
                any::<bool>(),
                prop::option::of(0usize..5),
                prop::option::of(".{0,10}"),
                prop::option::of(call_result())
            ))
        )
            .prop_map(|(results, t)| Outcome::Completed {
                results,
                transaction: t.map(
                    |(committed, failed_call, reason, result)| TransactionOutcome {
                        committed,
                        failed_call,
                        reason,
                        result
                    }
                ),
            }),
        rfc_error().prop_map(|error| Outcome::Failed { error }),
    ];
    prop_oneof![
        (
            any::<u32>(),
            ".{0,10}",
            ".{0,10}",
            prop::collection::vec("[A-Z]{1,5}", 0..3),
            any::<u32>(),
            prop::collection::vec(
                ("[A-Z]{1,5}", any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
                    |(system, functions, http, function_search)| SystemCapabilities {
                        system,
                        functions,
                        http,
                        function_search,
                    }
                ),
                0..3
            )
        )
            .prop_map(
                |(protocol, agent_id, agent_version, systems, credits, capabilities)| {
                    AgentMessage::Hello {
                        reconnects: 0,
                        protocol,
                        agent_id,
                        agent_version,
                        systems,
                        credits,
                        capabilities,
                    }
                }
            ),
        any::<u32>().prop_map(|credits| AgentMessage::Credits { credits }),
        Just(AgentMessage::Drain),
        Just(AgentMessage::Heartbeat),
        ("[a-z0-9]{1,10}", any::<u32>(), outcome).prop_map(|(call_id, attempt, outcome)| {
            AgentMessage::Outcome {
                call_id,
                attempt,
                outcome,
            }
        }),
        Just(AgentMessage::Close {
            reason: CloseReason::ShuttingDown
        }),
    ]
}

fn relay_message() -> impl Strategy<Value = RelayMessage> {
    prop_oneof![
        (
            any::<u32>(),
            ".{0,10}",
            any::<u64>(),
            prop::collection::vec(".{0,10}", 0..3)
        )
            .prop_map(|(protocol, session_id, heartbeat_secs, features)| {
                RelayMessage::Welcome {
                    protocol,
                    session_id,
                    heartbeat_secs,
                    features,
                }
            }),
        unit().prop_map(|unit| RelayMessage::Work { unit }),
        ".{0,10}".prop_map(|call_id| RelayMessage::Ack { call_id }),
        Just(RelayMessage::Heartbeat),
        (any::<u32>(), any::<u32>()).prop_map(|(expected, got)| RelayMessage::Close {
            reason: CloseReason::ProtocolMismatch { expected, got }
        }),
    ]
}

proptest! {
    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_agent_message(&bytes);
        let _ = decode_relay_message(&bytes);
    }

    #[test]
    fn json_shaped_garbage_is_an_error_not_a_panic(value in json_value()) {
        let text = value.to_string();
        // Any JSON that happens to be a valid message is fine; the rest must be errors.
        if let Err(e) = decode_agent_message(text.as_bytes()) {
            prop_assert!(matches!(e, DecodeError::Malformed(_)));
        }
        if let Err(e) = decode_relay_message(text.as_bytes()) {
            prop_assert!(matches!(e, DecodeError::Malformed(_)));
        }
    }

    #[test]
    fn truncated_frames_are_errors(msg in relay_message(), cut in 0usize..64) {
        let text = encode_relay_message(&msg);
        let end = text.len().saturating_sub(cut + 1);
        prop_assert!(decode_relay_message(&text.as_bytes()[..end]).is_err());
    }

    #[test]
    fn agent_messages_round_trip(msg in agent_message()) {
        let text = encode_agent_message(&msg);
        prop_assert_eq!(decode_agent_message(text.as_bytes()).unwrap(), msg);
    }

    #[test]
    fn relay_messages_round_trip(msg in relay_message()) {
        let text = encode_relay_message(&msg);
        prop_assert_eq!(decode_relay_message(text.as_bytes()).unwrap(), msg);
    }

    /// A work frame encoded from borrowed fields is byte for byte the `Work`
    /// message of the owned unit, and an agent decodes it to that unit.
    #[test]
    fn work_frames_encode_as_the_work_message(unit in unit()) {
        let frame = WorkFrame::encode(UnitRef::from(&unit));
        let message = RelayMessage::Work { unit: unit.clone() };
        prop_assert_eq!(&frame.text, &encode_relay_message(&message));
        prop_assert_eq!(decode_relay_message(frame.text.as_bytes()).unwrap(), message);
        prop_assert_eq!(&UnitRef::from(&unit).to_unit(), &unit);
        prop_assert_eq!(frame.call_id, unit.call_id);
        prop_assert_eq!(frame.attempt, unit.attempt);
    }
}

#[test]
fn oversize_frame_is_refused_before_parsing() {
    let frame = vec![b' '; MAX_FRAME_BYTES + 1];
    assert!(matches!(
        decode_agent_message(&frame),
        Err(DecodeError::TooLarge { size }) if size == MAX_FRAME_BYTES + 1
    ));
    assert!(matches!(
        decode_relay_message(&frame),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn wire_shape_is_stable() {
    let hello = AgentMessage::Hello {
        protocol: 1,
        agent_id: "a".into(),
        agent_version: "0.1.0".into(),
        systems: vec!["SIM".into()],
        credits: 8,
        capabilities: Vec::new(),
        reconnects: 0,
    };
    // A version 1 hello, as version 1 agents send it, decodes to the same message.
    let v1 = r#"{"type":"hello","protocol":1,"agent_id":"a","agent_version":"0.1.0","systems":["SIM"],"credits":8}"#;
    assert_eq!(encode_agent_message(&hello), v1);
    assert_eq!(decode_agent_message(v1.as_bytes()).unwrap(), hello);
    let hello = AgentMessage::Hello {
        protocol: 2,
        agent_id: "a".into(),
        agent_version: "0.2.0".into(),
        systems: vec!["SIM".into()],
        credits: 8,
        capabilities: vec![SystemCapabilities {
            system: "SIM".into(),
            functions: true,
            http: false,
            function_search: false,
        }],
        reconnects: 0,
    };
    assert_eq!(
        encode_agent_message(&hello),
        r#"{"type":"hello","protocol":2,"agent_id":"a","agent_version":"0.2.0","systems":["SIM"],"credits":8,"capabilities":[{"system":"SIM","functions":true,"http":false}]}"#
    );
    // An agent that filters function searches says so; one that does not (every
    // older agent) leaves the field out and decodes as not filtering.
    let filtering = r#"{"type":"hello","protocol":2,"agent_id":"a","agent_version":"0.3.0","systems":["SIM"],"credits":8,"capabilities":[{"system":"SIM","functions":true,"http":false,"function_search":true}]}"#;
    let AgentMessage::Hello { capabilities, .. } =
        decode_agent_message(filtering.as_bytes()).unwrap()
    else {
        panic!("not a hello");
    };
    assert!(capabilities[0].function_search);
    assert_eq!(
        encode_agent_message(&AgentMessage::Hello {
            protocol: 2,
            agent_id: "a".into(),
            agent_version: "0.3.0".into(),
            systems: vec!["SIM".into()],
            credits: 8,
            capabilities,
            reconnects: 0,
        }),
        filtering
    );
    // An agent that reconnected says how often; zero (and every older agent)
    // leaves the field out.
    let reconnected = r#"{"type":"hello","protocol":2,"agent_id":"a","agent_version":"0.3.0","systems":["SIM"],"credits":8,"reconnects":3}"#;
    let decoded = decode_agent_message(reconnected.as_bytes()).unwrap();
    assert!(matches!(decoded, AgentMessage::Hello { reconnects: 3, .. }));
    assert_eq!(encode_agent_message(&decoded), reconnected);
    assert!(
        !SystemCapabilities::of(&[], "SIM").function_search,
        "protocol 1"
    );
    let unit = Unit {
        call_id: "c_1".into(),
        attempt: 2,
        system: "SIM".into(),
        deadline_ms: Some(1500),
        in_doubt: true,
        calls: Vec::new(),
        commit: CommitPolicy::None,
        traceparent: None,
    };
    assert_eq!(
        encode_relay_message(&RelayMessage::Work { unit }),
        r#"{"type":"work","unit":{"call_id":"c_1","attempt":2,"system":"SIM","deadline_ms":1500,"in_doubt":true,"calls":[],"commit":"none"}}"#
    );
    let err = RfcError::new(ErrorGroup::AbapApplicationFailure, "FU_NOT_FOUND", "x");
    let v = serde_json::to_value(&err).unwrap();
    assert_eq!(v["group"], "ABAP_APPLICATION_FAILURE");
}

#[test]
fn secret_is_masked_in_debug() {
    let s = sapbridge_proto::Secret::new("hunter2");
    assert_eq!(format!("{s:?} {s}"), "MASKED MASKED");
}

#[test]
fn close_reasons_have_codes_and_text() {
    let r = CloseReason::ProtocolMismatch {
        expected: 1,
        got: 2,
    };
    assert_eq!(r.code(), 1002);
    assert!(r.to_string().contains("expected 1, got 2"));
}
