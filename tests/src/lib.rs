//! Test harness for end-to-end tests: starts real relays and agents on loopback
//! port 0 in this process, and a small HTTP client that speaks the relay's API.
//!
//! Everything waits on readiness signals (a bound listener, an agent listed as
//! online) with a deadline, never on a bare sleep. [`power_automate`] is a client
//! that retries and polls as a Power Automate action does; [`postgres`] makes
//! test databases and private PostgreSQL servers.
//!
//! Also here: [`SoapSap`] (an SAP system over SOAP-RFC, as `sapbridge sim` serves
//! it), [`GatedSystem`] (holds one call mid-flight in SAP), [`CutProxy`] (cuts an
//! agent's connection to the relay, balances over replicas) and [`Proc`] (a real
//! process, `kill -9`ed when dropped), and [`provide`] (installs the tools a test
//! uses beside Rust: Python reference implementations, Node-RED, Chromium).

mod gate;
pub mod postgres;
pub mod power_automate;
mod processes;
mod provision;
mod proxy;
mod soap;

pub use gate::GatedSystem;
pub use processes::{Proc, free_port};
pub use provision::provide;
pub use proxy::CutProxy;
pub use soap::{SOAP_PASSWORD, SOAP_USER, SoapSap};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sapbridge_agent::AgentConfig;
use sapbridge_relay::RelayConfig;
use sapbridge_sap::SapSystem;
use sapbridge_sap::sim::{SimOptions, Simulator};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The API key every test relay accepts for all systems.
pub const API_KEY: &str = "test-api-key-all";
/// An API key that may only use system `OTHER`.
pub const SCOPED_KEY: &str = "test-api-key-other";
/// The agent token that may serve `SIM` and `OTHER`.
pub const AGENT_TOKEN: &str = "test-agent-token";

/// How long any wait in a test may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A relay running in this process.
pub struct TestRelay {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), sapbridge_relay::RelayError>>,
}

impl TestRelay {
    /// Starts a relay with the test keys and `extra` merged into its config document.
    ///
    /// # Errors
    /// When the config is invalid or the listener cannot bind.
    pub async fn start(extra: Value) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        Self::start_on(listener, extra).await
    }

    /// As [`TestRelay::start`], serving on `listener` (bound beforehand, so that
    /// its address can go into the configuration, as `[cluster] advertise_url`).
    ///
    /// # Errors
    /// When the config is invalid.
    pub async fn start_on(listener: tokio::net::TcpListener, extra: Value) -> Result<Self> {
        let mut doc = json!({
            "api_keys": [
                {"name": "all", "key": API_KEY, "systems": ["*"]},
                {"name": "other-only", "key": SCOPED_KEY, "systems": ["OTHER"]},
            ],
            "agent_tokens": [
                {"name": "agent", "token": AGENT_TOKEN, "systems": ["SIM", "OTHER"]},
            ],
        });
        if let (Some(base), Value::Object(extra)) = (doc.as_object_mut(), extra) {
            base.extend(extra);
        }
        let config: RelayConfig = serde_json::from_value(doc).context("relay config")?;
        config.validate().context("relay config validation")?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(sapbridge_relay::run(listener, config, shutdown.clone()));
        Ok(Self {
            addr,
            shutdown,
            task,
        })
    }

    /// The base URL of the HTTP API.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The agent WebSocket URL.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/agent/connect", self.addr)
    }

    /// Stops the relay and waits for it, re-raising a panic of its task.
    ///
    /// # Errors
    /// When the relay returned an error.
    pub async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        match tokio::time::timeout(DEADLINE, self.task).await {
            Ok(Ok(result)) => result.context("relay failed"),
            Ok(Err(join)) => std::panic::resume_unwind(join.into_panic()),
            Err(_) => bail!("relay did not stop within {DEADLINE:?}"),
        }
    }
}

/// An agent running in this process.
pub struct TestAgent {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), sapbridge_agent::AgentError>>,
}

/// Opens a simulator in `dir` with the given per-call latency.
///
/// # Errors
/// When the simulator's file cannot be opened.
pub fn simulator(dir: &Path, latency: Duration) -> Result<Arc<dyn SapSystem>> {
    let sim = Simulator::open(
        &dir.join("sim.db"),
        SimOptions {
            latency,
            ..SimOptions::default()
        },
    )?;
    Ok(Arc::new(sim))
}

impl TestAgent {
    /// Starts an agent serving `SIM` with `sim`, allowing `allow`.
    ///
    /// # Errors
    /// When the config is invalid.
    pub fn start(
        relay: &TestRelay,
        agent_id: &str,
        data_dir: &Path,
        sim: Arc<dyn SapSystem>,
        allow: &[&str],
        concurrency: u32,
    ) -> Result<Self> {
        Self::start_with_http(
            relay,
            agent_id,
            data_dir,
            sim,
            allow,
            concurrency,
            Value::Null,
        )
    }

