//! Session tests over in-process channels, on a paused tokio clock: the test plays
//! the relay.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures_util::stream;
use sapbridge_proto::{
    CallResult, CommitPolicy, DecodeError, ErrorGroup, FunctionCall, Outcome, Parameters, RfcError,
    SystemCapabilities, Unit,
};
use sapbridge_sap::{SapConnection, SapSystem};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::status::StatusProbe;
use super::*;
use crate::allowlist::Allowlist;
use crate::journal::tests::temp_journal;
use crate::outcomes::OutcomeStore;
use crate::passthrough::HttpTargets;
use crate::read_only::ReadOnlyFunctions;
use crate::systems::ServedSystem;

type Inbound = Result<RelayMessage, TransportError>;

struct ChanSink(mpsc::UnboundedSender<AgentMessage>);

impl Sink<Outgoing> for ChanSink {
    type Error = TransportError;
    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
    fn start_send(self: Pin<&mut Self>, item: Outgoing) -> Result<(), Self::Error> {
        match item {
            Outgoing::Message(message) => self
                .0
                .send(message)
                .map_err(|_| TransportError::ChannelClosed),
            Outgoing::Chunk(_) => Ok(()),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
}

/// The relay's end of a session.
struct Relay {
    to_agent: mpsc::UnboundedSender<Inbound>,
    from_agent: mpsc::UnboundedReceiver<AgentMessage>,
}

impl Relay {
    fn send(&self, message: RelayMessage) {
        self.to_agent.send(Ok(message)).unwrap();
    }

    /// The next message that is not a heartbeat (heartbeats are answered).
    async fn next(&mut self) -> AgentMessage {
        loop {
            let message = self.from_agent.recv().await.expect("agent hung up");
            if message == AgentMessage::Heartbeat {
                let _ = self.to_agent.send(Ok(RelayMessage::Heartbeat));
                continue;
            }
            return message;
        }
    }

    async fn handshake(&mut self, heartbeat_secs: u64) -> u32 {
        let AgentMessage::Hello {
            protocol,
            credits,
            systems,
            ..
        } = self.next().await
        else {
            panic!("expected hello");
        };
        assert_eq!(protocol, PROTOCOL_VERSION);
        assert_eq!(systems, ["SIM"]);
        self.send(RelayMessage::Welcome {
            protocol: PROTOCOL_VERSION,
            session_id: "s_1".into(),
            heartbeat_secs,
            features: Vec::new(),
        });
        credits
    }

    /// Sends a unit and waits until the runner runs it.
    async fn start_unit(&self, runner: &UnitRunner, call_id: &str, function: &str) {
        self.send(RelayMessage::Work {
            unit: unit(call_id, function),
        });
        while runner.store().running() == 0 {
            tokio::task::yield_now().await;
        }
    }

    async fn outcome(&mut self) -> (String, Outcome) {
        match self.next().await {
            AgentMessage::Outcome {
                call_id, outcome, ..
            } => (call_id, outcome),
            other => panic!("expected outcome, got {other:?}"),
        }
    }
}

/// A fake SAP system: `STFC_CONNECTION` echoes; calls wait for a gate permit when a
/// gate is set.
#[derive(Default)]
struct FakeSap {
    calls: Arc<AtomicUsize>,
    gate: Option<Arc<Semaphore>>,
}

struct FakeSession {
    calls: Arc<AtomicUsize>,
    gate: Option<Arc<Semaphore>>,
}

#[async_trait]
impl SapSystem for FakeSap {
    async fn connect(&self) -> Result<Box<dyn SapConnection>, RfcError> {
        Ok(Box::new(FakeSession {
            calls: self.calls.clone(),
            gate: self.gate.clone(),
        }))
    }
}

#[async_trait]
impl SapConnection for FakeSession {
    async fn call(&mut self, function: &str, params: &Parameters) -> Result<Parameters, RfcError> {
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        if function == "STFC_CONNECTION" {
            let mut out = Parameters::new();
            out.insert(
                "ECHOTEXT".into(),
                params.get("REQUTEXT").cloned().unwrap_or_default(),
            );
            return Ok(out);
        }
        Err(RfcError::new(
            ErrorGroup::AbapApplicationFailure,
            "FU_NOT_FOUND",
            function,
        ))
    }
}

/// A runner (every function allowed) whose SAP calls each wait for a permit of the
/// returned gate.
fn gated_runner() -> (Arc<Semaphore>, Arc<UnitRunner>, tempfile::TempDir) {
    let gate = Arc::new(Semaphore::new(0));
    let sap = FakeSap {
        gate: Some(gate.clone()),
        ..FakeSap::default()
    };
    let (runner, dir) = runner(sap, &["*"]);
    (gate, runner, dir)
}

/// A runner on a journal in a temporary directory (removed when the guard drops).
fn runner(sap: FakeSap, allow: &[&str]) -> (Arc<UnitRunner>, tempfile::TempDir) {
    let system = ServedSystem {
        agent_id: "agent-1".into(),
        name: "SIM".into(),
        allowlist: Allowlist::parse(allow).unwrap(),
        tables: Allowlist::parse(&["*"]).unwrap(),
        sap: Arc::new(sap),
    };
    let (journal, dir) = temp_journal();
    let runner = UnitRunner::new(
        HashMap::from([("SIM".to_owned(), system)]),
        2,
        Arc::new(OutcomeStore::open(journal).unwrap()),
        ReadOnlyFunctions::default(),
    );
    (Arc::new(runner), dir)
}

fn params() -> SessionParams {
    SessionParams {
        agent_id: "agent-1".into(),
        systems: vec!["SIM".into()],
        capabilities: vec![SystemCapabilities {
            system: "SIM".into(),
            functions: true,
            http: false,
            function_search: true,
        }],
        concurrency: 2,
        shutdown_grace: Duration::from_secs(30),
        status: StatusProbe::default(),
        reconnects: 0,
    }
}

fn start(
    runner: &Arc<UnitRunner>,
    shutdown: &CancellationToken,
) -> (Relay, JoinHandle<SessionReport>) {
    start_with(runner, shutdown, Arc::default())
}

/// [`start`] with the HTTP pass-through `targets`.
fn start_with(
    runner: &Arc<UnitRunner>,
    shutdown: &CancellationToken,
    targets: Arc<HttpTargets>,
) -> (Relay, JoinHandle<SessionReport>) {
    let (to_agent, agent_rx) = mpsc::unbounded_channel::<Inbound>();
    let (agent_tx, from_agent) = mpsc::unbounded_channel();
    let runner = runner.clone();
    let shutdown = shutdown.clone();
    let task = tokio::spawn(async move {
        let mut sink = ChanSink(agent_tx);
        let mut agent_rx = agent_rx;
        let mut stream = stream::poll_fn(move |cx| agent_rx.poll_recv(cx));
        let mut streams = SessionStreams::new(targets);
        run_session(
            &mut sink,
            &mut stream,
            &params(),
            &runner,
            &mut streams,
            &shutdown,
        )
        .await
    });
    (
        Relay {
            to_agent,
            from_agent,
        },
        task,
    )
}

fn unit(call_id: &str, function: &str) -> Unit {
    let mut parameters = Parameters::new();
    parameters.insert("REQUTEXT".into(), "hi".into());
    Unit {
        call_id: call_id.into(),
        attempt: 1,
        system: "SIM".into(),
        deadline_ms: None,
        in_doubt: false,
        calls: vec![FunctionCall {
            function: function.into(),
            parameters,
        }],
        commit: CommitPolicy::None,
        traceparent: None,
    }
}

fn echo_of(outcome: &Outcome) -> &serde_json::Value {
    match outcome {
        Outcome::Completed { results, .. } => match &results[0] {
            CallResult::Ok(out) => &out["ECHOTEXT"],
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn work_outcome_ack_then_relay_close() {
    let (runner, _dir) = runner(FakeSap::default(), &["STFC_CONNECTION"]);
    let shutdown = CancellationToken::new();
    let (mut relay, task) = start(&runner, &shutdown);
    assert_eq!(relay.handshake(15).await, 2);
    relay.send(RelayMessage::Work {
        unit: unit("c_1", "STFC_CONNECTION"),
    });
    let (call_id, outcome) = relay.outcome().await;
    assert_eq!(call_id, "c_1");
    assert_eq!(echo_of(&outcome), "hi");
    relay.send(RelayMessage::Ack { call_id });
    relay.send(RelayMessage::Close {
        reason: CloseReason::ShuttingDown,
    });
    let report = task.await.unwrap();
    assert_eq!(
        report.end,
        SessionEnd::ClosedByRelay(CloseReason::ShuttingDown)
    );
    assert!(report.welcomed);
    assert_eq!((report.units, report.acks), (1, 1));
    assert_eq!(runner.store().unacked(), 0);
}

#[tokio::test(start_paused = true)]
async fn denied_function_fails_not_allowed() {
    let sap = FakeSap::default();
    let calls = sap.calls.clone();
    let (runner, _dir) = runner(sap, &["STFC_CONNECTION"]);
    let (mut relay, _task) = start(&runner, &CancellationToken::new());
    relay.handshake(15).await;
    relay.send(RelayMessage::Work {
        unit: unit("c_1", "RFC_READ_TABLE"),
    });
    let (_, outcome) = relay.outcome().await;
    let Outcome::Failed { error } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(error.group, ErrorGroup::NotAllowed);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn protocol_mismatch_at_handshake_ends_the_session() {
    let (runner, _dir) = runner(FakeSap::default(), &["*"]);
    let (mut relay, task) = start(&runner, &CancellationToken::new());
    assert!(matches!(relay.next().await, AgentMessage::Hello { .. }));
    let reason = CloseReason::ProtocolMismatch {
        expected: 2,
        got: 1,
    };
    relay.send(RelayMessage::Close {
        reason: reason.clone(),
    });
    let report = task.await.unwrap();
    assert_eq!(report.end, SessionEnd::ClosedByRelay(reason));
    assert!(!report.welcomed);
}

#[tokio::test(start_paused = true)]
async fn no_welcome_in_time_closes_the_session() {
    let (runner, _dir) = runner(FakeSap::default(), &["*"]);
    let (mut relay, task) = start(&runner, &CancellationToken::new());
    assert!(matches!(relay.next().await, AgentMessage::Hello { .. }));
    let report = task.await.unwrap();
    assert!(
        matches!(report.end, SessionEnd::ClosedByAgent(CloseReason::ProtocolError { ref detail })
            if detail.contains("no welcome")),
        "{report:?}"
    );
    assert!(matches!(
        relay.next().await,
        AgentMessage::Close {
            reason: CloseReason::ProtocolError { .. }
        }
    ));
}

#[tokio::test(start_paused = true)]
async fn heartbeats_flow_and_silence_kills_the_session() {
    let (runner, _dir) = runner(FakeSap::default(), &["*"]);
    let (mut relay, task) = start(&runner, &CancellationToken::new());
    relay.handshake(5).await;
    let started = Instant::now();
    // The agent heartbeats every interval; answering keeps the session alive.
    for _ in 0..3 {
        assert_eq!(relay.from_agent.recv().await, Some(AgentMessage::Heartbeat));
        relay.send(RelayMessage::Heartbeat);
    }
    assert!(started.elapsed() >= Duration::from_secs(15));
    // Now the relay goes silent: dead after two intervals.
    let silent_since = Instant::now();
    let report = task.await.unwrap();
    assert_eq!(
        report.end,
        SessionEnd::ClosedByAgent(CloseReason::HeartbeatTimeout)
    );
    assert!(silent_since.elapsed() <= Duration::from_secs(10));
    let mut last = None;
    while let Ok(message) = relay.from_agent.try_recv() {
        last = Some(message);
    }
    assert_eq!(
        last,
        Some(AgentMessage::Close {
            reason: CloseReason::HeartbeatTimeout
        })
    );
}

#[tokio::test(start_paused = true)]
async fn malformed_frame_closes_with_protocol_error() {
    let (runner, _dir) = runner(FakeSap::default(), &["*"]);
    let (mut relay, task) = start(&runner, &CancellationToken::new());
    relay.handshake(15).await;
    let bad = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
    relay
        .to_agent
        .send(Err(TransportError::Decode(DecodeError::Malformed(bad))))
        .unwrap();
    assert!(matches!(
        relay.next().await,
        AgentMessage::Close {
            reason: CloseReason::ProtocolError { .. }
        }
    ));
    assert!(matches!(
        task.await.unwrap().end,
        SessionEnd::ClosedByAgent(CloseReason::ProtocolError { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn unacked_outcomes_are_resent_and_redelivery_does_not_call_sap_again() {
    let sap = FakeSap::default();
    let calls = sap.calls.clone();
    let (runner, _dir) = runner(sap, &["*"]);
    let shutdown = CancellationToken::new();

    let (mut relay, task) = start(&runner, &shutdown);
    relay.handshake(15).await;
    relay.send(RelayMessage::Work {
        unit: unit("c_1", "STFC_CONNECTION"),
    });
    relay.outcome().await;
    drop(relay); // the connection drops before the ack
    assert!(matches!(task.await.unwrap().end, SessionEnd::Lost(_)));
    assert_eq!(runner.store().unacked(), 1);

    let (mut relay, _task) = start(&runner, &shutdown);
    relay.handshake(15).await;
    let (call_id, outcome) = relay.outcome().await;
    assert_eq!(call_id, "c_1", "re-sent after the welcome");
    // The relay redelivers the unit anyway: answered from the store.
    let mut again = unit("c_1", "STFC_CONNECTION");
    again.attempt = 2;
    relay.send(RelayMessage::Work { unit: again });
    match relay.next().await {
        AgentMessage::Outcome {
            call_id,
            attempt,
            outcome: resent,
        } => {
            assert_eq!((call_id.as_str(), attempt), ("c_1", 2));
            assert_eq!(resent, outcome);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "SAP was called once");
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_in_flight_units_then_closes() {
    let (gate, runner, _dir) = gated_runner();
    let shutdown = CancellationToken::new();
    let (mut relay, task) = start(&runner, &shutdown);
    relay.handshake(15).await;
    relay.start_unit(&runner, "c_1", "STFC_CONNECTION").await;
    shutdown.cancel();
    assert_eq!(relay.next().await, AgentMessage::Drain);
    // Work that crosses the drain is not taken.
    relay.send(RelayMessage::Work {
        unit: unit("c_2", "STFC_CONNECTION"),
    });
    gate.add_permits(10);
    let (call_id, _) = relay.outcome().await;
    assert_eq!(call_id, "c_1");
    relay.send(RelayMessage::Ack { call_id });
    assert_eq!(
        relay.next().await,
        AgentMessage::Close {
            reason: CloseReason::ShuttingDown
        }
    );
    let report = task.await.unwrap();
    assert_eq!(report.end, SessionEnd::Shutdown);
    assert_eq!(report.units, 1);
}

#[tokio::test(start_paused = true)]
async fn drain_gives_up_after_the_grace_period() {
    let (_gate, runner, _dir) = gated_runner();
    let shutdown = CancellationToken::new();
    let (mut relay, task) = start(&runner, &shutdown);
    relay.handshake(15).await;
    relay.start_unit(&runner, "c_1", "STFC_CONNECTION").await;
    let began = Instant::now();
    shutdown.cancel();
    assert_eq!(relay.next().await, AgentMessage::Drain);
    assert_eq!(
        relay.next().await,
        AgentMessage::Close {
            reason: CloseReason::ShuttingDown
        }
    );
    assert_eq!(task.await.unwrap().end, SessionEnd::Shutdown);
    assert!(began.elapsed() >= Duration::from_secs(30));
    assert_eq!(
        runner.finish(Duration::ZERO).await,
        1,
        "the stuck unit is abandoned"
    );
    assert_eq!(runner.store().running(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_unit_running_across_a_reconnect_hands_its_slot_back_as_a_credit() {
    let (gate, runner, _dir) = gated_runner();
    let shutdown = CancellationToken::new();

    let (mut relay, task) = start(&runner, &shutdown);
    assert_eq!(relay.handshake(15).await, 2);
    relay
        .start_unit(&runner, "c_1", "BAPI_CUSTOMER_CHANGEFROMDATA1")
        .await;
    drop(relay); // the relay goes away while c_1 runs
    assert!(matches!(task.await.unwrap().end, SessionEnd::Lost(_)));

    // The new session offers only the free slot; when c_1 ends, its outcome goes out
    // with a credit for the slot (the new relay did not send c_1, so it would not
    // count the outcome as a returned credit).
    let (mut relay, _task) = start(&runner, &shutdown);
    assert_eq!(relay.handshake(15).await, 1);
    gate.add_permits(1);
    assert_eq!(
        relay.next().await,
        AgentMessage::Credits { credits: 1 },
        "the freed slot comes back first"
    );
    let (call_id, _) = relay.outcome().await;
    assert_eq!(call_id, "c_1");
}

mod fuzz;
mod hostile;
