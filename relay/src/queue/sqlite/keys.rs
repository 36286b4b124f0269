//! API keys and agent tokens managed through the API in SQLite, and when each
//! key or token was last used: inserts, revocations and uses (writer jobs), and
//! their listings (on the read connections).

use rusqlite::{Connection, params};
use time::OffsetDateTime;

use super::super::QueueError;
use super::super::keys::{
    CredentialKind, CredentialUse, StoredAgentToken, StoredKey, systems_of, systems_text,
};
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

/// Stores an agent token; `false` when one of that name is stored.
pub(super) fn add_agent_token(
    conn: &Connection,
    effects: &mut Effects,
    token: &StoredAgentToken,
) -> Result<bool, QueueError> {
    effects.audit_changes += 1;
    let n = conn.execute(
        "INSERT INTO agent_tokens (name, sha256, systems, created_at, created_by, revoked_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (name) DO NOTHING",
        params![
            token.name,
            token.sha256,
            systems_text(&token.systems),
            nanos(token.created_at),
            token.created_by,
            token.revoked_at.map(nanos),
        ],
    )?;
    Ok(n == 1)
}

/// Revokes a stored agent token; whether one not yet revoked was there.
pub(super) fn revoke_agent_token(
    conn: &Connection,
    effects: &mut Effects,
    name: &str,
    at: OffsetDateTime,
) -> Result<bool, QueueError> {
    effects.audit_changes += 1;
    let n = conn.execute(
        "UPDATE agent_tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
        params![name, nanos(at)],
    )?;
    Ok(n == 1)
}

/// Every stored agent token, by name.
pub(super) fn stored_agent_tokens(conn: &Connection) -> Result<Vec<StoredAgentToken>, QueueError> {
    let mut select = conn.prepare_cached(
        "SELECT name, sha256, systems, created_at, created_by, revoked_at \
         FROM agent_tokens ORDER BY name",
    )?;
    let rows = select.query_map([], |row| {
        let systems: String = row.get(2)?;
        let revoked: Option<i64> = row.get(5)?;
        Ok(StoredAgentToken {
            name: row.get(0)?,
            sha256: row.get(1)?,
            systems: systems_of(&systems),
            created_at: time_at(row.get(3)?),
            created_by: row.get(4)?,
            revoked_at: revoked.map(time_at),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Records last uses, each only if later than the one stored.
pub(super) fn record_uses(
    conn: &Connection,
    effects: &mut Effects,
    uses: &[CredentialUse],
) -> Result<(), QueueError> {
    effects.audit_changes += uses.len();
    let mut upsert = conn.prepare_cached(
        "INSERT INTO credential_uses (kind, name, last_used_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (kind, name) DO UPDATE SET \
         last_used_at = max(last_used_at, excluded.last_used_at)",
    )?;
    for used in uses {
        upsert.execute(params![used.kind.as_str(), used.name, nanos(used.at)])?;
    }
    Ok(())
}

/// The last use of every key and token that has one.
pub(super) fn credential_uses(conn: &Connection) -> Result<Vec<CredentialUse>, QueueError> {
    let mut select = conn.prepare_cached(
        "SELECT kind, name, last_used_at FROM credential_uses ORDER BY kind, name",
    )?;
    let rows = select.query_map([], |row| {
        let kind: String = row.get(0)?;
        Ok((kind, row.get::<_, String>(1)?, row.get::<_, i64>(2)?))
    })?;
    let mut uses = Vec::new();
    for row in rows {
        let (kind, name, at) = row?;
        if let Some(kind) = CredentialKind::parse(&kind) {
            uses.push(CredentialUse {
                kind,
                name,
                at: time_at(at),
            });
        }
    }
    Ok(uses)
}
