//! Webhooks: `GET /v1/webhooks/deliveries` (and one by id), `POST
//! /v1/webhooks/deliveries/{id}/redeliver`, and the subscriptions of Power
//! Automate's webhook trigger: `POST /v1/webhooks/subscriptions` (`201` with the
//! `Location` the trigger DELETEs when its flow is turned off), `GET` and
//! `DELETE /v1/webhooks/subscriptions/{id}`.
//!
//! A key sees its own deliveries and subscriptions; an operator key sees every
//! key's. A delivery lists where it goes, its state, attempts and the
//! receiver's last status, never the receiver's body.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::ApiError;
use super::error::Problem;
use super::render::rfc3339;
use super::request::{Caller, body_bytes, checked_callback, path};
use crate::queue::{Delivery, DeliveryFilter, DeliveryState, Subscription};
use crate::state::RelayState;

/// The default page size of the listing.
const DEFAULT_LIMIT: usize = 100;

/// The largest page of the listing.
const MAX_LIMIT: usize = 1000;

/// The query of `GET /v1/webhooks/deliveries`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeliveryQuery {
    /// Only the deliveries of this call.
    call_id: Option<String>,
    /// Only deliveries in this state.
    #[param(schema_with = delivery_state_schema, nullable = false)]
    state: Option<String>,
    /// `next_cursor` of the page before.
    cursor: Option<String>,
    /// The most deliveries in the page.
    #[param(schema_with = limit_schema, nullable = false)]
    limit: Option<usize>,
}

/// The states a delivery is in, by their API names.
fn delivery_state_schema() -> utoipa::openapi::Object {
    let names = [
        DeliveryState::Waiting,
        DeliveryState::Pending,
        DeliveryState::Delivered,
        DeliveryState::Failed,
    ]
    .map(DeliveryState::as_str);
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(names))
        .build()
}

/// The page size: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when left out.
fn limit_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Integer)
        .minimum(Some(1))
        .maximum(Some(MAX_LIMIT))
        .default(Some(DEFAULT_LIMIT.into()))
        .build()
}

/// A delivery's state, described.
fn delivery_state_member() -> utoipa::openapi::Object {
    let mut schema = delivery_state_schema();
    schema.description = Some(
        "`waiting`: the call runs; `pending`: its answer is known and not yet taken; \
         `delivered`: the receiver answered 2xx; `failed`: attempts ran out (or `410 Gone`)."
            .into(),
    );
    schema
}

/// The path of the delivery routes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(
    dead_code,
    reason = "documentation of the path the handlers read as a String"
)]
struct DeliveryPath {
    /// A delivery id (`msg_…`), the `webhook-id` of its attempts.
    #[param(pattern = "^msg_[0-9a-f]{32}$")]
    id: String,
}

/// The path of `DELETE /v1/webhooks/subscriptions/{id}`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(
    dead_code,
    reason = "documentation of the path the handler reads as a String"
)]
struct SubscriptionPath {
    /// A subscription id (`sub_…`).
    #[param(pattern = "^sub_[0-9a-f]{32}$")]
    id: String,
}

/// `GET /v1/webhooks/deliveries`: the caller's deliveries (every key's for an
/// operator), oldest first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/webhooks/deliveries",
    operation_id = "listWebhookDeliveries",
    tag = "webhooks",
    summary = "List webhook deliveries",
    description = "The deliveries of the key's calls (every key's for a key with `operator = true`), oldest first, a page at a time.",
    params(DeliveryQuery),
    responses(
        (status = 200, description = "A page of deliveries.", body = DeliveryPage),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 500, response = super::openapi::InternalError),
    ),
)]
pub(crate) async fn list_deliveries(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    query: Result<Query<DeliveryQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let wanted = match query.state.as_deref() {
        None => None,
        Some(name) => Some(DeliveryState::parse(name).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "state {name:?} is none of waiting, pending, delivered, failed"
            ))
        })?),
    };
    let after = match query.cursor.as_deref() {
        None => None,
        Some(c) => Some(
            c.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| ApiError::BadRequest("cursor is not one this relay gave".into()))?,
        ),
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let filter = DeliveryFilter {
        owner: (!caller.is_operator()).then(|| caller.name.clone()),
        call_id: query.call_id,
        state: wanted,
        after,
        limit: limit + 1,
    };
    let mut page = state.queue.deliveries(filter).await.map_err(store)?;
    let next = (page.len() > limit).then(|| {
        page.truncate(limit);
        page.last().map(|d| d.seq.to_string())
    });
    let body = DeliveryPage {
        deliveries: page.iter().map(delivery_json).collect(),
        next_cursor: next.flatten(),
    };
    Ok((StatusCode::OK, Json(body)).into_response())
}

