//! The webhook sender: every relay runs one; deliveries are leased from the store,
//! so with several replicas each delivery goes out from one at a time.
//!
//! - A **waiting** delivery (its call runs) is watched: leased for
//!   [`WATCH_LEASE`], the watcher waits for the call's end (the store's wake-up,
//!   or a poll). Once the call's answer is final (for an action, once its chain
//!   has its answer) the payload is frozen into the delivery, which becomes
//!   **pending**. A watch that ends first gives the delivery back for the next
//!   round.
//! - A **pending** delivery is sent: `POST` to its URL with the signed payload. A
//!   2xx answer delivers it; anything else (another status, no answer in time, a
//!   refused address) is retried with exponential back-off (5 s, doubling, at most
//!   an hour apart) until `[webhooks] retry_for_secs` after the call ended. `410
//!   Gone` ends it at once, as the Standard Webhooks specification advises.
//!
//! A relay killed mid-way loses nothing: the deliveries were stored with their
//! calls, and a lease that is not given back runs out.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::Semaphore;

use crate::http::{Answered, answer_of};
use crate::queue::{Delivery, DeliveryState};
use crate::state::RelayState;
use crate::webhooks::signature;

/// How long one watch of a waiting delivery lasts before it is given back.
const WATCH_LEASE: Duration = Duration::from_secs(60);

/// The most waiting deliveries one relay watches at once.
const MAX_WATCHED: usize = 4096;

/// How often the sender looks for due deliveries (on SQLite a look that finds
/// nothing is one read; on PostgreSQL one indexed query).
const TICK: Duration = Duration::from_millis(500);

/// The first pause after a failed attempt; each later pause doubles, up to
/// [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_secs(5);

/// The longest pause between two attempts.
const MAX_PAUSE: Duration = Duration::from_secs(3600);

/// The longest receiver status line kept (nothing of its body is).
const MAX_ERROR_CHARS: usize = 300;

/// Runs the sender until the relay shuts down.
pub(crate) async fn run(state: Arc<RelayState>) {
    let sending = Arc::new(Semaphore::new(state.webhooks.concurrency));
    let watching = Arc::new(Semaphore::new(MAX_WATCHED));
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = OffsetDateTime::now_utc();
        let free = watching.available_permits();
        if free > 0 {
            let until = now + WATCH_LEASE;
            match state
                .queue
                .claim_deliveries(DeliveryState::Waiting, now, until, free.min(256))
                .await
            {
                Ok(claimed) => {
                    for delivery in claimed {
                        let Ok(permit) = Arc::clone(&watching).try_acquire_owned() else {
                            break;
                        };
                        let state = Arc::clone(&state);
                        tokio::spawn(async move {
                            watch(&state, delivery).await;
                            drop(permit);
                        });
                    }
                }
                Err(error) => tracing::warn!(%error, "webhook deliveries not read; trying again"),
            }
        }
        let free = sending.available_permits();
        if free > 0 {
            let until = now + state.webhooks.timeout + Duration::from_secs(60);
            match state
                .queue
                .claim_deliveries(DeliveryState::Pending, now, until, free)
                .await
            {
                Ok(claimed) => {
                    for delivery in claimed {
                        let Ok(permit) = Arc::clone(&sending).try_acquire_owned() else {
                            break;
                        };
                        let state = Arc::clone(&state);
                        tokio::spawn(async move {
                            send(&state, delivery).await;
                            drop(permit);
                        });
                    }
                }
                Err(error) => tracing::warn!(%error, "webhook deliveries not read; trying again"),
            }
        }
    }
}

/// The `type` of every payload.
const CALL_COMPLETED: &str = "call.completed";

/// The body every webhook delivery POSTs (Standard Webhooks' envelope).
// Members in name order, as the payloads always had them.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = WebhookPayload)]
pub(crate) struct Payload<'a> {
    #[schema(inline)]
    data: PayloadData<'a>,
    #[schema(format = DateTime)]
    timestamp: String,
    #[serde(rename = "type")]
    #[schema(schema_with = payload_type_schema)]
    kind: &'static str,
}

/// `type`: always [`CALL_COMPLETED`].
fn payload_type_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some([CALL_COMPLETED]))
        .build()
}

