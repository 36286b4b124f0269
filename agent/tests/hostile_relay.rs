//! The agent against a hostile relay over real loopback WebSockets: numbers out of
//! range in the welcome and in units, and a flood of work beyond the granted
//! credits. Each session ends with `Close{ProtocolError}` saying what was wrong, the
//! agent process lives on and reconnects, and nothing beyond the rules reaches SAP.

mod support;

use std::sync::Arc;

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use sapbridge_proto::{
    AgentMessage, CloseReason, MAX_UNIT_DEADLINE_MS, PROTOCOL_VERSION, RelayMessage,
    decode_agent_message, encode_relay_message,
};
use support::{Agent, Conn, FakeRelay, FakeSap, config, unit, within};
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;

/// How many work frames the flooding relay sends.
const FLOOD: usize = 10_000;

/// Reads the agent's messages until its `Close`; returns the `ProtocolError` detail.
async fn protocol_error(conn: &mut Conn) -> anyhow::Result<String> {
    loop {
        match conn.recv().await? {
            AgentMessage::Close {
                reason: CloseReason::ProtocolError { detail },
            } => return Ok(detail),
            AgentMessage::Close { reason } => bail!("closed with {reason:?}"),
            _ => continue,
        }
    }
}

#[tokio::test]
async fn numbers_out_of_range_close_the_session_and_the_agent_comes_back() -> anyhow::Result<()> {
    let mut relay = FakeRelay::start().await?;
    let sap = FakeSap::default();
    let agent = Agent::start(config(&relay.url, &["*"], 2), &sap);

    // The welcomes that stopped the process for good on a3fccc3 (2^64-1 panicked
    // at once, 2^62 on the next frame), and 0.
    for heartbeat_secs in [u64::MAX, 1 << 62, 0] {
        let mut conn = relay.conn().await?;
        conn.handshake(heartbeat_secs).await?;
        // The next frame (the agent may have closed already).
        let _ = conn.send(RelayMessage::Heartbeat).await;
        let detail = protocol_error(&mut conn).await?;
        assert!(detail.contains("heartbeat_secs"), "{detail}");
    }
    // Units whose numbers are out of range.
    let mut attempt_zero = unit("c_a", "STFC_CONNECTION");
    attempt_zero.attempt = 0;
    let mut far = unit("c_d", "STFC_CONNECTION");
    far.deadline_ms = Some(u64::MAX);
    let mut beyond = unit("c_e", "STFC_CONNECTION");
    beyond.deadline_ms = Some(MAX_UNIT_DEADLINE_MS + 1);
    let forged = unit("c_f\n2026-01-01T00:00:00Z  INFO forged", "STFC_CONNECTION");
    for (bad, field) in [
        (attempt_zero, "attempt"),
        (far, "deadline_ms"),
        (beyond, "deadline_ms"),
        (forged, "call_id"),
    ] {
        let mut conn = relay.conn().await?;
        conn.handshake(15).await?;
        conn.send(RelayMessage::Work { unit: bad }).await?;
        let detail = protocol_error(&mut conn).await?;
        assert!(detail.contains(field), "{detail}");
    }
    // A welcome of another protocol version.
    let mut conn = relay.conn().await?;
    assert!(matches!(conn.recv().await?, AgentMessage::Hello { .. }));
    conn.send(RelayMessage::Welcome {
        protocol: PROTOCOL_VERSION + 1,
        session_id: "s_x".into(),
        heartbeat_secs: 15,
        features: Vec::new(),
    })
    .await?;
    assert_eq!(
        conn.recv().await?,
        AgentMessage::Close {
            reason: CloseReason::ProtocolMismatch {
                expected: PROTOCOL_VERSION,
                got: PROTOCOL_VERSION + 1
            }
        }
    );

    // Still the same process: an honest session works.
    let mut conn = relay.conn().await?;
    conn.handshake(15).await?;
    conn.send(RelayMessage::Work {
        unit: unit("c_ok", "STFC_CONNECTION"),
    })
    .await?;
    assert_eq!(conn.outcome().await?.0, "c_ok");
    assert_eq!(
        sap.calls(),
        ["STFC_CONNECTION"],
        "no refused unit reached SAP"
    );
    agent.shutdown.cancel();
    agent.join().await
}

#[tokio::test]
async fn a_flood_beyond_the_credits_closes_the_session_and_the_agent_reconnects()
-> anyhow::Result<()> {
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
    assert_eq!(conn.handshake(15).await?.credits, 2);

    // The flood goes out from its own task while this one reads the agent.
    let (mut sink, mut stream) = conn.ws.split();
    let flood = tokio::spawn(async move {
        for i in 0..FLOOD {
            let work = RelayMessage::Work {
                unit: unit(&format!("c_{i}"), "STFC_CONNECTION"),
            };
            if sink
                .feed(Message::text(encode_relay_message(&work)))
                .await
                .is_err()
            {
                return i;
            }
        }
        let _ = sink.flush().await;
        FLOOD
    });
    let detail = loop {
        match within("the agent's close", stream.next()).await? {
            Some(Ok(Message::Text(text))) => match decode_agent_message(text.as_bytes())? {
                AgentMessage::Close {
                    reason: CloseReason::ProtocolError { detail },
                } => break detail,
                AgentMessage::Close { reason } => bail!("closed with {reason:?}"),
                _ => continue,
            },
            Some(Ok(_)) => continue,
            other => bail!("the connection ended without a close: {other:?}"),
        }
    };
    assert!(detail.contains("beyond the granted credits"), "{detail}");
    let sent = within("the flood", flood).await??;
    assert!(sent > 2, "the flood was cut short after {sent} frames");

    // The agent comes back; its two granted units still run and answer there.
    let mut conn = relay.conn().await?;
    assert_eq!(
        conn.handshake(15).await?.credits,
        0,
        "both slots hold the granted units"
    );
    for _ in 0..2 {
        within("a granted unit to start", started.recv()).await?;
    }
    gate.add_permits(FLOOD);
    let mut answered = Vec::new();
    while answered.len() < 2 {
        match conn.recv().await? {
            AgentMessage::Outcome { call_id, .. } => {
                conn.send(RelayMessage::Ack {
                    call_id: call_id.clone(),
                })
                .await?;
                answered.push(call_id);
            }
            AgentMessage::Credits { .. } => {}
            other => bail!("unexpected {other:?}"),
        }
    }
    answered.sort();
    assert_eq!(answered, ["c_0", "c_1"]);
    assert_eq!(
        sap.calls().len(),
        2,
        "no unit beyond the credits reached SAP"
    );
    agent.shutdown.cancel();
    agent.join().await
}
