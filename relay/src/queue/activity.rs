//! What the console's overview reads of the last hour ([`Activity`]): the calls
//! that finished per system and minute, of which errors, and the refusals in the
//! audit log. Every store answers from its shared data (the SQLite file, the
//! PostgreSQL database), so relay replicas sharing a database show the same
//! figures.
//!
//! - A call **finished** when it reached a final state other than cancelled:
//!   `succeeded`, `failed` or `expired`, counted in the minute (UTC) of its
//!   `completed_at`. A cancelled call never ran and is not counted.
//! - An **error** is a finished call that did not succeed: `failed` (an ABAP
//!   exception or short dump, a communication or logon failure, parameters SAP
//!   refused, the agent's allowlist refused it, a transaction rolled back, an
//!   outcome unknown) or `expired` (no agent took it before its TTL, or it
//!   reached its agent past its deadline). A function call that SAP answered is a
//!   success even when its BAPI `RETURN` holds an error message: the call ran.
//! - A **refusal** is an audit record whose outcome is one of [`REFUSALS`]: a
//!   request refused for its key, scope, rate, calls in flight or a full queue,
//!   or a call the agent's allowlist refused.

use time::OffsetDateTime;

use super::CallState;

/// The audit outcomes that are refusals (the problem types' slugs).
pub(crate) const REFUSALS: [&str; 7] = [
    "unauthorized",
    "forbidden",
    "not-allowed",
    "rate-limited",
    "too-many-in-flight",
    "queue-full",
    "store-full",
];

/// The refusal outcomes as an SQL list (`'unauthorized', …`), for the stores'
/// queries; the slugs are constants, never input.
pub(crate) fn refusals_sql() -> String {
    REFUSALS
        .iter()
        .map(|slug| format!("'{slug}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Nanoseconds per minute: a stored time (Unix nanoseconds) divided by it is its
/// Unix minute.
pub(crate) const NANOS_PER_MINUTE: i64 = 60_000_000_000;

/// The calls of one system that finished in one minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallMinute {
    /// The system.
    pub(crate) system: String,
    /// The minute, as minutes since the Unix epoch (UTC).
    pub(crate) minute: i64,
    /// Calls that finished in it (succeeded, failed, expired).
    pub(crate) finished: u64,
    /// Of those, the ones that failed or expired.
    pub(crate) errors: u64,
}

/// Audit records of one refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefusalCount {
    /// The system concerned, if the record names one.
    pub(crate) system: Option<String>,
    /// The record's event (`request` or `call`).
    pub(crate) event: String,
    /// The outcome (one of [`REFUSALS`]).
    pub(crate) outcome: String,
    /// How many records.
    pub(crate) count: u64,
}

/// What happened since a time (see the module docs). Neither list is in any
/// particular order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Activity {
    /// Finished calls per system and minute; minutes without any are left out.
    pub(crate) calls: Vec<CallMinute>,
    /// Refusals per system, event and outcome.
    pub(crate) refusals: Vec<RefusalCount>,
}

/// The Unix minute of `at`.
pub(crate) fn minute_of(at: OffsetDateTime) -> i64 {
    i64::try_from(
        at.unix_timestamp_nanos()
            .div_euclid(i128::from(NANOS_PER_MINUTE)),
    )
    .unwrap_or(i64::MAX)
}

/// Whether a call in `state` counts as an error; `None` when it is not counted
/// at all (open or cancelled).
pub(crate) fn is_error(state: &CallState) -> Option<bool> {
    match state {
        CallState::Succeeded => Some(false),
        CallState::Failed | CallState::Expired => Some(true),
        CallState::Queued | CallState::Leased { .. } | CallState::Cancelled => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_are_floored_also_before_the_epoch() {
        let at = OffsetDateTime::from_unix_timestamp(119).unwrap();
        assert_eq!(minute_of(at), 1);
        let before = OffsetDateTime::from_unix_timestamp(-1).unwrap();
        assert_eq!(minute_of(before), -1);
    }

    #[test]
    fn only_failed_and_expired_calls_are_errors() {
        assert_eq!(is_error(&CallState::Succeeded), Some(false));
        assert_eq!(is_error(&CallState::Failed), Some(true));
        assert_eq!(is_error(&CallState::Expired), Some(true));
        assert_eq!(is_error(&CallState::Cancelled), None);
        assert_eq!(is_error(&CallState::Queued), None);
    }

    #[test]
    fn the_refusal_list_is_quoted_sql() {
        assert!(refusals_sql().starts_with("'unauthorized', 'forbidden'"));
        assert!(REFUSALS.iter().all(|s| !s.contains('\'')));
    }
}
