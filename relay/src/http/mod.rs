//! The HTTP API (see `design/http-api.md`): routes, the body limit, and the
//! problem+json answers for unknown routes and methods.

mod actions;
mod admin;
mod agent_connect;
mod agent_tokens;
mod audit;
mod calls;
mod console;
mod customers;
mod error;
mod metadata;
mod openapi;
mod ops;
mod passthrough;
mod render;
mod request;
mod tables;
mod transactions;
mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{delete, get, patch, post};
use sapbridge_proto::TraceParent;
use tower_http::trace::TraceLayer;

pub(crate) use admin::{refresh_keys, refresh_stored_keys};
pub(crate) use calls::{Answered, answer_of};
pub(crate) use error::{ApiError, Problem};
pub(crate) use ops::publish_agents;
pub(crate) use render::rfc3339;

use crate::state::RelayState;

/// The relay's router: the client API, the agent endpoint and the operations routes.
pub(crate) fn router(state: Arc<RelayState>) -> Router {
    let api = api_router(Arc::clone(&state));
    // The operator console (`/console/…`, HTML) calls the API on its operator's
    // behalf; its routes are outside the API's layers and its problem+json.
    api.clone().merge(console::routes(state, api))
}

/// The API's routes and layers.
fn api_router(state: Arc<RelayState>) -> Router {
    let limit = state.settings.body_limit_bytes;
    Router::new()
        .route("/v1/agent/connect", get(agent_connect::connect))
        .route("/v1/systems", get(ops::list_systems))
        .route(
            "/v1/systems/{system}/functions",
            get(metadata::list_functions),
        )
        .route(
            "/v1/systems/{system}/functions/{function}",
            post(calls::call_function).get(metadata::get_interface),
        )
        .route(
            "/v1/systems/{system}/transactions",
            post(transactions::post_transaction),
        )
        .route(
            "/v1/systems/{system}/customers",
            post(customers::create).get(customers::search),
        )
        .route(
            "/v1/systems/{system}/customers/{customer}",
            get(customers::get).merge(patch(customers::change)),
        )
        .route(
            "/v1/systems/{system}/tables/{table}",
            get(tables::get_table),
        )
        .route(
            "/v1/systems/{system}/tables/{table}/fields",
            get(tables::get_fields),
        )
        .route(
            "/v1/systems/{system}/tables/{table}/query",
            post(tables::query_table),
        )
        .route("/v1/calls", get(calls::list_calls))
        .route(
            "/v1/calls/{id}",
            get(calls::get_call).delete(calls::cancel_call),
        )
        .route("/v1/audit", get(audit::list))
        .route(
            "/v1/admin/keys",
            post(admin::post_key).get(admin::list_keys),
        )
        .route("/v1/admin/keys/{name}", delete(admin::delete_key))
        .route(
            "/v1/admin/agent-tokens",
            post(agent_tokens::post_token).get(agent_tokens::list_tokens),
        )
        .route(
            "/v1/admin/agent-tokens/{name}",
            delete(agent_tokens::delete_token),
        )
        .route("/v1/webhooks/deliveries", get(webhooks::list_deliveries))
        .route("/v1/webhooks/deliveries/{id}", get(webhooks::get_delivery))
        .route(
            "/v1/webhooks/deliveries/{id}/redeliver",
            post(webhooks::redeliver),
        )
        .route(
            "/v1/webhooks/subscriptions",
            post(webhooks::subscribe).get(webhooks::list_subscriptions),
        )
        .route(
            "/v1/webhooks/subscriptions/{id}",
            delete(webhooks::unsubscribe),
        )
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(openapi::document))
        .fallback(error::route_not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            api_edges,
        ))
        // Pass-through streams bodies under its own limit and answers with the
        // backend's own `Location`: outside the layers above.
        .merge(crate::passthrough::routes(passthrough::tunnel))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            audit::record_requests,
        ))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}

/// The span of one request in the log: method and path, never the query (a client
/// may put a key in it, `?api_key=…`) nor a header (`Authorization`, `X-API-Key`,
/// `Cookie`).
fn request_span(request: &Request) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        version = ?request.version(),
        trace_id = tracing::field::Empty,
    )
}

/// The relay's span of the request's trace (W3C Trace Context): the client's
/// `traceparent` continued with a new span id, or a new trace when it sent none (or
/// one that does not parse, which the spec says to ignore).
pub(crate) fn trace_context(headers: &http::HeaderMap) -> TraceParent {
    use rand::RngCore;
    let mut random = [0u8; 24];
    rand::rng().fill_bytes(&mut random);
    let mut span_id = [0u8; 8];
    span_id.copy_from_slice(&random[16..]);
    // All-zero ids are invalid; random ones are so once in 2^64.
    span_id[7] |= 1;
    let incoming = headers
        .get(request::TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    match incoming {
        Some(parent) => parent.child(span_id),
        None => {
            let mut trace_id = [0u8; 16];
            trace_id.copy_from_slice(&random[..16]);
            trace_id[15] |= 1;
            TraceParent {
                trace_id,
                parent_id: span_id,
                flags: 0,
            }
        }
    }
}

/// What every request of the API (not of pass-through) passes: a declared body
/// over the limit is refused before it is read; the request joins its client's
/// trace ([`trace_context`]: its `traceparent` becomes the relay's, which the call
/// stores for the agent and the answer echoes, and its trace id is in the
/// request's log span); and the answer's relative `Location` becomes absolute
/// ([`crate::public_address`]). One layer for all: each layer costs every request
/// a boxed future.
async fn api_edges(
    State(state): State<Arc<RelayState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let trace = trace_context(request.headers());
    tracing::Span::current().record("trace_id", trace.trace_id_hex());
    let traceparent = http::HeaderValue::from_str(&trace.to_string()).ok();
    if let Some(value) = &traceparent {
        request
            .headers_mut()
            .insert(request::TRACEPARENT, value.clone());
    }
    if let Some(mut refused) = request::oversized(&state.settings, &request) {
        if let Some(value) = traceparent {
            refused.headers_mut().insert(request::TRACEPARENT, value);
        }
        return refused;
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    let base = state.settings.public.base(request.headers(), peer);
    let mut response = next.run(request).await;
    if let Some(base) = base {
        absolute_location(&base, &mut response);
    }
    if let Some(value) = traceparent {
        response.headers_mut().insert(request::TRACEPARENT, value);
    }
    response
}

/// Turns the relay's own relative `Location` headers (`/v1/calls/{id}`,
/// `/v1/systems/…/customers/{n}`) into absolute URLs under `base`.
fn absolute_location(base: &str, response: &mut Response) {
    let relative = response
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.starts_with('/') && !v.starts_with("//"))
        .map(str::to_owned);
    if let Some(path) = relative
        && let Ok(value) = http::HeaderValue::from_str(&format!("{base}{path}"))
    {
        response.headers_mut().insert(http::header::LOCATION, value);
    }
}
