//! [`GatedSystem`]: an SAP system in front of another that holds the first call of
//! one function until the test lets it go, and counts the calls that reach SAP.
//!
//! With it a test knows a unit is mid-flight in SAP (its BAPI or its commit has
//! started and not ended) without guessing from latencies: it waits until the call
//! is held, cuts or kills what it wants, then releases the call and waits until SAP
//! finished it (or any other call: the gate counts calls started and finished).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use sapbridge_sap::{Parameters, RfcError, SapConnection, SapSystem};
use tokio::sync::watch;

use crate::DEADLINE;

/// What the gate and its connections share.
#[derive(Debug)]
struct GateState {
    /// The function whose first call is held.
    function: String,
    /// Whether that first call arrived.
    taken: AtomicBool,
    /// The first call is held in SAP.
    held: watch::Sender<bool>,
    /// The test let it go.
    released: watch::Sender<bool>,
    /// Calls that reached SAP, by function name.
    calls: watch::Sender<HashMap<String, Counts>>,
}

/// The calls of one function.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    /// Started in SAP.
    started: usize,
    /// Returned, whatever their result.
    finished: usize,
    /// Returned without an error (a BAPI's `RETURN` may still hold one).
    succeeded: usize,
}

/// An SAP system that holds the first call of one function until [`release`]d.
///
/// Clones share the gate.
///
/// [`release`]: GatedSystem::release
#[derive(Clone)]
pub struct GatedSystem {
    inner: Arc<dyn SapSystem>,
    state: Arc<GateState>,
}

impl std::fmt::Debug for GatedSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatedSystem")
            .field("function", &self.state.function)
            .finish_non_exhaustive()
    }
}

impl GatedSystem {
    /// `inner`, with the first call of `function` held until released.
    pub fn new(inner: Arc<dyn SapSystem>, function: &str) -> Self {
        Self {
            inner,
            state: Arc::new(GateState {
                function: function.to_owned(),
                taken: AtomicBool::new(false),
                held: watch::Sender::new(false),
                released: watch::Sender::new(false),
                calls: watch::Sender::new(HashMap::new()),
            }),
        }
    }

    /// Waits until the first call of the gated function is held in SAP.
    ///
    /// # Errors
    /// When it does not arrive within [`DEADLINE`].
    pub async fn wait_held(&self) -> Result<()> {
        wait_true(&self.state.held)
            .await
            .with_context(|| format!("{} never reached SAP", self.state.function))
    }

    /// Lets the held call (or the first one still to come) run.
    pub fn release(&self) {
        self.state.released.send_replace(true);
    }

    /// Waits until `n` calls of `function` returned from SAP (whatever their
    /// result).
    ///
    /// # Errors
    /// When they do not within [`DEADLINE`] (a caller dropped a call before it
    /// ran, for instance).
    pub async fn wait_finished(&self, function: &str, n: usize) -> Result<()> {
        let mut seen = self.state.calls.subscribe();
        let finished =
            |calls: &HashMap<String, Counts>| calls.get(function).is_some_and(|c| c.finished >= n);
        tokio::time::timeout(DEADLINE, seen.wait_for(finished))
            .await
            .with_context(|| format!("{n} calls of {function} never finished in SAP"))?
            .context("gate dropped")?;
        Ok(())
    }

    /// How many calls of `function` reached SAP so far.
    pub fn calls(&self, function: &str) -> usize {
        self.counts(function).started
    }

    /// How many calls of `function` returned from SAP without an error so far.
    pub fn succeeded(&self, function: &str) -> usize {
        self.counts(function).succeeded
    }

    fn counts(&self, function: &str) -> Counts {
        self.state
            .calls
            .borrow()
            .get(function)
            .copied()
            .unwrap_or_default()
    }
}

async fn wait_true(flag: &watch::Sender<bool>) -> Result<()> {
    let mut seen = flag.subscribe();
    tokio::time::timeout(DEADLINE, seen.wait_for(|v| *v))
        .await
        .context("timed out")?
        .context("gate dropped")?;
    Ok(())
}

impl GateState {
    /// Counts a call of `function` starting and, if it is the first of the gated
    /// function, holds it until the test releases it.
    async fn enter(&self, function: &str) {
        self.count(function, None);
        let first = function == self.function && !self.taken.swap(true, Ordering::SeqCst);
        if first {
            self.held.send_replace(true);
            let mut released = self.released.subscribe();
            // The sender lives in `self`, which the connection holds: never closed.
            let _ = released.wait_for(|v| *v).await;
        }
    }

    /// Counts a call of `function` as started (`returned` is `None`) or as
    /// returned, with or without an error.
    fn count(&self, function: &str, returned: Option<bool>) {
        self.calls.send_modify(|calls| {
            let counts = calls.entry(function.to_owned()).or_default();
            match returned {
                None => counts.started += 1,
                Some(ok) => {
                    counts.finished += 1;
                    counts.succeeded += usize::from(ok);
                }
            }
        });
    }
}

#[async_trait::async_trait]
impl SapSystem for GatedSystem {
    async fn connect(&self) -> Result<Box<dyn SapConnection>, RfcError> {
        Ok(Box::new(GatedConnection {
            inner: self.inner.connect().await?,
            state: Arc::clone(&self.state),
        }))
    }

    async fn tid_committed(&self, tid: &str) -> Result<Option<bool>, RfcError> {
        self.inner.tid_committed(tid).await
    }
}

struct GatedConnection {
    inner: Box<dyn SapConnection>,
    state: Arc<GateState>,
}

#[async_trait::async_trait]
impl SapConnection for GatedConnection {
    async fn call(
        &mut self,
        function: &str,
        parameters: &Parameters,
    ) -> Result<Parameters, RfcError> {
        self.state.enter(function).await;
        let result = self.inner.call(function, parameters).await;
        self.state.count(function, Some(result.is_ok()));
        result
    }

    /// The commit with its TID goes to the system behind (which may record the
    /// TID), counted and gated as `BAPI_TRANSACTION_COMMIT`.
    async fn commit_with_tid(&mut self, tid: &str) -> Result<Parameters, RfcError> {
        const COMMIT: &str = "BAPI_TRANSACTION_COMMIT";
        self.state.enter(COMMIT).await;
        let result = self.inner.commit_with_tid(tid).await;
        self.state.count(COMMIT, Some(result.is_ok()));
        result
    }
}
