//! Function metadata: `GET /v1/systems/{system}/functions/{function}` answers the
//! function's interface for dynamic forms —
//! `{"function", "parameters": [{"name", "direction", "type", "abap_type",
//! "type_name", "length", "decimals", "optional", "default", "description",
//! "fields"}], "exceptions"}` — and the relay keeps it (see `cache.rs`) to reject
//! malformed calls of that function with `400` before they are queued (see
//! `validate.rs` and [`precheck`]).
//!
//! The chain: `RFC_GET_FUNCTION_INTERFACE` (with `NONE_UNICODE_LENGTH = 'X'`),
//! then — since it needs the first answer — a second unit with one
//! `DDIF_FIELDINFO_GET` (`ALL_TYPES = 'X'`) per structure or table type the
//! interface references. Fields are resolved one level deep; a structure SAP
//! cannot describe gets `"fields": null`. `FU_NOT_FOUND` is `404`.
//!
//! `search.rs`: `GET /v1/systems/{system}/functions?search=` lists the function
//! modules the agent's allowlist lets through (`RFC_FUNCTION_SEARCH`).

mod cache;
mod interface;
pub(crate) mod search;
mod validate;

use std::sync::Arc;

use sapbridge_proto::{CallResult, CommitPolicy, FunctionCall, Parameters, RfcError};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub(crate) use cache::MetadataCache;
pub(crate) use interface::{
    FieldInfo, FunctionInterface, InterfaceBody, SchemaSide, fields_from_dfies, to_json, to_schema,
};
pub(crate) use search::{SearchStep, search_done};

use super::outcome::{call_params, completed};
use super::{ActionError, ActionUnit, Answer, Next, Step};
use crate::queue::CallRecord;

const GET_INTERFACE: &str = "RFC_GET_FUNCTION_INTERFACE";
const FIELD_INFO: &str = "DDIF_FIELDINFO_GET";

/// Where a metadata request is in its chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum InterfaceStage {
    /// Asking for the parameters.
    Interface,
    /// Asking for the fields of these structures (one call each, in order).
    Fields {
        /// The interface without fields.
        interface: FunctionInterface,
        /// The structures asked for.
        structures: Vec<String>,
    },
}

/// A metadata request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InterfaceStep {
    /// The function module.
    pub(crate) function: String,
    /// Where the chain is.
    pub(crate) stage: InterfaceStage,
}

/// The first unit of a metadata request: `RFC_GET_FUNCTION_INTERFACE` of
/// `function` (a checked function module name).
pub(crate) fn interface(function: String) -> ActionUnit {
    let mut parameters = Parameters::new();
    parameters.insert("FUNCNAME".into(), json!(function));
    parameters.insert("NONE_UNICODE_LENGTH".into(), json!("X"));
    ActionUnit {
        step: Step::FunctionInterface(InterfaceStep {
            function,
            stage: InterfaceStage::Interface,
        }),
        calls: vec![FunctionCall {
            function: GET_INTERFACE.into(),
            parameters,
        }],
        commit: CommitPolicy::None,
    }
}

/// Checks a function call's parameters against the interface `cache` holds for
/// it, if any; `agents` lists the agents serving `system` now (see
/// [`MetadataCache::get`]).
///
/// # Errors
/// [`ActionError::BadRequest`] naming what is wrong; never when no interface is
/// cached.
pub(crate) fn precheck(
    cache: &MetadataCache,
    system: &str,
    function: &str,
    params: &Parameters,
    agents: impl FnOnce() -> Vec<String>,
) -> Result<(), ActionError> {
    match cache.get(system, function, agents) {
        Some(interface) => validate::check(&interface, params),
        None => Ok(()),
    }
}

/// Reads a final step of a metadata request: the interface (which the chain
/// keeps in the metadata cache), or the unit asking for its structures' fields.
pub(crate) fn interface_done(
    step: &InterfaceStep,
    record: &CallRecord,
) -> Result<Next, ActionError> {
    let (results, _) = completed(record)?;
    let interface = match &step.stage {
        InterfaceStage::Interface => {
            if let Some(CallResult::Error(e)) = results.first() {
                return Err(interface_error(&step.function, e));
            }
            let interface = interface::from_params(&step.function, call_params(results, 0)?);
            let mut structures: Vec<String> = interface
                .parameters
                .iter()
                .filter_map(|p| p.structure().map(str::to_owned))
                .collect();
            structures.sort();
            structures.dedup();
            if !structures.is_empty() {
                let calls = structures
                    .iter()
                    .map(|name| {
                        let mut parameters = Parameters::new();
                        parameters.insert("TABNAME".into(), json!(name));
                        parameters.insert("ALL_TYPES".into(), json!("X"));
                        FunctionCall {
                            function: FIELD_INFO.into(),
                            parameters,
                        }
                    })
                    .collect();
                return Ok(Next::Then(ActionUnit {
                    step: Step::FunctionInterface(InterfaceStep {
                        function: step.function.clone(),
                        stage: InterfaceStage::Fields {
                            interface,
                            structures,
                        },
                    }),
                    calls,
                    commit: CommitPolicy::None,
                }));
            }
            interface
        }
        InterfaceStage::Fields {
            interface,
            structures,
        } => {
            let mut interface = interface.clone();
            for param in &mut interface.parameters {
                let Some(index) = param
                    .structure()
                    .and_then(|s| structures.iter().position(|x| x == s))
                else {
                    continue;
                };
                // A failed call stops the unit: later structures have no result.
                if let Some(CallResult::Ok(answer)) = results.get(index) {
                    param.fields = Some(interface::fields_from_dfies(answer));
                }
            }
            interface
        }
    };
    Ok(Next::Done(Answer::Interface(Arc::new(interface))))
}

/// The error for an ABAP exception of `RFC_GET_FUNCTION_INTERFACE`.
fn interface_error(function: &str, error: &RfcError) -> ActionError {
    if error.key == "FU_NOT_FOUND" {
        return ActionError::FunctionNotFound {
            function: function.to_owned(),
            error: Box::new(error.clone()),
        };
    }
    ActionError::Rfc(Box::new(error.clone()))
}
