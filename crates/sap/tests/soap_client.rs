//! The SOAP-RFC backend against our SOAP-RFC endpoint (and canned NetWeaver
//! answers): same JSON as calling the system directly, faults mapped to the right
//! error groups, and units of work kept in one SAP session.

#[allow(dead_code)]
#[path = "fixtures/soap/fake_system.rs"]
mod fake_system;
#[allow(dead_code)]
#[path = "fixtures/soap/harness.rs"]
mod harness;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{StatusCode, header};
use fake_system::FakeSystem;
use harness::{call, params, serve};
use sapbridge_sap::soap::SoapSystem;
use sapbridge_sap::{ErrorGroup, Parameters, SapSystem};
use serde_json::{Value, json};

/// Serves the fake system over SOAP-RFC.
async fn start(system: FakeSystem) -> SocketAddr {
    harness::start(Arc::new(system)).await
}

/// A client backend for `addr` logging on as `CONF` with `password`.
fn backend(addr: SocketAddr, password: &str) -> SoapSystem {
    harness::backend(format!("http://{addr}/"), "CONF", password)
}

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/soap");

#[tokio::test]
async fn soap_backend_returns_the_same_json_as_the_system() {
    let fake = FakeSystem::default();
    let soap = backend(start(fake.clone()).await, "conf-secret");
    let cases = [
        (
            "STFC_CONNECTION",
            json!({"REQUTEXT": "hello <soap> & ümlaut"}),
        ),
        ("STFC_CONNECTION", json!({})),
        (
            "Z_TEST",
            json!({"COUNT": 21, "DAY": "20240131",
            "ADDR": {"NAME": "  Kunde GmbH", "ZIP": "68159", "SINCE": "20010203"},
            "ROWS": [{"ID": 1, "TEXT": "a", "AMOUNT": "123456789012345.99"}, {"ID": -2, "TEXT": "", "AMOUNT": "-0.01"}]}),
        ),
        ("Z_TEST", json!({})),
        ("Z_CREATE", json!({"NAME": "Soap Kunde"})),
    ];
    for (function, p) in cases {
        let p = params(p);
        let direct = call(&fake, function, &p).await.unwrap();
        let through_soap = call(&soap, function, &p).await.unwrap();
        assert_eq!(
            Value::Object(through_soap),
            Value::Object(direct),
            "{function}"
        );
    }
}

#[tokio::test]
async fn faults_map_to_error_groups() {
    let fake = FakeSystem::default();
    let addr = start(fake.clone()).await;
    let soap = backend(addr, "conf-secret");

    let error = call(&soap, "Z_NOPE", &Parameters::new()).await.unwrap_err();
    assert_eq!(
        (error.group, error.key.as_str()),
        (ErrorGroup::AbapApplicationFailure, "FU_NOT_FOUND")
    );

    let p = params(json!({"COUNT": -1}));
    let direct = call(&fake, "Z_TEST", &p).await.unwrap_err();
    let error = call(&soap, "Z_TEST", &p).await.unwrap_err();
    assert_eq!(error, direct);

    let error = call(&soap, "Z_TEST", &params(json!({"COUNT": "many"})))
        .await
        .unwrap_err();
    assert_eq!(error.group, ErrorGroup::ExternalRuntimeFailure);

    let error = call(
        &backend(addr, "wrong"),
        "STFC_CONNECTION",
        &Parameters::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(error.group, ErrorGroup::LogonFailure);

    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let error = call(&backend(closed, "x"), "STFC_CONNECTION", &Parameters::new())
        .await
        .unwrap_err();
    assert_eq!(error.group, ErrorGroup::CommunicationFailure);

    let error = call(&soap, "Z_TEST", &params(json!({"A><B": "x"})))
        .await
        .unwrap_err();
    assert_eq!(error.group, ErrorGroup::ExternalRuntimeFailure);
}

#[tokio::test]
async fn a_unit_of_work_commits_in_one_session() {
    let fake = FakeSystem::default();
    let soap = backend(start(fake.clone()).await, "conf-secret");

    let mut unit = soap.connect().await.unwrap();
    unit.call("Z_CREATE", &params(json!({"NAME": "committed"})))
        .await
        .unwrap();
    unit.call("BAPI_TRANSACTION_COMMIT", &params(json!({"WAIT": "X"})))
        .await
        .unwrap();
    drop(unit);

    let mut abandoned = soap.connect().await.unwrap();
    abandoned
        .call("Z_CREATE", &params(json!({"NAME": "never"})))
        .await
        .unwrap();
    drop(abandoned);

    // A commit in another session commits nothing.
    let mut other = soap.connect().await.unwrap();
    other
        .call("BAPI_TRANSACTION_COMMIT", &Parameters::new())
        .await
        .unwrap();
    assert_eq!(
        *fake.committed.lock().unwrap(),
        vec!["committed".to_owned()]
    );
}

/// A server that answers every POST with one canned body, like a NetWeaver that
/// grants no stateful session.
async fn canned(status: StatusCode, file: &str) -> SocketAddr {
    let body = std::fs::read_to_string(format!("{FIXTURES}/{file}")).unwrap();
    let app = axum::Router::new().route(
        "/sap/bc/soap/rfc",
        axum::routing::post(move || {
            let body = body.clone();
            async move {
                (
                    status,
                    [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
                    body,
                )
            }
        }),
    );
    serve(app).await
}

#[tokio::test]
async fn reads_captured_netweaver_answers() {
    let fault = backend(
        canned(
            StatusCode::INTERNAL_SERVER_ERROR,
            "rfc_read_table_fault.xml",
        )
        .await,
        "x",
    );
    let error = call(
        &fault,
        "RFC_READ_TABLE",
        &params(json!({"QUERY_TABLE": "T000X"})),
    )
    .await
    .unwrap_err();
    assert_eq!(error.group, ErrorGroup::AbapApplicationFailure);
    assert_eq!(error.key, "TABLE_NOT_AVAILABLE");
    assert_eq!(
        (error.msg_class.as_str(), error.msg_number.as_str()),
        ("SV", "029")
    );

    let ok = backend(
        canned(StatusCode::OK, "stfc_connection_response.xml").await,
        "x",
    );
    let result = call(
        &ok,
        "STFC_CONNECTION",
        &params(json!({"REQUTEXT": "hello"})),
    )
    .await
    .unwrap();
    assert_eq!(result["ECHOTEXT"], "hello");
}

#[tokio::test]
async fn a_stateless_server_gets_no_pretend_commit() {
    let soap = backend(
        canned(StatusCode::OK, "stfc_connection_response.xml").await,
        "x",
    );
    let mut unit = soap.connect().await.unwrap();
    unit.call("STFC_CONNECTION", &Parameters::new())
        .await
        .unwrap();
    let error = unit
        .call("BAPI_TRANSACTION_COMMIT", &Parameters::new())
        .await
        .unwrap_err();
    assert_eq!(error.key, "STATELESS_SESSION");
}
