//! Fuzzing the agent's side of the protocol with proptest: a session (the real
//! [`run_session`], fed through the transport's own frame decoding,
//! [`crate::transport::incoming`]) gets arbitrary sequences of WebSocket frames —
//! the welcome included — mixed with clock jumps and shutdowns: valid messages with
//! extreme numbers, mutated and arbitrary JSON, binary body chunks (well formed or
//! not), pings and close frames, in any order.
//!
//! For every sequence: no panic; no hang (the session ends within a bound on the
//! paused clock once the relay falls silent or hangs up, and a real-time watchdog
//! catches a loop that never lets the clock move); bounded growth (units running
//! never exceed the concurrency, what the agent writes stays proportional to what
//! it read, SAP sees no more calls than the units it accepted carried); and every
//! end is reasoned: an agent close was sent with the same reason, a relay close was
//! in the input, a lost connection only when the relay hung up.
//!
//! A second property plays an honest relay (credits counted as the relay counts
//! them, outcomes racing new work) and checks that it is never refused.
//!
//! Cases: `PROPTEST_CASES` (64 by default, about a second). A long run:
//! `PROPTEST_CASES=200000 cargo test -p sapbridge-agent --lib session::tests::fuzz -- --nocapture`
//! (prints the cases and frames it ran).

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sapbridge_proto::{MAX_HEARTBEAT_SECS, Secret};
use tokio_tungstenite::tungstenite::Message;

use self::frames::{Ending, Step, steps};
use super::*;
use crate::config::{AgentConfig, BackendConfig, HttpConfig, SystemConfig};
use crate::transport::incoming;

mod frames;

/// Cases per property unless `PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: u32 = 64;
/// The longest a case may take in real time before it counts as a hang.
const WATCHDOG: std::time::Duration = std::time::Duration::from_secs(60);
/// Stack of the threads that generate and run cases (debug builds of deep
/// strategies and of the session's future need more than the default 2 MiB).
const STACK_BYTES: usize = 32 * 1024 * 1024;
/// The agent's concurrency (its credits) in every case.
const CONCURRENCY: usize = 2;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// HTTP targets with one system whose backend refuses connections.
fn targets() -> Arc<HttpTargets> {
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
    Arc::new(HttpTargets::from_config(&config).expect("targets"))
}

/// Runs `case` on a fresh paused runtime on its own thread, failing it if it takes
/// longer than [`WATCHDOG`] in real time.
fn with_watchdog<F>(case: F) -> Result<(), TestCaseError>
where
    F: FnOnce() -> Result<(), TestCaseError> + Send + 'static,
{
    let (done, result) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .stack_size(STACK_BYTES)
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(case));
            let _ = done.send(outcome);
        })
        .expect("spawn a case thread");
    match result.recv_timeout(WATCHDOG) {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => Err(TestCaseError::fail("the case hung (real-time watchdog)")),
    }
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime")
}

/// Frames the hostile property fed to sessions, over all cases (for the long run's
/// figures).
static FRAMES: AtomicU64 = AtomicU64::new(0);
/// How the sessions ended: closed by the agent, by the relay, lost, shut down.
static ENDS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

