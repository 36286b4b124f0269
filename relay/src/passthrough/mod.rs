//! HTTP pass-through: `ANY /v1/systems/{system}/http/{*path}` tunnelled through an
//! agent to the system's HTTP service (SAP Gateway OData, ICF services, ...).
//!
//! A tunnel, not a durable call: the request never enters the queue. Each agent
//! session has a [`Tunnel`] (its open streams, see `tunnel.rs`); the route's
//! handler opens a stream on the session serving the system with the fewest open
//! streams (`AgentRegistry::open_stream`), and [`forward`] sends the request head
//! as JSON and the body as binary chunks (`body.rs`), and streams the response
//! back the same way. Headers are filtered on the way
//! (`headers.rs`): the backend never sees the client's API key.
//!
//! The agent decides what may be reached (its path allowlist, deny by default);
//! the relay only authenticates the client and checks the key's scope, as for
//! every route.
//!
//! Across relay replicas (`peer.rs`, `cluster.rs`): a replica none of whose
//! agents forwards HTTP for the system (or all of them at their stream limit)
//! sends the request on to a replica that has such an agent (found in the shared
//! store), signed with the cluster secret; that replica serves it from its own
//! agents and never forwards it again.
//!
//! Limits (`[relay]` keys `http_body_limit_bytes`, `http_timeout_secs`,
//! `http_max_in_flight_per_agent`): request bodies over the limit answer 413 (by
//! `Content-Length` before anything is sent, or as soon as a streamed body passes
//! it); no response head in time answers 504; per stream and direction at most a
//! window of chunks is buffered.

mod body;
mod cluster;
mod forward;
mod headers;
mod peer;
mod tunnel;

use std::time::Duration;

use axum::Router;
use axum::handler::Handler;
use axum::routing::any;

pub(crate) use cluster::{FORWARDED_HEADER, ForwardedCaller, Refused, Signer};
pub(crate) use forward::{ForwardError, forward};
pub(crate) use peer::{PeerError, Peers};
pub(crate) use tunnel::{OpenStream, Ordered, Tunnel, TunnelOutbound};

use crate::config::RelayConfig;

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

/// The pass-through routes, each served by `handler`. They stream their bodies
/// under their own limit, so the router adds them outside the JSON routes'
/// body-limit layers.
pub(crate) fn routes<H, T, S>(handler: H) -> Router<S>
where
    H: Handler<T, S>,
    T: 'static,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/v1/systems/{system}/http", any(handler.clone()))
        .route("/v1/systems/{system}/http/", any(handler.clone()))
        .route("/v1/systems/{system}/http/{*path}", any(handler))
}

/// The system and the path below `/http` (at least `/`) of a raw request path.
pub(crate) fn split_path(raw: &str) -> Option<(String, String)> {
    let rest = raw.strip_prefix("/v1/systems/")?;
    let (system, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("http")?;
    let path = match rest {
        "" => "/",
        rest if rest.starts_with('/') => rest,
        _ => return None,
    };
    Some((system.to_owned(), path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_system_and_rest() {
        assert_eq!(
            split_path("/v1/systems/SIM/http/api/x%2Fy"),
            Some(("SIM".into(), "/api/x%2Fy".into()))
        );
        assert_eq!(
            split_path("/v1/systems/SIM/http"),
            Some(("SIM".into(), "/".into()))
        );
        assert_eq!(split_path("/v1/systems/SIM/httpx"), None);
        assert_eq!(split_path("/v1/calls/x"), None);
    }
}
