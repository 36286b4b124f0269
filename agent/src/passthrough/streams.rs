//! The pass-through streams of one agent session: started by the relay's
//! `HttpRequest`, each runs in its own task ([`super::exchange`]); request body
//! chunks are routed to it as they arrive, window grants and cancels applied, and
//! what it sends (response heads, window grants, response chunks) queued for the
//! session loop to write.
//!
//! Concurrency: the transport routes chunks from inside the socket read
//! ([`StreamTable::route_chunk`], synchronous, never blocks: a stream's body channel
//! holds exactly the relay's window, so only a relay overrunning it finds it full —
//! that stream fails, the session lives on). The table's mutex is never held across
//! an await. Dropping [`SessionStreams`] (the session ended) cancels every stream:
//! their backend requests are aborted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sapbridge_proto::{
    AgentMessage, BodyChunk, HttpFailure, HttpFailureKind, HttpRequestHead, INITIAL_WINDOW_CHUNKS,
};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use super::HttpTargets;
use super::exchange::{BodyPiece, StreamIo, exchange};
use crate::refusal::{Refusal, Refused};
use crate::transport::Outgoing;

/// Encoded response chunks queued for the socket before streams wait.
const DATA_QUEUE_FRAMES: usize = 32;
/// The most response-chunk permits a stream may accumulate from window grants.
const MAX_WINDOW_CHUNKS: usize = 1024;

struct Slot {
    body: Option<mpsc::Sender<BodyPiece>>,
    window: Arc<Semaphore>,
    cancel: CancellationToken,
}

/// The open streams of a session, shared with the transport's chunk routing.
pub(crate) struct StreamTable {
    streams: Mutex<HashMap<u64, Slot>>,
    control: mpsc::UnboundedSender<AgentMessage>,
}

