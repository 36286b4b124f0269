//! `GET /openapi.json` and the document's fit with the router: the checked-in
//! `relay/src/http/openapi.json` is what the code generates (`UPDATE_OPENAPI=1`
//! rewrites it), every route the
//! router registers is documented with exactly its methods, every documented
//! operation is routed on a live relay (neither 404 "no such resource" nor 405),
//! the documented security matches what the relay asks for, and every `$ref`
//! resolves.
//!
//! [`ROUTES`] mirrors the router by hand; `the_route_list_mirrors_the_router`
//! checks it against the `.route(…)` calls in the router's source, so a new
//! route fails this test until it is documented.
//!
//! Also: the documented customer `maxLength`s are the limits the relay enforces
//! (at the limit accepted, one past it `400` naming the field), and the Power
//! Automate connector (`deploy/power-automate/`) only uses documented operations
//! with the same limits.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{API_KEY, TestRelay};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// What `any(…)` routes: the methods the document lists for pass-through.
const ANY: &[&str] = &["get", "put", "post", "patch", "delete", "head", "options"];

/// The router's routes (axum syntax) and methods; `relay/src/http/mod.rs` and
/// `relay/src/passthrough/mod.rs`.
const ROUTES: &[(&str, &[&str])] = &[
    ("/v1/agent/connect", &["get"]),
    ("/v1/systems", &["get"]),
    ("/v1/systems/{system}/functions", &["get"]),
    (
        "/v1/systems/{system}/functions/{function}",
        &["get", "post"],
    ),
    ("/v1/systems/{system}/transactions", &["post"]),
    ("/v1/systems/{system}/customers", &["get", "post"]),
    (
        "/v1/systems/{system}/customers/{customer}",
        &["get", "patch"],
    ),
    ("/v1/systems/{system}/tables/{table}", &["get"]),
    ("/v1/systems/{system}/tables/{table}/fields", &["get"]),
    ("/v1/systems/{system}/tables/{table}/query", &["post"]),
    ("/v1/calls", &["get"]),
    ("/v1/calls/{id}", &["delete", "get"]),
    ("/v1/audit", &["get"]),
    ("/v1/admin/keys", &["get", "post"]),
    ("/v1/admin/keys/{name}", &["delete"]),
    ("/v1/admin/agent-tokens", &["get", "post"]),
    ("/v1/admin/agent-tokens/{name}", &["delete"]),
    ("/v1/webhooks/deliveries", &["get"]),
    ("/v1/webhooks/deliveries/{id}", &["get"]),
    ("/v1/webhooks/deliveries/{id}/redeliver", &["post"]),
    ("/v1/webhooks/subscriptions", &["get", "post"]),
    ("/v1/webhooks/subscriptions/{id}", &["delete"]),
    ("/healthz", &["get"]),
    ("/readyz", &["get"]),
    ("/metrics", &["get"]),
    ("/openapi.json", &["get"]),
    ("/v1/systems/{system}/http", ANY),
    ("/v1/systems/{system}/http/", ANY),
    ("/v1/systems/{system}/http/{*path}", ANY),
];

/// The router's source files.
const ROUTER_SOURCES: &[&str] = &["src/http/mod.rs", "src/passthrough/mod.rs"];

/// Values for path parameters when probing the live relay (`PRD` is a system of
/// the test configuration; no agent serves it, so nothing runs).
const PROBE_VALUES: &[(&str, &str)] = &[
    ("system", "PRD"),
    ("function", "STFC_CONNECTION"),
    ("customer", "1000"),
    ("table", "KNA1"),
    ("id", "c_does_not_exist"),
    ("name", "nobody"),
    ("path", "sap/opu/odata/sap/API_BUSINESS_PARTNER"),
];

type RouteMap = BTreeMap<String, BTreeSet<String>>;

fn expected_routes() -> RouteMap {
    ROUTES
        .iter()
        .map(|(path, methods)| {
            let methods = methods.iter().map(|m| (*m).to_owned()).collect();
            ((*path).to_owned(), methods)
        })
        .collect()
}

/// An axum route path as an OpenAPI path (`{*path}` → `{path}`).
fn openapi_path(route: &str) -> String {
    route.replace("{*", "{")
}

