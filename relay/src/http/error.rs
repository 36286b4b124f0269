//! [`ApiError`], the one error type of the HTTP API, and [`Problem`], its RFC 9457
//! `application/problem+json` body.
//!
//! 4xx answers say what is wrong; a 5xx answer caused by the relay itself says
//! nothing and logs the cause instead.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};

use crate::calls::CallError;

/// The media type of every error body.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem: `type`, `title`, `status`, `detail`, the call id when there
/// is a call, and any extra members.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    /// The HTTP status.
    pub(crate) status: StatusCode,
    /// The problem type's slug; the body says `/problems/{slug}`.
    pub(crate) slug: &'static str,
    /// A short, fixed summary of the problem type.
    pub(crate) title: &'static str,
    /// What happened in this case.
    pub(crate) detail: String,
    /// The call the problem belongs to, if any.
    pub(crate) call_id: Option<String>,
    /// Further members (`rfc_error`, `committed`, `results`, ...).
    pub(crate) extra: Map<String, Value>,
}

impl Problem {
    /// A problem without call id and extra members.
    pub(crate) fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            slug,
            title,
            detail: detail.into(),
            call_id: None,
            extra: Map::new(),
        }
    }

    /// The JSON body.
    pub(crate) fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("type".into(), json!(format!("/problems/{}", self.slug)));
        body.insert("title".into(), json!(self.title));
        body.insert("status".into(), json!(self.status.as_u16()));
        body.insert("detail".into(), json!(self.detail));
        if let Some(call_id) = &self.call_id {
            body.insert("call_id".into(), json!(call_id));
        }
        for (key, value) in &self.extra {
            body.insert(key.clone(), value.clone());
        }
        Value::Object(body)
    }
}

/// The schema of [`Problem::body`]: the members it always writes, the call id, and
/// the extra members the relay's problems carry (`rfc_error`; for transactions
/// `committed`, `failed_call`, `failed_function`, `return`, `results`, `commit`;
/// for business errors `return`).
impl utoipa::PartialSchema for Problem {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, SchemaType, Type};
        use utoipa::openapi::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Ref};
        let typed = |t: Type| ObjectBuilder::new().schema_type(t);
        let or_null =
            |t: Type| ObjectBuilder::new().schema_type(SchemaType::Array(vec![t, Type::Null]));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "RFC 9457 problem details (`application/problem+json`). Further members \
                 depending on the problem: `rfc_error`; for transactions `committed`, \
                 `failed_call`, `failed_function`, `return`, `results`, `commit`; for \
                 business errors `return`.",
            ))
            .required("type")
            .required("title")
            .required("status")
            .required("detail")
            .property(
                "type",
                typed(Type::String)
                    .description(Some("`/problems/{slug}`."))
                    .format(Some(utoipa::openapi::SchemaFormat::Custom(
                        "uri-reference".into(),
                    )))
                    .examples(["/problems/abap-application-failure"]),
            )
            .property("title", typed(Type::String))
            .property(
                "status",
                typed(Type::Integer).minimum(Some(400)).maximum(Some(599)),
            )
            .property("detail", typed(Type::String))
            .property(
                "call_id",
                typed(Type::String).description(Some("The call the problem belongs to.")),
            )
            .property("rfc_error", Ref::from_schema_name("RfcError"))
            .property(
                "committed",
                typed(Type::Boolean)
                    .description(Some("Transactions: always `false` in a problem.")),
            )
            .property(
                "failed_call",
                or_null(Type::Integer)
                    .minimum(Some(0))
                    .description(Some("Index of the failing call.")),
            )
            .property("failed_function", or_null(Type::String))
            .property(
                "return",
                OneOfBuilder::new()
                    .description(Some("The `RETURN` row(s) with TYPE `E`/`A`."))
                    .item(typed(Type::Object))
                    .item(ArrayBuilder::new().items(typed(Type::Object))),
            )
            .property(
                "results",
                ArrayBuilder::new().items(Ref::from_schema_name("UnitCallResult")),
            )
            .property(
                "commit",
                or_null(Type::Object).description(Some("`BAPI_TRANSACTION_COMMIT`'s result.")),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .into()
    }
}

impl utoipa::ToSchema for Problem {}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response.extensions_mut().insert(super::audit::ProblemNote {
            slug: self.slug,
            call_id: self.call_id,
        });
        response
    }
}

/// Everything the HTTP API answers with an error.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// No key, or a key the relay does not know (401 + `WWW-Authenticate`).
    Unauthorized,
    /// The key's scope does not cover the system (403).
    Forbidden(String),
    /// No agent token names the system (404).
    UnknownSystem(String),
    /// No such call, or not visible to this key (404).
    CallNotFound(String),
    /// No such route (404).
    RouteNotFound,
    /// The route does not allow the method (405).
    MethodNotAllowed,
    /// The request is malformed (400).
    BadRequest(String),
    /// The body is larger than the limit, given in bytes (413).
    PayloadTooLarge(usize),
    /// The call is past the point where the request applies (409).
    Conflict {
        /// The call.
        call_id: String,
        /// Why.
        detail: String,
    },
    /// An idempotency key was reused with a different request (422).
    IdempotencyMismatch,
    /// The relay is shutting down (503 + `Retry-After`).
    ShuttingDown,
    /// A problem built from a call's outcome.
    Call(Box<Problem>),
    /// The queue store has no room (503 + `Retry-After`); the text is logged.
    StoreFull(String),
    /// The key's rate limit: a token comes after this long (429 + `Retry-After`).
    RateLimited(std::time::Duration),
    /// The key has this many calls queued or running, its cap (429 +
    /// `Retry-After`).
    TooManyInFlight(u32),
    /// The system has this many calls queued, the cap (503 + `Retry-After`).
    QueueFull {
        /// The system.
        system: String,
        /// The cap.
        limit: u64,
    },
    /// A fault of the relay (500); the text is logged, never returned.
    Internal(String),
}