// `data` of a [`Payload`]: the call's final answer (no doc comment: it would
// become the inline schema's description).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct PayloadData<'a> {
    /// The body that `GET /v1/calls/{id}` answers: the result, or the problem.
    body: serde_json::Value,
    call_id: &'a str,
    /// Its `Location` (a created customer's).
    location: Option<String>,
    /// The HTTP status `GET /v1/calls/{id}` answers for the call now that it ended.
    status_code: u16,
    system: &'a str,
}

/// Watches a waiting delivery's call until its answer is final (then the
/// delivery is pending and sent at once) or the watch's lease is nearly over.
async fn watch(state: &RelayState, mut delivery: Delivery) {
    // Room left in the lease for the one attempt made right after the answer.
    let room = (state.webhooks.timeout + Duration::from_secs(5)).min(WATCH_LEASE / 2);
    let deadline = tokio::time::Instant::now() + WATCH_LEASE - room;
    loop {
        let now = OffsetDateTime::now_utc();
        match answer_of(state, &delivery.call_id).await {
            Ok(Answered::Final {
                status,
                location,
                body,
            }) => {
                let payload = Payload {
                    data: PayloadData {
                        body,
                        call_id: &delivery.call_id,
                        location,
                        status_code: status,
                        system: &delivery.system,
                    },
                    timestamp: crate::http::rfc3339(now),
                    kind: CALL_COMPLETED,
                };
                delivery.payload = serde_json::to_string(&payload).ok();
                delivery.state = DeliveryState::Pending;
                delivery.next_at = now;
                delivery.give_up_at = Some(now + state.webhooks.retry_for);
                // Sent at once under the watch's lease; stored with the attempt's
                // outcome (a relay killed before that watches it again).
                send(state, delivery).await;
                return;
            }
            Ok(Answered::Running(current)) => {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    delivery.next_at = now;
                    save(state, delivery).await;
                    return;
                }
                // Ends at the call's end, or after at most `left`.
                if state
                    .calls
                    .wait_final(&current, left.min(Duration::from_secs(30)))
                    .await
                    .is_err()
                {
                    // Gone meanwhile or the store failed: the next round says which.
                    tokio::time::sleep(Duration::from_secs(1).min(left)).await;
                }
                if state.shutdown.is_cancelled() {
                    return;
                }
            }
            Ok(Answered::Gone) => {
                delivery.state = DeliveryState::Failed;
                delivery.last_error = Some("the call is no longer stored".into());
                save(state, delivery).await;
                return;
            }
            Err(error) => {
                tracing::warn!(%error, delivery = %delivery.id, "webhook: the call's answer not read");
                delivery.next_at = now + time::Duration::seconds(5);
                save(state, delivery).await;
                return;
            }
        }
    }
}

/// One attempt at a pending delivery this relay leased, and what it leaves:
/// delivered, due again after a pause, or failed.
async fn send(state: &RelayState, mut delivery: Delivery) {
    let now = OffsetDateTime::now_utc();
    let Some(payload) = delivery.payload.clone() else {
        delivery.state = DeliveryState::Waiting;
        save(state, delivery).await;
        return;
    };
    delivery.attempts = delivery.attempts.saturating_add(1);
    delivery.last_attempt_at = Some(now);
    let outcome = attempt(state, &delivery, payload.into_bytes(), now).await;
    let metrics = &state.metrics;
    match outcome {
        Ok(status) => {
            delivery.last_status = Some(status);
            delivery.last_error = None;
            delivery.state = DeliveryState::Delivered;
            delivery.delivered_at = Some(OffsetDateTime::now_utc());
            metrics.webhook_attempt("delivered");
            tracing::info!(delivery = %delivery.id, call_id = %delivery.call_id, status,
                attempts = delivery.attempts, "webhook delivered");
        }
        Err(failure) => {
            delivery.last_status = failure.status;
            delivery.last_error = Some(failure.why.clone());
            let pause = pause_after(delivery.attempts);
            let next = OffsetDateTime::now_utc() + pause;
            let give_up = delivery.give_up_at.is_some_and(|g| next > g);
            if failure.status == Some(410) || give_up || failure.permanent {
                delivery.state = DeliveryState::Failed;
                metrics.webhook_attempt("failed");
                tracing::warn!(delivery = %delivery.id, call_id = %delivery.call_id,
                    attempts = delivery.attempts, why = %failure.why, "webhook failed; not retried");
            } else {
                delivery.next_at = next;
                metrics.webhook_attempt("retry");
                tracing::info!(delivery = %delivery.id, call_id = %delivery.call_id,
                    attempts = delivery.attempts, why = %failure.why,
                    retry_in_secs = pause.as_secs(), "webhook not taken; retried later");
            }
        }
    }
    save(state, delivery).await;
}

