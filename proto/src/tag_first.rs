//! Tag-first decoding of the messages that carry the traffic.
//!
//! The message enums are internally tagged (`{"type": "outcome", …}`). serde's
//! derived decoder for that shape cannot know where the tag is, so it first copies
//! the whole message into its own buffer of every key, string and map, then decodes
//! the variant from that copy. Our encoders write the tag first, so for the busy
//! variants (a unit and its outcome, a pass-through head, an ack) these decoders
//! read the tag and then the variant's fields straight from the frame.
//!
//! Anything else (another variant, a tag that is not the first key, a bad field)
//! is an error here, and the caller decodes the frame the derived way: that path
//! stays the one definition of what is valid, and it gives the error messages.

use std::fmt;

use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::{
    AgentMessage, CallResult, HttpRequestHead, HttpResponseHead, Outcome, RelayMessage, RfcError,
    TransactionOutcome, Unit,
};

/// The tag's key, which must come first.
#[derive(Deserialize)]
enum TypeKey {
    #[serde(rename = "type")]
    Type,
}

/// The key of [`Outcome`]'s tag.
#[derive(Deserialize)]
enum StatusKey {
    #[serde(rename = "status")]
    Status,
}

/// The agent messages decoded here; any other tag falls back.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum AgentTag {
    Outcome,
    HttpResponse,
    #[serde(other)]
    Other,
}

/// The relay messages decoded here; any other tag falls back.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum RelayTag {
    Work,
    Ack,
    HttpRequest,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum OutcomeTag {
    Completed,
    Failed,
}

/// The fields of [`AgentMessage::Outcome`].
#[derive(Deserialize)]
struct OutcomeFields {
    call_id: String,
    attempt: u32,
    outcome: TagFirst<Outcome>,
}

/// The fields of [`AgentMessage::HttpResponse`].
#[derive(Deserialize)]
struct HttpResponseFields {
    response: HttpResponseHead,
}

/// The fields of [`RelayMessage::Work`].
#[derive(Deserialize)]
struct WorkFields {
    unit: Unit,
}

/// The fields of [`RelayMessage::Ack`].
#[derive(Deserialize)]
struct AckFields {
    call_id: String,
}

/// The fields of [`RelayMessage::HttpRequest`].
#[derive(Deserialize)]
struct HttpRequestFields {
    request: HttpRequestHead,
}

/// The fields of [`Outcome::Completed`].
#[derive(Deserialize)]
struct CompletedFields {
    results: Vec<CallResult>,
    transaction: Option<TransactionOutcome>,
}

/// The fields of [`Outcome::Failed`].
#[derive(Deserialize)]
struct FailedFields {
    error: RfcError,
}

/// A `T` decoded tag first; see the module docs.
pub(crate) struct TagFirst<T>(pub(crate) T);

/// Decodes one of the types above from a map whose first key is its tag.
trait Tagged: Sized {
    /// For error messages.
    const NAME: &'static str;
    /// The tag's key: decoding it fails for any other key.
    type Key: for<'de> Deserialize<'de>;
    /// Reads the tag (its key already read) and the rest of the map.
    fn rest<'de, A: MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
}

/// The rest of the map as `T`.
fn fields<'de, T: Deserialize<'de>, A: MapAccess<'de>>(map: A) -> Result<T, A::Error> {
    T::deserialize(MapAccessDeserializer::new(map))
}

fn not_here<E: de::Error>(name: &str) -> E {
    E::custom(format_args!("{name}: not a variant decoded tag first"))
}

impl Tagged for AgentMessage {
    const NAME: &'static str = "agent message";
    type Key = TypeKey;

    fn rest<'de, A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        Ok(match map.next_value::<AgentTag>()? {
            AgentTag::Outcome => {
                let f: OutcomeFields = fields(map)?;
                Self::Outcome {
                    call_id: f.call_id,
                    attempt: f.attempt,
                    outcome: f.outcome.0,
                }
            }
            AgentTag::HttpResponse => Self::HttpResponse {
                response: fields::<HttpResponseFields, A>(map)?.response,
            },
            AgentTag::Other => return Err(not_here(Self::NAME)),
        })
    }
}

impl Tagged for RelayMessage {
    const NAME: &'static str = "relay message";
    type Key = TypeKey;

    fn rest<'de, A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        Ok(match map.next_value::<RelayTag>()? {
            RelayTag::Work => Self::Work {
                unit: fields::<WorkFields, A>(map)?.unit,
            },
            RelayTag::Ack => Self::Ack {
                call_id: fields::<AckFields, A>(map)?.call_id,
            },
            RelayTag::HttpRequest => Self::HttpRequest {
                request: fields::<HttpRequestFields, A>(map)?.request,
            },
            RelayTag::Other => return Err(not_here(Self::NAME)),
        })
    }
}

