//! `GET /v1/agent/connect`, the agent endpoint: checks the agent token (401), the
//! WebSocket upgrade (400) and that the relay is not shutting down (503), then
//! hands the connection to the agent sessions (see `session/`).

use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;

use super::ApiError;
use crate::auth::presented_secret;
use crate::state::RelayState;

/// `GET /v1/agent/connect`: checks the agent token and upgrades to a WebSocket.
#[utoipa::path(
    get,
    path = "/v1/agent/connect",
    operation_id = "agentConnect",
    tag = "agents",
    summary = "Agent endpoint: WebSocket upgrade (not for clients)",
    description = "An on-premises agent dials out to this endpoint and upgrades to a WebSocket (`Connection: Upgrade`, `Upgrade: websocket`) with `Authorization: Bearer <agent-token>`. The wire protocol (JSON text frames and binary body chunks) is defined by the `sapbridge-proto` crate, not by this document.",
    security(("agentToken" = [])),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol."),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 503, response = super::openapi::ServiceUnavailable),
    ),
)]
pub(crate) async fn connect(
    State(state): State<Arc<RelayState>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let token = presented_secret(&headers, false).and_then(|s| state.keys.agent_token(s));
    let Some(token) = token else {
        tracing::warn!("agent connect with a missing or unknown token");
        state.metrics.auth_failed("agent_token");
        return ApiError::Unauthorized.into_response();
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return ApiError::BadRequest(rejection.body_text()).into_response(),
    };
    if state.shutdown.is_cancelled() {
        return ApiError::ShuttingDown.into_response();
    }
    state.note_use(crate::queue::CredentialKind::AgentToken, &token.name);
    state.sessions.accept(upgrade, token)
}
