//! No secret reaches a log, at any level. A relay, an agent and `sapbridge sim` (the
//! agent's SAP system over SOAP-RFC, with a user and a password file) run as
//! processes at trace level, beside an HTTP pass-through backend that wants Basic
//! auth and SAP Gateway's CSRF token and session cookies. Every kind of call goes
//! through them: a function call, a unit of work, the business actions (customers,
//! table read, function metadata), pass-through GET and POST, an async call and its
//! polling, a wrong API key, a key in the query and in `X-API-Key`, an agent with a
//! wrong token and an agent reconnect. Then the whole output of every process is
//! searched for every secret used, in each encoding a log line could carry it in.
//!
//! Every secret is random, so a hit is never a coincidence.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use rand::RngCore;
use reqwest::Client;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_sapbridge");
const AGENT_BIN: &str = env!("CARGO_BIN_EXE_sapbridge-agent");
/// The longest any one step (a start, a call, a stop) may take.
const DEADLINE: Duration = Duration::from_secs(20);
/// The pass-through service of the backend (what the agent allows).
const SERVICE: &str = "/sap/opu/odata/sap/API_SECRETS";
const SAP_USER: &str = "RFCUSER";
const BACKEND_USER: &str = "ODATA_USER";

/// A random secret: 16 random bytes in hex after a prefix naming it, and characters
/// that URL, header and base64 encodings treat specially.
fn secret(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}+/=", hex::encode(bytes))
}

/// Every secret of the run.
struct Secrets {
    /// API key sent as `Authorization: Bearer`.
    bearer_key: String,
    /// API key sent as `X-API-Key`.
    header_key: String,
    /// A key no entry of the relay holds.
    wrong_key: String,
    agent_token: String,
    wrong_agent_token: String,
    /// A key in the query of the agent's `relay_url` (as a reverse proxy may want).
    relay_url_key: String,
    sap_password: String,
    backend_password: String,
    /// The CSRF token and session cookies the backend hands the agent.
    csrf_token: String,
    sso_cookie: String,
    session_cookie: String,
    /// The relay's cluster secret (replica-to-replica signing), from the environment.
    cluster_secret: String,
}

impl Secrets {
    fn new() -> Self {
        Self {
            bearer_key: secret("sbk_bearer_"),
            header_key: secret("sbk_header_"),
            wrong_key: secret("sbk_wrong_"),
            agent_token: secret("sbt_agent_"),
            wrong_agent_token: secret("sbt_wrong_"),
            relay_url_key: secret("proxy_"),
            sap_password: secret("sap_pw_"),
            backend_password: secret("gw_pw_"),
            csrf_token: secret("csrf_"),
            sso_cookie: secret("sso_"),
            session_cookie: secret("sid_"),
            cluster_secret: secret("cluster_secret_"),
        }
    }

    /// Every form in which a log line could carry a secret, each with a label
    /// naming the secret and the encoding.
    fn forms(&self) -> Vec<(String, String)> {
        let named = [
            ("bearer API key", &self.bearer_key),
            ("X-API-Key API key", &self.header_key),
            ("wrong API key", &self.wrong_key),
            ("agent token", &self.agent_token),
            ("wrong agent token", &self.wrong_agent_token),
            ("relay_url query key", &self.relay_url_key),
            ("SAP password", &self.sap_password),
            ("backend password", &self.backend_password),
            ("CSRF token", &self.csrf_token),
            ("SSO cookie", &self.sso_cookie),
            ("session cookie", &self.session_cookie),
            ("cluster secret", &self.cluster_secret),
        ];
        let mut forms = Vec::new();
        for (name, value) in named {
            forms.push((format!("{name} (plain)"), value.clone()));
            forms.push((
                format!("{name} (percent-encoded)"),
                percent_encoded(value, true),
            ));
            forms.push((
                format!("{name} (percent-encoded, lower case)"),
                percent_encoded(value, false),
            ));
            forms.push((format!("{name} (hex)"), hex::encode(value)));
            forms.push((format!("{name} (HEX)"), hex::encode_upper(value)));
            for (i, core) in base64_cores(value.as_bytes()).into_iter().enumerate() {
                forms.push((format!("{name} (base64, alignment {i})"), core));
            }
        }
        for (user, password, name) in [
            (SAP_USER, &self.sap_password, "SAP Basic credentials"),
            (
                BACKEND_USER,
                &self.backend_password,
                "backend Basic credentials",
            ),
        ] {
            forms.push((
                name.to_owned(),
                STANDARD.encode(format!("{user}:{password}")),
            ));
        }
        forms
    }
}

