//! Test-only builders of units, shared by the unit tests of the allowlist,
//! read-only matching, executor and redelivery.

use sapbridge_proto::{CommitPolicy, FunctionCall, Parameters, Unit};

/// A unit `call_id`/`attempt` for system `SIM`, without a deadline, calling
/// `functions` with no parameters.
pub(crate) fn unit_with(
    call_id: &str,
    attempt: u32,
    functions: &[&str],
    commit: CommitPolicy,
) -> Unit {
    Unit {
        call_id: call_id.into(),
        attempt,
        system: "SIM".into(),
        deadline_ms: None,
        in_doubt: false,
        calls: functions
            .iter()
            .map(|f| FunctionCall {
                function: (*f).into(),
                parameters: Parameters::new(),
            })
            .collect(),
        commit,
        traceparent: None,
    }
}

/// [`unit_with`] as first delivery of call `c_1`.
pub(crate) fn unit(functions: &[&str], commit: CommitPolicy) -> Unit {
    unit_with("c_1", 1, functions, commit)
}
