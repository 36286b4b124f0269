//! `/v1/admin/keys`: API keys managed through the API (operator keys only), kept
//! in the queue store so that every replica sharing it accepts them, beside the
//! configuration's keys (which bootstrap a relay and are changed in its file).
//! The key is shown once, in the answer that creates it; only its SHA-256 is
//! stored.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::render::rfc3339;
use super::request::Caller;
use super::{ApiError, Problem};
use crate::queue::{CredentialKind, StoredKey};
use crate::state::RelayState;

/// How often a relay sharing its store with others reads the stored keys again.
pub(crate) const REFRESH_KEYS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads the stored keys and agent tokens into the keyring; agent sessions whose
/// stored token was revoked are told to end.
pub(crate) async fn refresh_keys(state: &RelayState) {
    match state.queue.stored_keys().await {
        Ok(keys) => state.keys.set_managed(&keys),
        Err(error) => tracing::warn!(%error, "could not read the stored API keys"),
    }
    match state.queue.stored_agent_tokens().await {
        Ok(tokens) => {
            let closed = state.keys.set_managed_tokens(&tokens);
            if closed > 0 {
                tracing::info!(
                    sessions_closed = closed,
                    "stored agent token revoked: closing its agents' sessions"
                );
            }
        }
        Err(error) => tracing::warn!(%error, "could not read the stored agent tokens"),
    }
}

/// A new random secret: `prefix` and 48 hex digits (192 bits).
pub(crate) fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// When each credential of `kind` was last used, by name: the store's time (all
/// replicas', written at most once a minute each) or this relay's own, if later.
pub(crate) async fn last_used(
    state: &RelayState,
    kind: CredentialKind,
) -> Result<HashMap<String, OffsetDateTime>, ApiError> {
    let mut uses: HashMap<String, OffsetDateTime> = state
        .queue
        .credential_uses()
        .await?
        .into_iter()
        .filter(|u| u.kind == kind)
        .map(|u| (u.name, u.at))
        .collect();
    for (name, at) in uses.iter_mut() {
        if let Some(seen) = state.keys.uses().seen(kind, name) {
            *at = (*at).max(seen);
        }
    }
    Ok(uses)
}

/// The last use of `name` in `uses`, else this relay's own (not yet written).
pub(crate) fn last_used_of(
    state: &RelayState,
    uses: &HashMap<String, OffsetDateTime>,
    kind: CredentialKind,
    name: &str,
) -> Option<String> {
    uses.get(name)
        .copied()
        .or_else(|| state.keys.uses().seen(kind, name))
        .map(rfc3339)
}

/// `source` of a listed key or agent token.
pub(crate) fn source_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(["configuration", "store"]))
        .build()
}

/// The path of `DELETE /v1/admin/keys/{name}`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(
    dead_code,
    reason = "documentation of the path the handler reads as a String"
)]
struct KeyPath {
    /// The key's name.
    #[param(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    name: String,
}

/// An API key as `GET /v1/admin/keys` lists it, never the key itself.
// Members in name order, as the answers always had them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ApiKey)]
pub(crate) struct KeyItem {
    #[schema(format = DateTime, required = true)]
    created_at: Option<String>,
    /// The name of the key that created it.
    #[schema(required = true)]
    created_by: Option<String>,
    /// The key itself, only in the answer that creates it ([`CreatedKey`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    key: Option<String>,
    /// When the key was last used, on any replica sharing the store (written at most about once a minute per key, so up to a minute behind; `null`: not used since last-use tracking began).
    #[schema(format = DateTime, required = true)]
    last_used_at: Option<String>,
    name: String,
    operator: bool,
    #[schema(format = DateTime, required = true)]
    revoked_at: Option<String>,
    #[schema(schema_with = source_schema)]
    source: &'static str,
    systems: Vec<String>,
}

/// `201` of `POST /v1/admin/keys`: an [`KeyItem`] with `key`, shown this once.
pub(crate) struct CreatedKey;

impl utoipa::PartialSchema for CreatedKey {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        created_schema("ApiKey", "key", "The API key, shown once.")
    }
}

impl utoipa::ToSchema for CreatedKey {}

/// A listed item (`name`, a component schema) with its secret `member`, shown once.
pub(crate) fn created_schema(
    name: &str,
    member: &str,
    description: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::{AllOfBuilder, ObjectBuilder, Ref, Type};
    AllOfBuilder::new()
        .item(Ref::from_schema_name(name))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .required(member)
                .property(
                    member,
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .description(Some(description)),
                ),
        )
        .into()
}

/// The answer of `GET /v1/admin/keys` and `GET /v1/admin/agent-tokens`.
#[derive(Debug, Serialize)]
pub(crate) struct Items<T> {
    pub(crate) items: Vec<T>,
}

