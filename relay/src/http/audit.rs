//! The audit log at the HTTP edge: [`record_requests`], the layer that records
//! every request of the API (pass-through included) with its caller, outcome and
//! duration, and `GET /v1/audit` ([`list`]), which reads the log back (operator
//! keys only) as a JSON page, JSON lines or CSV.
//!
//! What a request's record holds comes from three places: the layer itself (time,
//! client address, method, path, status, duration), the [`Caller`] extractor (the
//! API key's name, through a [`KeySlot`] the layer puts in the request), and the
//! answer (a [`CallNote`] that call answers carry, a [`ProblemNote`] that every
//! problem carries).
//!
//! Not recorded: `/healthz`, `/readyz`, `/metrics`, `/openapi.json`, an agent's
//! accepted WebSocket upgrade (its calls are recorded as they end), and a
//! pass-through request another replica forwarded here (the replica the client
//! called records it).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::ApiError;
use super::render::rfc3339;
use super::request::Caller;
use crate::queue::{AuditFilter, AuditRecord, CallRecord};
use crate::state::RelayState;

/// The page size when the request names none.
const DEFAULT_LIMIT: usize = 100;
/// The largest page a request may ask for.
const MAX_LIMIT: usize = crate::queue::audit::MAX_PAGE - 1;
/// The header naming the cursor of the next page in JSON lines and CSV answers.
pub(crate) const NEXT_CURSOR_HEADER: &str = "sapbridge-next-cursor";
/// JSON lines.
const NDJSON: &str = "application/x-ndjson";
/// CSV.
const CSV: &str = "text/csv";
/// The columns of a record, in the order of the CSV header and of the JSON
/// members.
const COLUMNS: [&str; 13] = [
    "time",
    "event",
    "key",
    "client",
    "system",
    "method",
    "target",
    "call_id",
    "outcome",
    "status",
    "duration_ms",
    "agent",
    "detail",
];

/// Where the [`Caller`] extractor leaves the API key's name for the request's
/// record.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeySlot(Arc<Mutex<Option<String>>>);

impl KeySlot {
    /// Notes the key that authenticated the request.
    pub(crate) fn set(&self, name: &str) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(name.to_owned());
    }

    fn take(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// What an answer about a call tells its request's record.
#[derive(Debug, Clone)]
pub(crate) struct CallNote {
    call_id: String,
    state: &'static str,
    agent: Option<String>,
    target: String,
}

impl CallNote {
    /// The note of an answer about `record`.
    pub(crate) fn of(record: &CallRecord) -> Self {
        Self {
            call_id: record.id.clone(),
            state: record.state.as_str(),
            agent: record.agent.clone(),
            target: crate::audit::call_target(record),
        }
    }
}

/// What a problem answer tells its request's record: the problem type and call.
#[derive(Debug, Clone)]
pub(crate) struct ProblemNote {
    /// The problem type's slug.
    pub(crate) slug: &'static str,
    /// The call it concerns.
    pub(crate) call_id: Option<String>,
}

/// The layer that records each request once it is answered (see the module docs).
pub(crate) async fn record_requests(
    State(state): State<Arc<RelayState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    if matches!(
        path.as_str(),
        "/healthz" | "/readyz" | "/metrics" | "/openapi.json"
    ) {
        return next.run(request).await;
    }
    let started = Instant::now();
    let at = OffsetDateTime::now_utc();
    let method = request.method().to_string();
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| {
            let client = state.settings.public.client(request.headers(), peer.ip());
            client.to_string()
        });
    let forwarded = request
        .headers()
        .contains_key(crate::passthrough::FORWARDED_HEADER);
    let slot = KeySlot::default();
    request.extensions_mut().insert(slot.clone());
    let response = next.run(request).await;
    let status = response.status();
    let quiet = (forwarded || path == "/v1/agent/connect") && status.as_u16() < 400;
    if quiet {
        return response;
    }
    let mut record = AuditRecord::new("request", at, "ok");
    record.key = slot.take();
    record.client = client;
    record.system = path
        .strip_prefix("/v1/systems/")
        .and_then(|rest| rest.split('/').next())
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    record.method = Some(method);
    record.status = Some(status.as_u16());
    record.duration_ms = i64::try_from(started.elapsed().as_millis()).ok();
    let call = response.extensions().get::<CallNote>();
    let problem = response.extensions().get::<ProblemNote>();
    record.target = Some(call.map_or_else(|| path.clone(), |c| c.target.clone()));
    record.call_id = call
        .map(|c| c.call_id.clone())
        .or_else(|| problem.and_then(|p| p.call_id.clone()))
        .or_else(|| call_in_location(response.headers()));
    record.agent = call.and_then(|c| c.agent.clone());
    record.outcome = match (problem, call) {
        (Some(problem), _) => problem.slug.to_owned(),
        (None, Some(call)) => call.state.to_owned(),
        (None, None) if status.is_success() || status.is_redirection() => "ok".to_owned(),
        (None, None) if status == StatusCode::SWITCHING_PROTOCOLS => "ok".to_owned(),
        (None, None) => format!("status-{}", status.as_u16()),
    };
    state.audit.record(record);
    response
}

