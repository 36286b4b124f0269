//! Function metadata against a simulator-backed agent: the interface's shape with
//! nested fields, `FU_NOT_FOUND` as 404, the two-unit chain polled at one
//! `Location`, and calls rejected with 400 before they are queued once the
//! interface is cached — but never blocked when it is not.

mod common;

use common::business::{SYSTEM, get, poll, relay_with_sim, send};
use common::sim_agent::SimAgent;
use common::{FakeAgent, TestRelay};
use reqwest::Method;
use serde_json::{Value, json};

fn function(name: &str) -> String {
    format!("/v1/systems/{SYSTEM}/functions/{name}")
}

fn param<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no parameter {name} in {body}"))
}

#[tokio::test]
async fn the_interface_has_parameters_and_nested_fields() {
    let (relay, agent) = relay_with_sim().await;
    let answer = get(&relay, &function("bapi_customer_getdetail2")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["function"], "BAPI_CUSTOMER_GETDETAIL2");
    let customer = param(&answer.body, "CUSTOMERNO");
    assert_eq!(customer["direction"], "importing");
    assert_eq!(customer["type"], "CHAR");
    assert_eq!(customer["length"], 10);
    assert_eq!(customer["optional"], false);
    assert!(customer.get("fields").is_none());
    let ret = param(&answer.body, "RETURN");
    assert_eq!(ret["direction"], "exporting");
    assert_eq!(ret["type"], "STRUCTURE");
    assert_eq!(ret["type_name"], "BAPIRET1");
    let fields = ret["fields"].as_array().unwrap();
    assert_eq!(fields[0]["name"], "TYPE");
    assert!(
        fields
            .iter()
            .any(|f| f["name"] == "NUMBER" && f["type"] == "NUMC" && f["length"] == 3)
    );
    let bank = param(&answer.body, "CUSTOMERBANKDETAIL");
    assert_eq!(bank["direction"], "tables");
    assert_eq!(bank["type"], "TABLE");
    assert!(bank["fields"].as_array().is_some_and(|f| !f.is_empty()));

    let read_table = get(&relay, &function("RFC_READ_TABLE")).await;
    assert!(
        read_table.body["exceptions"]
            .as_array()
            .unwrap()
            .contains(&json!("DATA_BUFFER_EXCEEDED"))
    );
    // The same interface as JSON schemas for dynamic forms.
    let form = get(
        &relay,
        &format!("{}?schema=parameters", function("BAPI_CUSTOMER_GETDETAIL2")),
    )
    .await;
    assert_eq!(form.status, 200, "{}", form.body);
    let properties = &form.body["schema"]["properties"];
    assert_eq!(properties["CUSTOMERNO"]["type"], "string");
    assert!(properties.get("RETURN").is_none(), "{}", form.body);
    let result = get(
        &relay,
        &format!("{}?schema=result", function("BAPI_CUSTOMER_GETDETAIL2")),
    )
    .await;
    let bank = &result.body["schema"]["properties"]["CUSTOMERBANKDETAIL"];
    assert_eq!(bank["type"], "array", "{}", result.body);
    assert_eq!(bank["items"]["type"], "object");
    for bad in ["schema=both", "schema=", "fields=A"] {
        let reply = get(&relay, &format!("{}?{bad}", function("RFC_PING"))).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json")
        );
    }
    let missing = get(&relay, &function("Z_DOES_NOT_EXIST")).await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert_eq!(missing.body["rfc_error"]["key"], "FU_NOT_FOUND");
    agent.stop().await;
    relay.stop().await;
}

#[tokio::test]
async fn the_two_unit_chain_is_polled_at_one_location() {
    let relay = TestRelay::start_with(common::business::business_config()).await;
    let accepted = send(
        &relay,
        Method::GET,
        &function("BAPI_CUSTOMER_GETLIST"),
        None,
        &[("prefer", "respond-async")],
    )
    .await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let location = accepted.header("location").unwrap().to_owned();
    let agent = SimAgent::start(&relay, "sim-agent", SYSTEM).await;
    let done = poll(&relay, &location).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let idrange = param(&done.body, "IDRANGE");
    assert!(
        idrange["fields"].as_array().is_some_and(|f| f.len() == 4),
        "{idrange}"
    );
    // Answered from the cache now, without a call.
    let cached = get(&relay, &function("BAPI_CUSTOMER_GETLIST")).await;
    assert_eq!(cached.body, done.body);
    agent.stop().await;
    relay.stop().await;
}

