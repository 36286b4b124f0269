//! The simulator's interface layer: connection test functions, unknown functions,
//! input validation, metadata (RFC_GET_FUNCTION_INTERFACE, DDIF_FIELDINFO_GET,
//! RFC_FUNCTION_SEARCH)
//! and the latency / fault knobs.

use std::time::Duration;

use sapbridge_sap::sim::{SimOptions, Simulator};
use sapbridge_sap::{ErrorGroup, Parameters, RfcError, SapConnection, SapSystem};
use serde_json::{Value, json};

fn params(v: Value) -> Parameters {
    v.as_object().cloned().unwrap_or_default()
}

fn sim(dir: &tempfile::TempDir, options: SimOptions) -> Simulator {
    Simulator::open(&dir.path().join("sim.db"), options).expect("open")
}

async fn conn() -> (tempfile::TempDir, Box<dyn SapConnection>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = sim(&dir, SimOptions::default())
        .connect()
        .await
        .expect("connect");
    (dir, conn)
}

const FUNCTIONS: &[&str] = &[
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
    "RFC_FUNCTION_SEARCH",
];

#[tokio::test]
async fn connection_test_functions() {
    let (_dir, mut c) = conn().await;
    let out = c
        .call("STFC_CONNECTION", &params(json!({ "REQUTEXT": "hello" })))
        .await
        .expect("stfc");
    assert_eq!(out["ECHOTEXT"], "hello");
    let resp = out["RESPTEXT"].as_str().unwrap_or_default();
    assert!(resp.starts_with("SAP R/3 Rel. "), "{resp}");
    assert!(
        resp.contains("Sysid: SIM") && resp.contains("Date: ") && resp.contains("Time: "),
        "{resp}"
    );
    assert!(resp.ends_with("Logon_Data: 001/SIMUSER/E"), "{resp}");
    assert_eq!(out.len(), 2, "IMPORTING parameters are not returned");

    assert_eq!(
        c.call("RFC_PING", &Parameters::new()).await.expect("ping"),
        Parameters::new()
    );
    let out = c
        .call("rfc_system_info", &Parameters::new())
        .await
        .expect("system info");
    assert_eq!(out["RFCSI_EXPORT"]["RFCSYSID"], "SIM");
    assert_eq!(out["RFCSI_EXPORT"]["RFCSI_RESV"], "");
    assert_eq!(out["CURRENT_RESOURCES"], 8);
}

#[tokio::test]
async fn unknown_function_is_fu_not_found() {
    let (_dir, mut c) = conn().await;
    let err = c
        .call("Z_DOES_NOT_EXIST", &Parameters::new())
        .await
        .expect_err("error");
    assert_eq!(err.group, ErrorGroup::AbapApplicationFailure);
    assert_eq!(
        (
            err.key.as_str(),
            err.msg_class.as_str(),
            err.msg_type.as_str(),
            err.msg_number.as_str()
        ),
        ("FU_NOT_FOUND", "FL", "E", "046")
    );
    assert_eq!(err.msg_v1, "Z_DOES_NOT_EXIST");
}