/// The schema of an [`Items`] answer of the component schema `name`.
pub(crate) fn items_schema(name: &str) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::{ArrayBuilder, ObjectBuilder, Ref, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .required("items")
        .property(
            "items",
            ArrayBuilder::new().items(Ref::from_schema_name(name)),
        )
        .into()
}

/// The `200` schema of `GET /v1/admin/keys`.
pub(crate) struct KeyList;

impl utoipa::PartialSchema for KeyList {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        items_schema("ApiKey")
    }
}

impl utoipa::ToSchema for KeyList {}

/// Reads the stored keys every [`REFRESH_KEYS_EVERY`] until `stop` (replicas
/// sharing a PostgreSQL store: a key created or revoked on one holds on all).
pub(crate) async fn refresh_stored_keys(state: Arc<RelayState>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(REFRESH_KEYS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => refresh_keys(&state).await,
        }
    }
}

pub(crate) fn operator_only(caller: &Caller) -> Result<(), ApiError> {
    if caller.is_operator() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "managing keys and agent tokens is for API keys with the operator scope (operator = true)".into(),
        ))
    }
}

/// The body of `POST /v1/admin/keys`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewApiKey)]
pub(crate) struct NewKey {
    /// Unique among all keys (the configuration's and stored ones, revoked ones
    /// included); what the audit log records.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    name: String,
    /// The systems it may call, known to the relay; `*` for all.
    #[schema(min_items = 1)]
    systems: Vec<String>,
    /// The operator scope: the audit log, every key's calls, this API, the console.
    #[serde(default)]
    #[schema(default = false)]
    operator: bool,
}

/// Whether `name` is a key name the API takes: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Creates a stored key; its secret, shown once.
///
/// # Errors
/// 403 for a key without the operator scope, 400 for a bad name or system, 409
/// when the name is taken (by the configuration or a stored key, revoked ones
/// included).
pub(crate) async fn create_key(
    state: &RelayState,
    caller: &Caller,
    new: NewKey,
) -> Result<(StoredKey, String), ApiError> {
    operator_only(caller)?;
    if !valid_name(&new.name) {
        return Err(ApiError::BadRequest(
            "name must be 1 to 64 letters, digits, '.', '_' or '-'".into(),
        ));
    }
    if new.systems.is_empty() {
        return Err(ApiError::BadRequest(
            "systems must name at least one system (or \"*\" for all)".into(),
        ));
    }
    if let Some(unknown) = new.systems.iter().find(|s| *s != "*" && !state.knows(s)) {
        return Err(ApiError::BadRequest(format!(
            "systems: the relay knows no system {unknown:?}"
        )));
    }
    let taken = || {
        ApiError::Call(Box::new(Problem::new(
            StatusCode::CONFLICT,
            "key-exists",
            "Key exists",
            format!("a key named {:?} exists already", new.name),
        )))
    };
    if state
        .keys
        .configured_keys()
        .iter()
        .any(|(name, _, _)| *name == new.name)
    {
        return Err(taken());
    }
    let secret = new_secret("sbk_");
    let key = StoredKey {
        name: new.name.clone(),
        sha256: crate::config::secret_sha256_hex(&secret),
        systems: new.systems,
        operator: new.operator,
        created_at: OffsetDateTime::now_utc(),
        created_by: caller.name.clone(),
        revoked_at: None,
    };
    if !state.queue.add_key(key.clone()).await? {
        return Err(taken());
    }
    refresh_keys(state).await;
    Ok((key, secret))
}

/// Revokes a stored key.
///
/// # Errors
/// 403 for a key without the operator scope, 409 for a key of the
/// configuration, 404 for no such stored key (or one revoked already).
pub(crate) async fn revoke_key(
    state: &RelayState,
    caller: &Caller,
    name: &str,
) -> Result<(), ApiError> {
    operator_only(caller)?;
    if state
        .keys
        .configured_keys()
        .iter()
        .any(|(configured, _, _)| configured == name)
    {
        return Err(ApiError::Call(Box::new(Problem::new(
            StatusCode::CONFLICT,
            "key-configured",
            "Key in the configuration",
            format!("{name:?} is a key of the relay's configuration: remove it there"),
        ))));
    }
    if !state
        .queue
        .revoke_key(name, OffsetDateTime::now_utc())
        .await?
    {
        return Err(ApiError::Call(Box::new(Problem::new(
            StatusCode::NOT_FOUND,
            "key-not-found",
            "Key not found",
            format!("no stored key {name:?} that is not revoked"),
        ))));
    }
    refresh_keys(state).await;
    Ok(())
}

