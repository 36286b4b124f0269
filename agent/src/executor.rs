//! Execution of one unit of work against an SAP system.
//!
//! Order of checks: allowlist first (an unknown system, a function the allowlist
//! does not name, a table `allow_tables` does not name, or a table read whose
//! `OPTIONS`/`FIELDS` break `sapbridge_sap::table_read`'s rules → `NOT_ALLOWED`, SAP
//! untouched, logged as a refusal by [`crate::refusal`]), then the deadline
//! (`EXPIRED`, SAP untouched), then one SAP session for the whole unit, in which
//! the calls run in order and the commit policy decides between committing
//! (WAIT = X) and `BAPI_TRANSACTION_ROLLBACK`. The answer of `RFC_FUNCTION_SEARCH`
//! keeps only the function modules the allowlist lets through.
//!
//! Journaling hooks ([`UnitProgress`]): the unit's start is recorded right before
//! SAP is first touched (a unit stopped earlier — denied, expired — is never in
//! doubt), and each call result of a `CommitOnSuccess` unit is recorded as it
//! completes, so a unit SAP later confirms committed still has its results. The
//! commit goes through [`SapConnection::commit_with_tid`] with the call id as TID,
//! so a system that keeps TIDs can say afterwards whether it committed.

use sapbridge_proto::{
    CallResult, CommitPolicy, ErrorGroup, Outcome, Parameters, RfcError, TransactionOutcome, Unit,
};
use sapbridge_sap::{SapConnection, bapi_return};
use serde_json::Value;
use tokio::time::Instant;
use tracing::{Instrument, debug, info_span, warn};

use crate::allowlist::{
    COMMIT_FUNCTION, ROLLBACK_FUNCTION, filter_function_search, first_denied_table,
    first_refused_read,
};
use crate::refusal::{Refusal, Refused};
use crate::systems::ServedSystem;

/// What the executor reports while a unit runs (the journal listens).
pub(crate) trait UnitProgress: Sync {
    /// SAP is about to be called for the first time. An error stops the unit with
    /// `JOURNAL_UNAVAILABLE` before SAP is touched.
    fn starting(&self) -> impl Future<Output = Result<(), String>> + Send;

