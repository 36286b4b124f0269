//! What one client connection is doing, as far as its timeouts care: waiting for a
//! request head, answering a request, or idle between requests. Its socket
//! ([`Watched`]) and its service report into one [`Activity`], and the connection's
//! task waits on [`Activity::expired`].
//!
//! The deadlines:
//! - the first request head must be complete within the header-read timeout of the
//!   connection's opening;
//! - between requests the connection may stay idle for the idle timeout, and once a
//!   byte of the next request arrives its head must be complete within the
//!   header-read timeout;
//! - while a request is being answered (from its head until the last piece of its
//!   response is handed to the socket) nothing is timed here: a handler that is still
//!   working is not idle. Its body has its own timeout (`body`).
//!
//! Concurrency: the socket, the service and the watchdog run in the connection's
//! task (a request body read from another task only sets an atomic flag, and an
//! upgraded socket only clears one); the mutex is practically never contended and is
//! held for a few instructions.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;

use super::Limits;

/// Why a connection was closed by its watchdog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expiry {
    /// A request head was not complete in time.
    Head,
    /// No new request came in time.
    Idle,
}

/// One connection's activity.
#[derive(Debug)]
pub(super) struct Activity {
    state: Mutex<State>,
    /// Wakes the watchdog when the state changes.
    changed: Notify,
    /// Set while the connection waits for a request after its first: the next byte
    /// read starts that request's head.
    awaiting_head: AtomicBool,
    /// Set when the current request's body stalled past the body-read timeout.
    body_stalled: AtomicBool,
    /// Set for HTTP/2: bytes between requests are frames of the connection
    /// (window updates, pings), not the head of a next request, so only the idle
    /// timeout counts there.
    multiplexed: AtomicBool,
    /// The agent connection slot, once the connection became a WebSocket; it lives
    /// as long as the socket (which holds this activity).
    upgraded: Mutex<Option<OwnedSemaphorePermit>>,
}

#[derive(Debug)]
struct State {
    /// Requests being answered (HTTP/1 answers one at a time).
    in_flight: usize,
    /// Requests answered so far.
    answered: u64,
    /// When the connection last became free: its opening, or the end of a response.
    free_since: Instant,
    /// When the first byte of the next request head arrived, after the first request.
    head_since: Option<Instant>,
}

