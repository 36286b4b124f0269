//! Test support: a fake relay on 127.0.0.1:0 (plain or TLS, raw tokio-tungstenite)
//! that hands each accepted agent connection to the test, and a fake SAP system
//! that counts calls and concurrency and can hold calls at a gate.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use sapbridge_agent::{AgentConfig, AgentError, BackendConfig, SystemConfig};
use sapbridge_proto::{
    AgentMessage, CommitPolicy, ErrorGroup, FunctionCall, PROTOCOL_VERSION, Parameters,
    RelayMessage, RfcError, Secret, Unit, decode_agent_message, encode_relay_message,
};
use sapbridge_sap::{SapConnection, SapSystem};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_util::sync::CancellationToken;

/// The agent token the fake relay accepts.
pub const TOKEN: &str = "agent-token-123";

/// Upper bound of every wait in the tests.
pub const WAIT: Duration = Duration::from_secs(15);

/// Awaits `future` for at most [`WAIT`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(WAIT, future)
        .await
        .map_err(|_| anyhow!("timed out waiting for {what}"))
}

/// Any byte stream a WebSocket can run on.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What the fake relay saw.
pub enum Event {
    /// An upgrade was refused with 401 (wrong token or told to refuse).
    Rejected,
    /// An agent connected with the right token.
    Connected(Box<Conn>),
}

/// A fake relay listening on 127.0.0.1:0.
pub struct FakeRelay {
    /// The agent endpoint URL.
    pub url: String,
    events: mpsc::UnboundedReceiver<Event>,
    /// How many upcoming upgrades to refuse with 401 even with the right token.
    pub refuse_next: Arc<AtomicUsize>,
}

impl FakeRelay {
    /// Starts a plain `ws://` relay.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(None).await
    }

    /// Starts a relay, over TLS when an acceptor is given.
    pub async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        let url = format!("{scheme}://127.0.0.1:{port}/v1/agent/connect");
        let (tx, events) = mpsc::unbounded_channel();
        let refuse_next = Arc::new(AtomicUsize::new(0));
        let refuse = refuse_next.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let tx = tx.clone();
                let tls = tls.clone();
                let refuse = refuse.clone();
                tokio::spawn(async move {
                    let io: Box<dyn Io> = match tls {
                        Some(acceptor) => match acceptor.accept(tcp).await {
                            Ok(stream) => Box::new(stream),
                            Err(_) => return,
                        },
                        None => Box::new(tcp),
                    };
                    accept(io, tx, refuse).await;
                });
            }
        });
        Ok(Self {
            url,
            events,
            refuse_next,
        })
    }

    /// The next event.
    pub async fn event(&mut self) -> anyhow::Result<Event> {
        within("a relay event", self.events.recv())
            .await?
            .context("relay stopped")
    }

    /// The next accepted connection (refusals are skipped).
    pub async fn conn(&mut self) -> anyhow::Result<Conn> {
        loop {
            if let Event::Connected(conn) = self.event().await? {
                return Ok(*conn);
            }
        }
    }
}

// The callback's error type is fixed by tungstenite.
#[allow(clippy::result_large_err)]
async fn accept(io: Box<dyn Io>, tx: mpsc::UnboundedSender<Event>, refuse: Arc<AtomicUsize>) {
    let refused = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = refused.clone();
    let callback =
        move |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
            let auth = request
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            let told_to_refuse = refuse
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if told_to_refuse
                || auth != Some(&format!("Bearer {TOKEN}"))
                || request.uri().path() != "/v1/agent/connect"
            {
                flag.store(true, Ordering::SeqCst);
                let mut error = ErrorResponse::new(Some("bad token".into()));
                *error.status_mut() = StatusCode::UNAUTHORIZED;
                return Err(error);
            }
            Ok(response)
        };
    match tokio_tungstenite::accept_hdr_async(io, callback).await {
        Ok(ws) => {
            let _ = tx.send(Event::Connected(Box::new(Conn { ws })));
        }
        Err(_) if refused.load(Ordering::SeqCst) => {
            let _ = tx.send(Event::Rejected);
        }
        Err(_) => {}
    }
}

