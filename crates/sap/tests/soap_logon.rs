//! Never lock the SAP user through SOAP-RFC: the endpoint locks a user after five
//! failed logons in a row, as SAP does; a backend with a wrong password stops
//! logging on after SAP's first refusal, whatever the number of calls (several at
//! once included), and logs on again once the password file holds another password.

#[allow(dead_code)]
#[path = "fixtures/soap/harness.rs"]
mod harness;

use std::sync::Arc;
use std::time::Duration;

use sapbridge_sap::logon_guard::{LogonState, PasswordSource};
use sapbridge_sap::sim::{FAILS_TO_USER_LOCK, SimOptions, Simulator, UserLocks};
use sapbridge_sap::soap::{SoapConfig, SoapSystem, router_with_locks};
use sapbridge_sap::{ErrorGroup, Parameters};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_calls_with_a_wrong_password_cost_one_failed_logon() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::open(&dir.path().join("sim.db"), SimOptions::default()).unwrap();
    let locks = Arc::new(UserLocks::default());
    let addr = harness::serve(router_with_locks(
        Arc::new(sim),
        harness::auth(),
        Arc::clone(&locks),
    ))
    .await;
    let password = dir.path().join("password");
    std::fs::write(&password, "not-the-password\n").unwrap();
    let soap = SoapSystem::new(SoapConfig {
        base_url: format!("http://{addr}"),
        client: "001".into(),
        user: "CONF".into(),
        password: PasswordSource::File(password.clone()),
        timeout: Duration::from_secs(10),
        ca_file: None,
        proxy_url: None,
    })
    .unwrap();

    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let soap = soap.clone();
            tokio::spawn(async move { harness::call(&soap, "RFC_PING", &Parameters::new()).await })
        })
        .collect();
    for task in tasks {
        let error = task.await.unwrap().unwrap_err();
        assert_eq!(error.group, ErrorGroup::LogonFailure, "{error}");
    }
    assert_eq!(locks.failures("CONF"), 1, "SAP saw one failed logon");
    assert!(matches!(soap.logon_state(), LogonState::Blocked { .. }));
    let error = harness::call(&soap, "RFC_PING", &Parameters::new())
        .await
        .unwrap_err();
    assert_eq!(error.key, "LOGON_BLOCKED");
    assert!(!error.message.contains("not-the-password"));

    std::fs::write(&password, "conf-secret\n").unwrap();
    harness::call(&soap, "RFC_PING", &Parameters::new())
        .await
        .unwrap();
    assert!(!locks.is_locked("CONF"));
    assert_eq!(soap.logon_state(), LogonState::Open);
}

#[tokio::test]
async fn the_endpoint_locks_a_user_after_five_failures_as_sap_does() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::open(&dir.path().join("sim.db"), SimOptions::default()).unwrap();
    let locks = Arc::new(UserLocks::default());
    let addr = harness::serve(router_with_locks(
        Arc::new(sim),
        harness::auth(),
        Arc::clone(&locks),
    ))
    .await;
    // A fresh backend per attempt: each has its own guard, as separate
    // integrations sharing the user do.
    for _ in 0..FAILS_TO_USER_LOCK {
        let wrong = harness::backend(format!("http://{addr}"), "conf", "wrong");
        let error = harness::call(&wrong, "RFC_PING", &Parameters::new())
            .await
            .unwrap_err();
        assert_eq!(error.key, "RFC_LOGON_FAILURE");
    }
    assert!(locks.is_locked("CONF"));
    let right = harness::backend(format!("http://{addr}"), "conf", "conf-secret");
    let error = harness::call(&right, "RFC_PING", &Parameters::new())
        .await
        .unwrap_err();
    assert_eq!(
        error.group,
        ErrorGroup::LogonFailure,
        "locked: the right password is refused"
    );
    locks.reset("conf");
    let right = harness::backend(format!("http://{addr}"), "conf", "conf-secret");
    harness::call(&right, "RFC_PING", &Parameters::new())
        .await
        .unwrap();
}