/// The `.route("path", handlers)` calls of a source file, with the methods their
/// handlers name (`get(…)`, `.post(…)`, `patch(…)`, `any(…)`, …).
fn routes_in_source(source: &str) -> Vec<(String, BTreeSet<String>)> {
    let mut found = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find(".route(") {
        let args = &rest[start + ".route(".len()..];
        let end = closing_paren(args).expect("balanced .route( call");
        let call = &args[..end];
        let path = call
            .split('"')
            .nth(1)
            .expect("a .route( call starts with its path literal");
        found.push((path.to_owned(), methods_in(call)));
        rest = &args[end..];
    }
    found
}

/// The index of the `)` closing an already opened `(`, skipping string literals.
fn closing_paren(text: &str) -> Option<usize> {
    let mut depth = 1usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// The HTTP methods a handler expression routes: method-router constructors or
/// chained methods followed by `(`, not paths like `customers::get`.
fn methods_in(call: &str) -> BTreeSet<String> {
    let bytes = call.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut methods = BTreeSet::new();
    let mut i = 0;
    while i < bytes.len() {
        if !is_ident(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_ident(bytes[i]) {
            i += 1;
        }
        let word = &call[start..i];
        let called = call[i..].trim_start().starts_with('(');
        let qualified = call[..start].ends_with("::");
        if !called || qualified {
            continue;
        }
        match word {
            "any" => methods.extend(ANY.iter().map(|m| (*m).to_owned())),
            "get" | "post" | "put" | "patch" | "delete" | "head" | "options" | "trace" => {
                methods.insert(word.to_owned());
            }
            _ => {}
        }
    }
    methods
}

#[test]
fn the_route_list_mirrors_the_router() {
    let mut in_source = RouteMap::new();
    for file in ROUTER_SOURCES {
        let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
        let source = std::fs::read_to_string(&path).expect("router source");
        for (route, methods) in routes_in_source(&source) {
            in_source.entry(route).or_default().extend(methods);
        }
    }
    assert_eq!(
        in_source,
        expected_routes(),
        "ROUTES in relay/tests/openapi.rs must list the router's routes and methods \
         (and relay/src/http/openapi.json must document them)"
    );
}

/// Resolves a local `$ref` (`#/components/...`) as a JSON pointer.
fn resolve<'a>(document: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    document.pointer(pointer)
}

/// A value, or what its `$ref` points to.
fn deref<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => resolve(document, reference).expect("resolvable $ref"),
        None => value,
    }
}

