//! `/v1/admin/agent-tokens`: agent tokens managed through the API (operator keys
//! only), kept in the queue store so that an agent may connect with one to every
//! replica sharing it, beside the configuration's tokens. The token is shown once,
//! in the answer that creates it; only its SHA-256 is stored. Revoking one closes
//! its agents' sessions (on every replica, within the keys' refresh period) and
//! refuses new connects.
//!
//! The systems a stored token names become systems the relay knows (see
//! `RelayState::systems`), as those of the configuration's tokens do.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::admin::{last_used, last_used_of, new_secret, operator_only, refresh_keys, valid_name};
use super::render::rfc3339;
use super::request::Caller;
use super::{ApiError, Problem};
use crate::queue::{CredentialKind, StoredAgentToken};
use crate::state::RelayState;

/// The body of `POST /v1/admin/agent-tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewToken {
    name: String,
    systems: Vec<String>,
}

/// Creates a stored agent token; its secret, shown once.
///
/// # Errors
/// 403 for a key without the operator scope; 400 for a bad name, no systems,
/// `"*"` or a bad system name; 409 when the name is taken (by the
/// configuration or a stored token, revoked ones included).
pub(crate) async fn create_token(
    state: &RelayState,
    caller: &Caller,
    new: NewToken,
) -> Result<(StoredAgentToken, String), ApiError> {
    operator_only(caller)?;
    if !valid_name(&new.name) {
        return Err(ApiError::BadRequest(
            "name must be 1 to 64 letters, digits, '.', '_' or '-'".into(),
        ));
    }
    if new.systems.is_empty() {
        return Err(ApiError::BadRequest(
            "systems must name at least one system".into(),
        ));
    }
    if new.systems.iter().any(|s| s == crate::config::ALL_SYSTEMS) {
        return Err(ApiError::BadRequest(
            "systems must be named explicitly: \"*\" is only for API keys".into(),
        ));
    }
    if let Some(bad) = new.systems.iter().find(|s| !valid_name(s)) {
        return Err(ApiError::BadRequest(format!(
            "systems: {bad:?} is not a system name (1 to 64 letters, digits, '.', '_' or '-')"
        )));
    }
    let taken = || {
        ApiError::Call(Box::new(Problem::new(
            StatusCode::CONFLICT,
            "agent-token-exists",
            "Agent token exists",
            format!("an agent token named {:?} exists already", new.name),
        )))
    };
    if configured(state, &new.name) {
        return Err(taken());
    }
    let mut systems = new.systems;
    systems.sort();
    systems.dedup();
    let secret = new_secret("sbt_");
    let token = StoredAgentToken {
        name: new.name.clone(),
        sha256: crate::config::secret_sha256_hex(&secret),
        systems,
        created_at: OffsetDateTime::now_utc(),
        created_by: caller.name.clone(),
        revoked_at: None,
    };
    if !state.queue.add_agent_token(token.clone()).await? {
        return Err(taken());
    }
    refresh_keys(state).await;
    Ok((token, secret))
}

fn configured(state: &RelayState, name: &str) -> bool {
    state
        .keys
        .configured_tokens()
        .iter()
        .any(|(configured, _)| configured == name)
}

/// Revokes a stored agent token: its agents' sessions here end now, on other
/// replicas at their next refresh.
///
/// # Errors
/// 403 for a key without the operator scope, 409 for a token of the
/// configuration, 404 for no such stored token (or one revoked already).
pub(crate) async fn revoke_token(
    state: &RelayState,
    caller: &Caller,
    name: &str,
) -> Result<(), ApiError> {
    operator_only(caller)?;
    if configured(state, name) {
        return Err(ApiError::Call(Box::new(Problem::new(
            StatusCode::CONFLICT,
            "agent-token-configured",
            "Agent token in the configuration",
            format!("{name:?} is an agent token of the relay's configuration: remove it there"),
        ))));
    }
    if !state
        .queue
        .revoke_agent_token(name, OffsetDateTime::now_utc())
        .await?
    {
        return Err(ApiError::Call(Box::new(Problem::new(
            StatusCode::NOT_FOUND,
            "agent-token-not-found",
            "Agent token not found",
            format!("no stored agent token {name:?} that is not revoked"),
        ))));
    }
    refresh_keys(state).await;
    Ok(())
}

/// Every agent token: the configuration's and the stored ones, never a secret
/// nor its hash.
///
/// # Errors
/// 403 for a key without the operator scope; 500 when the store fails.
pub(crate) async fn list(state: &RelayState, caller: &Caller) -> Result<Vec<Value>, ApiError> {
    operator_only(caller)?;
    let kind = CredentialKind::AgentToken;
    let uses = last_used(state, kind).await?;
    let mut items: Vec<Value> = state
        .keys
        .configured_tokens()
        .into_iter()
        .map(|(name, systems)| {
            json!({
                "name": name,
                "source": "configuration",
                "systems": systems,
                "created_at": null,
                "created_by": null,
                "revoked_at": null,
                "last_used_at": last_used_of(state, &uses, kind, &name),
            })
        })
        .collect();
    items.extend(
        state
            .queue
            .stored_agent_tokens()
            .await?
            .iter()
            .map(|token| {
                let mut item = stored_item(token);
                item["last_used_at"] = last_used_of(state, &uses, kind, &token.name);
                item
            }),
    );
    Ok(items)
}

fn stored_item(token: &StoredAgentToken) -> Value {
    json!({
        "name": token.name,
        "source": "store",
        "systems": token.systems,
        "created_at": rfc3339(token.created_at),
        "created_by": token.created_by,
        "revoked_at": token.revoked_at.map(rfc3339),
        "last_used_at": null,
    })
}

/// `GET /v1/admin/agent-tokens`.
pub(crate) async fn list_tokens(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let items = list(&state, &caller).await?;
    Ok(Json(json!({ "items": items })))
}

/// `POST /v1/admin/agent-tokens`: 201 with the token, shown this once, and its
/// `Location`.
pub(crate) async fn post_token(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    operator_only(&caller)?;
    let body = super::request::body_bytes(body, &state.settings)?;
    let new: NewToken = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not a new agent token: {e}")))?;
    let (token, secret) = create_token(&state, &caller, new).await?;
    tracing::info!(token = %token.name, key = %caller.name, "agent token created");
    let mut item = stored_item(&token);
    item["token"] = json!(secret);
    // Made absolute on the way out, as every `Location` of the relay.
    let mut response = (StatusCode::CREATED, Json(item)).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("/v1/admin/agent-tokens/{}", token.name)) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// `DELETE /v1/admin/agent-tokens/{name}`: 204 once revoked.
pub(crate) async fn delete_token(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    route: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    operator_only(&caller)?;
    let Path(name) = route.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    revoke_token(&state, &caller, &name).await?;
    tracing::info!(token = %name, key = %caller.name, "agent token revoked");
    Ok(StatusCode::NO_CONTENT)
}
