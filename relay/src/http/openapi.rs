//! `GET /openapi.json`: the relay's OpenAPI 3.1 document, generated from the
//! code's own types with [`utoipa`] and served as built once ([`document_text`]).
//!
//! # Where the document comes from
//! - Component schemas of request and response bodies: `#[derive(ToSchema)]` on
//!   the types the handlers (de)serialize (doc comments become descriptions,
//!   `#[serde(…)]` names, defaults and `deny_unknown_fields` are honoured), or a
//!   hand-written `ToSchema` impl next to the type where the schema follows a table
//!   the validation uses (the customer fields' `maxLength`s come from
//!   `actions::customers::fields`).
//!   One serializing struct that writes several shapes (`render::CallBody`) is
//!   described by schema-only structs, one per shape, which a unit test holds
//!   to what it writes (so are `Customer` and `CustomerList`, whose answers the
//!   customer actions build as maps); a schema of references by name is a
//!   marker type (`render::FinalAnswer`).
//! - Operations: `#[utoipa::path(…)]` on the handler, listed in [`ApiDoc`]'s
//!   `paths(…)`. The request headers of queued calls are `request::QueueHeaders`
//!   and `request::CallbackHeader` (hand-written `IntoParams`: utoipa drops a
//!   parameter's description and example when its schema is `schema_with`); a
//!   body that may be left out is listed in [`OPTIONAL_BODIES`].
//! - The pass-through operations (one handler for every method on three paths):
//!   `passthrough::PassthroughDoc`, a modifier that writes them from one
//!   description (bodies are the backend's own, so no schema describes them).
//! - The document's frame, which no type holds: `openapi-info.json` next to this
//!   file (`info`, `servers`, `security`, `tags`, the security schemes), which
//!   [`build`] lays the generated paths and components over. It holds no path and
//!   no schema; nothing may be in both (a unit test checks it).
//!
//! The checked-in `openapi.json` beside this file is the generated artefact, for
//! readers and for `deploy/power-automate/generate.py`; `relay/tests/openapi.rs`
//! fails when it differs from what the relay serves, and
//! `UPDATE_OPENAPI=1 cargo test -p sapbridge-relay --test openapi` rewrites it.
//! The same test checks that every route of the router is documented with its
//! methods, that every documented operation is routed, and that every `$ref`
//! resolves. The document needs no API key.
//!
//! # How to document a new route
//! 1. Derive `utoipa::ToSchema` on its body types (a `///` on each field; limits as
//!    `#[schema(max_length = …)]`, with a unit test comparing them to the consts
//!    the validation uses when they live elsewhere).
//! 2. Put `#[utoipa::path(get, path = "/v1/…", tag = "…", operation_id = "…",
//!    params(…), request_body = …, responses(…))]` on the handler; problem answers
//!    are `(status = 400, response = super::openapi::BadRequest)` (see
//!    [`problem_responses!`]), the security is the document's default (an API key)
//!    unless the route says `security(())`.
//! 3. Add the handler to `paths(…)` and its types to `components(schemas(…))` of
//!    [`ApiDoc`], the route to `ROUTES` in `relay/tests/openapi.rs`, then run
//!    `UPDATE_OPENAPI=1 cargo test -p sapbridge-relay --test openapi` and
//!    `python3 deploy/power-automate/generate.py`, and commit both files.

use std::sync::OnceLock;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use serde_json::{Map, Value};
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};
use utoipa::{OpenApi, PartialSchema, ToSchema};

use super::passthrough::PassthroughDoc;

/// The document's frame: info, servers, security, tags, security schemes (see
/// the module docs).
const HAND_WRITTEN: &str = include_str!("openapi-info.json");

