//! The customer actions of the scenario "SAP Customer – Create / Update":
//!
//! | route | unit |
//! |---|---|
//! | `POST /v1/systems/{system}/customers` | `BAPI_CUSTOMER_CREATEFROMDATA1`, commit |
//! | `PATCH /v1/systems/{system}/customers/{customer}` | `BAPI_CUSTOMER_CHANGEFROMDATA1` with `…X` flags, commit |
//! | `GET /v1/systems/{system}/customers/{customer}` | `BAPI_CUSTOMER_GETDETAIL2` |
//! | `GET /v1/systems/{system}/customers?name=&city=&country=&limit=` | `BAPI_CUSTOMER_GETLIST` (all numbers), filtered by the relay |
//!
//! Each is one unit of work on one agent, with the usual `Prefer`,
//! `Idempotency-Key` and `202` + `Location` behaviour. Customer numbers in paths
//! may be given with or without leading zeros; answers give the 10-digit form.

mod fields;
mod request;
mod steps;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::HeaderMap;
use sapbridge_proto::{CommitPolicy, FunctionCall, Parameters};
use serde_json::{Value, json};

pub(crate) use steps::{
    ChangeStep, CreateStep, GetStep, SearchStep, change_done, create_done, get_done, search_done,
};

use super::ApiError;
use super::actions::{self, Action};
use super::calls::{UnitRequest, fingerprint, path};
use super::request::{Caller, body_bytes, json_object};
use crate::queue::CallKind;
use crate::state::RelayState;

const CREATE: &str = "BAPI_CUSTOMER_CREATEFROMDATA1";
const CHANGE: &str = "BAPI_CUSTOMER_CHANGEFROMDATA1";
const DETAIL: &str = "BAPI_CUSTOMER_GETDETAIL2";
const LIST: &str = "BAPI_CUSTOMER_GETLIST";

/// A unit of one call of an action.
fn unit(
    system: String,
    action: Action,
    function: &str,
    parameters: Parameters,
    commit: CommitPolicy,
    fingerprint: Option<String>,
) -> UnitRequest {
    UnitRequest {
        system,
        kind: CallKind::Action(action.encode()),
        calls: vec![FunctionCall {
            function: function.to_owned(),
            parameters,
        }],
        commit,
        fingerprint,
    }
}

/// `POST /v1/systems/{system}/customers`.
pub(crate) async fn create(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    route: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let system = path(route)?;
    caller.check_system(&state, &system)?;
    let body = body_bytes(body, &state.settings)?;
    let request = request::create(&json_object(&body)?, &state.customer_defaults)?;
    let sent = request
        .sent
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    let unit = unit(
        system.clone(),
        Action::CustomerCreate(CreateStep { sent }),
        CREATE,
        request.parameters,
        CommitPolicy::CommitOnSuccess,
        fingerprint(&headers, &[b"customer.create", system.as_bytes(), &body]),
    );
    actions::run(&state, &caller, &headers, unit).await
}

/// `PATCH /v1/systems/{system}/customers/{customer}`.
pub(crate) async fn change(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    route: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (system, customer) = path(route)?;
    caller.check_system(&state, &system)?;
    let customer = fields::customer_number(&customer)?;
    let body = body_bytes(body, &state.settings)?;
    let request = request::change(&customer, &json_object(&body)?, &state.customer_defaults)?;
    let unit = unit(
        system.clone(),
        Action::CustomerChange(ChangeStep {
            customer: customer.clone(),
        }),
        CHANGE,
        request.parameters,
        CommitPolicy::CommitOnSuccess,
        fingerprint(
            &headers,
            &[
                b"customer.change",
                system.as_bytes(),
                customer.as_bytes(),
                &body,
            ],
        ),
    );
    actions::run(&state, &caller, &headers, unit).await
}

/// `GET /v1/systems/{system}/customers/{customer}`.
pub(crate) async fn get(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    route: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (system, customer) = path(route)?;
    caller.check_system(&state, &system)?;
    let customer = fields::customer_number(&customer)?;
    let mut parameters = Parameters::new();
    parameters.insert("CUSTOMERNO".into(), json!(customer));
    let unit = unit(
        system.clone(),
        Action::CustomerGet(GetStep {
            customer: customer.clone(),
        }),
        DETAIL,
        parameters,
        CommitPolicy::None,
        fingerprint(
            &headers,
            &[b"customer.get", system.as_bytes(), customer.as_bytes()],
        ),
    );
    actions::run(&state, &caller, &headers, unit).await
}

/// `GET /v1/systems/{system}/customers?name=&city=&country=&limit=`.
pub(crate) async fn search(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    route: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let system = path(route)?;
    caller.check_system(&state, &system)?;
    let Query(query) = query.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let step = request::search(&query)?;
    let mut parameters = Parameters::new();
    parameters.insert(
        "IDRANGE".into(),
        json!([{"SIGN": "I", "OPTION": "CP", "LOW": "*", "HIGH": ""}]),
    );
    parameters.insert("MAXROWS".into(), Value::from(0));
    let mut sorted: Vec<_> = query.iter().collect();
    sorted.sort();
    let key = serde_json::to_vec(&sorted).unwrap_or_default();
    let unit = unit(
        system.clone(),
        Action::CustomerSearch(step),
        LIST,
        parameters,
        CommitPolicy::None,
        fingerprint(&headers, &[b"customer.search", system.as_bytes(), &key]),
    );
    actions::run(&state, &caller, &headers, unit).await
}