async fn hostile_case(steps: Vec<Step>, ending: Ending) -> Result<(), TestCaseError> {
    let sap = FakeSap::default();
    let sap_calls = sap.calls.clone();
    let (runner, _dir) = runner(sap, &["STFC_*"]);
    let shutdown = CancellationToken::new();
    let (to_agent, agent_rx) = mpsc::unbounded_channel::<Message>();
    let (agent_tx, mut from_agent) = mpsc::unbounded_channel();
    let session = tokio::spawn({
        let runner = runner.clone();
        let shutdown = shutdown.clone();
        async move {
            let mut streams = SessionStreams::new(targets());
            let table = streams.table();
            let mut agent_rx = agent_rx;
            let mut stream = stream::poll_fn(move |cx| agent_rx.poll_recv(cx))
                .filter_map(move |frame| std::future::ready(incoming(Ok(frame), &table)));
            let mut sink = ChanSink(agent_tx);
            let params = params();
            run_session(
                &mut sink,
                &mut stream,
                &params,
                &runner,
                &mut streams,
                &shutdown,
            )
            .await
        }
    });

    let mut frames = 0u64;
    let mut units_calls = 0usize;
    let mut relay_closed = false;
    let mut virtual_ms = 0u64;
    for step in steps {
        if session.is_finished() {
            break;
        }
        match step {
            Step::Frame(frame) => {
                frames += 1;
                let json = match &frame {
                    Message::Text(text) => Some(text.as_bytes()),
                    Message::Binary(bytes) if !sapbridge_proto::is_chunk_frame(bytes) => {
                        Some(&bytes[..])
                    }
                    _ => None,
                };
                if let Some(json) = json
                    && let Ok(message) = sapbridge_proto::decode_relay_message(json)
                {
                    match message {
                        RelayMessage::Work { unit } => units_calls += unit.calls.len() + 1,
                        RelayMessage::Close { .. } => relay_closed = true,
                        _ => {}
                    }
                }
                if matches!(frame, Message::Close(_)) {
                    relay_closed = true;
                }
                let _ = to_agent.send(frame);
                for _ in 0..8 {
                    tokio::task::yield_now().await;
                }
            }
            Step::Advance(ms) => {
                virtual_ms += ms;
                tokio::time::advance(Duration::from_millis(ms)).await;
            }
            Step::Shutdown => shutdown.cancel(),
        }
        prop_assert!(
            runner.store().running() <= CONCURRENCY,
            "{} units running",
            runner.store().running()
        );
    }
    FRAMES.fetch_add(frames, Ordering::Relaxed);
    let hung_up = matches!(ending, Ending::HangUp);
    if hung_up {
        drop(to_agent);
    }
    // Silent: two heartbeat intervals at most (or the handshake timeout, or the
    // drain's grace), on the paused clock.
    let bound = Duration::from_secs(2 * MAX_HEARTBEAT_SECS + HANDSHAKE_TIMEOUT_SECS + 60);
    let report = timeout(bound, session)
        .await
        .map_err(|_| TestCaseError::fail("the session did not end"))?
        .map_err(|e| TestCaseError::fail(format!("the session panicked: {e}")))?;

    let mut sent = Vec::new();
    while let Ok(message) = from_agent.try_recv() {
        sent.push(message);
    }
    let last = sent.last().cloned();
    let kind = match &report.end {
        SessionEnd::ClosedByAgent(_) => 0,
        SessionEnd::ClosedByRelay(_) => 1,
        SessionEnd::Lost(_) => 2,
        SessionEnd::Shutdown => 3,
    };
    ENDS[kind].fetch_add(1, Ordering::Relaxed);
    match &report.end {
        SessionEnd::ClosedByAgent(reason) => prop_assert_eq!(
            last,
            Some(AgentMessage::Close {
                reason: reason.clone()
            })
        ),
        SessionEnd::Shutdown => {
            prop_assert!(shutdown.is_cancelled());
            prop_assert_eq!(
                last,
                Some(AgentMessage::Close {
                    reason: CloseReason::ShuttingDown
                })
            );
        }
        SessionEnd::ClosedByRelay(_) => prop_assert!(relay_closed, "no close was sent"),
        SessionEnd::Lost(why) => prop_assert!(
            hung_up || relay_closed,
            "lost without a reason while the relay was there: {why}"
        ),
    }
    // What the agent wrote is proportional to what it read: one answer per frame
    // at most a few messages, plus heartbeats (at least a second apart).
    let heartbeats = virtual_ms / 1_000 + bound.as_secs() + 2;
    let limit = 4 * frames + heartbeats + 4;
    prop_assert!(
        sent.len() as u64 <= limit,
        "{} messages for {frames} frames",
        sent.len()
    );
    prop_assert!(sap_calls.load(Ordering::SeqCst) <= units_calls);
    Ok(())
}

