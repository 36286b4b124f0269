//! Session tests driven over channels instead of a socket, with tokio's paused
//! clock for heartbeats.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Message;
use futures_util::stream;
use sapbridge_proto::{
    AgentMessage, CallResult, CloseReason, CommitPolicy, FunctionCall, Outcome, PROTOCOL_VERSION,
    RelayMessage, decode_relay_message, encode_agent_message,
};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, PollSender};

use super::SessionContext;
use super::dispatch::{self, SessionEnd};
use super::handshake::{self, Handshake};
use crate::agents::{AgentRegistry, Hello};
use crate::auth::Scope;
use crate::queue::memory::MemoryQueue;
use crate::queue::{CallKind, CallState, Claimant, NewCall, Queue};

const HEARTBEAT: Duration = Duration::from_secs(15);

/// Session `session` of the harness's agent installation.
fn claimant(session: &str) -> Claimant<'_> {
    Claimant {
        session,
        agent: "agent-1",
        takes_in_doubt: true,
    }
}

struct Harness {
    to_relay: mpsc::Sender<Result<Message, String>>,
    from_relay: mpsc::Receiver<Message>,
    task: JoinHandle<SessionEnd>,
    queue: Arc<MemoryQueue>,
    shutdown: CancellationToken,
}

impl Harness {
    /// A welcomed session for system PRD with `credits`, over channels.
    fn start(queue: Arc<MemoryQueue>, credits: u32) -> Self {
        let (to_relay, rx) = mpsc::channel::<Result<Message, String>>(16);
        let (tx, from_relay) = mpsc::channel::<Message>(16);
        let shutdown = CancellationToken::new();
        let hello = Hello {
            reconnects: 0,
            protocol: PROTOCOL_VERSION,
            agent_id: "agent-1".into(),
            agent_version: "t".into(),
            systems: vec!["PRD".into()],
            capabilities: Vec::new(),
            credits,
        };
        let ctx = SessionContext {
            audit: None,
            session_id: "s_test".into(),
            function_systems: hello.function_systems(),
            hello,
            queue: queue.clone(),
            heartbeat: HEARTBEAT,
            lease: Duration::from_secs(300),
            owner_hold: Duration::from_secs(60),
            shutdown: shutdown.clone(),
            metrics: Arc::default(),
            hold: crate::auth::Hold::never_revoked(),
        };
        let task = tokio::spawn(async move {
            let registry = Arc::new(AgentRegistry::default());
            let reg = registry.register("s_test", &ctx.hello);
            let mut sink = PollSender::new(tx);
            let incoming =
                stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
            let mut incoming = std::pin::pin!(incoming);
            dispatch::serve(&ctx, reg.session(), &mut sink, &mut incoming).await
        });
        Self {
            to_relay,
            from_relay,
            task,
            queue,
            shutdown,
        }
    }

    async fn send(&self, message: AgentMessage) {
        let text = encode_agent_message(&message);
        self.to_relay
            .send(Ok(Message::text(text)))
            .await
            .expect("session alive");
    }

    /// The next protocol message other than a heartbeat, if one comes within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<RelayMessage> {
        loop {
            let frame = tokio::time::timeout(wait, self.from_relay.recv())
                .await
                .ok()??;
            match frame {
                Message::Text(text) => {
                    let message = decode_relay_message(text.as_str().as_bytes()).ok()?;
                    if message != RelayMessage::Heartbeat {
                        return Some(message);
                    }
                }
                Message::Close(_) => return None,
                _ => {}
            }
        }
    }
}

async fn enqueue(queue: &MemoryQueue, id: &str) {
    let now = OffsetDateTime::now_utc();
    queue
        .enqueue(NewCall {
            id: id.into(),
            system: "PRD".into(),
            kind: CallKind::Function,
            calls: vec![FunctionCall {
                function: "STFC_CONNECTION".into(),
                parameters: Default::default(),
            }],
            commit: CommitPolicy::None,
            submitted_at: now,
            expires_at: now + time::Duration::hours(1),
            idempotency: None,
            owner: None,
            trace: None,
            webhooks: Vec::new(),
        })
        .await
        .expect("enqueue");
}

fn ok() -> Outcome {
    Outcome::Completed {
        results: vec![CallResult::Ok(Default::default())],
        transaction: None,
    }
}