/// The generated part of the document.
#[derive(OpenApi)]
#[openapi(
    modifiers(&OptionalBodies, &PassthroughDoc),
    paths(
        super::ops::list_systems,
        super::calls::list_calls,
        super::metadata::list_functions,
        super::metadata::get_interface,
        super::tables::get_table,
        super::tables::query_table,
        super::tables::get_fields,
        super::calls::call_function,
        super::transactions::post_transaction,
        super::customers::create,
        super::customers::search,
        super::customers::get,
        super::customers::change,
        super::calls::get_call,
        super::calls::cancel_call,
        super::agent_connect::connect,
        super::audit::list,
        super::ops::healthz,
        super::ops::readyz,
        super::ops::metrics,
        document,
        super::webhooks::subscribe,
        super::webhooks::list_subscriptions,
        super::webhooks::unsubscribe,
        super::webhooks::list_deliveries,
        super::webhooks::get_delivery,
        super::webhooks::redeliver,
        super::admin::list_keys,
        super::admin::post_key,
        super::admin::delete_key,
        super::agent_tokens::list_tokens,
        super::agent_tokens::post_token,
        super::agent_tokens::delete_token,
    ),
    components(
        schemas(
            super::ops::Status,
            super::ops::Systems,
            super::Problem,
            super::admin::NewKey,
            super::admin::KeyItem,
            super::agent_tokens::NewToken,
            super::agent_tokens::TokenItem,
            super::webhooks::NewSubscription,
            super::transactions::TransactionRequest,
            Parameters,
            CallStatus,
            super::render::CallPending,
            super::render::FunctionCallAnswer,
            super::render::TransactionAnswer,
            super::render::UnitCallResult,
            sapbridge_proto::RfcError,
            crate::webhook_sender::Payload,
            crate::actions::customers::CustomerAnswer,
            crate::actions::customers::CustomerListAnswer,
            crate::actions::customers::CustomerCreate,
            crate::actions::customers::CustomerPatch,
            crate::actions::tables::ReadRequest,
            crate::actions::tables::ReadAnswer,
        ),
        responses(
            Accepted,
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
            Gone,
            PayloadTooLarge,
            Unprocessable,
            InternalError,
            BadGateway,
            ServiceUnavailable,
            GatewayTimeout,
            TooManyRequests,
        ),
    )
)]
pub(crate) struct ApiDoc;

/// The operations (path, method) whose request body may be left out: utoipa
/// makes a body optional only for an `Option<T>` content, whose schema then
/// takes `null`, which these bodies do not.
const OPTIONAL_BODIES: [(&str, utoipa::openapi::HttpMethod); 2] = [
    (
        "/v1/systems/{system}/functions/{function}",
        utoipa::openapi::HttpMethod::Post,
    ),
    (
        "/v1/systems/{system}/tables/{table}/query",
        utoipa::openapi::HttpMethod::Post,
    ),
];

/// Marks the request bodies of [`OPTIONAL_BODIES`] as not required.
struct OptionalBodies;

impl utoipa::Modify for OptionalBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{HttpMethod, Required};
        for (path, method) in OPTIONAL_BODIES {
            let Some(item) = openapi.paths.paths.get_mut(path) else {
                continue;
            };
            let operation = match method {
                HttpMethod::Post => item.post.as_mut(),
                HttpMethod::Put => item.put.as_mut(),
                HttpMethod::Patch => item.patch.as_mut(),
                _ => None,
            };
            if let Some(body) = operation.and_then(|o| o.request_body.as_mut()) {
                body.required = Some(Required::False);
            }
        }
    }
}

/// Function module parameters: free-form, their names and types are the
/// function's (see `GET /v1/systems/{system}/functions/{function}`).
pub(crate) struct Parameters;

impl PartialSchema for Parameters {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .description(Some(
                "Function module parameters by name, as SAP's own connectors (PyRFC / \
                 node-rfc) have them: a structure is an object, a table an array of \
                 objects; CHAR, NUMC, DATS (`YYYYMMDD`), TIMS (`HHMMSS`) and packed \
                 numbers are strings, INT is a number.",
            ))
            .additional_properties(Some(
                utoipa::openapi::schema::AdditionalProperties::FreeForm(true),
            ))
            .into()
    }
}

impl ToSchema for Parameters {}

/// The states of a call by their API names (`CallState::as_str`, the `status`
/// filter of `GET /v1/calls`).
pub(crate) struct CallStatus;

/// The names [`CallStatus`] lists.
const CALL_STATUSES: [&str; 6] = [
    "queued",
    "running",
    "succeeded",
    "failed",
    "expired",
    "cancelled",
];

