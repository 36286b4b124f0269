//! The console's Keys page: the API keys and agent tokens of the configuration
//! and of the store, with when each was last used; create one (the secret shown
//! once) or revoke a stored one. Everything goes through `/v1/admin/keys` and
//! `/v1/admin/agent-tokens` on the operator's behalf.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::{Method, StatusCode};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::pages::layout;
use super::{Console, Operator, csrf_refused, problem_text, segment};

/// What the Keys page manages: API keys or agent tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Key,
    Token,
}

impl Kind {
    fn api(self) -> &'static str {
        match self {
            Self::Key => "/v1/admin/keys",
            Self::Token => "/v1/admin/agent-tokens",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Token => "agent token",
        }
    }
}

/// The keys and tokens listed, or why a list is missing.
struct Lists {
    keys: Vec<Value>,
    tokens: Vec<Value>,
    error: Option<String>,
}

async fn list(console: &Console, operator: &Operator, kind: Kind) -> Result<Vec<Value>, String> {
    let answer = console
        .api(operator, Method::GET, kind.api(), &[], None)
        .await;
    let body = answer.json();
    if answer.status.is_success() {
        Ok(body
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    } else {
        Err(problem_text(&body))
    }
}

async fn lists(console: &Console, operator: &Operator) -> Lists {
    let keys = list(console, operator, Kind::Key).await;
    let tokens = list(console, operator, Kind::Token).await;
    let error = keys.as_ref().err().or(tokens.as_ref().err()).cloned();
    Lists {
        keys: keys.unwrap_or_default(),
        tokens: tokens.unwrap_or_default(),
        error,
    }
}

#[derive(Deserialize)]
pub(super) struct KeysQuery {
    notice: Option<String>,
}

/// `GET /console/keys`.
pub(super) async fn page(
    State(console): State<Console>,
    operator: Operator,
    Query(query): Query<KeysQuery>,
) -> Response {
    let lists = lists(&console, &operator).await;
    let notice = lists.error.clone().or(query.notice);
    render(&operator.csrf, &lists, None, notice.as_deref()).into_response()
}

#[derive(Deserialize)]
pub(super) struct NewForm {
    csrf: Option<String>,
    name: Option<String>,
    systems: Option<String>,
    operator: Option<String>,
}

/// `POST /console/keys`: creates an API key.
pub(super) async fn create_key(
    State(console): State<Console>,
    operator: Operator,
    form: axum::Form<NewForm>,
) -> Response {
    create(&console, &operator, &form, Kind::Key).await
}

/// `POST /console/keys/tokens`: creates an agent token.
pub(super) async fn create_token(
    State(console): State<Console>,
    operator: Operator,
    form: axum::Form<NewForm>,
) -> Response {
    create(&console, &operator, &form, Kind::Token).await
}

async fn create(console: &Console, operator: &Operator, form: &NewForm, kind: Kind) -> Response {
    if !operator.csrf_ok(form.csrf.as_deref()) {
        return csrf_refused();
    }
    let systems: Vec<&str> = form
        .systems
        .as_deref()
        .unwrap_or("")
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut body = json!({
        "name": form.name.as_deref().unwrap_or("").trim(),
        "systems": systems,
    });
    if kind == Kind::Key {
        body["operator"] = json!(form.operator.is_some());
    }
    let answer = console
        .api(operator, Method::POST, kind.api(), &[], Some(&body))
        .await;
    let created = answer.json();
    let lists = lists(console, operator).await;
    if answer.status == StatusCode::CREATED {
        render(&operator.csrf, &lists, Some((kind, &created)), None).into_response()
    } else {
        let notice = format!("Not created: {}", problem_text(&created));
        render(&operator.csrf, &lists, None, Some(&notice)).into_response()
    }
}

#[derive(Deserialize)]
pub(super) struct RevokeForm {
    csrf: Option<String>,
    name: Option<String>,
}

/// `POST /console/keys/revoke`: revokes a stored API key.
pub(super) async fn revoke_key(
    State(console): State<Console>,
    operator: Operator,
    form: axum::Form<RevokeForm>,
) -> Response {
    revoke(&console, &operator, &form, Kind::Key).await
}

/// `POST /console/keys/tokens/revoke`: revokes a stored agent token (its agents
/// are disconnected).
pub(super) async fn revoke_token(
    State(console): State<Console>,
    operator: Operator,
    form: axum::Form<RevokeForm>,
) -> Response {
    revoke(&console, &operator, &form, Kind::Token).await
}

async fn revoke(console: &Console, operator: &Operator, form: &RevokeForm, kind: Kind) -> Response {
    if !operator.csrf_ok(form.csrf.as_deref()) {
        return csrf_refused();
    }
    let name = form.name.as_deref().unwrap_or("");
    let answer = console
        .api(
            operator,
            Method::DELETE,
            &format!("{}/{}", kind.api(), segment(name)),
            &[],
            None,
        )
        .await;
    let notice = if answer.status.is_success() {
        format!("The {} {name} was revoked.", kind.noun())
    } else {
        format!("Not revoked: {}", problem_text(&answer.json()))
    };
    Redirect::to(&format!("/console/keys?notice={}", segment(&notice))).into_response()
}

/// The revoke button's name for screen readers (and the browser test).
fn revoke_label(kind: Kind, name: &str) -> String {
    match kind {
        Kind::Key => format!("Revoke {name}"),
        Kind::Token => format!("Revoke agent token {name}"),
    }
}

fn text(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "—".to_owned(),
        Some(other) => other.to_string(),
    }
}

