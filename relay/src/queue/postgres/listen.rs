//! Wake-ups across replicas with `LISTEN/NOTIFY`.
//!
//! A change that makes work claimable or ends a call sends, once it committed, a
//! notification on [`WORK_CHANNEL`] (payload: the systems) or [`ENDED_CHANNEL`]
//! (payload: the call ids) in a transaction of its own ([`Notes::send`]);
//! PostgreSQL delivers it to every listening replica. Not inside the change's
//! transaction: PostgreSQL serialises the commits of every transaction that
//! notifies (a lock on the notification queue, held through the commit's flush),
//! so two batches in flight would flush one after the other. The notifying
//! transaction changes nothing, so it commits without waiting for a flush
//! (`synchronous_commit = off` for it alone) and holds that lock only briefly;
//! the calls themselves are committed as the server's `synchronous_commit` says.
//! A relay that dies between the two loses the notification, which costs
//! latency only (see below). Each replica keeps one
//! dedicated connection that listens on both ([`Listener`]) and fires its local
//! [`Signals`]: an agent session on replica B wakes for a call submitted on A, and a
//! client waiting on A for a call an agent on B finished reads it at once.
//!
//! A replica ignores its own notifications (it fired its signals itself, with the
//! call's end attached). The listening connection is pinged and reconnected when it
//! drops; notifications sent while it was down are lost, which only costs latency:
//! every user of the signals also polls.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

use super::super::{QueueError, Signals};
use super::rows::{prepared, store_error};

/// Work became claimable for the systems in the payload.
pub(super) const WORK_CHANNEL: &str = "sapbridge_work";
/// The calls in the payload reached a final state.
pub(super) const ENDED_CHANNEL: &str = "sapbridge_ended";

/// The listening connection's `application_name` (how operators, and tests, find
/// it in `pg_stat_activity`).
pub(super) const APPLICATION_NAME: &str = "sapbridge-relay-listener";

/// PostgreSQL refuses payloads of 8,000 bytes or more; items are split below that.
const MAX_PAYLOAD: usize = 7_000;
/// How often the listening connection is checked with a query.
const PING_EVERY: Duration = Duration::from_secs(10);
/// The longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One notification's payload.
#[derive(Debug, Serialize, Deserialize)]
struct Payload<'a> {
    /// The sending replica.
    #[serde(borrow)]
    r: &'a str,
    /// Systems (work) or call ids (ended).
    #[serde(borrow)]
    i: Vec<&'a str>,
}

/// The payloads that announce `items` from `replica`, each under PostgreSQL's limit.
pub(super) fn payloads<'a>(replica: &str, items: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out = Vec::new();
    let mut chunk: Vec<&str> = Vec::new();
    let mut size = replica.len() + 16;
    let flush = |chunk: &mut Vec<&str>, out: &mut Vec<String>| {
        if !chunk.is_empty() {
            let payload = Payload {
                r: replica,
                i: std::mem::take(chunk),
            };
            // Strings only: serialising cannot fail.
            out.push(serde_json::to_string(&payload).unwrap_or_default());
        }
    };
    for item in items {
        // Quotes, a comma and JSON escapes (generously).
        let cost = item.len() * 2 + 4;
        if size + cost > MAX_PAYLOAD {
            flush(&mut chunk, &mut out);
            size = replica.len() + 16;
        }
        if cost + replica.len() + 16 > MAX_PAYLOAD {
            tracing::warn!(
                len = item.len(),
                "an item too long to notify; others poll for it"
            );
            continue;
        }
        size += cost;
        chunk.push(item);
    }
    flush(&mut chunk, &mut out);
    out
}

/// Notifies channel `$1[i]` with payload `$2[i]`, in the statement's own
/// transaction, which changes no data and so need not wait for its commit's
/// flush.
const NOTIFY_SQL: &str = "SELECT set_config('synchronous_commit', 'off', true), pg_notify(n.c, n.p)
    FROM unnest($1::text[], $2::text[]) AS n(c, p)";

