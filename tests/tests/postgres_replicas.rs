//! Several relay replicas on one PostgreSQL database, and a relay whose database
//! restarts under it. Each test uses a database of its own (or a private server);
//! without PostgreSQL they say so on stderr and pass, except under `CI=true`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use sapbridge_sap::SapSystem;
use sapbridge_tests::postgres::{PgServer, TestDatabase, skip_or_fail};
use sapbridge_tests::{API_KEY, Client, DEADLINE, TestAgent, TestRelay, simulator};
use serde_json::{Value, json};

/// The relay settings for the PostgreSQL store at `url`.
fn on_postgres(url: &str) -> Value {
    json!({"queue": {"store": "postgres", "url": url}})
}

/// A test database, or `None` after reporting the skip.
async fn database(test: &str) -> Option<TestDatabase> {
    match TestDatabase::create().await {
        Ok(db) => Some(db),
        Err(error) => {
            skip_or_fail(test, &format!("{error:#}"));
            None
        }
    }
}

fn create_body(name: &str) -> Value {
    json!({
        "calls": [{
            "function": "BAPI_CUSTOMER_CREATEFROMDATA1",
            "parameters": {
                "PI_COMPANYDATA": {
                    "NAME": name, "CITY": "Walldorf", "POSTL_COD1": "69190",
                    "STREET": "Replicaweg 1", "COUNTRY": "DE", "LANGU": "E", "CURRENCY": "EUR"
                },
                "PI_COPYREFERENCE": {
                    "SALESORG": "1000", "DISTR_CHAN": "10", "DIVISION": "00",
                    "REF_CUSTMR": "0000001000"
                }
            }
        }]
    })
}

/// How many customers named `name` the simulator holds.
async fn customers_named(sim: &Arc<dyn SapSystem>, name: &str) -> Result<usize> {
    let mut session = sim.connect().await.map_err(|e| anyhow!("{e:?}"))?;
    let params = json!({
        "QUERY_TABLE": "KNA1",
        "DELIMITER": "|",
        "FIELDS": [{"FIELDNAME": "KUNNR"}],
        "OPTIONS": [{"TEXT": format!("NAME1 = '{name}'")}],
    });
    let out = session
        .call("RFC_READ_TABLE", params.as_object().expect("object"))
        .await
        .map_err(|e| anyhow!("{e:?}"))?;
    Ok(out["DATA"].as_array().map_or(0, Vec::len))
}

/// A call submitted on replica A runs on an agent connected to replica B and is
/// answered on A without waiting for a poll; both list the agent; either replica
/// reads and cancels any call; one idempotency key sent to both at once runs
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_calls_wake_ups_and_idempotency_keys() -> Result<()> {
    let Some(db) = database("replicas_share_calls_wake_ups_and_idempotency_keys").await else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let a = TestRelay::start(on_postgres(db.url())).await?;
    let b = TestRelay::start(on_postgres(db.url())).await?;
    let sim = simulator(dir.path(), Duration::ZERO)?;
    let allow = ["STFC_CONNECTION", "BAPI_CUSTOMER_*", "BAPI_TRANSACTION_*"];
    let agent = TestAgent::start(&b, "agent-b", dir.path(), Arc::clone(&sim), &allow, 8)?;
    let on_a = Client::new(&a, Some(API_KEY));
    let on_b = Client::new(&b, Some(API_KEY));
    on_b.wait_agents("SIM", 1).await?;
    // Listed on A too (published through the database).
    let listed = on_a.wait_agents("SIM", 1).await?;
    ensure!(
        sapbridge_tests::agents_of(&listed, "SIM")[0]["agent_id"] == "agent-b",
        "{listed}"
    );

    // The session on B sleeps until a wake-up (its poll is 2 s) and the waiter on A
    // until the call ends (its poll is 1 s): five calls in a row take far less than
    // one poll each only when the notifications cross.
    let started = Instant::now();
    let mut last = Value::Null;
    for i in 0..5 {
        let reply = on_a
            .call(
                "SIM",
                "STFC_CONNECTION",
                &json!({"REQUTEXT": format!("hop {i}")}),
            )
            .await?;
        ensure!(
            reply.status == 200,
            "call {i}: {} {}",
            reply.status,
            reply.body
        );
        last = reply.body;
    }
    let took = started.elapsed();
    ensure!(
        took < Duration::from_secs(3),
        "5 calls across replicas took {took:?}: the wake-ups did not cross"
    );
    let id = last["id"].as_str().expect("call id").to_owned();
    let read_on_b = on_b.get(&format!("/v1/calls/{id}")).await?;
    ensure!(read_on_b.status == 200, "{}", read_on_b.body);
    ensure!(read_on_b.body["id"] == last["id"], "{}", read_on_b.body);

    // A call no agent serves (OTHER): submitted on A, cancelled on B, gone on A.
    let queued = on_a
        .call_async("OTHER", "STFC_CONNECTION", &json!({}), &[])
        .await?;
    ensure!(queued.status == 202, "{}", queued.body);
    let location = queued.header("location").expect("Location");
    let cancelled = on_b.send("DELETE", &location, None, &[]).await?;
    ensure!(cancelled.status == 200, "{}", cancelled.body);
    let after = on_a.get(&location).await?;
    ensure!(after.status == 410, "{} {}", after.status, after.body);

    // The same key on both replicas at once: one call, one customer.
    let name = format!("Replica Key {}", std::process::id());
    let body = create_body(&name);
    let headers = [("idempotency-key", "replicas-1"), ("prefer", "wait=20")];
    let path = "/v1/systems/SIM/transactions";
    let (first, second) = tokio::join!(
        on_a.post(path, &body, &headers),
        on_b.post(path, &body, &headers)
    );
    let (first, second) = (first?, second?);
    ensure!(first.status == 200, "{}", first.body);
    ensure!(second.status == 200, "{}", second.body);
    ensure!(
        first.body["id"] == second.body["id"],
        "{} / {}",
        first.body,
        second.body
    );
    ensure!(
        customers_named(&sim, &name).await? == 1,
        "the key ran twice"
    );

    agent.stop().await?;
    a.stop().await?;
    b.stop().await
}