    /// As [`TestAgent::start`], with `http` (unless `Null`) as `SIM`'s
    /// `[systems.http]` pass-through block.
    ///
    /// # Errors
    /// When the config is invalid.
    pub fn start_with_http(
        relay: &TestRelay,
        agent_id: &str,
        data_dir: &Path,
        sim: Arc<dyn SapSystem>,
        allow: &[&str],
        concurrency: u32,
        http: Value,
    ) -> Result<Self> {
        Self::spawn(
            &relay.ws_url(),
            agent_id,
            data_dir,
            sim,
            allow,
            concurrency,
            http,
        )
    }

    /// As [`TestAgent::start`], dialling `relay_url` (a [`CutProxy`] in front of
    /// the relay, say) instead of the relay itself.
    ///
    /// # Errors
    /// When the config is invalid.
    pub fn start_via(
        relay_url: &str,
        agent_id: &str,
        data_dir: &Path,
        system: Arc<dyn SapSystem>,
        allow: &[&str],
        concurrency: u32,
    ) -> Result<Self> {
        Self::spawn(
            relay_url,
            agent_id,
            data_dir,
            system,
            allow,
            concurrency,
            Value::Null,
        )
    }

    fn spawn(
        relay_url: &str,
        agent_id: &str,
        data_dir: &Path,
        sim: Arc<dyn SapSystem>,
        allow: &[&str],
        concurrency: u32,
        http: Value,
    ) -> Result<Self> {
        let mut config: Value = json!({
            "relay_url": relay_url,
            "token": AGENT_TOKEN,
            "agent_id": agent_id,
            "concurrency": concurrency,
            "data_dir": data_dir.join(agent_id),
            "backoff_initial_ms": 50,
            "backoff_max_ms": 500,
            "shutdown_grace_secs": 10,
            "systems": [{
                "name": "SIM",
                "backend": {"type": "sim", "db_path": data_dir.join("sim.db"), "latency_ms": 0, "fault_rate": 0.0},
                "allow_functions": allow,
                // The simulator's customer master only: tests that need another
                // table being denied rely on this.
                "allow_tables": ["KNA1"],
            }],
        });
        if !http.is_null() {
            config["systems"][0]["http"] = http;
        }
        let config: AgentConfig = serde_json::from_value(config).context("agent config")?;
        config.validate().context("agent config validation")?;
        let mut systems = HashMap::new();
        systems.insert("SIM".to_owned(), sim);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(sapbridge_agent::run_with_systems(
            config,
            systems,
            shutdown.clone(),
        ));
        Ok(Self { shutdown, task })
    }

    /// Kills the agent as a crash would: its task is aborted mid-flight, its socket
    /// dropped without a goodbye.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Stops the agent gracefully and waits for it.
    ///
    /// # Errors
    /// When the agent returned an error or did not stop in time.
    pub async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        match tokio::time::timeout(DEADLINE, self.task).await {
            Ok(Ok(result)) => result.context("agent failed"),
            Ok(Err(join)) => std::panic::resume_unwind(join.into_panic()),
            Err(_) => bail!("agent did not stop within {DEADLINE:?}"),
        }
    }
}

/// A response: status, headers and JSON body (or `Null`).
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body as JSON, or `Value::Null` when it is not JSON.
    pub body: Value,
}

impl Reply {
    /// A header's value as a string, if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// A client of the relay's HTTP API.
#[derive(Clone)]
pub struct Client {
    base: String,
    key: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client for `relay` sending `key` (or no key when `None`).
    pub fn new(relay: &TestRelay, key: Option<&str>) -> Self {
        Self::at(relay.url(), key)
    }

    /// A client for the relay at `base` (`http://host:port`), a process say.
    pub fn at(base: String, key: Option<&str>) -> Self {
        Self {
            base,
            key: key.map(str::to_owned),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap_or_default(),
        }
    }

