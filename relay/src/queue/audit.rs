//! The audit log's records as the stores keep them: what happened, when, by whom,
//! and how it ended ([`AuditRecord`]), and the filter `GET /v1/audit` reads them
//! by ([`AuditFilter`]).
//!
//! Records are appended in batches ([`Queue::append_audit`](super::Queue)) and
//! numbered by the store in the order they were stored (`seq`); a page is read
//! in that order, after a `seq` (the cursor), so appending never shifts a page
//! already read. Times are UTC; stores keep them as Unix nanoseconds, as they do
//! call times. The reaper deletes records older than the audit retention.

use time::OffsetDateTime;

/// The most records one read may return: an API page of 1,000 and one more, to
/// know whether another page follows.
pub(crate) const MAX_PAGE: usize = 1001;

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuditRecord {
    /// Its number in the store (ascending in storing order); 0 before it is stored.
    pub(crate) seq: i64,
    /// When it happened (for a request: when it arrived).
    pub(crate) at: OffsetDateTime,
    /// What kind of event: `request` (an HTTP request of the API, pass-through
    /// included), `call` (a call's outcome, as its agent reported it) or `config`
    /// (keys and agent tokens reloaded).
    pub(crate) event: String,
    /// The name of the API key (never the key), if the request presented a known one.
    pub(crate) key: Option<String>,
    /// The client's address.
    pub(crate) client: Option<String>,
    /// The system concerned.
    pub(crate) system: Option<String>,
    /// The HTTP method of a request.
    pub(crate) method: Option<String>,
    /// What ran: the function (or the functions, comma-separated), the action,
    /// or the request's path.
    pub(crate) target: Option<String>,
    /// The call concerned.
    pub(crate) call_id: Option<String>,
    /// How it ended: the call's state, the problem type's slug of a refusal, the
    /// SAP error group of a failed call, `ok`.
    pub(crate) outcome: String,
    /// The HTTP status answered.
    pub(crate) status: Option<u16>,
    /// How long it took, in milliseconds.
    pub(crate) duration_ms: Option<i64>,
    /// The agent that ran the call.
    pub(crate) agent: Option<String>,
    /// Anything else worth keeping (never a secret).
    pub(crate) detail: Option<String>,
}

impl AuditRecord {
    /// A record of `event` at `at` that ended as `outcome`, with nothing else known.
    pub(crate) fn new(event: &str, at: OffsetDateTime, outcome: impl Into<String>) -> Self {
        Self {
            seq: 0,
            at,
            event: event.to_owned(),
            key: None,
            client: None,
            system: None,
            method: None,
            target: None,
            call_id: None,
            outcome: outcome.into(),
            status: None,
            duration_ms: None,
            agent: None,
            detail: None,
        }
    }
}

/// Which records a page holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AuditFilter {
    /// At or after this time.
    pub(crate) from: Option<OffsetDateTime>,
    /// Before this time.
    pub(crate) to: Option<OffsetDateTime>,
    /// Of this system.
    pub(crate) system: Option<String>,
    /// Of this API key (by name).
    pub(crate) key: Option<String>,
    /// With this outcome.
    pub(crate) outcome: Option<String>,
    /// Of this call.
    pub(crate) call_id: Option<String>,
    /// Stored after the record of this number (the cursor).
    pub(crate) after: Option<i64>,
    /// The most records (at most [`MAX_PAGE`]).
    pub(crate) limit: usize,
}

impl AuditFilter {
    /// Whether `record` passes (for stores that filter in memory).
    pub(crate) fn matches(&self, record: &AuditRecord) -> bool {
        fn same(want: Option<&String>, have: Option<&String>) -> bool {
            want.is_none_or(|w| have == Some(w))
        }
        self.from.is_none_or(|from| record.at >= from)
            && self.to.is_none_or(|to| record.at < to)
            && same(self.system.as_ref(), record.system.as_ref())
            && same(self.key.as_ref(), record.key.as_ref())
            && self.outcome.as_ref().is_none_or(|o| *o == record.outcome)
            && same(self.call_id.as_ref(), record.call_id.as_ref())
            && self.after.is_none_or(|after| record.seq > after)
    }

    /// The page size a store uses: the filter's limit, between 1 and [`MAX_PAGE`].
    pub(crate) fn page_size(&self) -> usize {
        self.limit.clamp(1, MAX_PAGE)
    }
}

/// A time as Unix nanoseconds, as the stores keep it (saturating).
pub(crate) fn nanos(time: OffsetDateTime) -> i64 {
    i64::try_from(time.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

/// A time from Unix nanoseconds (the epoch when out of range).
pub(crate) fn from_nanos(nanos: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}
