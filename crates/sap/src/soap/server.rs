//! The SOAP-RFC endpoint: `POST /sap/bc/soap/rfc?sap-client=NNN` answered the way
//! SAP NetWeaver's ICF service answers it, in front of any [`SapSystem`] (the
//! simulator in `sapbridge sim`, so that the SOAP backend can be tested without a
//! real SAP system).
//!
//! Per request: basic auth (else `401` with NetWeaver's `WWW-Authenticate`
//! realm; five wrong passwords in a row lock the user, as SAP does, until
//! [`crate::sim::UserLocks::reset`]), `sap-client` must name our client (else `401`, a logon failure), the
//! body (at most [`MAX_BODY_BYTES`]) is parsed as an envelope, the parameters are
//! typed with the function's interface (read once from the system with
//! `RFC_GET_FUNCTION_INTERFACE` / `DDIF_FIELDINFO_GET` and cached), the function
//! runs, and the answer is `FUNC.Response` (200) or a Fault (500), see
//! [`super::fault`]. Each request runs in a fresh session unless SAP's session
//! header asks for a stateful one (see [`super::session`]). A request runs to its
//! end even when its client disconnects before the answer, as on SAP's ICF: the
//! function and its effects (a commit, a session's pending changes) are not
//! undone by the client going away. `GET /` answers 200 for liveness checks.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use sapbridge_proto::Secret;
use tracing::Instrument;

use super::convert::{self, ConvertError};
use super::envelope::{self, CallRequest};
use super::fault::fault_envelope;
use super::metadata::{Direction, FunctionMeta, MetadataCache};
use super::session::{Sessions, SharedConnection};
use super::{CONTEXT_COOKIE, MAX_BODY_BYTES, SOAP_RFC_PATH};
use crate::sim::{LogonRefused, UserLocks};
use crate::{ErrorGroup, Parameters, RfcError, SapSystem};

/// The logon the endpoint accepts: one user, its password and the client.
#[derive(Debug, Clone)]
pub struct SoapAuth {
    /// The SAP user (compared case-insensitively, as SAP does).
    pub user: String,
    /// The password (never logged; `Debug` prints `MASKED`).
    pub password: Secret,
    /// The SAP client (`001`); requests naming another `sap-client` fail to log on.
    pub client: String,
}

struct AppState {
    system: Arc<dyn SapSystem>,
    auth: SoapAuth,
    locks: Arc<UserLocks>,
    metadata: MetadataCache,
    sessions: Sessions,
}

/// The router serving `POST /sap/bc/soap/rfc` and `GET /` in front of `system`.
///
/// Serve it with `axum::serve(listener, router(...))`.
pub fn router(system: Arc<dyn SapSystem>, auth: SoapAuth) -> Router {
    router_with_locks(system, auth, Arc::default())
}

/// [`router`], with SAP's user lock kept in `locks`: five failed logons in a row
/// lock the user until [`UserLocks::reset`] (tests watch the count).
pub fn router_with_locks(
    system: Arc<dyn SapSystem>,
    auth: SoapAuth,
    locks: Arc<UserLocks>,
) -> Router {
    let state = Arc::new(AppState {
        system,
        auth,
        locks,
        metadata: MetadataCache::default(),
        sessions: Sessions::default(),
    });
    Router::new()
        .route("/", get(liveness))
        .route(SOAP_RFC_PATH, post(soap_rfc))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn liveness() -> Html<&'static str> {
    Html(
        "<html><body><h1>sapbridge SAP simulator</h1><p>SOAP-RFC at /sap/bc/soap/rfc</p></body></html>",
    )
}

