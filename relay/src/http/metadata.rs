//! `GET /v1/systems/{system}/functions/{function}`: the function's interface for
//! dynamic forms (see `actions/metadata/`), answered from the metadata cache when
//! it holds the interface, else fetched from SAP by the action.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use http::HeaderMap;

use super::ApiError;
use super::actions::{answer, run};
use super::request::{Caller, fingerprint, function_name, path};
use crate::actions::{Answer, metadata};
use crate::state::RelayState;

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
    let agents = || state.agents.versions_serving(&system);
    if let Some(cached) = state.metadata.get(&system, &function, agents) {
        return Ok(answer(Answer::Interface(cached)));
    }
    let fingerprint = fingerprint(
        &headers,
        &[
            b"function.interface",
            system.as_bytes(),
            function.as_bytes(),
        ],
    );
    let unit = metadata::interface(function);
    run(&state, &caller, &headers, system, unit, fingerprint).await
}