fn work_id(message: Option<RelayMessage>) -> String {
    match message {
        Some(RelayMessage::Work { unit }) => unit.call_id,
        other => panic!("expected work, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn one_credit_means_one_unit_at_a_time() {
    let queue = Arc::new(MemoryQueue::new());
    enqueue(&queue, "a").await;
    enqueue(&queue, "b").await;
    let mut h = Harness::start(queue, 1);
    let first = work_id(h.next(Duration::from_secs(1)).await);
    assert_eq!(first, "a");
    assert_eq!(
        h.next(Duration::from_secs(5)).await,
        None,
        "second unit sent early"
    );
    h.send(AgentMessage::Outcome {
        call_id: first.clone(),
        attempt: 1,
        outcome: ok(),
    })
    .await;
    assert_eq!(
        h.next(Duration::from_secs(1)).await,
        Some(RelayMessage::Ack { call_id: first })
    );
    assert_eq!(work_id(h.next(Duration::from_secs(1)).await), "b");
    let stored = h.queue.get("a").await.unwrap().unwrap();
    assert_eq!(stored.state, CallState::Succeeded);
}

/// An outcome the store cannot write (the database restarting) is not dropped: the
/// session keeps it, writes it again until it is stored, and only then
/// acknowledges it.
#[tokio::test(start_paused = true)]
async fn an_outcome_the_store_could_not_write_is_written_again_then_acked() {
    let queue = Arc::new(MemoryQueue::new());
    enqueue(&queue, "a").await;
    let mut h = Harness::start(queue.clone(), 1);
    assert_eq!(work_id(h.next(Duration::from_secs(1)).await), "a");
    queue.fail_next_completes(3);
    h.send(AgentMessage::Outcome {
        call_id: "a".into(),
        attempt: 1,
        outcome: ok(),
    })
    .await;
    // Not stored yet: no ack (the agent keeps the outcome).
    assert_eq!(h.next(Duration::from_millis(1200)).await, None);
    let pending = queue.get("a").await.unwrap().unwrap();
    assert!(
        matches!(pending.state, CallState::Leased { .. }),
        "{:?}",
        pending.state
    );
    // The store is back: written, then acknowledged, on the same session.
    assert_eq!(
        h.next(Duration::from_secs(5)).await,
        Some(RelayMessage::Ack {
            call_id: "a".into()
        })
    );
    let stored = queue.get("a").await.unwrap().unwrap();
    assert_eq!(stored.state, CallState::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn idle_session_wakes_on_new_work_and_credits() {
    let queue = Arc::new(MemoryQueue::new());
    let mut h = Harness::start(queue.clone(), 0);
    enqueue(&queue, "a").await;
    assert_eq!(h.next(Duration::from_secs(5)).await, None);
    h.send(AgentMessage::Credits { credits: 2 }).await;
    assert_eq!(work_id(h.next(Duration::from_secs(1)).await), "a");
    // Already waiting with a credit left: new work arrives without polling delay.
    enqueue(&queue, "b").await;
    assert_eq!(work_id(h.next(Duration::from_millis(10)).await), "b");
    h.send(AgentMessage::Drain).await;
    enqueue(&queue, "c").await;
    assert_eq!(h.next(Duration::from_secs(10)).await, None);
}

#[tokio::test(start_paused = true)]
async fn silent_agent_times_out_and_its_lease_returns() {
    let queue = Arc::new(MemoryQueue::new());
    enqueue(&queue, "a").await;
    let mut h = Harness::start(queue.clone(), 1);
    assert_eq!(work_id(h.next(Duration::from_secs(1)).await), "a");
    let close = h.next(HEARTBEAT * 3).await;
    assert_eq!(
        close,
        Some(RelayMessage::Close {
            reason: CloseReason::HeartbeatTimeout
        })
    );
    let end = h.task.await.unwrap();
    assert_eq!(end, SessionEnd::Closed(CloseReason::HeartbeatTimeout));
    let units = queue
        .claim(
            &["PRD".into()],
            claimant("s2"),
            1,
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    assert_eq!(units[0].attempt, 2);
}

#[tokio::test(start_paused = true)]
async fn garbage_closes_with_protocol_error_and_shutdown_says_so() {
    let queue = Arc::new(MemoryQueue::new());
    let mut h = Harness::start(queue.clone(), 1);
    h.to_relay.send(Ok(Message::text("{nope"))).await.unwrap();
    assert!(matches!(
        h.next(Duration::from_secs(1)).await,
        Some(RelayMessage::Close {
            reason: CloseReason::ProtocolError { .. }
        })
    ));

    let mut h = Harness::start(queue, 1);
    h.shutdown.cancel();
    assert_eq!(
        h.next(Duration::from_secs(1)).await,
        Some(RelayMessage::Close {
            reason: CloseReason::ShuttingDown
        })
    );
}

#[tokio::test(start_paused = true)]
async fn handshake_welcomes_or_refuses() {
    let scope = Scope::Systems(["PRD".to_owned()].into());
    for (protocol, systems, welcomed) in [
        (PROTOCOL_VERSION, vec!["PRD".to_owned()], true),
        (PROTOCOL_VERSION - 1, vec!["PRD".to_owned()], true),
        (PROTOCOL_VERSION + 1, vec!["PRD".to_owned()], false),
        (PROTOCOL_VERSION, vec!["QAS".to_owned()], false),
    ] {
        let hello = AgentMessage::Hello {
            reconnects: 0,
            protocol,
            agent_id: "a".into(),
            agent_version: "1".into(),
            systems,
            credits: 1,
            capabilities: Vec::new(),
        };
        let frames: Vec<Result<Message, String>> =
            vec![Ok(Message::text(encode_agent_message(&hello)))];
        let mut incoming = stream::iter(frames);
        let (tx, mut rx) = mpsc::channel::<Message>(8);
        let mut sink = PollSender::new(tx);
        let result = handshake::run(&mut sink, &mut incoming, &scope, "s", HEARTBEAT).await;
        assert_eq!(matches!(result, Handshake::Welcomed(_)), welcomed);
        let Some(Message::Text(first)) = rx.recv().await else {
            panic!("no answer")
        };
        let answer = decode_relay_message(first.as_str().as_bytes()).unwrap();
        if welcomed {
            assert!(matches!(answer, RelayMessage::Welcome { .. }));
        } else {
            let RelayMessage::Close { reason } = answer else {
                panic!("expected close, got {answer:?}")
            };
            let Some(Message::Close(Some(frame))) = rx.recv().await else {
                panic!("no close frame")
            };
            assert_eq!(frame.code, reason.code());
        }
    }
}
