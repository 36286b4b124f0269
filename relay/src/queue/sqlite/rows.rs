//! How calls look in SQLite: the text codes of commit policies and states, times
//! as Unix nanoseconds, kinds, calls and outcomes as JSON; and the reads that need
//! no writer (`get`, `stats`, `ping`), run on the read connections.

use rusqlite::{Connection, OptionalExtension, Row};
use sapbridge_proto::{CommitPolicy, FunctionCall, Outcome};
use time::OffsetDateTime;

use super::super::{
    CallFilter, CallKind, CallRecord, CallState, Holder, IdempotencyKey, QueueError, QueueStats,
    StateFilter, SystemBacklog,
};

/// The columns [`record`] reads, in its order.
pub(super) const RECORD_COLUMNS: &str = "id, system, kind, calls, commit_policy, state, \
     lease_session, lease_until, attempts, submitted_at, expires_at, completed_at, agent, \
     outcome, idem_scope, idem_key, idem_fingerprint, owner, lease_agent, hold_until, trace";

impl From<rusqlite::Error> for QueueError {
    fn from(error: rusqlite::Error) -> Self {
        if error.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            Self::Full(error.to_string())
        } else {
            Self::Store(error.to_string())
        }
    }
}

/// A time as stored: Unix nanoseconds, saturated to the `i64` range (years
/// 1677–2262).
pub(super) fn nanos(at: OffsetDateTime) -> i64 {
    let n = at.unix_timestamp_nanos();
    i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX })
}

/// A stored time back as UTC.
pub(super) fn time_at(nanos: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A call kind from its JSON ([`CallKind::to_json`]).
fn kind_of(json: &str) -> Result<CallKind, QueueError> {
    CallKind::from_json(json).map_err(|e| QueueError::Corrupt(format!("call kind: {e}")))
}

/// A commit policy from its stored code ([`CommitPolicy::code`]).
pub(super) fn commit_of(code: &str) -> Result<CommitPolicy, QueueError> {
    CommitPolicy::from_code(code)
        .ok_or_else(|| QueueError::Corrupt(format!("unknown commit policy {code:?}")))
}

/// The stored code of a state (`leased` for a lease, unlike the API's `running`).
pub(super) fn state_code(state: &CallState) -> &'static str {
    match state {
        CallState::Queued => "queued",
        CallState::Leased { .. } => "leased",
        CallState::Succeeded => "succeeded",
        CallState::Failed => "failed",
        CallState::Expired => "expired",
        CallState::Cancelled => "cancelled",
    }
}

/// JSON of the calls of a unit.
pub(super) fn calls_json(calls: &[FunctionCall]) -> Result<String, QueueError> {
    serde_json::to_string(calls).map_err(|e| QueueError::Store(format!("encoding calls: {e}")))
}

/// The calls of a unit from JSON.
pub(super) fn calls_of(json: &str) -> Result<Vec<FunctionCall>, QueueError> {
    serde_json::from_str(json).map_err(|e| QueueError::Corrupt(format!("calls: {e}")))
}

/// JSON of an outcome.
pub(super) fn outcome_json(outcome: &Outcome) -> Result<String, QueueError> {
    serde_json::to_string(outcome)
        .map_err(|e| QueueError::Store(format!("encoding an outcome: {e}")))
}

/// A row of [`RECORD_COLUMNS`] as a record.
pub(super) fn record(row: &Row<'_>) -> Result<CallRecord, QueueError> {
    let id: String = row.get(0)?;
    let corrupt = |what: &str, e: &dyn std::fmt::Display| {
        QueueError::Corrupt(format!("call {id}: {what}: {e}"))
    };
    let state_text: String = row.get(5)?;
    let state = match state_text.as_str() {
        "queued" => CallState::Queued,
        "leased" => CallState::Leased {
            session: row.get::<_, Option<String>>(6)?.unwrap_or_default(),
            until: time_at(row.get::<_, Option<i64>>(7)?.unwrap_or(0)),
        },
        other => final_state(other).ok_or_else(|| corrupt("state", &other))?,
    };
    let outcome = match row.get::<_, Option<String>>(13)? {
        Some(json) => {
            Some(serde_json::from_str::<Outcome>(&json).map_err(|e| corrupt("outcome", &e))?)
        }
        None => None,
    };
    let idempotency = match (
        row.get::<_, Option<String>>(14)?,
        row.get::<_, Option<String>>(15)?,
        row.get::<_, Option<String>>(16)?,
    ) {
        (Some(scope), Some(key), Some(fingerprint)) => {
            Some((IdempotencyKey { scope, key }, fingerprint))
        }
        _ => None,
    };
    let holder = match (
        row.get::<_, Option<String>>(6)?,
        row.get::<_, Option<String>>(18)?,
    ) {
        (Some(session), Some(agent)) => Some(Holder { session, agent }),
        _ => None,
    };
    let calls_text: String = row.get(3)?;
    Ok(CallRecord {
        system: row.get(1)?,
        kind: kind_of(&row.get::<_, String>(2)?)?,
        calls: calls_of(&calls_text).map_err(|e| corrupt("calls", &e))?,
        commit: commit_of(&row.get::<_, String>(4)?)?,
        state,
        attempts: row.get(8)?,
        submitted_at: time_at(row.get(9)?),
        expires_at: time_at(row.get(10)?),
        completed_at: row.get::<_, Option<i64>>(11)?.map(time_at),
        agent: row.get(12)?,
        outcome,
        idempotency,
        owner: row.get(17)?,
        holder,
        hold_until: row.get::<_, Option<i64>>(19)?.map(time_at),
        trace: row.get(20)?,
        id,
    })
}

