//! What a client request carries besides its route: the authenticated [`Caller`],
//! the path and the JSON body (size-limited), and the `Prefer`,
//! `Sapbridge-Queue-Ttl` and `Idempotency-Key` headers; and the [`Submission`] a
//! request for a unit of work makes of them.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequestParts, Path, Request};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, StatusCode, header};
use sapbridge_proto::{CommitPolicy, FunctionCall};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::ApiError;
use crate::actions::sap_name;
use crate::auth::{KeyLimits, Scope, presented_secret};
use crate::calls::{Submission, Viewer};
use crate::limits::LimitReason;
use crate::passthrough::ForwardedCaller;
use crate::queue::{CallKind, IdempotencyKey, NewDelivery};
use crate::state::{RelayState, Settings};
use crate::webhooks::CALLBACK_HEADER;

/// The header that shortens a call's queue TTL, in seconds.
/// W3C Trace Context: the client's trace, continued by the relay (see
/// [`super::trace_context`]).
pub(crate) const TRACEPARENT: &str = "traceparent";
pub(crate) const QUEUE_TTL_HEADER: &str = "sapbridge-queue-ttl";
/// The idempotency header.
pub(crate) const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// An authenticated client: its API key's name and scope.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The key's configured name (safe to log); the owner of the calls it creates.
    pub(crate) name: String,
    scope: Scope,
    operator: bool,
    limits: KeyLimits,
}

impl Caller {
    /// The caller of a request another relay replica forwarded, as that replica
    /// authenticated it (its signature checked).
    pub(crate) fn forwarded(caller: ForwardedCaller) -> Self {
        Self {
            name: caller.name,
            scope: Scope::new(&caller.systems),
            operator: caller.operator,
            // Limited where the client called (each replica limits its own).
            limits: KeyLimits::default(),
        }
    }

    /// The caller as a forwarded request carries it to another replica.
    pub(crate) fn to_forward(&self) -> ForwardedCaller {
        ForwardedCaller {
            name: self.name.clone(),
            systems: self.scope.systems(),
            operator: self.operator,
        }
    }

    /// Whether the key holds the operator scope.
    pub(crate) fn is_operator(&self) -> bool {
        self.operator
    }

    /// Whether the key may call `system`.
    pub(crate) fn covers(&self, system: &str) -> bool {
        self.scope.covers(system)
    }

    /// The key as it asks for calls by their id.
    pub(crate) fn viewer(&self) -> Viewer<'_> {
        Viewer {
            name: &self.name,
            scope: &self.scope,
            operator: self.operator,
        }
    }

    /// Checks that the key may call `system`, that the system exists, and takes a
    /// token of the key's rate limit (every request to a system makes work for it).
    ///
    /// # Errors
    /// 403 out of scope (checked first, so a scoped key learns nothing about other
    /// systems), 404 unknown system, 429 past the key's rate.
    pub(crate) fn check_system(&self, state: &RelayState, system: &str) -> Result<(), ApiError> {
        if !self.covers(system) {
            return Err(ApiError::Forbidden(format!(
                "the API key may not call system {system:?}"
            )));
        }
        if !state.knows(system) {
            return Err(ApiError::UnknownSystem(system.to_owned()));
        }
        if let Some(rate) = self.limits.rate
            && let Err(wait) = state
                .limits
                .rates
                .check(&self.name, rate, std::time::Instant::now())
        {
            state.limits.counters.refused(LimitReason::Rate, &self.name);
            return Err(ApiError::RateLimited(wait));
        }
        Ok(())
    }
}

impl FromRequestParts<Arc<RelayState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<RelayState>,
    ) -> Result<Self, Self::Rejection> {
        // A request the operator console makes on behalf of its signed-in
        // operator carries the caller as an extension, which only code in this
        // process can set (see `super::console`).
        let caller = match parts.extensions.get::<super::console::OnBehalf>() {
            Some(on_behalf) => on_behalf.0.clone(),
            None => Self::from_headers(state, &parts.headers)?,
        };
        if let Some(slot) = parts.extensions.get::<super::audit::KeySlot>() {
            slot.set(&caller.name);
        }
        Ok(caller)
    }
}

