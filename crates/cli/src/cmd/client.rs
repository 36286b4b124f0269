//! The operator's client of a relay's HTTP API: `sapbridge call SYSTEM FUNCTION
//! [NAME=VALUE…]` and `sapbridge customers create|get|update|search …`.
//!
//! The relay and key come from flags, then `SAPBRIDGE_URL` / `SAPBRIDGE_API_KEY`,
//! then a client file (`--client-config`, default
//! `$XDG_CONFIG_HOME/sapbridge/client.toml` or `~/.config/sapbridge/client.toml`)
//! holding `url` and `key_file` (or `key`). A call that is not done within the wait
//! answers `202`; the client then polls its `Location` (as `Retry-After` says) until
//! the call is final or `--timeout` has passed.
//!
//! Parameters: `NAME=VALUE` is a string, `NAME:=JSON` a JSON value (a number, a
//! structure, a table), as HTTPie writes them; `--json FILE` (or `-` for stdin)
//! gives a whole parameter object that those then add to.
//!
//! Exit codes: 0 the call succeeded; 1 it failed (SAP's error, or the relay's
//! problem for the request); 3 refused (unknown key, no access, unknown system or
//! customer); 4 not final within `--timeout` (its `Location` is printed); 5 the
//! relay could not be reached or answered something that is not the API; 64 bad
//! usage or client configuration.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use reqwest::{Method, StatusCode, Url};
use sapbridge_proto::Secret;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Exit code: the call failed.
pub(crate) const EXIT_FAILED: u8 = 1;
/// Exit code: the relay refused the request (key, scope, unknown system or object).
pub(crate) const EXIT_REFUSED: u8 = 3;
/// Exit code: the call was not final within `--timeout`.
pub(crate) const EXIT_PENDING: u8 = 4;
/// Exit code: the relay could not be reached, or did not answer as the API does.
pub(crate) const EXIT_UNREACHABLE: u8 = 5;
/// Exit code: bad usage or client configuration (BSD `EX_USAGE`).
pub(crate) const EXIT_USAGE: u8 = 64;

/// Where the relay is and how to reach it: shared by the client commands.
#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    /// The relay's base URL (`https://relay.example.com`).
    #[arg(long, env = "SAPBRIDGE_URL", global = true)]
    url: Option<String>,
    /// The API key (prefer `--key-file` or `SAPBRIDGE_API_KEY`: a command line is
    /// visible to other users of the host).
    #[arg(long, env = "SAPBRIDGE_API_KEY", hide_env_values = true, global = true)]
    key: Option<Secret>,
    /// A file holding the API key (its first line).
    #[arg(long, global = true)]
    key_file: Option<PathBuf>,
    /// The client file with `url` and `key_file` (or `key`).
    #[arg(long, env = "SAPBRIDGE_CLIENT_CONFIG", global = true)]
    client_config: Option<PathBuf>,
    /// How the answer is printed: readable text, or the relay's JSON as it came.
    #[arg(long, value_enum, default_value = "text", global = true)]
    output: Output,
    /// How long to wait for the call to be final, in seconds (polling its
    /// `Location` after the relay's own wait).
    #[arg(long, default_value_t = 120, global = true)]
    pub(crate) timeout: u64,
}

impl ClientArgs {
    /// Whether `--output json` asks for the relay's JSON as it came.
    pub(crate) fn json_output(&self) -> bool {
        self.output == Output::Json
    }
}

/// How the answer is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Readable text.
    Text,
    /// The relay's JSON body, as it came.
    Json,
}

/// Options of `sapbridge call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The SAP system (as the relay names it).
    system: String,
    /// The function module (`BAPI_CUSTOMER_GETDETAIL2`, `RFC_READ_TABLE`, …).
    function: String,
    /// Parameters: `NAME=VALUE` (a string) or `NAME:=JSON` (a number, structure or
    /// table).
    #[arg(value_name = "NAME=VALUE")]
    parameters: Vec<String>,
    /// A JSON object of parameters (`-`: standard input); `NAME=VALUE` adds to it.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Sent as `Idempotency-Key`: a retry with the same key runs the call once.
    #[arg(long)]
    idempotency_key: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

/// Options of `sapbridge customers`.
#[derive(Debug, Args)]
pub struct CustomersArgs {
    #[command(subcommand)]
    command: CustomersCommand,
    #[command(flatten)]
    client: ClientArgs,
}

