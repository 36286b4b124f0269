//! The operator console against three real processes, as in production: an SAP
//! system (`sapbridge sim`, serving SOAP-RFC), a relay (`sapbridge relay`, its
//! queue in a SQLite file, an operator key in its file) and an agent
//! (`sapbridge-agent`, its own file, calling that system over SOAP-RFC). Over
//! HTTP as a browser would (the sign-in form's token and cookie, then the session
//! cookie and the session's CSRF token on every form): the overview with the
//! agent online (its version and host) and the chart counting the calls of this
//! test, the connection test with the system's release, `BAPI_CUSTOMER_GETDETAIL2`
//! from the function explorer, that call in the calls search, in the audit log
//! and its CSV, and the keys page.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, SET_COOKIE};
use sapbridge_tests::{Proc, SOAP_PASSWORD, SOAP_USER, free_port};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sapbridge");
const AGENT_BIN: &str = env!("CARGO_BIN_EXE_sapbridge-agent");
/// How long any process may take to be ready, and any wait of the test.
const DEADLINE: Duration = Duration::from_secs(30);
/// The operator key in the relay's file.
const OPERATOR_KEY: &str = "console-processes-operator";
/// The system the agent serves.
const SYSTEM: &str = "PRD";
/// The environment variable the agent reads its SAP password from.
const PASSWORD_ENV: &str = "SAPBRIDGE_TEST_CONSOLE_SAP_PASSWORD";

/// A client that neither follows redirects nor keeps cookies (the test does).
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(DEADLINE)
        .build()
        .expect("client")
}

/// The value `Set-Cookie` sets for cookie `name`.
fn cookie_set(headers: &HeaderMap, name: &str) -> String {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
        .unwrap_or_else(|| panic!("no cookie {name} in {headers:?}"))
}

/// The value of the first hidden `csrf` input of a page.
fn csrf_of(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).expect("a csrf field") + marker.len();
    let end = html[start..].find('"').expect("end of value");
    html[start..start + end].to_owned()
}

/// The text between `start` and the next `end` after it.
fn between<'a>(html: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = html.split_once(start)?.1;
    Some(rest.split_once(end).map_or(rest, |(inside, _)| inside))
}

/// A signed-in browser: the relay's address, the session cookie and CSRF token.
struct Browser {
    url: String,
    http: reqwest::Client,
    cookie: String,
    csrf: String,
}

impl Browser {
    /// Signs in with the form, as a browser does.
    async fn sign_in(url: &str) -> Self {
        let http = client();
        let form = http
            .get(format!("{url}/console/sign-in"))
            .send()
            .await
            .expect("GET sign-in");
        assert_eq!(form.status(), StatusCode::OK);
        let form_cookie = cookie_set(form.headers(), "sapbridge_console_signin");
        let form_csrf = csrf_of(&form.text().await.expect("sign-in form"));
        let signed_in = http
            .post(format!("{url}/console/sign-in"))
            .header("cookie", format!("sapbridge_console_signin={form_cookie}"))
            .form(&[("key", OPERATOR_KEY), ("csrf", form_csrf.as_str())])
            .send()
            .await
            .expect("POST sign-in");
        assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
        let cookie = cookie_set(signed_in.headers(), "sapbridge_console");
        let mut browser = Self {
            url: url.to_owned(),
            http,
            cookie,
            csrf: String::new(),
        };
        let (status, overview) = browser.get("/console/").await;
        assert_eq!(status, StatusCode::OK, "{overview}");
        browser.csrf = csrf_of(&overview);
        browser
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let answer = self
            .http
            .get(format!("{}{path}", self.url))
            .header("cookie", format!("sapbridge_console={}", self.cookie))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        (answer.status(), answer.text().await.expect("body"))
    }