#[tokio::test]
async fn input_validation() {
    let (_dir, mut c) = conn().await;
    let mut check = async |f: &str, p: Value, key: &str, needle: &str| {
        let err: RfcError = c
            .call(f, &params(p.clone()))
            .await
            .err()
            .unwrap_or_else(|| panic!("{f} {p} should fail"));
        assert_eq!(err.group, ErrorGroup::ExternalRuntimeFailure, "{p}");
        assert_eq!(err.key, key, "{p}");
        assert!(
            err.message.contains(needle),
            "{p}: {} lacks {needle}",
            err.message
        );
    };
    check(
        "STFC_CONNECTION",
        json!({ "BOGUS": "x" }),
        "RFC_INVALID_PARAMETER",
        "BOGUS",
    )
    .await;
    check(
        "BAPI_CUSTOMER_GETDETAIL2",
        json!({ "customerno": "1" }),
        "RFC_INVALID_PARAMETER",
        "customerno",
    )
    .await;
    check(
        "BAPI_CUSTOMER_CREATEFROMDATA1",
        json!({ "PI_COMPANYDATA": { "NAME_5": "x" } }),
        "RFC_INVALID_PARAMETER",
        "PI_COMPANYDATA-NAME_5",
    )
    .await;
    check(
        "BAPI_CUSTOMER_GETLIST",
        json!({ "IDRANGE": [{ "SIGN": "I", "OPTION": "EQ", "LOW": "12345678901" }] }),
        "RFC_CONVERSION_FAILURE",
        "IDRANGE[0]-LOW",
    )
    .await;
    check(
        "BAPI_CUSTOMER_GETDETAIL2",
        json!({ "CUSTOMERNO": "12345678901" }),
        "RFC_CONVERSION_FAILURE",
        "CHAR10",
    )
    .await;
    check(
        "BAPI_CUSTOMER_GETDETAIL2",
        json!({ "CUSTOMERNO": 1000 }),
        "RFC_CONVERSION_FAILURE",
        "CUSTOMERNO",
    )
    .await;
    check(
        "BAPI_CUSTOMER_CREATEFROMDATA1",
        json!({ "PI_PERSONALDATA": { "DATE_BIRTH": "20230230" } }),
        "RFC_CONVERSION_FAILURE",
        "PI_PERSONALDATA-DATE_BIRTH",
    )
    .await;
    check(
        "BAPI_CUSTOMER_CREATEFROMDATA1",
        json!({ "PI_PERSONALDATA": "flat" }),
        "RFC_CONVERSION_FAILURE",
        "PI_PERSONALDATA",
    )
    .await;
    check(
        "RFC_READ_TABLE",
        json!({ "QUERY_TABLE": "KNA1", "ROWCOUNT": "10" }),
        "RFC_CONVERSION_FAILURE",
        "ROWCOUNT",
    )
    .await;
    check(
        "RFC_READ_TABLE",
        json!({ "QUERY_TABLE": "KNA1", "OPTIONS": { "TEXT": "x" } }),
        "RFC_CONVERSION_FAILURE",
        "OPTIONS",
    )
    .await;
    check(
        "RFC_READ_TABLE",
        json!({ "QUERY_TABLE": "KNA1", "OPTIONS": [{ "TEXT": "x".repeat(73) }] }),
        "RFC_CONVERSION_FAILURE",
        "CHAR72",
    )
    .await;
    check(
        "BAPI_CUSTOMER_GETLIST",
        json!({ "MAXROWS": 1.5 }),
        "RFC_CONVERSION_FAILURE",
        "MAXROWS",
    )
    .await;

    // Missing mandatory parameters are passed initial, as RFC does: the BAPI answers.
    let out = c
        .call("BAPI_CUSTOMER_GETDETAIL2", &Parameters::new())
        .await
        .expect("no error");
    assert_eq!(out["RETURN"]["TYPE"], "E");
    // null means "not sent"; EXPORTING parameters sent along are ignored.
    let out = c
        .call(
            "BAPI_CUSTOMER_GETDETAIL2",
            &params(json!({ "CUSTOMERNO": "1000", "COMPANYCODE": null, "RETURN": {} })),
        )
        .await
        .expect("ok");
    assert_eq!(out["RETURN"]["TYPE"], "");
}

