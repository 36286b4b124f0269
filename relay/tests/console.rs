//! The operator console's security at the HTTP level: no page nor live stream
//! without a session, sign-in only with an operator key, CSRF tokens checked on
//! every form, the security headers on every answer, the session cookie's
//! attributes, expiry and sign-out; and its pages against a relay whose system is
//! served by a simulator agent (connection test, explorer, calls, audit CSV).

mod common;

use std::time::{Duration, Instant};

use common::business::{SYSTEM, business_config};
use common::sim_agent::SimAgent;
use common::{API_KEY, STEP, TestRelay, config_json};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

/// An API key with the operator scope.
const OPERATOR_KEY: &str = "test-key-operator";

fn with_operator(mut config: Value) -> Value {
    config["api_keys"]
        .as_array_mut()
        .expect("api_keys")
        .push(json!({"name": "ops", "key": OPERATOR_KEY, "systems": ["*"], "operator": true}));
    config
}

/// A client that neither follows redirects nor keeps cookies (the test does).
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The `Set-Cookie` header of `name`, whole.
fn set_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// The value a `Set-Cookie` header sets.
fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .and_then(|pair| pair.split_once('='))
        .map(|(_, v)| v.to_owned())
        .expect("name=value")
}

/// The value of the first hidden `csrf` input of a page.
fn csrf_of(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).expect("a csrf field") + marker.len();
    let end = html[start..].find('"').expect("end of value");
    html[start..start + end].to_owned()
}

/// A signed-in operator: the session cookie and the session's CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

/// Gets the sign-in form: its token and the cookie carrying it.
async fn sign_in_form(relay: &TestRelay) -> (String, String) {
    let page = client()
        .get(relay.url_of("/console/sign-in"))
        .send()
        .await
        .expect("GET sign-in");
    assert_eq!(page.status(), StatusCode::OK);
    let cookie = set_cookie(page.headers(), "sapbridge_console_signin").expect("sign-in cookie");
    let html = page.text().await.expect("body");
    (csrf_of(&html), cookie_value(&cookie))
}

async fn post_sign_in(relay: &TestRelay, key: &str, csrf: &str, cookie: &str) -> reqwest::Response {
    client()
        .post(relay.url_of("/console/sign-in"))
        .header("cookie", format!("sapbridge_console_signin={cookie}"))
        .form(&[("key", key), ("csrf", csrf)])
        .send()
        .await
        .expect("POST sign-in")
}

async fn sign_in(relay: &TestRelay) -> Session {
    let (csrf, cookie) = sign_in_form(relay).await;
    let answer = post_sign_in(relay, OPERATOR_KEY, &csrf, &cookie).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(answer.headers()[LOCATION], "/console/");
    let set = set_cookie(answer.headers(), "sapbridge_console").expect("session cookie");
    let cookie = cookie_value(&set);
    let page = get(relay, &cookie, "/console/").await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("body");
    Session {
        cookie,
        csrf: csrf_of(&html),
    }
}

async fn get(relay: &TestRelay, cookie: &str, path: &str) -> reqwest::Response {
    client()
        .get(relay.url_of(path))
        .header("cookie", format!("sapbridge_console={cookie}"))
        .send()
        .await
        .expect("GET")
}

async fn post(
    relay: &TestRelay,
    cookie: &str,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    client()
        .post(relay.url_of(path))
        .header("cookie", format!("sapbridge_console={cookie}"))
        .form(form)
        .send()
        .await
        .expect("POST")
}

const PAGES: &[&str] = &[
    "/console/",
    "/console/calls",
    "/console/calls?id=c_x",
    "/console/audit",
    "/console/audit.csv",
    "/console/test",
    "/console/explorer",
    "/console/explorer?system=PRD",
    "/console/keys",
];

fn assert_signs_in(answer: &reqwest::Response, what: &str) {
    assert_eq!(answer.status(), StatusCode::SEE_OTHER, "{what}");
    assert_eq!(answer.headers()[LOCATION], "/console/sign-in", "{what}");
}

