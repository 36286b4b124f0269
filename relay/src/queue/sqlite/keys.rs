//! API keys managed through the API in SQLite: the `api_keys` table's inserts and
//! revocations (writer jobs) and its listing (on the read connections).

use rusqlite::{Connection, params};
use time::OffsetDateTime;

use super::super::QueueError;
use super::super::keys::{StoredKey, systems_of, systems_text};
use super::rows::{nanos, time_at};
use super::writer::Effects;

/// Stores an API key; `false` when one of that name is stored.
pub(super) fn add_key(
    conn: &Connection,
    effects: &mut Effects,
    key: &StoredKey,
) -> Result<bool, QueueError> {
    effects.audit_changes += 1;
    let n = conn.execute(
        "INSERT INTO api_keys (name, sha256, systems, operator, created_at, created_by, revoked_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (name) DO NOTHING",
        params![
            key.name,
            key.sha256,
            systems_text(&key.systems),
            key.operator,
            nanos(key.created_at),
            key.created_by,
            key.revoked_at.map(nanos),
        ],
    )?;
    Ok(n == 1)
}

/// Revokes a stored key; whether one not yet revoked was there.
pub(super) fn revoke_key(
    conn: &Connection,
    effects: &mut Effects,
    name: &str,
    at: OffsetDateTime,
) -> Result<bool, QueueError> {
    effects.audit_changes += 1;
    let n = conn.execute(
        "UPDATE api_keys SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
        params![name, nanos(at)],
    )?;
    Ok(n == 1)
}

/// Every stored key, by name.
pub(super) fn stored_keys(conn: &Connection) -> Result<Vec<StoredKey>, QueueError> {
    let mut select = conn.prepare_cached(
        "SELECT name, sha256, systems, operator, created_at, created_by, revoked_at \
         FROM api_keys ORDER BY name",
    )?;
    let rows = select.query_map([], |row| {
        let systems: String = row.get(2)?;
        let revoked: Option<i64> = row.get(6)?;
        Ok(StoredKey {
            name: row.get(0)?,
            sha256: row.get(1)?,
            systems: systems_of(&systems),
            operator: row.get(3)?,
            created_at: time_at(row.get(4)?),
            created_by: row.get(5)?,
            revoked_at: revoked.map(time_at),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
