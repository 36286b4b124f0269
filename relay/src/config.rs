//! The relay's configuration: API keys, agent tokens, limits and timings.
//!
//! Read from TOML (or any serde format) with unknown fields rejected, then checked by
//! [`RelayConfig::validate`], which names the first problem in one sentence.
//! Secrets are [`Secret`]s, so `Debug` never shows them; the relay keeps only their
//! SHA-256 hashes once running.

use std::collections::HashSet;

use sapbridge_proto::{MAX_FRAME_BYTES, Secret};
use serde::Deserialize;
use sha2::{Digest, Sha256};

pub use crate::queue::config::{DatabaseUrl, Durability, QueueConfig, StoreKind};
use crate::tls::TlsConfig;

/// The most runtime threads a relay may ask for.
const MAX_WORKER_THREADS: usize = 256;

/// The longest connection timeout (head, idle, body) a relay may set: one day.
const MAX_CONNECTION_TIMEOUT_SECS: u64 = 86_400;

/// The most connections of one kind a relay may allow.
const MAX_CONNECTIONS: usize = 1_000_000;

/// The scope value that stands for every system.
pub(crate) const ALL_SYSTEMS: &str = "*";

/// The relay's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// The API keys clients authenticate with.
    pub api_keys: Vec<ApiKeyConfig>,
    /// The tokens agents authenticate with; the union of their systems and those
    /// of the agent tokens in the queue store (`/v1/admin/agent-tokens`) is the
    /// set of systems the relay knows. May be empty when an API key holds the
    /// operator scope (it creates tokens through the API).
    pub agent_tokens: Vec<AgentTokenConfig>,
    /// The largest request body accepted, in bytes (default 4 MiB).
    pub body_limit_bytes: usize,
    /// How long a call is held for its result when the client sends no
    /// `Prefer: wait=N` (default 60 s).
    pub default_wait_secs: u64,
    /// The longest `Prefer: wait=N` honoured (default 120 s).
    pub max_wait_secs: u64,
    /// How long a call may wait in the queue for an agent before it expires
    /// (default one day). `Sapbridge-Queue-Ttl` may shorten it per call.
    pub queue_ttl_secs: u64,
    /// How long an agent may take for a unit it was handed (default 300 s): a
    /// deadline, not renewed by heartbeats. The agent must start the unit before it;
    /// a unit not answered by then goes back to the queue (for the same agent first,
    /// see `owner_hold_secs`). Set it above the longest SAP call you expect.
    pub lease_secs: u64,
    /// How long a call whose lease ended without an outcome (the lease ran out, or
    /// the agent's connection died) waits for the same agent to come back, since only
    /// that agent's journal knows whether the unit started (default 60 s). After it,
    /// another agent may take the call, marked in doubt (it then runs the unit only
    /// where that cannot run it twice, else answers `OUTCOME_UNKNOWN`); past the
    /// call's TTL such a call fails with `OUTCOME_UNKNOWN` (502).
    pub owner_hold_secs: u64,
    /// The heartbeat interval proposed to agents (default 15 s).
    pub heartbeat_secs: u64,
    /// How long finished calls stay readable at `GET /v1/calls/{id}` (default 7 days).
    pub result_retention_secs: u64,
    /// The relay's public base URL (`https://relay.example.com`) that `Location`
    /// headers start with.
    pub public_url: Option<String>,
    /// Reverse proxies (addresses or networks such as `10.0.0.0/8`) whose
    /// `Forwarded` / `X-Forwarded-Proto`/`-Host`/`-Prefix` headers say how clients
    /// reach the relay, and whose `Forwarded: for=` / `X-Forwarded-For` name the
    /// client the audit log records; those headers from any other peer are
    /// ignored. Default none.
    pub trusted_proxies: Vec<String>,
    /// Whether `Location` headers are absolute URLs built from the request (its
    /// `Host`, or behind `trusted_proxies` the forwarding headers). They are
    /// whenever `public_url` or `trusted_proxies` is set; this makes them so
    /// without either. Default `false`: a path such as `/v1/calls/{id}`.
    pub absolute_locations: bool,
    /// Whether `GET /metrics` answers only to an API key with the operator scope
    /// (sent as `Authorization: Bearer`, as Prometheus' `authorization` scrape
    /// setting does). Default `false`: anyone who reaches the relay may scrape it.
    pub metrics_require_key: bool,
    /// The `[queue]` table: the store that holds calls (see [`QueueConfig`]).
    pub queue: QueueConfig,
    /// The `[cluster]` table: how replicas sharing a PostgreSQL store reach each
    /// other to forward pass-through requests (see [`ClusterConfig`]).
    pub cluster: ClusterConfig,
    // --- high-level actions (customers, tables, function metadata) ---
    /// The `[customer_defaults]` table: what `POST /v1/systems/{system}/customers`
    /// uses when the request omits the reference customer, sales area, language or
    /// currency.
    pub customer_defaults: CustomerDefaults,
    /// How long fetched function interfaces stay cached per system (default 900 s);
    /// a change in the system's set of agents drops them earlier. 0 disables the cache.
    pub metadata_cache_secs: u64,
    // --- HTTP pass-through (`ANY /v1/systems/{system}/http/{*path}`) ---
    /// The largest pass-through request body, in bytes (default 16 MiB); larger
    /// bodies answer 413. Bodies stream in chunks, so this is not bound by the frame
    /// size.
    pub http_body_limit_bytes: usize,
    /// How long a pass-through request waits for the backend's response head, and
    /// the longest pause between two response body chunks (default 60 s); 504 after.
    /// Also the longest the relay reads the rest of a request body that the backend
    /// answered before reading.
    pub http_timeout_secs: u64,
    /// How many pass-through requests one agent session carries at once (default
    /// 32); when every agent of a system is at the limit, requests answer 503.
    pub http_max_in_flight_per_agent: u32,
    /// Threads of the `sapbridge relay` process's async runtime (default 0: one per
    /// CPU). Every request and agent message crosses tasks; with several workers
    /// those hand-offs often wake another thread (and free memory another thread
    /// allocated), which costs more than it gains when the relay shares its CPUs
    /// with other busy processes: there, 1 worker carries more calls and
    /// pass-through requests per second than 2. Keep the default on a host of its
    /// own, where more workers let the relay use every core.
    pub worker_threads: usize,
    // --- client connections (see `serve`) ---
    /// How long a client has to send a complete request head (default 10 s),
    /// counted from the connection's opening for its first request and from the
    /// first byte of each later one; then the connection is closed.
    pub header_read_timeout_secs: u64,
    /// How long a kept-alive connection may wait for its next request (default
    /// 60 s); then it is closed. A connection whose request is still being answered
    /// (a long `Prefer: wait`, a streaming download) is not idle.
    pub idle_timeout_secs: u64,
    /// The longest the relay waits for the next piece of a request body it is
    /// reading (default 30 s); then the request answers 408 and the connection
    /// closes. A body the relay is not reading (pass-through waiting for its agent)
    /// is not timed.
    pub body_read_timeout_secs: u64,
    /// The most client connections open at once (default 512). Past it a new
    /// connection's request is answered 503 with `Retry-After` and the connection
    /// closed, except agent WebSocket upgrades (see `max_agent_connections`).
    pub max_connections: usize,
    /// The most agent WebSockets open at once (default 128). They leave
    /// `max_connections` once upgraded, and a full `max_connections` does not keep
    /// agents out; past this limit a connecting agent is answered 503.
    pub max_agent_connections: usize,
    /// The `[audit]` table: how long the audit log keeps its records (see
    /// [`AuditConfig`]).
    pub audit: AuditConfig,
    /// The `[tls]` table: the relay serves `https://` and `wss://` itself with this
    /// certificate (see [`TlsConfig`]); none by default (plain HTTP, for a TLS proxy
    /// in front or a relay on loopback).
    pub tls: Option<TlsConfig>,
    /// The `[webhooks]` table: where calls' answers may be delivered (see
    /// [`WebhooksConfig`]).
    pub webhooks: WebhooksConfig,
    /// The `[console]` table: the operator console at `/console` (see
    /// [`ConsoleConfig`]).
    pub console: ConsoleConfig,
}