/// Every `$ref` in `value`, with the JSON path where it occurs.
fn collect_refs(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                if key == "$ref" {
                    if let Some(reference) = item.as_str() {
                        out.push((at.to_owned(), reference.to_owned()));
                    }
                } else {
                    collect_refs(item, &format!("{at}/{key}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_refs(item, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// The documented operations: path → method → operation (path items resolved).
fn documented(document: &Value) -> BTreeMap<String, BTreeMap<String, Value>> {
    let paths = document["paths"].as_object().expect("paths");
    paths
        .iter()
        .map(|(path, item)| {
            let item = deref(document, item);
            let operations = ANY
                .iter()
                .chain(&["trace"])
                .filter_map(|m| item.get(*m).map(|op| ((*m).to_owned(), op.clone())))
                .collect();
            (path.clone(), operations)
        })
        .collect()
}

/// The parameters of a path item and its operation, resolved.
fn parameters<'a>(document: &'a Value, item: &'a Value, operation: &'a Value) -> Vec<&'a Value> {
    [item.get("parameters"), operation.get("parameters")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .map(|p| deref(document, p))
        .collect()
}

/// A documented path with its parameters filled in for probing.
fn probe_url(base: &str, path: &str) -> String {
    let mut url = format!("{base}{path}");
    for (name, value) in PROBE_VALUES {
        url = url.replace(&format!("{{{name}}}"), value);
    }
    assert!(
        !url.contains('{'),
        "no probe value for a parameter of {path}"
    );
    url
}

/// Sends `method` to `url`, with or without the API key; the status and the
/// problem `type` of the answer, if any.
async fn probe(
    relay: &TestRelay,
    method: &str,
    url: &str,
    with_key: bool,
) -> (StatusCode, Option<String>) {
    let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
    let mut request = relay
        .http
        .request(method.clone(), url)
        .header("prefer", "respond-async");
    if with_key {
        request = request.bearer_auth(API_KEY);
    }
    if [Method::POST, Method::PUT, Method::PATCH].contains(&method) {
        request = request
            .header("content-type", "application/json")
            .body("{}");
    }
    let response = request.send().await.expect("probe answered");
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let problem_type = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned));
    (status, problem_type)
}

/// Whether the router, not a handler, refused the request (unknown route or method).
fn unrouted(status: StatusCode, problem_type: Option<&str>, method: &str) -> bool {
    if status == StatusCode::METHOD_NOT_ALLOWED {
        return true;
    }
    if status != StatusCode::NOT_FOUND {
        return false;
    }
    // A HEAD answer has no body to tell "no such resource" from "no such call".
    method == "head" || problem_type == Some("/problems/not-found")
}

#[tokio::test]
async fn the_document_is_served_and_matches_the_router() {
    let relay = TestRelay::start().await;

    // Served without a key, as JSON, exactly as embedded.
    let response = relay
        .http
        .get(format!("{}/openapi.json", relay.url))
        .send()
        .await
        .expect("openapi.json");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let text = response.text().await.expect("body");
    let checked_in = checked_in_path();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&checked_in, &text).expect("openapi.json written");
    }
    let on_disk = std::fs::read_to_string(&checked_in).expect("openapi.json");
    assert!(
        text == on_disk,
        "relay/src/http/openapi.json is not the document the code generates; rewrite it with \
         UPDATE_OPENAPI=1 cargo test -p sapbridge-relay --test openapi, then run \
         python3 deploy/power-automate/generate.py"
    );
    let document: Value = serde_json::from_str(&text).expect("JSON");
    let version = document["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3.1"), "{version}");

    // Every $ref resolves.
    let mut refs = Vec::new();
    collect_refs(&document, "", &mut refs);
    assert!(!refs.is_empty());
    for (at, reference) in &refs {
        assert!(
            resolve(&document, reference).is_some(),
            "{at}: $ref {reference} does not resolve"
        );
    }

    // The documented paths and methods are the router's.
    let operations = documented(&document);
    let documented_routes: RouteMap = operations
        .iter()
        .map(|(path, ops)| (path.clone(), ops.keys().cloned().collect()))
        .collect();
    let routed: RouteMap = expected_routes()
        .into_iter()
        .map(|(path, methods)| (openapi_path(&path), methods))
        .collect();
    assert_eq!(documented_routes, routed);

    // Operation ids are unique; path templates have their parameters.
    let mut operation_ids = BTreeSet::new();
    let paths = document["paths"].as_object().expect("paths");
    for (path, ops) in &operations {
        let item = deref(&document, &paths[path]);
        for (method, operation) in ops {
            if let Some(id) = operation.get("operationId").and_then(Value::as_str) {
                assert!(operation_ids.insert(id.to_owned()), "duplicate {id}");
            }
            let declared: BTreeSet<&str> = parameters(&document, item, operation)
                .into_iter()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            let templated: BTreeSet<&str> = path
                .split('{')
                .skip(1)
                .filter_map(|s| s.split('}').next())
                .collect();
            assert_eq!(declared, templated, "{method} {path}: path parameters");
            assert!(
                operation["responses"]
                    .as_object()
                    .is_some_and(|r| !r.is_empty()),
                "{method} {path}: responses"
            );
        }
    }

    // The probe tells routed from unrouted requests.
    let (status, kind) = probe(&relay, "get", &format!("{}/v1/nope", relay.url), true).await;
    assert!(unrouted(status, kind.as_deref(), "get"));
    let (status, kind) = probe(&relay, "put", &format!("{}/v1/systems", relay.url), true).await;
    assert!(unrouted(status, kind.as_deref(), "put"));

    // Every documented operation is routed, and asks for a key exactly when the
    // document says so.
    let default_security = document["security"]
        .as_array()
        .is_some_and(|s| !s.is_empty());
    for (path, ops) in &operations {
        let url = probe_url(&relay.url, path);
        for (method, operation) in ops {
            let (status, kind) = probe(&relay, method, &url, true).await;
            assert!(
                !unrouted(status, kind.as_deref(), method),
                "{method} {path} is documented but not routed: {status} {kind:?}"
            );
            let secured = match operation.get("security").and_then(Value::as_array) {
                // `[]` and `[{}]` (the empty requirement: anonymous) need no key.
                Some(requirements) => {
                    !requirements.is_empty()
                        && requirements
                            .iter()
                            .all(|r| r.as_object().is_some_and(|r| !r.is_empty()))
                }
                None => default_security,
            };
            let (status, _) = probe(&relay, method, &url, false).await;
            assert_eq!(
                status == StatusCode::UNAUTHORIZED,
                secured,
                "{method} {path} without a key answered {status}"
            );
        }
    }

    relay.stop().await;
}

