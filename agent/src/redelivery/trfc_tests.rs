//! tRFC exactly once, through the runner, a real journal and the NW RFC backend on
//! the stub library (the SDK's C interface over the simulator): a committing unit
//! whose calls the system sends as tRFC, found in doubt after a crash that hit
//! after SAP committed it, is submitted again and creates one customer, not two.

#[path = "../../../crates/nwrfc/tests/fixtures/stub_library.rs"]
mod stub_library;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sapbridge_proto::{CommitPolicy, FunctionCall, Outcome, Unit};
use sapbridge_sap::logon_guard::PasswordSource;
use sapbridge_sap::nwrfc::{NwrfcConfig, NwrfcSystem, trfc_tid};
use sapbridge_sap::sim::{SIM_PASSWORD, SIM_USER, SimOptions, Simulator};
use sapbridge_sap::{SapConnection, SapSystem};
use serde_json::json;

use crate::allowlist::Allowlist;
use crate::config::JournalSync;
use crate::journal::{Header, JOURNAL_FILE, Journal};
use crate::outcomes::OutcomeStore;
use crate::read_only::{DEFAULT_READ_ONLY_FUNCTIONS, ReadOnlyFunctions};
use crate::runner::UnitRunner;
use crate::systems::ServedSystem;

const CREATE: &str = "BAPI_CUSTOMER_CREATEFROMDATA1";

fn create_unit(call_id: &str, attempt: u32) -> Unit {
    let serde_json::Value::Object(parameters) = json!({
        "PI_COMPANYDATA": {"NAME": "tRFC GmbH", "CITY": "Walldorf", "POSTL_COD1": "69190",
            "COUNTRY": "DE", "LANGU": "D", "CURRENCY": "EUR"},
        "PI_COPYREFERENCE": {"SALESORG": "1000", "DISTR_CHAN": "10", "DIVISION": "00", "REF_CUSTMR": "0000001000"},
    }) else {
        unreachable!()
    };
    Unit {
        call_id: call_id.into(),
        attempt,
        system: "PRD".into(),
        deadline_ms: None,
        in_doubt: false,
        calls: vec![FunctionCall {
            function: CREATE.into(),
            parameters,
        }],
        commit: CommitPolicy::CommitOnSuccess,
        traceparent: None,
    }
}

#[tokio::test]
async fn a_trfc_unit_in_doubt_is_submitted_again_and_commits_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sim.db");
    let sim = Simulator::open(&db, SimOptions::default()).unwrap();
    let before = sim.customer_count().unwrap();
    let nwrfc = NwrfcSystem::new(NwrfcConfig {
        library: Some(stub_library::stub_library().to_path_buf()),
        parameters: vec![
            ("ASHOST".into(), db.display().to_string()),
            ("SYSNR".into(), "00".into()),
            ("CLIENT".into(), "001".into()),
            ("USER".into(), SIM_USER.into()),
        ],
        password: PasswordSource::Value(sapbridge_proto::Secret::new(SIM_PASSWORD)),
        timeout: Duration::from_secs(30),
        pool_size: 2,
        trfc_functions: vec!["BAPI_CUSTOMER_CREATE*".into()],
    })
    .unwrap();
    let first = create_unit("c_trfc", 1);
    assert!(nwrfc.sends_as_trfc(&first.calls));

    // The first attempt: SAP committed the unit under its TID, then the agent
    // died before it journaled the outcome (or confirmed the TID).
    let mut session = sim.session().await.unwrap();
    session
        .call(CREATE, &first.calls[0].parameters)
        .await
        .unwrap();
    session.commit_unit(&trfc_tid("c_trfc")).await.unwrap();
    assert_eq!(sim.customer_count().unwrap(), before + 1);
    let journal = Journal::open(&dir.path().join(JOURNAL_FILE), JournalSync::Normal).unwrap();
    journal.started(&Header::of(&first, false)).await.unwrap();
    drop(journal);

    // The restarted agent gets the unit again.
    let journal = Journal::open(&dir.path().join(JOURNAL_FILE), JournalSync::Normal).unwrap();
    let store = Arc::new(OutcomeStore::open(journal).unwrap());
    let system = ServedSystem {
        agent_id: "agent-1".into(),
        name: "PRD".into(),
        allowlist: Allowlist::parse(&["*"]).unwrap(),
        tables: Allowlist::parse(&["*"]).unwrap(),
        sap: Arc::new(nwrfc),
    };
    let runner = UnitRunner::new(
        HashMap::from([("PRD".to_owned(), system)]),
        2,
        store.clone(),
        ReadOnlyFunctions::parse(DEFAULT_READ_ONLY_FUNCTIONS).unwrap(),
    );
    runner.submit(create_unit("c_trfc", 2));
    let ready = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(ready) = store.take_unsent().into_iter().next() {
                return ready;
            }
            store.changed().await;
        }
    })
    .await
    .expect("an outcome in time");
    let Outcome::Completed {
        transaction: Some(transaction),
        ..
    } = &ready.outcome
    else {
        panic!("{:?}", ready.outcome)
    };
    assert!(transaction.committed, "{transaction:?}");
    assert_eq!(
        sim.customer_count().unwrap(),
        before + 1,
        "SAP ran the TID once"
    );
    // A second, fresh unit of the same kind commits normally.
    runner.submit(create_unit("c_trfc_2", 1));
    tokio::time::timeout(Duration::from_secs(10), async {
        while sim.customer_count().unwrap() < before + 2 {
            store.changed().await;
        }
    })
    .await
    .expect("the second unit committed");
}