/// Webhooks (`[webhooks]`): a call may name a callback URL
/// (`Sapbridge-Callback` header), and an API key may subscribe a URL to the
/// answers of all its calls; the relay POSTs each answer there, signed as the
/// Standard Webhooks specification says with the key's `webhook_secret`.
///
/// The relay sends requests into networks a client names, so nothing is allowed
/// until it is listed: a callback's host must match `allowed_hosts`, its scheme
/// must be `https` (unless `allow_http`), and every address its name resolves to
/// must be public (unless `allow_private_networks`): loopback, private, link-local
/// (cloud metadata), shared, multicast and reserved ranges are refused when the
/// connection is made, so a name that resolves differently later gains nothing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Hosts callback URLs may name: an exact name or address
    /// (`hooks.example.com`), a suffix pattern (`*.logic.azure.com`), or `*` for
    /// any host. Default none: callbacks are refused.
    pub allowed_hosts: Vec<String>,
    /// Whether callbacks may reach loopback, private, link-local and other
    /// non-public addresses (default `false`; `sapbridge dev` sets it).
    pub allow_private_networks: bool,
    /// Whether callbacks may use plain `http://` (default `false`).
    pub allow_http: bool,
    /// How long a delivery is retried after its call ended, with exponential
    /// back-off (default 86,400 s: 24 hours); then it fails.
    pub retry_for_secs: u64,
    /// How long one attempt may take (default 10 s).
    pub timeout_secs: u64,
    /// How many deliveries one relay sends at once (default 16).
    pub concurrency: usize,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            allow_private_networks: false,
            allow_http: false,
            retry_for_secs: 86_400,
            timeout_secs: 10,
            concurrency: 16,
        }
    }
}

