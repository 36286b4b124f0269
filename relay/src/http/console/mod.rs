//! The operator console at `/console`: server-rendered pages (maud) over the same
//! API the clients use, for people holding an API key with the operator scope.
//!
//! - Sign-in takes an operator key and starts a session ([`session`]); the cookie
//!   is `HttpOnly; SameSite=Strict; Path=/console`, `Secure` when the relay serves
//!   TLS or is reached over `https://` (its `public_url` or a trusted proxy's
//!   forwarding headers). Keys without the operator scope are refused.
//! - Every form carries a CSRF token checked here (the session's, or before
//!   sign-in a token that the sign-in form and a short-lived cookie both carry).
//! - Every answer carries a strict `Content-Security-Policy` (scripts and styles
//!   only from the relay's own embedded files, no inline script), `X-Frame-Options:
//!   DENY`, `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer` and
//!   `Cache-Control: no-store`.
//! - What a page does, it does through the API router on the operator's behalf
//!   ([`OnBehalf`]): the same checks, the same problems, and the same audit records
//!   (under the operator's key name) as a client's request.

mod chart;
mod keys;
mod pages;
pub(crate) mod session;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequestParts, Query, Request, State};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use futures_util::Stream;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::request::Caller;
use crate::queue::Activity;
use crate::state::RelayState;
use session::{Sessions, random_token, same_token};

/// The session cookie.
const COOKIE: &str = "sapbridge_console";
/// The cookie holding the sign-in form's CSRF token.
const SIGN_IN_COOKIE: &str = "sapbridge_console_signin";
/// How long the sign-in form's token lasts.
const SIGN_IN_TOKEN_SECS: u64 = 600;
/// How long a console request waits for a call's answer.
const WAIT_SECS: u64 = 30;
/// How often the overview's live updates are sent.
const LIVE_EVERY: Duration = Duration::from_secs(2);
/// How old the overview's activity (chart and refusals) may be when the live
/// updates show it: the store is read at most this often per relay, however many
/// operators watch; a page load reads it afresh.
const ACTIVITY_EVERY: Duration = Duration::from_secs(10);
/// The largest API answer a page reads.
const ANSWER_LIMIT: usize = 16 * 1024 * 1024;

/// The console's Content-Security-Policy: nothing but the relay's own files.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; object-src 'none'";

/// The console's stylesheet and script, embedded in the binary.
const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// The caller of a request the console makes to the API router on behalf of its
/// signed-in operator. Only code in this process can put it in a request (as an
/// extension); [`Caller`]'s extractor takes it instead of a presented key.
#[derive(Debug, Clone)]
pub(crate) struct OnBehalf(pub(crate) Caller);

/// The activity last read from the store, and when (see [`ACTIVITY_EVERY`]).
type ActivityCache = tokio::sync::Mutex<Option<(Instant, Arc<Activity>)>>;

/// What the console's handlers share.
#[derive(Clone)]
pub(crate) struct Console {
    state: Arc<RelayState>,
    api: Router,
    sessions: Arc<Sessions>,
    /// The activity last read from the store, and when.
    activity: Arc<ActivityCache>,
}

/// The console's routes (none when `[console] enabled = false`), calling `api`
/// (the API router) on the operator's behalf.
pub(crate) fn routes(state: Arc<RelayState>, api: Router) -> Router {
    let settings = &state.settings.console;
    if !settings.enabled {
        return Router::new();
    }
    let sessions = Arc::new(Sessions::new(
        Duration::from_secs(settings.session_idle_secs),
        Duration::from_secs(settings.session_max_secs),
    ));
    let console = Console {
        state,
        api,
        sessions,
        activity: Arc::default(),
    };
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(overview))
        .route("/console/sign-in", get(sign_in_form).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/events", get(events))
        .route("/console/calls", get(calls_page))
        .route("/console/calls/cancel", post(cancel_call))
        .route("/console/audit", get(audit_page))
        .route("/console/audit.csv", get(audit_csv))
        .route("/console/test", get(test_page).post(run_test))
        .route("/console/explorer", get(explorer_page).post(run_function))
        .route("/console/keys", get(keys::page).post(keys::create_key))
        .route("/console/keys/revoke", post(keys::revoke_key))
        .route("/console/keys/tokens", post(keys::create_token))
        .route("/console/keys/tokens/revoke", post(keys::revoke_token))
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/console.js", get(js))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(console)
}

