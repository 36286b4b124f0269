//! The work the relay hands to an agent (a [`Unit`] of one or more function calls)
//! and what comes back ([`Outcome`]).

use serde::{Deserialize, Serialize};

use crate::{Parameters, RfcError};

/// One function module call: its name and its parameters by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// Function module name, upper case (`BAPI_CUSTOMER_GETDETAIL2`).
    pub function: String,
    /// IMPORTING, CHANGING and TABLES parameters (PyRFC conventions).
    #[serde(default)]
    pub parameters: Parameters,
}

/// What the agent does after the calls of a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitPolicy {
    /// A plain call: nothing is committed or rolled back by the agent; the calls'
    /// own behaviour stands (the session ends after the unit, which drops
    /// uncommitted BAPI changes as SAP does).
    None,
    /// A BAPI transaction: if every call succeeded and no `RETURN` holds TYPE `E` or
    /// `A`, run `BAPI_TRANSACTION_COMMIT` with `WAIT = 'X'`, otherwise
    /// `BAPI_TRANSACTION_ROLLBACK`; in the same SAP session.
    CommitOnSuccess,
    /// Run the calls, then always `BAPI_TRANSACTION_ROLLBACK` (a dry run).
    Rollback,
}

impl CommitPolicy {
    /// Every policy, in declaration order.
    pub const ALL: [Self; 3] = [Self::None, Self::CommitOnSuccess, Self::Rollback];

    /// The policy's code: its name on the wire (`none`, `commit_on_success`,
    /// `rollback`), which is also how the relay's queue and the agent's journal
    /// store it.
    pub const fn code(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::CommitOnSuccess => "commit_on_success",
            Self::Rollback => "rollback",
        }
    }

    /// The policy a [`CommitPolicy::code`] names; `None` for any other text.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|policy| policy.code() == code)
    }
}

/// A unit of work: one or more calls that run in order in one SAP session on one
/// agent. A single function call is a unit of one with [`CommitPolicy::None`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unit {
    /// The call id; also the SAP TID for exactly-once execution.
    pub call_id: String,
    /// 1 on first delivery, +1 on every redelivery.
    pub attempt: u32,
    /// The system (SAP connection) the unit runs against.
    pub system: String,
    /// How long the agent may take to start the unit, in milliseconds counted from
    /// the moment it receives the unit (relative, so that clock drift between the
    /// relay and the agent does not matter); past it the agent must not start the
    /// unit (it still answers from its journal if the unit ran before). `None`: no
    /// deadline. The relay sends the earlier of the call's queue TTL and its lease.
    #[serde(default)]
    pub deadline_ms: Option<u64>,
    /// The unit may have started on another agent (an earlier attempt was leased
    /// to another agent installation, whose journal is the only record of it). An
    /// agent whose own journal does not know the call id must then treat it as in
    /// doubt: run it again only if it is read-only or SAP confirms its TID did not
    /// commit, else answer `OUTCOME_UNKNOWN`. Never set on a first attempt.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_doubt: bool,
    /// The calls, in order.
    pub calls: Vec<FunctionCall>,
    /// What happens after the calls.
    pub commit: CommitPolicy,
    /// The W3C `traceparent` of the call (the relay's span of the client's trace),
    /// for the agent's logs. Untrusted: the agent parses it again and ignores what
    /// does not parse. Older agents ignore the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// The result of one call within a unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallResult {
    /// The call returned: its EXPORTING, CHANGING and TABLES parameters.
    Ok(Parameters),
    /// The call failed.
    Error(RfcError),
}

/// How a transaction ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactionOutcome {
    /// Whether `BAPI_TRANSACTION_COMMIT` ran and succeeded.
    pub committed: bool,
    /// Index of the call that failed or returned an E/A message, if any.
    pub failed_call: Option<usize>,
    /// Why the unit was rolled back, if it was.
    pub reason: Option<String>,
    /// The result of the commit or rollback BAPI itself.
    pub result: Option<CallResult>,
}

/// What the agent reports for a unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// The unit ran: one result per call that was executed (calls after a failed
    /// one in a transaction are not executed), and the transaction's end if the
    /// commit policy was not [`CommitPolicy::None`].
    Completed {
        /// Per-call results, in order.
        results: Vec<CallResult>,
        /// How the transaction ended.
        transaction: Option<TransactionOutcome>,
    },
    /// The unit did not run, or the agent cannot say whether it ran: the allowlist
    /// denied it, the SAP system was unreachable, the deadline had passed, or the
    /// outcome is unknown.
    Failed {
        /// Why.
        error: RfcError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The code is the wire name, so a stored code and a frame never disagree.
    #[test]
    fn commit_policy_codes_are_the_wire_names() {
        for policy in CommitPolicy::ALL {
            let wire = serde_json::to_value(policy).unwrap();
            assert_eq!(wire, policy.code(), "{policy:?}");
            assert_eq!(CommitPolicy::from_code(policy.code()), Some(policy));
        }
        assert_eq!(CommitPolicy::from_code("Rollback"), None);
        assert_eq!(CommitPolicy::from_code(""), None);
    }
}