/// The customer actions.
#[derive(Debug, Subcommand)]
enum CustomersCommand {
    /// Creates a customer: `sapbridge customers create SYSTEM name=… city=…
    /// country=…` (the fields of `POST /v1/systems/{system}/customers`).
    Create {
        system: String,
        #[arg(value_name = "FIELD=VALUE")]
        fields: Vec<String>,
        /// Sent as `Idempotency-Key`: a retry with the same key creates one customer.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Reads a customer.
    Get { system: String, customer: String },
    /// Changes the given fields of a customer.
    Update {
        system: String,
        customer: String,
        #[arg(value_name = "FIELD=VALUE")]
        fields: Vec<String>,
    },
    /// Searches customers: `name=`, `city=`, `country=`, `limit=`.
    Search {
        system: String,
        #[arg(value_name = "FIELD=VALUE")]
        filters: Vec<String>,
    },
}

/// A request to make: method, path segments under the relay's base URL, query
/// pairs and JSON body.
pub(crate) struct Request {
    method: Method,
    segments: Vec<String>,
    query: Vec<(String, String)>,
    pub(crate) body: Option<Value>,
    pub(crate) idempotency_key: Option<String>,
    /// More headers, sent with the request (not with the polls of its `Location`).
    pub(crate) headers: Vec<(String, String)>,
}

impl Request {
    /// A request of `method` to `/v1/` + `segments` (each checked by [`segment`]).
    pub(crate) fn to(method: Method, segments: &[&str]) -> Result<Self, String> {
        let mut path = vec!["v1".to_owned()];
        for part in segments {
            path.push(segment(part)?.to_owned());
        }
        Ok(Self {
            method,
            segments: path,
            query: Vec::new(),
            body: None,
            idempotency_key: None,
            headers: Vec::new(),
        })
    }

    /// The request's URL under `base` (whose path, a reverse proxy's prefix, is
    /// kept); segments are percent-encoded (`/BIC/Z_FN` stays one segment).
    fn url(&self, base: &Url) -> Url {
        let mut url = base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(&self.segments);
        }
        url.set_query(None);
        if !self.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&self.query);
        }
        url
    }
}

/// Runs `sapbridge call`; the process's exit code.
pub(crate) async fn call(args: CallArgs) -> ExitCode {
    let request = (|| -> Result<Request, String> {
        let mut parameters = match &args.json {
            Some(path) => read_json_object(path)?,
            None => Map::new(),
        };
        parameters.extend(parse_pairs(&args.parameters)?);
        let mut request = Request::to(
            Method::POST,
            &["systems", &args.system, "functions", &args.function],
        )?;
        request.body = Some(Value::Object(parameters));
        request.idempotency_key.clone_from(&args.idempotency_key);
        Ok(request)
    })();
    match request {
        Ok(request) => send(&args.client, request).await,
        Err(message) => usage(&message),
    }
}

/// Runs `sapbridge customers …`; the process's exit code.
pub(crate) async fn customers(args: CustomersArgs) -> ExitCode {
    let request = (|| -> Result<Request, String> {
        Ok(match &args.command {
            CustomersCommand::Create {
                system,
                fields,
                idempotency_key,
            } => {
                let mut request = Request::to(Method::POST, &["systems", system, "customers"])?;
                request.body = Some(Value::Object(parse_pairs(fields)?));
                request.idempotency_key.clone_from(idempotency_key);
                request
            }
            CustomersCommand::Get { system, customer } => {
                Request::to(Method::GET, &["systems", system, "customers", customer])?
            }
            CustomersCommand::Update {
                system,
                customer,
                fields,
            } => {
                let mut request =
                    Request::to(Method::PATCH, &["systems", system, "customers", customer])?;
                request.body = Some(Value::Object(parse_pairs(fields)?));
                request
            }
            CustomersCommand::Search { system, filters } => {
                let mut request = Request::to(Method::GET, &["systems", system, "customers"])?;
                for (name, value) in parse_pairs(filters)? {
                    let value = match value {
                        Value::String(text) => text,
                        other => other.to_string(),
                    };
                    request.query.push((name, value));
                }
                request
            }
        })
    })();
    match request {
        Ok(request) => send(&args.client, request).await,
        Err(message) => usage(&message),
    }
}

/// A name that goes into the path (it is percent-encoded there): refused when
/// empty, a dot segment or holding control characters.
fn segment(text: &str) -> Result<&str, String> {
    if text.is_empty() || text == "." || text == ".." || text.chars().any(char::is_control) {
        return Err(format!("{text:?} is not a name the API knows"));
    }
    Ok(text)
}

