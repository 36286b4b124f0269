//! What to do with a delivered unit, given what the journal knows of its call id —
//! the rules that make a call id run **at most once**.
//!
//! | journal says | the agent |
//! |---|---|
//! | nothing, and the relay marks the unit **in doubt** (an earlier attempt went to another agent, whose journal alone knows whether it started) | the in-doubt rules below, as if this journal had seen it start |
//! | nothing | runs the unit — unless it is a redelivery (attempt > 1) of a `CommitOnSuccess` unit whose TID SAP already reports committed (this journal was lost): then it reports it committed, without call results |
//! | an outcome (acknowledged or not) | sends the journaled outcome again; SAP is not called |
//! | started, no outcome (**in doubt**: the agent died mid-unit), every call read-only | runs the unit again |
//! | in doubt, `CommitOnSuccess`, sent as one tRFC unit (the system's `trfc_functions`) | runs it again: SAP runs a TID at most once, so the resubmission commits it if the first did not |
//! | in doubt, `CommitOnSuccess`, SAP says the TID committed | reports it committed, with the call results journaled before the commit |
//! | in doubt, `CommitOnSuccess`, SAP says the TID did not commit | runs the unit again (SAP dropped the dead session's LUW) |
//! | in doubt, anything else (no TID record, SAP unreachable, no commit policy) | `OUTCOME_UNKNOWN`: never a second execution |
//! | a row it cannot read | `OUTCOME_UNKNOWN` (`JOURNAL_UNREADABLE`) |
//!
//! The TID question relies on the dead session being gone from SAP by the time the
//! unit is redelivered (the relay re-queues it only after the agent's socket died
//! or its lease ran out and, for a restart, the old process is gone), or on SAP
//! committing a TID at most once (the tRFC record: a second commit of the same TID
//! changes nothing).

use sapbridge_proto::{
    CallResult, CommitPolicy, ErrorGroup, Outcome, RfcError, TransactionOutcome, Unit,
};
use tracing::{error, info, warn};

use crate::journal::Journal;
use crate::systems::ServedSystem;

/// The decision for one delivered unit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Plan {
    /// Run it (new, or in doubt and safe to run again).
    Run,
    /// It ran before: send this journaled outcome again.
    Resend(Outcome),
    /// Do not run it: this is its outcome (journal it, then send it).
    Answer(Outcome),
}

/// Decides what to do with `unit`. `read_only` says whether the unit is read-only
/// under the current configuration (both then and now must say so to re-run).
pub(crate) async fn plan(
    unit: &Unit,
    journal: &Journal,
    system: Option<&ServedSystem>,
    read_only: bool,
) -> Plan {
    let entry = match journal.lookup(&unit.call_id).await {
        Ok(None) if unit.in_doubt => {
            let doubt = Doubt {
                read_only,
                commit: unit.commit,
                results: Vec::new(),
                why: Doubt::ELSEWHERE,
            };
            return in_doubt(unit, doubt, system, read_only).await;
        }
        Ok(None) => return unknown_redelivery(unit, system).await,
        Ok(Some(entry)) => entry,
        Err(e) => {
            error!(error = %e, "cannot read the journal for a delivered unit; not running it");
            return Plan::Answer(outcome_unknown(
                "JOURNAL_UNREADABLE",
                &unit.call_id,
                &format!("the agent's journal cannot be read for it ({e})"),
            ));
        }
    };
    if let Some(outcome) = entry.outcome {
        info!(
            acked = entry.acked,
            "unit already ran; sending its journaled outcome, SAP is not called"
        );
        return Plan::Resend(outcome);
    }
    let doubt = Doubt {
        read_only: entry.header.read_only,
        commit: entry.header.commit,
        results: entry.results,
        why: Doubt::STOPPED,
    };
    in_doubt(unit, doubt, system, read_only).await
}

/// What is known of a unit that may or may not have run.
struct Doubt {
    /// Whether it was read-only when it (may have) started.
    read_only: bool,
    /// Its commit policy.
    commit: CommitPolicy,
    /// The call results journaled before it stopped.
    results: Vec<CallResult>,
    /// Why it is in doubt, for the outcome's message.
    why: &'static str,
}

impl Doubt {
    /// This agent stopped while the unit ran.
    const STOPPED: &'static str = "it was in flight when the agent stopped";
    /// The relay says it may have started on another agent.
    const ELSEWHERE: &'static str =
        "it may have started on another agent serving the system (the relay handed it out before)";
}

