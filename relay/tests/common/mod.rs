//! Test support: a relay on `127.0.0.1:0` and a fake agent speaking the wire
//! protocol over a real WebSocket (tokio-tungstenite).

#![allow(dead_code, unreachable_pub)]

pub mod business;
pub mod sim_agent;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sapbridge_proto::{
    AgentMessage, CallResult, Outcome, PROTOCOL_VERSION, Parameters, RelayMessage, Unit,
    decode_relay_message, encode_agent_message,
};
use sapbridge_relay::{RelayConfig, RelayError};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// An API key covering every system.
pub const API_KEY: &str = "test-key-all";
/// An API key covering only QAS.
pub const QAS_KEY: &str = "test-key-qas";
/// An agent token for PRD and QAS.
pub const AGENT_TOKEN: &str = "test-agent-token";
/// An agent token for PRD only.
pub const PRD_TOKEN: &str = "test-agent-prd";

/// How long any single wait in a test may take before it fails.
pub const STEP: Duration = Duration::from_secs(10);

/// A running relay.
pub struct TestRelay {
    pub url: String,
    pub ws_url: String,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), RelayError>>,
}

/// The test configuration as JSON, so tests can change fields before starting.
pub fn config_json() -> Value {
    json!({
        "api_keys": [
            {"name": "all", "key": API_KEY, "systems": ["*"]},
            {"name": "qas", "key": QAS_KEY, "systems": ["QAS"]},
        ],
        "agent_tokens": [
            {"name": "plant", "token": AGENT_TOKEN, "systems": ["PRD", "QAS"]},
            {"name": "prd", "token": PRD_TOKEN, "systems": ["PRD"]},
        ],
    })
}

impl TestRelay {
    /// Starts a relay with the default test configuration.
    pub async fn start() -> Self {
        Self::start_with(config_json()).await
    }

