//! The chain driver: stores an action's units and walks from each finished call to
//! what comes next.
//!
//! The chain is walked from its first call, by the request that started it and by
//! every `GET /v1/calls/{id}` poll of that id. A follow-up is stored under an
//! internal idempotency key derived from the previous call's id, so however many
//! walkers meet a step, the follow-up exists once. A step not final in time is
//! [`Progress::Running`] under the *first* call's id, so clients poll one id.

use std::time::Duration;

use tokio::time::Instant;

use super::metadata::MetadataCache;
use super::{ActionError, ActionUnit, Answer, Next, Step};
use crate::calls::{CallError, Calls, Stored, Submission};
use crate::queue::{CallKind, CallRecord, IdempotencyKey};

/// The idempotency scope of follow-up units (no API key is named like this: key
/// names cannot hold control characters).
const FOLLOW_UP_SCOPE: &str = "\0follow-up";

/// What walking a chain needs.
pub(crate) struct Chain<'a> {
    /// Where the units are stored and awaited.
    pub(crate) calls: &'a Calls,
    /// Where function interfaces are kept once fetched.
    pub(crate) metadata: &'a MetadataCache,
    /// The agents serving a system now (see [`MetadataCache::get`]).
    pub(crate) agents: &'a (dyn Fn(&str) -> Vec<String> + Sync),
}

/// How far an action got.
#[derive(Debug)]
pub(crate) enum Progress {
    /// Its answer.
    Done(Answer),
    /// A step is not final yet.
    Running {
        /// The chain's first call: the id the client polls.
        root_id: String,
        /// The step's call as it is now.
        current: Box<CallRecord>,
    },
}

/// Why a chain has no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChainError {
    /// A step says why (the chain's first call is the call the problem is about).
    #[error("action of call {call_id}: {error:?}")]
    Step {
        /// The chain's first call.
        call_id: String,
        /// Why.
        error: ActionError,
    },
    /// Storing or awaiting a unit failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The chain's stored state is not what this relay wrote (a call that is no
    /// step of an action, a step it cannot read, a follow-up stored for another
    /// step): a bug, another relay's data, or a broken store.
    #[error("{0}")]
    Broken(String),
}

impl Chain<'_> {
    /// Submits the first unit of an action and walks its chain until the answer,
    /// or until `wait` (the request's `Prefer`) is over.
    ///
    /// # Errors
    /// As [`Calls::submit`], and the action's errors.
    pub(crate) async fn run(
        &self,
        first: Submission,
        wait: Duration,
    ) -> Result<Progress, ChainError> {
        let deadline = Instant::now() + wait;
        let record = self.calls.submit(first, wait).await?;
        self.walk(record, deadline).await
    }

    /// Walks the chain of `root` (an action's first call) without waiting: what a
    /// poll of its id answers.
    ///
    /// # Errors
    /// The action's errors; store failures.
    pub(crate) async fn poll(&self, root: CallRecord) -> Result<Progress, ChainError> {
        self.walk(root, Instant::now()).await
    }

    async fn walk(&self, root: CallRecord, deadline: Instant) -> Result<Progress, ChainError> {
        let root_id = root.id.clone();
        let ttl = root.expires_at - root.submitted_at;
        let mut record = root;
        loop {
            if !record.state.is_final() {
                return Ok(Progress::Running {
                    root_id,
                    current: Box::new(record),
                });
            }
            let fail = |error| ChainError::Step {
                call_id: root_id.clone(),
                error,
            };
            let step = match &record.kind {
                CallKind::Action(stored) => Step::decode(stored)
                    .map_err(|e| ChainError::Broken(format!("call {}: {e}", record.id)))?,
                _ => {
                    return Err(ChainError::Broken(format!(
                        "call {} is not a step of an action",
                        record.id
                    )));
                }
            };
            match step.next(&record).map_err(fail)? {
                Next::Done(answer) => {
                    if let Answer::Interface(interface) = &answer {
                        let agents = (self.agents)(&record.system);
                        self.metadata
                            .put(&record.system, std::sync::Arc::clone(interface), agents);
                    }
                    return Ok(Progress::Done(answer));
                }
                Next::Then(unit) => {
                    let id = self.follow_up(&record, unit, ttl).await?;
                    let wait = deadline.saturating_duration_since(Instant::now());
                    record = self.calls.wait_final(&id, wait).await?;
                }
            }
        }
    }

    /// Stores (once) the unit that follows `previous`; returns its call id.
    async fn follow_up(
        &self,
        previous: &CallRecord,
        next: ActionUnit,
        ttl: time::Duration,
    ) -> Result<String, ChainError> {
        let key = IdempotencyKey {
            scope: FOLLOW_UP_SCOPE.into(),
            key: previous.id.clone(),
        };
        let submission = Submission {
            system: previous.system.clone(),
            kind: CallKind::Action(next.step.encode()),
            calls: next.calls,
            commit: next.commit,
            ttl: ttl.max(time::Duration::SECOND).unsigned_abs(),
            idempotency: Some((key, "follow-up".into())),
            owner: previous.owner.clone(),
            trace: previous.trace.clone(),
            webhooks: Vec::new(),
        };
        match self.calls.store(submission).await {
            Ok(Stored::Created(record)) => {
                tracing::info!(call_id = %record.id, after = %previous.id, "follow-up queued");
                Ok(record.id)
            }
            Ok(Stored::Existing(record)) => Ok(record.id),
            Err(CallError::KeyMismatch) => Err(ChainError::Broken(format!(
                "follow-up of {} stored with another fingerprint",
                previous.id
            ))),
            Err(error) => Err(error.into()),
        }
    }
}
