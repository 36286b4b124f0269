//! Three backends, one answer: every simulated function gives the same JSON through
//! the SOAP-RFC backend (in front of the simulator) and through the NW RFC backend
//! (on the stub library, the SDK's C interface over the simulator) as when the
//! simulator is called directly; a BAPI unit of work (create + commit) commits
//! through both.

#[allow(dead_code)]
#[path = "fixtures/soap/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "fixtures/nwrfc/stub.rs"]
mod stub;

use std::net::SocketAddr;
use std::sync::Arc;

use harness::{call, params};
use sapbridge_sap::sim::{SimOptions, Simulator};
use sapbridge_sap::soap::SoapSystem;
use sapbridge_sap::{ErrorGroup, Parameters, SapSystem};
use serde_json::json;

/// Serves the simulator over SOAP-RFC.
async fn start(sim: Simulator) -> SocketAddr {
    harness::start(Arc::new(sim)).await
}

/// A client backend for `addr`, logging on with a lower-case user name (SAP user
/// names are case-insensitive).
fn soap(addr: SocketAddr) -> SoapSystem {
    harness::backend(format!("http://{addr}"), "conf", "conf-secret")
}

#[tokio::test]
async fn simulator_functions_give_the_same_json_through_soap() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::open(&dir.path().join("sim.db"), SimOptions::default()).unwrap();
    let through = soap(start(sim.clone()).await);
    let rfc = stub::backend(&dir.path().join("sim.db"));
    let cases = [
        ("STFC_CONNECTION", json!({"REQUTEXT": "hello soap"})),
        ("RFC_PING", json!({})),
        ("RFC_SYSTEM_INFO", json!({})),
        (
            "RFC_READ_TABLE",
            json!({"QUERY_TABLE": "KNA1", "DELIMITER": "|", "ROWCOUNT": 3,
            "FIELDS": [{"FIELDNAME": "KUNNR"}, {"FIELDNAME": "NAME1"}],
            "OPTIONS": [{"TEXT": "LAND1 EQ 'DE'"}]}),
        ),
        (
            "BAPI_CUSTOMER_GETDETAIL2",
            json!({"CUSTOMERNO": "0000001000"}),
        ),
        (
            "BAPI_CUSTOMER_GETDETAIL2",
            json!({"CUSTOMERNO": "1000", "COMPANYCODE": "1000"}),
        ),
        (
            "BAPI_CUSTOMER_GETLIST",
            json!({"MAXROWS": 5,
            "IDRANGE": [{"SIGN": "I", "OPTION": "BT", "LOW": "0000000001", "HIGH": "9999999999"}]}),
        ),
        // Every ABAP type, in a structure, a table and an elementary STRING longer
        // than the first buffer the NW RFC backend reads strings with.
        ("Z_SAPBRIDGE_TYPES_ECHO", all_types()),
        ("Z_SAPBRIDGE_TYPES_ECHO", json!({})),
        // Whole numbers written with a fraction (PowerShell, many JSON libraries).
        ("Z_SAPBRIDGE_TYPES_ECHO", whole_numbers_as_floats()),
        (
            "BAPI_CUSTOMER_GETLIST",
            json!({"MAXROWS": 5.0,
            "IDRANGE": [{"SIGN": "I", "OPTION": "BT", "LOW": "0000000001", "HIGH": "9999999999"}]}),
        ),
    ];
    for (function, p) in cases {
        let p = params(p);
        let direct = call(&sim, function, &p).await;
        let via_soap = call(&through, function, &p).await;
        let via_rfc = call(&rfc, function, &p).await;
        assert_eq!(via_soap, direct, "{function}");
        assert_eq!(via_rfc, direct, "{function} over RFC");
        assert!(direct.is_ok(), "{function}: {direct:?}");
    }
    let echo = call(
        &sim,
        "Z_SAPBRIDGE_TYPES_ECHO",
        &params(whole_numbers_as_floats()),
    )
    .await
    .unwrap();
    assert_eq!(
        [
            &echo["ES_TYPES"]["INT1"],
            &echo["ES_TYPES"]["INT2"],
            &echo["ES_TYPES"]["INT4"],
            &echo["ES_TYPES"]["INT8"]
        ],
        [
            &json!(255),
            &json!(-2),
            &json!(7),
            &json!(1_000_000_000_000_000_i64)
        ],
        "10.0 is the integer 10"
    );
    for fraction in [
        json!({"IS_TYPES": {"INT4": 7.5}}),
        json!({"IS_TYPES": {"INT8": 1e300}}),
    ] {
        let p = params(fraction.clone());
        for backend in [&sim as &dyn SapSystem, &through, &rfc] {
            let error = call(backend, "Z_SAPBRIDGE_TYPES_ECHO", &p).await;
            assert!(error.is_err(), "{fraction} is no integer: {error:?}");
        }
    }
    // The echo carries the values, formatted as SAP's connectors do.
    let echo = call(&rfc, "Z_SAPBRIDGE_TYPES_ECHO", &params(all_types()))
        .await
        .unwrap();
    let types = &echo["ES_TYPES"];
    assert_eq!(
        types["RAW4"], "AQIDAA==",
        "RAW is zero-padded to its length"
    );
    assert_eq!(types["INT8"], -9007199254740993_i64);
    assert_eq!(types["FLOAT"], 1.5e-7);
    assert_eq!(types["PACKED"], "-12345.67");
    assert_eq!(types["CHAR10"], "Grüße 𝄞");
    assert_eq!(types["STRING"].as_str().unwrap().chars().count(), 300);
    assert_eq!(echo["EV_STRING"].as_str().unwrap().len(), 1000);
    assert_eq!(echo["IT_TYPES"][1]["DATE"], "00000000");
    assert_eq!(echo["IT_TYPES"][1]["XSTRING"], "");

    let p = params(json!({"QUERY_TABLE": "NOPE"}));
    let direct = call(&sim, "RFC_READ_TABLE", &p).await.unwrap_err();
    let via_soap = call(&through, "RFC_READ_TABLE", &p).await.unwrap_err();
    assert_eq!(
        (via_soap.group, via_soap.key.as_str()),
        (direct.group, direct.key.as_str())
    );
    // Over RFC the whole error travels: group, key, message and message fields.
    let via_rfc = call(&rfc, "RFC_READ_TABLE", &p).await.unwrap_err();
    assert_eq!(via_rfc, direct);
    for backend in [&through as &dyn SapSystem, &rfc] {
        let error = call(backend, "Z_DOES_NOT_EXIST", &Parameters::new())
            .await
            .unwrap_err();
        assert_eq!(
            (error.group, error.key.as_str()),
            (ErrorGroup::AbapApplicationFailure, "FU_NOT_FOUND")
        );
    }
    // Parameters that do not fit the interface are refused alike, before SAP runs.
    for bad in [
        json!({"NOPE": "x"}),
        json!({"CUSTOMERNO": 1000}),
        json!({"CUSTOMERNO": "1000", "COMPANYCODE": "12345"}),
    ] {
        let p = params(bad);
        let direct = call(&sim, "BAPI_CUSTOMER_GETDETAIL2", &p)
            .await
            .unwrap_err();
        let via_rfc = call(&rfc, "BAPI_CUSTOMER_GETDETAIL2", &p)
            .await
            .unwrap_err();
        assert_eq!(
            (via_rfc.group, via_rfc.key.as_str()),
            (direct.group, direct.key.as_str()),
            "{p:?}"
        );
    }
}