/// The call id of a `Location: …/v1/calls/{id}` (an action's 202).
fn call_in_location(headers: &HeaderMap) -> Option<String> {
    let location = headers.get(header::LOCATION)?.to_str().ok()?;
    let (_, id) = location.rsplit_once("/v1/calls/")?;
    (!id.is_empty() && !id.contains('/')).then(|| id.to_owned())
}

/// The query of `GET /v1/audit`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// Records at or after this time (RFC 3339); `since` is accepted too.
    #[serde(alias = "since")]
    #[param(format = DateTime)]
    from: Option<String>,
    /// Records before this time (RFC 3339); `until` is accepted too.
    #[serde(alias = "until")]
    #[param(format = DateTime)]
    to: Option<String>,
    /// Records of this system.
    system: Option<String>,
    /// Records of this API key (its configured name).
    key: Option<String>,
    /// Records with this outcome (`succeeded`, `not-allowed`, `forbidden`, `ok`,
    /// ...).
    outcome: Option<String>,
    /// Records of this call.
    call_id: Option<String>,
    /// The `next` of the previous page (opaque).
    cursor: Option<String>,
    /// The most records in the page (1 to 1000, default 100).
    #[param(schema_with = limit_schema)]
    limit: Option<usize>,
}

/// The page size: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when left out.
fn limit_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Integer)
        .minimum(Some(1))
        .maximum(Some(MAX_LIMIT))
        .default(Some(DEFAULT_LIMIT.into()))
        .build()
}

/// The `event` of an [`AuditItem`].
fn event_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(["request", "call", "config"]))
        .description(Some(
            "`request`: an HTTP request of the API; `call`: a call's end (its outcome as \
             its agent reported it, or `expired` / `outcome-unknown` when the relay ended \
             it); `config`: keys and agent tokens reloaded (SIGHUP).",
        ))
        .build()
}

/// A page of `GET /v1/audit` as JSON.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AuditPage)]
pub(crate) struct AuditPage {
    items: Vec<AuditItem>,
    /// The cursor of the next page; `null` on the last.
    #[schema(required = true)]
    next: Option<String>,
}