    async fn get_raw(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .header("cookie", format!("sapbridge_console={}", self.cookie))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Posts a form with the session's CSRF token.
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (StatusCode, String) {
        let mut fields = form.to_vec();
        fields.push(("csrf", self.csrf.as_str()));
        let answer = self
            .http
            .post(format!("{}{path}", self.url))
            .header("cookie", format!("sapbridge_console={}", self.cookie))
            .form(&fields)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        (answer.status(), answer.text().await.expect("body"))
    }

    /// Gets `path` until its page holds `wanted` (polled: the agent's hello and
    /// the audit log's batches arrive on their own time); returns that page.
    async fn get_until(&self, path: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let (status, page) = self.get(path).await;
            if status == StatusCode::OK && wanted(&page) {
                return page;
            }
            assert!(
                Instant::now() < deadline,
                "{path} never showed what the test waits for:\n{page}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The three processes, ready: the relay's URL, and the processes (killed when
/// dropped).
fn start_processes(dir: &Path) -> (String, Vec<Proc>) {
    // The SAP system, over SOAP-RFC.
    let password_file = dir.join("sap-password");
    write(&password_file, SOAP_PASSWORD);
    let sap_port = free_port().expect("port");
    let sap = Proc::spawn_ready(
        Command::new(BIN)
            .args(["sim", "--listen", &format!("127.0.0.1:{sap_port}")])
            .arg("--data-dir")
            .arg(dir.join("sap"))
            .args(["--user", SOAP_USER])
            .arg("--password-file")
            .arg(&password_file)
            .env("SAPBRIDGE_LOG", "error"),
        "serving SOAP-RFC",
        DEADLINE,
    )
    .expect("sapbridge sim");

    // The relay: an operator key and the agent's token in its file.
    let relay_port = free_port().expect("port");
    write(
        &dir.join("relay.toml"),
        &format!(
            r#"
[[api_keys]]
name = "console-ops"
key = "{OPERATOR_KEY}"
systems = ["*"]
operator = true

[[agent_tokens]]
name = "plant-1"
token = "console-processes-token"
systems = ["{SYSTEM}"]

[queue]
store = "sqlite"
path = "relay.db"
"#
        ),
    );
    let relay = Proc::spawn_ready(
        Command::new(BIN)
            .arg("relay")
            .arg("--config")
            .arg(dir.join("relay.toml"))
            .args(["--listen", &format!("127.0.0.1:{relay_port}")])
            .env("SAPBRIDGE_LOG", "warn"),
        "sapbridge relay listening on",
        DEADLINE,
    )
    .expect("sapbridge relay");

    // The agent: its id left to default to the host's name.
    write(&dir.join("token"), "console-processes-token\n");
    write(
        &dir.join("agent.toml"),
        &format!(
            r#"
relay_url = "ws://127.0.0.1:{relay_port}/v1/agent/connect"
token_file = "{token}"
data_dir = "{data}"
backoff_initial_ms = 50
backoff_max_ms = 500

[[systems]]
name = "{SYSTEM}"
allow_functions = ["BAPI_CUSTOMER_*", "RFC_*", "DDIF_FIELDINFO_GET"]

[systems.backend]
type = "soap"
base_url = "http://127.0.0.1:{sap_port}/"
client = "001"
user = "{SOAP_USER}"
password_env = "{PASSWORD_ENV}"
"#,
            token = dir.join("token").display(),
            data = dir.join("agent").display(),
        ),
    );
    let agent = Proc::spawn(
        Command::new(AGENT_BIN)
            .arg("--config")
            .arg(dir.join("agent.toml"))
            .env(PASSWORD_ENV, SOAP_PASSWORD)
            .env("SAPBRIDGE_LOG", "warn"),
    )
    .expect("sapbridge-agent");
    (
        format!("http://127.0.0.1:{relay_port}"),
        vec![agent, relay, sap],
    )
}

/// The host name the agent takes as its id, as it reads it.
fn host_name() -> String {
    ["/etc/hostname", "/proc/sys/kernel/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_owned())
        .find(|name| !name.is_empty())
        .expect("a host name")
}

/// How many calls the chart of `system` says finished in the hour, and how many
/// of them were errors.
fn chart_figures(overview: &str, system: &str) -> (u64, u64) {
    let figure = between(
        overview,
        &format!(r#"<figure class="chart" data-system="{system}">"#),
        "</figure>",
    )
    .unwrap_or_else(|| panic!("no chart of {system}:\n{overview}"));
    let desc = between(figure, "<desc", "</desc>").expect("the chart's description");
    let number_before = |text: &str, marker: &str| -> Option<u64> {
        let head = text.split_once(marker)?.0;
        head.rsplit(|c: char| !c.is_ascii_digit())
            .find(|w| !w.is_empty())?
            .parse()
            .ok()
    };
    let finished = number_before(desc, " call(s) finished").unwrap_or(0);
    let errors = number_before(desc, " of them errors").unwrap_or(0);
    (finished, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_console_page_works_against_real_processes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, _processes) = start_processes(dir.path());
    let browser = Browser::sign_in(&url).await;

    // Overview: the agent online, with its version and its host; no call yet.
    let host = host_name();
    let version = env!("CARGO_PKG_VERSION");
    let overview = browser
        .get_until("/console/", |page| page.contains(r#"<tr class="agent">"#))
        .await;
    let agent_row = between(&overview, r#"<tr class="agent">"#, "</tr>").expect("agent row");
    assert!(
        agent_row.contains(&format!("<td>{SYSTEM}</td>")),
        "{agent_row}"
    );
    assert!(
        agent_row.contains(&format!("<td>{host}</td>")),
        "{agent_row}"
    );
    assert!(agent_row.contains(&format!("<td>{version}")), "{agent_row}");
    let row = between(
        &overview,
        &format!(r#"<tr data-system="{SYSTEM}">"#),
        "</tr>",
    )
    .expect("system row");
    assert!(row.contains("online"), "{row}");
    assert_eq!(chart_figures(&overview, SYSTEM), (0, 0), "{overview}");

    // Connection test: RFC_PING and RFC_SYSTEM_INFO through the agent, the release.
    let (status, test) = browser.post("/console/test", &[("system", SYSTEM)]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(test.contains(r#"id="test-ok""#), "{test}");
    let release = between(&test, r#"id="test-release">"#, "<").expect("release");
    assert!(
        !release.trim().is_empty() && release.trim() != "—",
        "{release}"
    );

    // Function explorer: the interface as a form, BAPI_CUSTOMER_GETDETAIL2 run.
    let (status, form) = browser
        .get(&format!(
            "/console/explorer?system={SYSTEM}&function=BAPI_CUSTOMER_GETDETAIL2"
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(form.contains(r#"name="p.CUSTOMERNO""#), "{form}");
    let (status, run) = browser
        .post(
            "/console/explorer",
            &[
                ("system", SYSTEM),
                ("function", "BAPI_CUSTOMER_GETDETAIL2"),
                ("p.CUSTOMERNO", "1000"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(run.contains(r#"id="run-ok""#), "{run}");
    assert!(run.contains("CUSTOMERADDRESS"), "{run}");
    let answer = between(&run, r#"id="run-answer""#, "</pre>").expect("the answer");
    let id = between(answer, "&quot;id&quot;: &quot;", "&quot;")
        .expect("the call id")
        .to_owned();

    // Calls: the search finds it, its page shows it with the agent.
    let (_, found) = browser
        .get(&format!(
            "/console/calls?system={SYSTEM}&function=BAPI_CUSTOMER_GETDETAIL2&status=succeeded"
        ))
        .await;
    assert!(
        found.contains(&format!(r#"<a href="/console/calls?id={id}">{id}</a>"#)),
        "{found}"
    );
    let (_, call) = browser.get(&format!("/console/calls?id={id}")).await;
    assert!(
        call.contains(r#"<dd id="call-status">succeeded</dd>"#) && call.contains(&host),
        "{call}"
    );

    // Audit: its records (written in batches: polled), and as CSV.
    let audit = browser
        .get_until(&format!("/console/audit?call_id={id}"), |page| {
            page.contains(&format!(">{id}</a>"))
        })
        .await;
    assert!(audit.contains("console-ops"), "{audit}");
    let csv = browser
        .get_raw(&format!("/console/audit.csv?call_id={id}"))
        .await;
    assert_eq!(csv.status(), StatusCode::OK);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"),
        "{:?}",
        csv.headers()
    );
    let csv = csv.text().await.expect("csv");
    assert!(
        csv.starts_with("time,event,key,") && csv.contains(&id),
        "{csv}"
    );

    // Keys: the page lists the file's operator key.
    let (status, keys) = browser.get("/console/keys").await;
    assert_eq!(status, StatusCode::OK);
    assert!(keys.contains("console-ops"), "{keys}");

    // The overview's chart counts what the API lists as finished on the system:
    // the test's calls (the connection test's, the interface's, the run), none
    // of them an error.
    let listed = browser
        .http
        .get(format!("{url}/v1/calls?system={SYSTEM}&limit=1000"))
        .bearer_auth(OPERATOR_KEY)
        .send()
        .await
        .expect("GET /v1/calls")
        .json::<Value>()
        .await
        .expect("calls");
    let finished = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|c| {
            ["succeeded", "failed", "expired"].contains(&c["status"].as_str().unwrap_or(""))
        })
        .count();
    assert!(finished >= 4, "{listed}");
    let (_, overview) = browser.get("/console/").await;
    assert_eq!(
        chart_figures(&overview, SYSTEM),
        (u64::try_from(finished).unwrap(), 0),
        "{overview}"
    );
    assert!(overview.contains(r#"class="chart-ok""#), "{overview}");
}
