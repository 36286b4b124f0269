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

#[tokio::test]
async fn abap_exceptions_and_bad_parameters_keep_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let system = stub::backend(&dir.path().join("sim.db"));
    let mut conn = system.connect().await.unwrap();
    let error = conn
        .call("RFC_READ_TABLE", &params(json!({"QUERY_TABLE": "NOPE"})))
        .await
        .unwrap_err();
    assert_eq!(
        (error.group, error.key.as_str()),
        (ErrorGroup::AbapApplicationFailure, "TABLE_NOT_AVAILABLE")
    );
    let error = conn
        .call("STFC_CONNECTION", &params(json!({"REQUTEXT": 42})))
        .await
        .unwrap_err();
    assert_eq!(
        (error.group, error.key.as_str()),
        (ErrorGroup::ExternalRuntimeFailure, "RFC_CONVERSION_FAILURE")
    );
    // The same session still works.
    conn.call("RFC_PING", &Parameters::new()).await.unwrap();
}

#[tokio::test]
async fn a_broken_connection_fails_the_unit_and_is_not_reused() {
    let dir = tempfile::tempdir().unwrap();
    let system = stub::backend(&dir.path().join("sim.db"));
    let mut conn = system.connect().await.unwrap();
    let trigger = params(json!({"REQUTEXT": "STUB:COMMUNICATION_FAILURE"}));
    let error = conn.call("STFC_CONNECTION", &trigger).await.unwrap_err();
    assert_eq!(error.group, ErrorGroup::CommunicationFailure, "{error}");
    // The rest of the unit cannot run on a lost session.
    let error = conn.call("RFC_PING", &Parameters::new()).await.unwrap_err();
    assert_eq!(error.key, "RFC_CONNECTION_BROKEN");
    drop(conn);
    // A new unit gets a working connection.
    let mut conn = system.connect().await.unwrap();
    conn.call("RFC_PING", &Parameters::new()).await.unwrap();
}

