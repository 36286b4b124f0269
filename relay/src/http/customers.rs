//! The customer routes (see `actions/customers/` for what each does):
//! `POST /v1/systems/{system}/customers`, `GET …/customers?name=&city=&country=&limit=`,
//! `GET …/customers/{customer}` and `PATCH …/customers/{customer}`.
//!
//! Each checks the key and the system, turns the request into the action's first
//! unit and runs it (see [`super::actions`]). The idempotency fingerprint covers
//! the action, the system, the customer and the body (or the sorted query).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::HeaderMap;

use super::ApiError;
use super::actions::{run, step_error};
use super::request::{Caller, body_bytes, fingerprint, json_object, path};
use crate::actions::customers;
use crate::state::RelayState;

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
    let unit =
        customers::create(&json_object(&body)?, &state.customer_defaults).map_err(step_error)?;
    let fingerprint = fingerprint(&headers, &[b"customer.create", system.as_bytes(), &body]);
    run(&state, &caller, &headers, system, unit, fingerprint).await
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
    let customer = customers::customer_number(&customer).map_err(step_error)?;
    let body = body_bytes(body, &state.settings)?;
    let unit = customers::change(&customer, &json_object(&body)?, &state.customer_defaults)
        .map_err(step_error)?;
    let fingerprint = fingerprint(
        &headers,
        &[
            b"customer.change",
            system.as_bytes(),
            customer.as_bytes(),
            &body,
        ],
    );
    run(&state, &caller, &headers, system, unit, fingerprint).await
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
    let customer = customers::customer_number(&customer).map_err(step_error)?;
    let fingerprint = fingerprint(
        &headers,
        &[b"customer.get", system.as_bytes(), customer.as_bytes()],
    );
    let unit = customers::get(&customer);
    run(&state, &caller, &headers, system, unit, fingerprint).await
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
    let unit = customers::search(&query).map_err(step_error)?;
    let mut sorted: Vec<_> = query.iter().collect();
    sorted.sort();
    let key = serde_json::to_vec(&sorted).unwrap_or_default();
    let fingerprint = fingerprint(&headers, &[b"customer.search", system.as_bytes(), &key]);
    run(&state, &caller, &headers, system, unit, fingerprint).await
}