/// One record of the audit log; members that do not apply are `null`. Members
/// in name order, as the answer always had them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AuditRecord)]
pub(crate) struct AuditItem {
    /// The agent that ran the call.
    #[schema(required = true)]
    agent: Option<String>,
    /// The call.
    #[schema(required = true)]
    call_id: Option<String>,
    /// The client's address (the TCP peer).
    #[schema(required = true)]
    client: Option<String>,
    /// More: the SAP error key of a failed call, the counts of a reload.
    #[schema(required = true)]
    detail: Option<String>,
    /// How long it took in milliseconds: a request until its answer's head, a
    /// call from submission to its outcome.
    #[schema(required = true)]
    duration_ms: Option<i64>,
    #[schema(schema_with = event_schema)]
    event: String,
    /// The API key's configured name (never the key).
    #[schema(required = true)]
    key: Option<String>,
    /// The HTTP method of a request.
    #[schema(required = true)]
    method: Option<String>,
    /// The call's state (`succeeded`, `queued`, `running`, `cancelled`,
    /// `expired`), the problem type's slug of an error answer (`forbidden`,
    /// `not-allowed`, ...), the SAP error group of a failed call in kebab case
    /// (`abap-application-failure`), or `ok`; a reload is `ok` or `refused`.
    outcome: String,
    /// The HTTP status answered.
    #[schema(required = true)]
    status: Option<u16>,
    /// The system.
    #[schema(required = true)]
    system: Option<String>,
    /// The function (functions of a transaction, comma-separated), the action,
    /// or the request's path.
    #[schema(required = true)]
    target: Option<String>,
    /// When it happened (a request: when it arrived).
    #[schema(format = DateTime)]
    time: String,
}

/// `GET /v1/audit`: a page of the audit log (operator keys only).
///
/// # Errors
/// 401 without a key, 403 for a key without the operator scope, 400 for a bad
/// time, cursor, limit or unknown parameter.
#[utoipa::path(
    get,
    path = "/v1/audit",
    operation_id = "listAudit",
    tag = "operations",
    summary = "Read the audit log (operator keys only)",
    description = "Every request of the API (pass-through included) with its API key's name, client address, system, target, call id, outcome, status and duration; every call's outcome as its agent reported it (`event` `call`: the agent that ran it, how long it took from submission, `not-allowed` when the agent's allowlist refused it); every reload of the keys and agent tokens (`event` `config`). Refusals by the relay carry the problem type's slug as their outcome (`unauthorized`, `forbidden`, `rate-limited`, `too-many-in-flight`, `queue-full`, ...). Records come oldest first, in the order they were stored. `items` and `next` as JSON by default; with `Accept: application/x-ndjson` one record per line, with `Accept: text/csv` CSV with a header row (RFC 4180 quoting); both then carry the next page's cursor in `Sapbridge-Next-Cursor`. Records are kept `[audit] retention_days` (default 90). Only keys with `operator = true`; others get `403`.",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of the audit log.",
            headers(("Sapbridge-Next-Cursor" = String, description = "The cursor of the next page, when there is one.")),
            content(
                (AuditPage = "application/json"),
                (AuditItem = "application/x-ndjson"),
                (String = "text/csv", example = "time,event,key,client,system,method,target,call_id,outcome,status,duration_ms,agent,detail\r\n2026-01-02T10:00:00.000Z,request,flow,203.0.113.9,PRD,POST,STFC_CONNECTION,c_01J…,succeeded,200,41,plant-1,\r\n"),
            )),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 500, response = super::openapi::InternalError),
    ),
)]
pub(crate) async fn list(
    State(state): State<Arc<RelayState>>,
    caller: Caller,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    if !caller.is_operator() {
        return Err(ApiError::Forbidden(
            "the audit log is for API keys with the operator scope (operator = true)".into(),
        ));
    }
    let Query(query) = query.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let filter = AuditFilter {
        from: query
            .from
            .as_deref()
            .map(|t| time_param("from", t))
            .transpose()?,
        to: query
            .to
            .as_deref()
            .map(|t| time_param("to", t))
            .transpose()?,
        system: query.system,
        key: query.key,
        outcome: query.outcome,
        call_id: query.call_id,
        after: query.cursor.as_deref().map(decode_cursor).transpose()?,
        // One more than the page: whether there is a next page.
        limit: limit + 1,
    };
    let mut records = state.queue.audit(filter).await?;
    let next = (records.len() > limit).then(|| {
        records.truncate(limit);
        records.last().map(|r| encode_cursor(r.seq))
    });
    let next = next.flatten();
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut response = if accept.contains(NDJSON) {
        let mut body = String::new();
        for record in &records {
            body.push_str(&serde_json::to_string(&item(record)).unwrap_or_default());
            body.push('\n');
        }
        ([(header::CONTENT_TYPE, NDJSON)], body).into_response()
    } else if accept.contains(CSV) {
        (
            [(
                header::CONTENT_TYPE,
                "text/csv; charset=utf-8; header=present",
            )],
            csv(&records),
        )
            .into_response()
    } else {
        let items = records.iter().map(item).collect();
        axum::Json(AuditPage {
            items,
            next: next.clone(),
        })
        .into_response()
    };
    if let Some(next) = next.and_then(|n| HeaderValue::from_str(&n).ok()) {
        response.headers_mut().insert(NEXT_CURSOR_HEADER, next);
    }
    Ok(response)
}

