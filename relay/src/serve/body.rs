//! The two bodies around every request: the client's request body, which fails when
//! the client sends nothing for the body-read timeout while the relay is reading
//! it, and the response body, which marks the request answered when hyper is done
//! with it.
//!
//! The body timeout runs only while a read is waiting for the client. A handler
//! that stops reading (pass-through waiting for its agent's window) is not the
//! client's stall; when it reads again, bytes that arrived meanwhile are returned
//! before the timer is looked at.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

use super::activity::{Activity, InFlight};

/// Why reading a request body failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum BodyError {
    /// The connection failed or the body was malformed.
    #[error("reading the request body failed: {0}")]
    Read(#[source] axum::BoxError),
    /// No part of the body arrived in time.
    #[error("no part of the request body arrived for {} s", .0.as_secs())]
    Stalled(Duration),
}

/// A request body (hyper's [`Incoming`]) read with a timeout between pieces.
#[derive(Debug)]
pub(super) struct TimedBody<B = Incoming> {
    inner: B,
    timeout: Duration,
    /// The timer, allocated the first time a read has to wait.
    sleep: Option<Pin<Box<Sleep>>>,
    /// Whether the timer runs: a read is waiting for the client.
    waiting: bool,
    activity: Arc<Activity>,
}

impl<B> TimedBody<B> {
    /// `inner` with `timeout` between pieces; a stall is reported to `activity`.
    pub(super) fn new(inner: B, timeout: Duration, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            timeout,
            sleep: None,
            waiting: false,
            activity,
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.waiting = false;
            return Poll::Ready(frame.map(|frame| frame.map_err(|e| BodyError::Read(e.into()))));
        }
        let deadline = Instant::now() + this.timeout;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !this.waiting {
            sleep.as_mut().reset(deadline);
            this.waiting = true;
        }
        ready!(sleep.as_mut().poll(cx));
        this.activity.stall_body();
        Poll::Ready(Some(Err(BodyError::Stalled(this.timeout))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that holds its request [`InFlight`] until hyper drops it, after
/// the last piece is handed to the socket (or when the connection ends first).
#[derive(Debug)]
pub(super) struct TrackedBody {
    inner: axum::body::Body,
    _in_flight: InFlight,
}

impl TrackedBody {
    /// `inner`, answering the request `in_flight`.
    pub(super) fn new(inner: axum::body::Body, in_flight: InFlight) -> Self {
        Self {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use tokio::sync::mpsc;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(30);

    /// A body whose pieces the test sends, and the activity it reports to.
    fn body() -> (
        mpsc::Sender<&'static str>,
        TimedBody<axum::body::Body>,
        Arc<Activity>,
    ) {
        let (tx, rx) = mpsc::channel(4);
        let pieces = futures_util::stream::unfold(rx, |mut rx| async move {
            let piece = rx.recv().await?;
            Some((Ok::<_, std::io::Error>(Bytes::from(piece)), rx))
        });
        let activity = Arc::new(Activity::new());
        let body = TimedBody::new(
            axum::body::Body::from_stream(pieces),
            TIMEOUT,
            Arc::clone(&activity),
        );
        (tx, body, activity)
    }

    async fn next(body: &mut TimedBody<axum::body::Body>) -> Option<Result<Bytes, BodyError>> {
        let frame = poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await?;
        Some(frame.map(|f| f.into_data().unwrap_or_default()))
    }

    #[tokio::test(start_paused = true)]
    async fn steady_pieces_pass_and_a_stall_fails() {
        let (tx, mut body, activity) = body();
        for piece in ["a", "b", "c"] {
            let tx = tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(TIMEOUT - Duration::from_secs(1)).await;
                tx.send(piece).await
            });
            assert_eq!(next(&mut body).await.unwrap().unwrap(), piece);
        }
        let stalled = Instant::now();
        let error = next(&mut body).await.unwrap().unwrap_err();
        assert!(matches!(error, BodyError::Stalled(_)), "{error}");
        assert_eq!(stalled.elapsed(), TIMEOUT);
        assert!(activity.body_stalled());
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_pauses_is_not_a_stalled_client() {
        let (tx, mut body, activity) = body();
        // One read waits (the timer starts), then the reader turns away.
        assert!(poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx).is_pending())).await);
        tokio::time::sleep(Duration::from_secs(1)).await;
        tx.send("sent while nobody read").await.unwrap();
        tokio::time::sleep(TIMEOUT * 3).await;
        assert_eq!(
            next(&mut body).await.unwrap().unwrap(),
            "sent while nobody read"
        );
        drop(tx);
        assert!(next(&mut body).await.is_none());
        assert!(!activity.body_stalled());
    }
}
