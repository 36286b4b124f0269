//! The Power Automate connector's dynamic operations against a live relay with a
//! real agent and the simulator: every `x-ms-dynamic-values` (and
//! `x-ms-dynamic-schema`) the connector declares is resolved as Power Automate
//! does — the named operation called with the mapped parameters — and its answer
//! must hold what the extension points at: pick lists with values and titles,
//! schemas whose every property (nested ones too) carries an `x-ms-summary`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sapbridge_tests::{API_KEY, Client, TestAgent, TestRelay, simulator};
use serde_json::{Value, json};

/// What a flow author picks for a parameter the dynamic operation depends on.
fn chosen(name: &str) -> Option<&'static str> {
    match name {
        "system" => Some("SIM"),
        "function" => Some("BAPI_CUSTOMER_GETDETAIL2"),
        "table" => Some("KNA1"),
        _ => None,
    }
}

fn connector() -> Result<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/power-automate/apiDefinition.swagger.json"
    );
    Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
}

/// Every `(extension, declaration)` pair in `value`, depth first.
fn declared<'a>(value: &'a Value, out: &mut Vec<(&'static str, &'a Value)>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match key.as_str() {
                    "x-ms-dynamic-values" => out.push(("x-ms-dynamic-values", item)),
                    "x-ms-dynamic-schema" => out.push(("x-ms-dynamic-schema", item)),
                    _ => declared(item, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| declared(item, out)),
        _ => {}
    }
}

/// The relay path (with query) of calling `operation_id` with `mapped`.
fn request(doc: &Value, operation_id: &str, mapped: &Value) -> Result<String> {
    let mut found = None;
    for (path, item) in doc["paths"].as_object().context("paths")? {
        if let Some(op) = item.get("get")
            && op["operationId"] == operation_id
        {
            found = Some((path.clone(), op));
        }
    }
    let Some((mut path, op)) = found else {
        bail!("no GET operation {operation_id}");
    };
    let mut query = BTreeMap::new();
    for param in op["parameters"].as_array().into_iter().flatten() {
        let name = param["name"].as_str().context("parameter name")?;
        let value = match mapped.get(name) {
            Some(m) if m.get("parameter").is_some() => {
                let from = m["parameter"].as_str().context("parameter reference")?;
                chosen(from)
                    .with_context(|| format!("no test value for {from}"))?
                    .to_owned()
            }
            Some(m) if m.get("value").is_some() => match &m["value"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
            _ if param["required"] == true => bail!("{operation_id}: {name} is not mapped"),
            _ => continue,
        };
        match param["in"].as_str() {
            Some("path") => path = path.replace(&format!("{{{name}}}"), &value),
            Some("query") => {
                query.insert(name.to_owned(), value);
            }
            other => bail!("{operation_id}: {name} in {other:?}"),
        }
    }
    let mut url = reqwest::Url::parse(&format!("http://relay{path}"))?;
    for (name, value) in &query {
        url.query_pairs_mut().append_pair(name, value);
    }
    Ok(match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    })
}

/// `value` at a `/`-separated path (Power Automate's `value-path`).
fn at<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('/')
        .filter(|p| !p.is_empty())
        .try_fold(value, |v, part| v.get(part))
}

