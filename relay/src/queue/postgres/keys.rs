//! API keys and agent tokens managed through the API in PostgreSQL, and when each
//! key or token was last used (`sapbridge_api_keys`, `sapbridge_agent_tokens`,
//! `sapbridge_credential_uses`), shared by every replica.

use time::OffsetDateTime;
use tokio_postgres::GenericClient;

use super::super::QueueError;
use super::super::keys::{
    CredentialKind, CredentialUse, StoredAgentToken, StoredKey, systems_of, systems_text,
};
use super::rows::{nanos, store_error, time_at};

/// Stores an API key; `false` when one of that name is stored.
pub(super) async fn add_key(
    client: &impl GenericClient,
    key: &StoredKey,
) -> Result<bool, QueueError> {
    let n = client
        .execute(
            "INSERT INTO sapbridge_api_keys \
             (name, sha256, systems, operator, created_at, created_by, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO NOTHING",
            &[
                &key.name,
                &key.sha256,
                &systems_text(&key.systems),
                &key.operator,
                &nanos(key.created_at),
                &key.created_by,
                &key.revoked_at.map(nanos),
            ],
        )
        .await
        .map_err(store_error)?;
    Ok(n == 1)
}

/// Revokes a stored key; whether one not yet revoked was there.
pub(super) async fn revoke_key(
    client: &impl GenericClient,
    name: &str,
    at: OffsetDateTime,
) -> Result<bool, QueueError> {
    let n = client
        .execute(
            "UPDATE sapbridge_api_keys SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
            &[&name, &nanos(at)],
        )
        .await
        .map_err(store_error)?;
    Ok(n == 1)
}

/// Every stored key, by name.
pub(super) async fn stored_keys(client: &impl GenericClient) -> Result<Vec<StoredKey>, QueueError> {
    let rows = client
        .query(
            "SELECT name, sha256, systems, operator, created_at, created_by, revoked_at \
             FROM sapbridge_api_keys ORDER BY name",
            &[],
        )
        .await
        .map_err(store_error)?;
    rows.iter()
        .map(|row| {
            let systems: String = row.try_get(2).map_err(store_error)?;
            let revoked: Option<i64> = row.try_get(6).map_err(store_error)?;
            Ok(StoredKey {
                name: row.try_get(0).map_err(store_error)?,
                sha256: row.try_get(1).map_err(store_error)?,
                systems: systems_of(&systems),
                operator: row.try_get(3).map_err(store_error)?,
                created_at: time_at(row.try_get(4).map_err(store_error)?),
                created_by: row.try_get(5).map_err(store_error)?,
                revoked_at: revoked.map(time_at),
            })
        })
        .collect()
}

/// Stores an agent token; `false` when one of that name is stored.
pub(super) async fn add_agent_token(
    client: &impl GenericClient,
    token: &StoredAgentToken,
) -> Result<bool, QueueError> {
    let n = client
        .execute(
            "INSERT INTO sapbridge_agent_tokens \
             (name, sha256, systems, created_at, created_by, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING",
            &[
                &token.name,
                &token.sha256,
                &systems_text(&token.systems),
                &nanos(token.created_at),
                &token.created_by,
                &token.revoked_at.map(nanos),
            ],
        )
        .await
        .map_err(store_error)?;
    Ok(n == 1)
}

/// Revokes a stored agent token; whether one not yet revoked was there.
pub(super) async fn revoke_agent_token(
    client: &impl GenericClient,
    name: &str,
    at: OffsetDateTime,
) -> Result<bool, QueueError> {
    let n = client
        .execute(
            "UPDATE sapbridge_agent_tokens SET revoked_at = $2 \
             WHERE name = $1 AND revoked_at IS NULL",
            &[&name, &nanos(at)],
        )
        .await
        .map_err(store_error)?;
    Ok(n == 1)
}

/// Every stored agent token, by name.
pub(super) async fn stored_agent_tokens(
    client: &impl GenericClient,
) -> Result<Vec<StoredAgentToken>, QueueError> {
    let rows = client
        .query(
            "SELECT name, sha256, systems, created_at, created_by, revoked_at \
             FROM sapbridge_agent_tokens ORDER BY name",
            &[],
        )
        .await
        .map_err(store_error)?;
    rows.iter()
        .map(|row| {
            let systems: String = row.try_get(2).map_err(store_error)?;
            let revoked: Option<i64> = row.try_get(5).map_err(store_error)?;
            Ok(StoredAgentToken {
                name: row.try_get(0).map_err(store_error)?,
                sha256: row.try_get(1).map_err(store_error)?,
                systems: systems_of(&systems),
                created_at: time_at(row.try_get(3).map_err(store_error)?),
                created_by: row.try_get(4).map_err(store_error)?,
                revoked_at: revoked.map(time_at),
            })
        })
        .collect()
}

/// Records last uses, each only if later than the one stored (one statement
/// for the lot).
pub(super) async fn record_uses(
    client: &impl GenericClient,
    uses: &[CredentialUse],
) -> Result<(), QueueError> {
    if uses.is_empty() {
        return Ok(());
    }
    let kinds: Vec<&str> = uses.iter().map(|u| u.kind.as_str()).collect();
    let names: Vec<&str> = uses.iter().map(|u| u.name.as_str()).collect();
    let times: Vec<i64> = uses.iter().map(|u| nanos(u.at)).collect();
    client
        .execute(
            "INSERT INTO sapbridge_credential_uses (kind, name, last_used_at) \
             SELECT kind, name, max(at) FROM unnest($1::text[], $2::text[], $3::bigint[]) \
                 AS u(kind, name, at) GROUP BY kind, name \
             ON CONFLICT (kind, name) DO UPDATE SET last_used_at = \
             GREATEST(sapbridge_credential_uses.last_used_at, excluded.last_used_at)",
            &[&kinds, &names, &times],
        )
        .await
        .map_err(store_error)?;
    Ok(())
}

/// The last use of every key and token that has one.
pub(super) async fn credential_uses(
    client: &impl GenericClient,
) -> Result<Vec<CredentialUse>, QueueError> {
    let rows = client
        .query(
            "SELECT kind, name, last_used_at FROM sapbridge_credential_uses ORDER BY kind, name",
            &[],
        )
        .await
        .map_err(store_error)?;
    let mut uses = Vec::new();
    for row in &rows {
        let kind: String = row.try_get(0).map_err(store_error)?;
        if let Some(kind) = CredentialKind::parse(&kind) {
            uses.push(CredentialUse {
                kind,
                name: row.try_get(1).map_err(store_error)?,
                at: time_at(row.try_get(2).map_err(store_error)?),
            });
        }
    }
    Ok(uses)
}