#[tokio::test]
async fn no_page_form_or_stream_without_a_session() {
    let relay = TestRelay::start_with(with_operator(config_json())).await;
    for path in PAGES {
        let answer = client().get(relay.url_of(path)).send().await.expect("GET");
        assert_signs_in(&answer, path);
        // A made-up session is no session.
        let answer = get(&relay, "made-up", path).await;
        assert_signs_in(&answer, path);
    }
    for (path, form) in [
        ("/console/test", vec![("system", "PRD"), ("csrf", "x")]),
        ("/console/calls/cancel", vec![("id", "c_x"), ("csrf", "x")]),
        (
            "/console/explorer",
            vec![("system", "PRD"), ("function", "RFC_PING"), ("csrf", "x")],
        ),
        ("/console/sign-out", vec![("csrf", "x")]),
        (
            "/console/keys",
            vec![("name", "x"), ("systems", "*"), ("csrf", "x")],
        ),
        ("/console/keys/revoke", vec![("name", "x"), ("csrf", "x")]),
        (
            "/console/keys/tokens",
            vec![("name", "x"), ("systems", "PRD"), ("csrf", "x")],
        ),
        (
            "/console/keys/tokens/revoke",
            vec![("name", "x"), ("csrf", "x")],
        ),
    ] {
        let answer = post(&relay, "made-up", path, &form).await;
        assert_signs_in(&answer, path);
    }
    let stream = client()
        .get(relay.url_of("/console/events"))
        .send()
        .await
        .expect("GET events");
    assert_eq!(stream.status(), StatusCode::UNAUTHORIZED);
    // An API key is no session either.
    let answer = client()
        .get(relay.url_of("/console/"))
        .bearer_auth(OPERATOR_KEY)
        .send()
        .await
        .expect("GET");
    assert_signs_in(&answer, "with an API key header");
    relay.stop().await;
}

fn assert_security_headers(headers: &HeaderMap, what: &str) {
    let csp = headers["content-security-policy"].to_str().expect("CSP");
    assert!(csp.contains("default-src 'self'"), "{what}: {csp}");
    assert!(csp.contains("script-src 'self'"), "{what}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{what}: {csp}"
    );
    assert_eq!(headers["x-frame-options"], "DENY", "{what}");
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(headers["referrer-policy"], "no-referrer", "{what}");
    assert_eq!(headers["cache-control"], "no-store", "{what}");
}

/// Every `<script` of a page loads a file: none is inline.
fn assert_no_inline_script(html: &str, what: &str) {
    for (at, _) in html.match_indices("<script") {
        let tag_end = html[at..].find('>').expect("end of tag") + at;
        assert!(
            html[at..tag_end].contains(" src=\"/console/assets/"),
            "{what}: inline script"
        );
        assert!(
            html[tag_end..].starts_with("></script>"),
            "{what}: script with a body"
        );
    }
    assert!(
        !html.contains(" onclick=") && !html.contains(" onload="),
        "{what}: handler attribute"
    );
}

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_no_inline_script() {
    let relay = TestRelay::start_with(with_operator(config_json())).await;
    let sign_in_page = client()
        .get(relay.url_of("/console/sign-in"))
        .send()
        .await
        .expect("GET");
    assert_security_headers(sign_in_page.headers(), "sign-in");
    assert_no_inline_script(&sign_in_page.text().await.expect("body"), "sign-in");
    let redirect = client()
        .get(relay.url_of("/console/"))
        .send()
        .await
        .expect("GET");
    assert_security_headers(redirect.headers(), "redirect");
    let session = sign_in(&relay).await;
    for path in PAGES {
        let page = get(&relay, &session.cookie, path).await;
        assert!(page.status().is_success(), "{path}: {}", page.status());
        assert_security_headers(page.headers(), path);
        if !path.ends_with(".csv") {
            assert_no_inline_script(&page.text().await.expect("body"), path);
        }
    }
    for (path, kind) in [
        ("/console/assets/console.js", "text/javascript"),
        ("/console/assets/console.css", "text/css"),
    ] {
        let asset = client().get(relay.url_of(path)).send().await.expect("GET");
        assert_eq!(asset.status(), StatusCode::OK);
        assert_security_headers(asset.headers(), path);
        assert!(
            asset.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
    }
    relay.stop().await;
}

#[tokio::test]
async fn sign_in_needs_an_operator_key_and_the_forms_token() {
    let relay = TestRelay::start_with(with_operator(config_json())).await;
    let (csrf, cookie) = sign_in_form(&relay).await;
    // The sign-in form's own token, in the form and in its cookie.
    let answer = post_sign_in(&relay, OPERATOR_KEY, "wrong", &cookie).await;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(answer.headers(), "sapbridge_console").is_none());
    let answer = client()
        .post(relay.url_of("/console/sign-in"))
        .form(&[("key", OPERATOR_KEY), ("csrf", csrf.as_str())])
        .send()
        .await
        .expect("POST");
    assert_eq!(
        answer.status(),
        StatusCode::FORBIDDEN,
        "token without its cookie"
    );
    // A key without the operator scope, and an unknown key.
    let answer = post_sign_in(&relay, API_KEY, &csrf, &cookie).await;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(answer.headers(), "sapbridge_console").is_none());
    assert!(answer.text().await.unwrap().contains("operator scope"));
    let answer = post_sign_in(&relay, "no-such-key", &csrf, &cookie).await;
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(answer.headers(), "sapbridge_console").is_none());
    // The operator key: a session cookie as the console needs it.
    let answer = post_sign_in(&relay, OPERATOR_KEY, &csrf, &cookie).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let set = set_cookie(answer.headers(), "sapbridge_console").expect("session cookie");
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=43200",
    ] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains("Secure"), "plain http: {set}");
    assert!(!set.contains(OPERATOR_KEY));
    // The sign-ins are in the audit log.
    let audit = relay
        .http
        .get(relay.url_of("/v1/audit?outcome=forbidden"))
        .bearer_auth(OPERATOR_KEY)
        .send()
        .await
        .expect("audit");
    let audit: Value = audit.json().await.expect("JSON");
    let events: Vec<&str> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["event"].as_str())
        .collect();
    assert!(events.contains(&"console-sign-in"), "{audit}");
    relay.stop().await;
}