impl PartialSchema for CallStatus {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(CALL_STATUSES))
            .into()
    }
}

impl ToSchema for CallStatus {}

/// `components/responses` for problem answers: a marker type per response, named as
/// the component, for `responses((status = 400, response = BadRequest))`.
macro_rules! problem_responses {
    ($(
        $(#[$doc:meta])*
        $name:ident => $description:literal
        $(, example = $example:expr)?
        $(, $header:literal = $value:expr)*;
    )*) => {$(
        $(#[$doc])*
        pub(crate) struct $name;

        impl<'r> utoipa::ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<utoipa::openapi::Response>) {
                let response = ResponseBuilder::new().description($description).content(
                    super::error::PROBLEM_JSON,
                    ContentBuilder::new()
                        .schema(Some(utoipa::openapi::Ref::from_schema_name("Problem")))
                        $(.example(Some($example)))?
                        .build(),
                );
                $(let response = response.header($header, $value);)*
                (stringify!($name), response.build().into())
            }
        }
    )*};
}

/// A `Retry-After` response header.
fn retry_after() -> utoipa::openapi::header::Header {
    utoipa::openapi::header::HeaderBuilder::new()
        .description(Some("Seconds to wait before the next poll or retry."))
        .schema(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::Type::Integer)
                .minimum(Some(0)),
        )
        .build()
}

/// `202` for a call not done within `Prefer: wait`: the call so far
/// (`CallPending`), where to poll it and when.
pub(crate) struct Accepted;

impl<'r> utoipa::ToResponse<'r> for Accepted {
    fn response() -> (&'r str, RefOr<utoipa::openapi::Response>) {
        let header = |description: &str, schema: utoipa::openapi::ObjectBuilder| {
            utoipa::openapi::header::HeaderBuilder::new()
                .description(Some(description))
                .schema(schema)
                .build()
        };
        let location = header(
            "Where to poll the call: `/v1/calls/{id}`, or an absolute URL ending so when \
             the relay is configured with `public_url`, `trusted_proxies` or \
             `absolute_locations`.",
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::Type::String)
                .examples(["/v1/calls/c_01J…"]),
        );
        let response = ResponseBuilder::new()
            .description(
                "Not done within the wait (or `Prefer: respond-async`): poll `Location` \
                 (`GET /v1/calls/{id}`) after `Retry-After` seconds until the answer is no \
                 longer `202`. Power Automate and Logic Apps do this by themselves.",
            )
            .header("Location", location)
            .header("Retry-After", retry_after())
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("CallPending")))
                    .example(Some(serde_json::json!({
                        "id": "c_01J…",
                        "status": "queued",
                        "system": "SIM",
                        "function": "STFC_CONNECTION",
                        "attempts": 0,
                        "submitted_at": "2025-01-02T10:00:00.000Z"
                    })))
                    .build(),
            );
        ("Accepted", response.build().into())
    }
}

/// The `WWW-Authenticate` header of a `401`.
fn www_authenticate() -> utoipa::openapi::header::Header {
    utoipa::openapi::header::HeaderBuilder::new()
        .description(Some("`Bearer`."))
        .schema(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::Type::String)
                .enum_values(Some(["Bearer"])),
        )
        .build()
}

/// The answers every queued-call route gives besides its own success: `202` (still
/// running) and the problems of submitting, queueing and running a call. A route
/// lists it in `responses(…)` after its own answers.
pub(crate) struct QueuedCallAnswers;

impl utoipa::IntoResponses for QueuedCallAnswers {
    fn responses() -> std::collections::BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        [
            ("202", "Accepted"),
            ("400", "BadRequest"),
            ("401", "Unauthorized"),
            ("403", "Forbidden"),
            ("404", "NotFound"),
            ("413", "PayloadTooLarge"),
            ("422", "Unprocessable"),
            ("429", "TooManyRequests"),
            ("500", "InternalError"),
            ("502", "BadGateway"),
            ("503", "ServiceUnavailable"),
            ("504", "GatewayTimeout"),
        ]
        .into_iter()
        .map(|(status, name)| {
            (
                status.to_owned(),
                RefOr::Ref(utoipa::openapi::Ref::from_response_name(name)),
            )
        })
        .collect()
    }
}