impl Caller {
    /// The caller holding `credential`.
    pub(crate) fn of(credential: &crate::auth::Credential) -> Self {
        Self {
            name: credential.name.clone(),
            scope: credential.scope.clone(),
            operator: credential.operator,
            limits: credential.limits,
        }
    }

    /// The caller whose API key `headers` present.
    ///
    /// # Errors
    /// [`ApiError::Unauthorized`] for a missing or unknown key.
    pub(crate) fn from_headers(state: &RelayState, headers: &HeaderMap) -> Result<Self, ApiError> {
        let Some(credential) =
            presented_secret(headers, true).and_then(|secret| state.keys.api_key(secret))
        else {
            state.metrics.auth_failed("api_key");
            return Err(ApiError::Unauthorized);
        };
        state.note_use(crate::queue::CredentialKind::ApiKey, &credential.name);
        Ok(Self {
            name: credential.name.clone(),
            scope: credential.scope.clone(),
            operator: credential.operator,
            limits: credential.limits,
        })
    }
}

/// The 413 for a request whose `Content-Length` exceeds the body limit, before its
/// body is read.
pub(crate) fn oversized(settings: &Settings, request: &Request) -> Option<Response> {
    let limit = settings.body_limit_bytes;
    too_large(request, limit).map(IntoResponse::into_response)
}

/// [`ApiError::PayloadTooLarge`] when `request` declares a `Content-Length` over
/// `limit` bytes.
pub(crate) fn too_large(request: &Request, limit: usize) -> Option<ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    declared
        .is_some_and(|len| len > limit as u64)
        .then_some(ApiError::PayloadTooLarge(limit))
}

/// The body bytes, with the limit's rejection turned into a 413 problem.
///
/// # Errors
/// 413 past the limit, 400 when the body could not be read.
pub(crate) fn body_bytes(
    body: Result<Bytes, BytesRejection>,
    settings: &Settings,
) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(settings.body_limit_bytes)
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    })
}

/// Parses a body that must be a JSON object; an empty body is an empty object.
///
/// # Errors
/// 400 for malformed JSON, a body of only whitespace (a flow whose expression
/// came out blank, not a call without parameters), or anything but an object.
pub(crate) fn json_object(bytes: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    if bytes.is_empty() {
        return Ok(serde_json::Map::new());
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "the body holds only whitespace: send a JSON object of parameters, `{}` or no body"
                .into(),
        ));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::BadRequest(
            "the body must be a JSON object of parameters by name".into(),
        )),
        Err(error) => Err(ApiError::BadRequest(format!("malformed JSON: {error}"))),
    }
}

/// The function module name from the path, upper-cased and checked.
///
/// # Errors
/// 400 when it is empty, longer than 30 characters or has characters SAP does not
/// allow in function names.
pub(crate) fn function_name(raw: &str) -> Result<String, ApiError> {
    sap_name(raw)
        .ok_or_else(|| ApiError::BadRequest(format!("{raw:?} is not a valid function module name")))
}

/// How long to hold the request for the result: `Prefer: respond-async` → zero,
/// `Prefer: wait=N` → N seconds, else the default; capped by the configured maximum.
pub(crate) fn requested_wait(headers: &HeaderMap, settings: &Settings) -> Duration {
    let mut wait = settings.default_wait;
    for value in headers.get_all("prefer") {
        let Ok(value) = value.to_str() else { continue };
        for token in value.split([',', ';']).map(str::trim) {
            if token.eq_ignore_ascii_case("respond-async") {
                return Duration::ZERO;
            }
            let asked = token
                .split_once('=')
                .filter(|(name, _)| name.trim().eq_ignore_ascii_case("wait"))
                .and_then(|(_, secs)| secs.trim().trim_matches('"').parse::<u64>().ok());
            if let Some(secs) = asked {
                wait = Duration::from_secs(secs);
            }
        }
    }
    wait.min(settings.max_wait)
}

