//! The agent against a fake relay over real loopback WebSockets: handshake, work
//! and acks, allowlist, credits, heartbeats, reconnects, drain, transactions.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::bail;
use sapbridge_proto::{
    AgentMessage, CallResult, CloseReason, CommitPolicy, ErrorGroup, FunctionCall, Outcome,
    RelayMessage,
};
use serde_json::json;
use support::{Agent, Event, FakeRelay, FakeSap, config, unit, within};
use tokio::sync::{Semaphore, mpsc};

fn echo(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Completed {
            results,
            transaction: None,
        } => match &results[..] {
            [CallResult::Ok(out)] => out["ECHOTEXT"].as_str().unwrap_or_default().to_owned(),
            other => panic!("unexpected results {other:?}"),
        },
        other => panic!("unexpected outcome {other:?}"),
    }
}

fn failed_group(outcome: &Outcome) -> ErrorGroup {
    match outcome {
        Outcome::Failed { error } => error.group,
        other => panic!("expected failure, got {other:?}"),
    }
}

#[tokio::test]
async fn hello_work_outcome_ack_and_graceful_close() -> anyhow::Result<()> {
    let mut relay = FakeRelay::start().await?;
    let sap = FakeSap::default();
    let agent = Agent::start(config(&relay.url, &["STFC_CONNECTION"], 3), &sap);

    let mut conn = relay.conn().await?;
    let hello = conn.handshake(15).await?;
    assert_eq!(hello.agent_id, "test-agent");
    assert_eq!(hello.agent_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(hello.systems, ["SIM"]);
    assert_eq!(hello.credits, 3);

    conn.send(RelayMessage::Work {
        unit: unit("c_1", "STFC_CONNECTION"),
    })
    .await?;
    let (call_id, attempt, outcome) = conn.outcome_unacked().await?;
    assert_eq!((call_id.as_str(), attempt), ("c_1", 1));
    assert_eq!(echo(&outcome), "hello c_1");
    conn.send(RelayMessage::Ack { call_id }).await?;

    agent.shutdown.cancel();
    assert_eq!(conn.recv().await?, AgentMessage::Drain);
    assert_eq!(
        conn.recv().await?,
        AgentMessage::Close {
            reason: CloseReason::ShuttingDown
        }
    );
    assert_eq!(conn.recv_any().await?, None, "then a WebSocket close frame");
    agent.join().await
}

#[tokio::test]
async fn allowlist_exact_prefix_and_deny_by_default() -> anyhow::Result<()> {
    let mut relay = FakeRelay::start().await?;
    let sap = FakeSap::default();
    let agent = Agent::start(
        config(&relay.url, &["STFC_CONNECTION", "BAPI_CUSTOMER_*"], 5),
        &sap,
    );
    let mut conn = relay.conn().await?;
    // One credit per unit sent below.
    assert_eq!(conn.handshake(15).await?.credits, 5);

    conn.send(RelayMessage::Work {
        unit: unit("exact", "STFC_CONNECTION"),
    })
    .await?;
    conn.send(RelayMessage::Work {
        unit: unit("prefix", "BAPI_CUSTOMER_GETDETAIL2"),
    })
    .await?;
    conn.send(RelayMessage::Work {
        unit: unit("denied", "RFC_READ_TABLE"),
    })
    .await?;
    conn.send(RelayMessage::Work {
        unit: unit("near-miss", "BAPI_CUSTOMERX"),
    })
    .await?;
    let mut unknown = unit("unknown-system", "STFC_CONNECTION");
    unknown.system = "PRD".into();
    conn.send(RelayMessage::Work { unit: unknown }).await?;

    let mut outcomes = std::collections::HashMap::new();
    for _ in 0..5 {
        let (call_id, _, outcome) = conn.outcome().await?;
        outcomes.insert(call_id, outcome);
    }
    assert!(matches!(outcomes["exact"], Outcome::Completed { .. }));
    assert!(matches!(outcomes["prefix"], Outcome::Completed { .. }));
    for denied in ["denied", "near-miss", "unknown-system"] {
        let Outcome::Failed { error } = &outcomes[denied] else {
            panic!("{denied} ran")
        };
        assert_eq!(error.group, ErrorGroup::NotAllowed, "{denied}");
        assert_eq!(error.key, "NOT_ALLOWED");
    }
    let Outcome::Failed { error } = &outcomes["denied"] else {
        unreachable!()
    };
    assert!(
        error.message.contains("RFC_READ_TABLE") && error.message.contains("SIM"),
        "{error}"
    );
    let mut calls = sap.calls();
    calls.sort();
    assert_eq!(
        calls,
        ["BAPI_CUSTOMER_GETDETAIL2", "STFC_CONNECTION"],
        "denied units never reach SAP"
    );

    agent.shutdown.cancel();
    agent.join().await
}

#[tokio::test]
async fn credits_bound_the_units_in_flight() -> anyhow::Result<()> {
    let mut relay = FakeRelay::start().await?;
    let gate = Arc::new(Semaphore::new(0));
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let sap = FakeSap {
        gate: Some(gate.clone()),
        started: Some(started_tx),
        ..Default::default()
    };
    let agent = Agent::start(config(&relay.url, &["*"], 1), &sap);
    let mut conn = relay.conn().await?;
    assert_eq!(conn.handshake(15).await?.credits, 1);

    // A relay that keeps to the credits: the second unit only after the first outcome.
    conn.send(RelayMessage::Work {
        unit: unit("c_1", "STFC_CONNECTION"),
    })
    .await?;
    within("first call", started.recv()).await?;
    gate.add_permits(1);
    assert_eq!(conn.outcome().await?.0, "c_1");
    conn.send(RelayMessage::Work {
        unit: unit("c_2", "STFC_CONNECTION"),
    })
    .await?;
    within("second call", started.recv()).await?;
    gate.add_permits(1);
    assert_eq!(conn.outcome().await?.0, "c_2");

    // A relay that breaks the credits: the unit beyond them closes the session and
    // never reaches SAP; the one within them runs and answers on the next session.
    conn.send(RelayMessage::Work {
        unit: unit("c_3", "STFC_CONNECTION"),
    })
    .await?;
    conn.send(RelayMessage::Work {
        unit: unit("c_4", "STFC_CONNECTION"),
    })
    .await?;
    within("third call", started.recv()).await?;
    match conn.recv().await? {
        AgentMessage::Close {
            reason: CloseReason::ProtocolError { detail },
        } => assert!(detail.contains("beyond the granted credits"), "{detail}"),
        other => bail!("expected a close, got {other:?}"),
    }
    let mut conn = relay.conn().await?;
    assert_eq!(conn.handshake(15).await?.credits, 0, "c_3 holds the slot");
    gate.add_permits(2);
    assert_eq!(conn.recv().await?, AgentMessage::Credits { credits: 1 });
    assert_eq!(conn.outcome().await?.0, "c_3");
    assert!(started.try_recv().is_err(), "c_4 never reached SAP");
    assert_eq!(sap.calls().len(), 3);
    assert_eq!(
        sap.max_running.load(Ordering::SeqCst),
        1,
        "never more in flight than credits"
    );

    agent.shutdown.cancel();
    agent.join().await
}

#[tokio::test]
async fn silent_relay_is_dropped_and_the_agent_reconnects() -> anyhow::Result<()> {
    let mut relay = FakeRelay::start().await?;
    let agent = Agent::start(config(&relay.url, &["*"], 2), &FakeSap::default());
    let mut conn = relay.conn().await?;
    assert_eq!(conn.handshake(1).await?.reconnects, 0, "the first session");
    // Read without answering: the agent heartbeats, hears nothing back, and gives up
    // after two intervals with a close reason.
    loop {
        match conn.recv_any().await? {
            Some(AgentMessage::Heartbeat) => continue,
            Some(AgentMessage::Close { reason }) => {
                assert_eq!(reason, CloseReason::HeartbeatTimeout);
                break;
            }
            other => bail!("unexpected {other:?}"),
        }
    }
    let mut second = relay.conn().await?;
    assert_eq!(
        second.handshake(15).await?.reconnects,
        1,
        "the hello counts the session before"
    );
    agent.shutdown.cancel();
    agent.join().await
}

#[tokio::test]
async fn dropped_socket_reconnects_and_resends_the_unacked_outcome() -> anyhow::Result<()> {
    let mut relay = FakeRelay::start().await?;
    let sap = FakeSap::default();
    let agent = Agent::start(config(&relay.url, &["*"], 2), &sap);

    let mut conn = relay.conn().await?;
    conn.handshake(15).await?;
    conn.send(RelayMessage::Work {
        unit: unit("c_1", "STFC_CONNECTION"),
    })
    .await?;
    let (_, _, outcome) = conn.outcome_unacked().await?;
    drop(conn); // gone before the ack

    let mut conn = relay.conn().await?;
    conn.handshake(15).await?;
    let (call_id, _, resent) = conn.outcome_unacked().await?;
    assert_eq!(call_id, "c_1");
    assert_eq!(resent, outcome);
    // The relay redelivers the unit too: the held outcome answers, SAP is not called.
    let mut again = unit("c_1", "STFC_CONNECTION");
    again.attempt = 2;
    conn.send(RelayMessage::Work { unit: again }).await?;
    let (call_id, attempt, answer) = conn.outcome().await?;
    assert_eq!((call_id.as_str(), attempt), ("c_1", 2));
    assert_eq!(answer, outcome);
    assert_eq!(sap.calls(), ["STFC_CONNECTION"]);

    agent.shutdown.cancel();
    assert_eq!(conn.recv().await?, AgentMessage::Drain);
    agent.join().await
}

#[tokio::test]
async fn graceful_drain_finishes_the_call_in_flight() -> anyhow::Result<()> {
    let mut relay = FakeRelay::start().await?;
    let gate = Arc::new(Semaphore::new(0));
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let sap = FakeSap {
        gate: Some(gate.clone()),
        started: Some(started_tx),
        ..Default::default()
    };
    let agent = Agent::start(config(&relay.url, &["*"], 2), &sap);
    let mut conn = relay.conn().await?;
    conn.handshake(15).await?;
    conn.send(RelayMessage::Work {
        unit: unit("c_1", "STFC_CONNECTION"),
    })
    .await?;
    within("the call to start", started.recv()).await?;

    agent.shutdown.cancel();
    assert_eq!(conn.recv().await?, AgentMessage::Drain);
    gate.add_permits(1);
    let (_, _, outcome) = conn.outcome().await?;
    assert_eq!(echo(&outcome), "hello c_1");
    assert_eq!(
        conn.recv().await?,
        AgentMessage::Close {
            reason: CloseReason::ShuttingDown
        }
    );
    agent.join().await
}

#[tokio::test]
async fn transactions_commit_or_roll_back_in_one_session() -> anyhow::Result<()> {
    let mut relay = FakeRelay::start().await?;
    let sap = FakeSap::default();
    let agent = Agent::start(
        config(&relay.url, &["BAPI_CUSTOMER_*", "BAPI_TRANSACTION_*"], 1),
        &sap,
    );
    let mut conn = relay.conn().await?;
    conn.handshake(15).await?;

    let call = |function: &str, fail: bool| {
        let mut parameters = sapbridge_proto::Parameters::new();
        if fail {
            parameters.insert("FAIL".into(), json!("X"));
        }
        FunctionCall {
            function: function.into(),
            parameters,
        }
    };
    let mut good = unit("tx_ok", "BAPI_CUSTOMER_CREATEFROMDATA1");
    good.commit = CommitPolicy::CommitOnSuccess;
    conn.send(RelayMessage::Work { unit: good }).await?;
    let (_, _, outcome) = conn.outcome().await?;
    let Outcome::Completed {
        results,
        transaction: Some(tx),
    } = outcome
    else {
        bail!("{outcome:?}")
    };
    assert_eq!(results.len(), 1);
    assert!(tx.committed, "{tx:?}");

    let mut bad = unit("tx_bad", "BAPI_CUSTOMER_CREATEFROMDATA1");
    bad.commit = CommitPolicy::CommitOnSuccess;
    bad.calls = vec![
        call("BAPI_CUSTOMER_CREATEFROMDATA1", false),
        call("BAPI_CUSTOMER_CHANGEFROMDATA1", true),
        call("BAPI_CUSTOMER_GETDETAIL2", false),
    ];
    conn.send(RelayMessage::Work { unit: bad }).await?;
    let (_, _, outcome) = conn.outcome().await?;
    let Outcome::Completed {
        results,
        transaction: Some(tx),
    } = outcome
    else {
        bail!("{outcome:?}")
    };
    assert_eq!(results.len(), 2, "stops at the failing call");
    assert!(!tx.committed);
    assert_eq!(tx.failed_call, Some(1));
    assert_eq!(
        tx.reason.as_deref(),
        Some("BAPI_CUSTOMER_CHANGEFROMDATA1 says E")
    );
    assert_eq!(
        sap.calls(),
        [
            "BAPI_CUSTOMER_CREATEFROMDATA1",
            "BAPI_TRANSACTION_COMMIT",
            "BAPI_CUSTOMER_CREATEFROMDATA1",
            "BAPI_CUSTOMER_CHANGEFROMDATA1",
            "BAPI_TRANSACTION_ROLLBACK",
        ]
    );

    let mut expired = unit("late", "BAPI_CUSTOMER_GETDETAIL2");
    expired.deadline_ms = Some(0);
    conn.send(RelayMessage::Work { unit: expired }).await?;
    assert_eq!(failed_group(&conn.outcome().await?.2), ErrorGroup::Expired);

    agent.shutdown.cancel();
    agent.join().await
}

#[tokio::test]
async fn rejected_token_and_protocol_mismatch_are_retried() -> anyhow::Result<()> {
    let mut relay = FakeRelay::start().await?;
    relay.refuse_next.store(1, Ordering::SeqCst);
    let agent = Agent::start(config(&relay.url, &["*"], 2), &FakeSap::default());
    assert!(
        matches!(relay.event().await?, Event::Rejected),
        "first upgrade gets 401"
    );

    let mut conn = relay.conn().await?;
    assert!(matches!(conn.recv().await?, AgentMessage::Hello { .. }));
    conn.send(RelayMessage::Close {
        reason: CloseReason::ProtocolMismatch {
            expected: 99,
            got: 1,
        },
    })
    .await?;

    let mut conn = relay.conn().await?;
    conn.handshake(15).await?;
    agent.shutdown.cancel();
    agent.join().await
}

#[tokio::test]
async fn wrong_token_keeps_being_refused_until_shutdown() -> anyhow::Result<()> {
    let mut relay = FakeRelay::start().await?;
    let mut config = config(&relay.url, &["*"], 2);
    config.token = Some(sapbridge_proto::Secret::new("wrong"));
    let agent = Agent::start(config, &FakeSap::default());
    for _ in 0..3 {
        assert!(matches!(relay.event().await?, Event::Rejected));
    }
    agent.shutdown.cancel();
    agent.join().await
}

#[tokio::test]
async fn run_opens_the_configured_simulator() -> anyhow::Result<()> {
    let mut relay = FakeRelay::start().await?;
    let dir = support::temp_dir("run");
    let mut config = config(&relay.url, &["STFC_CONNECTION"], 2);
    config.data_dir = dir.join("data");
    let agent = Agent::start_configured(config);
    let mut conn = relay.conn().await?;
    conn.handshake(15).await?;
    conn.send(RelayMessage::Work {
        unit: unit("c_sim", "STFC_CONNECTION"),
    })
    .await?;
    let (_, _, outcome) = conn.outcome().await?;
    assert_eq!(echo(&outcome), "hello c_sim");
    agent.shutdown.cancel();
    agent.join().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
