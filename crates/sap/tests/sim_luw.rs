//! LUW semantics of the simulator: visibility across sessions, commit, rollback,
//! drop without commit, number ranges, restart persistence and the TID hook.

use sapbridge_sap::sim::{SimOptions, Simulator, TidCommit};
use sapbridge_sap::{Parameters, SapConnection, SapSystem};
use serde_json::{Value, json};

fn params(v: Value) -> Parameters {
    v.as_object().cloned().unwrap_or_default()
}

fn open(dir: &tempfile::TempDir) -> Simulator {
    Simulator::open(&dir.path().join("sim.db"), SimOptions::default()).expect("open simulator")
}

fn create_params(name: &str) -> Parameters {
    params(json!({
        "PI_COMPANYDATA": {
            "NAME": name, "STREET": "Hauptstrasse", "HOUSE_NO": "1", "POSTL_COD1": "10115",
            "CITY": "Berlin", "COUNTRY": "DE", "LANGU": "D", "CURRENCY": "EUR",
            "E_MAIL": "a@example.com"
        },
        "PI_COPYREFERENCE": {
            "SALESORG": "1000", "DISTR_CHAN": "10", "DIVISION": "00", "REF_CUSTMR": "1000"
        }
    }))
}

async fn create(conn: &mut dyn SapConnection, name: &str) -> String {
    let out = conn
        .call("BAPI_CUSTOMER_CREATEFROMDATA1", &create_params(name))
        .await
        .expect("create");
    assert_eq!(
        out["RETURN"]["TYPE"], "",
        "create failed: {}",
        out["RETURN"]
    );
    out["CUSTOMERNO"].as_str().unwrap_or_default().to_owned()
}

async fn exists(conn: &mut dyn SapConnection, kunnr: &str) -> bool {
    let out = conn
        .call(
            "BAPI_CUSTOMER_GETDETAIL2",
            &params(json!({ "CUSTOMERNO": kunnr })),
        )
        .await
        .expect("getdetail");
    out["RETURN"]["TYPE"] != "E"
}

async fn commit(conn: &mut dyn SapConnection) {
    let out = conn
        .call("BAPI_TRANSACTION_COMMIT", &params(json!({ "WAIT": "X" })))
        .await
        .expect("commit");
    assert_eq!(out["RETURN"]["TYPE"], "");
}

#[tokio::test]
async fn changes_are_invisible_to_other_sessions_until_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = open(&dir);
    let mut a = sim.connect().await.expect("connect a");
    let mut b = sim.connect().await.expect("connect b");

    let kunnr = create(a.as_mut(), "Visible Later GmbH").await;
    assert_eq!(kunnr, "0000100001");
    assert!(
        exists(a.as_mut(), &kunnr).await,
        "own session sees its pending create"
    );
    assert!(
        !exists(b.as_mut(), &kunnr).await,
        "other session must not see it yet"
    );

    commit(a.as_mut()).await;
    assert!(exists(b.as_mut(), &kunnr).await, "visible after commit");

    let change = params(json!({
        "CUSTOMERNO": "100001", "PI_SALESORG": "1000",
        "PI_COMPANYDATA": { "CITY": "Potsdam" }, "PI_COMPANYDATAX": { "CITY": "X" }
    }));
    let out = a
        .call("BAPI_CUSTOMER_CHANGEFROMDATA1", &change)
        .await
        .expect("change");
    assert_eq!(out["RETURN"]["TYPE"], "");
    assert_eq!(out["PE_COMPANYDATA"]["CITY"], "Potsdam");
    let city = |out: &Parameters| out["CUSTOMERADDRESS"]["CITY"].clone();
    let get = params(json!({ "CUSTOMERNO": kunnr }));
    assert_eq!(
        city(&b.call("BAPI_CUSTOMER_GETDETAIL2", &get).await.expect("b")),
        "Berlin"
    );
    assert_eq!(
        city(&a.call("BAPI_CUSTOMER_GETDETAIL2", &get).await.expect("a")),
        "Potsdam"
    );
    commit(a.as_mut()).await;
    assert_eq!(
        city(&b.call("BAPI_CUSTOMER_GETDETAIL2", &get).await.expect("b")),
        "Potsdam"
    );
}

