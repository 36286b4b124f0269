//! The HTTP API (see `design/http-api.md`): routes, the body limit, and the
//! problem+json answers for unknown routes and methods.

mod calls;
mod error;
mod ops;
mod render;
mod request;
mod transactions;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tower_http::trace::TraceLayer;

pub(crate) use error::ApiError;

use crate::state::RelayState;

/// The relay's router: the client API, the agent endpoint and the operations routes.
pub(crate) fn router(state: Arc<RelayState>) -> Router {
    let limit = state.settings.body_limit_bytes;
    Router::new()
        .route("/v1/agent/connect", get(crate::session::connect))
        .route("/v1/systems", get(ops::list_systems))
        .route(
            "/v1/systems/{system}/functions/{function}",
            post(calls::call_function),
        )
        .route(
            "/v1/systems/{system}/transactions",
            post(transactions::post_transaction),
        )
        .route(
            "/v1/calls/{id}",
            get(calls::get_call).delete(calls::cancel_call),
        )
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(error::route_not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            request::reject_oversized,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
