//! The NW RFC backend against the stub library (`crates/nwrfc-stub`, the SDK's C
//! interface over the simulator): logon, the SDK version, every RFC type path, the
//! error groups, a broken connection, cancellation by timeout, the pool, units of
//! work on one connection, tRFC exactly once, and the logon guard.

#[allow(dead_code)]
#[path = "fixtures/nwrfc/stub.rs"]
mod stub;

use std::time::{Duration, Instant};

use sapbridge_proto::Secret;
use sapbridge_sap::logon_guard::{LogonState, PasswordSource};
use sapbridge_sap::nwrfc::trfc_tid;
use sapbridge_sap::sim::{SIM_PASSWORD, SimOptions, Simulator};
use sapbridge_sap::{ErrorGroup, FunctionCall, Parameters, SapSystem};
use serde_json::{Value, json};

fn params(value: Value) -> Parameters {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("parameters are an object"),
    }
}

#[tokio::test]
async fn the_stub_loads_and_answers_stfc_connection() {
    let dir = tempfile::tempdir().unwrap();
    let system = stub::backend(&dir.path().join("sim.db"));
    assert_eq!(system.sdk_version().major, 7);
    let mut conn = system.connect().await.unwrap();
    let out = conn
        .call("STFC_CONNECTION", &params(json!({"REQUTEXT": "über RFC"})))
        .await
        .unwrap();
    assert_eq!(out["ECHOTEXT"], "über RFC");
    assert!(
        out["RESPTEXT"].as_str().unwrap().contains("Sysid: SIM"),
        "{out:?}"
    );
}
