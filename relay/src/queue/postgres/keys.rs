//! API keys managed through the API in PostgreSQL: `sapbridge_api_keys`, shared by
//! every replica.

use time::OffsetDateTime;
use tokio_postgres::GenericClient;

use super::super::QueueError;
use super::super::keys::{StoredKey, systems_of, systems_text};
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