/// `GET /v1/webhooks/deliveries/{id}`.
#[utoipa::path(
    get,
    path = "/v1/webhooks/deliveries/{id}",
    operation_id = "getWebhookDelivery",
    tag = "webhooks",
    summary = "Get a webhook delivery",
    params(DeliveryPath),
    responses(
        (status = 200, description = "The delivery.", body = DeliveryBody),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
        (status = 500, response = super::openapi::InternalError),
    ),
)]
pub(crate) async fn get_delivery(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path(id)?;
    let delivery = own_delivery(&state, &caller, &id).await?;
    Ok((StatusCode::OK, Json(delivery_json(&delivery))).into_response())
}

/// `POST /v1/webhooks/deliveries/{id}/redeliver`: sends a delivery again (one
/// delivered, failed or still retrying), with fresh attempts; `202`. A delivery
/// whose call still runs is `409`.
#[utoipa::path(
    post,
    path = "/v1/webhooks/deliveries/{id}/redeliver",
    operation_id = "redeliverWebhook",
    tag = "webhooks",
    summary = "Send a webhook delivery again",
    description = "Sends the same payload (same `webhook-id`) again with fresh attempts: a delivered one, a failed one, or one still retrying. `409` while its call still runs.",
    params(DeliveryPath),
    responses(
        (status = 202, description = "Due now.", body = DeliveryBody),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, response = super::openapi::Conflict),
        (status = 500, response = super::openapi::InternalError),
    ),
)]
pub(crate) async fn redeliver(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path(id)?;
    let delivery = own_delivery(&state, &caller, &id).await?;
    if delivery.payload.is_none() {
        return Err(ApiError::Call(Box::new(Problem::new(
            StatusCode::CONFLICT,
            "delivery-waiting",
            "Delivery waits for its call",
            format!(
                "delivery {id} waits for call {} to end; it is sent then",
                delivery.call_id
            ),
        ))));
    }
    let now = OffsetDateTime::now_utc();
    let again = state
        .queue
        .redeliver(&id, now, now + state.webhooks.retry_for)
        .await
        .map_err(store)?
        .ok_or_else(|| not_found(&id))?;
    tracing::info!(delivery = %id, key = %caller.name, "webhook redelivery asked for");
    Ok((StatusCode::ACCEPTED, Json(delivery_json(&again))).into_response())
}

/// The body of `POST /v1/webhooks/subscriptions`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewWebhookSubscription)]
pub(crate) struct NewSubscription {
    #[schema(schema_with = notification_url_schema)]
    url: String,
    /// Only calls of this system (default: every system the key may call).
    #[serde(default)]
    #[schema(nullable = false)]
    system: Option<String>,
}

/// A subscription's `url`: a callback URL of at most
/// [`crate::webhooks::MAX_URL_BYTES`], which Power Automate fills in.
fn notification_url_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .format(Some(utoipa::openapi::SchemaFormat::Custom("uri".into())))
        .max_length(Some(crate::webhooks::MAX_URL_BYTES))
        .description(Some(
            "Where the answers go (checked as `Sapbridge-Callback` is). Power Automate \
             fills it with the trigger's callback URL.",
        ))
        .extensions(Some(
            utoipa::openapi::extensions::ExtensionsBuilder::new()
                .add("x-ms-notification-url", true)
                .build(),
        ))
        .build()
}

