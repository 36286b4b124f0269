//! The filter `GET /v1/calls` lists calls by ([`CallFilter`]), as every store
//! applies it: newest first (by submission time, then id, descending), after a
//! cursor (the submission time and id of the last call of the page before), so
//! calls stored meanwhile never shift a page already read.
//!
//! A call's **function** is the action's name for a call of a high-level action,
//! else its first call's function module.

use time::OffsetDateTime;

use super::{CallKind, CallRecord, CallState};

/// The most calls one read may return: an API page of 1,000 and one more, to
/// know whether another page follows.
pub(crate) const MAX_PAGE: usize = 1001;

/// The states a filter names (`running` is a lease, whatever its session).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateFilter {
    /// Waiting for an agent.
    Queued,
    /// Leased to an agent.
    Running,
    /// Succeeded.
    Succeeded,
    /// Failed.
    Failed,
    /// Expired.
    Expired,
    /// Cancelled.
    Cancelled,
}

impl StateFilter {
    /// The state from its API name.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "expired" => Self::Expired,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }

    /// The state's code in the database stores (`leased` for `running`).
    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "leased",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }

    fn matches(self, state: &CallState) -> bool {
        matches!(
            (self, state),
            (Self::Queued, CallState::Queued)
                | (Self::Running, CallState::Leased { .. })
                | (Self::Succeeded, CallState::Succeeded)
                | (Self::Failed, CallState::Failed)
                | (Self::Expired, CallState::Expired)
                | (Self::Cancelled, CallState::Cancelled)
        )
    }
}

/// Where a page starts: after the call submitted at `submitted_at` with id `id`
/// (in the listing's order, newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallCursor {
    /// The last listed call's submission time.
    pub(crate) submitted_at: OffsetDateTime,
    /// The last listed call's id.
    pub(crate) id: String,
}

/// Which calls a page holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CallFilter {
    /// Of one of these systems (`None`: any system).
    pub(crate) systems: Option<Vec<String>>,
    /// Whose function (see the module docs) is this.
    pub(crate) function: Option<String>,
    /// In this state.
    pub(crate) state: Option<StateFilter>,
    /// Of this API key (by name).
    pub(crate) owner: Option<String>,
    /// Submitted at or after this time.
    pub(crate) since: Option<OffsetDateTime>,
    /// Submitted before this time.
    pub(crate) until: Option<OffsetDateTime>,
    /// After this call.
    pub(crate) after: Option<CallCursor>,
    /// The most calls (at most [`MAX_PAGE`]).
    pub(crate) limit: usize,
}

/// A call's function as the listing names it (see the module docs).
pub(crate) fn function_of(record: &CallRecord) -> Option<&str> {
    match &record.kind {
        CallKind::Action(step) => Some(step.action.as_str()),
        _ => record.calls.first().map(|c| c.function.as_str()),
    }
}

impl CallFilter {
    /// Whether `record` passes (for stores that filter in memory).
    pub(crate) fn matches(&self, record: &CallRecord) -> bool {
        self.systems
            .as_ref()
            .is_none_or(|s| s.contains(&record.system))
            && self
                .function
                .as_ref()
                .is_none_or(|f| function_of(record) == Some(f.as_str()))
            && self.state.is_none_or(|s| s.matches(&record.state))
            && self
                .owner
                .as_ref()
                .is_none_or(|o| record.owner.as_ref() == Some(o))
            && self.since.is_none_or(|t| record.submitted_at >= t)
            && self.until.is_none_or(|t| record.submitted_at < t)
            && self.after.as_ref().is_none_or(|c| {
                (record.submitted_at, record.id.as_str()) < (c.submitted_at, c.id.as_str())
            })
    }

    /// The listing's upper bound as (Unix nanoseconds, id): calls before it in
    /// (submission time, id) order are listed. The cursor and `until` (before
    /// which every id of that time counts, as no id is empty) in one bound, which
    /// a database walks its index from.
    pub(crate) fn before(&self) -> (i64, String) {
        let until = (
            self.until.map_or(i64::MAX, super::audit::nanos),
            String::new(),
        );
        match &self.after {
            Some(c) => until.min((super::audit::nanos(c.submitted_at), c.id.clone())),
            None => until,
        }
    }

    /// The page size a store uses: the filter's limit, between 1 and [`MAX_PAGE`].
    pub(crate) fn page_size(&self) -> usize {
        self.limit.clamp(1, MAX_PAGE)
    }
}
