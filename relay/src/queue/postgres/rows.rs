//! How calls look in PostgreSQL: text codes of commit policies and states, times
//! as Unix nanoseconds, kinds, calls and outcomes as JSON text; a row of
//! [`RECORD_COLUMNS`] back as a [`CallRecord`]; and the driver's errors as
//! [`QueueError`]s.

use sapbridge_proto::{CommitPolicy, FunctionCall, Outcome};
use time::OffsetDateTime;
use tokio_postgres::{GenericClient, Row};

use super::super::{CallKind, CallRecord, CallState, Holder, IdempotencyKey, QueueError};

/// The columns [`record`] reads, in its order.
pub(super) const RECORD_COLUMNS: &str = "id, system, kind, calls, commit_policy, state, \
     lease_session, lease_until, attempts, submitted_at, expires_at, completed_at, agent, \
     outcome, idem_scope, idem_key, idem_fingerprint, owner, lease_agent, hold_until, trace";

/// A driver error as a store error. The driver's messages name the server's error
/// and never the connection string's password.
pub(super) fn store_error(error: tokio_postgres::Error) -> QueueError {
    match error.as_db_error() {
        // 53100 disk_full, 53400 configuration_limit_exceeded (a quota): the
        // server has no room; nothing was written.
        Some(db) if matches!(db.code().code(), "53100" | "53400") => {
            QueueError::Full(format!("postgres: {} ({})", db.message(), db.code().code()))
        }
        Some(db) => QueueError::Store(format!("postgres: {} ({})", db.message(), db.code().code())),
        None => QueueError::Store(format!("postgres: {error}")),
    }
}

