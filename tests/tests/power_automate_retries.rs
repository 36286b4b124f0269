//! Flow runs that retry as Power Automate does never fail on a retry that meets the
//! first attempt still running: 60 customer creates through units of work against a
//! simulator with 700 ms per SAP call, half of the first attempts cut by the network
//! before their answer. Every run must end with its customer number, and SAP must
//! hold exactly 60 new customers, one per run.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use sapbridge_sap::SapSystem;
use sapbridge_tests::power_automate::{ActionFailed, FlowClient};
use sapbridge_tests::{API_KEY, Client, TestAgent, TestRelay, simulator};
use serde_json::{Value, json};
use tokio::task::JoinSet;

const RUNS: usize = 60;
const PREFIX: &str = "PA Retry ";

fn create_body(name: &str) -> Value {
    json!({
        "calls": [{
            "function": "BAPI_CUSTOMER_CREATEFROMDATA1",
            "parameters": {
                "PI_COMPANYDATA": {
                    "NAME": name, "CITY": "Walldorf", "POSTL_COD1": "69190",
                    "STREET": "Retryweg 1", "COUNTRY": "DE", "LANGU": "E", "CURRENCY": "EUR"
                },
                "PI_COPYREFERENCE": {
                    "SALESORG": "1000", "DISTR_CHAN": "10", "DIVISION": "00",
                    "REF_CUSTMR": "0000001000"
                }
            }
        }]
    })
}

/// `(KUNNR, NAME1)` of the customers whose name starts with `prefix`, read from
/// the simulator's own KNA1.
async fn customers_named(sim: &Arc<dyn SapSystem>, prefix: &str) -> Result<Vec<(String, String)>> {
    let mut session = sim.connect().await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let params = json!({
        "QUERY_TABLE": "KNA1",
        "DELIMITER": "|",
        "FIELDS": [{"FIELDNAME": "KUNNR"}, {"FIELDNAME": "NAME1"}],
        "OPTIONS": [{"TEXT": format!("NAME1 LIKE '{prefix}%'")}],
    });
    let out = session
        .call("RFC_READ_TABLE", params.as_object().expect("object"))
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(out["DATA"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| {
            let wa = row["WA"].as_str().unwrap_or_default();
            let (kunnr, name) = wa.split_once('|').unwrap_or((wa, ""));
            (kunnr.trim().to_owned(), name.trim().to_owned())
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flow_run_creates_its_customer_once_although_half_were_cut() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // A short wait, so slow units answer 202 and runs poll Location as well.
    let relay = TestRelay::start(json!({"default_wait_secs": 1})).await?;
    let sim = simulator(dir.path(), Duration::from_millis(700))?;
    let allow = ["BAPI_CUSTOMER_*", "BAPI_TRANSACTION_*"];
    let agent = TestAgent::start(&relay, "plant", dir.path(), Arc::clone(&sim), &allow, 16)?;
    Client::new(&relay, Some(API_KEY))
        .wait_agents("SIM", 1)
        .await?;
    ensure!(customers_named(&sim, PREFIX).await?.is_empty());

    let flow = FlowClient::new(&relay, API_KEY);
    let mut runs = JoinSet::new();
    for i in 0..RUNS {
        let flow = flow.clone();
        runs.spawn(async move {
            let name = format!("{PREFIX}{i:02}");
            // Every second run loses its first attempt while the unit runs.
            let cut = (i % 2 == 0).then_some(Duration::from_millis(150));
            let key = format!("account-{i}-create");
            let result = flow
                .post(
                    "/v1/systems/SIM/transactions",
                    &create_body(&name),
                    &key,
                    cut,
                )
                .await;
            (name, result)
        });
    }
    let (mut numbers, mut failed) = (BTreeSet::new(), Vec::new());
    let (mut cut, mut retries, mut polls) = (0, 0, 0);
    while let Some(joined) = runs.join_next().await {
        let (name, result) = joined?;
        match result {
            Ok((reply, trace)) => {
                cut += usize::from(trace.first_cut);
                retries += trace.retries;
                polls += trace.polls;
                let number = reply.body["results"][0]["result"]["CUSTOMERNO"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if reply.status != 200 || reply.body["committed"] != true || number.is_empty() {
                    failed.push(format!("{name}: {} {}", reply.status, reply.body));
                } else {
                    numbers.insert((number, name));
                }
            }
            Err(ActionFailed::Status(reply)) => {
                failed.push(format!("{name}: {} {}", reply.status, reply.body));
            }
            Err(other) => failed.push(format!("{name}: {other:?}")),
        }
    }
    println!(
        "{RUNS} flow runs: {} succeeded, {} failed; {cut} first attempts cut, \
         {retries} retries, {polls} polls",
        numbers.len(),
        failed.len()
    );
    ensure!(
        failed.is_empty(),
        "failed flow runs:\n{}",
        failed.join("\n")
    );
    ensure!(
        cut == RUNS / 2,
        "{cut} first attempts were cut, not {}",
        RUNS / 2
    );
    ensure!(polls > 0, "no run polled a Location");

    let in_sap: BTreeSet<(String, String)> =
        customers_named(&sim, PREFIX).await?.into_iter().collect();
    ensure!(
        in_sap.len() == RUNS,
        "SAP holds {} new customers, not {RUNS}",
        in_sap.len()
    );
    ensure!(
        in_sap == numbers,
        "the runs' customer numbers are not SAP's: {numbers:?} vs {in_sap:?}"
    );
    agent.stop().await?;
    relay.stop().await
}