/// The headers every console answer carries.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cache-control", "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
        .into_response()
}

/// The signed-in operator of a request.
pub(crate) struct Operator {
    caller: Caller,
    csrf: String,
    session_id: String,
    /// The operator's address (behind trusted proxies, the forwarded one), for the
    /// audit records of what the console does on their behalf.
    client: Option<SocketAddr>,
    secure: bool,
}

/// Why a request has no operator: pages go to the sign-in form, the live updates
/// answer 401.
pub(crate) enum NoSession {
    SignIn,
    Unauthorized,
}

impl IntoResponse for NoSession {
    fn into_response(self) -> Response {
        match self {
            Self::SignIn => Redirect::to("/console/sign-in").into_response(),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "sign in first").into_response(),
        }
    }
}

/// The value of cookie `name` in `headers`.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

fn peer_of(parts: &Parts) -> Option<SocketAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer)
}

/// The client's address behind `peer` (see [`PublicAddress::client`]).
///
/// [`PublicAddress::client`]: crate::public_address::PublicAddress::client
fn client_of(console: &Console, headers: &HeaderMap, peer: SocketAddr) -> SocketAddr {
    let ip = console.state.settings.public.client(headers, peer.ip());
    SocketAddr::new(ip, peer.port())
}

/// Whether cookies of this request's answer get `Secure`.
fn secure(console: &Console, headers: &HeaderMap, peer: Option<SocketAddr>) -> bool {
    console.state.settings.tls
        || console
            .state
            .settings
            .public
            .https(headers, peer.map(|p| p.ip()))
}

impl FromRequestParts<Console> for Operator {
    type Rejection = NoSession;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Console,
    ) -> Result<Self, Self::Rejection> {
        let live = parts.uri.path() == "/console/events";
        let refused = if live {
            NoSession::Unauthorized
        } else {
            NoSession::SignIn
        };
        let Some(id) = cookie(&parts.headers, COOKIE) else {
            return Err(refused);
        };
        let Some(session) = console.sessions.find(id, !live) else {
            return Err(refused);
        };
        // The key of the moment: a reload that removed it or its operator scope
        // ends the session.
        let Some(credential) = console
            .state
            .keys
            .api_key_by_hash(&session.key_hash)
            .filter(|c| c.operator)
        else {
            console.sessions.end(id);
            return Err(refused);
        };
        // The session acts with the operator's key: a use of it.
        console
            .state
            .note_use(crate::queue::CredentialKind::ApiKey, &credential.name);
        let peer = peer_of(parts);
        Ok(Self {
            caller: Caller::of(&credential),
            csrf: session.csrf,
            session_id: id.to_owned(),
            client: peer.map(|p| client_of(console, &parts.headers, p)),
            secure: secure(console, &parts.headers, peer),
        })
    }
}

impl Operator {
    /// Whether a form carries the session's token.
    fn csrf_ok(&self, token: Option<&str>) -> bool {
        token.is_some_and(|t| same_token(t, &self.csrf))
    }
}

fn csrf_refused() -> Response {
    (
        StatusCode::FORBIDDEN,
        pages::message(
            "Form refused",
            "The form's security token is missing or out of date. Reload the page and try again.",
        ),
    )
        .into_response()
}

/// A `Set-Cookie` value.
fn set_cookie(name: &str, value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; HttpOnly; SameSite=Strict; Path=/console; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// An answer of the API router.
pub(crate) struct ApiAnswer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    elapsed: Duration,
}

impl ApiAnswer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