/// A new random webhook secret: `whsec_` and the base64 of 32 random bytes.
pub fn new_webhook_secret() -> String {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The bytes of a Standard Webhooks secret: `whsec_` and the base64 of 24 to 64
/// random bytes; `None` for anything else.
pub(crate) fn webhook_secret_bytes(secret: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let encoded = secret.strip_prefix("whsec_")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    (24..=64).contains(&bytes.len()).then_some(bytes)
}

/// The audit log (`[audit]`): every request, refusal, call outcome and
/// credential reload is recorded in the queue store and read at `GET /v1/audit`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// How long records are kept, in days (default 90); the reaper deletes older
    /// ones. At least 1.
    pub retention_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { retention_days: 90 }
    }
}

/// The operator console at `/console` (`[console]`): signed in with an API key
/// that holds the operator scope; its sessions live in the relay's memory (a
/// restart signs everyone out, and replicas do not share them).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Whether the relay serves the console (default `true`).
    pub enabled: bool,
    /// How long a session lasts without a request, in seconds (default 1800);
    /// then it has expired and the operator signs in again. At least 1.
    pub session_idle_secs: u64,
    /// How long a session lasts at most, in seconds, however busy (default 43200,
    /// 12 hours). At least `session_idle_secs`.
    pub session_max_secs: u64,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            session_idle_secs: 1800,
            session_max_secs: 43_200,
        }
    }
}

/// Defaults for creating customers (`[customer_defaults]`); every field is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CustomerDefaults {
    /// The reference customer new customers copy from (`REF_CUSTMR`, `1000` or
    /// `0000001000`).
    pub reference_customer: Option<String>,
    /// Sales organization of the copy reference (`SALESORG`, up to 4 characters).
    pub sales_org: Option<String>,
    /// Distribution channel of the copy reference (`DISTR_CHAN`, 2 characters).
    pub distribution_channel: Option<String>,
    /// Division of the copy reference (`DIVISION`, 2 characters).
    pub division: Option<String>,
    /// Language: an ISO 639 code (`EN`) or SAP's one-letter key (`E`).
    pub language: Option<String>,
    /// Currency key (`EUR`).
    pub currency: Option<String>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            api_keys: Vec::new(),
            agent_tokens: Vec::new(),
            body_limit_bytes: 4 * 1024 * 1024,
            default_wait_secs: 60,
            max_wait_secs: 120,
            queue_ttl_secs: 86_400,
            lease_secs: 300,
            owner_hold_secs: 60,
            heartbeat_secs: sapbridge_proto::DEFAULT_HEARTBEAT_SECS,
            result_retention_secs: 7 * 86_400,
            public_url: None,
            trusted_proxies: Vec::new(),
            absolute_locations: false,
            metrics_require_key: false,
            queue: QueueConfig::default(),
            cluster: ClusterConfig::default(),
            customer_defaults: CustomerDefaults::default(),
            metadata_cache_secs: 900,
            http_body_limit_bytes: 16 * 1024 * 1024,
            http_timeout_secs: 60,
            http_max_in_flight_per_agent: 32,
            worker_threads: 0,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            body_read_timeout_secs: 30,
            max_connections: 512,
            max_agent_connections: 128,
            audit: AuditConfig::default(),
            tls: None,
            webhooks: WebhooksConfig::default(),
            console: ConsoleConfig::default(),
        }
    }
}

/// The shortest cluster secret accepted, in characters.
pub(crate) const MIN_CLUSTER_SECRET_CHARS: usize = 32;

/// The `[cluster]` table: replica-to-replica forwarding of HTTP pass-through.
///
/// A replica that gets a pass-through request for a system none of its own
/// agents forwards HTTP for sends it on to a replica that has such an agent, at
/// the address that replica recorded in the database (its `advertise_url`),
/// signed with the shared `secret`. Both unset (the default): this replica
/// neither forwards nor takes forwarded requests.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The base URL at which the other replicas reach this one
    /// (`http://10.0.0.5:8080`): its own listener, on an address of the private
    /// network the replicas share. Needs `secret` and the PostgreSQL store.
    pub advertise_url: Option<String>,
    /// The secret every replica of the cluster shares (at least
    /// [`MIN_CLUSTER_SECRET_CHARS`] characters): forwarded requests are signed
    /// with it (HMAC-SHA-256) and refused unless their signature checks. Never
    /// logged; prefer `SAPBRIDGE_CLUSTER_SECRET` to writing it in the file.
    pub secret: Option<Secret>,
}