impl std::fmt::Debug for StreamTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTable")
            .field("open", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl StreamTable {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Slot>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands a request body chunk to its stream. Chunks for unknown streams (ended
    /// or cancelled) are dropped.
    pub(crate) fn route_chunk(&self, chunk: BodyChunk) {
        let id = chunk.stream_id;
        let mut streams = self.lock();
        let Some(slot) = streams.get_mut(&id) else {
            debug!(stream_id = id, "body chunk for an unknown stream");
            return;
        };
        let Some(body) = &slot.body else {
            drop(streams);
            self.fail(
                id,
                "a body chunk after the last one, or for a request without body",
            );
            return;
        };
        let piece = BodyPiece {
            payload: chunk.payload,
            last: chunk.last,
        };
        match body.try_send(piece) {
            Ok(()) if chunk.last => slot.body = None,
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                drop(streams);
                self.fail(id, "the relay overran the stream's window");
            }
        }
    }

    /// Ends a stream the relay broke the rules on.
    fn fail(&self, id: u64, detail: &str) {
        warn!(
            stream_id = id,
            detail, "pass-through stream broken by the relay"
        );
        if let Some(slot) = self.lock().remove(&id) {
            slot.cancel.cancel();
            let _ = self.control.send(AgentMessage::HttpError {
                stream_id: id,
                error: HttpFailure::new(HttpFailureKind::Protocol, detail),
            });
        }
    }

    fn remove(&self, id: u64) -> Option<Slot> {
        self.lock().remove(&id)
    }
}

/// A session's pass-through side; see the module docs.
pub(crate) struct SessionStreams {
    targets: Arc<HttpTargets>,
    table: Arc<StreamTable>,
    control: mpsc::UnboundedReceiver<AgentMessage>,
    data_tx: mpsc::Sender<Outgoing>,
    data: mpsc::Receiver<Outgoing>,
    cancel: CancellationToken,
}

impl SessionStreams {
    /// No streams yet, serving `targets`.
    pub(crate) fn new(targets: Arc<HttpTargets>) -> Self {
        let (control_tx, control) = mpsc::unbounded_channel();
        let (data_tx, data) = mpsc::channel(DATA_QUEUE_FRAMES);
        Self {
            targets,
            table: Arc::new(StreamTable {
                streams: Mutex::new(HashMap::new()),
                control: control_tx,
            }),
            control,
            data_tx,
            data,
            cancel: CancellationToken::new(),
        }
    }

    /// The table the transport routes chunks into.
    pub(crate) fn table(&self) -> Arc<StreamTable> {
        Arc::clone(&self.table)
    }

    /// Starts a stream. While `refuse` (draining), it is answered `Busy` at once.
    ///
    /// # Errors
    /// What the relay did wrong when it reused the id of a stream still open (the
    /// relay numbers its streams and never reuses one): a protocol violation.
    pub(crate) fn start(&self, head: HttpRequestHead, refuse: bool) -> Result<(), String> {
        let id = head.stream_id;
        let reject = |kind, detail: String| {
            let _ = self.table.control.send(AgentMessage::HttpError {
                stream_id: id,
                error: HttpFailure::new(kind, detail),
            });
        };
        if self.table.lock().contains_key(&id) {
            return Err(format!("pass-through stream {id} opened again while open"));
        }
        if refuse {
            reject(HttpFailureKind::Busy, "the agent is shutting down".into());
            return Ok(());
        }
        let Some(target) = self.targets.get(&head.system) else {
            let reason = format!(
                "the agent has no HTTP pass-through for system {}",
                head.system
            );
            Refusal {
                agent_id: Some(self.targets.agent_id()),
                system: &head.system,
                refused: Refused::Path {
                    stream_id: id,
                    path: &head.path,
                },
                reason: &reason,
            }
            .log();
            reject(HttpFailureKind::NotConfigured, reason);
            return Ok(());
        };
        let cancel = self.cancel.child_token();
        let window = Arc::new(Semaphore::new(INITIAL_WINDOW_CHUNKS as usize));
        let (body_tx, body_rx) = if head.body {
            let (tx, rx) = mpsc::channel(INITIAL_WINDOW_CHUNKS as usize);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        // Only the session inserts, and it checked the id above.
        self.table.lock().insert(
            id,
            Slot {
                body: body_tx,
                window: Arc::clone(&window),
                cancel: cancel.clone(),
            },
        );
        let io = StreamIo {
            id,
            control: self.table.control.clone(),
            data: self.data_tx.clone(),
            window,
            body: body_rx,
        };
        let table = Arc::clone(&self.table);
        let ordered = self.data_tx.clone();
        let span = info_span!("passthrough", stream_id = id, system = %head.system,
            method = %head.method);
        tokio::spawn(
            async move {
                tokio::select! {
                    result = exchange(&target, head, io) => {
                        if let Err(error) = result {
                            debug!(%error, "pass-through request failed");
                            // Behind the stream's head and chunks, so it is seen last.
                            let message = AgentMessage::HttpError { stream_id: id, error };
                            let _ = ordered.send(Outgoing::Message(message)).await;
                        }
                    }
                    () = cancel.cancelled() => debug!("pass-through request cancelled"),
                }
                table.remove(id);
            }
            .instrument(span),
        );
        Ok(())
    }

    /// The relay may take `chunks` more response chunks of a stream.
    pub(crate) fn grant(&self, id: u64, chunks: u32) {
        if let Some(slot) = self.table.lock().get(&id) {
            let room = MAX_WINDOW_CHUNKS.saturating_sub(slot.window.available_permits());
            slot.window.add_permits((chunks as usize).min(room));
        }
    }

    /// The relay abandoned a stream: its backend request is aborted.
    pub(crate) fn cancel(&self, id: u64) {
        if let Some(slot) = self.table.remove(id) {
            slot.cancel.cancel();
            slot.window.close();
        }
    }

    /// The next frame to write for the streams. Cancel-safe (channel receives).
    pub(crate) async fn next_outbound(&mut self) -> Outgoing {
        tokio::select! {
            Some(message) = self.control.recv() => Outgoing::Message(message),
            Some(item) = self.data.recv() => item,
        }
    }

    /// A frame already waiting to be written, if any (so the session writes every
    /// waiting frame with one flush).
    pub(crate) fn try_next_outbound(&mut self) -> Option<Outgoing> {
        if let Ok(message) = self.control.try_recv() {
            return Some(Outgoing::Message(message));
        }
        self.data.try_recv().ok()
    }
}

impl Drop for SessionStreams {
    fn drop(&mut self) {
        self.cancel.cancel();
        for (_, slot) in self.table.lock().drain() {
            slot.window.close();
        }
    }
}