impl Console {
    /// Sends a request to the API router as `operator`.
    async fn api(
        &self,
        operator: &Operator,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> ApiAnswer {
        let mut builder = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let body = match body {
            Some(body) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let started = Instant::now();
        let Ok(mut request) = builder.body(body) else {
            return ApiAnswer {
                status: StatusCode::BAD_REQUEST,
                headers: HeaderMap::new(),
                body: Bytes::from_static(
                    br#"{"title":"Bad request","detail":"not a valid request"}"#,
                ),
                elapsed: Duration::ZERO,
            };
        };
        request
            .extensions_mut()
            .insert(OnBehalf(operator.caller.clone()));
        if let Some(client) = operator.client {
            request.extensions_mut().insert(ConnectInfo(client));
        }
        let response = match self.api.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, ANSWER_LIMIT)
            .await
            .unwrap_or_default();
        ApiAnswer {
            status: parts.status,
            headers: parts.headers,
            body,
            elapsed: started.elapsed(),
        }
    }
}

/// A path segment as the API's routes take it (percent-encoded).
fn segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

// --- sign-in and sign-out ---

async fn sign_in_form(
    State(console): State<Console>,
    headers: HeaderMap,
    request_parts: RequestPeer,
) -> Response {
    sign_in_page(&console, &headers, request_parts.0, None, StatusCode::OK)
}

fn sign_in_page(
    console: &Console,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let token = random_token();
    let secure = secure(console, headers, peer);
    let mut response = (status, pages::sign_in(&token, error)).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SIGN_IN_COOKIE, &token, SIGN_IN_TOKEN_SECS, secure),
    );
    response
}

/// The client's address, if known.
pub(crate) struct RequestPeer(Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for RequestPeer {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(peer_of(parts)))
    }
}

#[derive(Deserialize)]
struct SignIn {
    key: Option<String>,
    csrf: Option<String>,
}

async fn sign_in(
    State(console): State<Console>,
    headers: HeaderMap,
    peer: RequestPeer,
    form: axum::Form<SignIn>,
) -> Response {
    let expected = cookie(&headers, SIGN_IN_COOKIE).unwrap_or("");
    if !form
        .csrf
        .as_deref()
        .is_some_and(|t| same_token(t, expected))
    {
        return csrf_refused();
    }
    let key = form.key.as_deref().unwrap_or("").trim();
    let credential = (!key.is_empty())
        .then(|| console.state.keys.api_key(key))
        .flatten();
    let mut record =
        crate::queue::AuditRecord::new("console-sign-in", time::OffsetDateTime::now_utc(), "ok");
    record.client = peer
        .0
        .map(|p| client_of(&console, &headers, p).ip().to_string());
    record.key = credential.as_ref().map(|c| c.name.clone());
    let credential = match credential {
        Some(c) if c.operator => c,
        Some(_) => {
            record.outcome = "forbidden".into();
            console.state.audit.record(record);
            return sign_in_page(
                &console,
                &headers,
                peer.0,
                Some("This API key does not hold the operator scope (operator = true)."),
                StatusCode::FORBIDDEN,
            );
        }
        None => {
            console.state.metrics.auth_failed("console");
            record.outcome = "unauthorized".into();
            console.state.audit.record(record);
            return sign_in_page(
                &console,
                &headers,
                peer.0,
                Some("This API key is unknown."),
                StatusCode::UNAUTHORIZED,
            );
        }
    };
    console.state.audit.record(record);
    let id = console.sessions.start(credential.hash());
    let secure = secure(&console, &headers, peer.0);
    let mut response = Redirect::to("/console/").into_response();
    let cookies = response.headers_mut();
    cookies.append(
        header::SET_COOKIE,
        set_cookie(COOKIE, &id, console.sessions.max().as_secs(), secure),
    );
    cookies.append(
        header::SET_COOKIE,
        set_cookie(SIGN_IN_COOKIE, "", 0, secure),
    );
    response
}

