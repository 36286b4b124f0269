//! Issue 15's two-agent duplicate, end to end: agents A and B serve `SIM` through
//! the SOAP-RFC backend against one SOAP server in front of one simulator (SOAP
//! keeps no record of committed TIDs, as real SAP over SOAP does). A client creates
//! a customer in a unit of work with an `Idempotency-Key`; A takes it, and A's
//! WebSocket to the relay (through a [`CutProxy`]) is cut while the unit runs in
//! SAP — during the BAPI, or during the commit. A stays up and finishes the unit.
//!
//! SAP must gain exactly one customer, and the client's final answer must be the
//! real success (A came back within the relay's owner hold and answered from its
//! journal) or `502` outcome-unknown (A stayed away past the hold, so B got the
//! unit in doubt and, with no TID record to ask, answered `OUTCOME_UNKNOWN`) —
//! never a second customer. The relay before wire protocol 2 redelivered the unit
//! to B at once, and B ran it again.
//!
//! `a_commit_b_finds_by_its_tid_is_a_success` is the same cut on a system with a
//! TID record (both agents on the embedded simulator): B finds A's commit by its
//! TID and the client gets the success.

use std::sync::Arc;

use anyhow::{Context, Result, bail, ensure};
use sapbridge_sap::SapSystem;
use sapbridge_sap::sim::{SimOptions, Simulator};
use sapbridge_tests::{
    API_KEY, Client, CutProxy, DEADLINE, GatedSystem, Reply, SoapSap, TestAgent, TestRelay,
    agents_of, create_customer_unit, customers_named,
};
use serde_json::{Value, json};

const ALLOW: &[&str] = &["BAPI_CUSTOMER_*", "BAPI_TRANSACTION_*"];
const CREATE: &str = "BAPI_CUSTOMER_CREATEFROMDATA1";
const COMMIT: &str = "BAPI_TRANSACTION_COMMIT";

/// Where in the unit A's connection is cut: while SAP runs this function.
#[derive(Debug, Clone, Copy)]
enum CutDuring {
    Bapi,
    Commit,
}

impl CutDuring {
    fn function(self) -> &'static str {
        match self {
            Self::Bapi => CREATE,
            Self::Commit => COMMIT,
        }
    }
}

/// Whether A reconnects within the relay's owner hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AgentA {
    /// A's connection comes back at once (the relay's default hold of 60 s).
    Returns,
    /// A stays cut off past a hold of 1 s: B gets the unit in doubt.
    StaysAway,
}

/// The session id of `agent` in a `GET /v1/systems` body, if it is connected.
fn session_of(body: &Value, agent: &str) -> Option<String> {
    agents_of(body, "SIM")
        .iter()
        .find(|a| a["agent_id"] == agent)
        .and_then(|a| a["session_id"].as_str().map(str::to_owned))
}

/// Polls `GET /v1/systems` until `done` holds for its body.
async fn wait_systems(client: &Client, what: &str, done: impl Fn(&Value) -> bool) -> Result<()> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let reply = client.get("/v1/systems").await?;
        if done(&reply.body) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{what}: not within {DEADLINE:?}: {}", reply.body);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn is_outcome_unknown(reply: &Reply) -> bool {
    reply.status == 502
        && reply.body["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("/problems/outcome-unknown"))
}