#[tokio::test]
async fn the_cookie_is_secure_when_clients_come_over_https() {
    let mut config = with_operator(config_json());
    config["public_url"] = json!("https://relay.example.com");
    let relay = TestRelay::start_with(config).await;
    let (csrf, cookie) = sign_in_form(&relay).await;
    let answer = post_sign_in(&relay, OPERATOR_KEY, &csrf, &cookie).await;
    let set = set_cookie(answer.headers(), "sapbridge_console").expect("session cookie");
    assert!(set.contains("; Secure"), "{set}");
    relay.stop().await;
}

#[tokio::test]
async fn forms_without_the_sessions_token_are_refused() {
    let relay = TestRelay::start_with(with_operator(config_json())).await;
    let session = sign_in(&relay).await;
    let other = sign_in(&relay).await;
    assert_ne!(session.csrf, other.csrf);
    for token in ["", "forged", other.csrf.as_str()] {
        for (path, form) in [
            ("/console/sign-out", vec![("csrf", token)]),
            ("/console/test", vec![("system", "PRD"), ("csrf", token)]),
            (
                "/console/calls/cancel",
                vec![("id", "c_x"), ("csrf", token)],
            ),
            (
                "/console/explorer",
                vec![("system", "PRD"), ("function", "RFC_PING"), ("csrf", token)],
            ),
            (
                "/console/keys",
                vec![
                    ("name", "forged"),
                    ("systems", "*"),
                    ("operator", "true"),
                    ("csrf", token),
                ],
            ),
            (
                "/console/keys/revoke",
                vec![("name", "forged"), ("csrf", token)],
            ),
            (
                "/console/keys/tokens",
                vec![("name", "forged"), ("systems", "PRD"), ("csrf", token)],
            ),
            (
                "/console/keys/tokens/revoke",
                vec![("name", "plant"), ("csrf", token)],
            ),
        ] {
            let answer = post(&relay, &session.cookie, path, &form).await;
            assert_eq!(
                answer.status(),
                StatusCode::FORBIDDEN,
                "{path} with {token:?}"
            );
        }
    }
    // Nothing above signed the session out.
    let page = get(&relay, &session.cookie, "/console/").await;
    assert_eq!(page.status(), StatusCode::OK);
    relay.stop().await;
}