    /// Sends a request with an optional raw body and extra headers.
    ///
    /// # Errors
    /// On a transport error.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Result<Reply> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json");
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// `POST`s a JSON value.
    ///
    /// # Errors
    /// On a transport error.
    pub async fn post(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Result<Reply> {
        self.send("POST", path, Some(serde_json::to_vec(body)?), headers)
            .await
    }

    /// `GET`s a path.
    ///
    /// # Errors
    /// On a transport error.
    pub async fn get(&self, path: &str) -> Result<Reply> {
        self.send("GET", path, None, &[]).await
    }

    /// Calls a function synchronously (`Prefer: wait=30`).
    ///
    /// # Errors
    /// On a transport error.
    pub async fn call(&self, system: &str, function: &str, params: &Value) -> Result<Reply> {
        self.post(
            &format!("/v1/systems/{system}/functions/{function}"),
            params,
            &[("prefer", "wait=30")],
        )
        .await
    }

    /// Submits a call with `Prefer: respond-async` (plus `headers`): the relay
    /// answers 202 with the call's `Location` at once.
    ///
    /// # Errors
    /// On a transport error.
    pub async fn call_async(
        &self,
        system: &str,
        function: &str,
        params: &Value,
        headers: &[(&str, &str)],
    ) -> Result<Reply> {
        let mut all = vec![("prefer", "respond-async")];
        all.extend_from_slice(headers);
        self.post(
            &format!("/v1/systems/{system}/functions/{function}"),
            params,
            &all,
        )
        .await
    }

    /// Polls `location` until it answers something other than 202.
    ///
    /// # Errors
    /// When the deadline passes first or on a transport error.
    pub async fn poll(&self, location: &str) -> Result<Reply> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let reply = self.get(location).await?;
            if reply.status != 202 {
                return Ok(reply);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{location} still 202 after {DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `GET /v1/systems` lists `n` online agents for `system`.
    ///
    /// # Errors
    /// When the deadline passes first.
    pub async fn wait_agents(&self, system: &str, n: usize) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let reply = self.get("/v1/systems").await?;
            let count = agents_of(&reply.body, system).len();
            if count == n {
                return Ok(reply.body);
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "system {system} has {count} agents, want {n}: {}",
                    reply.body
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The agents listed for `system` in a `GET /v1/systems` body.
pub fn agents_of(body: &Value, system: &str) -> Vec<Value> {
    body["systems"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s.get("system").and_then(Value::as_str) == Some(system))
        .and_then(|s| s.get("agents"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The customer numbers in `sap`'s customer master (`KNA1`) whose name is `name`
/// (read with `RFC_READ_TABLE`, in a session of its own).
///
/// # Errors
/// When the read fails.
pub async fn customers_named(sap: &dyn SapSystem, name: &str) -> Result<Vec<String>> {
    let condition = format!("NAME1 EQ '{}'", name.replace('\'', "''"));
    let rows = read_customers(sap, &condition).await?;
    Ok(rows.into_iter().map(|(kunnr, _)| kunnr).collect())
}

/// A unit of work that creates customer `name` (on `street`, Walldorf) with
/// `BAPI_CUSTOMER_CREATEFROMDATA1` and commits it, as `POST
/// /v1/systems/{system}/transactions` takes it.
pub fn create_customer_unit(name: &str, street: &str) -> Value {
    json!({
        "commit": true,
        "calls": [{
            "function": "BAPI_CUSTOMER_CREATEFROMDATA1",
            "parameters": {
                "PI_COMPANYDATA": {
                    "NAME": name, "CITY": "Walldorf", "POSTL_COD1": "69190",
                    "STREET": street, "COUNTRY": "DE", "LANGU": "E", "CURRENCY": "EUR"
                },
                "PI_COPYREFERENCE": {
                    "SALESORG": "1000", "DISTR_CHAN": "10", "DIVISION": "00", "REF_CUSTMR": "0000001000"
                }
            }
        }]
    })
}

/// The customers (number, name) in `sap`'s customer master (`KNA1`) whose name
/// starts with `prefix` (read with `RFC_READ_TABLE`, in a session of its own).
///
/// # Errors
/// When the read fails.
pub async fn customers_like(sap: &dyn SapSystem, prefix: &str) -> Result<Vec<(String, String)>> {
    let condition = format!("NAME1 LIKE '{}%'", prefix.replace('\'', "''"));
    read_customers(sap, &condition).await
}

/// `(KUNNR, NAME1)` of the customers in `KNA1` that `condition` selects.
async fn read_customers(sap: &dyn SapSystem, condition: &str) -> Result<Vec<(String, String)>> {
    let read = json!({
        "QUERY_TABLE": "KNA1",
        "DELIMITER": "|",
        "FIELDS": [{"FIELDNAME": "KUNNR"}, {"FIELDNAME": "NAME1"}],
        "OPTIONS": [{"TEXT": condition}],
    });
    let Value::Object(params) = read else {
        bail!("parameters are an object");
    };
    let out = sap.connect().await?.call("RFC_READ_TABLE", &params).await?;
    let rows = out["DATA"]
        .as_array()
        .context("RFC_READ_TABLE without DATA")?;
    Ok(rows
        .iter()
        .map(|row| {
            let wa = row["WA"].as_str().unwrap_or_default();
            let (kunnr, name) = wa.split_once('|').unwrap_or((wa, ""));
            (kunnr.trim().to_owned(), name.trim().to_owned())
        })
        .collect())
}

/// A number from environment variable `name`, else `default` (the knobs of the
/// long-running tests).
pub fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