impl ApiError {
    fn problem(self) -> Problem {
        use StatusCode as S;
        match self {
            Self::Unauthorized => Problem::new(
                S::UNAUTHORIZED,
                "unauthorized",
                "Missing or invalid API key",
                "send the API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`",
            ),
            Self::Forbidden(detail) => {
                Problem::new(S::FORBIDDEN, "forbidden", "Out of scope", detail)
            }
            Self::UnknownSystem(system) => Problem::new(
                S::NOT_FOUND,
                "unknown-system",
                "Unknown system",
                format!("no system named {system:?} is configured"),
            ),
            Self::CallNotFound(call_id) => {
                let mut p = Problem::new(
                    S::NOT_FOUND,
                    "call-not-found",
                    "Call not found",
                    "no such call",
                );
                p.call_id = Some(call_id);
                p
            }
            Self::RouteNotFound => {
                Problem::new(S::NOT_FOUND, "not-found", "Not found", "no such resource")
            }
            Self::MethodNotAllowed => Problem::new(
                S::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "this resource does not support the method",
            ),
            Self::BadRequest(detail) => {
                Problem::new(S::BAD_REQUEST, "invalid-request", "Invalid request", detail)
            }
            Self::PayloadTooLarge(limit) => Problem::new(
                S::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Request body too large",
                format!("the body exceeds the limit of {limit} bytes"),
            ),
            Self::Conflict { call_id, detail } => {
                let mut p = Problem::new(S::CONFLICT, "conflict", "Conflict", detail);
                p.call_id = Some(call_id);
                p
            }
            Self::IdempotencyMismatch => Problem::new(
                S::UNPROCESSABLE_ENTITY,
                "idempotency-key-mismatch",
                "Idempotency key reused",
                "the Idempotency-Key was used before with a different request",
            ),
            Self::ShuttingDown => Problem::new(
                S::SERVICE_UNAVAILABLE,
                "shutting-down",
                "Relay shutting down",
                "the relay is shutting down; retry shortly",
            ),
            Self::Call(problem) => *problem,
            Self::StoreFull(cause) => {
                tracing::warn!(%cause, "refused: the queue store is full");
                Problem::new(
                    S::SERVICE_UNAVAILABLE,
                    "store-full",
                    "Queue store full",
                    "the relay's queue store has no room for new calls (disk full or \
                     [queue] max_size_mib reached); nothing was stored; retry later",
                )
            }
            Self::RateLimited(wait) => Problem::new(
                S::TOO_MANY_REQUESTS,
                "rate-limited",
                "Rate limit reached",
                format!(
                    "the API key's rate limit is reached; the next request is accepted in {} ms",
                    wait.as_millis()
                ),
            ),
            Self::TooManyInFlight(cap) => Problem::new(
                S::TOO_MANY_REQUESTS,
                "too-many-in-flight",
                "Too many calls in flight",
                format!(
                    "the API key has {cap} calls queued or running (its max_in_flight); \
                     retry once some have finished"
                ),
            ),
            Self::QueueFull { system, limit } => Problem::new(
                S::SERVICE_UNAVAILABLE,
                "queue-full",
                "Queue full",
                format!(
                    "system {system:?} has {limit} calls waiting for an agent, the most the \
                     relay queues; retry later"
                ),
            ),
            Self::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                Problem::new(
                    S::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal error",
                    "the relay failed; the cause is in its log",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let extra_header = match &self {
            Self::Unauthorized => {
                Some((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")))
            }
            Self::ShuttingDown => Some((header::RETRY_AFTER, HeaderValue::from_static("5"))),
            Self::StoreFull(_) => Some((header::RETRY_AFTER, HeaderValue::from_static("30"))),
            Self::RateLimited(wait) => {
                // Whole seconds, rounded up: a client waiting that long finds a token.
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Some((header::RETRY_AFTER, HeaderValue::from(secs.max(1))))
            }
            Self::TooManyInFlight(_) | Self::QueueFull { .. } => {
                Some((header::RETRY_AFTER, HeaderValue::from_static("5")))
            }
            _ => None,
        };
        let mut response = self.problem().into_response();
        if let Some((name, value)) = extra_header {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

impl From<crate::queue::QueueError> for ApiError {
    fn from(error: crate::queue::QueueError) -> Self {
        match error {
            crate::queue::QueueError::Full(_) => Self::StoreFull(error.to_string()),
            error => Self::Internal(error.to_string()),
        }
    }
}

impl From<CallError> for ApiError {
    fn from(error: CallError) -> Self {
        match error {
            CallError::NotFound(call_id) => Self::CallNotFound(call_id),
            CallError::NotCancellable(record) => Self::Conflict {
                detail: format!(
                    "the call is {} and can no longer be cancelled",
                    record.state.as_str()
                ),
                call_id: record.id,
            },
            CallError::KeyMismatch => Self::IdempotencyMismatch,
            CallError::TooManyInFlight(cap) => Self::TooManyInFlight(cap),
            CallError::QueueFull { system, limit } => Self::QueueFull { system, limit },
            CallError::Store(error) => error.into(),
            error @ CallError::Vanished(_) => Self::Internal(error.to_string()),
        }
    }
}

/// The 404 answer for unknown routes.
pub(crate) async fn route_not_found() -> ApiError {
    ApiError::RouteNotFound
}

/// The 405 answer for known routes with another method.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