#[tokio::test]
async fn create_and_commit_run_in_one_session_over_soap() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::open(&dir.path().join("sim.db"), SimOptions::default()).unwrap();
    let through = soap(start(sim.clone()).await);
    let rfc = stub::backend(&dir.path().join("sim.db"));
    let create = params(json!({
        "PI_COMPANYDATA": {"NAME": "Soap Kunde GmbH", "CITY": "Mannheim", "POSTL_COD1": "68159",
            "COUNTRY": "DE", "LANGU": "D", "CURRENCY": "EUR"},
        "PI_COPYREFERENCE": {"SALESORG": "1000", "DISTR_CHAN": "10", "DIVISION": "00", "REF_CUSTMR": "0000001000"},
    }));
    for backend in [&through as &dyn SapSystem, &rfc] {
        let mut unit = backend.connect().await.unwrap();
        let created = unit
            .call("BAPI_CUSTOMER_CREATEFROMDATA1", &create)
            .await
            .unwrap();
        let number = created["CUSTOMERNO"].as_str().unwrap().to_owned();
        assert!(!number.is_empty(), "{created:?}");
        unit.call("BAPI_TRANSACTION_COMMIT", &params(json!({"WAIT": "X"})))
            .await
            .unwrap();
        drop(unit);

        let detail = call(
            &sim,
            "BAPI_CUSTOMER_GETDETAIL2",
            &params(json!({"CUSTOMERNO": number})),
        )
        .await
        .unwrap();
        assert_eq!(
            detail["CUSTOMERADDRESS"]["NAME"], "Soap Kunde GmbH",
            "{detail:?}"
        );
    }
}

/// Integers written as `7.0`, as PowerShell and many JSON libraries write them.
fn whole_numbers_as_floats() -> serde_json::Value {
    json!({"IS_TYPES": {"INT1": 255.0, "INT2": -2.0, "INT4": 7.0, "INT8": 1e15}})
}

