//! Calls as clients see them: submitting a unit of work (with its idempotency
//! key), waiting for its outcome, and reading or cancelling a call by its id, which
//! only the API key that owns the call (or an operator key) may do.
//!
//! [`Calls`] is the one way the HTTP handlers and the actions reach the queue for
//! this; it uses nothing but the queue. Its errors are [`CallError`]s, which the
//! HTTP layer answers.
//!
//! An idempotency key is scoped to the API key that sent it: a request whose key
//! names a call already stored with the same request fingerprint joins that call
//! (and waits for it as the first request did); with another fingerprint it is
//! refused ([`CallError::KeyMismatch`]).

mod subscribed;
mod wait;

pub(crate) use subscribed::Subscribed;

use std::sync::Arc;
use std::time::Duration;

use sapbridge_proto::{CommitPolicy, FunctionCall};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::auth::{Keyring, Scope};
use crate::ids::new_call_id;
use crate::limits::{LimitCounters, LimitReason};
use crate::metrics::Metrics;
use crate::queue::{
    CallFilter, CallKind, CallRecord, CallState, Cancelled, Enqueued, IdempotencyKey, NewCall,
    Queue, QueueError,
};

/// Submits, waits for, finds and cancels calls. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Calls {
    queue: Arc<dyn Queue>,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    caps: Option<Arc<Caps>>,
    subscribed: Arc<Subscribed>,
}

/// The caps new calls must pass (see `crate::limits`): each key's calls queued
/// or running, each system's calls queued.
pub(crate) struct Caps {
    /// The keys of the moment (their `max_in_flight`).
    pub(crate) keys: Arc<Keyring>,
    /// The most calls queued per system.
    pub(crate) max_depth_per_system: Option<u64>,
    /// Where refusals are counted.
    pub(crate) counters: Arc<LimitCounters>,
}

/// A unit of work to store.
#[derive(Debug, Clone)]
pub(crate) struct Submission {
    /// The system it runs against.
    pub(crate) system: String,
    /// Function call, transaction, or a step of an action.
    pub(crate) kind: CallKind,
    /// The calls of the unit.
    pub(crate) calls: Vec<FunctionCall>,
    /// What happens after them.
    pub(crate) commit: CommitPolicy,
    /// How long it may wait for an agent.
    pub(crate) ttl: Duration,
    /// The idempotency key and the fingerprint of the request that sent it.
    pub(crate) idempotency: Option<(IdempotencyKey, String)>,
    /// The name of the API key that owns it.
    pub(crate) owner: Option<String>,
    /// The `traceparent` the agent gets with the unit.
    pub(crate) trace: Option<String>,
    /// Where its answer is delivered as a webhook once final.
    pub(crate) webhooks: Vec<crate::queue::NewDelivery>,
}

/// What [`Calls::store`] did.
#[derive(Debug)]
pub(crate) enum Stored {
    /// The unit is stored as a new call.
    Created(Box<CallRecord>),
    /// Its idempotency key names this call, stored before for the same request.
    Existing(Box<CallRecord>),
}

/// Who asks for a call by its id: an API key's name, the systems it covers, and
/// whether it holds the operator scope.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Viewer<'a> {
    /// The key's name (the owner of the calls it creates).
    pub(crate) name: &'a str,
    /// The systems it covers.
    pub(crate) scope: &'a Scope,
    /// Whether it may see the calls of every key.
    pub(crate) operator: bool,
}

impl Viewer<'_> {
    /// Whether `record` is this key's to read and cancel: a call of a system the
    /// key covers, created by this key (or by any key, for an operator key). A call
    /// without an owner (stored by an older relay) is an operator's only.
    pub(crate) fn may_see(&self, record: &CallRecord) -> bool {
        self.scope.covers(&record.system)
            && (self.operator || record.owner.as_deref() == Some(self.name))
    }
}