/// The largest `Sapbridge-Queue-Ttl` the relay takes (365 days), as documented.
pub(crate) const MAX_QUEUE_TTL_SECS: u64 = 365 * 86_400;

/// The call's queue TTL: `Sapbridge-Queue-Ttl` seconds, capped by the configuration.
///
/// # Errors
/// 400 when the header is not a number of seconds from 1 to
/// [`MAX_QUEUE_TTL_SECS`].
pub(crate) fn queue_ttl(headers: &HeaderMap, settings: &Settings) -> Result<Duration, ApiError> {
    let Some(value) = headers.get(QUEUE_TTL_HEADER) else {
        return Ok(settings.queue_ttl);
    };
    let secs = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| (1..=MAX_QUEUE_TTL_SECS).contains(s))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "Sapbridge-Queue-Ttl must be a number of seconds from 1 to {MAX_QUEUE_TTL_SECS}"
            ))
        })?;
    Ok(Duration::from_secs(secs).min(settings.queue_ttl))
}

/// The longest `Idempotency-Key`, without its optional quotes.
pub(crate) const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The `{system}` of a route, for the document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code, reason = "documentation of the path the handlers read")]
pub(crate) struct SystemPath {
    /// The SAP system's name as its agents serve it.
    #[param(example = "SIM")]
    system: String,
}

/// The `{system}` and `{function}` of a function route, for the document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code, reason = "documentation of the path the handlers read")]
pub(crate) struct FunctionPath {
    /// The SAP system's name as its agents serve it.
    #[param(example = "SIM")]
    system: String,
    /// The function module (case-insensitive; up to 30 characters `A-Z 0-9 _ /`).
    // The limits are `actions::MAX_SAP_NAME`; a unit test of openapi.rs holds them to it.
    #[param(
        min_length = 1,
        max_length = 30,
        pattern = "^[A-Za-z0-9_/]{1,30}$",
        example = "STFC_CONNECTION"
    )]
    function: String,
}

/// The `{system}` and `{table}` of a table route, for the document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code, reason = "documentation of the path the handlers read")]
pub(crate) struct TablePath {
    /// The SAP system's name as its agents serve it.
    #[param(example = "SIM")]
    system: String,
    /// The table (DDIC name, case-insensitive; up to 30 characters `A-Z 0-9 _ /`).
    // The limits are `actions::MAX_SAP_NAME`; a unit test of openapi.rs holds them to it.
    #[param(
        min_length = 1,
        max_length = 30,
        pattern = "^[A-Za-z0-9_/]{1,30}$",
        example = "KNA1"
    )]
    table: String,
}

/// The `Sapbridge-Callback` header, for the document.
pub(crate) struct CallbackHeader;

impl utoipa::IntoParams for CallbackHeader {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        vec![header_param(
            "Sapbridge-Callback",
            "A URL the call's final answer is POSTed to when it ends, signed as the \
             Standard Webhooks specification says (`webhook-id`, `webhook-timestamp`, \
             `webhook-signature` with the API key's `webhook_secret`), retried with \
             exponential back-off for `[webhooks] retry_for_secs` (24 hours by default). \
             The host must be in the relay's `[webhooks] allowed_hosts`, the scheme \
             `https` (unless `allow_http`), and no address it resolves to may be \
             loopback, private, link-local or reserved (unless `allow_private_networks`); \
             otherwise `400`. A key without a `webhook_secret` cannot ask for callbacks \
             (`400`). The receiver's answer never reaches the caller: see \
             `GET /v1/webhooks/deliveries`.",
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::Type::String)
                .format(Some(utoipa::openapi::SchemaFormat::Custom("uri".into())))
                .max_length(Some(crate::webhooks::MAX_URL_BYTES)),
            serde_json::json!("https://hooks.example.com/sap/calls"),
        )]
    }
}