/// Every property of a schema, nested ones included, has its `x-ms-summary`
/// (Power Automate's label); objects have properties, arrays items.
fn summarised(name: &str, schema: &Value) {
    assert!(
        schema["x-ms-summary"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{name}: no x-ms-summary in {schema}"
    );
    let object = match schema["type"].as_str() {
        Some("array") => &schema["items"],
        Some("object") => schema,
        _ => return,
    };
    assert_eq!(object["type"], "object", "{name}: {schema}");
    for (field, property) in object["properties"].as_object().into_iter().flatten() {
        summarised(&format!("{name}.{field}"), property);
    }
}

#[tokio::test]
async fn every_dynamic_operation_resolves_against_a_live_relay() -> Result<()> {
    let doc = connector()?;
    let dir = tempfile::tempdir()?;
    let relay = TestRelay::start(json!({})).await?;
    let sim = simulator(dir.path(), Duration::ZERO)?;
    let allow = [
        "RFC_FUNCTION_SEARCH",
        "RFC_GET_FUNCTION_INTERFACE",
        "DDIF_FIELDINFO_GET",
        "BAPI_CUSTOMER_*",
        "RFC_READ_TABLE",
    ];
    let agent = TestAgent::start(&relay, "agent-1", dir.path(), sim, &allow, 4)?;
    let client = Client::new(&relay, Some(API_KEY));
    client.wait_agents("SIM", 1).await?;

    let mut found = Vec::new();
    declared(&doc, &mut found);
    let mut resolved = BTreeMap::new();
    for (extension, declaration) in found {
        let operation_id = declaration["operationId"].as_str().context("operationId")?;
        let path = request(&doc, operation_id, &declaration["parameters"])?;
        let reply = client.get(&path).await?;
        assert_eq!(reply.status, 200, "{operation_id} {path}: {}", reply.body);
        if extension == "x-ms-dynamic-values" {
            let collection = declaration["value-collection"].as_str().unwrap_or("");
            let items = at(&reply.body, collection)
                .and_then(Value::as_array)
                .with_context(|| format!("{operation_id}: no {collection} in {}", reply.body))?;
            assert!(!items.is_empty(), "{operation_id} {path}: nothing to pick");
            for item in items {
                for key in ["value-path", "value-title"] {
                    let field = declaration[key].as_str().context(key)?;
                    assert!(
                        at(item, field).is_some_and(Value::is_string),
                        "{operation_id}: {key} {field} not in {item}"
                    );
                }
            }
            if operation_id == "ListFunctions" {
                let names: Vec<&str> = items
                    .iter()
                    .filter_map(|i| i["function"].as_str())
                    .collect();
                assert!(names.contains(&"BAPI_CUSTOMER_GETDETAIL2"), "{names:?}");
                assert!(
                    !names.contains(&"STFC_CONNECTION"),
                    "not allowed, not offered: {names:?}"
                );
            }
        } else {
            let path = declaration["value-path"].as_str().unwrap_or("");
            let schema = at(&reply.body, path).context("no schema at value-path")?;
            assert_eq!(schema["type"], "object", "{operation_id}: {schema}");
            let properties = schema["properties"].as_object().context("properties")?;
            assert!(!properties.is_empty(), "{operation_id}: {schema}");
            for (name, property) in properties {
                summarised(name, property);
            }
            if operation_id == "ListTableFields" {
                // A KNA1 row: its key, labelled with SAP's field text.
                assert_eq!(properties["KUNNR"]["type"], "string", "{schema}");
                *resolved.entry(operation_id.to_owned()).or_insert(0) += 1;
                continue;
            }
            // BAPI_CUSTOMER_GETDETAIL2: its key in, its RETURN structure out.
            let side = &declaration["parameters"]["schema"]["value"];
            let (expected, kind) = match side.as_str() {
                Some("parameters") => ("CUSTOMERNO", "string"),
                _ => ("RETURN", "object"),
            };
            assert_eq!(properties[expected]["type"], kind, "{side}: {schema}");
            if side == "parameters" {
                assert_eq!(schema["required"], json!(["CUSTOMERNO"]));
                assert_eq!(properties["CUSTOMERNO"]["maxLength"], 10);
            }
        }
        *resolved.entry(operation_id.to_owned()).or_insert(0) += 1;
    }
    // The system and function drop-downs, the call's form and its result,
    assert!(resolved.contains_key("ListSystems"), "{resolved:?}");
    assert!(resolved.contains_key("ListFunctions"), "{resolved:?}");
    assert_eq!(resolved.get("GetFunctionSchema"), Some(&2), "{resolved:?}");
    // The table's field drop-down and its rows' fields.
    assert_eq!(resolved.get("ListTableFields"), Some(&2), "{resolved:?}");
    agent.stop().await?;
    relay.stop().await
}