/// `NAME=VALUE` (a string) and `NAME:=JSON` pairs as a JSON object.
fn parse_pairs(pairs: &[String]) -> Result<Map<String, Value>, String> {
    let mut map = Map::new();
    for pair in pairs {
        let (name, value) = match (pair.find(":="), pair.find('=')) {
            (Some(raw), Some(eq)) if raw < eq => {
                let json = &pair[raw + 2..];
                let value = serde_json::from_str(json)
                    .map_err(|e| format!("{pair:?}: the value after := is not JSON ({e})"))?;
                (&pair[..raw], value)
            }
            (_, Some(eq)) => (&pair[..eq], Value::String(pair[eq + 1..].to_owned())),
            _ => return Err(format!("{pair:?} is not NAME=VALUE or NAME:=JSON")),
        };
        if name.is_empty() {
            return Err(format!("{pair:?} has no name before ="));
        }
        map.insert(name.to_owned(), value);
    }
    Ok(map)
}

/// The JSON object in `path` (`-`: standard input).
fn read_json_object(path: &Path) -> Result<Map<String, Value>, String> {
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("reading standard input: {e}"))?;
        text
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?
    };
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(format!("{} holds JSON but not an object", path.display())),
        Err(e) => Err(format!("{} is not JSON: {e}", path.display())),
    }
}

/// The client file's settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    url: Option<String>,
    key: Option<Secret>,
    key_file: Option<PathBuf>,
}

/// Where the client file is when `--client-config` does not say.
fn default_client_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("sapbridge/client.toml"))
}

/// The relay's URL and the key, from flags, the environment, then the client file.
pub(crate) fn resolve(args: &ClientArgs) -> Result<(Url, Secret), String> {
    let (file, file_dir) = match args.client_config.clone() {
        Some(path) => (
            Some(read_client_file(&path)?),
            path.parent().map(Path::to_path_buf),
        ),
        None => match default_client_file().filter(|path| path.exists()) {
            Some(path) => (
                Some(read_client_file(&path)?),
                path.parent().map(Path::to_path_buf),
            ),
            None => (None, None),
        },
    };
    let file = file.unwrap_or_default();
    let url = args
        .url
        .clone()
        .or(file.url)
        .ok_or("no relay URL: give --url, SAPBRIDGE_URL or url in the client file")?;
    let url = Url::parse(&url).map_err(|e| format!("the relay URL {url:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the relay URL {url} must start with http:// or https://"
        ));
    }
    let key = if let Some(key) = &args.key {
        key.clone()
    } else if let Some(path) = &args.key_file {
        read_key_file(path)?
    } else if let Some(key) = file.key {
        key
    } else if let Some(path) = file.key_file {
        // Relative to the client file's folder.
        let path = file_dir.map_or(path.clone(), |dir| dir.join(&path));
        read_key_file(&path)?
    } else {
        return Err(
            "no API key: give --key-file, SAPBRIDGE_API_KEY or key_file in the client file".into(),
        );
    };
    if key.expose().trim().is_empty() {
        return Err("the API key is empty".into());
    }
    Ok((url, key))
}

fn read_client_file(path: &Path) -> Result<ClientFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading the client file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("the client file {}: {e}", path.display()))
}

fn read_key_file(path: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading the key file {}: {e}", path.display()))?;
    Ok(Secret::new(text.lines().next().unwrap_or_default().trim()))
}

/// Prints a usage error; exit 64.
pub(crate) fn usage(message: &str) -> ExitCode {
    eprintln!("sapbridge: {message}");
    ExitCode::from(EXIT_USAGE)
}

/// Sends `request`, follows a `202` to the final answer, prints it; the exit code.
async fn send(args: &ClientArgs, request: Request) -> ExitCode {
    let (base, key) = match resolve(args) {
        Ok(found) => found,
        Err(message) => return usage(&message),
    };
    let http = match http_client() {
        Ok(http) => http,
        Err(error) => {
            eprintln!("sapbridge: {error:#}");
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    match exchange(&http, &base, &key, &request, deadline).await {
        Ok(answer) => report(args.output, &answer),
        Err(error) => {
            eprintln!("sapbridge: {error:#}");
            ExitCode::from(EXIT_UNREACHABLE)
        }
    }
}

/// A final (or still pending) answer of the relay.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
    /// The call's `Location` while it is still running.
    pub(crate) location: Option<String>,
    /// The answer's `Retry-After`, in seconds.
    pub(crate) retry_after: Option<Duration>,
}

/// The HTTP client of the client commands.
pub(crate) fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .context("building the HTTP client")
}

