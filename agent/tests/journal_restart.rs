//! The execution journal across agent restarts, against a fake relay over real
//! loopback WebSockets: an outcome the relay never acknowledged is re-sent by the
//! next agent process on the same data directory, a redelivery is answered from the
//! journal without calling SAP, and an acknowledged outcome is not re-sent.

mod support;

use anyhow::bail;
use sapbridge_proto::{AgentMessage, Outcome, RelayMessage};
use support::{Agent, FakeRelay, FakeSap, config, unit};

const CREATE: &str = "BAPI_CUSTOMER_CREATEFROMDATA1";

#[tokio::test]
async fn a_restarted_agent_resends_the_unacked_outcome_and_never_runs_it_again()
-> anyhow::Result<()> {
    let mut relay = FakeRelay::start().await?;
    let sap = FakeSap::default();
    let first_config = config(&relay.url, &["BAPI_CUSTOMER_*", "STFC_CONNECTION"], 2);
    let data_dir = first_config.data_dir.clone();

    // First process: runs the unit, the outcome goes out, the ack never comes.
    let agent = Agent::start(first_config, &sap);
    let mut conn = relay.conn().await?;
    conn.handshake(15).await?;
    conn.send(RelayMessage::Work {
        unit: unit("c_1", CREATE),
    })
    .await?;
    let (call_id, attempt, outcome) = conn.outcome_unacked().await?;
    assert_eq!((call_id.as_str(), attempt), ("c_1", 1));
    assert!(matches!(outcome, Outcome::Completed { .. }), "{outcome:?}");
    drop(conn);
    // The agent reconnects; it is stopped before the relay welcomes it.
    let stale = relay.conn().await?;
    agent.shutdown.cancel();
    agent.join().await?;
    drop(stale);
    assert_eq!(sap.calls(), [CREATE]);

    // Second process on the same data directory: the outcome is re-sent at once.
    let mut second_config = config(&relay.url, &["BAPI_CUSTOMER_*", "STFC_CONNECTION"], 2);
    second_config.data_dir = data_dir.clone();
    let agent = Agent::start(second_config, &sap);
    let mut conn = relay.conn().await?;
    conn.handshake(15).await?;
    let (call_id, attempt, resent) = conn.outcome_unacked().await?;
    assert_eq!((call_id.as_str(), attempt), ("c_1", 1));
    assert_eq!(resent, outcome);

    // The relay redelivers the unit anyway: answered from the journal.
    let mut again = unit("c_1", CREATE);
    again.attempt = 2;
    conn.send(RelayMessage::Work { unit: again }).await?;
    let (call_id, attempt, answered) = conn.outcome().await?;
    assert_eq!((call_id.as_str(), attempt), ("c_1", 2));
    assert_eq!(answered, outcome);
    assert_eq!(sap.calls(), [CREATE], "SAP was called once in all");
    agent.shutdown.cancel();
    assert_eq!(conn.recv().await?, AgentMessage::Drain);
    agent.join().await?;

    // Third process: the ack was journaled, nothing is re-sent; new work runs.
    let mut third_config = config(&relay.url, &["BAPI_CUSTOMER_*", "STFC_CONNECTION"], 2);
    third_config.data_dir = data_dir.clone();
    let agent = Agent::start(third_config, &sap);
    let mut conn = relay.conn().await?;
    conn.handshake(15).await?;
    conn.send(RelayMessage::Work {
        unit: unit("c_2", "STFC_CONNECTION"),
    })
    .await?;
    let (call_id, _, _) = conn.outcome().await?;
    if call_id != "c_2" {
        bail!("expected only the new unit's outcome, got {call_id}");
    }
    agent.shutdown.cancel();
    agent.join().await?;
    assert!(data_dir.join("journal.db").exists());
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

#[tokio::test]
async fn an_unusable_journal_stops_the_agent_with_a_clear_error() -> anyhow::Result<()> {
    let relay = FakeRelay::start().await?;
    let config = config(&relay.url, &["*"], 1);
    std::fs::write(
        config.data_dir.join("journal.db"),
        b"not a database, just some text that is long enough to have a header",
    )?;
    let data_dir = config.data_dir.clone();
    let agent = Agent::start(config, &FakeSap::default());
    let error = agent.join().await.expect_err("the agent must not start");
    let message = error.to_string();
    assert!(message.contains("journal.db"), "{message}");
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}