fn time_param(name: &str, text: &str) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
        ApiError::BadRequest(format!(
            "{name} must be an RFC 3339 time such as 2026-01-31T08:00:00Z: {e}"
        ))
    })
}

/// The cursor after record `seq`: opaque to clients.
fn encode_cursor(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("audit:{seq}"))
}

fn decode_cursor(cursor: &str) -> Result<i64, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix("audit:")?.parse().ok())
        .ok_or_else(|| {
            ApiError::BadRequest("cursor is not one this relay gave out (use `next`)".into())
        })
}

/// A record as the API shows it: every column, `null` where unknown.
fn item(record: &AuditRecord) -> AuditItem {
    AuditItem {
        agent: record.agent.clone(),
        call_id: record.call_id.clone(),
        client: record.client.clone(),
        detail: record.detail.clone(),
        duration_ms: record.duration_ms,
        event: record.event.clone(),
        key: record.key.clone(),
        method: record.method.clone(),
        outcome: record.outcome.clone(),
        status: record.status,
        system: record.system.clone(),
        target: record.target.clone(),
        time: rfc3339(record.at),
    }
}

/// The records as CSV (RFC 4180): a header row, then one row per record; a field
/// holding a comma, a quote or a line break is quoted, its quotes doubled. A field
/// a spreadsheet would take for a formula (it starts with `=`, `+`, `-`, `@`, a tab
/// or a carriage return: paths, SAP messages and agent details can be written by
/// whoever calls the API or runs an agent) gets a leading `'` and is quoted, as
/// OWASP's advice on CSV injection has it, so opening the export runs nothing.
fn csv(records: &[AuditRecord]) -> String {
    let mut out = COLUMNS.join(",");
    out.push_str("\r\n");
    for record in records {
        let item = serde_json::to_value(item(record)).unwrap_or_default();
        let fields: Vec<String> = COLUMNS
            .iter()
            .map(|column| match &item[*column] {
                Value::Null => String::new(),
                Value::String(s) => csv_field(s),
                other => csv_field(&other.to_string()),
            })
            .collect();
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

fn csv_field(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("\"'{}\"", text.replace('"', "\"\""))
    } else if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn csv_fields_a_spreadsheet_would_run_are_defused() {
        for formula in [
            "=HYPERLINK(\"https://evil.example\",\"x\")",
            "+1+cmd|' /C calc'!A0",
            "-2+3",
            "@SUM(A1:A2)",
            "\t=1",
            "\r=1",
        ] {
            let field = csv_field(formula);
            assert!(field.starts_with("\"'"), "{formula:?} became {field:?}");
            assert_eq!(field[2..field.len() - 1].replace("\"\"", "\""), formula);
        }
        // Plain text and numbers stay as they are.
        assert_eq!(csv_field("42"), "42");
        assert_eq!(csv_field("a=b"), "a=b");
    }

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(decode_cursor(&encode_cursor(42)).unwrap(), 42);
        assert!(decode_cursor("42").is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("calls:1")).is_err());
    }

    #[test]
    fn call_ids_come_from_locations() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::LOCATION,
            HeaderValue::from_static("https://relay.example/v1/calls/c_123"),
        );
        assert_eq!(call_in_location(&headers).as_deref(), Some("c_123"));
        headers.insert(
            header::LOCATION,
            HeaderValue::from_static("/v1/systems/PRD/customers/1"),
        );
        assert_eq!(call_in_location(&headers), None);
    }
}