#[tokio::test]
async fn a_call_past_its_timeout_is_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let system = stub::backend_with(
        &dir.path().join("sim.db"),
        PasswordSource::Value(Secret::new(SIM_PASSWORD)),
        Duration::from_millis(300),
    );
    let mut conn = system.connect().await.unwrap();
    let started = Instant::now();
    let slow = params(json!({"REQUTEXT": "STUB:SLEEP:60000"}));
    let error = conn.call("STFC_CONNECTION", &slow).await.unwrap_err();
    assert_eq!(
        (error.group, error.key.as_str()),
        (ErrorGroup::CommunicationFailure, "RFC_TIMEOUT"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let error = conn.call("RFC_PING", &Parameters::new()).await.unwrap_err();
    assert_eq!(error.key, "RFC_CONNECTION_BROKEN");
}

/// Waits until the pool holds `n` idle connections (they come back from a
/// blocking task after their session was reset).
async fn idle(system: &sapbridge_sap::nwrfc::NwrfcSystem, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while system.idle_connections() < n {
        assert!(Instant::now() < deadline, "pool never reached {n}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_unit_of_work_commits_on_its_connection_and_the_pool_resets_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sim.db");
    let system = stub::backend(&db);
    let sim = Simulator::open(&db, SimOptions::default()).unwrap();
    let before = sim.customer_count().unwrap();
    let create = params(json!({
        "PI_COMPANYDATA": {"NAME": "RFC Kunde", "CITY": "Walldorf", "POSTL_COD1": "69190",
            "COUNTRY": "DE", "LANGU": "D", "CURRENCY": "EUR"},
        "PI_COPYREFERENCE": {"SALESORG": "1000", "DISTR_CHAN": "10", "DIVISION": "00", "REF_CUSTMR": "0000001000"},
    }));

    // Created, not committed, connection returned: the pool's reset discards it.
    let mut unit = system.connect().await.unwrap();
    unit.call("BAPI_CUSTOMER_CREATEFROMDATA1", &create)
        .await
        .unwrap();
    drop(unit);
    idle(&system, 1).await;
    let mut unit = system.connect().await.unwrap();
    assert_eq!(
        system.idle_connections(),
        0,
        "the pooled connection was reused"
    );
    unit.call("BAPI_TRANSACTION_COMMIT", &params(json!({"WAIT": "X"})))
        .await
        .unwrap();
    assert_eq!(
        sim.customer_count().unwrap(),
        before,
        "nothing leaked through the pool"
    );

    // Created and committed on one connection.
    unit.call("BAPI_CUSTOMER_CREATEFROMDATA1", &create)
        .await
        .unwrap();
    unit.call("BAPI_TRANSACTION_COMMIT", &params(json!({"WAIT": "X"})))
        .await
        .unwrap();
    assert_eq!(sim.customer_count().unwrap(), before + 1);
}

#[tokio::test]
async fn a_trfc_unit_runs_once_per_tid() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sim.db");
    let system = stub::backend(&db);
    let sim = Simulator::open(&db, SimOptions::default()).unwrap();
    let before = sim.customer_count().unwrap();
    let create = FunctionCall {
        function: "BAPI_CUSTOMER_CREATEFROMDATA1".into(),
        parameters: params(json!({
            "PI_COMPANYDATA": {"NAME": "tRFC Kunde", "CITY": "Walldorf", "POSTL_COD1": "69190",
                "COUNTRY": "DE", "LANGU": "D", "CURRENCY": "EUR"},
            "PI_COPYREFERENCE": {"SALESORG": "1000", "DISTR_CHAN": "10", "DIVISION": "00", "REF_CUSTMR": "0000001000"},
        })),
    };
    assert!(system.sends_as_trfc(std::slice::from_ref(&create)));
    let read = FunctionCall {
        function: "BAPI_CUSTOMER_GETDETAIL2".into(),
        parameters: Parameters::new(),
    };
    assert!(
        !system.sends_as_trfc(&[create.clone(), read]),
        "every call must match"
    );
    let call_id = "c_0190abcdef0123456789abcdef0123456789abcdef";
    let tid = trfc_tid(call_id);
    assert_eq!(tid.len(), 24);
    assert_eq!(tid, trfc_tid(call_id), "every attempt uses the same TID");

    // An earlier attempt that committed but died before confirming: SAP (here the
    // stub's TID table) still knows the TID.
    let mut first = sim.session().await.unwrap();
    use sapbridge_sap::SapConnection as _;
    first
        .call(&create.function, &create.parameters)
        .await
        .unwrap();
    first.commit_unit(&tid).await.unwrap();
    assert_eq!(sim.customer_count().unwrap(), before + 1);

    // The redelivered unit is submitted again with the same TID: not run again.
    let mut conn = system.connect().await.unwrap();
    conn.submit_transaction(call_id, std::slice::from_ref(&create))
        .await
        .unwrap();
    assert_eq!(
        sim.customer_count().unwrap(),
        before + 1,
        "the TID ran once"
    );
    // Confirmed: SAP forgets the TID.
    assert!(!sim.tid_committed(&tid).unwrap());

    // A new call id is a new unit.
    conn.submit_transaction("c_another", std::slice::from_ref(&create))
        .await
        .unwrap();
    assert_eq!(sim.customer_count().unwrap(), before + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_password_is_not_tried_again_until_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sim.db");
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "wrong\n").unwrap();
    let system = stub::backend_with(
        &db,
        PasswordSource::File(password_file.clone()),
        Duration::from_secs(30),
    );
    // Ten calls, several at once: SAP sees one failed logon.
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let system = system.clone();
            tokio::spawn(async move { system.connect().await.map(drop) })
        })
        .collect();
    let mut errors = Vec::new();
    for task in tasks {
        errors.push(task.await.unwrap());
    }
    let refused_by_sap = errors
        .iter()
        .filter(|e| {
            e.as_ref()
                .err()
                .is_some_and(|e| e.key == "RFC_LOGON_FAILURE")
        })
        .count();
    let blocked = errors
        .iter()
        .filter(|e| e.as_ref().err().is_some_and(|e| e.key == "LOGON_BLOCKED"))
        .count();
    assert_eq!((refused_by_sap, blocked), (1, 9));
    let Err(error) = system.connect().await else {
        panic!("logon went through")
    };
    assert_eq!(error.group, ErrorGroup::LogonFailure);
    assert!(error.message.contains("password file"), "{}", error.message);
    assert!(
        !error.message.contains("wrong"),
        "the password is never echoed"
    );
    assert!(matches!(system.logon_state(), LogonState::Blocked { .. }));

    // The file is corrected: the next call logs on, and the user was never locked
    // (five failures would have locked it, and then the right password fails too).
    std::fs::write(&password_file, format!("{SIM_PASSWORD}\n")).unwrap();
    let mut conn = system.connect().await.unwrap();
    conn.call("RFC_PING", &Parameters::new()).await.unwrap();
    assert_eq!(system.logon_state(), LogonState::Open);
}

#[tokio::test]
async fn without_the_guard_five_wrong_passwords_lock_the_simulated_user() {
    // The lock the guard prevents is real in the stub: raw logons through the
    // binding lock the user after five failures, and then even the right password
    // is refused.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sim.db");
    let sdk = sapbridge_nwrfc::Sdk::load(Some(stub::stub_library())).unwrap();
    // A user of its own, so other tests' logons do not interfere.
    let user = "LOCKTEST";
    let logon = |password: &'static str| {
        let mut p: Vec<(String, String)> = stub::logon(&db, user);
        p.push(("PASSWD".into(), password.into()));
        p
    };
    let open = |p: Vec<(String, String)>| {
        let refs: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        sapbridge_nwrfc::Connection::open(sdk, &refs)
            .map(|_| ())
            .map_err(Box::new)
    };
    for _ in 0..5 {
        let error = open(logon("wrong")).unwrap_err();
        assert_eq!(error.code, sapbridge_nwrfc::RFC_RC::LOGON_FAILURE);
    }
    let error = open(logon(SIM_PASSWORD)).unwrap_err();
    assert!(error.message.contains("locked"), "{error}");
}