/// An optional request header, for the document.
fn header_param(
    name: &str,
    description: &str,
    schema: utoipa::openapi::ObjectBuilder,
    example: serde_json::Value,
) -> utoipa::openapi::path::Parameter {
    utoipa::openapi::path::ParameterBuilder::new()
        .name(name)
        .parameter_in(utoipa::openapi::path::ParameterIn::Header)
        .required(utoipa::openapi::Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .example(Some(example))
        .build()
}

/// The headers of a request that queues a call, for the document: `Prefer`,
/// `Idempotency-Key` and `Sapbridge-Queue-Ttl`, limits from the consts above.
pub(crate) struct QueueHeaders;

impl utoipa::IntoParams for QueueHeaders {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::{ObjectBuilder, Type};
        vec![
            header_param(
                "Prefer",
                "`wait=<seconds>`: how long to hold the request for the result (default \
                 60, capped by the relay's `max_wait`); `respond-async`: answer `202` at \
                 once.",
                ObjectBuilder::new().schema_type(Type::String),
                serde_json::json!("wait=10"),
            ),
            header_param(
                "Idempotency-Key",
                "A retry with the same key and body gets the stored outcome without a \
                 second execution; same key with another body → `422`; while the first is \
                 still running, the retry joins it: it waits as `Prefer` asks and answers \
                 the final outcome, or `202` with the first call's `Location` and \
                 `Retry-After`. 1 to 255 characters, optionally in quotes.",
                // The key and two quotes.
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(MAX_IDEMPOTENCY_KEY + 2)),
                serde_json::json!("\"account-4711-create\""),
            ),
            header_param(
                "Sapbridge-Queue-Ttl",
                "Seconds the call may wait for an agent, 1 to 31536000 (365 days); capped \
                 by the relay's queue TTL (24 h unless configured), which is also the \
                 default; afterwards it ends as `504`.",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(MAX_QUEUE_TTL_SECS)),
                serde_json::json!(300),
            ),
        ]
    }
}

/// The `Idempotency-Key` header without its optional quotes.
///
/// # Errors
/// 400 when it is empty, not text, or longer than 255 characters.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_matches('"').to_owned())
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters of text"
            ))
        })?;
    Ok(Some(key))
}

/// Maps a path rejection to a problem.
pub(crate) fn path<T>(path: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    path.map(|Path(p)| p)
        .map_err(|r| ApiError::BadRequest(r.body_text()))
}

/// A unit of work as a request asks for it.
pub(crate) struct UnitRequest {
    /// The system.
    pub(crate) system: String,
    /// Function call or transaction.
    pub(crate) kind: CallKind,
    /// The calls.
    pub(crate) calls: Vec<FunctionCall>,
    /// What happens after them.
    pub(crate) commit: CommitPolicy,
    /// What makes two requests "the same" for `Idempotency-Key` (see
    /// [`fingerprint`]); `None` for a request without that header.
    pub(crate) fingerprint: Option<String>,
}

/// The hex SHA-256 over length-prefixed parts of a request, for a request with an
/// `Idempotency-Key` (only those are compared); `None` for any other.
pub(crate) fn fingerprint(headers: &HeaderMap, parts: &[&[u8]]) -> Option<String> {
    if !headers.contains_key(IDEMPOTENCY_HEADER) {
        return None;
    }
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    Some(hex::encode(hash.finalize()))
}