/// A pool error as a store error.
pub(super) fn pool_error(error: deadpool_postgres::PoolError) -> QueueError {
    match error {
        deadpool_postgres::PoolError::Backend(error) => store_error(error),
        other => QueueError::Store(format!("postgres connection pool: {other}")),
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

/// An attempt count as stored (`integer`).
pub(super) fn attempts_code(attempts: u32) -> i32 {
    i32::try_from(attempts).unwrap_or(i32::MAX)
}

/// A stored attempt count.
pub(super) fn attempts_of(stored: i32) -> u32 {
    u32::try_from(stored).unwrap_or(0)
}

/// JSON of a call kind.
pub(super) fn kind_json(kind: &CallKind) -> Result<String, QueueError> {
    Ok(kind.to_json())
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

/// The stored code of a commit policy.
pub(super) fn commit_code(commit: CommitPolicy) -> &'static str {
    match commit {
        CommitPolicy::None => "none",
        CommitPolicy::CommitOnSuccess => "commit_on_success",
        CommitPolicy::Rollback => "rollback",
    }
}

/// A commit policy from its stored code.
pub(super) fn commit_of(code: &str) -> Result<CommitPolicy, QueueError> {
    match code {
        "none" => Ok(CommitPolicy::None),
        "commit_on_success" => Ok(CommitPolicy::CommitOnSuccess),
        "rollback" => Ok(CommitPolicy::Rollback),
        other => Err(QueueError::Corrupt(format!(
            "unknown commit policy {other:?}"
        ))),
    }
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

/// A final state from its stored code.
pub(super) fn final_state(code: &str) -> Option<CallState> {
    match code {
        "succeeded" => Some(CallState::Succeeded),
        "failed" => Some(CallState::Failed),
        "expired" => Some(CallState::Expired),
        "cancelled" => Some(CallState::Cancelled),
        _ => None,
    }
}

/// A row of [`RECORD_COLUMNS`] as a record.
pub(super) fn record(row: &Row) -> Result<CallRecord, QueueError> {
    let id: String = row.get(0);
    let corrupt = |what: &str, e: &dyn std::fmt::Display| {
        QueueError::Corrupt(format!("call {id}: {what}: {e}"))
    };
    let state_text: String = row.get(5);
    let lease_session: Option<String> = row.get(6);
    let state = match state_text.as_str() {
        "queued" => CallState::Queued,
        "leased" => CallState::Leased {
            session: lease_session.clone().unwrap_or_default(),
            until: time_at(row.get::<_, Option<i64>>(7).unwrap_or(0)),
        },
        other => final_state(other).ok_or_else(|| corrupt("state", &other))?,
    };
    let outcome = match row.get::<_, Option<String>>(13) {
        Some(json) => {
            Some(serde_json::from_str::<Outcome>(&json).map_err(|e| corrupt("outcome", &e))?)
        }
        None => None,
    };
    let idempotency = match (
        row.get::<_, Option<String>>(14),
        row.get::<_, Option<String>>(15),
        row.get::<_, Option<String>>(16),
    ) {
        (Some(scope), Some(key), Some(fingerprint)) => {
            Some((IdempotencyKey { scope, key }, fingerprint))
        }
        _ => None,
    };
    let holder = match (lease_session, row.get::<_, Option<String>>(18)) {
        (Some(session), Some(agent)) => Some(Holder { session, agent }),
        _ => None,
    };
    let kind = CallKind::from_json(row.get::<_, &str>(2)).map_err(|e| corrupt("kind", &e))?;
    Ok(CallRecord {
        system: row.get(1),
        kind,
        calls: calls_of(row.get::<_, &str>(3)).map_err(|e| corrupt("calls", &e))?,
        commit: commit_of(row.get::<_, &str>(4))?,
        state,
        attempts: attempts_of(row.get(8)),
        submitted_at: time_at(row.get(9)),
        expires_at: time_at(row.get(10)),
        completed_at: row.get::<_, Option<i64>>(11).map(time_at),
        agent: row.get(12),
        outcome,
        idempotency,
        owner: row.get(17),
        holder,
        hold_until: row.get::<_, Option<i64>>(19).map(time_at),
        trace: row.get(20),
        id,
    })
}

/// The call `call_id`, if stored (`FOR UPDATE` with `lock`).
pub(super) async fn load(
    client: &impl GenericClient,
    call_id: &str,
    lock: bool,
) -> Result<Option<CallRecord>, QueueError> {
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM sapbridge_calls WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = client
        .query_opt(&sql, &[&call_id])
        .await
        .map_err(store_error)?;
    row.as_ref().map(record).transpose()
}

/// `sql` prepared on this connection once and cached: a batch then costs no
/// parse round trips. Once cached, the future is ready at its first poll.
pub(super) async fn prepared(
    tx: &impl deadpool_postgres::GenericClient,
    sql: &str,
) -> Result<tokio_postgres::Statement, QueueError> {
    tx.prepare_cached(sql).await.map_err(store_error)
}

/// The calls `filter` selects, newest first (see `queue::listing`; ids compared
/// byte-wise, as the other stores do). A call's function is read from its kind
/// and calls' JSON.
pub(super) async fn list(
    client: &impl GenericClient,
    filter: &super::super::CallFilter,
) -> Result<Vec<CallRecord>, QueueError> {
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM sapbridge_calls \
         WHERE submitted_at >= $1 AND (submitted_at, id COLLATE \"C\") < ($2, $7::text COLLATE \"C\") \
           AND ($3::text[] IS NULL OR system = ANY($3)) \
           AND ($4::text IS NULL OR coalesce(kind::jsonb -> 'action' ->> 'name', \
                                             calls::jsonb -> 0 ->> 'function') = $4) \
           AND ($5::text IS NULL OR state = $5) AND ($6::text IS NULL OR owner = $6) \
         ORDER BY submitted_at DESC, id COLLATE \"C\" DESC LIMIT $8"
    );
    let limit = i64::try_from(filter.page_size()).unwrap_or(1);
    let state = filter.state.map(super::super::StateFilter::code);
    let (before_at, before_id) = filter.before();
    let rows = client
        .query(
            &sql,
            &[
                &filter.since.map_or(i64::MIN, nanos),
                &before_at,
                &filter.systems,
                &filter.function,
                &state,
                &filter.owner,
                &before_id,
                &limit,
            ],
        )
        .await
        .map_err(store_error)?;
    rows.iter().map(record).collect()
}