#[tokio::test]
async fn cached_metadata_rejects_malformed_calls_before_queueing() {
    let (relay, agent) = relay_with_sim().await;
    let async_call = |name: &'static str, body: Value| {
        let relay = &relay;
        async move {
            send(
                relay,
                Method::POST,
                &function(name),
                Some(body),
                &[("prefer", "respond-async")],
            )
            .await
        }
    };
    // Not cached yet: the call is queued (the agent and SAP validate it).
    let unknown = json!({"NO_SUCH_PARAM": "1"});
    assert_eq!(
        async_call("RFC_READ_TABLE", unknown.clone()).await.status,
        202
    );

    assert_eq!(get(&relay, &function("RFC_READ_TABLE")).await.status, 200);
    let rejected = async_call("RFC_READ_TABLE", unknown).await;
    assert_eq!(rejected.status, 400, "{}", rejected.body);
    assert!(
        rejected.body["detail"]
            .as_str()
            .unwrap()
            .starts_with("NO_SUCH_PARAM")
    );
    let numc = async_call(
        "RFC_READ_TABLE",
        json!({"QUERY_TABLE": "KNA1",
        "FIELDS": [{"FIELDNAME": "KUNNR", "OFFSET": "12a"}]}),
    )
    .await;
    assert_eq!(numc.status, 400, "{}", numc.body);
    assert!(
        numc.body["detail"]
            .as_str()
            .unwrap()
            .starts_with("FIELDS[0]-OFFSET")
    );
    let long = async_call("RFC_READ_TABLE", json!({"QUERY_TABLE": "X".repeat(31)})).await;
    assert_eq!(long.status, 400, "{}", long.body);
    let int = async_call("RFC_READ_TABLE", json!({"ROWCOUNT": "ten"})).await;
    assert_eq!(int.status, 400);
    let good = async_call(
        "RFC_READ_TABLE",
        json!({"QUERY_TABLE": "KNA1", "ROWCOUNT": 1,
        "FIELDS": [{"FIELDNAME": "KUNNR"}]}),
    )
    .await;
    assert_eq!(good.status, 202, "{}", good.body);

    // Another agent joins the system: the cached interface is no longer trusted.
    let _other = FakeAgent::connect(&relay, "other-agent", &[SYSTEM], 0).await;
    let unchecked = async_call("RFC_READ_TABLE", json!({"NO_SUCH_PARAM": "1"})).await;
    assert_eq!(unchecked.status, 202, "{}", unchecked.body);
    agent.stop().await;
    relay.stop().await;
}

/// An agent that does not say it filters function searches (every agent before
/// the capability, and protocol 1 agents) is never asked for a function list:
/// `501` names it, and nothing is queued; with no agent at all, `503`.
#[tokio::test]
async fn function_lists_need_agents_that_filter_them() {
    let relay = TestRelay::start_with(common::business::business_config()).await;
    let none = get(&relay, &format!("/v1/systems/{SYSTEM}/functions")).await;
    assert_eq!(none.status, 503, "{}", none.body);
    assert_eq!(none.body["type"], "/problems/no-agent");
    assert_eq!(
        none.header("content-type"),
        Some("application/problem+json")
    );

    let old = FakeAgent::connect(&relay, "old-agent", &[SYSTEM], 4).await;
    let listed = relay.get_json("/v1/systems").await;
    let system = listed["systems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["system"] == SYSTEM)
        .unwrap();
    assert_eq!(system["agents"][0]["function_search"], false, "{listed}");
    let refused = get(
        &relay,
        &format!("/v1/systems/{SYSTEM}/functions?search=BAPI*"),
    )
    .await;
    assert_eq!(refused.status, 501, "{}", refused.body);
    assert_eq!(refused.body["type"], "/problems/agent-upgrade-needed");
    assert!(
        refused.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("old-agent")),
        "{}",
        refused.body
    );
    relay.wait_queue_depth(0).await;
    // Everything else still works with the older agent.
    let accepted = send(
        &relay,
        Method::GET,
        &function("RFC_PING"),
        None,
        &[("prefer", "respond-async")],
    )
    .await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    drop(old);
    relay.stop().await;
}

/// A table's layout for dynamic forms: its fields and a schema of its rows; an
/// unknown table is 404, a bad name 400.
#[tokio::test]
async fn table_fields_come_with_a_row_schema() {
    let (relay, agent) = relay_with_sim().await;
    let layout = get(&relay, &format!("/v1/systems/{SYSTEM}/tables/kna1/fields")).await;
    assert_eq!(layout.status, 200, "{}", layout.body);
    assert_eq!(layout.body["table"], "KNA1");
    let fields = layout.body["fields"].as_array().unwrap();
    assert_eq!(fields[0]["name"], "MANDT", "{}", layout.body);
    let kunnr = &layout.body["schema"]["properties"]["KUNNR"];
    assert_eq!(kunnr["type"], "string");
    assert!(
        kunnr["x-ms-summary"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    let missing = get(&relay, &format!("/v1/systems/{SYSTEM}/tables/ZNOPE/fields")).await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert_eq!(missing.body["type"], "/problems/table-not-found");
    let bad = get(&relay, &format!("/v1/systems/{SYSTEM}/tables/A-B/fields")).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    agent.stop().await;
    relay.stop().await;
}
