//! Reading and writing protocol frames over any WebSocket-shaped `Sink`/`Stream`
//! of axum [`Message`]s, so the session logic runs the same over a real socket and
//! over channels in unit tests.

use axum::extract::ws::{CloseFrame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use sapbridge_proto::{
    AgentMessage, BodyChunk, CloseReason, DecodeError, MAX_FRAME_BYTES, RelayMessage,
    decode_agent_message, encode_relay_message, is_chunk_frame,
};

/// What arrived from the agent.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A protocol message (boxed: a hello is much larger than the other variants).
    Message(Box<AgentMessage>),
    /// A pass-through body chunk (a binary frame starting with the chunk magic).
    Chunk(BodyChunk),
    /// A control frame (ping/pong): proof of life, nothing else.
    Control,
    /// The socket closed or failed.
    Closed,
    /// A frame broke the protocol; the session must close with this reason.
    Bad(CloseReason),
}

/// Reads the next frame. Cancel-safe (a `StreamExt::next` underneath).
pub(crate) async fn read<R, E>(stream: &mut R) -> Incoming
where
    R: Stream<Item = Result<Message, E>> + Unpin,
    E: std::fmt::Display,
{
    let message = match stream.next().await {
        None => return Incoming::Closed,
        Some(Err(error)) => {
            let text = error.to_string();
            return match too_long_size(&text) {
                Some(size) => Incoming::Bad(CloseReason::FrameTooLarge { size }),
                None => {
                    tracing::debug!(error = %text, "agent socket read failed");
                    Incoming::Closed
                }
            };
        }
        Some(Ok(message)) => message,
    };
    let bytes: &[u8] = match &message {
        Message::Text(text) => text.as_str().as_bytes(),
        Message::Binary(bytes) if is_chunk_frame(bytes) => {
            return match BodyChunk::decode(bytes.clone()) {
                Ok(chunk) => Incoming::Chunk(chunk),
                Err(error) => Incoming::Bad(CloseReason::ProtocolError {
                    detail: format!("bad body chunk: {error}"),
                }),
            };
        }
        Message::Binary(bytes) => bytes,
        Message::Ping(_) | Message::Pong(_) => return Incoming::Control,
        Message::Close(_) => return Incoming::Closed,
    };
    match decode_agent_message(bytes) {
        Ok(message) => Incoming::Message(Box::new(message)),
        Err(DecodeError::TooLarge { size }) => Incoming::Bad(CloseReason::FrameTooLarge { size }),
        Err(DecodeError::Malformed(error)) => Incoming::Bad(CloseReason::ProtocolError {
            detail: format!("malformed frame: {error}"),
        }),
    }
}

/// The size in a WebSocket library's "message too long" error, if it is one.
fn too_long_size(error: &str) -> Option<usize> {
    let lower = error.to_ascii_lowercase();
    if !(lower.contains("too long") || lower.contains("too big") || lower.contains("capacity")) {
        return None;
    }
    let digits: String = lower
        .split("too long")
        .nth(1)
        .unwrap_or(&lower)
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    Some(digits.parse().unwrap_or(MAX_FRAME_BYTES + 1))
}

/// Queues one encoded chunk frame without flushing; [`flush`] sends what was queued.
///
/// # Errors
/// The sink's error when the socket is gone.
pub(crate) async fn feed_chunk<S>(sink: &mut S, frame: axum::body::Bytes) -> Result<(), S::Error>
where
    S: Sink<Message> + Unpin,
{
    sink.feed(Message::Binary(frame)).await
}

/// Sends one protocol message.
///
/// # Errors
/// The sink's error when the socket is gone.
pub(crate) async fn send<S>(sink: &mut S, message: &RelayMessage) -> Result<(), S::Error>
where
    S: Sink<Message> + Unpin,
{
    sink.send(Message::text(encode_relay_message(message)))
        .await
}

/// Queues one protocol message without flushing; [`flush`] sends what was queued.
///
/// # Errors
/// The sink's error when the socket is gone.
pub(crate) async fn feed<S>(sink: &mut S, message: &RelayMessage) -> Result<(), S::Error>
where
    S: Sink<Message> + Unpin,
{
    sink.feed(Message::text(encode_relay_message(message)))
        .await
}

/// Queues one encoded protocol message (a [`sapbridge_proto::WorkFrame`]'s text)
/// without flushing.
///
/// # Errors
/// The sink's error when the socket is gone.
pub(crate) async fn feed_text<S>(sink: &mut S, text: String) -> Result<(), S::Error>
where
    S: Sink<Message> + Unpin,
{
    sink.feed(Message::text(text)).await
}

/// Flushes what [`feed`] queued.
///
/// # Errors
/// The sink's error when the socket is gone.
pub(crate) async fn flush<S>(sink: &mut S) -> Result<(), S::Error>
where
    S: Sink<Message> + Unpin,
{
    sink.flush().await
}

/// Closes the session: a [`RelayMessage::Close`] with the reason, then a WebSocket
/// close frame with the reason's code and text. Errors are ignored (the peer may be
/// gone already).
pub(crate) async fn close<S>(sink: &mut S, reason: CloseReason)
where
    S: Sink<Message> + Unpin,
{
    let mut text = reason.to_string();
    // A close frame's reason must fit in 123 bytes.
    while text.len() > 123 {
        text.pop();
    }
    let code = reason.code();
    let _ = send(sink, &RelayMessage::Close { reason }).await;
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: text.into(),
        })))
        .await;
    let _ = sink.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_too_long_errors() {
        assert_eq!(
            too_long_size("Space limit exceeded: Message too long: 17000000 > 16777216"),
            Some(17_000_000)
        );
        assert_eq!(
            too_long_size("Connection reset without closing handshake"),
            None
        );
    }

    #[tokio::test]
    async fn decodes_and_flags_garbage() {
        let frames: Vec<Result<Message, String>> = vec![
            Ok(Message::text(r#"{"type":"heartbeat"}"#)),
            Ok(Message::text("nonsense")),
            Ok(Message::Ping(Default::default())),
        ];
        let mut stream = futures_util::stream::iter(frames);
        assert!(matches!(
            read(&mut stream).await,
            Incoming::Message(m) if *m == AgentMessage::Heartbeat
        ));
        assert!(matches!(
            read(&mut stream).await,
            Incoming::Bad(CloseReason::ProtocolError { .. })
        ));
        assert!(matches!(read(&mut stream).await, Incoming::Control));
        assert!(matches!(read(&mut stream).await, Incoming::Closed));
    }
}
