//! HTTP pass-through: `ANY /v1/systems/{system}/http/{*path}` tunnelled through an
//! agent to the system's HTTP service (SAP Gateway OData, ICF services, ...).
//!
//! A tunnel, not a durable call: the request never enters the queue. Each agent
//! session has a [`Tunnel`] (its open streams, see `tunnel.rs`); the handler in
//! `forward.rs` picks the session serving the system with the fewest open streams,
//! sends the request head as JSON and the body as binary chunks (`body.rs`), and
//! streams the response back the same way. Headers are filtered on the way
//! (`headers.rs`): the backend never sees the client's API key.
//!
//! The agent decides what may be reached (its path allowlist, deny by default);
//! the relay only authenticates the client and checks the key's scope, as for
//! every route.
//!
//! Limits (`[relay]` keys `http_body_limit_bytes`, `http_timeout_secs`,
//! `http_max_in_flight_per_agent`): request bodies over the limit answer 413 (by
//! `Content-Length` before anything is sent, or as soon as a streamed body passes
//! it); no response head in time answers 504; per stream and direction at most a
//! window of chunks is buffered.

mod body;
mod forward;
mod headers;
mod tunnel;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::any;

pub(crate) use tunnel::{Ordered, Tunnel, TunnelOutbound};

use crate::config::RelayConfig;
use crate::state::RelayState;

/// The pass-through limits taken from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct PassthroughSettings {
    /// Largest request body.
    pub(crate) body_limit_bytes: usize,
    /// Wait for the response head; longest pause between response chunks.
    pub(crate) timeout: Duration,
    /// Open streams per agent session.
    pub(crate) max_in_flight_per_agent: u32,
}

impl PassthroughSettings {
    /// The settings of a validated configuration.
    pub(crate) fn new(config: &RelayConfig) -> Self {
        Self {
            body_limit_bytes: config.http_body_limit_bytes,
            timeout: Duration::from_secs(config.http_timeout_secs),
            max_in_flight_per_agent: config.http_max_in_flight_per_agent,
        }
    }
}

/// The pass-through routes. They stream their bodies under their own limit, so
/// the router adds them outside the JSON routes' body-limit layers.
pub(crate) fn routes() -> Router<Arc<RelayState>> {
    Router::new()
        .route("/v1/systems/{system}/http", any(forward::forward))
        .route("/v1/systems/{system}/http/", any(forward::forward))
        .route("/v1/systems/{system}/http/{*path}", any(forward::forward))
}