#[test]
fn hostile_frame_sequences_end_every_session_with_a_reason() {
    let config = Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    };
    let started = std::time::Instant::now();
    let mut runner = TestRunner::new(config);
    let ran = Mutex::new(0u64);
    let result = runner.run(&steps(), |(steps, ending)| {
        *ran.lock().unwrap() += 1;
        with_watchdog(move || paused_runtime().block_on(hostile_case(steps, ending)))
    });
    let ends: Vec<u64> = ENDS.iter().map(|n| n.load(Ordering::Relaxed)).collect();
    eprintln!(
        "fuzz: {} cases, {} frames, {:.1} s; ends: {} closed by the agent, {} by the relay, {} lost, {} shut down",
        ran.lock().unwrap(),
        FRAMES.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        ends[0],
        ends[1],
        ends[2],
        ends[3],
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// What an honest relay does next.
#[derive(Debug, Clone, Copy)]
enum Honest {
    /// Sends a unit if it has a credit.
    Work,
    /// Reads what the agent sent (outcomes return credits once read).
    Read,
    /// Acknowledges the oldest outcome read and not acknowledged.
    Ack,
    /// Lets the clock run.
    Advance(u64),
}

async fn honest_case(actions: Vec<Honest>) -> Result<(), TestCaseError> {
    let (runner, _dir) = runner(FakeSap::default(), &["*"]);
    let (mut relay, task) = start(&runner, &CancellationToken::new());
    let mut credits = relay.handshake(15).await;
    let mut next = 0;
    let mut in_flight = HashSet::new();
    let mut unacked = Vec::new();
    for action in actions {
        match action {
            Honest::Work if credits > 0 => {
                credits -= 1;
                let call_id = format!("c_{next}");
                next += 1;
                in_flight.insert(call_id.clone());
                relay.send(RelayMessage::Work {
                    unit: unit(&call_id, "STFC_CONNECTION"),
                });
            }
            Honest::Work => {}
            Honest::Read => {
                while let Ok(message) = relay.from_agent.try_recv() {
                    match message {
                        AgentMessage::Outcome { call_id, .. } => {
                            if in_flight.remove(&call_id) {
                                credits += 1;
                            }
                            unacked.push(call_id);
                        }
                        AgentMessage::Credits { credits: more } => credits += more,
                        AgentMessage::Heartbeat => relay.send(RelayMessage::Heartbeat),
                        other => prop_assert!(false, "the agent sent {other:?}"),
                    }
                }
            }
            Honest::Ack if !unacked.is_empty() => {
                let call_id = unacked.remove(0);
                relay.send(RelayMessage::Ack { call_id });
            }
            Honest::Ack => {}
            Honest::Advance(ms) => {
                // The relay heartbeats too: at most 5 s pass between two.
                relay.send(RelayMessage::Heartbeat);
                tokio::task::yield_now().await;
                tokio::time::advance(Duration::from_millis(ms)).await;
            }
        }
        tokio::task::yield_now().await;
        prop_assert!(
            !task.is_finished(),
            "the session ended under an honest relay"
        );
    }
    Ok(())
}

#[test]
fn an_honest_relay_racing_outcomes_with_work_is_never_refused() {
    let config = Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    };
    let action = prop_oneof![
        4 => Just(Honest::Work),
        4 => Just(Honest::Read),
        2 => Just(Honest::Ack),
        1 => (0..5_000u64).prop_map(Honest::Advance),
    ];
    let mut runner = TestRunner::new(config);
    let result = runner.run(&prop::collection::vec(action, 0..80), |actions| {
        with_watchdog(move || paused_runtime().block_on(honest_case(actions)))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