impl ClusterConfig {
    fn validate(&self, store: StoreKind) -> Result<(), ConfigError> {
        let out = |field, problem: &str| {
            Err(ConfigError::OutOfRange {
                field,
                problem: problem.to_owned(),
            })
        };
        if let Some(secret) = &self.secret
            && secret.expose().chars().count() < MIN_CLUSTER_SECRET_CHARS
        {
            return out(
                "cluster.secret",
                &format!(
                    "must be at least {MIN_CLUSTER_SECRET_CHARS} characters (openssl rand -hex 32)"
                ),
            );
        }
        let Some(url) = &self.advertise_url else {
            return Ok(());
        };
        let parsed: Option<http::Uri> = url.parse().ok();
        let fits = parsed.is_some_and(|u| {
            u.scheme_str() == Some("http")
                && u.host().is_some_and(|h| !h.is_empty())
                && matches!(u.path(), "" | "/")
                && u.query().is_none()
        });
        if !fits {
            return out(
                "cluster.advertise_url",
                "must be an http:// base URL without path or query (http://10.0.0.5:8080); \
                 https:// is not supported yet: keep replica-to-replica traffic on a private \
                 network",
            );
        }
        if self.secret.is_none() {
            return out(
                "cluster.advertise_url",
                "needs cluster.secret (or SAPBRIDGE_CLUSTER_SECRET): forwarded requests are \
                 refused unless signed with it",
            );
        }
        if store != StoreKind::Postgres {
            return out(
                "cluster.advertise_url",
                "replicas find each other in the PostgreSQL store: needs [queue] store = \
                 \"postgres\"",
            );
        }
        Ok(())
    }
}

/// A client API key and the systems it may call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// A name for logs and metrics (never the key itself).
    pub name: String,
    /// The key in clear text; give this or `key_sha256`.
    #[serde(default)]
    pub key: Option<Secret>,
    /// The hex SHA-256 of the key; give this or `key`.
    #[serde(default)]
    pub key_sha256: Option<String>,
    /// The systems the key may call; `"*"` means all.
    pub systems: Vec<String>,
    /// The operator scope: the key may read and cancel the calls of every key (of
    /// the systems it covers), not only its own. Default `false`: a call belongs
    /// to the key that created it, and to any other key it does not exist.
    #[serde(default)]
    pub operator: bool,
    /// The key's rate limit: requests to systems per second (a token bucket;
    /// default: none). Past it a request answers `429` with `Retry-After`
    /// (problem type `rate-limited`). Each relay replica keeps its own buckets:
    /// with N replicas a key may reach N times this rate.
    #[serde(default)]
    pub rate_per_sec: Option<f64>,
    /// The token bucket's size: requests the key may send at once after a pause
    /// (default: one second's worth of `rate_per_sec`, at least 1). Needs
    /// `rate_per_sec`.
    #[serde(default)]
    pub burst: Option<u32>,
    /// The most calls of this key queued or running at once (default: no limit).
    /// Past it a new call answers `429` with `Retry-After` (problem type
    /// `too-many-in-flight`).
    #[serde(default)]
    pub max_in_flight: Option<u32>,
    /// The secret that signs the webhooks of this key's calls (Standard Webhooks:
    /// `whsec_` and the base64 of 24 to 64 random bytes; `sapbridge keys new
    /// --webhook-secret` makes one). Receivers verify with it. Default none: the
    /// key's calls cannot ask for callbacks.
    #[serde(default)]
    pub webhook_secret: Option<Secret>,
}

/// An agent token and the systems an agent holding it may serve.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentTokenConfig {
    /// A name for logs (never the token itself).
    pub name: String,
    /// The token in clear text; give this or `token_sha256`.
    #[serde(default)]
    pub token: Option<Secret>,
    /// The hex SHA-256 of the token; give this or `token`.
    #[serde(default)]
    pub token_sha256: Option<String>,
    /// The systems an agent with this token may serve (explicit names, no `"*"`).
    pub systems: Vec<String>,
}