/// The request, then its `Location` polled while it answers `202`, until
/// `deadline`.
pub(crate) async fn exchange(
    http: &reqwest::Client,
    base: &Url,
    key: &Secret,
    request: &Request,
    deadline: Instant,
) -> anyhow::Result<Answer> {
    let url = request.url(base);
    let left = deadline.saturating_duration_since(Instant::now()).as_secs();
    let wait = left.clamp(1, 60);
    let mut builder = http
        .request(request.method.clone(), url.clone())
        .bearer_auth(key.expose())
        .header("prefer", format!("wait={wait}"));
    if let Some(body) = &request.body {
        builder = builder.json(body);
    }
    if let Some(idempotency_key) = &request.idempotency_key {
        builder = builder.header("idempotency-key", idempotency_key);
    }
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    let mut response = builder
        .send()
        .await
        .with_context(|| format!("could not reach the relay at {base}"))?;
    loop {
        let status = response.status();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let asked = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let retry_after = asked.unwrap_or(1).clamp(1, 10);
        let body = body_of(response).await?;
        if status != StatusCode::ACCEPTED {
            return Ok(Answer {
                status,
                body,
                location: None,
                retry_after: asked.map(Duration::from_secs),
            });
        }
        let Some(location) = location else {
            anyhow::bail!("the relay answered 202 without a Location");
        };
        let pause = Duration::from_secs(retry_after);
        if Instant::now() + pause > deadline {
            return Ok(Answer {
                status,
                body,
                location: Some(location),
                retry_after: Some(pause),
            });
        }
        tokio::time::sleep(pause).await;
        let next = join(base, &location)?;
        if next.origin() != base.origin() {
            anyhow::bail!(
                "the relay's Location {next} is not on {base}; not sending the key there"
            );
        }
        response = http
            .get(next)
            .bearer_auth(key.expose())
            .header("prefer", format!("wait={wait}"))
            .send()
            .await
            .with_context(|| format!("could not reach the relay at {base}"))?;
    }
}

/// A `Location` (an absolute URL, or a path from the relay's root as the relay
/// writes it when it knows no public address) against the base URL.
fn join(base: &Url, location: &str) -> anyhow::Result<Url> {
    base.join(location)
        .with_context(|| format!("the relay's Location {location:?} is not a URL"))
}

/// The body as JSON; an answer that is not JSON is not the API.
async fn body_of(response: reqwest::Response) -> anyhow::Result<Value> {
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .context("reading the relay's answer")?;
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).with_context(|| {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
        format!("the answer ({status}) is not the sapbridge API's JSON: {text:?}")
    })
}

/// Prints `answer` and says what the exit code is.
fn report(output: Output, answer: &Answer) -> ExitCode {
    let code = exit_code(answer);
    if output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer.body).unwrap_or_default()
        );
    } else if let Some(location) = &answer.location {
        println!("still running: {location}");
        println!("(poll it with GET and the same key, or wait longer with --timeout)");
    } else if answer.status.is_success() {
        print!("{}", readable(&answer.body));
    } else {
        print!("{}", readable_problem(answer));
    }
    if let (Output::Json, Some(location)) = (output, &answer.location) {
        eprintln!("sapbridge: still running: {location}");
    }
    ExitCode::from(code)
}

/// The exit code of an answer.
fn exit_code(answer: &Answer) -> u8 {
    if answer.location.is_some() {
        return EXIT_PENDING;
    }
    match answer.status.as_u16() {
        200..=299 => {
            // A finished call's record says how it ended.
            match answer.body.get("status").and_then(Value::as_str) {
                Some("failed" | "expired" | "cancelled") => EXIT_FAILED,
                _ => 0,
            }
        }
        401 | 403 | 404 => EXIT_REFUSED,
        _ => EXIT_FAILED,
    }
}

/// A success body as text: a call's result (or the body itself) as `NAME: value`
/// lines, structures and tables indented below their name.
fn readable(body: &Value) -> String {
    let shown = body.get("result").unwrap_or(body);
    let mut out = String::new();
    if let Some(id) = body.get("id").and_then(Value::as_str) {
        out.push_str(&format!(
            "call {id}: {}\n",
            body["status"].as_str().unwrap_or("?")
        ));
    }
    write_value(&mut out, shown, 0);
    out
}

