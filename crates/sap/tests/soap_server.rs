//! The SOAP-RFC endpoint answered like NetWeaver: hand-written and captured
//! envelopes over real HTTP against a fake SAP system.

#[allow(dead_code)]
#[path = "fixtures/soap/fake_system.rs"]
mod fake_system;
#[allow(dead_code)]
#[path = "fixtures/soap/harness.rs"]
mod harness;

use std::net::SocketAddr;
use std::sync::Arc;

use fake_system::FakeSystem;

/// Serves the fake system over SOAP-RFC with the test logon.
async fn start() -> SocketAddr {
    harness::start(Arc::new(FakeSystem::default())).await
}

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/soap");

async fn post(
    addr: SocketAddr,
    client: &str,
    user: &str,
    password: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, String, reqwest::header::HeaderMap) {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/sap/bc/soap/rfc?sap-client={client}"))
        .basic_auth(user, Some(password))
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", "urn:sap-com:document:sap:rfc:functions")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.text().await.unwrap(), headers)
}

async fn call(addr: SocketAddr, body: &str) -> (u16, String) {
    let (status, text, _) = post(addr, "001", "CONF", "conf-secret", body.to_owned()).await;
    (status, text)
}

fn envelope(inner: &str) -> String {
    format!(
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:sap-com:document:sap:rfc:functions"><soapenv:Body>{inner}</soapenv:Body></soapenv:Envelope>"#
    )
}

#[tokio::test]
async fn stfc_connection_echoes_the_hand_written_envelope() {
    let addr = start().await;
    let body = std::fs::read_to_string(format!("{FIXTURES}/stfc_connection_request.xml")).unwrap();
    let (status, text, headers) = post(addr, "001", "conf", "conf-secret", body).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/xml")
    );
    assert!(
        text.contains(
            r#"<rfc:STFC_CONNECTION.Response xmlns:rfc="urn:sap-com:document:sap:rfc:functions">"#
        ),
        "{text}"
    );
    assert!(text.contains("<ECHOTEXT>hello soap</ECHOTEXT>"), "{text}");
}