/// A problem found in a [`RelayConfig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No API key is configured.
    #[error("no api_keys configured: clients could not call anything")]
    NoApiKeys,
    /// No agent token is configured, and no operator key could create one.
    #[error(
        "no agent_tokens configured and no api_keys entry with operator = true to create \
         them through the API: no agent could connect and no system is known"
    )]
    NoAgentTokens,
    /// Two entries of one list share a name.
    #[error("{list}: the name {name:?} is used twice")]
    DuplicateName {
        /// `api_keys` or `agent_tokens`.
        list: &'static str,
        /// The name.
        name: String,
    },
    /// An entry has an empty name.
    #[error("{list}: an entry has an empty name")]
    EmptyName {
        /// `api_keys` or `agent_tokens`.
        list: &'static str,
    },
    /// An entry's name holds a control character.
    #[error("{list}: the name {name:?} holds a control character")]
    ControlInName {
        /// `api_keys` or `agent_tokens`.
        list: &'static str,
        /// The name.
        name: String,
    },
    /// An entry gives both or neither of the clear secret and its hash.
    #[error("{list} {name:?}: give exactly one of {clear} and {hashed}")]
    SecretChoice {
        /// `api_keys` or `agent_tokens`.
        list: &'static str,
        /// The entry's name.
        name: String,
        /// `key` or `token`.
        clear: &'static str,
        /// `key_sha256` or `token_sha256`.
        hashed: &'static str,
    },
    /// A clear secret is empty.
    #[error("{list} {name:?}: the secret is empty")]
    EmptySecret {
        /// `api_keys` or `agent_tokens`.
        list: &'static str,
        /// The entry's name.
        name: String,
    },
    /// A hash is not 64 hex digits.
    #[error("{list} {name:?}: the SHA-256 must be 64 hex digits")]
    BadHash {
        /// `api_keys` or `agent_tokens`.
        list: &'static str,
        /// The entry's name.
        name: String,
    },
    /// Two entries hold the same secret.
    #[error("{list} {name:?}: the same secret is already used by another entry")]
    DuplicateSecret {
        /// `api_keys` or `agent_tokens`.
        list: &'static str,
        /// The entry's name.
        name: String,
    },
    /// An entry lists no systems, or an empty system name.
    #[error("{list} {name:?}: systems must list at least one non-empty system name")]
    NoSystems {
        /// `api_keys` or `agent_tokens`.
        list: &'static str,
        /// The entry's name.
        name: String,
    },
    /// An agent token uses `"*"`.
    #[error("agent_tokens {name:?}: systems must be named explicitly, \"*\" is only for api_keys")]
    WildcardAgentToken {
        /// The entry's name.
        name: String,
    },
    /// A number is out of range.
    #[error("{field}: {problem}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// Room left in a frame for the envelope around the parameters of a body.
const FRAME_ENVELOPE_BYTES: usize = 64 * 1024;

