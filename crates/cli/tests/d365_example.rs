//! The seed scenario, runnable (`examples/d365-to-sap/`): a Dynamics 365 account
//! that becomes a customer is created as an SAP customer through sapbridge by a
//! Node-RED 4 flow, which writes the SAP number back to the account, logs the sync
//! in the "SharePoint list" and sends a notification; a later change of the
//! account updates the SAP customer. The cloud services are the stand-ins of
//! `standins.js`; SAP is `sapbridge dev`'s simulator, checked through `KNA1`.
//!
//! Beside it, the same flow as a Logic Apps / Power Automate workflow definition and
//! as an n8n export: checked structurally, and every step that calls sapbridge
//! against the relay's OpenAPI document.
//!
//! Node-RED comes from npm (`tests/provision.sh node-red` runs `npm ci` in `examples/node-red` when needed).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sapbridge_tests::{Proc, free_port};
use serde_json::{Value, json};

const KEY: &str = "d365-example-key";
const DEADLINE: Duration = Duration::from_secs(60);

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The pieces of the scenario, running.
struct Scenario {
    _dev: Proc,
    _standins: Proc,
    _node_red: Proc,
    relay: String,
    crm: String,
    http: reqwest::blocking::Client,
    _dir: tempfile::TempDir,
}

impl Scenario {
    fn start() -> Self {
        sapbridge_tests::provide("node-red");
        let red = examples().join("node-red/node_modules/node-red/red.js");
        assert!(
            red.exists(),
            "Node-RED is missing after tests/provision.sh node-red"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let (relay_port, crm_port, flow_port) = (
            free_port().expect("port"),
            free_port().expect("port"),
            free_port().expect("port"),
        );
        let relay = format!("http://127.0.0.1:{relay_port}");
        let crm = format!("http://127.0.0.1:{crm_port}");
        let mut command = Command::new(env!("CARGO_BIN_EXE_sapbridge"));
        command
            .args(["dev", "--api-key", KEY])
            .args(["--listen", &format!("127.0.0.1:{relay_port}")])
            .args(["--public-url", &relay])
            .arg("--data-dir")
            .arg(dir.path().join("dev"));
        let dev = Proc::spawn_ready(&mut command, "sapbridge dev is running", DEADLINE)
            .expect("sapbridge dev");
        let example = examples().join("d365-to-sap");
        let mut command = Command::new("node");
        command
            .arg(example.join("standins.js"))
            .env("PORT", crm_port.to_string())
            .env(
                "FLOW_URL",
                format!("http://127.0.0.1:{flow_port}/flow/account-changed"),
            );
        let standins =
            Proc::spawn_ready(&mut command, "stand-ins listening", DEADLINE).expect("stand-ins");
        let flow = dir.path().join("node-red-flow.json");
        std::fs::copy(example.join("node-red-flow.json"), &flow).expect("copy flow");
        let mut command = Command::new("node");
        command
            .arg(&red)
            .arg("--settings")
            .arg(example.join("settings.js"))
            .arg("--userDir")
            .arg(dir.path().join("node-red"))
            .arg(&flow)
            .env("SAPBRIDGE_URL", &relay)
            .env("SAPBRIDGE_API_KEY", KEY)
            .env("SAP_SYSTEM", "SIM")
            .env("CRM_URL", &crm)
            .env("NODE_RED_PORT", flow_port.to_string());
        let node_red =
            Proc::spawn_ready(&mut command, "Started flows", DEADLINE).expect("Node-RED");
        Self {
            _dev: dev,
            _standins: standins,
            _node_red: node_red,
            relay,
            crm,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            _dir: dir,
        }
    }

    fn crm_get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.crm))
            .send()
            .and_then(reqwest::blocking::Response::json)
            .expect("stand-in GET")
    }

    fn change_account(&self, changes: &Value) {
        let response = self
            .http
            .patch(format!("{}/crm/accounts/A-1001", self.crm))
            .json(changes)
            .send()
            .expect("PATCH account");
        assert!(response.status().is_success(), "{response:?}");
    }

    /// Waits until the log list has `n` items; returns them.
    fn log_items(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let items = self.crm_get("/sharepoint/lists/sap-sync-log/items")["value"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if items.len() >= n {
                return items;
            }
            assert!(
                Instant::now() < deadline,
                "the flow logged {} of {n} syncs within {DEADLINE:?}",
                items.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The customer's `KNA1` row in SAP, read with `RFC_READ_TABLE`.
    fn kna1(&self, customer: &str) -> Vec<String> {
        let body: Value = self
            .http
            .post(format!(
                "{}/v1/systems/SIM/functions/RFC_READ_TABLE",
                self.relay
            ))
            .bearer_auth(KEY)
            .json(&json!({
                "QUERY_TABLE": "KNA1",
                "DELIMITER": "|",
                "FIELDS": [{"FIELDNAME": "KUNNR"}, {"FIELDNAME": "NAME1"}, {"FIELDNAME": "ORT01"}],
                "OPTIONS": [{"TEXT": format!("KUNNR EQ '{customer}'")}],
            }))
            .send()
            .and_then(reqwest::blocking::Response::json)
            .expect("read KNA1");
        body["result"]["DATA"]
            .as_array()
            .expect("DATA")
            .iter()
            .map(|row| row["WA"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

#[test]
fn an_account_that_becomes_a_customer_is_created_then_updated_in_sap() {
    let scenario = Scenario::start();
    let account = scenario.crm_get("/crm/accounts/A-1001");
    assert_eq!(account["sap_customer_number"], Value::Null);

    // The account type changes from prospect to customer.
    scenario.change_account(&json!({"account_type": "customer"}));
    let items = scenario.log_items(1);
    assert_eq!(items[0]["action"], "created", "{items:?}");
    assert_eq!(items[0]["status"], "succeeded", "{items:?}");
    let number = items[0]["sap_customer_number"]
        .as_str()
        .expect("number")
        .to_owned();
    let account = scenario.crm_get("/crm/accounts/A-1001");
    assert_eq!(
        account["sap_customer_number"],
        number.as_str(),
        "written back"
    );
    let rows = scenario.kna1(&number);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].contains("Contoso Pharma GmbH"), "{rows:?}");
    assert!(rows[0].contains("Walldorf"), "{rows:?}");
    let notes = scenario.crm_get("/notifications")["value"].clone();
    assert!(
        notes[0]["subject"]
            .as_str()
            .is_some_and(|s| s.contains(&number) && s.contains("created")),
        "{notes}"
    );

    // The account changes again: the SAP customer is updated, not created twice.
    scenario.change_account(&json!({"city": "Heidelberg"}));
    let items = scenario.log_items(2);
    assert_eq!(items[1]["action"], "updated", "{items:?}");
    assert_eq!(items[1]["sap_customer_number"], number.as_str());
    let rows = scenario.kna1(&number);
    assert!(rows[0].contains("Heidelberg"), "{rows:?}");
    let same_name = scenario.kna1_named("Contoso Pharma GmbH");
    assert_eq!(same_name, 1, "one SAP customer for the account");
}

impl Scenario {
    /// How many `KNA1` rows carry `name`.
    fn kna1_named(&self, name: &str) -> usize {
        let body: Value = self
            .http
            .get(format!("{}/v1/systems/SIM/customers", self.relay))
            .query(&[("name", name)])
            .bearer_auth(KEY)
            .send()
            .and_then(reqwest::blocking::Response::json)
            .expect("search customers");
        body["customers"].as_array().map_or(0, Vec::len)
    }
}

/// Whether `method path` is an operation of the OpenAPI document (`path` with
/// every expression already replaced by a plain segment).
fn in_openapi(openapi: &Value, method: &str, path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').collect();
    openapi["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .any(|(template, operations)| {
            let parts: Vec<&str> = template.split('/').collect();
            parts.len() == segments.len()
                && parts
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| (t.starts_with('{') && !s.is_empty()) || t == s)
                && operations.get(method.to_ascii_lowercase()).is_some()
        })
}

/// `text` with every `open…close` expression replaced by `X`.
fn without_expressions(text: &str, open: &str, close: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find(open) {
        out.push_str(&rest[..start]);
        let after = &rest[start + open.len()..];
        let end = after.find(close).expect("closed expression");
        out.push('X');
        rest = &after[end + close.len()..];
    }
    out.push_str(rest);
    out
}

/// Every action of a Logic Apps scope and its nested scopes, checking that each
/// `runAfter` names an action of the same scope.
fn logic_actions<'a>(scope: &'a Value, found: &mut Vec<(&'a String, &'a Value)>) {
    let Some(actions) = scope.as_object() else {
        return;
    };
    for (name, action) in actions {
        assert!(action["type"].is_string(), "{name} has no type");
        if let Some(after) = action["runAfter"].as_object() {
            for previous in after.keys() {
                assert!(
                    actions.contains_key(previous),
                    "{name} runs after {previous}, which is not in its scope"
                );
            }
        }
        found.push((name, action));
        logic_actions(&action["actions"], found);
        logic_actions(&action["else"]["actions"], found);
    }
}

#[test]
fn the_logic_apps_and_n8n_versions_call_only_operations_of_the_api() {
    let openapi =
        read_json(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../relay/src/http/openapi.json"));
    let example = examples().join("d365-to-sap");

    // Logic Apps / Power Automate: a workflow definition with one trigger and the
    // sapbridge connector's create and update.
    let logic = read_json(&example.join("logic-app.workflow.json"));
    let definition = &logic["definition"];
    assert!(
        definition["$schema"]
            .as_str()
            .is_some_and(|s| s.ends_with("workflowdefinition.json#")),
        "not a workflow definition"
    );
    assert_eq!(definition["triggers"].as_object().map(|t| t.len()), Some(1));
    let mut actions = Vec::new();
    logic_actions(&definition["actions"], &mut actions);
    let connections = logic["parameters"]["$connections"]["value"]
        .as_object()
        .expect("$connections");
    let mut sapbridge_steps = Vec::new();
    for (name, action) in &actions {
        if action["type"] != "ApiConnection" {
            continue;
        }
        let host = action["inputs"]["host"]["connection"]["name"]
            .as_str()
            .expect("host connection");
        let connection = connections
            .keys()
            .find(|c| host.contains(&format!("['{c}']")))
            .unwrap_or_else(|| panic!("{name} uses a connection that is not declared: {host}"));
        if connection == "sapbridge" {
            let method = action["inputs"]["method"].as_str().expect("method");
            let path =
                without_expressions(action["inputs"]["path"].as_str().expect("path"), "@{", "}");
            assert!(
                in_openapi(&openapi, method, &path),
                "{name}: {method} {path} is not an operation of the relay"
            );
            sapbridge_steps.push((method.to_owned(), path));
        }
    }
    assert!(
        sapbridge_steps.contains(&("post".into(), "/v1/systems/X/customers".into()))
            && sapbridge_steps.contains(&("patch".into(), "/v1/systems/X/customers/X".into())),
        "{sapbridge_steps:?}"
    );

    // n8n: connections name existing nodes; HTTP steps to sapbridge are API
    // operations.
    let n8n = read_json(&example.join("n8n-workflow.json"));
    let nodes = n8n["nodes"].as_array().expect("nodes");
    let names: Vec<&str> = nodes.iter().filter_map(|n| n["name"].as_str()).collect();
    assert_eq!(names.len(), nodes.len(), "every node has a name");
    for (from, outputs) in n8n["connections"].as_object().expect("connections") {
        assert!(
            names.contains(&from.as_str()),
            "connection from unknown {from}"
        );
        for branch in outputs["main"].as_array().expect("main") {
            for link in branch.as_array().expect("branch") {
                let to = link["node"].as_str().expect("node");
                assert!(names.contains(&to), "{from} connects to unknown {to}");
            }
        }
    }
    let mut n8n_sapbridge = 0;
    for node in nodes {
        let kind = node["type"].as_str().expect("type");
        assert!(kind.starts_with("n8n-nodes-base."), "{kind}");
        let url = node["parameters"]["url"].as_str().unwrap_or_default();
        if let Some(path) = url.strip_prefix("={{ $env.SAPBRIDGE_URL }}") {
            let method = node["parameters"]["method"].as_str().expect("method");
            let path = without_expressions(path, "{{", "}}");
            assert!(
                in_openapi(&openapi, method, &path),
                "n8n {}: {method} {path} is not an operation of the relay",
                node["name"]
            );
            n8n_sapbridge += 1;
        }
    }
    assert_eq!(n8n_sapbridge, 2, "create and update");

    // Node-RED: every wire ends at a node of the flow, all on its one tab.
    let flow = read_json(&example.join("node-red-flow.json"));
    let flow = flow.as_array().expect("flow");
    let ids: Vec<&str> = flow.iter().filter_map(|n| n["id"].as_str()).collect();
    let tab = flow.iter().find(|n| n["type"] == "tab").expect("tab")["id"].clone();
    for node in flow.iter().filter(|n| n["type"] != "tab") {
        assert_eq!(node["z"], tab, "{node}");
        for output in node["wires"].as_array().expect("wires") {
            for to in output.as_array().expect("output") {
                assert!(ids.contains(&to.as_str().expect("id")), "{node}");
            }
        }
    }
}
