//! A SOAP-RFC request whose client goes away before the answer still runs to its
//! end, as on SAP's ICF: a commit sent by a client that then disconnects (a killed
//! agent, a cut connection) commits, and what it committed is visible to the next
//! request.

#[allow(dead_code)]
#[path = "fixtures/soap/harness.rs"]
mod harness;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use harness::{call, params};
use sapbridge_sap::sim::{SimOptions, Simulator};
use sapbridge_sap::{Parameters, RfcError, SapConnection, SapSystem};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// How long the commit takes in SAP: long enough that the server learns of the
/// client's disconnect while the commit still runs.
const COMMIT_TAKES: Duration = Duration::from_millis(300);

/// The simulator with a commit that takes [`COMMIT_TAKES`], telling the test each
/// function as its call starts in SAP.
struct Watched {
    sim: Simulator,
    started: mpsc::UnboundedSender<String>,
}

struct WatchedConnection {
    inner: Box<dyn SapConnection>,
    started: mpsc::UnboundedSender<String>,
}

#[async_trait]
impl SapSystem for Watched {
    async fn connect(&self) -> Result<Box<dyn SapConnection>, RfcError> {
        Ok(Box::new(WatchedConnection {
            inner: self.sim.connect().await?,
            started: self.started.clone(),
        }))
    }
}

#[async_trait]
impl SapConnection for WatchedConnection {
    async fn call(
        &mut self,
        function: &str,
        parameters: &Parameters,
    ) -> Result<Parameters, RfcError> {
        let _ = self.started.send(function.to_owned());
        if function == "BAPI_TRANSACTION_COMMIT" {
            tokio::time::sleep(COMMIT_TAKES).await;
        }
        self.inner.call(function, parameters).await
    }
}

fn envelope(session: bool, call: &str) -> String {
    format!(
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:sap-com:document:sap:rfc:functions"><soapenv:Header><sap:Session xmlns:sap="http://www.sap.com/webas/630/soap/features/session/"><enableSession>{session}</enableSession></sap:Session></soapenv:Header><soapenv:Body>{call}</soapenv:Body></soapenv:Envelope>"#
    )
}

/// One request in the session `cookie` names (a new one when `None`); returns the
/// status, the body and the session cookie the server set, if any.
async fn post(
    addr: SocketAddr,
    cookie: Option<&str>,
    body: String,
) -> (u16, String, Option<String>) {
    let mut request = reqwest::Client::new()
        .post(format!("http://{addr}/sap/bc/soap/rfc?sap-client=001"))
        .basic_auth("CONF", Some("conf-secret"))
        .header("Content-Type", "text/xml; charset=utf-8")
        .body(body);
    if let Some(cookie) = cookie {
        request = request.header("Cookie", cookie);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    (status, response.text().await.unwrap(), set_cookie)
}

/// Sends one request in session `cookie` on a raw connection, waits until SAP
/// runs `function` for it, and closes the connection without reading the answer.
async fn send_and_go_away(
    addr: SocketAddr,
    cookie: &str,
    body: &str,
    function: &str,
    started: &mut mpsc::UnboundedReceiver<String>,
) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = "Q09ORjpjb25mLXNlY3JldA=="; // CONF:conf-secret
    let head = format!(
        "POST /sap/bc/soap/rfc?sap-client=001 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: text/xml; charset=utf-8\r\nCookie: {cookie}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    let deadline = Duration::from_secs(20);
    tokio::time::timeout(deadline, async {
        while let Some(name) = started.recv().await {
            if name == function {
                return;
            }
        }
        panic!("the watched system went away");
    })
    .await
    .unwrap_or_else(|_| panic!("{function} never started in SAP"));
    drop(stream);
}

#[tokio::test]
async fn a_commit_whose_client_went_away_still_commits() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::open(&dir.path().join("sim.db"), SimOptions::default()).unwrap();
    let (tx, mut started) = mpsc::unbounded_channel();
    let addr = harness::start(Arc::new(Watched {
        sim: sim.clone(),
        started: tx,
    }))
    .await;

    // The BAPI in a stateful session, answered as usual.
    let create = "<urn:BAPI_CUSTOMER_CREATEFROMDATA1>\
        <PI_COMPANYDATA><NAME>Verlassen GmbH</NAME><CITY>Mannheim</CITY><POSTL_COD1>68159</POSTL_COD1>\
        <COUNTRY>DE</COUNTRY><LANGU>D</LANGU><CURRENCY>EUR</CURRENCY></PI_COMPANYDATA>\
        <PI_COPYREFERENCE><SALESORG>1000</SALESORG><DISTR_CHAN>10</DISTR_CHAN><DIVISION>00</DIVISION>\
        <REF_CUSTMR>0000001000</REF_CUSTMR></PI_COPYREFERENCE></urn:BAPI_CUSTOMER_CREATEFROMDATA1>";
    let (status, text, cookie) = post(addr, None, envelope(true, create)).await;
    assert_eq!(status, 200, "{text}");
    let cookie = cookie.expect("a stateful session");
    let number = text
        .split("<CUSTOMERNO>")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("a customer number")
        .to_owned();

    // The commit, by a client that disconnects while SAP commits.
    let commit = envelope(
        true,
        "<urn:BAPI_TRANSACTION_COMMIT><WAIT>X</WAIT></urn:BAPI_TRANSACTION_COMMIT>",
    );
    send_and_go_away(
        addr,
        &cookie,
        &commit,
        "BAPI_TRANSACTION_COMMIT",
        &mut started,
    )
    .await;

    // The session's next request runs after the commit's work (one session runs
    // one request at a time), and ends the session.
    let (status, text, _) = post(addr, Some(&cookie), envelope(false, "<urn:RFC_PING/>")).await;
    assert_eq!(status, 200, "{text}");

    // Another session sees the committed customer.
    let through = harness::backend(format!("http://{addr}"), "CONF", "conf-secret");
    let detail = call(
        &through,
        "BAPI_CUSTOMER_GETDETAIL2",
        &params(json!({"CUSTOMERNO": number})),
    )
    .await
    .unwrap();
    assert_eq!(
        detail["CUSTOMERADDRESS"]["NAME"], "Verlassen GmbH",
        "the commit of a client that went away must still commit: {detail:?}"
    );
}