problem_responses! {
    /// `400`.
    BadRequest => "Malformed JSON, wrong types, unknown parameter or field, a value longer than its SAP field, a bad header (`/problems/invalid-request`); SAP rejected the parameters (`/problems/invalid-parameters`).";
    /// `401` (with `WWW-Authenticate: Bearer`).
    Unauthorized => "Missing or unknown API key.", "WWW-Authenticate" = www_authenticate();
    /// `403`.
    Forbidden => "The key's scope does not cover the system (`/problems/forbidden`), or the agent's allowlist does not allow the function, table or path (`/problems/not-allowed`), or SAP refused the user (`/problems/not-authorized`).";
    /// `404`.
    NotFound => "Unknown system (`/problems/unknown-system`), call, customer, table or function; unknown route (`/problems/not-found`).";
    /// `409`.
    Conflict => "The call can no longer be cancelled: an agent took it, or it is final.";
    /// `410`.
    Gone => "The call was cancelled before an agent took it (`/problems/cancelled`).";
    /// `413`.
    PayloadTooLarge => "The body is over the relay's limit.";
    /// `422`.
    Unprocessable => "ABAP exception (`/problems/abap-application-failure`), a `RETURN` with TYPE E/A (`/problems/business-error`), a rolled-back transaction (`/problems/transaction-rolled-back`), or an `Idempotency-Key` reused with another body (`/problems/idempotency-key-mismatch`).",
        example = serde_json::json!({
            "type": "/problems/business-error",
            "title": "SAP business error",
            "status": 422,
            "detail": "Customer 0000001000 is not created for sales area 9999 10 00",
            "call_id": "c_01J…",
            "rfc_error": {
                "group": "ABAP_APPLICATION_FAILURE",
                "key": "RETURN",
                "message": "Customer 0000001000 is not created for sales area 9999 10 00",
                "msg_class": "F2",
                "msg_type": "E",
                "msg_number": "156",
                "msg_v1": "0000001000",
                "msg_v2": "9999",
                "msg_v3": "10",
                "msg_v4": "00"
            }
        });
    /// `500`.
    InternalError => "A fault of the relay; the cause is in its log, not in the body.";
    /// `502`.
    BadGateway => "SAP unreachable, logon failed, ABAP runtime error, or the outcome is unknown after an agent crash (`/problems/outcome-unknown`).";
    /// `503`.
    ServiceUnavailable => "The relay is shutting down, its queue store is full (`/problems/store-full`), the system has `[queue] max_depth_per_system` calls queued (`/problems/queue-full`), or (pass-through) no agent serves the system or all are busy; retry after `Retry-After`.", "Retry-After" = retry_after();
    /// `504`.
    GatewayTimeout => "No agent took the call before its queue TTL (`/problems/expired`); pass-through: no response head in time.";
    /// `429`.
    TooManyRequests => "A limit of the API key: its rate (`/problems/rate-limited`) or its calls queued or running (`/problems/too-many-in-flight`). Retry after `Retry-After` seconds.", "Retry-After" = retry_after();
}

/// The document: the frame of `openapi-info.json` with the generated paths and
/// components laid over it, as pretty JSON ending in a newline.
fn build() -> String {
    let mut document: Value =
        serde_json::from_str(HAND_WRITTEN).expect("openapi-info.json is JSON (a unit test checks)");
    let generated = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    overlay(&mut document, &generated);
    let mut text = serde_json::to_string_pretty(&document).expect("JSON serializes");
    text.push('\n');
    text
}

/// Lays the generated operations (per path and method) and components (per
/// section and name) over the frame.
fn overlay(document: &mut Value, generated: &Value) {
    for (path, item) in generated["paths"].as_object().into_iter().flatten() {
        let target = object_at(document, &["paths", path]);
        for (key, value) in item.as_object().into_iter().flatten() {
            target.insert(key.clone(), value.clone());
        }
    }
    for (section, items) in generated["components"].as_object().into_iter().flatten() {
        let target = object_at(document, &["components", section]);
        for (name, value) in items.as_object().into_iter().flatten() {
            target.insert(name.clone(), value.clone());
        }
    }
}