#[derive(Deserialize)]
struct CsrfOnly {
    csrf: Option<String>,
}

async fn sign_out(
    State(console): State<Console>,
    operator: Operator,
    form: axum::Form<CsrfOnly>,
) -> Response {
    if !operator.csrf_ok(form.csrf.as_deref()) {
        return csrf_refused();
    }
    console.sessions.end(&operator.session_id);
    let mut response = Redirect::to("/console/sign-in").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(COOKIE, "", 0, operator.secure),
    );
    response
}

// --- overview and live updates ---

/// What the overview shows of the relay now.
pub(crate) struct Snapshot {
    systems: Vec<Value>,
    backlog: BTreeMap<String, crate::queue::SystemBacklog>,
    backlog_error: Option<String>,
    /// The last hour's finished calls and refusals, or why the store did not
    /// answer.
    activity: Result<Arc<Activity>, String>,
    /// When the snapshot was taken.
    now: time::OffsetDateTime,
}

/// How fresh the activity of a snapshot must be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fresh {
    /// Read from the store now (a page load).
    Now,
    /// At most [`ACTIVITY_EVERY`] old (the live updates).
    Recent,
}

/// The store's activity of the last hour (up to the minute before the chart's
/// first), read afresh or taken from the console's cache.
async fn activity(console: &Console, fresh: Fresh) -> Result<Arc<Activity>, String> {
    let mut cached = console.activity.lock().await;
    if fresh == Fresh::Recent
        && let Some((at, activity)) = cached.as_ref()
        && at.elapsed() < ACTIVITY_EVERY
    {
        return Ok(Arc::clone(activity));
    }
    let since = time::OffsetDateTime::now_utc() - time::Duration::minutes(chart::MINUTES);
    let since = since
        .replace_second(0)
        .and_then(|t| t.replace_nanosecond(0))
        .unwrap_or(since);
    let activity = Arc::new(
        console
            .state
            .queue
            .activity(since)
            .await
            .map_err(|e| e.to_string())?,
    );
    *cached = Some((Instant::now(), Arc::clone(&activity)));
    Ok(activity)
}

async fn snapshot(console: &Console, operator: &Operator, fresh: Fresh) -> Snapshot {
    let systems = console
        .api(operator, Method::GET, "/v1/systems", &[], None)
        .await
        .json();
    let systems = systems
        .get("systems")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let (backlog, backlog_error) = match console.state.queue.queued_by_system().await {
        Ok(list) => (
            list.into_iter().map(|b| (b.system.clone(), b)).collect(),
            None,
        ),
        Err(error) => (BTreeMap::new(), Some(error.to_string())),
    };
    Snapshot {
        systems,
        backlog,
        backlog_error,
        activity: activity(console, fresh).await,
        now: time::OffsetDateTime::now_utc(),
    }
}

async fn overview(State(console): State<Console>, operator: Operator) -> Response {
    let snapshot = snapshot(&console, &operator, Fresh::Now).await;
    pages::overview(&operator.csrf, &snapshot).into_response()
}

