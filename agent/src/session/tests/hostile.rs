//! A relay that breaks the rules, played over channels: numbers out of range, work
//! beyond the granted credits, a call id twice, a second welcome, window grants
//! beyond the window, a stream id reused. Each ends the session with a
//! `ProtocolError` saying what was wrong, sent to the relay before the session ends,
//! and nothing beyond the rules reaches SAP. An honest relay racing outcomes with
//! new work, a drain and a reconnect is never refused.

use sapbridge_proto::{HttpRequestHead, MAX_HEARTBEAT_SECS, MAX_UNIT_DEADLINE_MS, Secret};

use super::*;
use crate::config::{AgentConfig, BackendConfig, HttpConfig, SystemConfig};

/// How long (on the paused clock) a relay waits for the agent to close.
const CLOSE_WITHIN: Duration = Duration::from_secs(120);

/// Reads what the agent sends until its `Close`; returns the reason.
async fn close_reason(relay: &mut Relay) -> CloseReason {
    let reason = async {
        loop {
            if let AgentMessage::Close { reason } = relay.next().await {
                return reason;
            }
        }
    };
    timeout(CLOSE_WITHIN, reason)
        .await
        .expect("the agent did not close the session")
}

/// The agent closes with a `ProtocolError` whose detail holds `needle`, and the
/// session reports the same reason.
async fn assert_violation(relay: &mut Relay, task: JoinHandle<SessionReport>, needle: &str) {
    let reason = close_reason(relay).await;
    let CloseReason::ProtocolError { detail } = &reason else {
        panic!("closed with {reason:?}");
    };
    assert!(detail.contains(needle), "{detail}");
    let report = task.await.unwrap();
    assert_eq!(report.end, SessionEnd::ClosedByAgent(reason));
    assert!(report.end.relay_misbehaved());
}

/// A runner with concurrency 2 whose SAP calls wait at `gate` and are counted.
fn counted_runner() -> (
    Arc<Semaphore>,
    Arc<AtomicUsize>,
    Arc<UnitRunner>,
    tempfile::TempDir,
) {
    let gate = Arc::new(Semaphore::new(0));
    let sap = FakeSap {
        gate: Some(gate.clone()),
        ..FakeSap::default()
    };
    let calls = sap.calls.clone();
    let (runner, dir) = runner(sap, &["*"]);
    (gate, calls, runner, dir)
}