impl Tagged for Outcome {
    const NAME: &'static str = "outcome";
    type Key = StatusKey;

    fn rest<'de, A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        Ok(match map.next_value::<OutcomeTag>()? {
            OutcomeTag::Completed => {
                let f: CompletedFields = fields(map)?;
                Self::Completed {
                    results: f.results,
                    transaction: f.transaction,
                }
            }
            OutcomeTag::Failed => Self::Failed {
                error: fields::<FailedFields, A>(map)?.error,
            },
        })
    }
}

struct TagFirstVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Tagged> Visitor<'de> for TagFirstVisitor<T> {
    type Value = TagFirst<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an {} with its tag first", T::NAME)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        if map.next_key::<T::Key>()?.is_none() {
            return Err(de::Error::custom(format_args!(
                "{}: the tag is not the first key",
                T::NAME
            )));
        }
        T::rest(map).map(TagFirst)
    }
}

impl<'de, T: Tagged> Deserialize<'de> for TagFirst<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(TagFirstVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, json};

    use super::*;
    use crate::{
        CommitPolicy, ErrorGroup, FunctionCall, decode_agent_message, decode_relay_message,
        encode_agent_message, encode_relay_message,
    };

    fn fast<T: Tagged>(text: &str) -> Option<T> {
        serde_json::from_str::<TagFirst<T>>(text).ok().map(|t| t.0)
    }

    fn error() -> RfcError {
        RfcError::new(ErrorGroup::NotAllowed, "K", "m")
    }

    /// What our encoders write is decoded here, to the message encoded.
    #[test]
    fn busy_variants_decode_tag_first() {
        let params: Map<String, serde_json::Value> = json!({"ECHOTEXT": "hi", "T": [{"A": 1}]})
            .as_object()
            .cloned()
            .unwrap();
        for outcome in [
            Outcome::Failed { error: error() },
            Outcome::Completed {
                results: vec![CallResult::Ok(params.clone()), CallResult::Error(error())],
                transaction: Some(TransactionOutcome {
                    committed: false,
                    failed_call: Some(1),
                    reason: Some("r".into()),
                    result: None,
                }),
            },
        ] {
            let message = AgentMessage::Outcome {
                call_id: "c1".into(),
                attempt: 2,
                outcome,
            };
            assert_eq!(fast(&encode_agent_message(&message)), Some(message));
        }
        let response = AgentMessage::HttpResponse {
            response: HttpResponseHead {
                stream_id: 7,
                status: 201,
                headers: vec![("location".into(), "/x".into())],
            },
        };
        assert_eq!(fast(&encode_agent_message(&response)), Some(response));
        for message in [
            RelayMessage::Work {
                unit: Unit {
                    call_id: "c1".into(),
                    attempt: 1,
                    system: "PRD".into(),
                    deadline_ms: Some(5),
                    in_doubt: true,
                    calls: vec![FunctionCall {
                        function: "STFC_CONNECTION".into(),
                        parameters: params.clone(),
                    }],
                    commit: CommitPolicy::CommitOnSuccess,
                    traceparent: Some(
                        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
                    ),
                },
            },
            RelayMessage::Ack {
                call_id: "c1".into(),
            },
            RelayMessage::HttpRequest {
                request: HttpRequestHead {
                    stream_id: 3,
                    system: "PRD".into(),
                    method: "GET".into(),
                    path: "/sap/opu".into(),
                    query: Some("a=1".into()),
                    headers: vec![],
                    body: false,
                    timeout_ms: 30_000,
                },
            },
        ] {
            assert_eq!(fast(&encode_relay_message(&message)), Some(message));
        }
    }

    /// Another variant, the tag not first, an outcome's tag not first: left to the
    /// derived decoder, which still takes what is valid.
    #[test]
    fn anything_else_is_left_to_the_derived_decoder() {
        let outcome_status_last = json!({"status": "failed", "error": error()});
        let cases = [
            r#"{"type":"heartbeat"}"#.to_owned(),
            json!({"type": "ack", "call_id": "c1"}).to_string(),
            format!(
                r#"{{"type":"outcome","call_id":"c1","attempt":1,"outcome":{outcome_status_last}}}"#
            ),
        ];
        for text in &cases {
            assert!(fast::<RelayMessage>(text).is_none(), "{text}");
            assert!(fast::<AgentMessage>(text).is_none(), "{text}");
        }
        assert!(decode_agent_message(cases[0].as_bytes()).is_ok());
        assert!(decode_relay_message(cases[1].as_bytes()).is_ok());
        assert!(decode_agent_message(cases[2].as_bytes()).is_ok());
    }
}
