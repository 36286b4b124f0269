//! The HTTP API (see `design/http-api.md`): routes, the body limit, and the
//! problem+json answers for unknown routes and methods.

mod actions;
mod calls;
mod customers;
mod error;
mod functions_meta;
mod openapi;
mod ops;
mod render;
mod request;
mod tables;
mod transactions;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, patch, post};
use tower_http::trace::TraceLayer;

pub(crate) use actions::Action;
pub(crate) use error::{ApiError, Problem};
pub(crate) use functions_meta::MetadataCache;
pub(crate) use request::Caller;

use crate::state::RelayState;

/// The relay's router: the client API, the agent endpoint and the operations routes.
pub(crate) fn router(state: Arc<RelayState>) -> Router {
    let limit = state.settings.body_limit_bytes;
    Router::new()
        .route("/v1/agent/connect", get(crate::session::connect))
        .route("/v1/systems", get(ops::list_systems))
        .route(
            "/v1/systems/{system}/functions/{function}",
            post(calls::call_function).get(functions_meta::get_interface),
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
            "/v1/systems/{system}/tables/{table}/query",
            post(tables::query_table),
        )
        .route(
            "/v1/calls/{id}",
            get(calls::get_call).delete(calls::cancel_call),
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
            request::reject_oversized,
        ))
        // Pass-through streams bodies under its own limit: outside the layers above.
        .merge(crate::passthrough::routes())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