async fn soap_rfc(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((user, password_ok)) = credentials(&state.auth, &headers) else {
        return unauthorized("Logon failed");
    };
    match state.locks.logon(&user, password_ok) {
        Ok(()) => {}
        Err(LogonRefused::Locked) => {
            return unauthorized(
                "Logon failed: user is locked. Please notify the person responsible",
            );
        }
        Err(LogonRefused::WrongPassword { .. }) => return unauthorized("Logon failed"),
    }
    let client = query_param(query.as_deref(), "sap-client").or_else(|| {
        headers
            .get("sap-client")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    if client.is_some_and(|c| c != state.auth.client) {
        return unauthorized("Logon failed: client not available in this system");
    }
    let request = match envelope::parse_request(&body) {
        Ok(request) => request,
        Err(error) => {
            tracing::debug!(%error, "unusable SOAP request");
            let error = RfcError::new(
                ErrorGroup::ExternalRuntimeFailure,
                "INVALID_SOAP_REQUEST",
                error.to_string(),
            );
            return fault("", &error);
        }
    };
    let span =
        tracing::info_span!("soap_rfc", function = %request.function, session = ?request.session);
    let function = request.function.clone();
    // The work runs in a task of its own, as SAP's ICF runs a request's work
    // process to its end whether or not the client still listens: a client that
    // goes away mid-request (a killed agent, a cut connection) does not cancel the
    // BAPI or the commit it sent, and the session keeps whatever the call did.
    // Awaiting the handle only delivers the answer; dropping it (the connection
    // closed) leaves the task running.
    let work =
        tokio::spawn(async move { handle(&state, &headers, request).await }.instrument(span));
    match work.await {
        Ok(response) => response,
        Err(join) => {
            tracing::error!(%function, error = %join, "SOAP-RFC request task failed");
            let error = RfcError::new(
                ErrorGroup::AbapRuntimeFailure,
                "SYSTEM_FAILURE",
                "the request's work process ended abnormally",
            );
            fault(&function, &error)
        }
    }
}

async fn handle(state: &AppState, headers: &HeaderMap, request: CallRequest) -> Response {
    let cookie = context_cookie(headers);
    let mut new_context = None;
    let mut close_after = None;
    let connection: SharedConnection =
        match cookie.as_deref().map(|id| (id, state.sessions.get(id))) {
            Some((id, Some(connection))) => {
                if request.session == Some(false) {
                    close_after = Some(id.to_owned());
                }
                connection
            }
            Some((_, None)) if request.session.is_some() => {
                let error = RfcError::new(
                    ErrorGroup::CommunicationFailure,
                    "SESSION_EXPIRED",
                    "the stateful session no longer exists; its uncommitted work is gone",
                );
                return fault(&request.function, &error);
            }
            _ => {
                let opened = match state.system.connect().await {
                    Ok(opened) => opened,
                    Err(error) => return fault(&request.function, &error),
                };
                if request.session == Some(true) {
                    match state.sessions.open(opened) {
                        Ok((id, shared)) => {
                            new_context = Some(id);
                            shared
                        }
                        Err(full) => {
                            let error = RfcError::new(
                                ErrorGroup::CommunicationFailure,
                                "SESSIONS_EXHAUSTED",
                                full.to_string(),
                            );
                            return fault(&request.function, &error);
                        }
                    }
                } else {
                    Arc::new(tokio::sync::Mutex::new(opened))
                }
            }
        };
    let outcome = {
        let mut guard = connection.lock().await;
        run(state, guard.as_mut(), &request).await
    };
    if let Some(id) = close_after {
        state.sessions.close(&id);
    }
    let mut response = match outcome {
        Ok(text) => xml_response(StatusCode::OK, text),
        Err(error) => fault(&request.function, &error),
    };
    if let Some(id) = new_context {
        let cookie = format!("{CONTEXT_COOKIE}={id}; path={SOAP_RFC_PATH}; HttpOnly");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
    }
    response
}

/// Types the parameters, calls the function and renders the answer.
async fn run(
    state: &AppState,
    connection: &mut dyn crate::SapConnection,
    request: &CallRequest,
) -> Result<String, RfcError> {
    let function = request.function.as_str();
    let meta = match state.metadata.function(connection, function).await {
        Ok(meta) => meta,
        Err(error) => {
            tracing::debug!(key = %error.key, "no interface metadata; converting generically");
            Arc::new(FunctionMeta::default())
        }
    };
    let params = convert::params_from_xml(&request.call, &meta).map_err(conversion_error)?;
    let result = connection.call(function, &params).await?;
    let requested: Vec<String> = request
        .call
        .children
        .iter()
        .map(|c| super::xml::name_from_xml(&c.name).into_owned())
        .collect();
    render_result(function, &meta, &result, &requested).map_err(conversion_error)
}

/// EXPORTING and CHANGING parameters, plus the TABLES the request named, in
/// interface order; parameters the interface does not know are kept as given.
fn render_result(
    function: &str,
    meta: &FunctionMeta,
    result: &Parameters,
    requested: &[String],
) -> Result<String, ConvertError> {
    let mut out = String::new();
    for param in &meta.params {
        let Some(value) = result.get(&param.name) else {
            continue;
        };
        let wanted = match param.direction {
            Direction::Importing => false,
            Direction::Exporting | Direction::Changing => true,
            Direction::Tables => requested.contains(&param.name),
        };
        if wanted {
            convert::push_value(&mut out, &param.name, value, &param.shape)?;
        }
    }
    for (name, value) in result {
        if meta.param(name).is_none() {
            convert::push_value(&mut out, name, value, meta.shape_of(name))?;
        }
    }
    Ok(envelope::response_envelope(function, &out))
}

fn conversion_error(error: ConvertError) -> RfcError {
    RfcError::new(
        ErrorGroup::ExternalRuntimeFailure,
        "RFC_CONVERSION_FAILURE",
        error.0,
    )
}

fn fault(function: &str, error: &RfcError) -> Response {
    xml_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        fault_envelope(function, error),
    )
}

fn xml_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

fn unauthorized(reason: &'static str) -> Response {
    let page = format!(
        "<html><head><title>Logon Error Message</title></head><body><p>{reason}</p></body></html>"
    );
    (
        StatusCode::UNAUTHORIZED,
        [
            (
                header::WWW_AUTHENTICATE,
                r#"Basic realm="SAP NetWeaver Application Server [SIM/001]""#,
            ),
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        ],
        page,
    )
        .into_response()
}

/// The basic-auth user of a request and whether its user and password are right;
/// `None` without readable basic auth.
fn credentials(auth: &SoapAuth, headers: &HeaderMap) -> Option<(String, bool)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    let user_ok = user.eq_ignore_ascii_case(&auth.user);
    let password_ok = constant_time_eq(password.as_bytes(), auth.password.expose().as_bytes());
    Some((user.to_owned(), user_ok & password_ok))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

fn context_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == CONTEXT_COOKIE)
        .map(|(_, value)| value.to_owned())
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    let pairs: HashMap<&str, &str> = query?
        .split('&')
        .filter_map(|p| p.split_once('='))
        .collect();
    pairs.get(name).map(|v| (*v).to_owned())
}