impl RelayConfig {
    /// Checks the configuration.
    ///
    /// # Errors
    /// The first problem found, as a [`ConfigError`] whose message names the field
    /// or entry (never a secret).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.api_keys.is_empty() {
            return Err(ConfigError::NoApiKeys);
        }
        // Without tokens in the file, an operator creates them in the store
        // (`/v1/admin/agent-tokens`, the console, `sapbridge keys tokens create`).
        if self.agent_tokens.is_empty() && !self.api_keys.iter().any(|k| k.operator) {
            return Err(ConfigError::NoAgentTokens);
        }
        let keys = self.api_keys.iter().map(|k| Entry {
            name: &k.name,
            clear: k.key.as_ref(),
            hashed: k.key_sha256.as_deref(),
            systems: &k.systems,
        });
        check_entries("api_keys", ("key", "key_sha256"), keys)?;
        let tokens = self.agent_tokens.iter().map(|t| Entry {
            name: &t.name,
            clear: t.token.as_ref(),
            hashed: t.token_sha256.as_deref(),
            systems: &t.systems,
        });
        check_entries("agent_tokens", ("token", "token_sha256"), tokens)?;
        self.check_key_limits()?;
        if let Some(t) = self
            .agent_tokens
            .iter()
            .find(|t| t.systems.iter().any(|s| s == ALL_SYSTEMS))
        {
            return Err(ConfigError::WildcardAgentToken {
                name: t.name.clone(),
            });
        }
        if let Some(tls) = &self.tls {
            tls.validate()?;
            if self.cluster.advertise_url.is_some() {
                return Err(ConfigError::OutOfRange {
                    field: "cluster.advertise_url",
                    problem: "replicas forward to each other over plain http://, and with [tls] \
                              the relay's one listener speaks only TLS: terminate TLS in front \
                              of clustered replicas instead"
                        .into(),
                });
            }
        }
        self.check_numbers()
    }

    /// Checks the limits of each API key (`rate_per_sec`, `burst`, `max_in_flight`).
    fn check_key_limits(&self) -> Result<(), ConfigError> {
        for key in &self.api_keys {
            let problem = match (key.rate_per_sec, key.burst, key.max_in_flight) {
                (Some(rate), _, _) if !(rate.is_finite() && rate > 0.0) => {
                    Some("rate_per_sec must be a number above 0")
                }
                (None, Some(_), _) => Some("burst needs rate_per_sec"),
                (_, Some(0), _) => Some("burst must be at least 1"),
                (_, _, Some(0)) => Some("max_in_flight must be at least 1"),
                _ if key
                    .webhook_secret
                    .as_ref()
                    .is_some_and(|s| webhook_secret_bytes(s.expose()).is_none()) =>
                {
                    Some(
                        "webhook_secret must be `whsec_` and the base64 of 24 to 64 bytes \
                         (sapbridge keys new --webhook-secret makes one)",
                    )
                }
                _ => None,
            };
            if let Some(problem) = problem {
                return Err(ConfigError::OutOfRange {
                    field: "api_keys",
                    problem: format!("{:?}: {problem}", key.name),
                });
            }
        }
        Ok(())
    }

    fn check_numbers(&self) -> Result<(), ConfigError> {
        let out = |field, problem: &str| {
            Err(ConfigError::OutOfRange {
                field,
                problem: problem.to_owned(),
            })
        };
        let max_body = MAX_FRAME_BYTES - FRAME_ENVELOPE_BYTES;
        if self.body_limit_bytes == 0 || self.body_limit_bytes > max_body {
            return out(
                "body_limit_bytes",
                &format!("must be between 1 and {max_body} (a body must fit in one frame)"),
            );
        }
        if self.max_wait_secs == 0 {
            return out("max_wait_secs", "must be at least 1");
        }
        if self.default_wait_secs > self.max_wait_secs {
            return out("default_wait_secs", "must not exceed max_wait_secs");
        }
        if self.queue_ttl_secs == 0 {
            return out("queue_ttl_secs", "must be at least 1");
        }
        if self.console.session_idle_secs == 0 {
            return out("console.session_idle_secs", "must be at least 1");
        }
        if self.console.session_max_secs < self.console.session_idle_secs {
            return out(
                "console.session_max_secs",
                "must be at least console.session_idle_secs",
            );
        }
        if self.audit.retention_days == 0 {
            return out("audit.retention_days", "must be at least 1");
        }
        if self.webhooks.timeout_secs == 0 || self.webhooks.timeout_secs > 300 {
            return out("webhooks.timeout_secs", "must be between 1 and 300");
        }
        if self.webhooks.retry_for_secs == 0 {
            return out("webhooks.retry_for_secs", "must be at least 1");
        }
        if self.webhooks.concurrency == 0 || self.webhooks.concurrency > 1024 {
            return out("webhooks.concurrency", "must be between 1 and 1024");
        }
        if let Some(bad) = self
            .webhooks
            .allowed_hosts
            .iter()
            .find(|h| crate::webhooks::HostPattern::parse(h).is_none())
        {
            return out(
                "webhooks.allowed_hosts",
                &format!("{bad:?} is not a host name, an address, `*.suffix` or `*`"),
            );
        }
        // Agents close a session whose numbers are out of their range: the relay
        // must never send one.
        let max_heartbeat = sapbridge_proto::MAX_HEARTBEAT_SECS;
        if !(1..=max_heartbeat).contains(&self.heartbeat_secs) {
            return out(
                "heartbeat_secs",
                &format!("must be between 1 and {max_heartbeat} (agents refuse longer)"),
            );
        }
        let max_lease = sapbridge_proto::MAX_UNIT_DEADLINE_MS / 1_000;
        if !(1..=max_lease).contains(&self.lease_secs) {
            return out(
                "lease_secs",
                &format!("must be between 1 and {max_lease} (a unit's deadline agents accept)"),
            );
        }
        if self.result_retention_secs == 0 {
            return out("result_retention_secs", "must be at least 1");
        }
        if let Some(url) = &self.public_url {
            let parsed: Option<http::Uri> = url.parse().ok();
            let fits = parsed.is_some_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https"))
                    && u.host().is_some_and(|h| !h.is_empty())
                    && u.query().is_none()
            });
            if !fits {
                return out(
                    "public_url",
                    "must be an absolute http:// or https:// URL without a query",
                );
            }
        }
        for proxy in &self.trusted_proxies {
            if let Err(reason) = crate::public_address::parse_proxy(proxy) {
                return out("trusted_proxies", &reason);
            }
        }
        if self.http_body_limit_bytes == 0 {
            return out("http_body_limit_bytes", "must be at least 1");
        }
        if self.http_timeout_secs == 0 {
            return out("http_timeout_secs", "must be at least 1");
        }
        if self.http_max_in_flight_per_agent == 0 {
            return out("http_max_in_flight_per_agent", "must be at least 1");
        }
        if self.worker_threads > MAX_WORKER_THREADS {
            return out(
                "worker_threads",
                &format!("must be at most {MAX_WORKER_THREADS} (0: one per CPU)"),
            );
        }
        self.check_connections()?;
        self.cluster.validate(self.queue.store)?;
        self.queue.validate().map_err(|e| ConfigError::OutOfRange {
            field: e.field,
            problem: e.problem,
        })
    }

    fn check_connections(&self) -> Result<(), ConfigError> {
        for (field, secs) in [
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("body_read_timeout_secs", self.body_read_timeout_secs),
        ] {
            if !(1..=MAX_CONNECTION_TIMEOUT_SECS).contains(&secs) {
                return Err(ConfigError::OutOfRange {
                    field,
                    problem: format!("must be between 1 and {MAX_CONNECTION_TIMEOUT_SECS}"),
                });
            }
        }
        for (field, count) in [
            ("max_connections", self.max_connections),
            ("max_agent_connections", self.max_agent_connections),
        ] {
            if !(1..=MAX_CONNECTIONS).contains(&count) {
                return Err(ConfigError::OutOfRange {
                    field,
                    problem: format!("must be between 1 and {MAX_CONNECTIONS}"),
                });
            }
        }
        Ok(())
    }
}