/// What a request for `unit` asks for: the submission (its queue TTL and
/// idempotency key from the headers, owned by the caller) and how long to wait for
/// the call's end (`Prefer`).
///
/// # Errors
/// 400 for bad headers.
pub(crate) fn submission(
    state: &RelayState,
    caller: &Caller,
    headers: &HeaderMap,
    unit: UnitRequest,
) -> Result<(Submission, Duration), ApiError> {
    let wait = requested_wait(headers, &state.settings);
    let ttl = queue_ttl(headers, &state.settings)?;
    let idempotency = match (idempotency_key(headers)?, unit.fingerprint) {
        (Some(key), Some(fingerprint)) => {
            let key = IdempotencyKey {
                scope: caller.name.clone(),
                key,
            };
            Some((key, fingerprint))
        }
        (Some(_), None) => {
            return Err(ApiError::Internal(
                "a request with an Idempotency-Key has no fingerprint".into(),
            ));
        }
        (None, _) => None,
    };
    let submission = Submission {
        system: unit.system,
        kind: unit.kind,
        calls: unit.calls,
        commit: unit.commit,
        ttl,
        idempotency,
        owner: Some(caller.name.clone()),
        trace: headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        webhooks: callback(state, caller, headers)?,
    };
    Ok((submission, wait))
}

/// The webhook a request asks for with `Sapbridge-Callback`, if any.
///
/// # Errors
/// 400 when the URL is refused (see `crate::webhooks`), or the key has no
/// `webhook_secret` to sign with.
pub(crate) fn callback(
    state: &RelayState,
    caller: &Caller,
    headers: &HeaderMap,
) -> Result<Vec<NewDelivery>, ApiError> {
    let Some(value) = headers.get(CALLBACK_HEADER) else {
        return Ok(Vec::new());
    };
    let url = checked_callback(state, caller, value.to_str().unwrap_or("\u{fffd}"))?;
    Ok(vec![NewDelivery {
        id: crate::ids::new_id("msg_"),
        url,
        subscription: None,
    }])
}

/// `raw` as a callback URL of `caller`'s calls.
///
/// # Errors
/// 400 as for [`callback`].
pub(crate) fn checked_callback(
    state: &RelayState,
    caller: &Caller,
    raw: &str,
) -> Result<String, ApiError> {
    if state.keys.webhook_secret(&caller.name).is_none() {
        return Err(ApiError::BadRequest(format!(
            "the API key {:?} has no webhook_secret to sign webhooks with: its operator sets \
             one in its [[api_keys]] entry (sapbridge keys new --webhook-secret makes one)",
            caller.name
        )));
    }
    let url = state
        .webhooks
        .check(raw)
        .map_err(|refused| ApiError::BadRequest(format!("callback refused: {refused}")))?;
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RelayConfig;

    fn settings() -> Settings {
        let state = RelayState::new(
            &RelayConfig::default(),
            Arc::new(crate::queue::memory::MemoryQueue::new()),
            crate::audit::AuditLog::detached(),
            Default::default(),
        );
        state.settings
    }

    #[test]
    fn prefer_header_sets_the_wait() {
        let settings = settings();
        let mut headers = HeaderMap::new();
        assert_eq!(requested_wait(&headers, &settings), Duration::from_secs(60));
        headers.insert("prefer", "wait=5".parse().unwrap());
        assert_eq!(requested_wait(&headers, &settings), Duration::from_secs(5));
        headers.insert("prefer", "wait=9999".parse().unwrap());
        assert_eq!(
            requested_wait(&headers, &settings),
            Duration::from_secs(120)
        );
        headers.append("prefer", "respond-async".parse().unwrap());
        assert_eq!(requested_wait(&headers, &settings), Duration::ZERO);
    }

    #[test]
    fn bodies_and_names_are_checked() {
        assert!(json_object(b"").unwrap().is_empty());
        assert!(json_object(b" \r\n\t").is_err(), "only whitespace");
        assert!(json_object(br#"{"A":1}"#).is_ok());
        assert!(json_object(b"[1]").is_err());
        assert!(json_object(br#"{"A": "#).is_err());
        assert_eq!(function_name("stfc_connection").unwrap(), "STFC_CONNECTION");
        assert!(function_name("DROP TABLE").is_err());
    }
}
