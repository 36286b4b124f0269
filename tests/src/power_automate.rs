//! A client that calls the relay as a Power Automate HTTP action (or custom
//! connector action) does, for tests of what a flow run sees.
//!
//! Power Automate's default retry policy repeats a request after `408`, `429`, a
//! `5xx` or a connection failure (reset, refused, timed out) — the same request,
//! so the same `Idempotency-Key` — with exponential intervals, up to 4 times, and
//! honours `Retry-After`. A `202 Accepted` with `Location` starts the asynchronous
//! pattern: it polls `Location` (after `Retry-After`) until the answer is not
//! `202`; the polls retry by the same policy. Any other answer ends the action:
//! `2xx` succeeds, anything else (`409` included: it is never retried) fails the run.
//! The intervals here are milliseconds where Power Automate's are seconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Result;
use reqwest::{Method, RequestBuilder};
use serde_json::Value;
use tokio::time::Instant;

use crate::{Reply, TestRelay};

/// How long one action may take in all before it counts as failed.
const ACTION_LIMIT: Duration = Duration::from_secs(120);

/// The retry policy: `retries` repeats, the first after `first_interval`, each
/// later one after twice the previous interval, at most `max_interval`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// How many times a request is repeated after the first attempt.
    pub retries: u32,
    /// The wait before the first repeat.
    pub first_interval: Duration,
    /// The longest wait between repeats.
    pub max_interval: Duration,
}

impl Default for RetryPolicy {
    /// Power Automate's default: 4 retries, exponential (in milliseconds here).
    fn default() -> Self {
        Self {
            retries: 4,
            first_interval: Duration::from_millis(100),
            max_interval: Duration::from_millis(1600),
        }
    }
}

/// What happened during one action, besides its answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Trace {
    /// Requests repeated by the retry policy (connection failures included).
    pub retries: u32,
    /// Polls of `Location`.
    pub polls: u32,
    /// Whether the first attempt ended without an answer (cut, reset, refused).
    pub first_cut: bool,
}

/// Why a flow run's action failed.
#[derive(Debug)]
pub enum ActionFailed {
    /// The final answer was not a `2xx` (a `409`, a `4xx`, or a retryable status
    /// once the retries were spent).
    Status(Reply),
    /// Every attempt failed to connect or was cut.
    Transport(String),
    /// The action did not end within its limit.
    TimedOut,
}

/// A Power Automate action's HTTP client.
#[derive(Clone)]
pub struct FlowClient {
    /// The relay's base URL, or several replicas' (each request goes to the next,
    /// as through a load balancer).
    bases: Arc<Vec<String>>,
    turn: Arc<AtomicUsize>,
    key: String,
    policy: RetryPolicy,
    http: reqwest::Client,
}

impl FlowClient {
    /// A client of `relay` sending `key`, with the default retry policy.
    pub fn new(relay: &TestRelay, key: &str) -> Self {
        Self::balance(vec![relay.url()], key)
    }

    /// A client of the relay replicas at `bases` sending `key`: each request
    /// (first attempt, retry or poll) goes to the next replica in turn, as through
    /// a round-robin load balancer; a replica that is down costs a retry.
    pub fn balance(bases: Vec<String>, key: &str) -> Self {
        Self {
            bases: Arc::new(bases),
            turn: Arc::default(),
            key: key.to_owned(),
            policy: RetryPolicy::default(),
            http: reqwest::Client::new(),
        }
    }

    /// Runs one action: `POST path` with `body` and `Idempotency-Key: key`,
    /// retried and polled as Power Automate does. With `cut_first_after`, the
    /// first attempt is dropped that long after it was sent (the network lost it
    /// before the answer came).
    ///
    /// # Errors
    /// [`ActionFailed`] when the flow run would fail.
    pub async fn post(
        &self,
        path: &str,
        body: &Value,
        key: &str,
        cut_first_after: Option<Duration>,
    ) -> Result<(Reply, Trace), ActionFailed> {
        let deadline = Instant::now() + ACTION_LIMIT;
        let mut trace = Trace::default();
        let body = serde_json::to_vec(body).map_err(|e| ActionFailed::Transport(e.to_string()))?;
        let post = |attempt: u32| {
            let request = self
                .request(Method::POST, path)
                .header("idempotency-key", format!("\"{key}\""))
                .body(body.clone());
            match cut_first_after {
                Some(after) if attempt == 0 => request.timeout(after),
                _ => request,
            }
        };
        let mut reply = self.with_retries(post, &mut trace, deadline).await?;
        while reply.status == 202 {
            let location = reply
                .header("location")
                .ok_or_else(|| ActionFailed::Transport("a 202 without Location".to_owned()))?;
            pause(
                retry_after(&reply).unwrap_or(Duration::from_secs(1)),
                deadline,
            )
            .await?;
            trace.polls += 1;
            let poll = |_| self.request(Method::GET, &location);
            reply = self.with_retries(poll, &mut trace, deadline).await?;
        }
        if (200..300).contains(&reply.status) {
            Ok((reply, trace))
        } else {
            Err(ActionFailed::Status(reply))
        }
    }

    /// A request to `target`: an absolute URL, or a path on the next replica.
    fn request(&self, method: Method, target: &str) -> RequestBuilder {
        let url = if target.starts_with("http") {
            target.to_owned()
        } else {
            let turn = self.turn.fetch_add(1, Ordering::Relaxed);
            format!("{}{target}", self.bases[turn % self.bases.len()])
        };
        self.http
            .request(method, url)
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
    }

    /// Sends `make(attempt)` until an answer the policy does not retry, or the
    /// retries are spent.
    async fn with_retries(
        &self,
        make: impl Fn(u32) -> RequestBuilder,
        trace: &mut Trace,
        deadline: Instant,
    ) -> Result<Reply, ActionFailed> {
        let mut interval = self.policy.first_interval;
        let mut attempt = 0;
        loop {
            let (failure, wait) = match send(make(attempt)).await {
                Ok(reply) if !retried(reply.status) => return Ok(reply),
                Ok(reply) => {
                    let wait = retry_after(&reply);
                    (ActionFailed::Status(reply), wait)
                }
                Err(error) => {
                    if attempt == 0 && trace.retries == 0 && trace.polls == 0 {
                        trace.first_cut = true;
                    }
                    (ActionFailed::Transport(error.to_string()), None)
                }
            };
            if attempt == self.policy.retries {
                return Err(failure);
            }
            attempt += 1;
            trace.retries += 1;
            pause(wait.unwrap_or(interval), deadline).await?;
            interval = (interval * 2).min(self.policy.max_interval);
        }
    }
}

/// The statuses Power Automate's retry policy repeats.
fn retried(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// `Retry-After` in seconds, if the answer has one.
fn retry_after(reply: &Reply) -> Option<Duration> {
    reply
        .header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

async fn pause(wait: Duration, deadline: Instant) -> Result<(), ActionFailed> {
    if Instant::now() + wait > deadline {
        return Err(ActionFailed::TimedOut);
    }
    tokio::time::sleep(wait).await;
    Ok(())
}

async fn send(request: RequestBuilder) -> Result<Reply> {
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await?;
    Ok(Reply {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    })
}