/// `POST /v1/webhooks/subscriptions`: every later call of the key (of `system`,
/// if given) that ends is delivered to `url`; `201` with the subscription's
/// `Location`.
#[utoipa::path(
    post,
    path = "/v1/webhooks/subscriptions",
    operation_id = "subscribeWebhook",
    tag = "webhooks",
    summary = "Subscribe to the answers of the key's calls",
    description = "Every later call of the key (of `system`, if given) is delivered to `url` when it ends, as a call's own `Sapbridge-Callback` is. The shape of Power Automate's webhook trigger: `201` with the `Location` it DELETEs when the flow is turned off.",
    request_body = NewSubscription,
    responses(
        (status = 201, description = "Subscribed.", body = SubscriptionBody,
            headers(("Location" = String, description = "The subscription, to DELETE."))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 500, response = super::openapi::InternalError),
    ),
)]
pub(crate) async fn subscribe(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body, &state.settings)?;
    let new: NewSubscription = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "the body must be {{\"url\": \"https://…\", \"system\": \"…\"}}: {e}"
        ))
    })?;
    if let Some(system) = &new.system {
        caller.check_system(&state, system)?;
    }
    let url = checked_callback(&state, &caller, &new.url)?;
    let subscription = Subscription {
        id: crate::ids::new_id("sub_"),
        owner: caller.name.clone(),
        url,
        system: new.system,
        created_at: OffsetDateTime::now_utc(),
    };
    state
        .queue
        .add_subscription(subscription.clone())
        .await
        .map_err(store)?;
    state.calls.subscribed().changed();
    tracing::info!(subscription = %subscription.id, key = %caller.name, "webhook subscription made");
    let path = format!("/v1/webhooks/subscriptions/{}", subscription.id);
    // Made absolute on the way out, as every `Location` of the relay.
    let mut response =
        (StatusCode::CREATED, Json(subscription_json(&subscription))).into_response();
    if let Ok(value) = HeaderValue::from_str(&path) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// `GET /v1/webhooks/subscriptions`: the caller's subscriptions (every key's for
/// an operator).
#[utoipa::path(
    get,
    path = "/v1/webhooks/subscriptions",
    operation_id = "listWebhookSubscriptions",
    tag = "webhooks",
    summary = "List webhook subscriptions",
    description = "The key's subscriptions (every key's for an operator).",
    responses(
        (status = 200, description = "The subscriptions.", body = SubscriptionList),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 500, response = super::openapi::InternalError),
    ),
)]
pub(crate) async fn list_subscriptions(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let owner = (!caller.is_operator()).then_some(caller.name.as_str());
    let subs = state.queue.subscriptions(owner).await.map_err(store)?;
    let body = SubscriptionList {
        subscriptions: subs.iter().map(subscription_json).collect(),
    };
    Ok((StatusCode::OK, Json(body)).into_response())
}