/// Runs the case and checks SAP gained exactly one customer; returns the client's
/// final answer.
async fn cut_mid_unit(during: CutDuring, a: AgentA) -> Result<Reply> {
    let dir = tempfile::tempdir()?;
    let sim: Arc<dyn SapSystem> = Arc::new(Simulator::open(
        &dir.path().join("sim.db"),
        SimOptions::default(),
    )?);
    let gated = GatedSystem::new(Arc::clone(&sim), during.function());
    let sap = SoapSap::start(Arc::new(gated.clone())).await?;
    let relay = TestRelay::start(match a {
        AgentA::Returns => json!({}),
        AgentA::StaysAway => json!({"owner_hold_secs": 1}),
    })
    .await?;
    let client = Client::new(&relay, Some(API_KEY));
    let proxy = CutProxy::start(relay.addr).await?;
    let agent_a = TestAgent::start_via(
        &proxy.ws_url(),
        "agent-a",
        dir.path(),
        sap.backend()?,
        ALLOW,
        4,
    )?;
    client.wait_agents("SIM", 1).await?;

    let name = format!("Zweimal {during:?} {a:?}");
    ensure!(customers_named(sim.as_ref(), &name).await?.is_empty());
    let body = create_customer_unit(&name, "Zweiweg 2");
    let key = [("idempotency-key", "\"issue-15-create\"")];
    let accepted = client
        .post(
            "/v1/systems/SIM/transactions",
            &body,
            &[key[0], ("prefer", "respond-async")],
        )
        .await?;
    ensure!(accepted.status == 202, "submit: {}", accepted.body);
    let location = accepted.header("location").context("Location")?;

    // A's unit is in SAP, held in the BAPI or in the commit. B comes online.
    gated.wait_held().await?;
    let agent_b = TestAgent::start(&relay, "agent-b", dir.path(), sap.backend()?, ALLOW, 4)?;
    let systems = client.wait_agents("SIM", 2).await?;
    let first_session = session_of(&systems, "agent-a").context("agent-a's session")?;

    // Cut A's WebSocket mid-unit; A itself stays up.
    if a == AgentA::StaysAway {
        proxy.close();
    }
    ensure!(proxy.cut() == 1, "agent-a had one connection to cut");
    match a {
        AgentA::Returns => {
            wait_systems(&client, "agent-a back on a new session", |body| {
                agents_of(body, "SIM").len() == 2
                    && session_of(body, "agent-a").is_some_and(|s| s != first_session)
            })
            .await?;
        }
        AgentA::StaysAway => {
            wait_systems(&client, "agent-a gone", |body| {
                session_of(body, "agent-a").is_none()
            })
            .await?;
        }
    }

    // SAP finishes A's call; A goes on to the end of its unit and commits (its
    // SOAP connection was never cut).
    gated.release();
    gated.wait_finished(COMMIT, 1).await?;
    let done = client.poll(&location).await?;

    // A retry with the same key (as a workflow engine retries) changes nothing.
    let again = client
        .post(
            "/v1/systems/SIM/transactions",
            &body,
            &[key[0], ("prefer", "wait=5")],
        )
        .await?;
    ensure!(
        again.status == done.status,
        "the retry answered {} after {}: {}",
        again.status,
        done.status,
        again.body
    );

    let customers = customers_named(sim.as_ref(), &name).await?;
    println!(
        "cut during {during:?}, agent-a {a:?}: {} {}; customers {customers:?}; {CREATE} ran {} times, {COMMIT} {}",
        done.status,
        done.body,
        gated.calls(CREATE),
        gated.calls(COMMIT)
    );
    ensure!(
        customers.len() == 1,
        "one create must give one customer, SAP has {customers:?} (answer {} {})",
        done.status,
        done.body
    );
    ensure!(
        gated.calls(CREATE) == 1 && gated.succeeded(CREATE) == 1,
        "{CREATE} must run once, and succeed: ran {} times, {} without error",
        gated.calls(CREATE),
        gated.succeeded(CREATE)
    );
    if a == AgentA::Returns {
        // A's journal knows the unit: the relay gave it back to A, which answers.
        ensure!(
            done.status == 200 && done.body["agent"] == "agent-a",
            "agent-a came back within the hold and must answer: {} {}",
            done.status,
            done.body
        );
    }
    if done.status == 200 || done.status == 201 {
        ensure!(done.body["committed"] == true, "{}", done.body);
        ensure!(
            done.body["results"][0]["result"]["CUSTOMERNO"] == customers[0].as_str(),
            "the answer names another customer than SAP has ({customers:?}): {}",
            done.body
        );
    } else {
        ensure!(
            is_outcome_unknown(&done),
            "the answer is neither the success nor outcome-unknown: {} {}",
            done.status,
            done.body
        );
    }

    agent_b.stop().await?;
    agent_a.stop().await?;
    relay.stop().await?;
    Ok(done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_during_the_bapi_and_agent_a_returns() -> Result<()> {
    cut_mid_unit(CutDuring::Bapi, AgentA::Returns).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_during_the_commit_and_agent_a_returns() -> Result<()> {
    cut_mid_unit(CutDuring::Commit, AgentA::Returns).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_during_the_bapi_and_b_gets_it_in_doubt() -> Result<()> {
    let done = cut_mid_unit(CutDuring::Bapi, AgentA::StaysAway).await?;
    ensure!(
        is_outcome_unknown(&done),
        "B must answer OUTCOME_UNKNOWN: {} {}",
        done.status,
        done.body
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_during_the_commit_and_b_gets_it_in_doubt() -> Result<()> {
    let done = cut_mid_unit(CutDuring::Commit, AgentA::StaysAway).await?;
    ensure!(
        is_outcome_unknown(&done),
        "B must answer OUTCOME_UNKNOWN: {} {}",
        done.status,
        done.body
    );
    Ok(())
}

/// The same cut on a system that keeps a TID record (the embedded simulator, one
/// SAP system for both agents), with A's commit done before B sees the unit: A
/// commits while cut off and stays away past the owner hold, so its outcome never
/// arrives. B gets the unit in doubt; its journal never saw it and SAP says the
/// TID committed, so B reports it committed without the calls' results (only A's
/// journal has them). The client must get the success, judged by the commit: the
/// relay used to answer 422 (rolled back) because the results were missing,
/// although SAP had the customer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_b_finds_by_its_tid_is_a_success() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let sim: Arc<dyn SapSystem> = Arc::new(Simulator::open(
        &dir.path().join("sim.db"),
        SimOptions::default(),
    )?);
    let gated = GatedSystem::new(Arc::clone(&sim), COMMIT);
    let relay = TestRelay::start(json!({"owner_hold_secs": 1})).await?;
    let client = Client::new(&relay, Some(API_KEY));
    let proxy = CutProxy::start(relay.addr).await?;
    let agent_a = TestAgent::start_via(
        &proxy.ws_url(),
        "agent-a",
        dir.path(),
        Arc::new(gated.clone()),
        ALLOW,
        4,
    )?;
    client.wait_agents("SIM", 1).await?;

    let name = "Einmal TID";
    let accepted = client
        .post(
            "/v1/systems/SIM/transactions",
            &create_customer_unit(name, "Zweiweg 2"),
            &[
                ("idempotency-key", "\"issue-15-tid\""),
                ("prefer", "respond-async"),
            ],
        )
        .await?;
    ensure!(accepted.status == 202, "submit: {}", accepted.body);
    let location = accepted.header("location").context("Location")?;

    // A is in the commit; its connection is cut and stays cut.
    gated.wait_held().await?;
    proxy.close();
    ensure!(proxy.cut() == 1, "agent-a had one connection to cut");
    wait_systems(&client, "agent-a gone", |body| {
        session_of(body, "agent-a").is_none()
    })
    .await?;
    // SAP commits A's unit (with its TID); the outcome cannot reach the relay.
    gated.release();
    gated.wait_finished(COMMIT, 1).await?;
    let customers = customers_named(sim.as_ref(), name).await?;
    ensure!(
        customers.len() == 1,
        "A committed one customer: {customers:?}"
    );

    // B comes online after the hold and gets the unit in doubt.
    let agent_b = TestAgent::start(&relay, "agent-b", dir.path(), Arc::clone(&sim), ALLOW, 4)?;
    let done = client.poll(&location).await?;
    println!(
        "committed by A, answered by B: {} {}",
        done.status, done.body
    );
    ensure!(
        done.status == 200 && done.body["committed"] == true && done.body["agent"] == "agent-b",
        "SAP committed the unit: the answer must be the success, from agent-b: {} {}",
        done.status,
        done.body
    );
    ensure!(
        gated.calls(CREATE) == 1 && customers_named(sim.as_ref(), name).await? == customers,
        "B must not run the unit again: {CREATE} ran {} times",
        gated.calls(CREATE)
    );

    agent_b.stop().await?;
    agent_a.stop().await?;
    relay.stop().await
}
