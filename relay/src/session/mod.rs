//! Agent sessions: `GET /v1/agent/connect` authenticates the agent token on the
//! WebSocket upgrade, then each socket runs the [`handshake`] and the [`dispatch`]
//! loop inside a tracing span carrying the session id and agent id.
//!
//! Socket settings keep idle agents cheap: small read and write buffers, and frames
//! limited to [`MAX_FRAME_BYTES`].

mod dispatch;
mod frames;
mod handshake;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::{WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http::HeaderMap;
use sapbridge_proto::{MAX_FRAME_BYTES, PROTOCOL_VERSION};
use tracing::Instrument;

use crate::auth::{Credential, presented_secret};
use crate::http::ApiError;
use crate::ids::new_id;
use crate::state::RelayState;

pub(crate) use dispatch::SessionContext;

/// Read buffer per agent socket: most agent messages (outcomes, heartbeats, window
/// grants) are small; a larger frame grows it for as long as it needs.
const READ_BUFFER_BYTES: usize = 2 * 1024;
/// Write buffer per agent socket before it is flushed.
const WRITE_BUFFER_BYTES: usize = 8 * 1024;

/// `GET /v1/agent/connect`: checks the agent token and upgrades to a WebSocket.
pub(crate) async fn connect(
    State(state): State<Arc<RelayState>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let token = presented_secret(&headers, false).and_then(|s| state.agent_tokens.find(s));
    let Some(token) = token.cloned() else {
        tracing::warn!("agent connect with a missing or unknown token");
        return ApiError::Unauthorized.into_response();
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return ApiError::BadRequest(rejection.body_text()).into_response(),
    };
    if state.shutdown.is_cancelled() {
        return ApiError::ShuttingDown.into_response();
    }
    let tracked = state.sessions.token();
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(MAX_FRAME_BYTES * 2)
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            run(state, token, socket).await;
            drop(tracked);
        })
}

/// Runs one agent socket from hello to close.
async fn run(state: Arc<RelayState>, token: Credential, socket: WebSocket) {
    let session_id = new_id("s_");
    let span = tracing::info_span!(
        "agent_session",
        session_id = %session_id,
        token = %token.name,
        agent_id = tracing::field::Empty,
    );
    async move {
        let (mut sink, mut stream) = socket.split();
        let heartbeat = state.settings.heartbeat;
        let hello = match handshake::run(
            &mut sink,
            &mut stream,
            &token.scope,
            &session_id,
            heartbeat,
        )
        .await
        {
            handshake::Handshake::Welcomed(hello) => hello,
            handshake::Handshake::Refused(reason) => {
                tracing::debug!(?reason, "agent not welcomed");
                return;
            }
        };
        tracing::Span::current().record("agent_id", hello.agent_id.as_str());
        tracing::info!(
            agent_version = %hello.agent_version,
            protocol = hello.protocol,
            systems = ?hello.systems,
            credits = hello.credits,
            "agent connected"
        );
        if hello.protocol < PROTOCOL_VERSION {
            tracing::warn!(
                agent_version = %hello.agent_version,
                protocol = hello.protocol,
                relay_protocol = PROTOCOL_VERSION,
                "agent speaks an older protocol; it is served, but should be upgraded \
                 (units in doubt are never sent to it)"
            );
        }
        let registration = state.agents.register(&session_id, &hello);
        let ctx = SessionContext {
            session_id: session_id.clone(),
            function_systems: hello.function_systems(),
            hello,
            queue: Arc::clone(&state.queue),
            heartbeat,
            lease: state.settings.lease,
            owner_hold: state.settings.owner_hold,
            shutdown: state.shutdown.clone(),
            refused: Arc::clone(&state.refused_outcomes),
        };
        dispatch::serve(&ctx, registration.session(), &mut sink, &mut stream).await;
    }
    .instrument(span)
    .await;
}