#[tokio::test]
async fn rollback_and_drop_discard_changes_and_numbers_are_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = open(&dir);
    let mut a = sim.connect().await.expect("connect");
    let first = create(a.as_mut(), "Rolled Back AG").await;
    let out = a
        .call("BAPI_TRANSACTION_ROLLBACK", &Parameters::new())
        .await
        .expect("rollback");
    assert_eq!(out["RETURN"]["TYPE"], "");
    assert!(
        !exists(a.as_mut(), &first).await,
        "rolled back create is gone"
    );

    let second = create(a.as_mut(), "Dropped AG").await;
    assert_eq!(
        (first.as_str(), second.as_str()),
        ("0000100001", "0000100002")
    );
    drop(a);
    let mut b = sim.connect().await.expect("connect");
    assert!(
        !exists(b.as_mut(), &second).await,
        "dropped session's create is gone"
    );
    let third = create(b.as_mut(), "Kept AG").await;
    assert_eq!(third, "0000100003", "a rolled-back number is not reused");
}

#[tokio::test]
async fn committed_state_survives_restart_and_is_shared_between_simulators() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kunnr = {
        let sim = open(&dir);
        let mut a = sim.connect().await.expect("connect");
        let k = create(a.as_mut(), "Persistent GmbH").await;
        commit(a.as_mut()).await;
        k
    };
    let sim = open(&dir);
    let other = open(&dir);
    let mut a = sim.connect().await.expect("connect");
    assert!(
        exists(a.as_mut(), &kunnr).await,
        "customer survives a restart"
    );
    let mut b = other.connect().await.expect("connect other");
    let next = create(b.as_mut(), "Second Simulator GmbH").await;
    assert_eq!(
        next, "0000100002",
        "number range is shared through the file"
    );
    // The seed ran once: still eight demo customers plus the created ones.
    let list = params(
        json!({ "IDRANGE": [{ "SIGN": "I", "OPTION": "BT", "LOW": "1", "HIGH": "999999" }] }),
    );
    let out = a
        .call("BAPI_CUSTOMER_GETLIST", &list)
        .await
        .expect("getlist");
    assert_eq!(out["ADDRESSDATA"].as_array().map(Vec::len), Some(9));
}

#[tokio::test]
async fn commit_with_tid_is_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = open(&dir);
    assert!(!sim.tid_committed("C1").expect("tid lookup"));
    let mut s = sim.session().await.expect("session");
    let kunnr = create(&mut s, "Exactly Once GmbH").await;
    assert!(s.has_pending_changes());
    assert_eq!(
        s.commit_unit("C1").await.expect("commit"),
        TidCommit::Committed
    );
    assert!(!s.has_pending_changes());
    assert!(sim.tid_committed("C1").expect("tid lookup"));

    // A redelivery of the same unit: runs again, commit finds the TID.
    let mut again = sim.session().await.expect("session");
    let duplicate = create(&mut again, "Exactly Once GmbH").await;
    assert_eq!(
        again.commit_unit("C1").await.expect("commit"),
        TidCommit::AlreadyCommitted
    );
    assert!(!again.has_pending_changes());
    assert!(exists(&mut again, &kunnr).await);
    assert!(
        !exists(&mut again, &duplicate).await,
        "the duplicate was not written"
    );
}

#[tokio::test]
async fn trait_level_tid_commit_is_exactly_once_and_answers_like_the_bapi() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = open(&dir);
    let system: &dyn SapSystem = &sim;
    assert_eq!(system.tid_committed("U1").await.expect("ask"), Some(false));
    let mut first = system.connect().await.expect("session");
    let kunnr = create(first.as_mut(), "Trait Commit AG").await;
    let answer = first.commit_with_tid("U1").await.expect("commit");
    assert_eq!(answer["RETURN"]["TYPE"], "", "{answer:?}");
    assert_eq!(system.tid_committed("U1").await.expect("ask"), Some(true));

    let mut second = system.connect().await.expect("session");
    let duplicate = create(second.as_mut(), "Trait Commit AG").await;
    second.commit_with_tid("U1").await.expect("second commit");
    let mut reader = system.connect().await.expect("session");
    assert!(exists(reader.as_mut(), &kunnr).await);
    assert!(
        !exists(reader.as_mut(), &duplicate).await,
        "a TID commits once"
    );
}
