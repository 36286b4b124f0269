//! End to end over real sockets: a relay and agents in this process, the simulator as
//! `SIM`, the HTTP API driven with a real HTTP client.

use std::time::Duration;

use anyhow::Result;
use sapbridge_tests::{
    API_KEY, Client, DEADLINE, SCOPED_KEY, TestAgent, TestRelay, agents_of, simulator,
};
use serde_json::{Value, json};

const ALL: &[&str] = &["*"];

struct Stack {
    relay: TestRelay,
    agent: TestAgent,
    client: Client,
    _dir: tempfile::TempDir,
}

async fn stack(allow: &[&str]) -> Result<Stack> {
    let dir = tempfile::tempdir()?;
    let relay = TestRelay::start(json!({})).await?;
    let sim = simulator(dir.path(), Duration::ZERO)?;
    let agent = TestAgent::start(&relay, "agent-1", dir.path(), sim, allow, 8)?;
    let client = Client::new(&relay, Some(API_KEY));
    client.wait_agents("SIM", 1).await?;
    Ok(Stack {
        relay,
        agent,
        client,
        _dir: dir,
    })
}

impl Stack {
    async fn stop(self) -> Result<()> {
        self.agent.stop().await?;
        self.relay.stop().await
    }
}

fn assert_problem(reply: &sapbridge_tests::Reply, status: u16) {
    assert_eq!(reply.status, status, "body: {}", reply.body);
    let ct = reply.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/problem+json"),
        "content-type {ct}"
    );
    assert_eq!(reply.body["status"], status);
    assert!(reply.body["type"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(reply.body["title"].as_str().is_some_and(|t| !t.is_empty()));
}

#[tokio::test]
async fn sync_call_answers_200_with_the_result() -> Result<()> {
    let s = stack(ALL).await?;
    let reply = s
        .client
        .call("SIM", "STFC_CONNECTION", &json!({"REQUTEXT": "hello"}))
        .await?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["status"], "succeeded");
    assert_eq!(reply.body["system"], "SIM");
    assert_eq!(reply.body["function"], "STFC_CONNECTION");
    assert_eq!(reply.body["result"]["ECHOTEXT"], "hello");
    assert!(reply.body["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(reply.body["submitted_at"].is_string());
    assert!(reply.body["completed_at"].is_string());
    // Lower-case function names name the same function.
    let reply = s
        .client
        .call("SIM", "stfc_connection", &json!({"REQUTEXT": "lower"}))
        .await?;
    assert_eq!(reply.body["result"]["ECHOTEXT"], "lower");
    s.stop().await
}

#[tokio::test]
async fn respond_async_answers_202_and_location_answers_200_later() -> Result<()> {
    let s = stack(ALL).await?;
    let reply = s
        .client
        .call_async("SIM", "STFC_CONNECTION", &json!({"REQUTEXT": "later"}), &[])
        .await?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert!(reply.header("retry-after").is_some());
    let location = reply.header("location").expect("Location header");
    assert!(location.starts_with("/v1/calls/"), "{location}");
    let done = s.client.poll(&location).await?;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["result"]["ECHOTEXT"], "later");
    // The outcome stays readable.
    let again = s.client.get(&location).await?;
    assert_eq!(again.body["result"]["ECHOTEXT"], "later");
    // `respond-async` is 202 at once, even when the agent is quick enough to finish
    // the call before the answer goes out (a connected agent with free credits gets
    // it in the enqueue itself).
    for i in 0..200 {
        let reply = s
            .client
            .call_async("SIM", "STFC_CONNECTION", &json!({"REQUTEXT": i}), &[])
            .await?;
        assert_eq!(reply.status, 202, "call {i}: {}", reply.body);
        assert!(reply.header("location").is_some());
    }
    s.stop().await
}

#[tokio::test]
async fn a_call_waits_for_an_agent_that_comes_later() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let relay = TestRelay::start(json!({})).await?;
    let client = Client::new(&relay, Some(API_KEY));
    let reply = client
        .call_async(
            "SIM",
            "STFC_CONNECTION",
            &json!({"REQUTEXT": "patience"}),
            &[],
        )
        .await?;
    assert_eq!(reply.status, 202);
    let location = reply.header("location").expect("Location");
    let queued = client.get(&location).await?;
    assert_eq!(queued.status, 202);
    assert_eq!(queued.body["status"], "queued");

    let sim = simulator(dir.path(), Duration::ZERO)?;
    let agent = TestAgent::start(&relay, "late-agent", dir.path(), sim, ALL, 8)?;
    let done = client.poll(&location).await?;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["result"]["ECHOTEXT"], "patience");
    agent.stop().await?;
    relay.stop().await
}