/// The database restarts (killed as a crash would) under a running relay: while
/// it is down the relay says so and refuses new calls; then the calls accepted
/// before are still there, the relay reconnects, serves reads and runs the queued
/// call once an agent comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_outlives_a_database_restart() -> Result<()> {
    const TEST: &str = "a_relay_outlives_a_database_restart";
    let server = match tokio::task::spawn_blocking(PgServer::start).await? {
        Ok(server) => Arc::new(server),
        Err(error) => {
            skip_or_fail(TEST, &format!("no private PostgreSQL server: {error:#}"));
            return Ok(());
        }
    };
    let dir = tempfile::tempdir()?;
    let relay = TestRelay::start(on_postgres(&server.url("postgres"))).await?;
    let client = Client::new(&relay, Some(API_KEY));
    let queued = client
        .call_async(
            "SIM",
            "STFC_CONNECTION",
            &json!({"REQUTEXT": "before"}),
            &[],
        )
        .await?;
    ensure!(queued.status == 202, "{}", queued.body);
    let location = queued.header("location").expect("Location");

    // Down: readiness says so, a new call is refused with a server error (no
    // hang, no panic).
    let down = Arc::clone(&server);
    tokio::task::spawn_blocking(move || down.kill()).await??;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let ready = client.get("/readyz").await?;
        if ready.status == 503 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "readyz {} with the database down",
            ready.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = client
        .call_async("SIM", "STFC_CONNECTION", &json!({}), &[])
        .await?;
    ensure!(refused.status >= 500, "{} {}", refused.status, refused.body);
    let up = Arc::clone(&server);
    tokio::task::spawn_blocking(move || up.start_again()).await??;

    // Pooled connections broke with the server: the first requests may fail, then
    // the relay answers again.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let ready = client.get("/readyz").await?;
        let read = client.get(&location).await?;
        if ready.status == 200 && read.status == 202 {
            ensure!(read.body["status"] == "queued", "{}", read.body);
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "no answer after the restart: readyz {} call {} {}",
            ready.status,
            read.status,
            read.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sim = simulator(dir.path(), Duration::ZERO)?;
    let agent = TestAgent::start(&relay, "agent-1", dir.path(), sim, &["STFC_CONNECTION"], 4)?;
    let done = client.poll(&location).await?;
    ensure!(done.status == 200, "{}", done.body);
    ensure!(done.body["status"] == "succeeded", "{}", done.body);
    agent.stop().await?;
    relay.stop().await
}