/// Why a call could not be submitted, found or cancelled.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// No such call, or not one the asking key may see.
    #[error("no call {0}")]
    NotFound(String),
    /// The call is leased or final: it can no longer be cancelled.
    #[error("call {} is {} and can no longer be cancelled", .0.id, .0.state.as_str())]
    NotCancellable(Box<CallRecord>),
    /// The idempotency key was used before with another request.
    #[error("the idempotency key was used before with another request")]
    KeyMismatch,
    /// A call stored a moment ago cannot be read back (purged, or a broken store).
    #[error("call {0} vanished")]
    Vanished(String),
    /// The queue store failed.
    /// The key has as many calls queued or running as its `max_in_flight`.
    #[error("the API key has {0} calls queued or running, its max_in_flight")]
    TooManyInFlight(u32),
    /// The system has as many calls queued as `[queue] max_depth_per_system`.
    #[error("system {system} has {limit} calls queued, the most allowed")]
    QueueFull {
        /// The system.
        system: String,
        /// The cap.
        limit: u64,
    },
    #[error(transparent)]
    Store(#[from] QueueError),
}

impl Calls {
    /// Calls in `queue`; waits end early once `shutdown` is cancelled.
    pub(crate) fn new(
        queue: Arc<dyn Queue>,
        shutdown: CancellationToken,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            queue,
            shutdown,
            metrics,
            caps: None,
            subscribed: Arc::default(),
        }
    }

    /// New calls must pass `caps` before they are stored.
    pub(crate) fn with_caps(mut self, caps: Caps) -> Self {
        self.caps = Some(Arc::new(caps));
        self
    }

    /// Stores a unit of work, or finds the call its idempotency key names.
    ///
    /// # Errors
    /// [`CallError::KeyMismatch`] for a key used with another request, and store
    /// failures.
    pub(crate) async fn store(&self, submission: Submission) -> Result<Stored, CallError> {
        self.enqueue(new_call(submission)).await
    }

    /// Stores a unit of work and waits until it is final, `wait` has passed or the
    /// relay shuts down; returns the call as it is then. A submission whose
    /// idempotency key names a call already stored joins that call: it waits for
    /// it in the same way. With no wait, the call is returned as stored, even if a
    /// quick agent has finished it by now.
    ///
    /// # Errors
    /// As [`Calls::store`], and [`CallError::Vanished`].
    pub(crate) async fn submit(
        &self,
        submission: Submission,
        wait: Duration,
    ) -> Result<CallRecord, CallError> {
        let call = new_call(submission);
        let function = call
            .calls
            .first()
            .map(|c| c.function.clone())
            .unwrap_or_default();
        let span = tracing::info_span!(
            "call",
            call_id = %call.id,
            system = %call.system,
            function = %function,
            key = %call.owner.as_deref().unwrap_or_default(),
        );
        async move {
            // Watch before the call exists, so its end cannot slip by unseen (only
            // when the request waits for it).
            let watch = (!wait.is_zero()).then(|| self.queue.signals().watch_call(&call.id));
            let record = match self.enqueue(call).await? {
                Stored::Created(record) => {
                    tracing::debug!(calls = record.calls.len(), "call queued");
                    record
                }
                Stored::Existing(record) => {
                    // The key is scoped to the owner's API key: the call is its own.
                    tracing::info!(existing = %record.id, status = record.state.as_str(),
                        "idempotent retry joins the call");
                    drop(watch);
                    if record.state.is_final() || wait.is_zero() {
                        return Ok(*record);
                    }
                    return self.wait_final(&record.id, wait).await;
                }
            };
            let record = match &watch {
                None => *record,
                Some(watch) => self.wait_watched(Some(*record), watch, wait).await?,
            };
            tracing::debug!(status = record.state.as_str(), "call answered");
            Ok(record)
        }
        .instrument(span)
        .await
    }

    /// The call `call_id` if `viewer` may see it ([`Viewer::may_see`]): the one way
    /// a client reaches a stored call by its id.
    ///
    /// # Errors
    /// [`CallError::NotFound`] for another key's call, a call of a system outside
    /// the key's scope and a call that does not exist alike; store failures.
    pub(crate) async fn find(
        &self,
        viewer: Viewer<'_>,
        call_id: &str,
    ) -> Result<CallRecord, CallError> {
        match self.queue.get(call_id).await? {
            Some(record) if viewer.may_see(&record) => Ok(record),
            _ => Err(CallError::NotFound(call_id.to_owned())),
        }
    }

    /// A page of the calls `viewer` may see that `filter` selects, newest first
    /// (at most its page size): a key's own calls of the systems it covers, or
    /// an operator key's calls of every key of those systems. The filter's
    /// systems and owner are narrowed to what the viewer may see; a filter that
    /// asks for nothing the viewer may see selects nothing.
    ///
    /// # Errors
    /// Store failures.
    pub(crate) async fn list(
        &self,
        viewer: Viewer<'_>,
        mut filter: CallFilter,
    ) -> Result<Vec<CallRecord>, CallError> {
        if !viewer.operator {
            match &filter.owner {
                Some(owner) if owner != viewer.name => return Ok(Vec::new()),
                _ => filter.owner = Some(viewer.name.to_owned()),
            }
        }
        if let Scope::Systems(covered) = viewer.scope {
            let systems: Vec<String> = match filter.systems.take() {
                Some(asked) => asked.into_iter().filter(|s| covered.contains(s)).collect(),
                None => {
                    let mut all: Vec<String> = covered.iter().cloned().collect();
                    all.sort();
                    all
                }
            };
            if systems.is_empty() {
                return Ok(Vec::new());
            }
            filter.systems = Some(systems);
        }
        let mut records = self.queue.list_calls(filter).await?;
        // The store was asked for these only; checked again as `find` does.
        records.retain(|r| viewer.may_see(r));
        Ok(records)
    }

    /// Cancels a call `viewer` may see while it is still queued; returns it
    /// cancelled.
    ///
    /// # Errors
    /// [`CallError::NotFound`] as for [`Calls::find`],
    /// [`CallError::NotCancellable`] once leased or final; store failures.
    pub(crate) async fn cancel(
        &self,
        viewer: Viewer<'_>,
        call_id: &str,
    ) -> Result<CallRecord, CallError> {
        self.find(viewer, call_id).await?;
        match self.queue.cancel(call_id).await? {
            Cancelled::Done(record) => {
                tracing::info!(call_id = %call_id, system = %record.system, "call cancelled");
                let function = record.calls.first().map_or("", |c| c.function.as_str());
                self.metrics
                    .call_finished(&record.system, function, CallState::Cancelled.as_str());
                Ok(*record)
            }
            Cancelled::TooLate(record) => Err(CallError::NotCancellable(record)),
            Cancelled::Unknown => Err(CallError::NotFound(call_id.to_owned())),
        }
    }

    /// The webhook subscriptions new calls are matched against.
    pub(crate) fn subscribed(&self) -> &Subscribed {
        &self.subscribed
    }

    async fn enqueue(&self, mut call: NewCall) -> Result<Stored, CallError> {
        let system = crate::metrics::system_labels(&call.system);
        self.admit(&call).await?;
        // Follow-up units of an action carry no deliveries: its first call does.
        if !call
            .idempotency
            .as_ref()
            .is_some_and(|(key, _)| key.scope.starts_with('\0'))
        {
            self.subscribed.add_to(&*self.queue, &mut call).await?;
        }
        match self.queue.enqueue(call).await? {
            Enqueued::Created(record) => {
                self.metrics.calls_accepted.get_or_create(&system).inc();
                Ok(Stored::Created(record))
            }
            Enqueued::Existing(record) => {
                self.metrics.idempotent_replays.get_or_create(&system).inc();
                Ok(Stored::Existing(record))
            }
            Enqueued::KeyMismatch => Err(CallError::KeyMismatch),
        }
    }
}