/// `DELETE /v1/webhooks/subscriptions/{id}`: `204`; `404` for none of the
/// caller's.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/subscriptions/{id}",
    operation_id = "unsubscribeWebhook",
    tag = "webhooks",
    summary = "Remove a webhook subscription",
    params(SubscriptionPath),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
        (status = 500, response = super::openapi::InternalError),
    ),
)]
pub(crate) async fn unsubscribe(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path(id)?;
    let owner = (!caller.is_operator()).then_some(caller.name.as_str());
    let removed = state
        .queue
        .remove_subscription(owner, &id)
        .await
        .map_err(store)?;
    if !removed {
        return Err(ApiError::Call(Box::new(Problem::new(
            StatusCode::NOT_FOUND,
            "subscription-not-found",
            "Subscription not found",
            format!("no subscription {id} of this API key"),
        ))));
    }
    state.calls.subscribed().changed();
    tracing::info!(subscription = %id, key = %caller.name, "webhook subscription removed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The delivery `id` if the caller may see it (its own, or any for an operator).
async fn own_delivery(state: &RelayState, caller: &Caller, id: &str) -> Result<Delivery, ApiError> {
    match state.queue.delivery(id).await.map_err(store)? {
        Some(d) if caller.is_operator() || d.owner.as_deref() == Some(caller.name.as_str()) => {
            Ok(d)
        }
        _ => Err(not_found(id)),
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::Call(Box::new(Problem::new(
        StatusCode::NOT_FOUND,
        "delivery-not-found",
        "Delivery not found",
        format!("no webhook delivery {id} of this API key"),
    )))
}

fn store(error: crate::queue::QueueError) -> ApiError {
    crate::calls::CallError::Store(error).into()
}

/// A delivery as the API lists it (never its payload's secret parts: it has
/// none, and never the receiver's body: it is not kept).
/// A page of `GET /v1/webhooks/deliveries`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = WebhookDeliveryPage)]
pub(crate) struct DeliveryPage {
    /// The deliveries, oldest first.
    deliveries: Vec<DeliveryBody>,
    /// Pass as `cursor` for the next page; `null` on the last.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// A webhook delivery of a call's final answer. Members in name order, as the
/// answers always had them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = WebhookDelivery)]
pub(crate) struct DeliveryBody {
    attempts: u32,
    call_id: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    delivered_at: Option<String>,
    #[schema(format = DateTime)]
    give_up_at: Option<String>,
    /// The delivery id, sent as `webhook-id` at every attempt (receivers
    /// deduplicate by it).
    id: String,
    /// The API key that owns the call.
    key: Option<String>,
    #[schema(format = DateTime)]
    last_attempt_at: Option<String>,
    /// Why the latest attempt failed, in the relay's words.
    last_error: Option<String>,
    /// The receiver's HTTP status at the latest attempt (its body is never kept).
    last_status: Option<u16>,
    #[schema(format = DateTime)]
    next_attempt_at: Option<String>,
    #[schema(schema_with = delivery_state_member)]
    state: &'static str,
    /// The subscription that asked for it; `null` for a call's own
    /// `Sapbridge-Callback`.
    subscription: Option<String>,
    system: String,
    #[schema(format = "uri")]
    url: String,
}

fn delivery_json(d: &Delivery) -> DeliveryBody {
    DeliveryBody {
        attempts: d.attempts,
        call_id: d.call_id.clone(),
        created_at: rfc3339(d.created_at),
        delivered_at: d.delivered_at.map(rfc3339),
        give_up_at: d.give_up_at.map(rfc3339),
        id: d.id.clone(),
        key: d.owner.clone(),
        last_attempt_at: d.last_attempt_at.map(rfc3339),
        last_error: d.last_error.clone(),
        last_status: d.last_status,
        next_attempt_at: d.state.is_open().then(|| rfc3339(d.next_at)),
        state: d.state.as_str(),
        subscription: d.subscription.clone(),
        system: d.system.clone(),
        url: d.url.clone(),
    }
}

/// The subscriptions of `GET /v1/webhooks/subscriptions`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = WebhookSubscriptionList)]
pub(crate) struct SubscriptionList {
    subscriptions: Vec<SubscriptionBody>,
}

/// A subscription as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = WebhookSubscription)]
pub(crate) struct SubscriptionBody {
    /// When it was made.
    #[schema(format = DateTime)]
    created_at: String,
    /// `sub_…`.
    id: String,
    /// The API key it belongs to.
    key: String,
    /// Only calls of this system; `null`: every system the key may call.
    #[schema(required = true)]
    system: Option<String>,
    /// Where the answers go.
    #[schema(format = "uri")]
    url: String,
}

fn subscription_json(s: &Subscription) -> SubscriptionBody {
    SubscriptionBody {
        id: s.id.clone(),
        url: s.url.clone(),
        system: s.system.clone(),
        created_at: rfc3339(s.created_at),
        key: s.owner.clone(),
    }
}