/// The checked-in document (`relay/src/http/openapi.json`), the generated artefact.
fn checked_in_path() -> String {
    format!("{}/src/http/openapi.json", env!("CARGO_MANIFEST_DIR"))
}

/// The checked-in document, which equals the served one (see
/// `the_document_is_served_and_matches_the_router`).
fn embedded() -> Value {
    let text = std::fs::read_to_string(checked_in_path()).expect("openapi.json");
    serde_json::from_str(&text).expect("openapi.json is JSON")
}

/// The `maxLength` of every property of a schema in `components/schemas`.
fn max_lengths(document: &Value, schema: &str) -> BTreeMap<String, u64> {
    document["components"]["schemas"][schema]["properties"]
        .as_object()
        .expect("schema properties")
        .iter()
        .filter_map(|(name, p)| Some((name.clone(), p["maxLength"].as_u64()?)))
        .collect()
}

#[tokio::test]
async fn the_documented_customer_limits_are_the_relays() {
    let relay = TestRelay::start().await;
    let document = embedded();
    let base = format!("{}/v1/systems/PRD/customers", relay.url);
    let required = [("name", "N"), ("city", "C"), ("country", "DE")];
    for (schema, method, url) in [
        ("CustomerCreate", Method::POST, base.clone()),
        ("CustomerPatch", Method::PATCH, format!("{base}/1000")),
    ] {
        let limits = max_lengths(&document, schema);
        assert!(limits.len() >= 13, "{schema}: {limits:?}");
        for (field, max) in &limits {
            for (length, fits) in [(*max, true), (max + 1, false)] {
                let mut body = serde_json::Map::new();
                for (name, value) in required {
                    body.insert(name.into(), Value::from(value));
                }
                let max = usize::try_from(length).expect("length");
                body.insert(field.clone(), Value::from("A".repeat(max)));
                let response = relay
                    .http
                    .request(method.clone(), &url)
                    .bearer_auth(API_KEY)
                    .header("prefer", "respond-async")
                    .json(&body)
                    .send()
                    .await
                    .expect("answer");
                let status = response.status();
                let problem: Value = response.json().await.unwrap_or_default();
                let detail = problem["detail"].as_str().unwrap_or_default();
                if fits {
                    assert_eq!(
                        status,
                        StatusCode::ACCEPTED,
                        "{schema}.{field} of {length} characters: {problem}"
                    );
                } else {
                    assert_eq!(status, StatusCode::BAD_REQUEST, "{schema}.{field}");
                    assert!(
                        detail.starts_with(&format!("{field}:")),
                        "{schema}.{field} of {length} characters: {detail}"
                    );
                }
            }
        }
    }
    relay.stop().await;
}

