//! The pass-through side of one agent session: its table of open streams, the
//! channels the session loop drains onto the socket, and the routing of what the
//! agent sends back (response heads, body chunks, window grants, errors).
//!
//! Order: a stream's request head and body chunks share one queue, so the agent
//! never sees a chunk before its head; grants and cancels may overtake them.
//!
//! Concurrency: HTTP handlers open streams and the session loop delivers to them;
//! both go through one short-held mutex around the table, never held across an
//! await. Delivery never blocks the session loop: a stream's response body channel
//! holds [`INITIAL_WINDOW_CHUNKS`] chunks plus one failure, exactly what the agent
//! may send before the relay grants more, so `try_send` only fails when the agent
//! overruns its window — which cancels that stream, not the session.
//!
//! When the session ends, [`Tunnel::close`] drops every stream's senders: handlers
//! still waiting for a head see the agent gone (502), body streams end without their
//! last chunk (the client's response is cut off).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::Bytes;
use sapbridge_proto::{
    BodyChunk, HttpFailure, HttpFailureKind, HttpResponseHead, INITIAL_WINDOW_CHUNKS, RelayMessage,
};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Data frames (encoded chunks) queued for the socket before senders wait.
const DATA_QUEUE_FRAMES: usize = 32;
/// The most request-chunk permits a stream may accumulate from window grants.
const MAX_WINDOW_CHUNKS: usize = 1024;

/// What a response body stream receives.
#[derive(Debug)]
pub(crate) enum BodyEvent {
    /// A piece of the body; `last` ends it.
    Data {
        /// The bytes.
        payload: Bytes,
        /// Whether it is the last piece.
        last: bool,
    },
    /// The agent aborted the body.
    Failed(HttpFailure),
}

/// A stream's frame in order: its request head, then its body chunks. Both boxed,
/// like the control messages: a channel's first block holds 32 items, allocated
/// for every session whether it tunnels or not.
#[derive(Debug)]
pub(crate) enum Ordered {
    /// The request head.
    Message(Box<RelayMessage>),
    /// An encoded request body chunk.
    Chunk(Box<Bytes>),
}

/// What the session loop writes to the socket for pass-through streams.
#[derive(Debug)]
pub(crate) struct TunnelOutbound {
    /// Window grants and cancels: small, bounded in number by the open streams, so
    /// unbounded; their order relative to the data does not matter.
    pub(crate) control: mpsc::UnboundedReceiver<Box<RelayMessage>>,
    /// Request heads and body chunks, in the order each stream sent them (a head
    /// must reach the agent before its chunks); bounded, senders wait.
    pub(crate) data: mpsc::Receiver<Ordered>,
}

struct Slot {
    head: Option<oneshot::Sender<Result<HttpResponseHead, HttpFailure>>>,
    body: mpsc::Sender<BodyEvent>,
    request_window: Arc<Semaphore>,
}