/// The SHA-256 of a secret: the form in which the relay keeps keys and tokens.
pub(crate) fn sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The SHA-256 of a secret as the 64 hex digits `key_sha256` / `token_sha256` take.
pub fn secret_sha256_hex(secret: &str) -> String {
    hex::encode(sha256(secret))
}

/// Parses 64 hex digits (a configured `*_sha256`) into a hash.
pub(crate) fn parse_sha256(hex_hash: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(hex_hash.trim()).ok()?;
    bytes.try_into().ok()
}

/// One credential entry, seen uniformly for API keys and agent tokens.
struct Entry<'a> {
    name: &'a str,
    clear: Option<&'a Secret>,
    hashed: Option<&'a str>,
    systems: &'a [String],
}

fn check_entries<'a>(
    list: &'static str,
    (clear, hashed): (&'static str, &'static str),
    entries: impl Iterator<Item = Entry<'a>>,
) -> Result<(), ConfigError> {
    let mut names = HashSet::new();
    let mut hashes = HashSet::new();
    for entry in entries {
        let name = entry.name.to_owned();
        if entry.name.trim().is_empty() {
            return Err(ConfigError::EmptyName { list });
        }
        // A key's name owns its calls and scopes its idempotency keys; names with
        // control characters are kept for the relay's own scopes (and out of logs).
        if entry.name.chars().any(char::is_control) {
            return Err(ConfigError::ControlInName { list, name });
        }
        if !names.insert(entry.name) {
            return Err(ConfigError::DuplicateName { list, name });
        }
        let hash = match (entry.clear, entry.hashed) {
            (Some(secret), None) => {
                if secret.is_empty() {
                    return Err(ConfigError::EmptySecret { list, name });
                }
                sha256(secret.expose())
            }
            (None, Some(hex_hash)) => match parse_sha256(hex_hash) {
                Some(hash) => hash,
                None => return Err(ConfigError::BadHash { list, name }),
            },
            _ => {
                return Err(ConfigError::SecretChoice {
                    list,
                    name,
                    clear,
                    hashed,
                });
            }
        };
        if !hashes.insert(hash) {
            return Err(ConfigError::DuplicateSecret { list, name });
        }
        if entry.systems.is_empty() || entry.systems.iter().any(|s| s.trim().is_empty()) {
            return Err(ConfigError::NoSystems { list, name });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> RelayConfig {
        toml::from_str(text).expect("valid toml")
    }

    const MINIMAL: &str = r#"
        [[api_keys]]
        name = "flow"
        key = "k1"
        systems = ["*"]
        [[agent_tokens]]
        name = "plant"
        token = "t1"
        systems = ["PRD", "QAS"]
    "#;

    #[test]
    fn minimal_config_is_valid_with_defaults() {
        let config = parse(MINIMAL);
        config.validate().expect("valid");
        assert_eq!(config.body_limit_bytes, 4 * 1024 * 1024);
        assert_eq!(config.default_wait_secs, 60);
        let debug = format!("{config:?}");
        assert!(!debug.contains("k1") && !debug.contains("t1"), "{debug}");
    }

    #[test]
    fn agent_tokens_may_be_left_to_an_operator_key() {
        let mut config = parse(MINIMAL);
        config.agent_tokens.clear();
        assert_eq!(config.validate(), Err(ConfigError::NoAgentTokens));
        config.api_keys[0].operator = true;
        config
            .validate()
            .expect("an operator creates tokens in the store");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let text = format!("{MINIMAL}\nlistening = 1");
        assert!(toml::from_str::<RelayConfig>(&text).is_err());
    }

    #[test]
    fn problems_are_named() {
        let mut config = parse(MINIMAL);
        config.api_keys[0].key_sha256 = Some("ab".repeat(32));
        let err = config.validate().unwrap_err();
        assert!(
            err.to_string()
                .contains("exactly one of key and key_sha256")
        );

        let mut config = parse(MINIMAL);
        config.agent_tokens[0].systems = vec!["*".into()];
        assert!(matches!(
            config.validate(),
            Err(ConfigError::WildcardAgentToken { .. })
        ));

        let mut config = parse(MINIMAL);
        config.api_keys[0].key = None;
        config.api_keys[0].key_sha256 = Some("xyz".into());
        assert!(matches!(
            config.validate(),
            Err(ConfigError::BadHash { .. })
        ));

        let mut config = parse(MINIMAL);
        config.default_wait_secs = 500;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.starts_with("default_wait_secs"), "{err}");

        let mut config = parse(MINIMAL);
        config.lease_secs = 0;
        assert!(config.validate().is_err());
        // Nothing an agent would refuse: a heartbeat or a unit's deadline past its range.
        config.lease_secs = sapbridge_proto::MAX_UNIT_DEADLINE_MS / 1_000 + 1;
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .starts_with("lease_secs")
        );
        config.lease_secs = 300;
        config.heartbeat_secs = sapbridge_proto::MAX_HEARTBEAT_SECS + 1;
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .starts_with("heartbeat_secs")
        );
        config.heartbeat_secs = 15;
        // A lease is a deadline, not renewed by heartbeats: it may be shorter.
        config.lease_secs = 6;
        assert!(config.validate().is_ok());

        let mut config = parse(&format!("worker_threads = 1000\n{MINIMAL}"));
        let err = config.validate().unwrap_err().to_string();
        assert!(err.starts_with("worker_threads"), "{err}");
        config.worker_threads = 1;
        assert!(config.validate().is_ok());
    }

    #[test]
    fn connection_limits_are_checked() {
        let config = parse(MINIMAL);
        assert_eq!(config.header_read_timeout_secs, 10);
        assert_eq!(config.idle_timeout_secs, 60);
        assert_eq!(config.body_read_timeout_secs, 30);
        assert_eq!(config.max_connections, 512);
        assert_eq!(config.max_agent_connections, 128);
        type Spoil = fn(&mut RelayConfig);
        let cases: [(&str, Spoil); 8] = [
            ("header_read_timeout_secs", |c| {
                c.header_read_timeout_secs = 0
            }),
            ("idle_timeout_secs", |c| c.idle_timeout_secs = 0),
            ("body_read_timeout_secs", |c| c.body_read_timeout_secs = 0),
            // Past a day a deadline could overflow the clock.
            ("header_read_timeout_secs", |c| {
                c.header_read_timeout_secs = u64::MAX
            }),
            ("idle_timeout_secs", |c| c.idle_timeout_secs = 86_401),
            ("max_connections", |c| c.max_connections = 0),
            ("max_agent_connections", |c| c.max_agent_connections = 0),
            ("max_connections", |c| c.max_connections = usize::MAX),
        ];
        for (field, spoil) in cases {
            let mut config = parse(MINIMAL);
            spoil(&mut config);
            let err = config.validate().unwrap_err().to_string();
            assert!(err.starts_with(field), "{field}: {err}");
        }
        let mut config = parse(MINIMAL);
        config.body_read_timeout_secs = 86_400;
        config.max_agent_connections = 1;
        assert!(config.validate().is_ok());
    }

    #[test]
    fn keys_are_not_operators_unless_they_say_so() {
        let config = parse(MINIMAL);
        assert!(!config.api_keys[0].operator);
        let config = parse(&MINIMAL.replace(
            "systems = [\"*\"]",
            "systems = [\"*\"]\n        operator = true",
        ));
        assert!(config.api_keys[0].operator);
        config.validate().expect("valid");
    }

    #[test]
    fn cluster_settings_are_checked() {
        let secret = "s".repeat(MIN_CLUSTER_SECRET_CHARS);
        let postgres = "[queue]\nstore = \"postgres\"\nurl = \"postgres://u@db/q\"\n";
        let with =
            |cluster: &str, queue: &str| parse(&format!("{queue}[cluster]\n{cluster}\n{MINIMAL}"));
        let ok = with(
            &format!("advertise_url = \"http://10.0.0.5:8080\"\nsecret = \"{secret}\""),
            postgres,
        );
        ok.validate().expect("valid");
        assert!(
            !format!("{ok:?}").contains(&secret),
            "the secret is never shown"
        );
        let refused = [
            (
                "advertise_url = \"http://10.0.0.5:8080\"".to_owned(),
                postgres,
                "cluster.secret",
            ),
            ("secret = \"short\"".to_owned(), postgres, "cluster.secret"),
            (
                format!("advertise_url = \"https://r1:8443\"\nsecret = \"{secret}\""),
                postgres,
                "https",
            ),
            (
                format!("advertise_url = \"http://r1:8080/x\"\nsecret = \"{secret}\""),
                postgres,
                "without path",
            ),
            (
                format!("advertise_url = \"http://r1:8080\"\nsecret = \"{secret}\""),
                "",
                "postgres",
            ),
        ];
        for (cluster, queue, says) in refused {
            let err = with(&cluster, queue).validate().unwrap_err().to_string();
            assert!(
                err.starts_with("cluster.") && err.contains(says),
                "{cluster}: {err}"
            );
            assert!(!err.contains(&secret), "{err}");
        }
    }

    #[test]
    fn names_with_control_characters_are_refused() {
        for name in ["\0follow-up", "flow\n", "a\tb"] {
            let mut config = parse(MINIMAL);
            config.api_keys[0].name = name.into();
            assert!(
                matches!(
                    config.validate(),
                    Err(ConfigError::ControlInName {
                        list: "api_keys",
                        ..
                    })
                ),
                "{name:?}"
            );
        }
    }
}