#[tokio::test]
async fn function_interface_for_every_function() {
    let (_dir, mut c) = conn().await;
    for f in FUNCTIONS {
        let out = c
            .call(
                "RFC_GET_FUNCTION_INTERFACE",
                &params(json!({ "FUNCNAME": f })),
            )
            .await
            .expect(f);
        let rows = out["PARAMS"].as_array().cloned().unwrap_or_default();
        assert!(
            *f == "RFC_PING" || !rows.is_empty(),
            "{f} lists no parameters"
        );
        for row in &rows {
            let class = row["PARAMCLASS"].as_str().unwrap_or_default();
            assert!(["I", "E", "C", "T", "X"].contains(&class), "{f}: {row}");
            if class != "X" {
                assert!(
                    row["PARAMETER"].as_str().is_some_and(|p| !p.is_empty()),
                    "{f}: {row}"
                );
                assert!(
                    row["EXID"].as_str().is_some_and(|p| !p.is_empty()),
                    "{f}: {row}"
                );
            }
            // Every structure and table a parameter uses can be discovered.
            if matches!(row["EXID"].as_str(), Some("u" | "h")) {
                let tab = row["TABNAME"].as_str().unwrap_or_default();
                let info = c
                    .call("DDIF_FIELDINFO_GET", &params(json!({ "TABNAME": tab })))
                    .await;
                let info = info.unwrap_or_else(|e| panic!("{f}: DDIF_FIELDINFO_GET {tab}: {e}"));
                assert!(
                    info["DFIES_TAB"].as_array().is_some_and(|r| !r.is_empty()),
                    "{tab}"
                );
            }
        }
    }
    let out = c
        .call(
            "RFC_GET_FUNCTION_INTERFACE",
            &params(json!({ "FUNCNAME": "BAPI_CUSTOMER_GETDETAIL2" })),
        )
        .await
        .expect("iface");
    let row = |name: &str| {
        out["PARAMS"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["PARAMETER"] == name)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(row("CUSTOMERNO")["PARAMCLASS"], "I");
    assert_eq!(row("CUSTOMERNO")["TABNAME"], "BAPICUSTOMER_ID");
    assert_eq!(row("CUSTOMERNO")["FIELDNAME"], "CUSTOMER");
    assert_eq!(row("CUSTOMERNO")["EXID"], "C");
    assert_eq!(
        row("CUSTOMERNO")["INTLENGTH"],
        20,
        "Unicode length by default"
    );
    assert_eq!(row("COMPANYCODE")["OPTIONAL"], "X");
    assert_eq!(row("RETURN")["PARAMCLASS"], "E");
    assert_eq!(row("RETURN")["TABNAME"], "BAPIRET1");
    assert_eq!(row("CUSTOMERBANKDETAIL")["PARAMCLASS"], "T");
    let out = c
        .call(
            "RFC_GET_FUNCTION_INTERFACE",
            &params(json!({ "FUNCNAME": "RFC_READ_TABLE", "NONE_UNICODE_LENGTH": "X" })),
        )
        .await
        .expect("iface");
    let rows = out["PARAMS"].as_array().cloned().unwrap_or_default();
    assert!(
        rows.iter()
            .any(|r| r["PARAMCLASS"] == "X" && r["PARAMETER"] == "DATA_BUFFER_EXCEEDED")
    );
    assert!(
        rows.iter()
            .any(|r| r["PARAMETER"] == "QUERY_TABLE" && r["INTLENGTH"] == 30)
    );
    assert!(
        rows.iter()
            .any(|r| r["PARAMETER"] == "DELIMITER" && r["DEFAULT"] == "SPACE")
    );

    let err = c
        .call(
            "RFC_GET_FUNCTION_INTERFACE",
            &params(json!({ "FUNCNAME": "Z_NOPE" })),
        )
        .await
        .expect_err("error");
    assert_eq!(
        (err.group, err.key.as_str()),
        (ErrorGroup::AbapApplicationFailure, "FU_NOT_FOUND")
    );
}

#[tokio::test]
async fn ddif_fieldinfo_get() {
    let (_dir, mut c) = conn().await;
    let out = c
        .call("DDIF_FIELDINFO_GET", &params(json!({ "TABNAME": "KNA1" })))
        .await
        .expect("kna1");
    assert_eq!(out["DDOBJTYPE"], "TRANSP");
    let kunnr = &out["DFIES_TAB"][1];
    assert_eq!(
        (
            kunnr["FIELDNAME"].as_str(),
            kunnr["POSITION"].as_str(),
            kunnr["OFFSET"].as_str()
        ),
        (Some("KUNNR"), Some("0002"), Some("000006"))
    );
    assert_eq!(
        (
            kunnr["LENG"].as_str(),
            kunnr["INTTYPE"].as_str(),
            kunnr["DATATYPE"].as_str()
        ),
        (Some("000010"), Some("C"), Some("CHAR"))
    );
    assert_eq!(
        (kunnr["KEYFLAG"].as_str(), kunnr["CONVEXIT"].as_str()),
        (Some("X"), Some("ALPHA"))
    );
    let out = c
        .call(
            "DDIF_FIELDINFO_GET",
            &params(json!({ "TABNAME": "BAPIRET2", "FIELDNAME": "NUMBER" })),
        )
        .await
        .expect("bapiret2");
    assert_eq!(out["DDOBJTYPE"], "INTTAB");
    assert_eq!(
        (
            out["DFIES_WA"]["DATATYPE"].as_str(),
            out["DFIES_WA"]["FIELDTEXT"].as_str()
        ),
        (Some("NUMC"), Some("Message Number"))
    );
    for bad in [
        json!({ "TABNAME": "ZZZ" }),
        json!({ "TABNAME": "KNA1", "FIELDNAME": "NOPE" }),
    ] {
        let err = c
            .call("DDIF_FIELDINFO_GET", &params(bad))
            .await
            .expect_err("error");
        assert_eq!(
            (err.group, err.key.as_str()),
            (ErrorGroup::AbapApplicationFailure, "NOT_FOUND")
        );
    }
}

#[tokio::test]
async fn latency_knob_delays_each_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = SimOptions {
        latency: Duration::from_millis(50),
        ..SimOptions::default()
    };
    let mut c = sim(&dir, options).connect().await.expect("connect");
    let start = std::time::Instant::now();
    c.call("RFC_PING", &Parameters::new()).await.expect("ping");
    assert!(start.elapsed() >= Duration::from_millis(50));
}