/// `GET /console/events`: the overview as HTML fragments (Server-Sent Events,
/// event `overview`), every [`LIVE_EVERY`] while the session lasts.
async fn events(
    State(console): State<Console>,
    operator: Operator,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold(
        (console, operator, true),
        |(console, operator, first)| async move {
            if !first {
                tokio::select! {
                    () = console.state.shutdown.cancelled() => return None,
                    () = tokio::time::sleep(LIVE_EVERY) => {}
                }
            }
            // The session may have expired or been signed out meanwhile.
            let live = console
                .sessions
                .find(&operator.session_id, false)
                .and_then(|s| console.state.keys.api_key_by_hash(&s.key_hash))
                .is_some_and(|c| c.operator);
            if !live {
                return None;
            }
            let snapshot = snapshot(&console, &operator, Fresh::Recent).await;
            let html = pages::overview_live(&snapshot).into_string();
            let event = Event::default().event("overview").data(html);
            Some((Ok(event), (console, operator, false)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

// --- calls ---

#[derive(Deserialize)]
struct CallQuery {
    id: Option<String>,
    notice: Option<String>,
    #[serde(flatten)]
    search: CallSearch,
}

/// The calls page's search filters, as `GET /v1/calls` takes them.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct CallSearch {
    system: Option<String>,
    function: Option<String>,
    status: Option<String>,
    key: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
}

impl CallSearch {
    /// The filters as a query string (the cursor too, with `with_cursor`).
    fn query(&self, with_cursor: bool) -> String {
        query_of(&[
            ("system", &self.system),
            ("function", &self.function),
            ("status", &self.status),
            ("key", &self.key),
            ("since", &self.since),
            ("until", &self.until),
            ("cursor", if with_cursor { &self.cursor } else { &None }),
        ])
    }
}

/// The filters that are set (neither absent nor blank, as a form sends an empty
/// field), trimmed, as a query string.
fn query_of(filters: &[(&str, &Option<String>)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in filters {
        if let Some(value) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            query.append_pair(name, value);
        }
    }
    query.finish()
}

/// Calls per page of the calls page's search.
const CALLS_PAGE: usize = 50;

/// The search's page of calls, or the API's refusal in words.
async fn search_calls(
    console: &Console,
    operator: &Operator,
    search: &CallSearch,
) -> Result<Value, String> {
    let uri = format!("/v1/calls?limit={CALLS_PAGE}&{}", search.query(true));
    let answer = console.api(operator, Method::GET, &uri, &[], None).await;
    let page = answer.json();
    if answer.status.is_success() {
        Ok(page)
    } else {
        Err(problem_text(&page))
    }
}

async fn calls_page(
    State(console): State<Console>,
    operator: Operator,
    Query(query): Query<CallQuery>,
) -> Response {
    let id = query.id.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let Some(id) = id else {
        let page = search_calls(&console, &operator, &query.search).await;
        let search = pages::SearchView {
            filters: &query.search,
            page: page.as_ref().ok(),
            error: page.as_ref().err().map(String::as_str),
        };
        return pages::calls(&operator.csrf, None, Some(&search), query.notice.as_deref())
            .into_response();
    };
    let answer = console
        .api(
            &operator,
            Method::GET,
            &format!("/v1/calls/{}", segment(id)),
            &[],
            None,
        )
        .await;
    // A failed or cancelled call answers with a problem; it is still a call. The
    // API decided whether the operator may see it.
    let found = !matches!(answer.status.as_u16(), 400 | 401 | 403 | 404);
    let record = if found {
        console.state.queue.get(id).await.ok().flatten()
    } else {
        None
    };
    let parameters = record
        .as_ref()
        .map(|r| serde_json::to_value(&r.calls).unwrap_or(Value::Null));
    let view = pages::CallView {
        id,
        status: answer.status,
        answer: answer.json(),
        parameters,
        record: record.as_ref(),
    };
    pages::calls(&operator.csrf, Some(&view), None, query.notice.as_deref()).into_response()
}

#[derive(Deserialize)]
struct CancelForm {
    id: Option<String>,
    csrf: Option<String>,
}

async fn cancel_call(
    State(console): State<Console>,
    operator: Operator,
    form: axum::Form<CancelForm>,
) -> Response {
    if !operator.csrf_ok(form.csrf.as_deref()) {
        return csrf_refused();
    }
    let id = form.id.as_deref().unwrap_or("").trim();
    let answer = console
        .api(
            &operator,
            Method::DELETE,
            &format!("/v1/calls/{}", segment(id)),
            &[],
            None,
        )
        .await;
    let notice = if answer.status.is_success() {
        "The call was cancelled.".to_owned()
    } else {
        format!("Not cancelled: {}", problem_text(&answer.json()))
    };
    let to = format!(
        "/console/calls?id={}&notice={}",
        segment(id),
        segment(&notice)
    );
    Redirect::to(&to).into_response()
}

/// A problem+json answer as one line: its title and detail.
fn problem_text(problem: &Value) -> String {
    let title = problem.get("title").and_then(Value::as_str).unwrap_or("");
    let detail = problem.get("detail").and_then(Value::as_str).unwrap_or("");
    match (title, detail) {
        ("", "") => "no answer".to_owned(),
        (t, "") => t.to_owned(),
        ("", d) => d.to_owned(),
        (t, d) => format!("{t}: {d}"),
    }
}

// --- audit ---

/// The audit page's filters, as `GET /v1/audit` takes them.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditFilters {
    system: Option<String>,
    key: Option<String>,
    outcome: Option<String>,
    call_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<String>,
}

impl AuditFilters {
    /// The filters as a query string (the cursor too, with `with_cursor`).
    fn query(&self, with_cursor: bool) -> String {
        query_of(&[
            ("system", &self.system),
            ("key", &self.key),
            ("outcome", &self.outcome),
            ("call_id", &self.call_id),
            ("from", &self.from),
            ("to", &self.to),
            ("cursor", if with_cursor { &self.cursor } else { &None }),
        ])
    }
}

/// Audit records per page.
const AUDIT_PAGE: usize = 50;

async fn audit_page(
    State(console): State<Console>,
    operator: Operator,
    Query(filters): Query<AuditFilters>,
) -> Response {
    let uri = format!("/v1/audit?limit={AUDIT_PAGE}&{}", filters.query(true));
    let answer = console.api(&operator, Method::GET, &uri, &[], None).await;
    let page = answer.json();
    let error = (!answer.status.is_success()).then(|| problem_text(&page));
    pages::audit(&operator.csrf, &filters, &page, error.as_deref()).into_response()
}

/// `GET /console/audit.csv`: the audit log with the page's filters as CSV (up to
/// the API's largest page).
async fn audit_csv(
    State(console): State<Console>,
    operator: Operator,
    Query(filters): Query<AuditFilters>,
) -> Response {
    let uri = format!("/v1/audit?limit=1000&{}", filters.query(false));
    let answer = console
        .api(
            &operator,
            Method::GET,
            &uri,
            &[("accept", "text/csv")],
            None,
        )
        .await;
    if !answer.status.is_success() {
        return (
            answer.status,
            pages::message("Export failed", &problem_text(&answer.json())),
        )
            .into_response();
    }
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"sapbridge-audit.csv\"",
            ),
        ],
        answer.body,
    )
        .into_response();
    if let Some(next) = answer.headers.get(super::audit::NEXT_CURSOR_HEADER) {
        response
            .headers_mut()
            .insert(super::audit::NEXT_CURSOR_HEADER, next.clone());
    }
    response
}