/// A unit this journal has never seen. A first delivery runs. A redelivered
/// committing unit may have run on another agent serving the system: if SAP says
/// its TID committed, it is not run again.
async fn unknown_redelivery(unit: &Unit, system: Option<&ServedSystem>) -> Plan {
    let (true, Some(system)) = (
        unit.attempt > 1 && unit.commit == CommitPolicy::CommitOnSuccess,
        system,
    ) else {
        return Plan::Run;
    };
    match system.sap.tid_committed(&unit.call_id).await {
        Ok(Some(true)) => {
            warn!("redelivered unit unknown to this journal, but SAP says its TID committed");
            Plan::Answer(committed(
                &unit.call_id,
                Vec::new(),
                "it was redelivered and SAP confirms its TID committed (it ran on another \
                 agent, or before this agent's journal was lost); its call results are not \
                 known here",
            ))
        }
        _ => Plan::Run,
    }
}

async fn in_doubt(
    unit: &Unit,
    doubt: Doubt,
    system: Option<&ServedSystem>,
    read_only: bool,
) -> Plan {
    let why = doubt.why;
    if doubt.read_only && read_only {
        warn!(why, "unit in doubt; it only reads, so it runs again");
        return Plan::Run;
    }
    if let (CommitPolicy::CommitOnSuccess, CommitPolicy::CommitOnSuccess, Some(system)) =
        (doubt.commit, unit.commit, system)
        && system.sap.sends_as_trfc(&unit.calls)
    {
        warn!(
            why,
            "unit in doubt; it goes as one tRFC unit whose TID SAP runs at most once, so it is submitted again"
        );
        return Plan::Run;
    }
    if doubt.commit != CommitPolicy::CommitOnSuccess {
        warn!(
            why,
            "unit in doubt and not read-only; reporting OUTCOME_UNKNOWN"
        );
        return Plan::Answer(outcome_unknown(
            "OUTCOME_UNKNOWN",
            &unit.call_id,
            &format!("{why}, and it changes data without a commit whose TID SAP could confirm"),
        ));
    }
    let Some(system) = system else {
        return Plan::Answer(outcome_unknown(
            "OUTCOME_UNKNOWN",
            &unit.call_id,
            &format!(
                "{why}, and system {} is no longer served to ask",
                unit.system
            ),
        ));
    };
    match system.sap.tid_committed(&unit.call_id).await {
        Ok(Some(true)) => {
            warn!(why, "unit in doubt; SAP confirms its TID committed");
            Plan::Answer(committed(
                &unit.call_id,
                doubt.results,
                &format!(
                    "{why}, and SAP confirms its TID committed; the results are those \
                     journaled here before the commit (none if it ran elsewhere), the \
                     commit BAPI's own result was not recorded"
                ),
            ))
        }
        Ok(Some(false)) => {
            warn!(
                why,
                "unit in doubt; SAP says its TID never committed, so it runs again"
            );
            Plan::Run
        }
        Ok(None) => {
            warn!(
                why,
                "unit in doubt on a system that keeps no TIDs; reporting OUTCOME_UNKNOWN"
            );
            Plan::Answer(outcome_unknown(
                "OUTCOME_UNKNOWN",
                &unit.call_id,
                &format!("{why}, and the SAP system keeps no record of committed TIDs to ask"),
            ))
        }
        Err(e) => {
            warn!(why, error = %e, "unit in doubt; asking SAP about its TID failed");
            Plan::Answer(outcome_unknown(
                "OUTCOME_UNKNOWN",
                &unit.call_id,
                &format!("{why}, and asking SAP whether its TID committed failed ({e})"),
            ))
        }
    }
}

/// The outcome of a unit whose commit SAP confirms but this run did not see: the
/// results known (journaled before the commit, or none), and why.
fn committed(call_id: &str, results: Vec<CallResult>, why: &str) -> Outcome {
    Outcome::Completed {
        results,
        transaction: Some(TransactionOutcome {
            committed: true,
            failed_call: None,
            reason: Some(format!("TID {call_id} committed, recovered: {why}")),
            result: None,
        }),
    }
}

/// `Failed{OUTCOME_UNKNOWN}` explaining that the call may or may not have run.
fn outcome_unknown(key: &str, call_id: &str, why: &str) -> Outcome {
    Outcome::Failed {
        error: RfcError::new(
            ErrorGroup::OutcomeUnknown,
            key,
            format!(
                "call {call_id} may or may not have run in SAP: {why}. It is not run again; check in SAP whether its \
                 changes exist before resubmitting it under a new call id"
            ),
        ),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod trfc_tests;
