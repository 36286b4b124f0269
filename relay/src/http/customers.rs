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

/// The `{system}` and `{customer}` of a customer route, for the document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code, reason = "documentation of the path the handlers read")]
struct CustomerPath {
    /// The SAP system's name as its agents serve it.
    #[param(example = "SIM")]
    system: String,
    /// The customer number, with or without leading zeros (`1000` and `0000001000` are the same customer).
    // Up to 10 characters, as `customers::customer_number` takes.
    #[param(min_length = 1, max_length = 10, example = "0000001000")]
    customer: String,
}

/// The query of `GET /v1/systems/{system}/customers`, for the document.
struct SearchQuery;

impl utoipa::IntoParams for SearchQuery {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::{ObjectBuilder, Required, Type};
        let param = |name: &str, description: &str, schema: ObjectBuilder| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(description))
                .schema(Some(schema))
        };
        let text = || ObjectBuilder::new().schema_type(Type::String);
        let (default, max) = customers::request::SEARCH_LIMIT;
        vec![
            param("name", "Name pattern, `*` wildcards.", text())
                .example(Some(serde_json::json!("beck*")))
                .build(),
            param("city", "City pattern, `*` wildcards.", text()).build(),
            param("country", "Country key pattern (`DE`).", text()).build(),
            param(
                "limit",
                "Most customers answered.",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(max))
                    .default(Some(default.into())),
            )
            .build(),
        ]
    }
}

/// `POST /v1/systems/{system}/customers`.
#[utoipa::path(
    post,
    path = "/v1/systems/{system}/customers",
    operation_id = "createCustomer",
    tag = "customers",
    summary = "SAP Customer – Create",
    description = "One unit: `BAPI_CUSTOMER_CREATEFROMDATA1` (company data + copy reference), then `BAPI_TRANSACTION_COMMIT` if `RETURN` holds no error, else rollback. Missing `reference_customer`, sales area, `language` and `currency` come from the relay's `[customer_defaults]`. `201` with the new 10-digit customer number and `Location`. A `RETURN` error is `422` `/problems/business-error`.",
    params(
        super::request::SystemPath,
        super::request::QueueHeaders,
        super::request::CallbackHeader
    ),
    request_body(
        content = customers::CustomerCreate,
        example = json!({
            "name": "Contoso GmbH",
            "street": "Dietmar-Hopp-Allee 16",
            "postal_code": "69190",
            "city": "Walldorf",
            "country": "DE"
        })
    ),
    responses(
        (status = 201, description = "Created and committed.", body = customers::CustomerAnswer,
            headers(("Location" = String, description = "The new customer: `/v1/systems/{system}/customers/{customer}`.")),
            example = json!({
                "customer": "0000100001",
                "name": "Contoso GmbH",
                "street": "Dietmar-Hopp-Allee 16",
                "postal_code": "69190",
                "city": "Walldorf",
                "country": "DE",
                "region": "",
                "currency": "EUR",
                "email": "",
                "phone": "",
                "language": "EN",
                "reference_customer": "0000001000",
                "sales_org": "1000",
                "distribution_channel": "10",
                "division": "00"
            })),
        super::openapi::QueuedCallAnswers,
    ),
)]
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
#[utoipa::path(
    patch,
    path = "/v1/systems/{system}/customers/{customer}",
    operation_id = "updateCustomer",
    tag = "customers",
    summary = "SAP Customer – Update",
    description = "One unit: `BAPI_CUSTOMER_CHANGEFROMDATA1` with the `PI_COMPANYDATAX` flag set for exactly the fields given (`null` clears a field; `name`, `city`, `country` cannot be cleared), then commit. `200` with the customer as SAP holds it afterwards; an unknown customer is `404` `/problems/customer-not-found`.",
    params(
        CustomerPath,
        super::request::QueueHeaders,
        super::request::CallbackHeader
    ),
    request_body(
        content = customers::CustomerPatch,
        example = json!({"city": "Heidelberg", "phone": "+49 6221 1234"})
    ),
    responses(
        (status = 200, description = "Changed and committed.", body = customers::CustomerAnswer),
        super::openapi::QueuedCallAnswers,
    ),
)]
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
#[utoipa::path(
    get,
    path = "/v1/systems/{system}/customers/{customer}",
    operation_id = "getCustomer",
    tag = "customers",
    summary = "SAP Customer – Get",
    description = "One unit: `BAPI_CUSTOMER_GETDETAIL2`. An unknown customer is `404` `/problems/customer-not-found`.",
    params(
        CustomerPath,
        super::request::QueueHeaders,
        super::request::CallbackHeader
    ),
    responses(
        (status = 200, description = "The customer.", body = customers::CustomerAnswer),
        super::openapi::QueuedCallAnswers,
    ),
)]
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
#[utoipa::path(
    get,
    path = "/v1/systems/{system}/customers",
    operation_id = "searchCustomers",
    tag = "customers",
    summary = "SAP Customer – Search",
    description = "One unit: `BAPI_CUSTOMER_GETLIST` over all customer numbers; the relay filters by `name`, `city` and `country` (case-insensitive; `*` is a wildcard, without one the whole value must match). Nothing found is an empty list. Other query parameters are `400`.",
    params(
        super::request::SystemPath,
        super::request::QueueHeaders,
        SearchQuery,
        super::request::CallbackHeader
    ),
    responses(
        (status = 200, description = "The matching customers.", body = customers::CustomerListAnswer),
        super::openapi::QueuedCallAnswers,
    ),
)]
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

#[cfg(test)]
mod tests {
    use utoipa::IntoParams;

    use super::*;

    /// The documented customer number is what `customer_number` takes, and the
    /// search limit what the search takes.
    #[test]
    fn the_documented_limits_are_the_relays() {
        let params = CustomerPath::into_params(|| None);
        let customer = params
            .iter()
            .find(|p| p.name == "customer")
            .expect("customer");
        let schema = serde_json::to_value(&customer.schema).expect("schema");
        assert_eq!(schema["maxLength"], 10);
        assert!(customers::customer_number(&"7".repeat(10)).is_ok());
        assert!(customers::customer_number(&"7".repeat(11)).is_err());
        let params = SearchQuery::into_params(|| None);
        let limit = params.iter().find(|p| p.name == "limit").expect("limit");
        let schema = serde_json::to_value(&limit.schema).expect("schema");
        let (default, max) = customers::request::SEARCH_LIMIT;
        assert_eq!(schema["maximum"], max);
        assert_eq!(schema["default"], default);
    }
}