#[tokio::test]
async fn sign_out_ends_the_session_and_its_stream() {
    let relay = TestRelay::start_with(with_operator(config_json())).await;
    let session = sign_in(&relay).await;
    let stream = get(&relay, &session.cookie, "/console/events").await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let answer = post(
        &relay,
        &session.cookie,
        "/console/sign-out",
        &[("csrf", &session.csrf)],
    )
    .await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(answer.headers()[LOCATION], "/console/sign-in");
    let cleared = set_cookie(answer.headers(), "sapbridge_console").expect("cleared cookie");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // The open stream ends (it checks its session before every update).
    let rest = tokio::time::timeout(STEP, stream.text())
        .await
        .expect("the stream ends after sign-out")
        .expect("stream body");
    assert!(rest.contains("event: overview"), "{rest}");
    assert_signs_in(
        &get(&relay, &session.cookie, "/console/").await,
        "after sign-out",
    );
    let stream = get(&relay, &session.cookie, "/console/events").await;
    assert_eq!(stream.status(), StatusCode::UNAUTHORIZED);
    relay.stop().await;
}

#[tokio::test]
async fn sessions_expire_when_idle() {
    let mut config = with_operator(config_json());
    config["console"] = json!({"session_idle_secs": 1});
    let relay = TestRelay::start_with(config).await;
    let (csrf, cookie) = sign_in_form(&relay).await;
    let answer = post_sign_in(&relay, OPERATOR_KEY, &csrf, &cookie).await;
    let set = set_cookie(answer.headers(), "sapbridge_console").expect("session cookie");
    let session = cookie_value(&set);
    // The live updates do not count as activity: asked for until the session has
    // been idle for its second (bounded).
    let deadline = Instant::now() + STEP;
    loop {
        let stream = get(&relay, &session, "/console/events").await;
        if stream.status() == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(stream.status(), StatusCode::OK);
        drop(stream);
        assert!(Instant::now() < deadline, "the session never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_signs_in(&get(&relay, &session, "/console/calls").await, "expired");
    relay.stop().await;
}

#[tokio::test]
async fn a_disabled_console_is_not_served() {
    let mut config = with_operator(config_json());
    config["console"] = json!({"enabled": false});
    let relay = TestRelay::start_with(config).await;
    let answer = client()
        .get(relay.url_of("/console/sign-in"))
        .send()
        .await
        .expect("GET");
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    relay.stop().await;
}

/// The first `"id": "c_…"` of a page (a call's id in a pretty-printed answer).
fn call_id_in(html: &str) -> String {
    let marker = "&quot;id&quot;: &quot;";
    let start = html.find(marker).expect("a call id") + marker.len();
    let end = html[start..].find('&').expect("end of id");
    html[start..start + end].to_owned()
}

#[tokio::test]
async fn the_pages_work_against_a_simulator_agent() {
    let relay = TestRelay::start_with(with_operator(business_config())).await;
    let agent = SimAgent::start(&relay, "sim-agent", SYSTEM).await;
    let session = sign_in(&relay).await;
    let cookie = session.cookie.as_str();
    let csrf = session.csrf.as_str();

    // Overview: the agent online, QAS needing attention.
    let overview = get(&relay, cookie, "/console/").await.text().await.unwrap();
    assert!(overview.contains("sim-agent"), "{overview}");
    assert!(overview.contains("QAS: no agent online"), "{overview}");
    let live = get(&relay, cookie, "/console/events").await;
    assert_eq!(live.status(), StatusCode::OK);
    drop(live);

    // Connection test: PRD answers with its release; QAS has no agent.
    let test = post(
        &relay,
        cookie,
        "/console/test",
        &[("system", SYSTEM), ("csrf", csrf)],
    )
    .await;
    assert_eq!(test.status(), StatusCode::OK);
    let test = test.text().await.unwrap();
    assert!(test.contains(r#"id="test-ok""#), "{test}");
    let release = test.split(r#"id="test-release">"#).nth(1).expect("release");
    assert!(
        !release.starts_with('—') && !release.starts_with('<'),
        "{release}"
    );
    let test = post(
        &relay,
        cookie,
        "/console/test",
        &[("system", "QAS"), ("csrf", csrf)],
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(
        test.contains("No agent online") && test.contains("What to check"),
        "{test}"
    );

    // Explorer: the interface as a form, run from it.
    let form = get(
        &relay,
        cookie,
        "/console/explorer?system=PRD&function=bapi_customer_getdetail2",
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(form.contains(r#"name="p.CUSTOMERNO""#), "{form}");
    assert!(form.contains(r#"<label for="p-CUSTOMERNO">"#), "{form}");
    assert!(form.contains(r#"name="j.CUSTOMERBANKDETAIL""#), "{form}");
    assert!(
        !form.contains(r#"name="p.RETURN""#),
        "exporting parameters are no inputs"
    );
    let run = post(
        &relay,
        cookie,
        "/console/explorer",
        &[
            ("csrf", csrf),
            ("system", SYSTEM),
            ("function", "BAPI_CUSTOMER_GETDETAIL2"),
            ("p.CUSTOMERNO", "1000"),
            ("p.COMPANYCODE", ""),
            ("j.CUSTOMERBANKDETAIL", ""),
        ],
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(run.contains(r#"id="run-ok""#), "{run}");
    assert!(
        run.contains("&quot;CUSTOMERNO&quot;: &quot;1000&quot;"),
        "{run}"
    );
    assert!(run.contains("CUSTOMERADDRESS"), "{run}");
    let id = call_id_in(&run);
    // Bad input is said as such and runs nothing.
    let bad = post(
        &relay,
        cookie,
        "/console/explorer",
        &[
            ("csrf", csrf),
            ("system", SYSTEM),
            ("function", "BAPI_CUSTOMER_GETDETAIL2"),
            ("p.CUSTOMERNO", "1000"),
            ("j.CUSTOMERBANKDETAIL", "[not json"),
        ],
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(bad.contains("CUSTOMERBANKDETAIL: not JSON"), "{bad}");

    // Calls: the call's parameters, outcome and agent.
    let call = get(&relay, cookie, &format!("/console/calls?id={id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        call.contains(r#"<dd id="call-status">succeeded</dd>"#),
        "{call}"
    );
    assert!(
        call.contains("BAPI_CUSTOMER_GETDETAIL2") && call.contains("sim-agent"),
        "{call}"
    );
    assert!(
        call.contains("&quot;CUSTOMERNO&quot;: &quot;1000&quot;"),
        "{call}"
    );
    assert!(
        call.contains("<dd>ops</dd>"),
        "the operator's key owns it: {call}"
    );
    let missing = get(&relay, cookie, "/console/calls?id=c_does_not_exist")
        .await
        .text()
        .await
        .unwrap();
    assert!(missing.contains(r#"id="call-error""#), "{missing}");

    // The search: the call, linked to its page; a bad filter is said, not a 500.
    let found = get(
        &relay,
        cookie,
        &format!("/console/calls?system={SYSTEM}&function=bapi_customer_getdetail2&status=succeeded&key=&since=&until="),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(
        found.contains(&format!(r#"<a href="/console/calls?id={id}">{id}</a>"#)),
        "{found}"
    );
    let none = get(&relay, cookie, "/console/calls?status=failed")
        .await
        .text()
        .await
        .unwrap();
    assert!(!none.contains(&format!("?id={id}")), "{none}");
    let bad = get(&relay, cookie, "/console/calls?since=yesterday")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        bad.contains(r#"id="search-error""#) && bad.contains("since must be an RFC 3339 time"),
        "{bad}"
    );

    // The overview's chart: PRD's calls of this test (connection test, interface,
    // explorer run), none failed; QAS ran none.
    let overview = get(&relay, cookie, "/console/").await.text().await.unwrap();
    let chart_of = |system: &str| {
        let start = format!(r#"<figure class="chart" data-system="{system}">"#);
        let chart = overview.split(start.as_str()).nth(1).expect("chart");
        chart.split("</figure>").next().unwrap_or("").to_owned()
    };
    let prd = chart_of(SYSTEM);
    assert!(
        prd.contains(r#"role="img""#) && prd.contains(r#"class="chart-ok""#),
        "{prd}"
    );
    assert!(prd.contains("of them errors (error rate 0.0 %)"), "{prd}");
    assert!(!prd.contains(r#"class="chart-error""#), "{prd}");
    assert!(
        chart_of("QAS").contains("No calls finished in the last hour."),
        "{overview}"
    );
    assert!(
        !overview.contains("style="),
        "the CSP allows no style attributes"
    );

    // Audit: the run under the operator's key, and its CSV.
    let audit = get(&relay, cookie, &format!("/console/audit?call_id={id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(audit.contains(&format!(">{id}</a>")), "{audit}");
    assert!(audit.contains("<td>ops</td>"), "{audit}");
    let csv = get(&relay, cookie, &format!("/console/audit.csv?call_id={id}")).await;
    assert_eq!(csv.status(), StatusCode::OK);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        csv.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let csv = csv.text().await.unwrap();
    assert!(csv.starts_with("time,event,key,"), "{csv}");
    assert!(csv.contains(&id), "{csv}");

    // Cancel a queued call (QAS has no agent).
    let queued: Value = relay
        .call("QAS", "STFC_CONNECTION", json!({"REQUTEXT": "x"}))
        .header("prefer", "respond-async")
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("JSON");
    let queued_id = queued["id"].as_str().expect("id").to_owned();
    let page = get(&relay, cookie, &format!("/console/calls?id={queued_id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Cancel this queued call"), "{page}");
    let cancel = post(
        &relay,
        cookie,
        "/console/calls/cancel",
        &[("id", &queued_id), ("csrf", csrf)],
    )
    .await;
    assert_eq!(cancel.status(), StatusCode::SEE_OTHER);
    let location = cancel.headers()[LOCATION].to_str().unwrap().to_owned();
    let page = get(&relay, cookie, &location).await.text().await.unwrap();
    assert!(page.contains("The call was cancelled."), "{page}");
    assert!(
        page.contains(r#"<dd id="call-status">cancelled</dd>"#),
        "{page}"
    );

    // An agent whose allowlist refuses: shown as such.
    let mut fake = common::FakeAgent::connect(&relay, "strict-agent", &["QAS"], 4).await;
    let refuse = tokio::spawn(async move {
        let unit = fake.next_work().await;
        let error = sapbridge_proto::RfcError::new(
            sapbridge_proto::ErrorGroup::NotAllowed,
            "NOT_ALLOWED",
            "Z_SECRET is not in the agent's allowlist",
        );
        fake.finish(&unit, sapbridge_proto::Outcome::Failed { error })
            .await;
        fake
    });
    let refused = get(
        &relay,
        cookie,
        "/console/explorer?system=QAS&function=Z_SECRET",
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(
        refused.contains("Refused by the agent&#39;s allowlist")
            || refused.contains("Refused by the agent's allowlist"),
        "{refused}"
    );
    let _fake = refuse.await.expect("fake agent");

    agent.stop().await;
    relay.stop().await;
}

#[tokio::test]
async fn keys_are_created_and_revoked_from_the_console() {
    let relay = TestRelay::start_with(with_operator(config_json())).await;
    let session = sign_in(&relay).await;
    let cookie = session.cookie.as_str();
    let csrf = session.csrf.as_str();
    let page = post(
        &relay,
        cookie,
        "/console/keys",
        &[("csrf", csrf), ("name", "flow-9"), ("systems", "PRD, QAS")],
    )
    .await;
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    let marker = r#"<pre class="json" id="new-key" tabindex="0" aria-label="The new API key">"#;
    let start = page.find(marker).expect("the new key, once") + marker.len();
    let secret = page[start..start + page[start..].find('<').unwrap()].to_owned();
    assert!(secret.starts_with("sbk_"), "{secret}");
    let systems = relay
        .http
        .get(relay.url_of("/v1/systems"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(systems.status(), StatusCode::OK);
    // Listed without the key.
    let listed = get(&relay, cookie, "/console/keys")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        listed.contains(r#"data-key="flow-9""#) && !listed.contains(&secret),
        "{listed}"
    );
    // A taken name is said so.
    let again = post(
        &relay,
        cookie,
        "/console/keys",
        &[("csrf", csrf), ("name", "flow-9"), ("systems", "PRD")],
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(again.contains("Not created: Key exists"), "{again}");
    // Revoked: refused by the API at once.
    let revoked = post(
        &relay,
        cookie,
        "/console/keys/revoke",
        &[("csrf", csrf), ("name", "flow-9")],
    )
    .await;
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
    let location = revoked.headers()[LOCATION].to_str().unwrap().to_owned();
    let page = get(&relay, cookie, &location).await.text().await.unwrap();
    assert!(page.contains("The key flow-9 was revoked."), "{page}");
    let systems = relay
        .http
        .get(relay.url_of("/v1/systems"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(systems.status(), StatusCode::UNAUTHORIZED);
    relay.stop().await;
}

#[tokio::test]
async fn agent_tokens_are_created_and_revoked_from_the_console() {
    let relay = TestRelay::start_with(with_operator(config_json())).await;
    let session = sign_in(&relay).await;
    let cookie = session.cookie.as_str();
    let csrf = session.csrf.as_str();
    let page = post(
        &relay,
        cookie,
        "/console/keys/tokens",
        &[("csrf", csrf), ("name", "plant-9"), ("systems", "DEV, PRD")],
    )
    .await;
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    let marker =
        r#"<pre class="json" id="new-token" tabindex="0" aria-label="The new agent token">"#;
    let start = page.find(marker).expect("the new token, once") + marker.len();
    let secret = page[start..start + page[start..].find('<').unwrap()].to_owned();
    assert!(secret.starts_with("sbt_"), "{secret}");
    assert!(page.contains("Agent token plant-9 created"), "{page}");

    // An agent connects with it; the page lists it with its last use, never
    // the token, beside the configuration's tokens and the keys.
    let mut agent =
        common::FakeAgent::open(&relay, &secret, common::hello("console-9", &["DEV"], 1)).await;
    assert!(matches!(
        agent.recv().await,
        Some(sapbridge_proto::RelayMessage::Welcome { .. })
    ));
    let listed = get(&relay, cookie, "/console/keys")
        .await
        .text()
        .await
        .unwrap();
    assert!(!listed.contains(&secret), "{listed}");
    for labelled in [
        r#"<label for="token-name">"#,
        r#"<label for="token-systems">"#,
        r#"<table id="tokens">"#,
        r#"data-token="plant""#,
        r#"aria-label="Revoke agent token plant-9""#,
    ] {
        assert!(listed.contains(labelled), "{labelled}: {listed}");
    }
    let row = &listed[listed.find(r#"data-token="plant-9""#).expect("row")..];
    let row = &row[..row.find("</tr>").unwrap()];
    let used = &row[row.find(r#"<td class="last-used">"#).expect("last used")..];
    assert!(
        used.contains("T") && !used.starts_with(r#"<td class="last-used">—"#),
        "{row}"
    );
    // The operator's own key shows as used (the console's requests are its).
    let ops = &listed[listed.find(r#"data-key="ops""#).expect("ops row")..];
    let ops = &ops[..ops.find("</tr>").unwrap()];
    assert!(!ops.contains(r#"<td class="last-used">—"#), "{ops}");

    // A wildcard or taken name is said so.
    let refused = post(
        &relay,
        cookie,
        "/console/keys/tokens",
        &[("csrf", csrf), ("name", "plant"), ("systems", "PRD")],
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(
        refused.contains("Not created: Agent token exists"),
        "{refused}"
    );
    let refused = post(
        &relay,
        cookie,
        "/console/keys/tokens",
        &[("csrf", csrf), ("name", "any"), ("systems", "*")],
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(refused.contains("Not created:"), "{refused}");

    // Revoked: the agent is closed, the token refused.
    let revoked = post(
        &relay,
        cookie,
        "/console/keys/tokens/revoke",
        &[("csrf", csrf), ("name", "plant-9")],
    )
    .await;
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
    let location = revoked.headers()[LOCATION].to_str().unwrap().to_owned();
    let page = get(&relay, cookie, &location).await.text().await.unwrap();
    assert!(
        page.contains("The agent token plant-9 was revoked."),
        "{page}"
    );
    assert!(matches!(
        agent.recv().await,
        Some(sapbridge_proto::RelayMessage::Close { .. })
    ));
    assert!(common::open_socket(&relay, &secret).await.is_err());
    relay.stop().await;
}