fn render(
    csrf: &str,
    lists: &Lists,
    created: Option<(Kind, &Value)>,
    notice: Option<&str>,
) -> Markup {
    layout(
        "Keys",
        "/console/keys",
        Some(csrf),
        &html! {
            @if let Some(notice) = notice {
                p.notice role="status" #notice { (notice) }
            }
            @if let Some((kind, created)) = created {
                @let (what, field, id, label) = match kind {
                    Kind::Key => ("Key", "key", "new-key", "The new API key"),
                    Kind::Token => ("Agent token", "token", "new-token", "The new agent token"),
                };
                section #created aria-labelledby="created-heading" {
                    h2 #created-heading { (what) " " (text(created, "name")) " created" }
                    p { strong { "Copy it now: it is not shown again." } " Only its SHA-256 is stored." }
                    pre.json id=(id) tabindex="0" aria-label=(label) { (text(created, field)) }
                    button.copy type="button" data-copy=(id) { "Copy " (kind.noun()) }
                }
            }
            section aria-labelledby="create-heading" {
                h2 #create-heading { "Create a key" }
                form.stack method="post" action="/console/keys" {
                    input type="hidden" name="csrf" value=(csrf);
                    div.field {
                        label for="key-name" { "Name" }
                        input #key-name type="text" name="name" required pattern="[A-Za-z0-9._\\-]{1,64}"
                            aria-describedby="key-name-hint" spellcheck="false";
                        span.hint #key-name-hint { "1 to 64 letters, digits, '.', '_' or '-'; recorded in the audit log." }
                    }
                    div.field {
                        label for="key-systems" { "Systems" }
                        input #key-systems type="text" name="systems" required aria-describedby="key-systems-hint" spellcheck="false";
                        span.hint #key-systems-hint { "Separated by commas; * for all." }
                    }
                    div.check {
                        input #key-operator type="checkbox" name="operator" value="true";
                        label for="key-operator" { " Operator scope (audit log, every key's calls, keys, this console)" }
                    }
                    button #create-key type="submit" { "Create key" }
                }
            }
            section aria-labelledby="keys-heading" {
                h2 #keys-heading { "Keys" }
                (table(csrf, Kind::Key, &lists.keys))
            }
            section aria-labelledby="create-token-heading" {
                h2 #create-token-heading { "Create an agent token" }
                form.stack method="post" action="/console/keys/tokens" {
                    input type="hidden" name="csrf" value=(csrf);
                    div.field {
                        label for="token-name" { "Name" }
                        input #token-name type="text" name="name" required pattern="[A-Za-z0-9._\\-]{1,64}"
                            aria-describedby="token-name-hint" spellcheck="false";
                        span.hint #token-name-hint { "1 to 64 letters, digits, '.', '_' or '-'; shown with the agent's sessions." }
                    }
                    div.field {
                        label for="token-systems" { "Systems" }
                        input #token-systems type="text" name="systems" required aria-describedby="token-systems-hint" spellcheck="false";
                        span.hint #token-systems-hint { "The systems its agent may serve, separated by commas (no *); a new name becomes a system of the relay." }
                    }
                    button #create-token type="submit" { "Create agent token" }
                }
            }
            section aria-labelledby="tokens-heading" {
                h2 #tokens-heading { "Agent tokens" }
                (table(csrf, Kind::Token, &lists.tokens))
            }
        },
    )
}

fn table(csrf: &str, kind: Kind, items: &[Value]) -> Markup {
    let (id, caption, action) = match kind {
        Kind::Key => (
            "keys",
            "API keys of the configuration and of the store (never the keys themselves)",
            "/console/keys/revoke",
        ),
        Kind::Token => (
            "tokens",
            "Agent tokens of the configuration and of the store (never the tokens themselves); revoking one disconnects its agents",
            "/console/keys/tokens/revoke",
        ),
    };
    let mut columns = vec!["Name", "Source", "Systems"];
    if kind == Kind::Key {
        columns.push("Operator");
    }
    columns.extend(["Created", "By", "Revoked", "Last used", "Action"]);
    html! {
        table id=(id) {
            caption { (caption) }
            thead { tr {
                @for column in &columns { th scope="col" { (column) } }
            } }
            tbody {
                @for item in items {
                    @let name = text(item, "name");
                    @let systems = item.get("systems").and_then(Value::as_array)
                        .map(|s| s.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                        .unwrap_or_default();
                    @let revocable = item.get("source").and_then(Value::as_str) == Some("store")
                        && item.get("revoked_at").is_some_and(Value::is_null);
                    tr data-key=[(kind == Kind::Key).then_some(&name)]
                        data-token=[(kind == Kind::Token).then_some(&name)] {
                        th scope="row" { (name) }
                        td { (text(item, "source")) }
                        td { (systems) }
                        @if kind == Kind::Key {
                            td { @if item.get("operator").and_then(Value::as_bool).unwrap_or(false) { "yes" } @else { "no" } }
                        }
                        td { (text(item, "created_at")) }
                        td { (text(item, "created_by")) }
                        td { (text(item, "revoked_at")) }
                        td.last-used { (text(item, "last_used_at")) }
                        td {
                            @if revocable {
                                form method="post" action=(action) {
                                    input type="hidden" name="csrf" value=(csrf);
                                    input type="hidden" name="name" value=(name);
                                    button type="submit" aria-label=(revoke_label(kind, &name)) { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