/// One value of every ABAP type for `Z_SAPBRIDGE_TYPES_ECHO`.
fn all_types() -> serde_json::Value {
    let row = json!({
        "CHAR10": "Grüße 𝄞", "NUMC5": "42", "DATE": "20240229", "TIME": "235959",
        "INT1": 255, "INT2": -32768, "INT4": 2147483647, "INT8": -9007199254740993_i64,
        "FLOAT": 1.5e-7, "PACKED": "-12345.67", "DECF16": "1.234567890123456E+20",
        "DECF34": "-0.000000000000000000000000000000001", "RAW4": "AQID",
        "XSTRING": "AAEC/f7/", "STRING": "ü".repeat(300),
    });
    json!({"IS_TYPES": row.clone(), "IT_TYPES": [row, {"CHAR10": "second"}],
        "IV_STRING": "x".repeat(1000)})
}

/// Every simulated function, named once: the interface and dictionary functions,
/// and the writes (change, rollback) that the first test leaves out.
const ALL_FUNCTIONS: &[&str] = &[
    "STFC_CONNECTION",
    "RFC_PING",
    "RFC_SYSTEM_INFO",
    "BAPI_CUSTOMER_CREATEFROMDATA1",
    "BAPI_CUSTOMER_CHANGEFROMDATA1",
    "BAPI_CUSTOMER_GETDETAIL2",
    "BAPI_CUSTOMER_GETLIST",
    "BAPI_TRANSACTION_COMMIT",
    "BAPI_TRANSACTION_ROLLBACK",
    "RFC_READ_TABLE",
    "RFC_GET_FUNCTION_INTERFACE",
    "DDIF_FIELDINFO_GET",
    "Z_SAPBRIDGE_TYPES_ECHO",
];

#[tokio::test]
async fn interfaces_dictionary_and_writes_give_the_same_json_through_soap() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::open(&dir.path().join("sim.db"), SimOptions::default()).unwrap();
    let through = soap(start(sim.clone()).await);
    let rfc = stub::backend(&dir.path().join("sim.db"));

    // The interface of every simulated function, and the dictionary entry of every
    // structure or table they use.
    let mut structures = std::collections::BTreeSet::new();
    for function in ALL_FUNCTIONS {
        let p = params(json!({ "FUNCNAME": function }));
        let direct = call(&sim, "RFC_GET_FUNCTION_INTERFACE", &p).await;
        let via_soap = call(&through, "RFC_GET_FUNCTION_INTERFACE", &p).await;
        assert_eq!(via_soap, direct, "interface of {function}");
        let via_rfc = call(&rfc, "RFC_GET_FUNCTION_INTERFACE", &p).await;
        assert_eq!(via_rfc, direct, "interface of {function} over RFC");
        let rows = direct.expect("interface")["PARAMS"]
            .as_array()
            .cloned()
            .unwrap();
        assert!(
            !rows.is_empty() || *function == "RFC_PING",
            "{function} has parameters"
        );
        for row in rows {
            let tabname = row["TABNAME"].as_str().unwrap_or_default().to_owned();
            if row["FIELDNAME"].as_str().unwrap_or_default().is_empty() && !tabname.is_empty() {
                structures.insert(tabname);
            }
        }
    }
    assert!(structures.len() >= 5, "structures used: {structures:?}");
    for tabname in &structures {
        let p = params(json!({ "TABNAME": tabname }));
        let direct = call(&sim, "DDIF_FIELDINFO_GET", &p).await;
        let via_soap = call(&through, "DDIF_FIELDINFO_GET", &p).await;
        assert_eq!(via_soap, direct, "dictionary entry of {tabname}");
        let via_rfc = call(&rfc, "DDIF_FIELDINFO_GET", &p).await;
        assert_eq!(via_rfc, direct, "dictionary entry of {tabname} over RFC");
    }

    // A change and a rollback, each in a session of its own on both paths: the
    // same answers (RETURN and exports) whichever way the call travels.
    let change = params(json!({
        "CUSTOMERNO": "1001",
        "PI_COMPANYDATA": {"CITY": "Karlsruhe"},
        "PI_COMPANYDATAX": {"CITY": "X"},
    }));
    for (function, p) in [
        ("BAPI_CUSTOMER_CHANGEFROMDATA1", change),
        ("BAPI_TRANSACTION_ROLLBACK", Parameters::new()),
    ] {
        let direct = call(&sim, function, &p).await;
        let via_soap = call(&through, function, &p).await;
        let via_rfc = call(&rfc, function, &p).await;
        assert_eq!(via_soap, direct, "{function}");
        assert_eq!(via_rfc, direct, "{function} over RFC");
        assert!(direct.is_ok(), "{function}: {direct:?}");
    }
}
