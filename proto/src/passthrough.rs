//! HTTP pass-through messages: the JSON control messages that open, answer, pace and
//! end a tunnelled HTTP request, and the header rules both sides share.
//!
//! A pass-through request is a *stream* with a relay-assigned id, unique within one
//! agent session:
//!
//! 1. relay → agent: [`crate::RelayMessage::HttpRequest`] with an [`HttpRequestHead`];
//!    when `body` is true the request body follows as binary [`crate::BodyChunk`]s,
//!    the last one flagged `last`;
//! 2. agent → relay: [`crate::AgentMessage::HttpResponse`] with an
//!    [`HttpResponseHead`], then the response body as binary chunks, the last one
//!    flagged `last` (an empty body is one empty last chunk); or, at any point,
//!    [`crate::AgentMessage::HttpError`] with an [`HttpFailure`] — after the head it
//!    aborts the body;
//! 3. either side paces the other: a sender may have at most [`INITIAL_WINDOW_CHUNKS`]
//!    chunks of a stream outstanding; the receiver grants more with `HttpWindow`
//!    (relay → agent for response chunks, agent → relay for request chunks) as it
//!    hands chunks on, so neither side buffers more than the window per stream;
//! 4. relay → agent: [`crate::RelayMessage::HttpCancel`] abandons a stream (client
//!    gone, timeout, body over the limit); the agent aborts the backend request.
//!
//! Messages for a stream id the receiver does not know (already finished or
//! cancelled) are ignored, never a protocol error: cancels and last chunks cross on
//! the wire.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// How many chunks of one stream a sender may have outstanding before the receiver
/// grants more. With [`crate::CHUNK_PAYLOAD_BYTES`] per chunk this bounds each
/// side's buffer per stream to 1 MiB.
pub const INITIAL_WINDOW_CHUNKS: u32 = 16;

/// Headers that describe one connection, not the message (RFC 9110 section 7.6.1),
/// plus `host`: neither side forwards them. Lower case.
pub const HOP_BY_HOP_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// Whether a header (any case) is never forwarded: a hop-by-hop header or `host`.
/// Headers named in a message's own `Connection` header are hop-by-hop too; the
/// forwarding side checks those itself.
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP_HEADERS
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name))
}

/// A header value as carried in JSON: each byte becomes the character with that code
/// (ISO-8859-1), so values that are not UTF-8 survive the trip unchanged.
pub fn header_value_to_wire(value: &[u8]) -> String {
    // ASCII, nearly every value, is the same text: one copy.
    match std::str::from_utf8(value) {
        Ok(text) if value.is_ascii() => text.to_owned(),
        _ => value.iter().map(|&b| char::from(b)).collect(),
    }
}

/// The bytes of a header value carried by [`header_value_to_wire`] (borrowed when
/// the value is ASCII); `None` when a character is beyond `U+00FF` (the value did
/// not come from a header).
pub fn header_value_from_wire(value: &str) -> Option<Cow<'_, [u8]>> {
    if value.is_ascii() {
        return Some(Cow::Borrowed(value.as_bytes()));
    }
    value
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect::<Option<Vec<u8>>>()
        .map(Cow::Owned)
}

/// A header as carried in JSON: `[name, value]`, value per [`header_value_to_wire`].
pub type WireHeader = (String, String);

/// The start of a tunnelled request (relay → agent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequestHead {
    /// The stream id, unique within the agent session.
    pub stream_id: u64,
    /// The system whose HTTP service is called.
    pub system: String,
    /// The method (`GET`, `POST`, ...), as the client sent it.
    pub method: String,
    /// The path below the system's base URL, starting with `/`, still
    /// percent-encoded as the client sent it. The agent checks it against its own
    /// allowlist.
    pub path: String,
    /// The query string without `?`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The end-to-end request headers the client sent, minus hop-by-hop headers and
    /// the client's sapbridge credentials.
    pub headers: Vec<WireHeader>,
    /// Whether body chunks follow.
    pub body: bool,
    /// How long the relay waits for the response head, in milliseconds.
    pub timeout_ms: u64,
}

/// The start of a tunnelled response (agent → relay). Body chunks always follow,
/// the last one flagged `last`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpResponseHead {
    /// The stream id of the request.
    pub stream_id: u64,
    /// The backend's HTTP status.
    pub status: u16,
    /// The backend's end-to-end response headers.
    pub headers: Vec<WireHeader>,
}

/// Why a tunnelled request failed (agent → relay).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpFailure {
    /// What kind of failure; decides the relay's HTTP status.
    pub kind: HttpFailureKind,
    /// What happened, for the client (never a credential).
    pub detail: String,
}

impl HttpFailure {
    /// A failure of `kind` saying `detail`.
    pub fn new(kind: HttpFailureKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }
}

/// The kinds of pass-through failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpFailureKind {
    /// The agent has no HTTP pass-through configured for the system (relay: 403).
    NotConfigured,
    /// The agent's path allowlist denies the path (relay: 403 `not-allowed`).
    NotAllowed,
    /// The path or a header is unusable: traversal, bad encoding (relay: 400).
    BadRequest,
    /// The request body is larger than the agent accepts (relay: 413).
    TooLarge,
    /// The agent runs as many pass-through requests as it allows (relay: 503).
    Busy,
    /// The backend could not be reached or broke the connection (relay: 502).
    Unreachable,
    /// The backend did not answer in time (relay: 504).
    Timeout,
    /// The peer broke the stream rules (window overrun, chunk after the last).
    Protocol,
}

impl HttpFailureKind {
    /// The kind's name as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotConfigured => "not_configured",
            Self::NotAllowed => "not_allowed",
            Self::BadRequest => "bad_request",
            Self::TooLarge => "too_large",
            Self::Busy => "busy",
            Self::Unreachable => "unreachable",
            Self::Timeout => "timeout",
            Self::Protocol => "protocol",
        }
    }
}

impl std::fmt::Display for HttpFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_survive_latin1_round_trip() {
        let raw: Vec<u8> = (0u8..=255).collect();
        let wire = header_value_to_wire(&raw);
        assert_eq!(
            header_value_from_wire(&wire).as_deref(),
            Some(raw.as_slice())
        );
        assert_eq!(header_value_from_wire("snow ☃"), None);
        // ASCII is carried as it is, and read back without a copy.
        assert_eq!(header_value_to_wire(b"text/plain; q=1"), "text/plain; q=1");
        assert!(matches!(
            header_value_from_wire("text/plain"),
            Some(Cow::Borrowed(b"text/plain"))
        ));
    }

    #[test]
    fn hop_by_hop_is_case_insensitive() {
        assert!(is_hop_by_hop("Transfer-Encoding"));
        assert!(is_hop_by_hop("HOST"));
        assert!(!is_hop_by_hop("content-type"));
        assert!(!is_hop_by_hop("content-length"));
    }
}