// --- connection test ---

#[derive(Deserialize)]
struct SystemQuery {
    system: Option<String>,
}

async fn test_page(
    State(console): State<Console>,
    operator: Operator,
    Query(query): Query<SystemQuery>,
) -> Response {
    let systems = systems_of(&console, &operator);
    pages::connection_test(&operator.csrf, &systems, query.system.as_deref(), None).into_response()
}

fn systems_of(console: &Console, operator: &Operator) -> Vec<String> {
    console
        .state
        .systems()
        .iter()
        .filter(|s| operator.caller.covers(s))
        .cloned()
        .collect()
}

#[derive(Deserialize)]
struct TestForm {
    system: Option<String>,
    csrf: Option<String>,
}

/// One step of a connection test.
pub(crate) struct Step {
    function: &'static str,
    status: StatusCode,
    answer: Value,
    elapsed: Duration,
}

async fn call_function(
    console: &Console,
    operator: &Operator,
    system: &str,
    function: &str,
    parameters: &Value,
) -> ApiAnswer {
    let wait = format!("wait={WAIT_SECS}");
    let ttl = WAIT_SECS.to_string();
    console
        .api(
            operator,
            Method::POST,
            &format!(
                "/v1/systems/{}/functions/{}",
                segment(system),
                segment(function)
            ),
            // A call nobody took within the wait expires instead of running
            // long after the operator left the page.
            &[("prefer", &wait), ("sapbridge-queue-ttl", &ttl)],
            Some(parameters),
        )
        .await
}