/// The object at `path` in `value`, created (and anything else replaced) as needed.
fn object_at<'a>(value: &'a mut Value, path: &[&str]) -> &'a mut Map<String, Value> {
    let mut at = value;
    for key in path {
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        at = at
            .as_object_mut()
            .expect("an object")
            .entry((*key).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !at.is_object() {
        *at = Value::Object(Map::new());
    }
    at.as_object_mut().expect("an object")
}

/// The document, built on first use.
pub(crate) fn document_text() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(build)
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    summary = "This document",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of the relay.", body = Object)),
)]
pub(crate) async fn document() -> Response {
    let mut response = document_text().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented function and table names are what `actions::sap_name` takes.
    #[test]
    fn the_function_and_table_name_limits_are_the_relays() {
        use super::super::request::{FunctionPath, TablePath};
        use utoipa::IntoParams;
        let max = crate::actions::MAX_SAP_NAME;
        let mut params = FunctionPath::into_params(|| None);
        params.extend(TablePath::into_params(|| None));
        for name in ["function", "table"] {
            let param = params.iter().find(|p| p.name == name).expect(name);
            let schema = serde_json::to_value(&param.schema).expect("schema");
            assert_eq!(schema["maxLength"], max, "{name}");
            assert_eq!(
                schema["pattern"],
                format!("^[A-Za-z0-9_/]{{1,{max}}}$"),
                "{name}"
            );
        }
        assert!(crate::actions::sap_name(&"Z".repeat(max)).is_some());
        assert!(crate::actions::sap_name(&"Z".repeat(max + 1)).is_none());
    }

    /// [`CALL_STATUSES`] are the names the relay gives and takes.
    #[test]
    fn the_call_statuses_are_the_relays() {
        use crate::queue::{CallState, StateFilter};
        for name in CALL_STATUSES {
            assert!(StateFilter::parse(name).is_some(), "{name}");
        }
        let states = [
            CallState::Queued,
            CallState::Succeeded,
            CallState::Failed,
            CallState::Expired,
            CallState::Cancelled,
        ];
        for state in states {
            assert!(CALL_STATUSES.contains(&state.as_str()), "{state:?}");
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_json() {
        let document: Value = serde_json::from_str(document_text()).expect("JSON");
        assert!(
            document["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1"))
        );
        assert!(document["paths"].as_object().is_some_and(|p| !p.is_empty()));
    }

    /// Every body of [`OPTIONAL_BODIES`] is in the generated part, not required.
    #[test]
    fn the_optional_bodies_are_optional() {
        let generated = serde_json::to_value(ApiDoc::openapi()).expect("serializes");
        for (path, method) in OPTIONAL_BODIES {
            let method = serde_json::to_value(method).expect("serializes");
            let method = method.as_str().expect("a name");
            let body = &generated["paths"][path][method]["requestBody"];
            assert!(body.is_object(), "{method} {path} has no body");
            assert_eq!(body["required"], false, "{method} {path}");
        }
    }

    /// An item comes from the code or from `openapi-info.json`, never from both
    /// (else the hand-written one would silently be overwritten).
    #[test]
    fn nothing_is_both_generated_and_hand_written() {
        let hand: Value = serde_json::from_str(HAND_WRITTEN).expect("openapi-info.json is JSON");
        let generated = serde_json::to_value(ApiDoc::openapi()).expect("serializes");
        let mut both = Vec::new();
        for (path, item) in generated["paths"].as_object().into_iter().flatten() {
            for key in item.as_object().into_iter().flatten().map(|(k, _)| k) {
                if hand["paths"][path].get(key).is_some() {
                    both.push(format!("paths {path} {key}"));
                }
            }
        }
        for (section, items) in generated["components"].as_object().into_iter().flatten() {
            for name in items.as_object().into_iter().flatten().map(|(k, _)| k) {
                if hand["components"][section].get(name).is_some() {
                    both.push(format!("components {section} {name}"));
                }
            }
        }
        assert!(
            both.is_empty(),
            "in openapi-info.json and generated: {both:?}"
        );
    }
}