impl Activity {
    /// The activity of a connection opened now.
    pub(super) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                in_flight: 0,
                answered: 0,
                free_since: Instant::now(),
                head_since: None,
            }),
            changed: Notify::new(),
            awaiting_head: AtomicBool::new(false),
            body_stalled: AtomicBool::new(false),
            multiplexed: AtomicBool::new(false),
            upgraded: Mutex::new(None),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every update is a
        // single assignment.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the connection is cut unless something happens first, and why; `None`
    /// while a request is being answered.
    fn deadline(&self, limits: &Limits) -> Option<(Instant, Expiry)> {
        let state = self.state();
        if state.in_flight > 0 {
            return None;
        }
        Some(match state.head_since {
            _ if state.answered == 0 => (state.free_since + limits.header_read, Expiry::Head),
            Some(since) => (since + limits.header_read, Expiry::Head),
            None => (state.free_since + limits.idle, Expiry::Idle),
        })
    }

    /// Resolves once the connection has missed a deadline. Cancel-safe.
    pub(super) async fn expired(&self, limits: &Limits) -> Expiry {
        loop {
            match self.deadline(limits) {
                None => self.changed.notified().await,
                Some((at, why)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {
                            // The state may have moved on since the deadline was read.
                            if self.deadline(limits).is_some_and(|(at, _)| at <= Instant::now()) {
                                return why;
                            }
                        }
                        () = self.changed.notified() => {}
                    }
                }
            }
        }
    }

    /// A request head was read: nothing is timed until its response is done.
    pub(super) fn request_started(self: &Arc<Self>) -> InFlight {
        self.awaiting_head.store(false, Ordering::Relaxed);
        self.body_stalled.store(false, Ordering::Relaxed);
        {
            let mut state = self.state();
            state.in_flight += 1;
            state.head_since = None;
        }
        self.changed.notify_one();
        InFlight(Arc::clone(self))
    }

    fn request_finished(&self) {
        {
            let mut state = self.state();
            state.in_flight = state.in_flight.saturating_sub(1);
            state.answered = state.answered.saturating_add(1);
            if state.in_flight == 0 {
                state.free_since = Instant::now();
                state.head_since = None;
                self.awaiting_head
                    .store(!self.multiplexed.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
        self.changed.notify_one();
    }

    /// Bytes arrived from the client.
    fn bytes_read(&self) {
        if self.awaiting_head.swap(false, Ordering::Relaxed) {
            {
                let mut state = self.state();
                if state.in_flight == 0 {
                    state.head_since = Some(Instant::now());
                }
            }
            self.changed.notify_one();
        }
    }

    /// The connection speaks HTTP/2 (see the `multiplexed` field).
    pub(super) fn multiplex(&self) {
        self.multiplexed.store(true, Ordering::Relaxed);
    }

    /// The current request's body stalled.
    pub(super) fn stall_body(&self) {
        self.body_stalled.store(true, Ordering::Relaxed);
    }

    /// Whether the current request's body stalled.
    pub(super) fn body_stalled(&self) -> bool {
        self.body_stalled.load(Ordering::Relaxed)
    }

    /// Keeps `permit` for as long as the connection lives on as a WebSocket.
    pub(super) fn hold_upgrade(&self, permit: OwnedSemaphorePermit) {
        *self.upgraded.lock().unwrap_or_else(PoisonError::into_inner) = Some(permit);
    }
}

/// A request being answered; dropped with the last piece of its response (or with
/// the request when the connection ends first).
#[derive(Debug)]
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A client socket that reports arriving bytes to its connection's [`Activity`]
/// (under TLS: the bytes of TLS records).
#[derive(Debug)]
pub(super) struct Watched<S = TcpStream> {
    stream: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    /// Watches `stream` for `activity`.
    pub(super) fn new(stream: S, activity: Arc<Activity>) -> Self {
        Self { stream, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.stream).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits() -> Limits {
        Limits {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            body_read: Duration::from_secs(30),
            max_connections: 1,
            max_agent_connections: 1,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_head_is_timed_from_the_opening() {
        let activity = Activity::new();
        let opened = Instant::now();
        assert_eq!(activity.expired(&limits()).await, Expiry::Head);
        assert_eq!(opened.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_is_never_timed_then_idle_then_head() {
        let limits = limits();
        let activity = Arc::new(Activity::new());
        let request = activity.request_started();
        // Far past every timeout: still answering.
        let waited =
            tokio::time::timeout(Duration::from_secs(3600), activity.expired(&limits)).await;
        assert!(waited.is_err(), "a busy connection expired");
        drop(request);
        let free = Instant::now();
        assert_eq!(activity.expired(&limits).await, Expiry::Idle);
        assert_eq!(free.elapsed(), Duration::from_secs(60));

        // Idle for a while, then the next head starts: from its first byte on, the
        // head timeout counts instead.
        let activity = Arc::new(Activity::new());
        drop(activity.request_started());
        tokio::time::advance(Duration::from_secs(55)).await;
        activity.bytes_read();
        let head = Instant::now();
        assert_eq!(activity.expired(&limits).await, Expiry::Head);
        assert_eq!(head.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn between_http2_requests_only_the_idle_timeout_counts() {
        let limits = limits();
        let activity = Arc::new(Activity::new());
        activity.multiplex();
        drop(activity.request_started());
        // A window update after the response: not a request head.
        tokio::time::advance(Duration::from_secs(5)).await;
        activity.bytes_read();
        assert_eq!(activity.expired(&limits).await, Expiry::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_read_while_answering_do_not_start_a_head() {
        let limits = limits();
        let activity = Arc::new(Activity::new());
        let request = activity.request_started();
        activity.bytes_read();
        drop(request);
        let free = Instant::now();
        assert_eq!(activity.expired(&limits).await, Expiry::Idle);
        assert_eq!(free.elapsed(), Duration::from_secs(60));
    }
}
