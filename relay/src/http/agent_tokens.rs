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
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::admin::{
    Items, created_schema, items_schema, last_used, last_used_of, new_secret, operator_only,
    refresh_keys, source_schema, valid_name,
};
use super::render::rfc3339;
use super::request::Caller;
use super::{ApiError, Problem};
use crate::queue::{CredentialKind, StoredAgentToken};
use crate::state::RelayState;

/// The body of `POST /v1/admin/agent-tokens`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewAgentToken)]
pub(crate) struct NewToken {
    /// Unique among all agent tokens (the configuration's and stored ones, revoked ones included); shown in the relay's log and in `GET /v1/systems`.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    name: String,
    /// The systems an agent holding it may serve, named explicitly (no `*`). A system no other token names becomes known to the relay (`GET /v1/systems`, calls) while the token is not revoked.
    #[schema(schema_with = token_systems_schema)]
    systems: Vec<String>,
}

/// `systems` of [`NewToken`]: system names (whose pattern excludes `*`).
fn token_systems_schema() -> utoipa::openapi::Array {
    use utoipa::openapi::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .min_items(Some(1))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[A-Za-z0-9._-]{1,64}$")),
        )
        .description(Some(
            "The systems an agent holding it may serve, named explicitly (no `*`). A system \
             no other token names becomes known to the relay (`GET /v1/systems`, calls) \
             while the token is not revoked.",
        ))
        .build()
}

/// The path of `DELETE /v1/admin/agent-tokens/{name}`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(
    dead_code,
    reason = "documentation of the path the handler reads as a String"
)]
struct TokenPath {
    /// The token's name.
    #[param(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    name: String,
}

/// An agent token as `GET /v1/admin/agent-tokens` lists it, never the token nor
/// its hash.
// Members in name order, as the answers always had them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AgentToken)]
pub(crate) struct TokenItem {
    #[schema(format = DateTime, required = true)]
    created_at: Option<String>,
    /// The name of the key that created it.
    #[schema(required = true)]
    created_by: Option<String>,
    /// When an agent last connected with it or, connected, was last heard from, on any replica sharing the store (written at most about once a minute per token).
    #[schema(format = DateTime, required = true)]
    last_used_at: Option<String>,
    name: String,
    #[schema(format = DateTime, required = true)]
    revoked_at: Option<String>,
    #[schema(schema_with = source_schema)]
    source: &'static str,
    systems: Vec<String>,
    /// The token itself, only in the answer that creates it ([`CreatedToken`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    token: Option<String>,
}

/// `201` of `POST /v1/admin/agent-tokens`: a [`TokenItem`] with `token`, shown
/// this once.
pub(crate) struct CreatedToken;

impl utoipa::PartialSchema for CreatedToken {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        created_schema(
            "AgentToken",
            "token",
            "The agent token, shown once: the agent's `token_file` holds it.",
        )
    }
}

impl utoipa::ToSchema for CreatedToken {}

/// The `200` schema of `GET /v1/admin/agent-tokens`.
pub(crate) struct TokenList;

impl utoipa::PartialSchema for TokenList {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        items_schema("AgentToken")
    }
}

impl utoipa::ToSchema for TokenList {}

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
pub(crate) async fn list(state: &RelayState, caller: &Caller) -> Result<Vec<TokenItem>, ApiError> {
    operator_only(caller)?;
    let kind = CredentialKind::AgentToken;
    let uses = last_used(state, kind).await?;
    let mut items: Vec<TokenItem> = state
        .keys
        .configured_tokens()
        .into_iter()
        .map(|(name, systems)| TokenItem {
            created_at: None,
            created_by: None,
            last_used_at: last_used_of(state, &uses, kind, &name),
            name,
            revoked_at: None,
            source: "configuration",
            systems,
            token: None,
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
                item.last_used_at = last_used_of(state, &uses, kind, &token.name);
                item
            }),
    );
    Ok(items)
}