/// The notifications of a change, sent once it committed.
#[derive(Debug, Default)]
pub(super) struct Notes(Vec<(&'static str, String)>);

impl Notes {
    /// Work for `systems` and the end of the calls `ended`, from `replica`.
    pub(super) fn new<'a>(
        replica: &str,
        systems: impl IntoIterator<Item = &'a str>,
        ended: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let mut notes = Vec::new();
        for payload in payloads(replica, systems) {
            notes.push((WORK_CHANNEL, payload));
        }
        for payload in payloads(replica, ended) {
            notes.push((ENDED_CHANNEL, payload));
        }
        Self(notes)
    }

    /// Whether there is nothing to notify.
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sends the notifications on `client`, which must not be inside a
    /// transaction (call it after the change committed). A failure is logged and
    /// otherwise ignored: the change committed, and the other replicas poll.
    pub(super) async fn send(self, client: &impl deadpool_postgres::GenericClient) {
        if self.0.is_empty() {
            return;
        }
        let channels: Vec<&str> = self.0.iter().map(|(c, _)| *c).collect();
        let texts: Vec<&str> = self.0.iter().map(|(_, p)| p.as_str()).collect();
        let sent = match prepared(client, NOTIFY_SQL).await {
            Ok(statement) => client
                .query(&statement, &[&channels, &texts])
                .await
                .map_err(store_error),
            Err(error) => Err(error),
        };
        if let Err(error) = sent {
            tracing::warn!(%error, "queue notifications not sent; other replicas poll");
        }
    }
}

/// The background task that listens for this replica.
#[derive(Debug)]
pub(super) struct Listener {
    stop: CancellationToken,
}

impl Listener {
    /// Connects, listens, and keeps listening until dropped; returns once the first
    /// `LISTEN` is in place.
    ///
    /// # Errors
    /// [`QueueError::Store`] when the first connection or `LISTEN` fails.
    pub(super) async fn start(
        settings: tokio_postgres::Config,
        replica: String,
        signals: Arc<Signals>,
    ) -> Result<Self, QueueError> {
        let mut settings = settings;
        settings.application_name(APPLICATION_NAME);
        let stop = CancellationToken::new();
        let (ready, first) = oneshot::channel();
        let task = Task {
            settings,
            replica,
            signals,
            stop: stop.clone(),
        };
        tokio::spawn(task.run(ready));
        match first.await {
            Ok(Ok(())) => Ok(Self { stop }),
            Ok(Err(error)) => {
                stop.cancel();
                Err(error)
            }
            Err(_) => Err(QueueError::Closed),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct Task {
    settings: tokio_postgres::Config,
    replica: String,
    signals: Arc<Signals>,
    stop: CancellationToken,
}

impl Task {
    async fn run(self, ready: oneshot::Sender<Result<(), QueueError>>) {
        let mut ready = Some(ready);
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut listened = false;
            let error = tokio::select! {
                () = self.stop.cancelled() => return,
                error = self.listen(&mut ready, &mut listened) => error,
            };
            if let Some(ready) = ready.take() {
                let _ = ready.send(Err(error));
                return;
            }
            if listened {
                backoff = Duration::from_millis(100);
            }
            tracing::warn!(%error, retry_in = ?backoff, "queue notifications lost; reconnecting");
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connection's life: listen, fire signals, ping; returns why it ended.
    async fn listen(
        &self,
        ready: &mut Option<oneshot::Sender<Result<(), QueueError>>>,
        listened: &mut bool,
    ) -> QueueError {
        let (client, mut connection) = match self.settings.connect(NoTls).await {
            Ok(pair) => pair,
            Err(error) => return store_error(error),
        };
        let (tx, mut notes) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(note)) => {
                        if tx.send(note).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::debug!(%error, "queue notification connection ended");
                        break;
                    }
                }
            }
        });
        let guard = AbortOnDrop(driver);
        let listening = client
            .batch_execute(&format!("LISTEN {WORK_CHANNEL}; LISTEN {ENDED_CHANNEL}"))
            .await;
        if let Err(error) = listening {
            return store_error(error);
        }
        *listened = true;
        if let Some(ready) = ready.take() {
            let _ = ready.send(Ok(()));
        } else {
            tracing::info!("queue notifications reconnected");
        }
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                note = notes.recv() => match note {
                    Some(note) => self.fire(note.channel(), note.payload()),
                    None => break,
                },
                _ = ping.tick() => {
                    if let Err(error) = client.simple_query("SELECT 1").await {
                        drop(guard);
                        return store_error(error);
                    }
                }
            }
        }
        drop(guard);
        QueueError::Store("the notification connection closed".into())
    }

    fn fire(&self, channel: &str, payload: &str) {
        let Ok(payload) = serde_json::from_str::<Payload<'_>>(payload) else {
            tracing::warn!(channel, "ignoring a malformed queue notification");
            return;
        };
        if payload.r == self.replica {
            return;
        }
        match channel {
            WORK_CHANNEL => payload
                .i
                .iter()
                .for_each(|s| self.signals.work_available(s)),
            ENDED_CHANNEL => payload.i.iter().for_each(|c| self.signals.call_finished(c)),
            _ => {}
        }
    }
}

/// Aborts the connection's driver task when the listening loop ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_stay_under_the_limit_and_keep_every_item() {
        let ids: Vec<String> = (0..1000).map(|i| format!("c_{i:046}")).collect();
        let out = payloads("replica-1", ids.iter().map(String::as_str));
        assert!(out.len() > 1);
        let mut seen = Vec::new();
        for text in &out {
            assert!(text.len() < 8000, "{}", text.len());
            let p: Payload<'_> = serde_json::from_str(text).unwrap();
            assert_eq!(p.r, "replica-1");
            seen.extend(p.i.iter().map(|s| (*s).to_owned()));
        }
        assert_eq!(seen, ids);
        assert!(payloads("r", std::iter::empty()).is_empty());
    }
}