    /// Call `index` of a `CommitOnSuccess` unit returned `result`. An error rolls
    /// the unit back instead of committing it.
    fn call_done(
        &self,
        index: usize,
        result: &CallResult,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// No journaling (executor tests).
impl UnitProgress for () {
    async fn starting(&self) -> Result<(), String> {
        Ok(())
    }

    async fn call_done(&self, _: usize, _: &CallResult) -> Result<(), String> {
        Ok(())
    }
}

/// Runs a unit: checks, then the calls and the commit policy on one SAP session.
///
/// `system` is `None` when the agent does not serve the unit's system. `deadline`
/// is when the unit must have started, on this agent's monotonic clock (the relay
/// sends it as time remaining; see [`crate::runner`]); `None`: none. Never fails:
/// every problem becomes an [`Outcome`].
///
/// Not cancel-safe once SAP is called: dropping the future mid-call leaves the
/// call's effect unknown.
pub(crate) async fn execute(
    unit: &Unit,
    system: Option<&ServedSystem>,
    deadline: Option<Instant>,
    progress: &impl UnitProgress,
) -> Outcome {
    let Some(system) = system else {
        let function = unit.calls.first().map_or("", |call| call.function.as_str());
        return refuse(
            None,
            &unit.system,
            Refused::Function {
                call_id: &unit.call_id,
                function,
            },
            format!("system {} is not served by this agent", unit.system),
        );
    };
    if unit.calls.is_empty() {
        return Outcome::Failed {
            error: RfcError::new(
                ErrorGroup::ExternalRuntimeFailure,
                "EMPTY_UNIT",
                "the unit holds no function calls",
            ),
        };
    }
    if let Some(function) = system.allowlist.first_denied(unit) {
        return refuse(
            Some(&system.agent_id),
            &system.name,
            Refused::Function {
                call_id: &unit.call_id,
                function,
            },
            format!(
                "function {function} is not allowed on system {} by this agent's allowlist",
                system.name
            ),
        );
    }
    if let Some(table) = first_denied_table(&system.tables, unit) {
        return refuse(
            Some(&system.agent_id),
            &system.name,
            Refused::Table {
                call_id: &unit.call_id,
                table,
            },
            format!(
                "table {table} is not allowed on system {} by this agent's allow_tables",
                system.name
            ),
        );
    }
    if let Some((function, reason)) = first_refused_read(unit) {
        return refuse(
            Some(&system.agent_id),
            &system.name,
            Refused::Function {
                call_id: &unit.call_id,
                function,
            },
            format!(
                "{function} on system {} is not allowed by this agent: {reason}",
                system.name
            ),
        );
    }
    if let Some(late) = deadline.and_then(|d| Instant::now().checked_duration_since(d)) {
        return Outcome::Failed {
            error: RfcError::new(
                ErrorGroup::Expired,
                "EXPIRED",
                format!(
                    "the unit's deadline passed {} ms before it could start",
                    late.as_millis()
                ),
            ),
        };
    }
    if let Err(reason) = progress.starting().await {
        return Outcome::Failed {
            error: RfcError::new(
                ErrorGroup::ExternalRuntimeFailure,
                "JOURNAL_UNAVAILABLE",
                format!(
                    "the agent's journal could not record the unit's start, so SAP was not called: {reason}"
                ),
            ),
        };
    }
    let mut session = match system.sap.connect().await {
        Ok(session) => session,
        Err(error) => {
            warn!(error = %error, "SAP connect failed");
            return Outcome::Failed { error };
        }
    };
    if unit.commit == CommitPolicy::CommitOnSuccess && system.sap.sends_as_trfc(&unit.calls) {
        return run_trfc(session.as_mut(), unit).await;
    }
    let mut outcome = run_calls(session.as_mut(), unit, progress).await;
    filter_function_search(&system.allowlist, unit, &mut outcome);
    outcome
}

/// Sends a committing unit as one tRFC unit (the system's `trfc_functions` name
/// every call): SAP runs it and commits, at most once per call id, and returns no
/// call results. A unit that failed on the way may or may not have committed.
async fn run_trfc(session: &mut dyn SapConnection, unit: &Unit) -> Outcome {
    let span =
        info_span!("call", call_id = %unit.call_id, system = %unit.system, function = "tRFC");
    match session
        .submit_transaction(&unit.call_id, &unit.calls)
        .instrument(span)
        .await
    {
        Ok(()) => Outcome::Completed {
            results: unit
                .calls
                .iter()
                .map(|_| CallResult::Ok(Parameters::new()))
                .collect(),
            transaction: Some(TransactionOutcome {
                committed: true,
                failed_call: None,
                reason: Some(
                    "sent as one tRFC unit: SAP runs it at most once per call id and returns no \
                     call results"
                        .into(),
                ),
                result: None,
            }),
        },
        Err(error) if error.group == ErrorGroup::CommunicationFailure => {
            warn!(error = %error, "tRFC unit: the connection failed during the submission");
            Outcome::Failed {
                error: RfcError::new(
                    ErrorGroup::OutcomeUnknown,
                    "OUTCOME_UNKNOWN",
                    format!(
                        "call {} was sent as a tRFC unit and the connection failed before SAP \
                         answered ({}); SAP may or may not have committed it",
                        unit.call_id, error.message
                    ),
                ),
            }
        }
        Err(error) => Outcome::Failed { error },
    }
}

/// Logs a refusal ([`Refusal::log`]) and answers it `NOT_ALLOWED` with `message`.
fn refuse(agent_id: Option<&str>, system: &str, refused: Refused<'_>, message: String) -> Outcome {
    Refusal {
        agent_id,
        system,
        refused,
        reason: &message,
    }
    .log();
    not_allowed(message)
}

fn not_allowed(message: String) -> Outcome {
    Outcome::Failed {
        error: RfcError::new(ErrorGroup::NotAllowed, "NOT_ALLOWED", message),
    }
}

/// Runs a unit's calls in order on `session` and applies its commit policy, as
/// [`execute`] does once its checks passed: no allowlist, deadline or journal.
/// For harnesses that stand in for an agent (the relay's tests) and must behave
/// as the agent does against SAP.
///
/// Not cancel-safe: dropping the future mid-call leaves the call's effect unknown.
pub async fn execute_on_session(session: &mut dyn SapConnection, unit: &Unit) -> Outcome {
    run_calls(session, unit, &()).await
}

/// Why a transaction stops before its end.
struct Stop {
    index: usize,
    reason: String,
}

async fn run_calls(
    session: &mut dyn SapConnection,
    unit: &Unit,
    progress: &impl UnitProgress,
) -> Outcome {
    let transactional = unit.commit != CommitPolicy::None;
    let mut results = Vec::with_capacity(unit.calls.len());
    let mut stop = None;
    for (index, call) in unit.calls.iter().enumerate() {
        let span = info_span!("call", call_id = %unit.call_id, system = %unit.system,
            function = %call.function, index);
        let result = session
            .call(&call.function, &call.parameters)
            .instrument(span)
            .await;
        let (result, error_message) = match result {
            Ok(output) => {
                let error_message = transactional.then(|| return_error(&output)).flatten();
                if let Some(reason) = &error_message {
                    debug!(index, reason = %reason, "RETURN holds an error");
                }
                (CallResult::Ok(output), error_message)
            }
            Err(error) => {
                debug!(index, error = %error, "call failed");
                let reason = error.message.clone();
                (CallResult::Error(error), Some(reason))
            }
        };
        if let Some(reason) = error_message {
            results.push(result);
            stop = Some(Stop { index, reason });
            break;
        }
        let journaled = if unit.commit == CommitPolicy::CommitOnSuccess {
            progress.call_done(index, &result).await
        } else {
            Ok(())
        };
        if let Err(e) = journaled {
            warn!(index, error = %e, "cannot journal a call result; rolling back");
            results.push(result);
            stop = Some(Stop {
                index,
                reason: format!(
                    "the agent's journal could not record this call's result, so the unit was rolled back: {e}"
                ),
            });
            break;
        }
        results.push(result);
    }
    let transaction = match unit.commit {
        CommitPolicy::None => None,
        CommitPolicy::CommitOnSuccess if stop.is_none() => Some(commit(session, unit).await),
        CommitPolicy::CommitOnSuccess | CommitPolicy::Rollback => {
            Some(rollback(session, unit, stop).await)
        }
    };
    Outcome::Completed {
        results,
        transaction,
    }
}

async fn commit(session: &mut dyn SapConnection, unit: &Unit) -> TransactionOutcome {
    let span = info_span!("call", call_id = %unit.call_id, system = %unit.system,
        function = COMMIT_FUNCTION);
    match session
        .commit_with_tid(&unit.call_id)
        .instrument(span)
        .await
    {
        Ok(output) => {
            let reason = return_error(&output);
            TransactionOutcome {
                committed: reason.is_none(),
                failed_call: None,
                reason,
                result: Some(CallResult::Ok(output)),
            }
        }
        Err(error) => TransactionOutcome {
            committed: false,
            failed_call: None,
            reason: Some(error.message.clone()),
            result: Some(CallResult::Error(error)),
        },
    }
}

async fn rollback(
    session: &mut dyn SapConnection,
    unit: &Unit,
    stop: Option<Stop>,
) -> TransactionOutcome {
    let span = info_span!("call", call_id = %unit.call_id, system = %unit.system,
        function = ROLLBACK_FUNCTION);
    let result = match session
        .call(ROLLBACK_FUNCTION, &Parameters::new())
        .instrument(span)
        .await
    {
        Ok(output) => CallResult::Ok(output),
        Err(error) => {
            warn!(error = %error, "rollback failed; the session is dropped, which discards the changes");
            CallResult::Error(error)
        }
    };
    let (failed_call, reason) = match stop {
        Some(Stop { index, reason }) => (Some(index), Some(reason)),
        None => (
            None,
            Some("dry run: the unit's policy is rollback".to_owned()),
        ),
    };
    TransactionOutcome {
        committed: false,
        failed_call,
        reason,
        result: Some(result),
    }
}

/// The message of the first `RETURN` entry that says the BAPI failed
/// ([`sapbridge_sap::bapi_return`]), if any.
pub(crate) fn return_error(output: &Parameters) -> Option<String> {
    let entry = bapi_return::first_error(output)?;
    let message = entry
        .get("MESSAGE")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim();
    Some(if message.is_empty() {
        let kind = entry
            .get("TYPE")
            .and_then(Value::as_str)
            .unwrap_or_default();
        format!("RETURN holds a message of TYPE {kind}")
    } else {
        message.to_owned()
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod hostile_reads;