fn stored_item(token: &StoredAgentToken) -> TokenItem {
    TokenItem {
        created_at: Some(rfc3339(token.created_at)),
        created_by: Some(token.created_by.clone()),
        last_used_at: None,
        name: token.name.clone(),
        revoked_at: token.revoked_at.map(rfc3339),
        source: "store",
        systems: token.systems.clone(),
        token: None,
    }
}

/// `GET /v1/admin/agent-tokens`.
#[utoipa::path(
    get,
    path = "/v1/admin/agent-tokens",
    operation_id = "listAgentTokens",
    tag = "admin",
    summary = "List the agent tokens",
    description = "Every agent token: those of the relay's configuration (`source` `configuration`) and those created through this API (`source` `store`, revoked ones too, with `revoked_at`), with when each was last used. Never a token nor its hash. Only keys with `operator = true`; others get `403`.",
    responses(
        (status = 200, description = "The agent tokens.", body = inline(TokenList)),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 500, response = super::openapi::InternalError),
    ),
)]
pub(crate) async fn list_tokens(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
) -> Result<Json<Items<TokenItem>>, ApiError> {
    let items = list(&state, &caller).await?;
    Ok(Json(Items { items }))
}

/// `POST /v1/admin/agent-tokens`: 201 with the token, shown this once, and its
/// `Location`.
#[utoipa::path(
    post,
    path = "/v1/admin/agent-tokens",
    operation_id = "createAgentToken",
    tag = "admin",
    summary = "Create an agent token",
    description = "Creates an agent token in the queue store; the answer holds the token (`sbt_…`), shown this once: only its SHA-256 is stored. An agent may connect with it to every replica sharing the store within 2 seconds (at once to the replica that created it). Only keys with `operator = true`.",
    request_body = NewToken,
    responses(
        (status = 201, description = "Created; `token` is shown only here.", body = inline(CreatedToken),
            headers(("Location" = String, description = "The token's URL (for `DELETE`)."))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 409, response = super::openapi::Conflict),
        (status = 500, response = super::openapi::InternalError),
    ),
)]
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
    item.token = Some(secret);
    // Made absolute on the way out, as every `Location` of the relay.
    let mut response = (StatusCode::CREATED, Json(item)).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("/v1/admin/agent-tokens/{}", token.name)) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// `DELETE /v1/admin/agent-tokens/{name}`: 204 once revoked.
#[utoipa::path(
    delete,
    path = "/v1/admin/agent-tokens/{name}",
    operation_id = "revokeAgentToken",
    tag = "admin",
    summary = "Revoke an agent token",
    description = "Revokes an agent token created through this API: agents connected with it are closed (WebSocket close with the reason; on other replicas within 2 seconds) and new connects refused. It stays listed with `revoked_at`, and its name stays taken. Tokens of the configuration are removed in its file (`409`). Only keys with `operator = true`.",
    params(TokenPath),
    responses(
        (status = 204, description = "Revoked."),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, response = super::openapi::Conflict),
        (status = 500, response = super::openapi::InternalError),
    ),
)]
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A listed agent token is the JSON the handler built with `json!` before it
    /// had a type: the same members, in name order, `token` only when created.
    #[test]
    fn a_listed_token_keeps_its_json() {
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        let token = StoredAgentToken {
            name: "plant".into(),
            sha256: "00".into(),
            systems: vec!["SIM".into()],
            created_at: at,
            created_by: "admin".into(),
            revoked_at: None,
        };
        let mut item = stored_item(&token);
        let before = serde_json::json!({
            "name": "plant",
            "source": "store",
            "systems": ["SIM"],
            "created_at": rfc3339(at),
            "created_by": "admin",
            "revoked_at": null,
            "last_used_at": null,
        });
        assert_eq!(
            serde_json::to_string(&item).expect("serializes"),
            before.to_string()
        );
        item.token = Some("sbt_x".into());
        let mut before = before;
        before["token"] = serde_json::json!("sbt_x");
        assert_eq!(
            serde_json::to_string(&item).expect("serializes"),
            before.to_string()
        );
    }
}
