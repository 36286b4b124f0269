//! The console's pages (maud: every value is HTML-escaped unless marked).

use std::collections::BTreeMap;
use std::time::Duration;

use http::StatusCode;
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;
use time::OffsetDateTime;

use super::{AuditFilters, CallSearch, Snapshot, Step, chart, is_number};
use crate::http::render::rfc3339;
use crate::queue::activity::{RefusalCount, minute_of};
use crate::queue::{CallRecord, SystemBacklog};

/// The pages of the navigation: path and name.
const NAV: [(&str, &str); 6] = [
    ("/console/", "Overview"),
    ("/console/calls", "Calls"),
    ("/console/audit", "Audit"),
    ("/console/test", "Connection test"),
    ("/console/explorer", "Function explorer"),
    ("/console/keys", "Keys"),
];

/// A page: `current` is its path in the navigation; `csrf` the session's token
/// (none before sign-in: no navigation).
pub(super) fn layout(title: &str, current: &str, csrf: Option<&str>, body: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · sapbridge console" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    p.brand { "sapbridge console" }
                    @if let Some(csrf) = csrf {
                        nav aria-label="Console pages" {
                            ul {
                                @for (path, name) in NAV {
                                    li {
                                        a href=(path)
                                            aria-current=[(path == current).then_some("page")]
                                            { (name) }
                                    }
                                }
                            }
                        }
                        form.sign-out method="post" action="/console/sign-out" {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A page with a heading and one paragraph (refusals, errors).
pub(super) fn message(title: &str, text: &str) -> Markup {
    layout(
        title,
        "",
        None,
        &html! {
            p { (text) }
            p { a href="/console/" { "Back to the console" } }
        },
    )
}

pub(super) fn sign_in(token: &str, error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        "",
        None,
        &html! {
            @if let Some(error) = error {
                p.error role="alert" #sign-in-error { (error) }
            }
            p { "Sign in with an API key that holds the operator scope (" code { "operator = true" } " in the relay's configuration)." }
            form.stack method="post" action="/console/sign-in" {
                input type="hidden" name="csrf" value=(token);
                label for="key" { "Operator API key" }
                input #key type="password" name="key" required autocomplete="off" spellcheck="false";
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// A duration as the pages show it, in milliseconds.
fn millis(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

pub(super) fn overview(csrf: &str, snapshot: &Snapshot) -> Markup {
    layout(
        "Overview",
        "/console/",
        Some(csrf),
        &html! {
            p.hint { "Updates itself every few seconds." }
            div #overview-live data-live="/console/events" aria-live="polite" {
                (overview_live(snapshot))
            }
        },
    )
}

/// The part of the overview the live updates replace.
pub(super) fn overview_live(snapshot: &Snapshot) -> Markup {
    let now = OffsetDateTime::now_utc();
    let mut attention: Vec<String> = Vec::new();
    for system in &snapshot.systems {
        let name = system.get("system").and_then(Value::as_str).unwrap_or("");
        if !system
            .get("online")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            attention.push(format!(
                "{name}: no agent online — calls wait in the queue until one connects."
            ));
        }
        if let Some(backlog) = snapshot.backlog.get(name) {
            attention.extend(backlog_line(backlog, now));
        }
    }
    if let Some(error) = &snapshot.backlog_error {
        attention.push(format!("The queue store did not answer: {error}"));
    }
    match &snapshot.activity {
        Ok(activity) => attention.extend(refusal_lines(&activity.refusals)),
        Err(error) => attention.push(format!(
            "The queue store did not answer for the last hour's activity: {error}"
        )),
    }
    let now_minute = minute_of(snapshot.now);
    let empty = Vec::new();
    let minutes = snapshot.activity.as_ref().map_or(&empty, |a| &a.calls);
    html! {
        section aria-labelledby="attention-heading" {
            h2 #attention-heading { "Needs attention" }
            @if attention.is_empty() {
                p #attention-none { "Nothing: every system has an agent online and no call waits long." }
            } @else {
                ul #attention {
                    @for item in &attention { li { (item) } }
                }
            }
        }
        section aria-labelledby="systems-heading" {
            h2 #systems-heading { "Systems" }
            table #systems {
                caption { "Systems, their agents and queue" }
                thead { tr {
                    th scope="col" { "System" }
                    th scope="col" { "Status" }
                    th scope="col" { "Agents" }
                    th scope="col" { "Queued" }
                    th scope="col" { "Oldest queued" }
                } }
                tbody {
                    @for system in &snapshot.systems {
                        @let name = system.get("system").and_then(Value::as_str).unwrap_or("");
                        @let online = system.get("online").and_then(Value::as_bool).unwrap_or(false);
                        @let agents = system.get("agents").and_then(Value::as_array).map_or(0, Vec::len);
                        @let backlog = snapshot.backlog.get(name).map(|b| (b.queued, b.oldest));
                        tr data-system=(name) {
                            th scope="row" { (name) }
                            td { @if online { span.ok { "online" } } @else { span.bad { "no agent" } } }
                            td { (agents) }
                            td { (backlog.map_or(0, |b| b.0)) }
                            td { @if let Some((_, oldest)) = backlog {
                                (rfc3339(oldest)) " (" ((now - oldest).whole_seconds()) " s)"
                            } @else { "—" } }
                        }
                    }
                }
            }
        }
        // Not re-read aloud at every live update (its figures change by the
        // minute; the table alone has up to 60 rows): read it by navigating.
        section aria-labelledby="activity-heading" aria-live="off" {
            h2 #activity-heading { "Calls per minute, last hour" }
            p.hint { "Finished calls by the minute they ended; errors are calls that failed or expired. The same figures on every relay sharing the store." }
            div.charts #charts {
                @for (index, system) in snapshot.systems.iter().enumerate() {
                    @let name = system.get("system").and_then(Value::as_str).unwrap_or("");
                    (chart::chart(name, index, &chart::Hour::of(name, minutes, now_minute)))
                }
            }
        }
        section aria-labelledby="agents-heading" {
            h2 #agents-heading { "Agents" }
            table #agents {
                caption { "Connected agent sessions by system" }
                thead { tr {
                    th scope="col" { "System" }
                    th scope="col" { "Agent id (host)" }
                    th scope="col" { "Version" }
                    th scope="col" { "Protocol" }
                    th scope="col" { "Serves" }
                    th scope="col" { "Credits free" }
                    th scope="col" { "In flight" }
                    th scope="col" { "Connected at" }
                    th scope="col" title="Sessions the agent had before this one since it started, on any relay replica" { "Reconnects" }
                    th scope="col" { "Last heard" }
                    th scope="col" { "SAP logon" }
                } }
                tbody {
                    @for system in &snapshot.systems {
                        @let name = system.get("system").and_then(Value::as_str).unwrap_or("");
                        @for agent in system.get("agents").and_then(Value::as_array).into_iter().flatten() {
                            @let text = |k: &str| agent.get(k).map(|v| match v {
                                Value::String(s) => s.clone(),
                                Value::Null => "—".to_owned(),
                                other => other.to_string(),
                            }).unwrap_or_else(|| "—".to_owned());
                            tr.agent {
                                td { (name) }
                                td { (text("agent_id")) }
                                td { (text("agent_version"))
                                    @if agent.get("upgrade_recommended").and_then(Value::as_bool).unwrap_or(false) {
                                        " " span.bad { "(upgrade recommended)" }
                                    }
                                }
                                td { (text("protocol")) }
                                td {
                                    @let functions = agent.get("functions").and_then(Value::as_bool).unwrap_or(false);
                                    @let http = agent.get("http").and_then(Value::as_bool).unwrap_or(false);
                                    (match (functions, http) {
                                        (true, true) => "functions, HTTP",
                                        (true, false) => "functions",
                                        (false, true) => "HTTP",
                                        (false, false) => "—",
                                    })
                                }
                                td { (text("credits")) }
                                td { (text("in_flight")) }
                                td { (text("connected_at")) }
                                td { (agent.get("reconnects").and_then(Value::as_u64).unwrap_or(0)) }
                                td { (text("last_heard_at")) }
                                td { (logon_text(agent.get("logon"))) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A queued call expiring within this many seconds is about to expire.
const EXPIRING_WITHIN_SECS: i64 = 60;
/// A call queued this many seconds is waiting long.
const WAITING_LONG_SECS: i64 = 60;

/// The attention line of a system's queued calls at `now`, if they need any: one
/// about to expire (calls carry TTLs of their own, so the first to expire need
/// not be the oldest), or the oldest waiting long.
pub(super) fn backlog_line(backlog: &SystemBacklog, now: OffsetDateTime) -> Option<String> {
    let name = &backlog.system;
    let queued = backlog.queued;
    let left = (backlog.next_expiry - now).whole_seconds().max(0);
    let age = (now - backlog.oldest).whole_seconds();
    if left <= EXPIRING_WITHIN_SECS {
        Some(format!(
            "{name}: a queued call expires in {left} s unless an agent takes it \
             ({queued} call(s) queued, the oldest for {age} s)."
        ))
    } else if age >= WAITING_LONG_SECS {
        Some(format!(
            "{name}: {queued} call(s) queued, the oldest for {age} s."
        ))
    } else {
        None
    }
}

/// The attention lines of the last hour's refusals: per system (or the relay,
/// for records naming none) and event, how many and of which kind.
pub(super) fn refusal_lines(refusals: &[RefusalCount]) -> Vec<String> {
    let mut grouped: BTreeMap<(Option<&str>, &str), BTreeMap<&str, u64>> = BTreeMap::new();
    for r in refusals.iter().filter(|r| r.count > 0) {
        *grouped
            .entry((r.system.as_deref(), r.event.as_str()))
            .or_default()
            .entry(r.outcome.as_str())
            .or_default() += r.count;
    }
    grouped
        .into_iter()
        .map(|((system, event), outcomes)| {
            let total: u64 = outcomes.values().sum();
            let what = match event {
                "call" => "call(s) refused by the agent's allowlist",
                "request" => "request(s) refused",
                "console-sign-in" => "console sign-in(s) refused",
                _ => "refusal(s)",
            };
            let kinds = outcomes
                .iter()
                .map(|(outcome, n)| format!("{outcome} {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "{}: {total} {what} in the last hour ({kinds}); the audit log has each.",
                system.unwrap_or("Relay")
            )
        })
        .collect()
}

fn logon_text(logon: Option<&Value>) -> String {
    match logon {
        None | Some(Value::Null) => "—".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}: {s}"),
                other => format!("{k}: {other}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        Some(other) => other.to_string(),
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// A call looked up on the calls page.
pub(super) struct CallView<'a> {
    pub(super) id: &'a str,
    pub(super) status: StatusCode,
    pub(super) answer: Value,
    pub(super) parameters: Option<Value>,
    pub(super) record: Option<&'a CallRecord>,
}

/// A search of the calls page: its filters and the API's page (or refusal).
pub(super) struct SearchView<'a> {
    pub(super) filters: &'a CallSearch,
    pub(super) page: Option<&'a Value>,
    pub(super) error: Option<&'a str>,
}

/// The states the search offers.
const STATES: [&str; 6] = [
    "queued",
    "running",
    "succeeded",
    "failed",
    "expired",
    "cancelled",
];

fn call_search(search: &SearchView<'_>) -> Markup {
    let filters = search.filters;
    let items = search
        .page
        .and_then(|p| p.get("items"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let next = search
        .page
        .and_then(|p| p.get("next"))
        .and_then(Value::as_str);
    let input = |id: &str, label: &str, value: &Option<String>, hint: &str| {
        html! {
            div.field {
                label for=(format!("search-{id}")) { (label) }
                input id=(format!("search-{id}")) type="text" name=(id) value=[value.as_deref()]
                    placeholder=(hint) spellcheck="false";
            }
        }
    };
    let selected = filters.status.as_deref().unwrap_or("");
    let query = filters.query(false);
    html! {
        section aria-labelledby="search-heading" {
            h2 #search-heading { "Search calls" }
            form.filters #call-search method="get" action="/console/calls" role="search" aria-label="Search calls" {
                (input("system", "System", &filters.system, "PRD"))
                (input("function", "Function or action", &filters.function, "BAPI_CUSTOMER_GETDETAIL2, customer.get"))
                div.field {
                    label for="search-status" { "Status" }
                    select #search-status name="status" {
                        option value="" selected[selected.is_empty()] { "any" }
                        @for state in STATES {
                            option value=(state) selected[selected == state] { (state) }
                        }
                    }
                }
                (input("key", "API key name", &filters.key, ""))
                (input("since", "Submitted from (RFC 3339)", &filters.since, "2026-01-01T00:00:00Z"))
                (input("until", "Submitted before (RFC 3339)", &filters.until, ""))
                div.actions {
                    button type="submit" #search-submit { "Search" }
                }
            }
            @if let Some(error) = search.error {
                p.error role="alert" #search-error { (error) }
            }
            table #calls {
                caption { "Calls, newest first (" (items.len()) " on this page)" }
                thead { tr {
                    @for column in ["Call", "System", "Function or action", "Status", "Attempts", "Agent", "Submitted", "Completed", "API key"] {
                        th scope="col" { (column) }
                    }
                } }
                tbody {
                    @for item in &items {
                        @let text = |k: &str| match item.get(k) {
                            Some(Value::String(s)) => s.clone(),
                            Some(Value::Null) | None => String::new(),
                            Some(other) => other.to_string(),
                        };
                        @let id = text("id");
                        tr {
                            td { a href=(format!("/console/calls?id={}", super::segment(&id))) { (id) } }
                            td { (text("system")) }
                            td { (text("name")) }
                            td { (text("status")) }
                            td { (text("attempts")) }
                            td { (text("agent")) }
                            td { (text("submitted_at")) }
                            td { (text("completed_at")) }
                            td { (text("key")) }
                        }
                    }
                }
            }
            @if let Some(next) = next {
                p { a #calls-next href=(format!("/console/calls?{query}&cursor={}", super::segment(next))) { "Next page" } }
            }
        }
    }
}

pub(super) fn calls(
    csrf: &str,
    view: Option<&CallView<'_>>,
    search: Option<&SearchView<'_>>,
    notice: Option<&str>,
) -> Markup {
    layout(
        "Calls",
        "/console/calls",
        Some(csrf),
        &html! {
            @if let Some(notice) = notice {
                p.notice role="status" #notice { (notice) }
            }
            form.inline method="get" action="/console/calls" role="search" aria-label="Look up a call by its id" {
                label for="call-id" { "Call id" }
                input #call-id type="text" name="id" value=[view.map(|v| v.id)] required spellcheck="false";
                button type="submit" { "Look up" }
            }
            @if let Some(search) = search {
                (call_search(search))
            } @else {
                p { a href="/console/calls" { "Search calls" } }
            }
            @if let Some(view) = view {
                @if view.status.is_success() || view.record.is_some() {
                    (call_details(csrf, view))
                } @else {
                    p.error role="alert" #call-error {
                        "No call: " (super::problem_text(&view.answer))
                    }
                }
            }
        },
    )
}

fn call_details(csrf: &str, view: &CallView<'_>) -> Markup {
    let answer = &view.answer;
    let field = |k: &str| answer.get(k).and_then(Value::as_str).map(str::to_owned);
    let record = view.record;
    let queued = record.is_some_and(|r| r.state.as_str() == "queued");
    let total = record.and_then(|r| {
        r.completed_at
            .map(|c| (c - r.submitted_at).whole_milliseconds())
    });
    html! {
        section aria-labelledby="call-heading" {
            h2 #call-heading { "Call " code { (view.id) } }
            dl.facts #call-facts {
                dt { "Status" } dd #call-status { (record.map(|r| r.state.as_str().to_owned()).or_else(|| field("status")).unwrap_or_else(|| view.status.to_string())) }
                dt { "System" } dd { (record.map(|r| r.system.clone()).or_else(|| field("system")).unwrap_or_default()) }
                dt { "Function" } dd #call-function { (record.map(|r| r.calls.iter().map(|c| c.function.as_str()).collect::<Vec<_>>().join(", ")).or_else(|| field("function")).unwrap_or_default()) }
                @if let Some(record) = record {
                    dt { "API key" } dd { (record.owner.clone().unwrap_or_else(|| "—".into())) }
                    dt { "Attempts" } dd { (record.attempts) }
                    dt { "Agent" } dd { (record.agent.clone().or_else(|| record.holder.as_ref().map(|h| format!("{} (holds it)", h.agent))).unwrap_or_else(|| "—".into())) }
                    dt { "Queued at" } dd { (rfc3339(record.submitted_at)) }
                    dt { "Expires if not taken" } dd { (rfc3339(record.expires_at)) }
                    dt { "Completed at" } dd { (record.completed_at.map_or_else(|| "—".to_owned(), rfc3339)) }
                    dt { "Total" } dd { (total.map_or_else(|| "—".to_owned(), |ms| format!("{ms} ms"))) }
                }
            }
            @if queued {
                form method="post" action="/console/calls/cancel" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="id" value=(view.id);
                    button type="submit" { "Cancel this queued call" }
                }
            }
            @if let Some(parameters) = &view.parameters {
                h3 { "Parameters" }
                pre.json tabindex="0" aria-label="Parameters" { (pretty(parameters)) }
            }
            h3 { "Result or problem" }
            pre.json #call-answer tabindex="0" aria-label="Answer" { (pretty(answer)) }
        }
    }
}

pub(super) fn audit(
    csrf: &str,
    filters: &AuditFilters,
    page: &Value,
    error: Option<&str>,
) -> Markup {
    let items = page
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let next = page.get("next").and_then(Value::as_str);
    let input = |id: &str, label: &str, value: &Option<String>, hint: &str| {
        html! {
            div.field {
                label for=(format!("audit-{id}")) { (label) }
                input id=(format!("audit-{id}")) type="text" name=(id) value=[value.as_deref()]
                    placeholder=(hint) spellcheck="false";
            }
        }
    };
    let query = filters.query(false);
    html! {
        (layout("Audit", "/console/audit", Some(csrf), &html! {
            form.filters method="get" action="/console/audit" role="search" aria-label="Filter the audit log" {
                (input("system", "System", &filters.system, "PRD"))
                (input("key", "API key name", &filters.key, ""))
                (input("outcome", "Outcome", &filters.outcome, "succeeded, not-allowed, …"))
                (input("call_id", "Call id", &filters.call_id, "c_…"))
                (input("from", "From (RFC 3339)", &filters.from, "2026-01-01T00:00:00Z"))
                (input("to", "To (RFC 3339)", &filters.to, ""))
                div.actions {
                    button type="submit" { "Filter" }
                    a #audit-csv href=(format!("/console/audit.csv?{query}")) download { "Export CSV" }
                }
            }
            @if let Some(error) = error {
                p.error role="alert" { (error) }
            }
            table #audit {
                caption { "Audit records, oldest first (" (items.len()) " on this page)" }
                thead { tr {
                    @for column in ["Time", "Event", "Key", "Client", "System", "Method", "Target", "Call", "Outcome", "Status", "ms", "Agent"] {
                        th scope="col" { (column) }
                    }
                } }
                tbody {
                    @for item in &items {
                        @let text = |k: &str| match item.get(k) {
                            Some(Value::String(s)) => s.clone(),
                            Some(Value::Null) | None => String::new(),
                            Some(other) => other.to_string(),
                        };
                        tr {
                            td { (text("time")) }
                            td { (text("event")) }
                            td { (text("key")) }
                            td { (text("client")) }
                            td { (text("system")) }
                            td { (text("method")) }
                            td.target { (text("target")) }
                            td { @let id = text("call_id");
                                @if id.is_empty() { "" } @else {
                                    a href=(format!("/console/calls?id={}", super::segment(&id))) { (id) }
                                }
                            }
                            td { (text("outcome")) }
                            td { (text("status")) }
                            td { (text("duration_ms")) }
                            td { (text("agent")) }
                        }
                    }
                }
            }
            @if let Some(next) = next {
                p { a #audit-next href=(format!("/console/audit?{query}&cursor={}", super::segment(next))) { "Next page" } }
            }
        }))
    }
}

fn system_select(id: &str, systems: &[String], selected: Option<&str>) -> Markup {
    html! {
        label for=(id) { "System" }
        select id=(id) name="system" required {
            @for system in systems {
                option value=(system) selected[selected == Some(system.as_str())] { (system) }
            }
        }
    }
}

/// What to check when a step of the connection test failed.
fn advice(status: StatusCode, answer: &Value) -> &'static str {
    let kind = answer.get("type").and_then(Value::as_str).unwrap_or("");
    match (status.as_u16(), kind) {
        (_, "/problems/not-allowed") => {
            "The agent's allowlist refuses this function: add RFC_PING and RFC_SYSTEM_INFO to the agent's [allowlist] functions."
        }
        (_, "/problems/forbidden") => "The API key does not cover this system.",
        (_, "/problems/unknown-system") | (404, _) => {
            "No agent token names this system: check the relay's agent_tokens."
        }
        (202, _) | (503, _) | (504, _) => {
            "No agent took the call in time: start the agent for this system and check that it reaches the relay (sapbridge doctor on the agent host)."
        }
        (_, k) if k.contains("logon") || k.contains("communication") => {
            "The agent could not reach SAP: check the agent's SAP connection (host, system number, router string, user and password)."
        }
        (_, "/problems/not-authorized") => {
            "SAP refused the agent's user: it needs S_RFC authorization for these functions."
        }
        _ => "See the problem above; the audit log has the request under your key.",
    }
}

pub(super) fn connection_test(
    csrf: &str,
    systems: &[String],
    selected: Option<&str>,
    steps: Option<&[Step]>,
) -> Markup {
    layout(
        "Connection test",
        "/console/test",
        Some(csrf),
        &html! {
            p { "Runs " code { "RFC_PING" } " and " code { "RFC_SYSTEM_INFO" } " through the system's agent, as an API call would." }
            form.inline method="post" action="/console/test" {
                input type="hidden" name="csrf" value=(csrf);
                (system_select("test-system", systems, selected))
                button #run-test type="submit" { "Test connection" }
            }
            @if let Some(steps) = steps {
                section #test-result aria-labelledby="test-heading" aria-live="polite" {
                    h2 #test-heading { "Result for " (selected.unwrap_or("")) }
                    @let all_ok = steps.len() == 2 && steps.iter().all(|s| s.status == StatusCode::OK);
                    @if all_ok {
                        @let info = steps[1].answer.get("result").and_then(|r| r.get("RFCSI_EXPORT"));
                        @let info_field = |k: &str| info.and_then(|i| i.get(k)).and_then(Value::as_str).unwrap_or("—").trim().to_owned();
                        p.ok role="status" #test-ok { "Connected. Round trip of RFC_PING: " (millis(steps[0].elapsed)) "." }
                        dl.facts {
                            dt { "SAP release" } dd #test-release { (info_field("RFCSAPRL")) }
                            dt { "System id" } dd { (info_field("RFCSYSID")) }
                            dt { "Host" } dd { (info_field("RFCHOST")) }
                            dt { "Database" } dd { (info_field("RFCDBSYS")) }
                            dt { "RFC_SYSTEM_INFO round trip" } dd { (millis(steps[1].elapsed)) }
                        }
                    } @else {
                        @for step in steps {
                            @if step.status != StatusCode::OK {
                                p.error role="alert" #test-error {
                                    (step.function) " failed (HTTP " (step.status.as_u16()) "): " (super::problem_text(&step.answer))
                                }
                                p { strong { "What to check: " } (advice(step.status, &step.answer)) }
                                pre.json tabindex="0" aria-label="Answer" { (pretty(&step.answer)) }
                            } @else {
                                p.ok { (step.function) " answered in " (millis(step.elapsed)) "." }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// A function looked up in the explorer.
pub(super) struct LookedUp<'a> {
    pub(super) system: &'a str,
    pub(super) function: &'a str,
    pub(super) status: StatusCode,
    pub(super) answer: Value,
}

/// A run of the function from the explorer.
pub(super) struct Run {
    pub(super) request: Value,
    pub(super) status: Option<StatusCode>,
    pub(super) answer: Value,
    pub(super) elapsed: Duration,
    pub(super) input_error: Option<String>,
}

fn refusal(status: StatusCode, answer: &Value) -> Markup {
    let allowlist = answer.get("type").and_then(Value::as_str) == Some("/problems/not-allowed");
    html! {
        @if allowlist {
            p.error role="alert" #explorer-refused {
                strong { "Refused by the agent's allowlist. " }
                (super::problem_text(answer))
            }
        } @else {
            p.error role="alert" #explorer-error {
                "HTTP " (status.as_u16()) ": " (super::problem_text(answer))
            }
        }
    }
}

pub(super) fn explorer(
    csrf: &str,
    systems: &[String],
    selected: Option<&str>,
    looked_up: Option<&LookedUp<'_>>,
    run: Option<&(Run, Vec<(String, String)>)>,
) -> Markup {
    layout(
        "Function explorer",
        "/console/explorer",
        Some(csrf),
        &html! {
            form.inline method="get" action="/console/explorer" role="search" {
                (system_select("explorer-system", systems, selected))
                label for="explorer-function" { "Function module" }
                input #explorer-function type="text" name="function" required spellcheck="false"
                    value=[looked_up.map(|l| l.function)] placeholder="BAPI_CUSTOMER_GETDETAIL2";
                button type="submit" { "Look up" }
            }
            @if let Some(looked_up) = looked_up {
                @if looked_up.status == StatusCode::OK {
                    (function_form(csrf, looked_up, run.map(|r| r.1.as_slice())))
                } @else {
                    (refusal(looked_up.status, &looked_up.answer))
                }
            }
            @if let Some((run, _)) = run {
                section #run-result aria-labelledby="run-heading" {
                    h2 #run-heading { "Run" }
                    @if let Some(error) = &run.input_error {
                        p.error role="alert" { (error) }
                    } @else {
                        @if let Some(status) = run.status {
                            @if status == StatusCode::OK {
                                p.ok role="status" #run-ok { "Answered in " (millis(run.elapsed)) "." }
                            } @else {
                                (refusal(status, &run.answer))
                            }
                        }
                        h3 { "Request, for a flow" }
                        @if let Some(looked_up) = looked_up {
                            p { code { "POST /v1/systems/" (looked_up.system) "/functions/" (looked_up.function) } }
                        }
                        pre.json #request-json tabindex="0" aria-label="Request body" { (pretty(&run.request)) }
                        button.copy type="button" data-copy="request-json" { "Copy request" }
                        h3 { "Answer" }
                        pre.json #run-answer tabindex="0" aria-label="Answer" { (pretty(&run.answer)) }
                    }
                }
            }
        },
    )
}

fn function_form(
    csrf: &str,
    looked_up: &LookedUp<'_>,
    sent: Option<&[(String, String)]>,
) -> Markup {
    let empty = Vec::new();
    let parameters = looked_up
        .answer
        .get("parameters")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let previous = |name: &str| -> Option<String> {
        sent.and_then(|s| s.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()))
    };
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    html! {
        section aria-labelledby="interface-heading" {
            h2 #interface-heading { (looked_up.function) " on " (looked_up.system) }
            form.stack #function-form method="post" action="/console/explorer" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="system" value=(looked_up.system);
                input type="hidden" name="function" value=(looked_up.function);
                @for parameter in parameters {
                    @let name = text(parameter, "name");
                    @let direction = text(parameter, "direction");
                    @let kind = text(parameter, "type");
                    @let abap = text(parameter, "abap_type");
                    @let optional = parameter.get("optional").and_then(Value::as_bool).unwrap_or(true);
                    @let description = text(parameter, "description");
                    @let fields = parameter.get("fields").and_then(Value::as_array);
                    @if direction != "exporting" {
                        @if kind == "STRUCTURE" && fields.is_some() {
                            fieldset {
                                legend { (name) " (" (text(parameter, "type_name")) ", " (direction) ")"
                                    @if !description.is_empty() { " — " (description) } }
                                @for field in fields.into_iter().flatten() {
                                    @let fname = text(field, "name");
                                    @let id = format!("s-{name}-{fname}");
                                    @let key = format!("s.{name}.{fname}");
                                    div.field {
                                        label for=(id) { (fname) " " span.type { (text(field, "type")) } }
                                        input id=(id) name=(key) type="text" spellcheck="false"
                                            inputmode=[is_number(&text(field, "abap_type"), &text(field, "type")).then_some("numeric")]
                                            value=[previous(&key)];
                                    }
                                }
                            }
                        } @else if kind == "STRUCTURE" || kind == "TABLE" {
                            @let id = format!("j-{name}");
                            @let key = format!("j.{name}");
                            div.field {
                                label for=(id) { (name) " (" (kind) " " (text(parameter, "type_name")) ", " (direction) ", JSON)" }
                                textarea id=(id) name=(key) rows="4" spellcheck="false"
                                    aria-describedby=(format!("{id}-hint")) { (previous(&key).unwrap_or_default()) }
                                span.hint id=(format!("{id}-hint")) {
                                    @if kind == "TABLE" { "An array of rows (objects), e.g. [] " } @else { "An object " }
                                    @if let Some(fields) = fields {
                                        "with fields " (fields.iter().map(|f| text(f, "name")).collect::<Vec<_>>().join(", "))
                                    }
                                }
                            }
                        } @else {
                            @let id = format!("p-{name}");
                            @let key = format!("p.{name}");
                            div.field {
                                label for=(id) {
                                    (name) " " span.type { (kind) "(" (parameter.get("length").map(Value::to_string).unwrap_or_default()) ")" }
                                    @if !optional { " " span.required { "required" } }
                                }
                                input id=(id) name=(key) type="text" spellcheck="false"
                                    required[!optional]
                                    inputmode=[is_number(&abap, &kind).then_some("numeric")]
                                    value=[previous(&key)]
                                    placeholder=[parameter.get("default").and_then(Value::as_str)];
                                @if !description.is_empty() { span.hint { (description) } }
                            }
                        }
                    }
                }
                button #run-function type="submit" { "Run " (looked_up.function) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(system: Option<&str>, event: &str, outcome: &str, count: u64) -> RefusalCount {
        RefusalCount {
            system: system.map(str::to_owned),
            event: event.into(),
            outcome: outcome.into(),
            count,
        }
    }

    #[test]
    fn refusals_are_said_per_system_and_kind() {
        let lines = refusal_lines(&[
            refusal(Some("PRD"), "request", "rate-limited", 1),
            refusal(Some("PRD"), "request", "forbidden", 4),
            refusal(Some("PRD"), "call", "not-allowed", 3),
            refusal(None, "console-sign-in", "unauthorized", 2),
            refusal(Some("QAS"), "request", "forbidden", 0),
        ]);
        assert_eq!(
            lines,
            [
                "Relay: 2 console sign-in(s) refused in the last hour (unauthorized 2); \
                 the audit log has each.",
                "PRD: 3 call(s) refused by the agent's allowlist in the last hour \
                 (not-allowed 3); the audit log has each.",
                "PRD: 5 request(s) refused in the last hour (forbidden 4, rate-limited 1); \
                 the audit log has each.",
            ]
        );
        assert!(refusal_lines(&[]).is_empty());
    }

    #[test]
    fn queued_calls_about_to_expire_or_waiting_long_are_said() {
        let now = OffsetDateTime::now_utc();
        let backlog = |age: i64, left: i64| SystemBacklog {
            system: "PRD".into(),
            queued: 3,
            oldest: now - time::Duration::seconds(age),
            next_expiry: now + time::Duration::seconds(left),
        };
        // A young call with a short TTL of its own: about to expire.
        assert_eq!(
            backlog_line(&backlog(5, 25), now).as_deref(),
            Some(
                "PRD: a queued call expires in 25 s unless an agent takes it \
                 (3 call(s) queued, the oldest for 5 s)."
            )
        );
        assert!(
            backlog_line(&backlog(70, -3), now)
                .is_some_and(|l| l.starts_with("PRD: a queued call expires in 0 s"))
        );
        assert_eq!(
            backlog_line(&backlog(90, 600), now).as_deref(),
            Some("PRD: 3 call(s) queued, the oldest for 90 s.")
        );
        assert_eq!(backlog_line(&backlog(5, 600), now), None);
    }
}
