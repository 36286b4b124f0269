//! Function metadata: `GET /v1/systems/{system}/functions/{function}` answers the
//! function's interface for dynamic forms —
//! `{"function", "parameters": [{"name", "direction", "type", "abap_type",
//! "type_name", "length", "decimals", "optional", "default", "description",
//! "fields"}], "exceptions"}` — and the relay keeps it (see `cache.rs`) to reject
//! malformed calls of that function with `400` before they are queued (see
//! `validate.rs`).
//!
//! The chain: `RFC_GET_FUNCTION_INTERFACE` (with `NONE_UNICODE_LENGTH = 'X'`),
//! then — since it needs the first answer — a second unit with one
//! `DDIF_FIELDINFO_GET` (`ALL_TYPES = 'X'`) per structure or table type the
//! interface references. Fields are resolved one level deep; a structure SAP
//! cannot describe gets `"fields": null`. `FU_NOT_FOUND` is `404`.

mod cache;
mod interface;
mod validate;

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use sapbridge_proto::{CallResult, CommitPolicy, FunctionCall, Parameters};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub(crate) use cache::MetadataCache;
pub(crate) use interface::FunctionInterface;

use super::ApiError;
use super::actions::{self, Action, FollowUp, Step, call_params, completed, ok_json, rfc_problem};
use super::calls::{UnitRequest, fingerprint, path};
use super::request::{Caller, function_name};
use crate::queue::{CallKind, CallRecord};
use crate::state::RelayState;

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

/// `GET /v1/systems/{system}/functions/{function}`.
pub(crate) async fn get_interface(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    route: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (system, function) = path(route)?;
    caller.check_system(&state, &system)?;
    let function = function_name(&function)?;
    let agents = || MetadataCache::agent_set(&state.agents, &system);
    if let Some(cached) = state.metadata.get(&system, &function, agents) {
        return Ok(ok_json(interface::to_json(&cached)));
    }
    let mut parameters = Parameters::new();
    parameters.insert("FUNCNAME".into(), json!(function));
    parameters.insert("NONE_UNICODE_LENGTH".into(), json!("X"));
    let unit = UnitRequest {
        fingerprint: fingerprint(
            &headers,
            &[
                b"function.interface",
                system.as_bytes(),
                function.as_bytes(),
            ],
        ),
        system,
        kind: CallKind::Action(
            Action::FunctionInterface(InterfaceStep {
                function,
                stage: InterfaceStage::Interface,
            })
            .encode(),
        ),
        calls: vec![FunctionCall {
            function: GET_INTERFACE.into(),
            parameters,
        }],
        commit: CommitPolicy::None,
    };
    actions::run(&state, &caller, &headers, unit).await
}

/// Checks a function call's parameters against the cached interface, if any.
///
/// # Errors
/// 400 naming what is wrong; never when no interface is cached.
pub(crate) fn precheck(
    state: &RelayState,
    system: &str,
    function: &str,
    params: &Parameters,
) -> Result<(), ApiError> {
    let agents = || MetadataCache::agent_set(&state.agents, system);
    match state.metadata.get(system, function, agents) {
        Some(interface) => validate::check(&interface, params),
        None => Ok(()),
    }
}

/// Renders a final step of a metadata request.
pub(crate) fn interface_done(
    state: &RelayState,
    step: &InterfaceStep,
    record: &CallRecord,
) -> Result<Step, ApiError> {
    let (results, _) = completed(record)?;
    let interface = match &step.stage {
        InterfaceStage::Interface => {
            if let Some(CallResult::Error(e)) = results.first() {
                return Err(interface_problem(&step.function, e));
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
                return Ok(Step::Next(FollowUp {
                    action: Action::FunctionInterface(InterfaceStep {
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
    let body = interface::to_json(&interface);
    let agents = MetadataCache::agent_set(&state.agents, &record.system);
    state.metadata.put(&record.system, interface, agents);
    Ok(Step::Done(ok_json(body)))
}

fn interface_problem(function: &str, error: &sapbridge_proto::RfcError) -> ApiError {
    if error.key == "FU_NOT_FOUND" {
        let ApiError::Call(mut problem) = rfc_problem(error) else {
            return rfc_problem(error);
        };
        problem.status = StatusCode::NOT_FOUND;
        problem.slug = "function-not-found";
        problem.title = "Function not found";
        problem.detail = format!("SAP has no function module {function}");
        return ApiError::Call(problem);
    }
    rfc_problem(error)
}