#[tokio::test]
async fn fault_knob_breaks_calls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = sim(
        &dir,
        SimOptions {
            fault_rate: 1.0,
            ..SimOptions::default()
        },
    )
    .connect()
    .await
    .expect("connect");
    let err = c
        .call("RFC_PING", &Parameters::new())
        .await
        .expect_err("fault");
    assert_eq!(err.group, ErrorGroup::CommunicationFailure);
    let mut ok = sim(
        &dir,
        SimOptions {
            fault_rate: 0.0,
            ..SimOptions::default()
        },
    )
    .connect()
    .await
    .expect("connect");
    for _ in 0..20 {
        ok.call("RFC_PING", &Parameters::new())
            .await
            .expect("no fault at rate 0");
    }
}

#[tokio::test]
async fn function_search_lists_matching_function_modules_as_sap_does() {
    let (_dir, mut c) = conn().await;
    let out = c
        .call(
            "RFC_FUNCTION_SEARCH",
            &params(json!({ "FUNCNAME": "bapi_customer_*" })),
        )
        .await
        .expect("search");
    let rows = out["FUNCTIONS"].as_array().expect("FUNCTIONS");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["FUNCNAME"].as_str()).collect();
    assert_eq!(
        names,
        [
            "BAPI_CUSTOMER_CHANGEFROMDATA1",
            "BAPI_CUSTOMER_CREATEFROMDATA1",
            "BAPI_CUSTOMER_GETDETAIL2",
            "BAPI_CUSTOMER_GETLIST"
        ]
    );
    for row in rows {
        let keys: Vec<&str> = row
            .as_object()
            .expect("row")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 5, "{row}");
        for key in ["FUNCNAME", "GROUPNAME", "APPL", "HOST", "STEXT"] {
            assert!(row[key].is_string(), "{key} in {row}");
        }
        assert!(
            !row["STEXT"].as_str().unwrap_or_default().is_empty(),
            "{row}"
        );
    }

    // Every function the simulator runs is found, the group narrows the search.
    let all = c
        .call("RFC_FUNCTION_SEARCH", &params(json!({ "FUNCNAME": "*" })))
        .await
        .expect("all");
    let all = all["FUNCTIONS"].as_array().expect("FUNCTIONS").len();
    assert_eq!(all, FUNCTIONS.len() + 1, "plus Z_SAPBRIDGE_TYPES_ECHO");
    let group = c
        .call(
            "RFC_FUNCTION_SEARCH",
            &params(json!({ "FUNCNAME": "*", "GROUPNAME": "BAPT" })),
        )
        .await
        .expect("group");
    assert_eq!(
        group["FUNCTIONS"].as_array().map(Vec::len),
        Some(2),
        "{group:?}"
    );

    for (input, key) in [
        (json!({}), "NOTHING_SPECIFIED"),
        (json!({ "FUNCNAME": "NO_SUCH_*" }), "NO_FUNCTION_FOUND"),
    ] {
        let e = c
            .call("RFC_FUNCTION_SEARCH", &params(input))
            .await
            .expect_err("exception");
        assert_eq!(e.group, ErrorGroup::AbapApplicationFailure, "{e:?}");
        assert_eq!(e.key, key);
    }
}
