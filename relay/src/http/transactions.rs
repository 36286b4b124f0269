//! Units of work: `POST /v1/systems/{system}/transactions` runs several BAPI calls in
//! one SAP session on one agent, then commits (`"commit": true`, the default) or
//! always rolls back (`"commit": false`, a dry run).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::response::Response;
use http::HeaderMap;
use sapbridge_proto::{CommitPolicy, FunctionCall, Parameters};
use serde::Deserialize;

use super::ApiError;
use super::calls::submit;
use super::request::{Caller, UnitRequest, body_bytes, fingerprint, function_name, path};
use crate::queue::CallKind;
use crate::state::RelayState;

/// The most calls one transaction may hold.
const MAX_CALLS: usize = 100;

/// The body of `POST /v1/systems/{system}/transactions`: BAPI calls run as one
/// unit of work.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TransactionRequest {
    /// The calls, run in order in one SAP session.
    #[schema(min_items = 1, max_items = 100, inline)]
    calls: Vec<CallRequest>,
    /// `true`: commit when everything succeeded; `false`: dry run, always rolled back.
    #[serde(default = "commit_by_default")]
    #[schema(default = true)]
    commit: bool,
}

fn commit_by_default() -> bool {
    true
}

/// One call of a unit of work.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CallRequest {
    /// The function module.
    #[schema(max_length = 30)]
    function: String,
    /// Its parameters (none when left out).
    #[serde(default)]
    #[schema(value_type = super::openapi::Parameters)]
    parameters: Parameters,
}

/// `POST /v1/systems/{system}/transactions`.
#[utoipa::path(
    post,
    path = "/v1/systems/{system}/transactions",
    operation_id = "runTransaction",
    tag = "calls",
    summary = "Run BAPI calls as one unit of work (one SAP session, then commit or rollback)",
    description = "The calls run in order in one SAP session on one agent. If every call succeeds and no `RETURN` holds TYPE `E` or `A`, `BAPI_TRANSACTION_COMMIT` (WAIT = X) runs, otherwise `BAPI_TRANSACTION_ROLLBACK` and the answer is a `422` problem with `committed: false`, `failed_call`, `failed_function`, `return` and every call's result. `commit: false` is a dry run (always rolled back).",
    params(
        super::request::SystemPath,
        super::request::QueueHeaders,
        super::request::CallbackHeader
    ),
    request_body(
        content = TransactionRequest,
        example = json!({
            "calls": [{
                "function": "BAPI_CUSTOMER_CREATEFROMDATA1",
                "parameters": {
                    "PI_COMPANYDATA": {
                        "NAME": "Retry GmbH",
                        "CITY": "Walldorf",
                        "COUNTRY": "DE",
                        "LANGU": "E",
                        "CURRENCY": "EUR"
                    },
                    "PI_COPYREFERENCE": {
                        "SALESORG": "1000",
                        "DISTR_CHAN": "10",
                        "DIVISION": "00",
                        "REF_CUSTMR": "0000001000"
                    }
                }
            }],
            "commit": true
        })
    ),
    responses(
        (status = 200, description = "Every call succeeded; committed (or rolled back as asked with `commit: false`).",
            body = super::render::TransactionAnswer),
        super::openapi::QueuedCallAnswers,
    ),
)]
pub(crate) async fn post_transaction(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    route: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let system = path(route)?;
    caller.check_system(&state, &system)?;
    let body = body_bytes(body, &state.settings)?;
    let request: TransactionRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid transaction body: {e}")))?;
    if request.calls.is_empty() || request.calls.len() > MAX_CALLS {
        return Err(ApiError::BadRequest(format!(
            "a transaction needs 1 to {MAX_CALLS} calls"
        )));
    }
    let calls = request
        .calls
        .into_iter()
        .map(|call| {
            Ok(FunctionCall {
                function: function_name(&call.function)?,
                parameters: call.parameters,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let commit = if request.commit {
        CommitPolicy::CommitOnSuccess
    } else {
        CommitPolicy::Rollback
    };
    let unit = UnitRequest {
        fingerprint: fingerprint(&headers, &[b"transaction", system.as_bytes(), &body]),
        system,
        kind: CallKind::Transaction,
        calls,
        commit,
    };
    submit(&state, &caller, &headers, unit).await
}
