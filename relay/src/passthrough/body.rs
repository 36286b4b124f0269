//! Bodies through the tunnel, in pieces: the client's request body pumped to the
//! agent as chunks within the stream's window, and the agent's response chunks
//! turned into the client's response body, granting the agent more window as the
//! client reads.
//!
//! Neither side holds a body whole: the relay holds at most the window
//! ([`INITIAL_WINDOW_CHUNKS`] chunks of up to [`CHUNK_PAYLOAD_BYTES`]) per stream
//! and direction, so a slow client slows the agent instead of filling memory.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, BodyDataStream, Bytes};
use futures_util::{FutureExt, StreamExt};
use sapbridge_proto::{CHUNK_PAYLOAD_BYTES, INITIAL_WINDOW_CHUNKS, RelayMessage, encode_chunk};
use tokio::sync::{Semaphore, mpsc};

use super::tunnel::{BodyEvent, Ordered, Tunnel};

/// Why pumping a request body stopped early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PumpError {
    /// The body grew past the limit (bytes).
    #[error("the body exceeds the limit of {0} bytes")]
    TooLarge(usize),
    /// Reading the client's body failed.
    #[error("reading the request body failed: {0}")]
    Client(String),
}

/// Cancels the stream on the agent unless it completed; held by whoever owns the
/// stream's last use (the handler, then the response body).
pub(crate) struct StreamGuard {
    tunnel: Arc<Tunnel>,
    id: u64,
}

impl StreamGuard {
    /// Guards stream `id` of `tunnel`.
    pub(crate) fn new(tunnel: Arc<Tunnel>, id: u64) -> Self {
        Self { tunnel, id }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        // A no-op when the stream already completed or failed.
        self.tunnel.abandon(self.id);
    }
}

/// Sends the client's body to the agent as chunks, the last one flagged. Waits for
/// window before each chunk; when the stream ends first (the agent answered or
/// failed, its window is closed) reads the rest and drops it.
///
/// Pieces the client sends close together are coalesced up to a full chunk; a piece
/// followed by a pause goes out at once.
///
/// # Errors
/// [`PumpError::TooLarge`] past `limit` bytes, [`PumpError::Client`] when the
/// client's body fails.
pub(crate) async fn pump_request(
    tunnel: Arc<Tunnel>,
    id: u64,
    window: Arc<Semaphore>,
    body: Body,
    limit: usize,
) -> Result<(), PumpError> {
    let mut stream = body.into_data_stream();
    let mut pending: Vec<u8> = Vec::with_capacity(CHUNK_PAYLOAD_BYTES);
    let mut total: usize = 0;
    let mut next = stream.next().await;
    loop {
        let piece = match next {
            None => {
                send_chunk(&tunnel, id, &window, &pending, true).await;
                return Ok(());
            }
            Some(Err(error)) => return Err(PumpError::Client(error.to_string())),
            Some(Ok(piece)) => piece,
        };
        tally(&mut total, &piece, limit)?;
        let mut rest: &[u8] = &piece;
        while !rest.is_empty() {
            let take = (CHUNK_PAYLOAD_BYTES - pending.len()).min(rest.len());
            pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if pending.len() == CHUNK_PAYLOAD_BYTES {
                if !send_chunk(&tunnel, id, &window, &pending, false).await {
                    return discard_rest(stream, total, limit).await;
                }
                pending.clear();
            }
        }
        next = match stream.next().now_or_never() {
            Some(ready) => ready,
            None => {
                if !pending.is_empty() {
                    if !send_chunk(&tunnel, id, &window, &pending, false).await {
                        return discard_rest(stream, total, limit).await;
                    }
                    pending.clear();
                }
                stream.next().await
            }
        };
    }
}

/// Reads the rest of a request body that no one takes any more (the backend
/// answered before reading it all, or the stream was cancelled), up to the limit.
/// hyper closes a connection whose request body was left unread, and a client still
/// sending then gets a reset in place of the answer it was sent; read to its end,
/// the connection serves the client's next request. (How long this may take is the
/// caller's to bound.)
async fn discard_rest(
    mut stream: BodyDataStream,
    mut total: usize,
    limit: usize,
) -> Result<(), PumpError> {
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|error| PumpError::Client(error.to_string()))?;
        tally(&mut total, &piece, limit)?;
    }
    Ok(())
}

/// Counts a piece of the client's body against the limit.
fn tally(total: &mut usize, piece: &[u8], limit: usize) -> Result<(), PumpError> {
    *total = total.saturating_add(piece.len());
    if *total > limit {
        return Err(PumpError::TooLarge(limit));
    }
    Ok(())
}

/// Waits for one chunk of window and queues the chunk; `false` when the stream or
/// the session is gone.
async fn send_chunk(
    tunnel: &Tunnel,
    id: u64,
    window: &Semaphore,
    payload: &[u8],
    last: bool,
) -> bool {
    let Ok(permit) = window.acquire().await else {
        return false;
    };
    permit.forget();
    match encode_chunk(id, last, payload) {
        Ok(frame) => tunnel.send_ordered(Ordered::Chunk(Box::new(frame))).await,
        Err(error) => {
            // Unreachable: pieces are cut to the payload size above.
            tracing::error!(%error, "request chunk not encodable");
            false
        }
    }
}

/// The client's response body: the agent's chunks as they come, window granted back
/// every half window read, at most `idle` between two chunks. Ends with an error
/// (the client sees a cut-off response) when the agent aborts, its session dies or
/// it goes quiet; dropping the body (the client left) cancels the stream.
pub(crate) fn response_body(
    tunnel: Arc<Tunnel>,
    guard: StreamGuard,
    body: mpsc::Receiver<BodyEvent>,
    idle: Duration,
) -> Body {
    struct State {
        tunnel: Arc<Tunnel>,
        guard: StreamGuard,
        body: mpsc::Receiver<BodyEvent>,
        read: u32,
        done: bool,
    }
    let state = State {
        tunnel,
        guard,
        body,
        read: 0,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, move |mut s| async move {
        if s.done {
            return None;
        }
        let item = match tokio::time::timeout(idle, s.body.recv()).await {
            Err(_) => {
                tracing::warn!(
                    stream_id = s.guard.id,
                    "agent silent mid-body; response cut off"
                );
                s.done = true;
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the agent sent no body chunk in time",
                ))
            }
            Ok(Some(BodyEvent::Data { payload, last })) => {
                s.read += 1;
                if last {
                    s.done = true;
                } else if s.read >= INITIAL_WINDOW_CHUNKS / 2 {
                    s.tunnel.send_control(RelayMessage::HttpWindow {
                        stream_id: s.guard.id,
                        chunks: s.read,
                    });
                    s.read = 0;
                }
                Ok::<Bytes, std::io::Error>(payload)
            }
            Ok(Some(BodyEvent::Failed(failure))) => {
                tracing::warn!(stream_id = s.guard.id, %failure, "agent aborted the response body");
                s.done = true;
                Err(std::io::Error::other(failure.to_string()))
            }
            Ok(None) => {
                tracing::warn!(
                    stream_id = s.guard.id,
                    "agent gone mid-body; response cut off"
                );
                s.done = true;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "the agent connection was lost",
                ))
            }
        };
        Some((item, s))
    });
    Body::from_stream(stream)
}