#[test]
fn the_power_automate_connector_matches_the_document() {
    let path = format!(
        "{}/../deploy/power-automate/apiDefinition.swagger.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let connector: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("connector")).expect("JSON");
    let document = embedded();
    let operations = documented(&document);
    let connector_paths = connector["paths"].as_object().expect("paths");
    for (path, item) in connector_paths {
        for method in item.as_object().expect("path item").keys() {
            assert!(
                operations
                    .get(path)
                    .is_some_and(|ops| ops.contains_key(method)),
                "the connector's {method} {path} is not in openapi.json"
            );
        }
    }
    for (connector_schema, schema) in [
        ("CustomerCreate", "CustomerCreate"),
        ("CustomerPatch", "CustomerPatch"),
    ] {
        let in_connector: BTreeMap<String, u64> =
            connector["definitions"][connector_schema]["properties"]
                .as_object()
                .expect("connector schema")
                .iter()
                .filter_map(|(name, p)| Some((name.clone(), p["maxLength"].as_u64()?)))
                .collect();
        assert_eq!(in_connector, max_lengths(&document, schema), "{schema}");
    }
}

/// Whether a schema lets `null` through.
fn nullable(schema: &Value) -> bool {
    let null_type = match &schema["type"] {
        Value::String(t) => t == "null",
        Value::Array(types) => types.iter().any(|t| t == "null"),
        _ => false,
    };
    null_type
        || ["oneOf", "anyOf"].iter().any(|key| {
            schema[*key]
                .as_array()
                .is_some_and(|alternatives| alternatives.iter().any(nullable))
        })
}

/// What fuzzing found loose, tightened: request bodies' required fields are not
/// nullable (and the relay refuses `null` there), function and table names have
/// their pattern and maximum length (and the relay refuses what they do not
/// match), `Sapbridge-Queue-Ttl` has its maximum (refused one past it).
#[tokio::test]
async fn what_the_document_refuses_the_relay_refuses() {
    let document = embedded();
    let mut bodies = BTreeSet::new();
    for ops in documented(&document).values() {
        for operation in ops.values() {
            let body = &operation["requestBody"]["content"]["application/json"]["schema"];
            if let Some(reference) = body["$ref"].as_str() {
                bodies.insert(
                    reference
                        .trim_start_matches("#/components/schemas/")
                        .to_owned(),
                );
            }
        }
    }
    assert!(bodies.contains("CustomerCreate"), "{bodies:?}");
    for name in &bodies {
        let schema = &document["components"]["schemas"][name];
        for field in schema["required"].as_array().into_iter().flatten() {
            let field = field.as_str().expect("field name");
            assert!(
                !nullable(&schema["properties"][field]),
                "{name}.{field} is required but nullable"
            );
        }
    }

    let relay = TestRelay::start().await;
    let send = |method: Method, path: String, body: Option<Value>, ttl: Option<String>| {
        let mut request = relay
            .http
            .request(method, format!("{}{path}", relay.url))
            .bearer_auth(API_KEY)
            .header("prefer", "respond-async");
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(ttl) = ttl {
            request = request.header("sapbridge-queue-ttl", ttl);
        }
        async move {
            let response = request.send().await.expect("answer");
            let status = response.status();
            let body: Value = response.json().await.unwrap_or_default();
            (status, body)
        }
    };
    for field in ["name", "city", "country"] {
        let mut body = serde_json::json!({"name": "N", "city": "C", "country": "DE"});
        body[field] = Value::Null;
        let path = "/v1/systems/PRD/customers".to_owned();
        let (status, problem) = send(Method::POST, path, Some(body), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {problem}");
    }

    // The parameter `name` of the operation `method` `path`.
    let parameter = |path: &str, method: &str, name: &str| -> Value {
        document["paths"][path][method]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))
    };
    for (path, method, name) in [
        (
            "/v1/systems/{system}/functions/{function}",
            "post",
            "function",
        ),
        ("/v1/systems/{system}/tables/{table}", "get", "table"),
    ] {
        let schema = &parameter(path, method, name)["schema"];
        assert_eq!(schema["maxLength"], 30, "{name}");
        assert_eq!(schema["pattern"], "^[A-Za-z0-9_/]{1,30}$", "{name}");
    }
    let longest = "Z".repeat(30);
    for (name, valid) in [
        (longest.as_str(), true),
        ("/BODS/RFC_READ_TABLE", true),
        (&*"Z".repeat(31), false),
        ("A-B", false),
        ("A%2EB", false),
    ] {
        let function = send(
            Method::POST,
            format!("/v1/systems/PRD/functions/{name}"),
            Some(serde_json::json!({})),
            None,
        )
        .await;
        let table = send(
            Method::GET,
            format!("/v1/systems/PRD/tables/{name}"),
            None,
            None,
        )
        .await;
        for (what, (status, problem)) in [("function", function), ("table", table)] {
            assert_eq!(
                status == StatusCode::BAD_REQUEST,
                !valid,
                "{what} {name}: {status} {problem}"
            );
        }
    }

    let ttl = &parameter(
        "/v1/systems/{system}/functions/{function}",
        "post",
        "Sapbridge-Queue-Ttl",
    )["schema"];
    let max = ttl["maximum"].as_u64().expect("maximum");
    for (value, fits) in [(max, true), (max + 1, false), (0, false)] {
        let (status, problem) = send(
            Method::POST,
            "/v1/systems/PRD/functions/STFC_CONNECTION".into(),
            Some(serde_json::json!({})),
            Some(value.to_string()),
        )
        .await;
        let expected = if fits {
            StatusCode::ACCEPTED
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_eq!(status, expected, "ttl {value}: {problem}");
    }
    relay.stop().await;
}

/// The connector is derived from this document (`deploy/power-automate/generate.py`
/// with `overlay.json`): the committed file must be what the generator builds, so
/// a route or parameter change without regenerating fails here.
#[test]
fn the_power_automate_connector_is_generated_from_the_document() {
    let script = format!(
        "{}/../deploy/power-automate/generate.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let output = std::process::Command::new("python3")
        .arg(&script)
        .arg("--check")
        .output()
        .expect("python3 runs (installed on every CI machine)");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