/// One agent connection, seen from the relay.
pub struct Conn {
    /// The socket.
    pub ws: WebSocketStream<Box<dyn Io>>,
}

/// The hello's fields.
#[derive(Debug)]
pub struct Hello {
    pub agent_id: String,
    pub agent_version: String,
    pub systems: Vec<String>,
    pub credits: u32,
    pub capabilities: Vec<sapbridge_proto::SystemCapabilities>,
    pub reconnects: u64,
}

impl Conn {
    /// Sends a relay message.
    pub async fn send(&mut self, message: RelayMessage) -> anyhow::Result<()> {
        self.ws
            .send(Message::text(encode_relay_message(&message)))
            .await?;
        Ok(())
    }

    /// The next agent message, heartbeats included; `None` after a close frame or
    /// the end of the stream.
    pub async fn recv_any(&mut self) -> anyhow::Result<Option<AgentMessage>> {
        loop {
            match within("an agent frame", self.ws.next()).await? {
                None | Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(Message::Text(text))) => {
                    return Ok(Some(decode_agent_message(text.as_bytes())?));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => bail!("agent socket failed: {e}"),
            }
        }
    }

    /// The next agent message that is not a heartbeat (heartbeats are answered).
    pub async fn recv(&mut self) -> anyhow::Result<AgentMessage> {
        loop {
            match self.recv_any().await? {
                Some(AgentMessage::Heartbeat) => self.send(RelayMessage::Heartbeat).await?,
                Some(message) => return Ok(message),
                None => bail!("the agent closed the connection"),
            }
        }
    }

    /// Reads the hello and answers with a welcome.
    pub async fn handshake(&mut self, heartbeat_secs: u64) -> anyhow::Result<Hello> {
        let AgentMessage::Hello {
            protocol,
            agent_id,
            agent_version,
            systems,
            credits,
            capabilities,
            reconnects,
        } = self.recv().await?
        else {
            bail!("expected hello");
        };
        assert_eq!(protocol, PROTOCOL_VERSION);
        self.send(RelayMessage::Welcome {
            protocol: PROTOCOL_VERSION,
            session_id: "s_test".into(),
            heartbeat_secs,
            features: Vec::new(),
        })
        .await?;
        Ok(Hello {
            agent_id,
            agent_version,
            systems,
            credits,
            capabilities,
            reconnects,
        })
    }

    /// Waits for an outcome and acknowledges it: `(call_id, attempt, outcome)`.
    pub async fn outcome(&mut self) -> anyhow::Result<(String, u32, sapbridge_proto::Outcome)> {
        let (call_id, attempt, outcome) = self.outcome_unacked().await?;
        self.send(RelayMessage::Ack {
            call_id: call_id.clone(),
        })
        .await?;
        Ok((call_id, attempt, outcome))
    }

    /// Waits for an outcome without acknowledging it.
    pub async fn outcome_unacked(
        &mut self,
    ) -> anyhow::Result<(String, u32, sapbridge_proto::Outcome)> {
        match self.recv().await? {
            AgentMessage::Outcome {
                call_id,
                attempt,
                outcome,
            } => Ok((call_id, attempt, outcome)),
            other => bail!("expected outcome, got {other:?}"),
        }
    }
}

/// A fake SAP system. `STFC_CONNECTION` echoes `REQUTEXT`; `BAPI_CUSTOMER_*` answers
/// with a RETURN of TYPE `E` when parameter `FAIL` is set, else `S`; the transaction
/// BAPIs succeed; everything else is `FU_NOT_FOUND`.
#[derive(Default, Clone)]
pub struct FakeSap {
    /// Every function called, in order.
    pub log: Arc<std::sync::Mutex<Vec<String>>>,
    /// Calls running right now.
    pub running: Arc<AtomicUsize>,
    /// The most calls ever running at once.
    pub max_running: Arc<AtomicUsize>,
    /// When set, each call waits for a permit first.
    pub gate: Option<Arc<Semaphore>>,
    /// Told about each call as it starts.
    pub started: Option<mpsc::UnboundedSender<String>>,
}