async fn run_test(
    State(console): State<Console>,
    operator: Operator,
    form: axum::Form<TestForm>,
) -> Response {
    if !operator.csrf_ok(form.csrf.as_deref()) {
        return csrf_refused();
    }
    let system = form.system.as_deref().unwrap_or("").trim().to_owned();
    let systems = systems_of(&console, &operator);
    let snapshot = snapshot(&console, &operator, Fresh::Recent).await;
    let online = snapshot.systems.iter().any(|s| {
        s.get("system").and_then(Value::as_str) == Some(system.as_str())
            && s.get("online").and_then(Value::as_bool) == Some(true)
    });
    if systems.contains(&system) && !online {
        // Nothing would take the calls: say so now instead of queueing them.
        let steps = [Step {
            function: "RFC_PING",
            status: StatusCode::SERVICE_UNAVAILABLE,
            answer: json!({
                "title": "No agent online",
                "detail": format!("no agent serving {system} is connected to the relay"),
            }),
            elapsed: Duration::ZERO,
        }];
        return pages::connection_test(&operator.csrf, &systems, Some(&system), Some(&steps))
            .into_response();
    }
    let mut steps = Vec::new();
    for function in ["RFC_PING", "RFC_SYSTEM_INFO"] {
        let answer = call_function(&console, &operator, &system, function, &json!({})).await;
        let ok = answer.status == StatusCode::OK;
        steps.push(Step {
            function,
            status: answer.status,
            answer: answer.json(),
            elapsed: answer.elapsed,
        });
        if !ok {
            break;
        }
    }
    pages::connection_test(&operator.csrf, &systems, Some(&system), Some(&steps)).into_response()
}

// --- function explorer ---

#[derive(Deserialize)]
struct ExplorerQuery {
    system: Option<String>,
    function: Option<String>,
}

async fn interface(
    console: &Console,
    operator: &Operator,
    system: &str,
    function: &str,
) -> ApiAnswer {
    console
        .api(
            operator,
            Method::GET,
            &format!(
                "/v1/systems/{}/functions/{}",
                segment(system),
                segment(function)
            ),
            &[
                ("prefer", &format!("wait={WAIT_SECS}")),
                ("sapbridge-queue-ttl", &WAIT_SECS.to_string()),
            ],
            None,
        )
        .await
}

async fn explorer_page(
    State(console): State<Console>,
    operator: Operator,
    Query(query): Query<ExplorerQuery>,
) -> Response {
    let systems = systems_of(&console, &operator);
    let system = query
        .system
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let function = query
        .function
        .as_deref()
        .map(|f| f.trim().to_ascii_uppercase())
        .filter(|f| !f.is_empty());
    let (Some(system), Some(function)) = (system, function) else {
        return pages::explorer(
            &operator.csrf,
            &systems,
            query.system.as_deref(),
            None,
            None,
        )
        .into_response();
    };
    let answer = interface(&console, &operator, system, &function).await;
    let looked_up = pages::LookedUp {
        system,
        function: &function,
        status: answer.status,
        answer: answer.json(),
    };
    pages::explorer(
        &operator.csrf,
        &systems,
        Some(system),
        Some(&looked_up),
        None,
    )
    .into_response()
}