impl Calls {
    /// Checks a new call against the caps: its key's calls queued or running
    /// (429), then its system's queued calls (503).
    async fn admit(&self, call: &NewCall) -> Result<(), CallError> {
        let Some(caps) = &self.caps else {
            return Ok(());
        };
        let owner = call.owner.as_deref().unwrap_or_default();
        let cap = caps.keys.limits_of(owner).and_then(|l| l.max_in_flight);
        if let Some(cap) = cap {
            let open = self.queue.open_calls_of(owner, u64::from(cap)).await?;
            if open >= u64::from(cap) {
                caps.counters.refused(LimitReason::InFlight, owner);
                return Err(CallError::TooManyInFlight(cap));
            }
        }
        if let Some(max) = caps.max_depth_per_system {
            let queued = self.queue.queued_in(&call.system, max).await?;
            if queued >= max {
                caps.counters.refused(LimitReason::QueueDepth, owner);
                return Err(CallError::QueueFull {
                    system: call.system.clone(),
                    limit: max,
                });
            }
        }
        Ok(())
    }
}

/// The new call of a submission, accepted now under a new id.
fn new_call(submission: Submission) -> NewCall {
    let now = OffsetDateTime::now_utc();
    NewCall {
        id: new_call_id(),
        system: submission.system,
        kind: submission.kind,
        calls: submission.calls,
        commit: submission.commit,
        submitted_at: now,
        expires_at: now + submission.ttl,
        idempotency: submission.idempotency,
        owner: submission.owner,
        trace: submission.trace,
        webhooks: submission.webhooks,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::queue::memory::MemoryQueue;

    fn record(system: &str, owner: Option<&str>) -> CallRecord {
        let now = OffsetDateTime::now_utc();
        CallRecord::new(NewCall {
            id: "c_1".into(),
            system: system.into(),
            kind: CallKind::Function,
            calls: Vec::new(),
            commit: CommitPolicy::None,
            submitted_at: now,
            expires_at: now,
            idempotency: None,
            owner: owner.map(str::to_owned),
            trace: None,
            webhooks: Vec::new(),
        })
    }

    #[test]
    fn a_call_is_seen_by_its_key_and_operators_of_its_system() {
        let prd = Scope::Systems(HashSet::from(["PRD".to_owned()]));
        let all = Scope::All;
        let viewer = |name, scope, operator| Viewer {
            name,
            scope,
            operator,
        };
        let mine = record("PRD", Some("flow"));
        assert!(viewer("flow", &prd, false).may_see(&mine));
        assert!(!viewer("other", &all, false).may_see(&mine));
        assert!(viewer("ops", &all, true).may_see(&mine));
        // Out of the key's scope: not even an operator sees it.
        assert!(!viewer("flow", &prd, true).may_see(&record("QAS", Some("flow"))));
        // Without an owner: operators only.
        let unowned = record("PRD", None);
        assert!(!viewer("flow", &prd, false).may_see(&unowned));
        assert!(viewer("ops", &prd, true).may_see(&unowned));
    }

    #[tokio::test]
    async fn submissions_with_one_key_join_one_call() {
        let calls = Calls::new(
            Arc::new(MemoryQueue::new()),
            CancellationToken::new(),
            Arc::default(),
        );
        let key = IdempotencyKey {
            scope: "flow".into(),
            key: "k".into(),
        };
        let submission = |fingerprint: &str| Submission {
            system: "PRD".into(),
            kind: CallKind::Function,
            calls: Vec::new(),
            commit: CommitPolicy::None,
            ttl: Duration::from_secs(60),
            idempotency: Some((key.clone(), fingerprint.into())),
            owner: Some("flow".into()),
            trace: None,
            webhooks: Vec::new(),
        };
        let first = calls.submit(submission("f"), Duration::ZERO).await.unwrap();
        let again = calls.submit(submission("f"), Duration::ZERO).await.unwrap();
        assert_eq!(first.id, again.id);
        assert!(matches!(
            calls.store(submission("g")).await,
            Err(CallError::KeyMismatch)
        ));
        let scope = Scope::All;
        let flow = Viewer {
            name: "flow",
            scope: &scope,
            operator: false,
        };
        assert_eq!(calls.find(flow, &first.id).await.unwrap().id, first.id);
        let cancelled = calls.cancel(flow, &first.id).await.unwrap();
        assert_eq!(cancelled.state.as_str(), "cancelled");
        assert!(matches!(
            calls.cancel(flow, &first.id).await,
            Err(CallError::NotCancellable(_))
        ));
        let other = Viewer {
            name: "other",
            ..flow
        };
        assert!(matches!(
            calls.find(other, &first.id).await,
            Err(CallError::NotFound(_))
        ));
    }
}