impl FakeSap {
    /// The functions called so far.
    pub fn calls(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

#[async_trait]
impl SapSystem for FakeSap {
    async fn connect(&self) -> Result<Box<dyn SapConnection>, RfcError> {
        Ok(Box::new(self.clone()))
    }
}

#[async_trait]
impl SapConnection for FakeSap {
    async fn call(&mut self, function: &str, params: &Parameters) -> Result<Parameters, RfcError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        self.log.lock().unwrap().push(function.to_owned());
        if let Some(started) = &self.started {
            let _ = started.send(function.to_owned());
        }
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        tokio::task::yield_now().await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        let value = match function {
            "STFC_CONNECTION" => {
                json!({"ECHOTEXT": params.get("REQUTEXT").cloned().unwrap_or_default()})
            }
            "BAPI_TRANSACTION_COMMIT" | "BAPI_TRANSACTION_ROLLBACK" => {
                json!({"RETURN": {"TYPE": ""}})
            }
            f if f.starts_with("BAPI_CUSTOMER_") => {
                let kind = if params.contains_key("FAIL") {
                    "E"
                } else {
                    "S"
                };
                json!({"CUSTOMERNO": "0000100001",
                       "RETURN": [{"TYPE": kind, "MESSAGE": format!("{f} says {kind}")}]})
            }
            _ => {
                return Err(RfcError::new(
                    ErrorGroup::AbapApplicationFailure,
                    "FU_NOT_FOUND",
                    function,
                ));
            }
        };
        let Value::Object(map) = value else {
            unreachable!()
        };
        Ok(map)
    }
}

/// An agent configuration for `url` serving system `SIM` with `allow`, with its own
/// fresh data directory (so each test has its own journal).
pub fn config(url: &str, allow: &[&str], concurrency: u32) -> AgentConfig {
    let system = SystemConfig {
        name: "SIM".into(),
        backend: BackendConfig::Sim {
            db_path: None,
            latency_ms: 0,
            fault_rate: 0.0,
        },
        allow_functions: allow.iter().map(|s| (*s).to_owned()).collect(),
        allow_tables: vec!["*".into()],
        http: None,
    };
    let mut config = AgentConfig::new(url, Secret::new(TOKEN), vec![system]);
    config.agent_id = "test-agent".into();
    config.concurrency = concurrency;
    config.backoff_initial_ms = 10;
    config.backoff_max_ms = 50;
    config.shutdown_grace_secs = 10;
    config.data_dir = temp_dir("data");
    config
}

/// A running agent under test.
pub struct Agent {
    /// Cancel to shut it down.
    pub shutdown: CancellationToken,
    task: JoinHandle<Result<(), AgentError>>,
}

impl Agent {
    /// Starts `run_with_systems` with `sap` as system `SIM`.
    pub fn start(config: AgentConfig, sap: &FakeSap) -> Self {
        let systems: HashMap<String, Arc<dyn SapSystem>> = HashMap::from([(
            "SIM".to_owned(),
            Arc::new(sap.clone()) as Arc<dyn SapSystem>,
        )]);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(sapbridge_agent::run_with_systems(
            config,
            systems,
            shutdown.clone(),
        ));
        Self { shutdown, task }
    }

    /// Starts `run` (backends from the configuration).
    pub fn start_configured(config: AgentConfig) -> Self {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(sapbridge_agent::run(config, shutdown.clone()));
        Self { shutdown, task }
    }

    /// Waits for the agent to return, re-raising its panic.
    pub async fn join(self) -> anyhow::Result<()> {
        match within("the agent to stop", self.task).await? {
            Ok(result) => Ok(result?),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(e.into()),
        }
    }
}

/// A unit of one call.
pub fn unit(call_id: &str, function: &str) -> Unit {
    let mut parameters = Parameters::new();
    parameters.insert("REQUTEXT".into(), Value::from(format!("hello {call_id}")));
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

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sapbridge-agent-{name}-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// Only a unique suffix for a directory name, not the agent's clock.
#[allow(clippy::disallowed_methods)]
fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()))
}