/// One agent session's pass-through streams.
pub(crate) struct Tunnel {
    control: mpsc::UnboundedSender<Box<RelayMessage>>,
    data: mpsc::Sender<Ordered>,
    outbound: Mutex<Option<TunnelOutbound>>,
    streams: Mutex<HashMap<u64, Slot>>,
    next_id: AtomicU64,
    closed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel")
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

/// A stream just opened: its id and the ends the HTTP handler holds.
pub(crate) struct OpenStream {
    /// The stream id.
    pub(crate) id: u64,
    /// The response head (or the failure) arrives here.
    pub(crate) head: oneshot::Receiver<Result<HttpResponseHead, HttpFailure>>,
    /// The response body arrives here.
    pub(crate) body: mpsc::Receiver<BodyEvent>,
    /// One permit per request chunk the agent is ready to take.
    pub(crate) request_window: Arc<Semaphore>,
}

impl Default for Tunnel {
    fn default() -> Self {
        let (control, control_rx) = mpsc::unbounded_channel();
        let (data, data_rx) = mpsc::channel(DATA_QUEUE_FRAMES);
        Self {
            control,
            data,
            outbound: Mutex::new(Some(TunnelOutbound {
                control: control_rx,
                data: data_rx,
            })),
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl Tunnel {
    fn streams(&self) -> MutexGuard<'_, HashMap<u64, Slot>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The receivers the session loop drains; `None` after the first call.
    pub(crate) fn take_outbound(&self) -> Option<TunnelOutbound> {
        self.outbound
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Open streams right now.
    pub(crate) fn in_flight(&self) -> usize {
        self.streams().len()
    }

    /// Whether the session is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Opens a stream, unless the session is gone or `limit` streams are open.
    pub(crate) fn open(&self, limit: usize) -> Option<OpenStream> {
        let mut streams = self.streams();
        if self.is_closed() || streams.len() >= limit {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (head_tx, head) = oneshot::channel();
        let (body_tx, body) = mpsc::channel(INITIAL_WINDOW_CHUNKS as usize + 1);
        let request_window = Arc::new(Semaphore::new(INITIAL_WINDOW_CHUNKS as usize));
        streams.insert(
            id,
            Slot {
                head: Some(head_tx),
                body: body_tx,
                request_window: Arc::clone(&request_window),
            },
        );
        Some(OpenStream {
            id,
            head,
            body,
            request_window,
        })
    }

    /// Queues a control message for the agent; `false` when the session is gone.
    pub(crate) fn send_control(&self, message: RelayMessage) -> bool {
        self.control.send(Box::new(message)).is_ok()
    }

    /// Queues a request head or an encoded request chunk behind the stream's
    /// earlier ones, waiting for room; `false` when the session is gone.
    pub(crate) async fn send_ordered(&self, item: Ordered) -> bool {
        self.data.send(item).await.is_ok()
    }

    /// Forgets a stream the relay is done with. When it was still open (the client
    /// left, a timeout, a body over the limit) the agent is told to cancel it.
    pub(crate) fn abandon(&self, id: u64) {
        let removed = self.streams().remove(&id);
        if let Some(slot) = removed {
            slot.request_window.close();
            let _ = self
                .control
                .send(Box::new(RelayMessage::HttpCancel { stream_id: id }));
        }
    }

    /// The agent answered a request with its response head.
    pub(crate) fn on_response(&self, head: HttpResponseHead) {
        let id = head.stream_id;
        let sender = self
            .streams()
            .get_mut(&id)
            .and_then(|slot| slot.head.take());
        match sender {
            Some(sender) => {
                let _ = sender.send(Ok(head));
            }
            None => tracing::debug!(stream_id = id, "response head for no waiting stream"),
        }
    }

    /// The agent failed a stream; it is over.
    pub(crate) fn on_error(&self, id: u64, failure: HttpFailure) {
        let removed = self.streams().remove(&id);
        let Some(mut slot) = removed else {
            tracing::debug!(stream_id = id, "error for an unknown stream");
            return;
        };
        slot.request_window.close();
        match slot.head.take() {
            Some(head) => {
                let _ = head.send(Err(failure));
            }
            None => {
                let _ = slot.body.try_send(BodyEvent::Failed(failure));
            }
        }
    }

    /// The agent may take `chunks` more request chunks on a stream.
    pub(crate) fn on_window(&self, id: u64, chunks: u32) {
        if let Some(slot) = self.streams().get(&id) {
            let room = MAX_WINDOW_CHUNKS.saturating_sub(slot.request_window.available_permits());
            slot.request_window.add_permits((chunks as usize).min(room));
        }
    }

    /// A response body chunk from the agent. The last one completes the stream.
    pub(crate) fn on_chunk(&self, chunk: BodyChunk) {
        let id = chunk.stream_id;
        let mut streams = self.streams();
        let Some(slot) = streams.get(&id) else {
            tracing::debug!(stream_id = id, "body chunk for an unknown stream");
            return;
        };
        if slot.head.is_some() {
            drop(streams);
            self.fail_stream(id, "a body chunk came before the response head");
            return;
        }
        let event = BodyEvent::Data {
            payload: chunk.payload,
            last: chunk.last,
        };
        match slot.body.try_send(event) {
            Ok(()) if chunk.last => {
                if let Some(slot) = streams.remove(&id) {
                    slot.request_window.close();
                }
            }
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => {
                // The client is gone; the body stream's drop cancels the stream.
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                drop(streams);
                self.fail_stream(id, "the agent overran the stream's window");
            }
        }
    }

    /// Ends a stream the agent broke the rules on: the client's body is cut off and
    /// the agent told to cancel.
    fn fail_stream(&self, id: u64, detail: &str) {
        tracing::warn!(
            stream_id = id,
            detail,
            "pass-through stream broken by the agent"
        );
        let removed = self.streams().remove(&id);
        if let Some(mut slot) = removed {
            slot.request_window.close();
            if let Some(head) = slot.head.take() {
                let _ = head.send(Err(HttpFailure::new(HttpFailureKind::Protocol, detail)));
            }
            let _ = self
                .control
                .send(Box::new(RelayMessage::HttpCancel { stream_id: id }));
        }
    }

    /// The session ended: no new streams, and every open one fails.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let streams: Vec<Slot> = self.streams().drain().map(|(_, slot)| slot).collect();
        if !streams.is_empty() {
            tracing::info!(
                streams = streams.len(),
                "agent session ended with pass-through streams open"
            );
        }
        for slot in streams {
            slot.request_window.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(id: u64) -> HttpResponseHead {
        HttpResponseHead {
            stream_id: id,
            status: 200,
            headers: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_stream_gets_its_head_and_body_then_completes() {
        let tunnel = Tunnel::default();
        let mut stream = tunnel.open(4).unwrap();
        assert_eq!(tunnel.in_flight(), 1);
        tunnel.on_response(head(stream.id));
        assert_eq!(stream.head.await.unwrap().unwrap().status, 200);
        tunnel.on_chunk(BodyChunk::new(stream.id, false, Bytes::from_static(b"a")));
        tunnel.on_chunk(BodyChunk::new(stream.id, true, Bytes::from_static(b"b")));
        assert_eq!(tunnel.in_flight(), 0);
        assert!(matches!(
            stream.body.recv().await,
            Some(BodyEvent::Data { last: false, .. })
        ));
        assert!(matches!(
            stream.body.recv().await,
            Some(BodyEvent::Data { last: true, .. })
        ));
    }

    #[tokio::test]
    async fn overrunning_the_window_breaks_only_that_stream() {
        let tunnel = Tunnel::default();
        let mut outbound = tunnel.take_outbound().unwrap();
        let stream = tunnel.open(4).unwrap();
        let other = tunnel.open(4).unwrap();
        tunnel.on_response(head(stream.id));
        for _ in 0..=INITIAL_WINDOW_CHUNKS + 1 {
            tunnel.on_chunk(BodyChunk::new(stream.id, false, Bytes::from_static(b"x")));
        }
        assert_eq!(tunnel.in_flight(), 1);
        assert_eq!(
            outbound.control.recv().await,
            Some(Box::new(RelayMessage::HttpCancel {
                stream_id: stream.id
            }))
        );
        drop(other);
    }

    #[tokio::test]
    async fn limits_and_close_are_honoured() {
        let tunnel = Tunnel::default();
        let first = tunnel.open(1).unwrap();
        assert!(tunnel.open(1).is_none());
        tunnel.close();
        assert!(
            first.head.await.is_err(),
            "a closed tunnel drops the head sender"
        );
        assert!(tunnel.open(8).is_none());
    }

    #[tokio::test]
    async fn window_grants_are_capped() {
        let tunnel = Tunnel::default();
        let stream = tunnel.open(1).unwrap();
        tunnel.on_window(stream.id, u32::MAX);
        assert_eq!(stream.request_window.available_permits(), MAX_WINDOW_CHUNKS);
    }
}