#[tokio::test]
async fn a_call_on_a_killed_agent_is_redelivered_to_another_agent() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // After the owner hold, another agent gets the call marked in doubt; it only
    // reads (STFC_CONNECTION), so the other agent runs it again.
    let relay = TestRelay::start(json!({"owner_hold_secs": 1})).await?;
    let client = Client::new(&relay, Some(API_KEY));
    // The first agent's SAP is slow, so the call is surely in flight when it dies.
    let slow = simulator(dir.path(), Duration::from_secs(30))?;
    let first = TestAgent::start(&relay, "doomed", dir.path(), slow, ALL, 8)?;
    client.wait_agents("SIM", 1).await?;
    let reply = client
        .call_async(
            "SIM",
            "STFC_CONNECTION",
            &json!({"REQUTEXT": "survivor"}),
            &[],
        )
        .await?;
    let location = reply.header("location").expect("Location");
    // Wait until the call is running on the first agent.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let r = client.get(&location).await?;
        if r.body["status"] == "running" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never running: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.kill().await;
    client.wait_agents("SIM", 0).await?;

    let fast = simulator(dir.path(), Duration::ZERO)?;
    let second = TestAgent::start(&relay, "rescuer", dir.path(), fast, ALL, 8)?;
    let done = client.poll(&location).await?;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["result"]["ECHOTEXT"], "survivor");
    assert_eq!(done.body["agent"], "rescuer");
    second.stop().await?;
    relay.stop().await
}

#[tokio::test]
async fn the_agents_allowlist_denies_with_403_not_allowed() -> Result<()> {
    let s = stack(&["STFC_CONNECTION", "BAPI_CUSTOMER_*"]).await?;
    let ok = s
        .client
        .call("SIM", "STFC_CONNECTION", &json!({"REQUTEXT": "x"}))
        .await?;
    assert_eq!(ok.status, 200);
    let denied = s
        .client
        .call("SIM", "RFC_READ_TABLE", &json!({"QUERY_TABLE": "KNA1"}))
        .await?;
    assert_problem(&denied, 403);
    assert!(
        denied.body["type"]
            .as_str()
            .unwrap_or("")
            .ends_with("not-allowed"),
        "{}",
        denied.body
    );
    // A prefix entry allows the whole family.
    let prefixed = s
        .client
        .call(
            "SIM",
            "BAPI_CUSTOMER_GETDETAIL2",
            &json!({"CUSTOMERNO": "1000"}),
        )
        .await?;
    assert_eq!(prefixed.status, 200, "{}", prefixed.body);
    s.stop().await
}