/// How a form field of the explorer is named: `p.NAME` a scalar, `s.NAME.FIELD`
/// a structure's field, `j.NAME` a structure or table as JSON.
async fn run_function(
    State(console): State<Console>,
    operator: Operator,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> Response {
    let value = |name: &str| {
        form.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if !operator.csrf_ok(value("csrf")) {
        return csrf_refused();
    }
    let systems = systems_of(&console, &operator);
    let system = value("system").unwrap_or("").trim().to_owned();
    let function = value("function").unwrap_or("").trim().to_ascii_uppercase();
    let interface_answer = interface(&console, &operator, &system, &function).await;
    let looked_up = pages::LookedUp {
        system: &system,
        function: &function,
        status: interface_answer.status,
        answer: interface_answer.json(),
    };
    let run = match parameters_of(&looked_up.answer, &form) {
        Ok(parameters) => {
            let answer = call_function(&console, &operator, &system, &function, &parameters).await;
            pages::Run {
                request: parameters,
                status: Some(answer.status),
                answer: answer.json(),
                elapsed: answer.elapsed,
                input_error: None,
            }
        }
        Err(error) => pages::Run {
            request: Value::Null,
            status: None,
            answer: Value::Null,
            elapsed: Duration::ZERO,
            input_error: Some(error),
        },
    };
    pages::explorer(
        &operator.csrf,
        &systems,
        Some(&system),
        Some(&looked_up),
        Some(&(run, form.clone())),
    )
    .into_response()
}

/// Whether an ABAP type is a JSON number in the API (INT types and floats).
pub(crate) fn is_number(abap_type: &str, type_name: &str) -> bool {
    matches!(abap_type, "I" | "b" | "s" | "8" | "F")
        || matches!(type_name, "INT1" | "INT2" | "INT4" | "INT8" | "FLTP")
}

/// The parameters a submitted explorer form names, typed by the interface.
///
/// # Errors
/// A message naming the field whose JSON or number does not parse.
fn parameters_of(interface: &Value, form: &[(String, String)]) -> Result<Value, String> {
    let mut parameters = serde_json::Map::new();
    let empty = Vec::new();
    let declared = interface
        .get("parameters")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let field = |name: &str| {
        form.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    };
    for parameter in declared {
        let name = parameter.get("name").and_then(Value::as_str).unwrap_or("");
        let direction = parameter
            .get("direction")
            .and_then(Value::as_str)
            .unwrap_or("");
        if direction == "exporting" || name.is_empty() {
            continue;
        }
        let kind = parameter.get("type").and_then(Value::as_str).unwrap_or("");
        let abap = parameter
            .get("abap_type")
            .and_then(Value::as_str)
            .unwrap_or("");
        let fields = parameter.get("fields").and_then(Value::as_array);
        if kind == "STRUCTURE" && fields.is_some() && field(&format!("j.{name}")).is_none() {
            let mut structure = serde_json::Map::new();
            for f in fields.into_iter().flatten() {
                let fname = f.get("name").and_then(Value::as_str).unwrap_or("");
                let ftype = f.get("type").and_then(Value::as_str).unwrap_or("");
                let fabap = f.get("abap_type").and_then(Value::as_str).unwrap_or("");
                if let Some(text) = field(&format!("s.{name}.{fname}")) {
                    structure.insert(
                        fname.to_owned(),
                        scalar(&format!("{name}-{fname}"), text, fabap, ftype)?,
                    );
                }
            }
            if !structure.is_empty() {
                parameters.insert(name.to_owned(), Value::Object(structure));
            }
        } else if kind == "STRUCTURE" || kind == "TABLE" {
            if let Some(text) = field(&format!("j.{name}")) {
                let value: Value =
                    serde_json::from_str(text).map_err(|e| format!("{name}: not JSON ({e})"))?;
                parameters.insert(name.to_owned(), value);
            }
        } else if let Some(text) = field(&format!("p.{name}")) {
            parameters.insert(name.to_owned(), scalar(name, text, abap, kind)?);
        }
    }
    Ok(Value::Object(parameters))
}

fn scalar(name: &str, text: &str, abap: &str, kind: &str) -> Result<Value, String> {
    if is_number(abap, kind) {
        if let Ok(n) = text.parse::<i64>() {
            return Ok(json!(n));
        }
        return text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("{name}: {text:?} is not a number"));
    }
    Ok(Value::String(text.to_owned()))
}