/// `value` with every byte but RFC 3986's unreserved ones as `%XX`.
fn percent_encoded(value: &str, upper: bool) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ if upper => format!("%{b:02X}"),
            _ => format!("%{b:02x}"),
        })
        .collect()
}

/// What every base64 text holding `bytes` contains, whatever precedes and follows
/// them: for each of the three alignments, the characters made of `bytes` alone
/// (standard and URL-safe alphabets).
fn base64_cores(bytes: &[u8]) -> Vec<String> {
    let mut cores = Vec::new();
    for lead in 0..3usize {
        let mut padded = vec![0u8; lead];
        padded.extend_from_slice(bytes);
        let first = (lead * 8).div_ceil(6);
        let last = (padded.len() * 8) / 6;
        for encoded in [
            STANDARD_NO_PAD.encode(&padded),
            URL_SAFE_NO_PAD.encode(&padded),
        ] {
            cores.push(encoded[first..last].to_owned());
        }
    }
    cores
}

/// A `sapbridge` process whose stdout and stderr are collected, terminal colour
/// codes removed; killed when dropped.
struct Proc {
    name: String,
    child: Child,
    output: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Proc {
    fn start(name: &str, program: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .env("SAPBRIDGE_LOG", "trace")
            .env("RUST_LOG", "trace")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let readers = vec![
            collect(stdout, Arc::clone(&output)),
            collect(stderr, Arc::clone(&output)),
        ];
        Self {
            name: name.to_owned(),
            child,
            output,
            readers,
        }
    }

    /// Waits until a line of the output contains `needle`; that line.
    async fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(line) = self
                .output
                .lock()
                .expect("output")
                .lines()
                .find(|line| line.contains(needle))
            {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "{} never wrote {needle:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the process with SIGTERM (as systemd does); its whole output.
    async fn stop(mut self) -> (String, String) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + DEADLINE;
        while self.child.try_wait().expect("wait").is_none() {
            assert!(
                Instant::now() < deadline,
                "{} did not stop on SIGTERM",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for reader in self.readers.drain(..) {
            reader.join().expect("output reader");
        }
        let output = std::mem::take(&mut *self.output.lock().expect("output"));
        (std::mem::take(&mut self.name), output)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Appends everything `pipe` yields to `output`, line by line, on a thread.
fn collect(
    pipe: impl Read + Send + 'static,
    output: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            let text = without_colours(&String::from_utf8_lossy(&line));
            output.lock().expect("output").push_str(&text);
            line.clear();
        }
    })
}

/// `text` without terminal escape sequences (`ESC [` parameters, then a letter).
fn without_colours(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for end in chars.by_ref() {
                if end.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// The pass-through backend: SAP Gateway's rules for one OData service. Every
/// request needs the agent's Basic credentials; `GET` with `X-CSRF-Token: Fetch`
/// hands out the CSRF token with an SSO and a session cookie; a `POST` needs the
/// token and both cookies. It logs nothing.
#[derive(Clone)]
struct Gateway {
    authorization: String,
    csrf_token: String,
    cookies: [String; 2],
    posted: Arc<Mutex<Vec<String>>>,
}

async fn gateway(State(gw): State<Gateway>, request: Request) -> Response {
    let header = |headers: &HeaderMap, name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let headers = request.headers().clone();
    if header(&headers, "authorization") != gw.authorization {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let method = request.method().clone();
    if method == "GET" && header(&headers, "x-csrf-token").eq_ignore_ascii_case("fetch") {
        let mut response = (StatusCode::OK, "{}").into_response();
        let h = response.headers_mut();
        h.insert("x-csrf-token", gw.csrf_token.parse().expect("token"));
        for cookie in &gw.cookies {
            h.append(
                "set-cookie",
                format!("{cookie}; path=/; HttpOnly")
                    .parse()
                    .expect("cookie"),
            );
        }
        return response;
    }
    if method == "GET" {
        return (StatusCode::OK, r#"{"d":{"results":[{"ID":"1"}]}}"#).into_response();
    }
    let cookie = header(&headers, "cookie");
    let token_ok = header(&headers, "x-csrf-token") == gw.csrf_token
        && gw.cookies.iter().all(|c| cookie.contains(c.as_str()));
    if !token_ok {
        return (StatusCode::FORBIDDEN, [("x-csrf-token", "Required")], "").into_response();
    }
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    gw.posted
        .lock()
        .expect("posted")
        .push(String::from_utf8_lossy(&body).into_owned());
    (StatusCode::CREATED, r#"{"d":{"ID":"2"}}"#).into_response()
}

async fn start_gateway(secrets: &Secrets) -> (SocketAddr, Gateway) {
    let gw = Gateway {
        authorization: format!(
            "Basic {}",
            STANDARD.encode(format!("{BACKEND_USER}:{}", secrets.backend_password))
        ),
        csrf_token: secrets.csrf_token.clone(),
        cookies: [
            format!("MYSAPSSO2={}", secrets.sso_cookie),
            format!("SAP_SESSIONID_SIM_001={}", secrets.session_cookie),
        ],
        posted: Arc::default(),
    };
    let app = Router::new()
        .route(SERVICE, any(gateway))
        .route(&format!("{SERVICE}/{{*rest}}"), any(gateway))
        .with_state(gw.clone());
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind gateway");
    let addr = listener.local_addr().expect("gateway addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, gw)
}

/// A TCP proxy between agent and relay whose connections can be cut, to make the
/// agent reconnect.
struct Proxy {
    addr: SocketAddr,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let registry = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                registry.lock().expect("proxy").push(task.abort_handle());
            }
        });
        Self { addr, connections }
    }

    fn cut(&self) {
        for connection in self.connections.lock().expect("proxy").drain(..) {
            connection.abort();
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The relay's configuration: both API keys and the agent token in clear text (the
/// harder case: the relay holds them until it has hashed them).
fn relay_toml(dir: &Path, s: &Secrets) -> String {
    format!(
        r#"
worker_threads = 1

[[api_keys]]
name = "flows"
key = "{bearer}"
systems = ["*"]

# An operator: it polls the other key's call (a call belongs to its key).
[[api_keys]]
name = "n8n"
key = "{header}"
systems = ["SIM"]
operator = true

[[agent_tokens]]
name = "plant"
token = "{token}"
systems = ["SIM"]

[queue]
store = "sqlite"
path = "{queue}"

[customer_defaults]
reference_customer = "0000001000"
sales_org = "1000"
distribution_channel = "10"
division = "00"
language = "EN"
currency = "EUR"
"#,
        bearer = s.bearer_key,
        header = s.header_key,
        token = s.agent_token,
        queue = dir.join("relay.db").display(),
    )
}

/// The agent's configuration: SIM over SOAP-RFC (password in a file) with
/// pass-through to the gateway (password in the environment, CSRF on), and a key
/// in the relay URL's query.
fn agent_toml(
    dir: &Path,
    s: &Secrets,
    relay: SocketAddr,
    sim: &str,
    gateway: SocketAddr,
) -> String {
    format!(
        r#"
relay_url = "ws://{relay}/v1/agent/connect?proxy_key={proxy_key}"
token_file = "{token}"
agent_id = "secrets-agent"
data_dir = "{data}"
worker_threads = 1
backoff_initial_ms = 50
backoff_max_ms = 400

[[systems]]
name = "SIM"
allow_functions = ["*"]
allow_tables = ["KNA1"]

[systems.backend]
type = "soap"
base_url = "{sim}"
client = "001"
user = "{SAP_USER}"
password_file = "{sap_password}"

[systems.http]
base_url = "http://{gateway}/"
allow_paths = ["{SERVICE}"]
csrf = true
user = "{BACKEND_USER}"
password_env = "SECRETS_TEST_BACKEND_PASSWORD"
"#,
        proxy_key = s.relay_url_key,
        token = dir.join("agent.token").display(),
        data = dir.join("agent").display(),
        sap_password = dir.join("sap.password").display(),
    )
}

/// An HTTP client for the relay at `base`.
struct Api {
    http: Client,
    base: String,
}

impl Api {
    /// `request` sent; status, headers and body (JSON, or `Null`).
    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, HeaderMap, Value) {
        let response = tokio::time::timeout(DEADLINE, request.send())
            .await
            .expect("answer in time")
            .expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("body");
        (
            status,
            headers,
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        )
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The session id of the agent serving SIM, once one is connected.
    async fn agent_session(&self, key: &str, not: Option<&str>) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let (status, _, body) = self
                .send(self.http.get(self.url("/v1/systems")).bearer_auth(key))
                .await;
            assert_eq!(status, 200, "{body}");
            let session = body["systems"][0]["agents"][0]["session_id"].as_str();
            if let Some(session) = session.filter(|s| Some(*s) != not) {
                return session.to_owned();
            }
            assert!(Instant::now() < deadline, "no agent session: {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn function_call(text: &str) -> Value {
    json!({"REQUTEXT": text})
}

/// Drives every kind of call through relay, agent, SOAP-RFC and pass-through.
async fn drive(api: &Api, s: &Secrets, proxy: &Proxy, gateway: &Gateway) {
    let http = &api.http;
    let stfc = api.url("/v1/systems/SIM/functions/STFC_CONNECTION");

    // A function call, with the key as a bearer token and in X-API-Key.
    let (status, _, body) = api
        .send(
            http.post(&stfc)
                .bearer_auth(&s.bearer_key)
                .json(&function_call("bearer")),
        )
        .await;
    assert_eq!(
        (status, &body["result"]["ECHOTEXT"]),
        (200, &json!("bearer")),
        "{body}"
    );
    let (status, _, body) = api
        .send(
            http.post(&stfc)
                .header("x-api-key", &s.header_key)
                .json(&function_call("x-api-key")),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // A key in the query: refused alone; beside a valid header the call runs.
    let query = format!("?api_key={}", percent_encoded(&s.bearer_key, true));
    let (status, _, _) = api
        .send(http.get(api.url(&format!("/v1/systems{query}"))))
        .await;
    assert_eq!(status, 401);
    let (status, _, body) = api
        .send(
            http.post(format!("{stfc}{query}"))
                .header("x-api-key", &s.header_key)
                .json(&function_call("query")),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Wrong keys, as bearer token and as X-API-Key.
    let (status, _, _) = api
        .send(
            http.post(&stfc)
                .bearer_auth(&s.wrong_key)
                .json(&function_call("x")),
        )
        .await;
    assert_eq!(status, 401);
    let (status, _, _) = api
        .send(
            http.get(api.url("/v1/systems"))
                .header("x-api-key", &s.wrong_key),
        )
        .await;
    assert_eq!(status, 401);

    // A unit of work: create a customer and commit, in one SAP session.
    let (status, _, body) = api
        .send(
            http.post(api.url("/v1/systems/SIM/transactions"))
                .bearer_auth(&s.bearer_key)
                .json(&json!({"calls": [{
                    "function": "BAPI_CUSTOMER_CREATEFROMDATA1",
                    "parameters": {
                        "PI_COMPANYDATA": {"NAME": "Secrets GmbH", "CITY": "Walldorf",
                            "COUNTRY": "DE", "LANGU": "E", "CURRENCY": "EUR"},
                        "PI_COPYREFERENCE": {"SALESORG": "1000", "DISTR_CHAN": "10",
                            "DIVISION": "00", "REF_CUSTMR": "0000001000"}
                    }
                }]})),
        )
        .await;
    assert_eq!((status, &body["committed"]), (200, &json!(true)), "{body}");

    // Business actions: create and read a customer, read a table, read a
    // function's interface.
    let (status, _, body) = api
        .send(
            http.post(api.url("/v1/systems/SIM/customers"))
                .header("x-api-key", &s.header_key)
                .json(
                    &json!({"name": "Contoso GmbH", "street": "Dietmar-Hopp-Allee 16",
                    "postal_code": "69190", "city": "Walldorf", "country": "DE"}),
                ),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let customer = body["customer"]
        .as_str()
        .expect("customer number")
        .to_owned();
    let (status, _, body) = api
        .send(
            http.get(api.url(&format!("/v1/systems/SIM/customers/{customer}")))
                .bearer_auth(&s.bearer_key),
        )
        .await;
    assert_eq!(
        (status, &body["name"]),
        (200, &json!("Contoso GmbH")),
        "{body}"
    );
    let (status, _, body) = api
        .send(
            http.get(api.url("/v1/systems/SIM/tables/KNA1"))
                .query(&[("fields", "KUNNR,NAME1"), ("where", "LAND1 EQ 'DE'")])
                .bearer_auth(&s.bearer_key),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = api
        .send(
            http.get(api.url("/v1/systems/SIM/functions/BAPI_CUSTOMER_GETDETAIL2"))
                .bearer_auth(&s.bearer_key),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Pass-through: a GET, and a POST with a body (the agent fetches the CSRF
    // token and cookies first); the client's own key also sits in the query.
    let items = api.url(&format!("/v1/systems/SIM/http{SERVICE}/Items"));
    let (status, _, body) = api
        .send(
            http.get(format!("{items}{query}&$top=1"))
                .header("x-api-key", &s.header_key),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = api
        .send(
            http.post(&items)
                .bearer_auth(&s.bearer_key)
                .header("content-type", "application/json")
                .body(r#"{"Name":"posted through"}"#),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        *gateway.posted.lock().expect("posted"),
        [r#"{"Name":"posted through"}"#]
    );

    // An async call, polled at its Location.
    let (status, headers, body) = api
        .send(
            http.post(&stfc)
                .bearer_auth(&s.bearer_key)
                .header("prefer", "respond-async")
                .json(&function_call("later")),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let location = headers["location"].to_str().expect("location").to_owned();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, _, body) = api
            .send(
                http.get(api.url(&location))
                    .header("x-api-key", &s.header_key),
            )
            .await;
        if status == 200 {
            assert_eq!(body["result"]["ECHOTEXT"], "later", "{body}");
            break;
        }
        assert_eq!(status, 202, "{body}");
        assert!(Instant::now() < deadline, "the async call never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The agent's connection dies; it dials again and serves the next call.
    let before = api.agent_session(&s.bearer_key, None).await;
    proxy.cut();
    api.agent_session(&s.bearer_key, Some(&before)).await;
    let (status, _, body) = api
        .send(
            http.post(&stfc)
                .bearer_auth(&s.bearer_key)
                .header("prefer", "wait=10")
                .json(&function_call("after reconnect")),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Lines of `output` that look like a credential on its way somewhere, whatever
/// its value: raw HTTP authorization headers, session cookies, query keys.
fn credential_shapes(output: &str) -> Vec<&str> {
    const SHAPES: [&str; 5] = [
        "authorization: bearer",
        "authorization: basic",
        "api_key=",
        "sap-contextid=",
        "mysapsso2=",
    ];
    output
        .lines()
        .filter(|line| {
            let line = line.to_ascii_lowercase();
            SHAPES.iter().any(|shape| line.contains(shape))
        })
        .collect()
}

/// The part of `text`'s line within 200 bytes of byte `at`.
fn around(text: &str, at: usize) -> &str {
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let mut start = line_start.max(at.saturating_sub(200));
    let mut end = line_end.min(at + 200);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    while !text.is_char_boundary(end) {
        end += 1;
    }
    &text[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_any_log_at_trace_level() {
    let s = Secrets::new();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    write(&dir.join("sap.password"), &format!("{}\n", s.sap_password));
    write(&dir.join("agent.token"), &format!("{}\n", s.agent_token));
    write(&dir.join("relay.toml"), &relay_toml(dir, &s));

    let sim_data = dir.join("sim");
    let sim = Proc::start(
        "sim",
        BIN,
        &[
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            sim_data.to_str().expect("path"),
            "--user",
            SAP_USER,
            "--password-file",
            dir.join("sap.password").to_str().expect("path"),
        ],
        &[],
    );
    let relay = Proc::start(
        "relay",
        BIN,
        &[
            "relay",
            "--config",
            dir.join("relay.toml").to_str().expect("path"),
            "--listen",
            "127.0.0.1:0",
        ],
        &[("SAPBRIDGE_CLUSTER_SECRET", s.cluster_secret.as_str())],
    );
    let (gateway_addr, gateway) = start_gateway(&s).await;
    let sim_line = sim.wait_for("sapbridge sim serving SOAP-RFC on ").await;
    let sim_url = sim_line
        .split("on ")
        .nth(1)
        .expect("sim url")
        .trim()
        .to_owned();
    let relay_line = relay.wait_for("sapbridge relay listening on ").await;
    let base = relay_line
        .split("on ")
        .nth(1)
        .expect("relay url")
        .trim()
        .to_owned();
    let relay_addr: SocketAddr = base
        .trim_start_matches("http://")
        .parse()
        .expect("relay address");
    let proxy = Proxy::start(relay_addr).await;
    write(
        &dir.join("agent.toml"),
        &agent_toml(dir, &s, proxy.addr, &sim_url, gateway_addr),
    );
    let agent_config = dir.join("agent.toml");
    let agent_config = agent_config.to_str().expect("path");

    // An agent with a wrong token (from the environment) is turned away.
    let intruder = Proc::start(
        "agent with a wrong token",
        AGENT_BIN,
        &["--config", agent_config],
        &[
            ("SAPBRIDGE_AGENT_TOKEN", s.wrong_agent_token.as_str()),
            ("SECRETS_TEST_BACKEND_PASSWORD", s.backend_password.as_str()),
        ],
    );
    intruder
        .wait_for("the relay rejected the agent token")
        .await;

    let agent = Proc::start(
        "agent",
        BIN,
        &["agent", "--config", agent_config],
        &[("SECRETS_TEST_BACKEND_PASSWORD", s.backend_password.as_str())],
    );
    let api = Api {
        http: Client::new(),
        base,
    };
    api.agent_session(&s.bearer_key, None).await;
    // A reload of the keys (SIGHUP) logs what changed, never a secret.
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &relay.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());
    relay.wait_for("keys and agent tokens reloaded").await;
    drive(&api, &s, &proxy, &gateway).await;

    let mut outputs = HashMap::new();
    for process in [intruder, agent, relay, sim] {
        let (name, output) = process.stop().await;
        outputs.insert(name, output);
    }

    // The logs are at trace level and tell what happened, without secrets.
    for name in ["relay", "agent", "sim", "agent with a wrong token"] {
        let output = &outputs[name];
        assert!(output.contains(" TRACE "), "{name} did not log at trace");
    }
    assert!(
        outputs["relay"].contains("/v1/systems/SIM/functions/STFC_CONNECTION"),
        "the relay's log names the requests"
    );

    let forms = s.forms();
    let mut leaks = Vec::new();
    for (name, output) in &outputs {
        for (label, form) in &forms {
            if let Some(at) = output.find(form.as_str()) {
                leaks.push(format!("{name}: {label} in: {}", around(output, at)));
            }
        }
        for line in credential_shapes(output) {
            leaks.push(format!("{name}: a credential in: {}", around(line, 0)));
        }
    }
    assert!(
        leaks.is_empty(),
        "{} secret(s) in the logs:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}
