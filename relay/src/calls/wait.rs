//! Waiting for a call's end: on the queue's call signal (watched before the call
//! is looked at, so no end slips by), with a polling fallback of [`WAIT_POLL`] for
//! a signal that never comes (another replica's store, a lost wake-up).

use std::time::Duration;

use tokio::time::Instant;

use super::{CallError, Calls};
use crate::queue::{CallRecord, CallWatch};

/// How often a waiting request looks at the call even without a wake-up.
const WAIT_POLL: Duration = Duration::from_secs(1);

impl Calls {
    /// Waits until the call is final, `wait` has passed or the relay shuts down;
    /// returns the call as it is then.
    ///
    /// # Errors
    /// [`CallError::Vanished`] when the call is not stored, and store failures.
    pub(crate) async fn wait_final(
        &self,
        call_id: &str,
        wait: Duration,
    ) -> Result<CallRecord, CallError> {
        let watch = self.queue.signals().watch_call(call_id);
        self.wait_watched(None, &watch, wait).await
    }

    /// [`Calls::wait_final`] with the call's `watch` taken already (before the
    /// call was stored) and, if known, the call as its creation committed it (read
    /// back from the store otherwise). The end handed over by the store's signal is
    /// used as is; the store is read only when the signal carries none, or on the
    /// polling fallback.
    pub(super) async fn wait_watched(
        &self,
        mut known: Option<CallRecord>,
        watch: &CallWatch,
        wait: Duration,
    ) -> Result<CallRecord, CallError> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = watch.notify().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut record = match known.take() {
                Some(record) => record,
                None => self
                    .queue
                    .get(watch.call_id())
                    .await?
                    .ok_or_else(|| CallError::Vanished(watch.call_id().to_owned()))?,
            };
            if let Some(end) = watch.take_ended() {
                end.apply(&mut record);
            }
            let now = Instant::now();
            if record.state.is_final() || now >= deadline || self.shutdown.is_cancelled() {
                return Ok(record);
            }
            tokio::select! {
                () = &mut notified => {
                    // Ended with the outcome handed over: no need to read the call back.
                    if watch.has_ended() {
                        known = Some(record);
                    }
                }
                () = tokio::time::sleep_until(deadline.min(now + WAIT_POLL)) => {}
                () = self.shutdown.cancelled() => {}
            }
        }
    }
}