#[tokio::test(start_paused = true)]
async fn a_welcome_with_a_heartbeat_out_of_range_closes_the_session() {
    for heartbeat_secs in [0, MAX_HEARTBEAT_SECS + 1, 1 << 62, u64::MAX] {
        let (runner, _dir) = runner(FakeSap::default(), &["*"]);
        let (mut relay, task) = start(&runner, &CancellationToken::new());
        relay.handshake(heartbeat_secs).await;
        assert_violation(&mut relay, task, "heartbeat_secs").await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_welcome_of_another_version_or_with_a_bad_session_id_closes_the_session() {
    let welcomes = [
        (9, "s_1".to_owned()),
        (PROTOCOL_VERSION, "s_1\n2026-01-01 INFO forged".to_owned()),
        (PROTOCOL_VERSION, "s".repeat(1 << 20)),
    ];
    for (protocol, session_id) in welcomes {
        let (runner, _dir) = runner(FakeSap::default(), &["*"]);
        let (mut relay, task) = start(&runner, &CancellationToken::new());
        assert!(matches!(relay.next().await, AgentMessage::Hello { .. }));
        relay.send(RelayMessage::Welcome {
            protocol,
            session_id,
            heartbeat_secs: 15,
            features: Vec::new(),
        });
        let reason = close_reason(&mut relay).await;
        if protocol == PROTOCOL_VERSION {
            assert!(
                matches!(&reason, CloseReason::ProtocolError { detail } if detail.contains("session_id")),
                "{reason:?}"
            );
        } else {
            assert_eq!(
                reason,
                CloseReason::ProtocolMismatch {
                    expected: PROTOCOL_VERSION,
                    got: 9
                }
            );
        }
        assert_eq!(task.await.unwrap().end, SessionEnd::ClosedByAgent(reason));
    }
}

#[tokio::test(start_paused = true)]
async fn work_beyond_the_credits_closes_the_session_and_never_reaches_sap() {
    let (gate, calls, runner, _dir) = counted_runner();
    let (mut relay, task) = start(&runner, &CancellationToken::new());
    assert_eq!(relay.handshake(15).await, 2);
    // All on the wire before the agent reads the first.
    for i in 0..10_000 {
        relay.send(RelayMessage::Work {
            unit: unit(&format!("c_{i}"), "STFC_CONNECTION"),
        });
    }
    assert_violation(&mut relay, task, "beyond the granted credits").await;
    let mut running: Vec<_> = runner.store().running_ids().into_iter().collect();
    running.sort();
    assert_eq!(running, ["c_0", "c_1"], "only the granted units were taken");
    gate.add_permits(10_000);
    assert_eq!(runner.finish(Duration::from_secs(60)).await, 0);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "SAP saw the granted units only"
    );
}

#[tokio::test(start_paused = true)]
async fn a_unit_outstanding_on_the_session_cannot_come_again() {
    let (_gate, calls, runner, _dir) = counted_runner();
    let (mut relay, task) = start(&runner, &CancellationToken::new());
    relay.handshake(15).await;
    relay.start_unit(&runner, "c_1", "STFC_CONNECTION").await;
    relay.send(RelayMessage::Work {
        unit: unit("c_1", "STFC_CONNECTION"),
    });
    assert_violation(&mut relay, task, "delivered again").await;
    assert_eq!(runner.store().running(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn an_honest_relay_that_answers_every_outcome_with_new_work_is_never_refused() {
    let (runner, _dir) = runner(FakeSap::default(), &["*"]);
    let (mut relay, task) = start(&runner, &CancellationToken::new());
    assert_eq!(relay.handshake(15).await, 2);
    let work = |i: usize| RelayMessage::Work {
        unit: unit(&format!("c_{i}"), "STFC_CONNECTION"),
    };
    relay.send(work(0));
    relay.send(work(1));
    // Each outcome frees a credit: the relay spends it at once, before it acks.
    for i in 2..50 {
        let (call_id, _) = relay.outcome().await;
        relay.send(work(i));
        relay.send(RelayMessage::Ack { call_id });
    }
    for _ in 0..2 {
        let (call_id, _) = relay.outcome().await;
        relay.send(RelayMessage::Ack { call_id });
    }
    relay.send(RelayMessage::Close {
        reason: CloseReason::ShuttingDown,
    });
    let report = task.await.unwrap();
    assert_eq!(
        report.end,
        SessionEnd::ClosedByRelay(CloseReason::ShuttingDown)
    );
    assert_eq!(report.units, 50);
}

#[tokio::test(start_paused = true)]
async fn units_crossing_the_drain_are_not_taken_but_a_flood_closes_the_session() {
    let (gate, calls, runner, _dir) = counted_runner();
    let shutdown = CancellationToken::new();
    let (mut relay, task) = start(&runner, &shutdown);
    relay.handshake(15).await;
    // c_1 ends before the drain: its outcome returns its credit.
    relay.start_unit(&runner, "c_1", "STFC_CONNECTION").await;
    gate.add_permits(1);
    let (call_id, _) = relay.outcome().await;
    relay.send(RelayMessage::Ack { call_id });
    relay.start_unit(&runner, "c_2", "STFC_CONNECTION").await;
    shutdown.cancel();
    assert_eq!(relay.next().await, AgentMessage::Drain);
    // The relay had one credit left when it read the drain: that unit crosses it.
    relay.send(RelayMessage::Work {
        unit: unit("c_3", "STFC_CONNECTION"),
    });
    relay.send(RelayMessage::Work {
        unit: unit("c_4", "STFC_CONNECTION"),
    });
    assert_violation(&mut relay, task, "beyond the granted credits").await;
    assert_eq!(
        runner.store().running_ids(),
        HashSet::from(["c_2".to_owned()]),
        "units after the drain are not taken"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn an_outcome_of_an_earlier_session_returns_no_credit_but_its_credits_message_does() {
    let (gate, _calls, runner, _dir) = counted_runner();
    let shutdown = CancellationToken::new();
    let (mut relay, task) = start(&runner, &shutdown);
    relay.handshake(15).await;
    relay.start_unit(&runner, "c_old", "STFC_CONNECTION").await;
    drop(relay);
    assert!(matches!(task.await.unwrap().end, SessionEnd::Lost(_)));

    let (mut relay, task) = start(&runner, &shutdown);
    assert_eq!(relay.handshake(15).await, 1);
    gate.add_permits(1);
    assert_eq!(relay.next().await, AgentMessage::Credits { credits: 1 });
    let (call_id, _) = relay.outcome().await;
    assert_eq!(call_id, "c_old");
    // One credit of the hello, one of the `Credits` message, none of the outcome.
    for i in 0..3 {
        relay.send(RelayMessage::Work {
            unit: unit(&format!("c_{i}"), "STFC_CONNECTION"),
        });
    }
    assert_violation(&mut relay, task, "beyond the granted credits").await;
}

#[tokio::test(start_paused = true)]
async fn units_with_ids_attempts_or_deadlines_out_of_range_close_the_session() {
    let bad_id = unit("c_1\nforged", "STFC_CONNECTION");
    let long_id = unit(&"c".repeat(4096), "STFC_CONNECTION");
    let mut attempt_zero = unit("c_1", "STFC_CONNECTION");
    attempt_zero.attempt = 0;
    let mut far = unit("c_1", "STFC_CONNECTION");
    far.deadline_ms = Some(MAX_UNIT_DEADLINE_MS + 1);
    let mut farthest = unit("c_1", "STFC_CONNECTION");
    farthest.deadline_ms = Some(u64::MAX);
    let cases = [
        (bad_id, "call_id"),
        (long_id, "call_id"),
        (attempt_zero, "attempt 0"),
        (far, "deadline_ms"),
        (farthest, "deadline_ms"),
    ];
    for (bad, needle) in cases {
        let (_gate, calls, runner, _dir) = counted_runner();
        let (mut relay, task) = start(&runner, &CancellationToken::new());
        relay.handshake(15).await;
        relay.send(RelayMessage::Work { unit: bad });
        assert_violation(&mut relay, task, needle).await;
        assert_eq!(runner.store().running(), 0);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_second_welcome_closes_the_session() {
    let (runner, _dir) = runner(FakeSap::default(), &["*"]);
    let (mut relay, task) = start(&runner, &CancellationToken::new());
    relay.handshake(15).await;
    relay.send(RelayMessage::Welcome {
        protocol: PROTOCOL_VERSION,
        session_id: "s_2".into(),
        heartbeat_secs: 1,
        features: Vec::new(),
    });
    assert_violation(&mut relay, task, "second welcome").await;
}

#[tokio::test(start_paused = true)]
async fn a_window_grant_beyond_the_window_closes_the_session() {
    let (runner, _dir) = runner(FakeSap::default(), &["*"]);
    let (mut relay, task) = start(&runner, &CancellationToken::new());
    relay.handshake(15).await;
    relay.send(RelayMessage::HttpWindow {
        stream_id: 7,
        chunks: u32::MAX,
    });
    assert_violation(&mut relay, task, "window grant").await;
}

#[tokio::test(start_paused = true)]
async fn a_stream_id_reused_while_open_closes_the_session() {
    let system = SystemConfig {
        name: "SIM".into(),
        backend: BackendConfig::Sim {
            db_path: None,
            latency_ms: 0,
            fault_rate: 0.0,
        },
        allow_functions: vec![],
        allow_tables: vec![],
        http: Some(HttpConfig::new("http://127.0.0.1:9/", vec!["/api".into()])),
    };
    let config = AgentConfig::new("ws://127.0.0.1:9", Secret::new("t"), vec![system]);
    let targets = Arc::new(HttpTargets::from_config(&config).unwrap());
    let (runner, _dir) = runner(FakeSap::default(), &["*"]);
    let (mut relay, task) = start_with(&runner, &CancellationToken::new(), targets);
    relay.handshake(15).await;
    let request = || RelayMessage::HttpRequest {
        request: HttpRequestHead {
            stream_id: 5,
            system: "SIM".into(),
            method: "POST".into(),
            path: "/api/x".into(),
            query: None,
            headers: Vec::new(),
            // The stream stays open while it waits for its body.
            body: true,
            timeout_ms: 30_000,
        },
    };
    relay.send(request());
    relay.send(request());
    assert_violation(&mut relay, task, "opened again").await;
}

/// A sink that panics when asked to send an outcome: a bug in the session's path.
struct PanicOnOutcome(ChanSink);

impl Sink<Outgoing> for PanicOnOutcome {
    type Error = TransportError;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().0).poll_ready(cx)
    }
    fn start_send(self: Pin<&mut Self>, item: Outgoing) -> Result<(), Self::Error> {
        if matches!(item, Outgoing::Message(AgentMessage::Outcome { .. })) {
            panic!("injected panic while sending an outcome");
        }
        Pin::new(&mut self.get_mut().0).start_send(item)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().0).poll_close(cx)
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_a_session_is_caught_and_its_units_and_outcomes_survive() {
    let (gate, calls, runner, _dir) = counted_runner();
    let shutdown = CancellationToken::new();
    let (to_agent, agent_rx) = mpsc::unbounded_channel::<Inbound>();
    let (agent_tx, from_agent) = mpsc::unbounded_channel();
    let mut relay = Relay {
        to_agent,
        from_agent,
    };
    let session = tokio::spawn({
        let runner = runner.clone();
        let shutdown = shutdown.clone();
        async move {
            let mut sink = PanicOnOutcome(ChanSink(agent_tx));
            let mut agent_rx = agent_rx;
            let mut stream = stream::poll_fn(move |cx| agent_rx.poll_recv(cx));
            let mut streams = SessionStreams::new(Arc::default());
            let params = params();
            let session = run_session(
                &mut sink,
                &mut stream,
                &params,
                &runner,
                &mut streams,
                &shutdown,
            );
            crate::reconnect::caught(session).await
        }
    });
    relay.handshake(15).await;
    relay.start_unit(&runner, "c_1", "STFC_CONNECTION").await;
    relay.send(RelayMessage::Work {
        unit: unit("c_2", "STFC_CONNECTION"),
    });
    while runner.store().running() < 2 {
        tokio::task::yield_now().await;
    }
    // One unit ends; sending its outcome panics.
    gate.add_permits(1);
    let panic = session.await.expect("the panic is caught").unwrap_err();
    assert!(panic.contains("injected panic"), "{panic}");
    assert_eq!(runner.store().running(), 1, "the other unit still runs");
    assert_eq!(runner.store().unacked(), 1, "the outcome is still held");

    // The next session gets both: the held outcome at once, the other when done.
    let (mut relay, _task) = start(&runner, &shutdown);
    assert_eq!(relay.handshake(15).await, 1);
    let (first, _) = relay.outcome().await;
    gate.add_permits(1);
    assert_eq!(relay.next().await, AgentMessage::Credits { credits: 1 });
    let (second, _) = relay.outcome().await;
    let mut answered = [first, second];
    answered.sort();
    assert_eq!(answered, ["c_1", "c_2"]);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "SAP ran each unit once");
}