/// The call `call_id`, if stored.
pub(super) fn load(conn: &Connection, call_id: &str) -> Result<Option<CallRecord>, QueueError> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {RECORD_COLUMNS} FROM calls WHERE id = ?1"))?;
    let raw = stmt
        .query_row([call_id], |row| Ok(record(row)))
        .optional()?;
    raw.transpose()
}

/// Queued and leased calls: scans of the partial indexes that hold only them.
pub(super) fn open_counts(conn: &Connection) -> Result<(u64, u64), QueueError> {
    let count = |sql: &str| -> Result<u64, QueueError> {
        let n: i64 = conn.prepare_cached(sql)?.query_row([], |row| row.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    Ok((
        count("SELECT count(*) FROM calls INDEXED BY calls_queued_expiry WHERE state = 'queued'")?,
        count("SELECT count(*) FROM calls INDEXED BY calls_leased_session WHERE state = 'leased'")?,
    ))
}

/// Queued calls per system, with the oldest's acceptance (by the queued-by-system
/// index).
pub(super) fn backlog(conn: &Connection) -> Result<Vec<SystemBacklog>, QueueError> {
    let mut stmt = conn.prepare_cached(
        "SELECT system, count(*), min(submitted_at), min(expires_at)
         FROM calls INDEXED BY calls_queued_by_system
         WHERE state = 'queued' GROUP BY system",
    )?;
    let mut rows = stmt.query([])?;
    let mut found = Vec::new();
    while let Some(row) = rows.next()? {
        found.push(SystemBacklog {
            system: row.get(0)?,
            queued: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
            oldest: time_at(row.get(2)?),
            next_expiry: time_at(row.get(3)?),
        });
    }
    Ok(found)
}

/// Final calls per state: a scan of every retained call, run once at open (see
/// `counts`).
pub(super) fn final_counts(conn: &Connection) -> Result<QueueStats, QueueError> {
    let mut stmt = conn.prepare(
        "SELECT state, count(*) FROM calls INDEXED BY calls_completed_at
         WHERE completed_at > 0 GROUP BY state",
    )?;
    let mut rows = stmt.query([])?;
    let mut found = QueueStats::default();
    while let Some(row) = rows.next()? {
        let state: String = row.get(0)?;
        let count: i64 = row.get(1)?;
        match final_state(&state) {
            Some(state) => *found.count_mut(&state) = u64::try_from(count).unwrap_or(0),
            None => tracing::warn!(state, "unknown final call state in the queue file"),
        }
    }
    Ok(found)
}

/// A final state's code as stored.
pub(super) fn final_state(code: &str) -> Option<CallState> {
    match code {
        "succeeded" => Some(CallState::Succeeded),
        "failed" => Some(CallState::Failed),
        "expired" => Some(CallState::Expired),
        "cancelled" => Some(CallState::Cancelled),
        _ => None,
    }
}

/// A real read of the calls table (readiness).
pub(super) fn ping(conn: &Connection) -> Result<(), QueueError> {
    let mut stmt = conn.prepare_cached("SELECT count(*) FROM (SELECT 1 FROM calls LIMIT 1)")?;
    let _: i64 = stmt.query_row([], |row| row.get(0))?;
    Ok(())
}

/// The listing's condition, order and limit (see [`list`]).
pub(super) const LIST_WHERE: &str = "WHERE submitted_at >= ?1 AND (submitted_at, id) < (?2, ?7) \
           AND (?3 IS NULL OR system IN (SELECT value FROM json_each(?3))) \
           AND (?4 IS NULL OR coalesce(json_extract(kind, '$.action.name'), \
                                       json_extract(calls, '$[0].function')) = ?4) \
           AND (?5 IS NULL OR state = ?5) AND (?6 IS NULL OR owner = ?6) \
         ORDER BY submitted_at DESC, id DESC LIMIT ?8";

/// The calls `filter` selects, newest first (see `queue::listing`), walking
/// `calls_submitted` back from the filter's upper bound. A call's function is
/// read from its kind and calls' JSON.
pub(super) fn list(conn: &Connection, filter: &CallFilter) -> Result<Vec<CallRecord>, QueueError> {
    let mut select =
        conn.prepare_cached(&format!("SELECT {RECORD_COLUMNS} FROM calls {LIST_WHERE}"))?;
    let systems = filter
        .systems
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| QueueError::Store(format!("systems as JSON: {e}")))?;
    let limit = i64::try_from(filter.page_size()).unwrap_or(1);
    let (before_at, before_id) = filter.before();
    let raw = select.query_map(
        rusqlite::params![
            filter.since.map_or(i64::MIN, nanos),
            before_at,
            systems,
            filter.function,
            filter.state.map(StateFilter::code),
            filter.owner,
            before_id,
            limit,
        ],
        |row| Ok(record(row)),
    )?;
    raw.map(|r| r.map_err(QueueError::from).and_then(|r| r))
        .collect()
}