fn write_value(out: &mut String, value: &Value, depth: usize) {
    let indent = "  ".repeat(depth);
    match value {
        Value::Object(map) => {
            for (name, value) in map {
                match value {
                    Value::Object(_) | Value::Array(_) => {
                        out.push_str(&format!("{indent}{name}:\n"));
                        write_value(out, value, depth + 1);
                    }
                    scalar => out.push_str(&format!("{indent}{name}: {}\n", scalar_text(scalar))),
                }
            }
        }
        Value::Array(rows) => {
            if rows.is_empty() {
                out.push_str(&format!("{indent}(no rows)\n"));
            }
            for (i, row) in rows.iter().enumerate() {
                match row {
                    Value::Object(_) | Value::Array(_) => {
                        out.push_str(&format!("{indent}- row {}\n", i + 1));
                        write_value(out, row, depth + 1);
                    }
                    scalar => out.push_str(&format!("{indent}- {}\n", scalar_text(scalar))),
                }
            }
        }
        scalar => out.push_str(&format!("{indent}{}\n", scalar_text(scalar))),
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A problem (or a failed call's record) in one line: SAP's message when it gave
/// one, else the problem's detail or title.
pub(crate) fn problem_line(body: &Value) -> String {
    let problem = body.get("problem").unwrap_or(body);
    let sap = problem
        .get("rfc_error")
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str);
    let text = sap
        .or_else(|| problem.get("detail").and_then(Value::as_str))
        .or_else(|| problem.get("title").and_then(Value::as_str));
    text.map_or_else(|| body.to_string(), str::to_owned)
}

/// A problem (or a failed call's record) as text.
fn readable_problem(answer: &Answer) -> String {
    let body = &answer.body;
    let problem = body.get("problem").unwrap_or(body);
    let title = problem
        .get("title")
        .and_then(Value::as_str)
        .unwrap_or("error");
    let mut out = format!("{} {title}\n", answer.status.as_u16());
    if let Some(detail) = problem.get("detail").and_then(Value::as_str) {
        out.push_str(&format!("{detail}\n"));
    }
    if let Some(rfc) = problem.get("rfc_error") {
        out.push_str("SAP:\n");
        write_value(&mut out, rfc, 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_strings_unless_written_as_json() {
        let pairs = [
            "KUNNR=0000001000".to_owned(),
            "MAX:=10".to_owned(),
            "ADDR:={\"CITY\":\"Walldorf\"}".to_owned(),
            "EQ=a=b".to_owned(),
            "TEXT:=\"x:=y\"".to_owned(),
        ];
        let map = parse_pairs(&pairs).unwrap();
        assert_eq!(map["KUNNR"], "0000001000");
        assert_eq!(map["MAX"], 10);
        assert_eq!(map["ADDR"]["CITY"], "Walldorf");
        assert_eq!(map["EQ"], "a=b");
        assert_eq!(map["TEXT"], "x:=y");
        for bad in ["NOVALUE", "=x", "N:={", ":=1"] {
            assert!(parse_pairs(&[bad.to_owned()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_go_into_the_path_encoded_and_never_change_it() {
        for bad in ["", ".", "..", "A\nB"] {
            assert!(
                Request::to(Method::GET, &["systems", bad]).is_err(),
                "{bad:?}"
            );
        }
        let base = Url::parse("https://gw.example.com/sapbridge/").unwrap();
        let request = Request::to(
            Method::POST,
            &["systems", "PRD", "functions", "/BIC/Z_FN?x#y"],
        )
        .unwrap();
        assert_eq!(
            request.url(&base).as_str(),
            "https://gw.example.com/sapbridge/v1/systems/PRD/functions/%2FBIC%2FZ_FN%3Fx%23y"
        );
        let mut search = Request::to(Method::GET, &["systems", "PRD", "customers"]).unwrap();
        search.query.push(("name".into(), "A&B GmbH".into()));
        assert_eq!(
            search
                .url(&Url::parse("http://127.0.0.1:8080").unwrap())
                .as_str(),
            "http://127.0.0.1:8080/v1/systems/PRD/customers?name=A%26B+GmbH"
        );
    }

    #[test]
    fn locations_are_read_against_the_relay() {
        let plain = Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            join(&plain, "/v1/calls/c_1").unwrap().as_str(),
            "http://127.0.0.1:8080/v1/calls/c_1"
        );
        assert_eq!(
            join(&plain, "http://127.0.0.1:8080/v1/calls/c_2")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8080/v1/calls/c_2"
        );
    }
}