/// Every key: the configuration's and the stored ones, never a secret.
///
/// # Errors
/// 403 for a key without the operator scope; 500 when the store fails.
pub(crate) async fn list(state: &RelayState, caller: &Caller) -> Result<Vec<KeyItem>, ApiError> {
    operator_only(caller)?;
    let uses = last_used(state, CredentialKind::ApiKey).await?;
    let used = |name: &str| last_used_of(state, &uses, CredentialKind::ApiKey, name);
    let mut items: Vec<KeyItem> = state
        .keys
        .configured_keys()
        .into_iter()
        .map(|(name, systems, operator)| KeyItem {
            created_at: None,
            created_by: None,
            key: None,
            last_used_at: used(&name),
            name,
            operator,
            revoked_at: None,
            source: "configuration",
            systems,
        })
        .collect();
    items.extend(state.queue.stored_keys().await?.iter().map(|key| {
        let mut item = stored_item(key);
        item.last_used_at = used(&key.name);
        item
    }));
    Ok(items)
}

fn stored_item(key: &StoredKey) -> KeyItem {
    KeyItem {
        created_at: Some(rfc3339(key.created_at)),
        created_by: Some(key.created_by.clone()),
        key: None,
        last_used_at: None,
        name: key.name.clone(),
        operator: key.operator,
        revoked_at: key.revoked_at.map(rfc3339),
        source: "store",
        systems: key.systems.clone(),
    }
}

/// `GET /v1/admin/keys`.
#[utoipa::path(
    get,
    path = "/v1/admin/keys",
    operation_id = "listKeys",
    tag = "admin",
    summary = "List the API keys",
    description = "Every API key: those of the relay's configuration (`source` `configuration`, which bootstrap it and change in its file) and those created through this API (`source` `store`, kept in the queue store so that every replica sharing it accepts them; revoked ones too, with `revoked_at`). Never a key itself; `last_used_at` says when each was last used. Only keys with `operator = true`; others get `403`.",
    responses(
        (status = 200, description = "The keys.", body = inline(KeyList)),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 500, response = super::openapi::InternalError),
    ),
)]
pub(crate) async fn list_keys(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
) -> Result<Json<Items<KeyItem>>, ApiError> {
    let items = list(&state, &caller).await?;
    Ok(Json(Items { items }))
}

/// `POST /v1/admin/keys`: 201 with the key, shown this once.
#[utoipa::path(
    post,
    path = "/v1/admin/keys",
    operation_id = "createKey",
    tag = "admin",
    summary = "Create an API key",
    description = "Creates a key in the queue store; the answer holds the key (`sbk_…`), shown this once: only its SHA-256 is stored. Every replica sharing the store accepts it within 2 seconds (at once on the replica that created it). Only keys with `operator = true`.",
    request_body = NewKey,
    responses(
        (status = 201, description = "Created; `key` is shown only here.", body = inline(CreatedKey)),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 409, response = super::openapi::Conflict),
        (status = 500, response = super::openapi::InternalError),
    ),
)]
pub(crate) async fn post_key(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    operator_only(&caller)?;
    let body = super::request::body_bytes(body, &state.settings)?;
    let new: NewKey = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not a new key: {e}")))?;
    let (key, secret) = create_key(&state, &caller, new).await?;
    let mut item = stored_item(&key);
    item.key = Some(secret);
    Ok((StatusCode::CREATED, Json(item)).into_response())
}

/// `DELETE /v1/admin/keys/{name}`: 204 once revoked.
#[utoipa::path(
    delete,
    path = "/v1/admin/keys/{name}",
    operation_id = "revokeKey",
    tag = "admin",
    summary = "Revoke an API key",
    description = "Revokes a key created through this API: refused from then on (on other replicas within 2 seconds); it stays listed with `revoked_at`, and its name stays taken. Keys of the configuration are removed in its file (`409`). Only keys with `operator = true`.",
    params(KeyPath),
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
pub(crate) async fn delete_key(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    route: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    operator_only(&caller)?;
    let Path(name) = route.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    revoke_key(&state, &caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listed key is the JSON the handler built with `json!` before it had a
    /// type: the same members, in name order, `key` only when created.
    #[test]
    fn a_listed_key_keeps_its_json() {
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        let key = StoredKey {
            name: "ci".into(),
            sha256: "00".into(),
            systems: vec!["SIM".into()],
            operator: false,
            created_at: at,
            created_by: "admin".into(),
            revoked_at: Some(at),
        };
        let mut item = stored_item(&key);
        let text = serde_json::to_string(&item).expect("serializes");
        let before = serde_json::json!({
            "name": "ci",
            "source": "store",
            "systems": ["SIM"],
            "operator": false,
            "created_at": rfc3339(at),
            "created_by": "admin",
            "revoked_at": rfc3339(at),
            "last_used_at": null,
        });
        assert_eq!(text, before.to_string());
        item.key = Some("sbk_x".into());
        let mut before = before;
        before["key"] = serde_json::json!("sbk_x");
        assert_eq!(
            serde_json::to_string(&item).expect("serializes"),
            before.to_string()
        );
    }
}