#[tokio::test]
async fn keys_are_checked_and_scoped() -> Result<()> {
    let s = stack(ALL).await?;
    let anonymous = Client::new(&s.relay, None);
    let r = anonymous.call("SIM", "STFC_CONNECTION", &json!({})).await?;
    assert_problem(&r, 401);
    assert!(
        r.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer"))
    );
    let wrong = Client::new(&s.relay, Some("not-a-key"));
    let r = wrong.call("SIM", "STFC_CONNECTION", &json!({})).await?;
    assert_problem(&r, 401);
    let scoped = Client::new(&s.relay, Some(SCOPED_KEY));
    let r = scoped.call("SIM", "STFC_CONNECTION", &json!({})).await?;
    assert_problem(&r, 403);
    // X-API-Key works as well as Bearer.
    let r = anonymous
        .send(
            "POST",
            "/v1/systems/SIM/functions/STFC_CONNECTION",
            Some(br#"{"REQUTEXT":"x-api-key"}"#.to_vec()),
            &[("x-api-key", API_KEY), ("prefer", "wait=30")],
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    s.stop().await
}

#[tokio::test]
async fn bad_requests_get_problem_json() -> Result<()> {
    let s = stack(ALL).await?;
    // Oversized body.
    let big = vec![b'a'; 5 * 1024 * 1024];
    let r = s
        .client
        .send(
            "POST",
            "/v1/systems/SIM/functions/STFC_CONNECTION",
            Some(big),
            &[],
        )
        .await?;
    assert_problem(&r, 413);
    // Malformed JSON.
    let r = s
        .client
        .send(
            "POST",
            "/v1/systems/SIM/functions/STFC_CONNECTION",
            Some(br#"{"REQUTEXT": "#.to_vec()),
            &[],
        )
        .await?;
    assert_problem(&r, 400);
    // Not an object.
    let r = s
        .client
        .call("SIM", "STFC_CONNECTION", &json!([1, 2]))
        .await?;
    assert_problem(&r, 400);
    // Unknown system.
    let r = s.client.call("NOPE", "STFC_CONNECTION", &json!({})).await?;
    assert_problem(&r, 404);
    // Unknown function: the simulator answers as SAP does.
    let r = s.client.call("SIM", "Z_DOES_NOT_EXIST", &json!({})).await?;
    assert_problem(&r, 422);
    assert_eq!(r.body["rfc_error"]["key"], "FU_NOT_FOUND", "{}", r.body);
    // Values that do not fit the function's interface: 400 before SAP runs
    // anything. (No simulated function imports a NUMC field, as on a real system;
    // NUMC with letters is rejected the same way, see the simulator's unit tests.)
    for params in [
        json!({"PI_PERSONALDATA": {"DATE_BIRTH": "19AB0101"}}),
        json!({"PI_COMPANYDATA": {"NAME": "x".repeat(41)}}),
        json!({"NO_SUCH_PARAMETER": "1"}),
    ] {
        let r = s
            .client
            .call("SIM", "BAPI_CUSTOMER_CREATEFROMDATA1", &params)
            .await?;
        assert_problem(&r, 400);
        assert_eq!(
            r.body["rfc_error"]["group"], "EXTERNAL_RUNTIME_FAILURE",
            "{}",
            r.body
        );
    }
    // Unknown call id.
    let r = s.client.get("/v1/calls/c_nonexistent").await?;
    assert_problem(&r, 404);
    s.stop().await
}

#[tokio::test]
async fn read_table_returns_the_seeded_customers() -> Result<()> {
    let s = stack(ALL).await?;
    let r = s
        .client
        .call(
            "SIM",
            "RFC_READ_TABLE",
            &json!({"QUERY_TABLE": "KNA1", "DELIMITER": "|", "FIELDS": [{"FIELDNAME": "KUNNR"}, {"FIELDNAME": "LAND1"}]}),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let rows = r.body["result"]["DATA"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(rows.len() >= 5, "{}", r.body);
    let first = rows[0]["WA"].as_str().unwrap_or_default();
    assert_eq!(first.split('|').count(), 2, "{first}");
    s.stop().await
}

#[tokio::test]
async fn a_queued_call_can_be_cancelled_but_not_a_finished_one() -> Result<()> {
    let relay = TestRelay::start(json!({})).await?;
    let client = Client::new(&relay, Some(API_KEY));
    let r = client
        .call_async("SIM", "STFC_CONNECTION", &json!({}), &[])
        .await?;
    let location = r.header("location").expect("Location");
    let cancelled = client.send("DELETE", &location, None, &[]).await?;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    let after = client.get(&location).await?;
    assert_ne!(after.status, 202, "{}", after.body);
    assert_ne!(after.status, 200, "{}", after.body);
    let again = client.send("DELETE", &location, None, &[]).await?;
    assert_problem(&again, 409);
    relay.stop().await
}

#[tokio::test]
async fn a_call_no_agent_takes_expires_with_504() -> Result<()> {
    let relay = TestRelay::start(json!({})).await?;
    let client = Client::new(&relay, Some(API_KEY));
    let r = client
        .call_async(
            "SIM",
            "STFC_CONNECTION",
            &json!({}),
            &[("sapbridge-queue-ttl", "1")],
        )
        .await?;
    let location = r.header("location").expect("Location");
    let done = client.poll(&location).await?;
    assert_problem(&done, 504);
    relay.stop().await
}

#[tokio::test]
async fn systems_lists_connected_agents() -> Result<()> {
    let s = stack(ALL).await?;
    let body = s.client.wait_agents("SIM", 1).await?;
    let agents = agents_of(&body, "SIM");
    assert_eq!(agents[0]["agent_id"], "agent-1", "{body}");
    let health = reqwest::get(format!("{}/healthz", s.relay.url())).await?;
    assert_eq!(health.status(), 200);
    let ready = reqwest::get(format!("{}/readyz", s.relay.url())).await?;
    assert_eq!(ready.status(), 200);
    let _: Value = body;
    s.stop().await
}

#[tokio::test]
async fn tables_have_an_allowlist_of_their_own() -> Result<()> {
    // The harness's agent allows every function but only table KNA1.
    let s = stack(ALL).await?;
    let read = |table: &str| json!({"QUERY_TABLE": table, "DELIMITER": "|", "FIELDS": [{"FIELDNAME": "MANDT"}]});
    let kna1 = s
        .client
        .call("SIM", "RFC_READ_TABLE", &read("KNA1"))
        .await?;
    assert_eq!(kna1.status, 200, "{}", kna1.body);
    let other = s
        .client
        .call("SIM", "RFC_READ_TABLE", &read("USR02"))
        .await?;
    assert_problem(&other, 403);
    assert!(
        other.body["type"]
            .as_str()
            .unwrap_or("")
            .ends_with("not-allowed"),
        "{}",
        other.body
    );
    assert!(
        other.body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("USR02")
            || other.body.to_string().contains("USR02"),
        "{}",
        other.body
    );
    let endpoint = s
        .client
        .get("/v1/systems/SIM/tables/USR02?fields=BNAME")
        .await?;
    assert_problem(&endpoint, 403);
    s.stop().await
}