#[tokio::test]
async fn liveness_page_answers() {
    let addr = start().await;
    let response = reqwest::get(format!("http://{addr}/")).await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn bad_logon_is_401_with_netweaver_realm() {
    let addr = start().await;
    let body = envelope("<urn:STFC_CONNECTION/>");
    let (status, _, headers) = post(addr, "001", "CONF", "wrong", body.clone()).await;
    assert_eq!(status, 401);
    assert_eq!(
        headers["www-authenticate"],
        r#"Basic realm="SAP NetWeaver Application Server [SIM/001]""#
    );
    let (status, _, _) = post(addr, "001", "OTHER", "conf-secret", body.clone()).await;
    assert_eq!(status, 401);
    let unauthenticated = reqwest::Client::new()
        .post(format!("http://{addr}/sap/bc/soap/rfc"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let (status, _, _) = post(addr, "002", "CONF", "conf-secret", body).await;
    assert_eq!(
        status, 401,
        "a client the system does not have is a logon failure"
    );
}

#[tokio::test]
async fn typed_call_returns_exports_and_only_requested_tables() {
    let addr = start().await;
    let body = envelope(
        "<urn:Z_TEST><COUNT> 21 </COUNT><DAY>2024-01-31</DAY><ADDR><NAME>M&amp;M</NAME><ZIP>68159</ZIP><SINCE>2001-02-03</SINCE></ADDR>\
         <ROWS><item><ID>7</ID><TEXT>seven</TEXT><AMOUNT>1.5</AMOUNT></item></ROWS></urn:Z_TEST>",
    );
    let (status, text) = call(addr, &body).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("<TOTAL>42</TOTAL>"), "{text}");
    assert!(
        text.contains("<HEAD><NAME>M&amp;M</NAME><ZIP>68159</ZIP><SINCE>2001-02-03</SINCE></HEAD>"),
        "{text}"
    );
    assert!(text.contains("<WHEN>23:59:59</WHEN>"), "{text}");
    assert!(text.contains("<ROWS><item><ID>7</ID><TEXT>seven</TEXT><AMOUNT>1.5</AMOUNT></item><item><ID>21</ID><TEXT>day 20240131</TEXT>"), "{text}");
    assert!(!text.contains("<LOG>"), "LOG was not requested: {text}");
    let (_, text) = call(addr, &envelope("<urn:Z_TEST><LOG/></urn:Z_TEST>")).await;
    assert!(
        text.contains("<LOG><item><ID>1</ID><TEXT>log &amp; &lt;more&gt;</TEXT>"),
        "{text}"
    );
    assert!(!text.contains("<ROWS>"), "{text}");
}

#[tokio::test]
async fn abap_exception_is_a_client_fault_with_the_exception_detail() {
    let addr = start().await;
    let (status, text) = call(
        addr,
        &envelope("<urn:Z_TEST><COUNT>-1</COUNT></urn:Z_TEST>"),
    )
    .await;
    assert_eq!(status, 500);
    assert!(
        text.contains("<faultcode>soap-env:Client</faultcode>"),
        "{text}"
    );
    assert!(
        text.contains(r#"<faultstring xml:lang="en">NEGATIVE_COUNT</faultstring>"#),
        "{text}"
    );
    assert!(text.contains(r#"<detail><rfc:Z_TEST.Exception xmlns:rfc="urn:sap-com:document:sap:rfc:functions"><Name>NEGATIVE_COUNT</Name>"#), "{text}");
    assert!(
        text.contains("<Message><ID>ZZ</ID><Number>001</Number></Message>"),
        "{text}"
    );
}

#[tokio::test]
async fn unknown_function_and_bad_values_are_faults() {
    let addr = start().await;
    let (status, text) = call(addr, &envelope("<urn:Z_NOPE/>")).await;
    assert_eq!(status, 500);
    assert!(text.contains("<Name>FU_NOT_FOUND</Name>"), "{text}");
    let (status, text) = call(
        addr,
        &envelope("<urn:Z_TEST><COUNT>many</COUNT></urn:Z_TEST>"),
    )
    .await;
    assert_eq!(status, 500);
    assert!(text.contains("RFC_CONVERSION_FAILURE"), "{text}");
    // A captured-style RFC_READ_TABLE request parses (SOAP-ENV prefix, whitespace,
    // iso-8859-1 declaration); the fake system has no RFC_READ_TABLE.
    let body = std::fs::read_to_string(format!("{FIXTURES}/rfc_read_table_request.xml")).unwrap();
    let (status, text) = call(addr, &body).await;
    assert_eq!(status, 500);
    assert!(text.contains("<rfc:RFC_READ_TABLE.Exception"), "{text}");
}

#[tokio::test]
async fn malformed_requests_get_faults_never_a_panic() {
    let addr = start().await;
    let deep = format!("{}{}", "<a>".repeat(10_000), "</a>".repeat(10_000));
    let bodies = [
        "".to_owned(),
        "not xml".to_owned(),
        "<soapenv:Envelope".to_owned(),
        "<html><body/></html>".to_owned(),
        envelope(""),
        envelope("<urn:STFC_CONNECTION><REQUTEXT>&bogus;</REQUTEXT></urn:STFC_CONNECTION>"),
        envelope("<urn:A&gt;B/>"),
        "<!DOCTYPE x [<!ENTITY a 'aaaa'>]><x>&a;</x>".to_owned(),
        deep,
        envelope(
            "<urn:Z_TEST><ADDR><NAME><X><Y>1</Y></X></NAME></ADDR><ROWS>text</ROWS></urn:Z_TEST>",
        ),
    ];
    for body in bodies {
        let (status, text) = call(addr, &body).await;
        assert!(status == 500 || status == 200, "{status} for {body:.60}");
        if status == 500 {
            assert!(text.contains("<soap-env:Fault>"), "{text}");
        }
    }
    let (status, _, _) = post(addr, "001", "CONF", "conf-secret", vec![0xffu8, 0xfe, b'<']).await;
    assert_eq!(status, 500);
    let huge = vec![b'a'; sapbridge_sap::soap::MAX_BODY_BYTES + 1];
    let (status, _, _) = post(addr, "001", "CONF", "conf-secret", huge).await;
    assert_eq!(status, 413);
    let (status, text) = call(
        addr,
        &envelope("<urn:STFC_CONNECTION><REQUTEXT>still up</REQUTEXT></urn:STFC_CONNECTION>"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(text.contains("<ECHOTEXT>still up</ECHOTEXT>"));
}