    /// Starts a relay with `config`.
    pub async fn start_with(config: Value) -> Self {
        let config: RelayConfig = serde_json::from_value(config).expect("config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(sapbridge_relay::run(listener, config, shutdown.clone()));
        Self {
            url: format!("http://{addr}"),
            ws_url: format!("ws://{addr}/v1/agent/connect"),
            http: reqwest::Client::new(),
            shutdown,
            task,
        }
    }

    /// A POST of `body` to a function with the all-systems key.
    pub fn call(&self, system: &str, function: &str, body: Value) -> reqwest::RequestBuilder {
        self.http
            .post(format!(
                "{}/v1/systems/{system}/functions/{function}",
                self.url
            ))
            .bearer_auth(API_KEY)
            .json(&body)
    }

    /// A GET with the all-systems key, of a path or of an absolute URL (a
    /// `Location`).
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url_of(path)).bearer_auth(API_KEY)
    }

    /// The URL of `path` on this relay; an absolute URL (a `Location`) as it is.
    pub fn url_of(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.url)
        }
    }

    /// The JSON body of a GET with the all-systems key.
    pub async fn get_json(&self, path: &str) -> Value {
        self.get(path)
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON body")
    }

    /// Polls `/metrics` until the queue depth is `depth`.
    pub async fn wait_queue_depth(&self, depth: u64) {
        let want = format!("sapbridge_queue_depth {depth}\n");
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let text = self
                .http
                .get(format!("{}/metrics", self.url))
                .send()
                .await
                .expect("metrics")
                .text()
                .await
                .expect("metrics text");
            if text.contains(&want) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "queue depth never {depth}:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the relay and re-raises its panic or error.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("relay stops in time");
        match result {
            Ok(result) => result.expect("relay ran cleanly"),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket to the relay with `token`.
///
/// # Errors
/// The handshake error (an HTTP 401 shows as `tungstenite::Error::Http`).
pub async fn open_socket(relay: &TestRelay, token: &str) -> Result<Socket, tungstenite::Error> {
    let mut request = relay.ws_url.as_str().into_client_request()?;
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let (socket, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(socket)
}

/// A fake agent speaking the protocol.
pub struct FakeAgent {
    pub socket: Socket,
    pub agent_id: String,
    pub session_id: String,
    /// The close frame received, if any.
    pub close_frame: Option<CloseFrame>,
}

/// The hello a fake agent sends.
pub fn hello(agent_id: &str, systems: &[&str], credits: u32) -> AgentMessage {
    AgentMessage::Hello {
        reconnects: 0,
        protocol: PROTOCOL_VERSION,
        agent_id: agent_id.into(),
        agent_version: "test-1.0".into(),
        systems: systems.iter().map(|s| s.to_string()).collect(),
        credits,
        capabilities: Vec::new(),
    }
}

impl FakeAgent {
    /// Connects with `token` and sends `hello`, without waiting for the answer.
    pub async fn open(relay: &TestRelay, token: &str, hello: AgentMessage) -> Self {
        let agent_id = match &hello {
            AgentMessage::Hello { agent_id, .. } => agent_id.clone(),
            _ => String::new(),
        };
        let socket = open_socket(relay, token).await.expect("websocket");
        let mut agent = Self {
            socket,
            agent_id,
            session_id: String::new(),
            close_frame: None,
        };
        agent.send(&hello).await;
        agent
    }

    /// Connects, says hello and waits for the welcome.
    pub async fn connect(
        relay: &TestRelay,
        agent_id: &str,
        systems: &[&str],
        credits: u32,
    ) -> Self {
        let mut agent = Self::open(relay, AGENT_TOKEN, hello(agent_id, systems, credits)).await;
        match agent.recv().await {
            Some(RelayMessage::Welcome { session_id, .. }) => agent.session_id = session_id,
            other => panic!("expected welcome, got {other:?}"),
        }
        agent
    }

    /// Sends a message.
    pub async fn send(&mut self, message: &AgentMessage) {
        self.socket
            .send(Message::text(encode_agent_message(message)))
            .await
            .expect("send");
    }

    /// The next message other than a heartbeat within `wait`; `None` when the socket
    /// closed or nothing came.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<RelayMessage> {
        loop {
            let frame = tokio::time::timeout(wait, self.socket.next())
                .await
                .ok()??;
            match frame.ok()? {
                Message::Text(text) => {
                    let message = decode_relay_message(text.as_bytes()).expect("relay frame");
                    if message != RelayMessage::Heartbeat {
                        return Some(message);
                    }
                }
                Message::Close(frame) => {
                    self.close_frame = frame;
                    return None;
                }
                _ => {}
            }
        }
    }

    /// The next message other than a heartbeat (bounded by [`STEP`]).
    pub async fn recv(&mut self) -> Option<RelayMessage> {
        self.recv_within(STEP).await
    }

    /// The next unit of work.
    pub async fn next_work(&mut self) -> Unit {
        match self.recv().await {
            Some(RelayMessage::Work { unit }) => unit,
            other => panic!("expected work, got {other:?}"),
        }
    }

    /// Reports an outcome and waits for its ack.
    pub async fn finish(&mut self, unit: &Unit, outcome: Outcome) {
        self.send(&AgentMessage::Outcome {
            call_id: unit.call_id.clone(),
            attempt: unit.attempt,
            outcome,
        })
        .await;
        match self.recv().await {
            Some(RelayMessage::Ack { call_id }) => assert_eq!(call_id, unit.call_id),
            other => panic!("expected ack, got {other:?}"),
        }
    }

    /// Answers a unit with one successful result.
    pub async fn succeed(&mut self, unit: &Unit, result: Value) {
        self.finish(unit, ok(result)).await;
    }
}

/// A successful outcome of one call with `result`.
pub fn ok(result: Value) -> Outcome {
    Outcome::Completed {
        results: vec![CallResult::Ok(params(result))],
        transaction: None,
    }
}

/// A JSON object as parameters.
pub fn params(value: Value) -> Parameters {
    match value {
        Value::Object(map) => map,
        _ => Parameters::new(),
    }
}