/// Why an attempt failed.
struct Failure {
    status: Option<u16>,
    why: String,
    /// Retrying cannot help (no secret to sign with, a URL no longer allowed).
    permanent: bool,
}

/// POSTs the signed payload; the receiver's status when it took it (2xx).
async fn attempt(
    state: &RelayState,
    delivery: &Delivery,
    body: Vec<u8>,
    now: OffsetDateTime,
) -> Result<u16, Failure> {
    let permanent = |why: String| Failure {
        status: None,
        why,
        permanent: true,
    };
    let Some(secret) = delivery
        .owner
        .as_deref()
        .and_then(|owner| state.keys.webhook_secret(owner))
    else {
        return Err(permanent(
            "the call's API key has no webhook_secret now (removed from the configuration)".into(),
        ));
    };
    // Checked again: the configuration may have changed since the call.
    let url = state
        .webhooks
        .check(&delivery.url)
        .map_err(|refused| permanent(refused.0))?;
    let client = state.webhooks.client().map_err(|r| permanent(r.0))?;
    let timestamp = now.unix_timestamp();
    let signed = signature(&secret, &delivery.id, timestamp, &body);
    let response = client
        .post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &delivery.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signed)
        .body(body)
        .send()
        .await
        .map_err(|error| Failure {
            status: None,
            why: describe(&error),
            permanent: false,
        })?;
    let status = response.status();
    // The receiver's body is not read: nothing of it reaches anyone.
    drop(response);
    if status.is_success() {
        Ok(status.as_u16())
    } else {
        Err(Failure {
            status: Some(status.as_u16()),
            why: format!("the receiver answered {status}"),
            permanent: false,
        })
    }
}

/// A send error in a line: its kind and the innermost cause (a refused address
/// says so), never a URL's query (Power Automate's carry a signature).
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "no answer in time"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "the request failed"
    };
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(error);
    let mut innermost = None;
    while let Some(cause) = source {
        innermost = Some(cause.to_string());
        source = cause.source();
    }
    let mut why = match innermost {
        Some(cause) => format!("{kind}: {cause}"),
        None => kind.to_owned(),
    };
    if why.len() > MAX_ERROR_CHARS {
        let mut end = MAX_ERROR_CHARS;
        while !why.is_char_boundary(end) {
            end -= 1;
        }
        why.truncate(end);
    }
    why
}

/// The pause after attempt number `attempts` failed.
fn pause_after(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(20);
    FIRST_PAUSE.saturating_mul(1 << doublings).min(MAX_PAUSE)
}

/// Stores a delivery's new state; whether it was stored.
async fn save(state: &RelayState, delivery: Delivery) -> bool {
    let id = delivery.id.clone();
    match state.queue.save_delivery(delivery).await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%error, delivery = %id,
                "webhook delivery state not stored; its lease runs out and it is tried again");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The payload is the JSON the sender built with `json!` before it had a
    /// type: the same members, in name order.
    #[test]
    fn the_payload_keeps_its_json() {
        let payload = Payload {
            data: PayloadData {
                body: serde_json::json!({"id": "c_1", "status": "succeeded"}),
                call_id: "c_1",
                location: None,
                status_code: 200,
                system: "SIM",
            },
            timestamp: "2026-11-28T08:00:00.123Z".into(),
            kind: CALL_COMPLETED,
        };
        let before = serde_json::json!({
            "type": "call.completed",
            "timestamp": "2026-11-28T08:00:00.123Z",
            "data": {
                "call_id": "c_1",
                "system": "SIM",
                "status_code": 200,
                "location": null,
                "body": {"id": "c_1", "status": "succeeded"},
            },
        });
        assert_eq!(
            serde_json::to_string(&payload).expect("serializes"),
            before.to_string()
        );
    }

    #[test]
    fn pauses_double_up_to_an_hour() {
        assert_eq!(pause_after(1), Duration::from_secs(5));
        assert_eq!(pause_after(2), Duration::from_secs(10));
        assert_eq!(pause_after(5), Duration::from_secs(80));
        assert_eq!(pause_after(30), MAX_PAUSE);
        assert_eq!(pause_after(u32::MAX), MAX_PAUSE);
    }
}
