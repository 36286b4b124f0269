//! Issue 15's two-agent duplicate with `kill -9`: agent A runs as a `sapbridge
//! agent` process with the SOAP-RFC backend, agent B (same system, same SOAP server
//! in front of one simulator, no TID record) in this process. A client creates a
//! customer in a unit of work; A is killed while SAP runs the unit's BAPI or its
//! commit. The SOAP server finishes the killed agent's request, as SAP's ICF does
//! (so a commit A sent does commit), and after the relay's owner hold (1 s here) B
//! gets the unit in doubt: it must answer `OUTCOME_UNKNOWN` and never run the BAPI
//! again. SAP ends with exactly the customers A's requests made: none when A died
//! in the BAPI (its session was never committed), one when it died in the commit.
//!
//! Loopback only; bounded by the harness's deadlines.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use sapbridge_sap::SapSystem;
use sapbridge_sap::sim::{SimOptions, Simulator};
use sapbridge_tests::{
    AGENT_TOKEN, API_KEY, Client, GatedSystem, Proc, SOAP_PASSWORD, SOAP_USER, SoapSap, TestAgent,
    TestRelay, create_customer_unit, customers_named,
};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_sapbridge");
const ALLOW: &[&str] = &["BAPI_CUSTOMER_*", "BAPI_TRANSACTION_*"];
const CREATE: &str = "BAPI_CUSTOMER_CREATEFROMDATA1";
const COMMIT: &str = "BAPI_TRANSACTION_COMMIT";
/// The environment variable agent A reads its SAP password from.
const PASSWORD_ENV: &str = "SAPBRIDGE_TEST_SOAP_PASSWORD";

/// Starts agent A as a process dialling `relay_ws`, serving `SIM` over SOAP-RFC
/// at `sap_url`.
fn start_agent_a(dir: &Path, relay_ws: &str, sap_url: &str) -> Result<Proc> {
    let config = dir.join("agent-a.toml");
    std::fs::write(
        &config,
        format!(
            r#"
relay_url = "{relay_ws}"
token = "{AGENT_TOKEN}"
agent_id = "agent-a"
data_dir = "{data}"
concurrency = 4
backoff_initial_ms = 50
backoff_max_ms = 500

[[systems]]
name = "SIM"
allow_functions = {allow:?}

[systems.backend]
type = "soap"
base_url = "{sap_url}"
client = "001"
user = "{SOAP_USER}"
password_env = "{PASSWORD_ENV}"
"#,
            data = dir.join("agent-a").display(),
            allow = ALLOW,
        ),
    )?;
    Proc::spawn(
        Command::new(BIN)
            .args(["agent", "--config"])
            .arg(&config)
            .env("SAPBRIDGE_LOG", "error")
            .env(PASSWORD_ENV, SOAP_PASSWORD),
    )
    .context("spawn agent A")
}

/// Kills agent A (SIGKILL) while SAP runs `during` for its unit; returns the
/// customers SAP has afterwards under the create's name.
async fn kill_mid_unit(during: &str) -> Result<Vec<String>> {
    let dir = tempfile::tempdir()?;
    let sim: Arc<dyn SapSystem> = Arc::new(Simulator::open(
        &dir.path().join("sim.db"),
        SimOptions::default(),
    )?);
    let gated = GatedSystem::new(Arc::clone(&sim), during);
    let sap = SoapSap::start(Arc::new(gated.clone())).await?;
    let relay = TestRelay::start(json!({"owner_hold_secs": 1})).await?;
    let client = Client::new(&relay, Some(API_KEY));
    let mut agent_a = start_agent_a(dir.path(), &relay.ws_url(), &sap.url())?;
    client.wait_agents("SIM", 1).await?;

    let name = format!("Killed in {}", &during[..during.len().min(20)]);
    let accepted = client
        .post(
            "/v1/systems/SIM/transactions",
            &create_customer_unit(&name, "Killweg 9"),
            &[
                ("idempotency-key", "\"issue-15-kill\""),
                ("prefer", "respond-async"),
            ],
        )
        .await?;
    ensure!(accepted.status == 202, "submit: {}", accepted.body);
    let location = accepted.header("location").context("Location")?;

    // A's unit is in SAP, held in `during`; B comes online; A dies.
    gated.wait_held().await?;
    let agent_b = TestAgent::start(&relay, "agent-b", dir.path(), sap.backend()?, ALLOW, 4)?;
    client.wait_agents("SIM", 2).await?;
    agent_a.0.kill().context("kill -9 agent A")?;
    agent_a.0.wait()?;

    // The SOAP server finishes the dead agent's request.
    gated.release();
    gated.wait_finished(during, 1).await?;

    let done = client.poll(&location).await?;
    let customers = customers_named(sim.as_ref(), &name).await?;
    println!(
        "kill -9 during {during}: {} {}; customers {customers:?}; {CREATE} ran {} times, {COMMIT} {}",
        done.status,
        done.body,
        gated.calls(CREATE),
        gated.calls(COMMIT)
    );
    ensure!(
        done.status == 502
            && done.body["type"]
                .as_str()
                .is_some_and(|t| t.ends_with("/problems/outcome-unknown")),
        "B got the unit in doubt and must answer OUTCOME_UNKNOWN: {} {}",
        done.status,
        done.body
    );
    ensure!(
        gated.calls(CREATE) == 1 && gated.succeeded(CREATE) == 1,
        "{CREATE} must run once, and succeed: ran {} times, {} without error",
        gated.calls(CREATE),
        gated.succeeded(CREATE)
    );
    agent_b.stop().await?;
    relay.stop().await?;
    Ok(customers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_during_the_bapi_creates_nothing_and_b_does_not_rerun() -> Result<()> {
    let customers = kill_mid_unit(CREATE).await?;
    ensure!(
        customers.is_empty(),
        "A died before its commit; nothing may be committed: {customers:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_during_the_commit_creates_one_and_b_does_not_rerun() -> Result<()> {
    let customers = kill_mid_unit(COMMIT).await?;
    ensure!(
        customers.len() == 1,
        "A's commit reached SAP, which finishes it: exactly one customer, got {customers:?}"
    );
    Ok(())
}
