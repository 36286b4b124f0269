//! The table-read routes (see `actions/tables/` for the read itself):
//! `GET /v1/systems/{system}/tables/{table}?fields=A,B&where=…&limit=&offset=` and
//! `POST /v1/systems/{system}/tables/{table}/query` with
//! `{"fields": [...], "where": "…", "limit": n, "offset": n}`.
//!
//! Both become one [`ReadRequest`]; the idempotency fingerprint covers the system
//! and the read's first step.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::HeaderMap;

use super::ApiError;
use super::actions::{run, step_error};
use super::request::{Caller, body_bytes, fingerprint, path};
use crate::actions::tables::{self, ReadRequest, ReadStep};
use crate::state::RelayState;

/// The query of `GET /v1/systems/{system}/tables/{table}`, for the document.
struct ReadQuery;

impl utoipa::IntoParams for ReadQuery {
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
        vec![
            param(
                "fields",
                "Comma-separated field names; none = all fields.",
                text(),
            )
            .example(Some(serde_json::json!("KUNNR,NAME1")))
            .build(),
            param("where", "Open SQL condition.", text())
                .example(Some(serde_json::json!("LAND1 EQ 'DE'")))
                .build(),
            param("limit", "Rows answered.", tables::limit_schema().into()).build(),
            param("offset", "Rows skipped.", tables::offset_schema().into()).build(),
        ]
    }
}

/// `GET /v1/systems/{system}/tables/{table}`.
#[utoipa::path(
    get,
    path = "/v1/systems/{system}/tables/{table}",
    operation_id = "readTable",
    tag = "tables",
    summary = "Read table rows (RFC_READ_TABLE)",
    description = "Rows typed by SAP's field catalogue; the where clause is split into 72-character `OPTIONS` lines; field lists wider than 512 characters are read in parts and stitched. `TABLE_NOT_AVAILABLE` → `404`, `FIELD_NOT_VALID` / `OPTION_NOT_VALID` → `400`, `NOT_AUTHORIZED` → `403`. Other query parameters are `400`.",
    params(
        super::request::TablePath,
        super::request::QueueHeaders,
        ReadQuery,
        super::request::CallbackHeader
    ),
    responses(
        (status = 200, description = "The rows, typed per field.", body = tables::ReadAnswer),
        super::openapi::QueuedCallAnswers,
    ),
)]
pub(crate) async fn get_table(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    route: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (system, table) = path(route)?;
    caller.check_system(&state, &system)?;
    let Query(query) = query.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let mut request = ReadRequest::default();
    for (key, value) in query {
        let number = |v: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| ApiError::BadRequest(format!("{key}: {v:?} is not a number")))
        };
        match key.as_str() {
            "fields" => request.fields = value.split(',').map(str::to_owned).collect(),
            "where" => request.clause = value,
            "limit" => request.limit = Some(number(&value)?),
            "offset" => request.offset = Some(number(&value)?),
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "{key}: unknown query parameter (fields, where, limit, offset)"
                )));
            }
        }
    }
    let step = tables::read_step(&table, request).map_err(step_error)?;
    read(&state, &caller, &headers, system, step).await
}

/// `POST /v1/systems/{system}/tables/{table}/query`.
#[utoipa::path(
    post,
    path = "/v1/systems/{system}/tables/{table}/query",
    operation_id = "queryTable",
    tag = "tables",
    summary = "Read table rows with the query as JSON",
    description = "As `GET /v1/systems/{system}/tables/{table}`, with the query in the body (an empty body reads all fields).",
    params(
        super::request::TablePath,
        super::request::QueueHeaders,
        super::request::CallbackHeader
    ),
    request_body(
        // Optional (an empty body reads all fields): see `openapi::OPTIONAL_BODIES`.
        content = ReadRequest,
        example = json!({"fields": ["KUNNR", "ORT01"], "where": "LAND1 EQ 'DE'", "limit": 50})
    ),
    responses(
        (status = 200, description = "The rows, typed per field.", body = tables::ReadAnswer),
        super::openapi::QueuedCallAnswers,
    ),
)]
pub(crate) async fn query_table(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    route: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (system, table) = path(route)?;
    caller.check_system(&state, &system)?;
    let body = body_bytes(body, &state.settings)?;
    let request: ReadRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReadRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("invalid query body: {e}")))?
    };
    let step = tables::read_step(&table, request).map_err(step_error)?;
    read(&state, &caller, &headers, system, step).await
}

/// `GET /v1/systems/{system}/tables/{table}/fields`: the table's fields and a
/// JSON schema of its rows (see `actions/tables/layout.rs`).
#[utoipa::path(
    get,
    path = "/v1/systems/{system}/tables/{table}/fields",
    operation_id = "getTableFields",
    tag = "tables",
    summary = "A table's fields and the JSON schema of its rows (for dynamic forms)",
    description = "One `DDIF_FIELDINFO_GET` through the agent (which must allow it): the table's fields, and a JSON schema of a row as table reads answer it (integers and floating point as numbers, dates as `YYYY-MM-DD` strings, `x-ms-summary` from SAP's field texts) for Power Automate's `x-ms-dynamic-schema`. An unknown table is `404` (`/problems/table-not-found`).",
    params(super::request::TablePath, super::request::QueueHeaders),
    responses(
        (status = 200, description = "The fields and the row schema.", body = tables::layout::LayoutBody),
        super::openapi::QueuedCallAnswers,
    ),
)]
pub(crate) async fn get_fields(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    route: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (system, table) = path(route)?;
    caller.check_system(&state, &system)?;
    let unit = tables::layout::layout(&table).map_err(step_error)?;
    let fingerprint = fingerprint(
        &headers,
        &[b"table.layout", system.as_bytes(), table.as_bytes()],
    );
    run(&state, &caller, &headers, system, unit, fingerprint).await
}

async fn read(
    state: &RelayState,
    caller: &Caller,
    headers: &HeaderMap,
    system: String,
    step: ReadStep,
) -> Result<Response, ApiError> {
    let request = serde_json::to_vec(&step).unwrap_or_default();
    let fingerprint = fingerprint(headers, &[b"table.read", system.as_bytes(), &request]);
    run(
        state,
        caller,
        headers,
        system,
        tables::read(step),
        fingerprint,
    )
    .await
}
