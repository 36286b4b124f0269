//! The agent's configuration: where the relay is, how to authenticate, which SAP
//! systems it serves and which functions each one allows.
//!
//! Read from TOML (`#[serde(deny_unknown_fields)]`, defaults for everything but the
//! relay URL, the token and the systems), then checked with [`AgentConfig::validate`],
//! which names every problem in one line each.
//!
//! ```toml
//! relay_url = "wss://relay.example.com/v1/agent/connect"
//! token_file = "/etc/sapbridge/agent.token"
//! concurrency = 8
//!
//! [[systems]]
//! name = "PRD"
//! allow_functions = ["STFC_CONNECTION", "BAPI_CUSTOMER_*", "RFC_READ_TABLE"]
//! backend = { type = "sim", latency_ms = 5 }
//! ```
//!
//! `worker_threads` (default 1) is the number of threads of the `sapbridge agent`
//! process's async runtime; `0` means one per CPU. The agent spends its time
//! waiting on the relay and on SAP, and with one worker a unit's or a request's
//! hand-offs (socket, session, executor, socket) stay on one thread instead of
//! waking another for each: on 2 cores, pass-through p50 at concurrency 1 was
//! ~150 µs lower and throughput at 64 ~5–10 % higher, function calls unchanged.
//! Raise it when the agent's own work is CPU-bound (many large pass-through bodies
//! from a fast backend). Blocking work (journal fsyncs) has threads of its own.
//!
//! HTTP pass-through: a system may add a `[systems.http]` block (base URL, path
//! allowlist, CSRF, backend credentials); see [`HttpConfig`].
//!
//! Execution journal keys (see `journal.rs`; the journal is `data_dir/journal.db`):
//!
//! - `read_only_functions` — function name patterns (`*` wildcards anywhere,
//!   case-insensitive) of functions that only read. A unit found **in doubt** (the
//!   agent died after starting it, before journaling its outcome) runs again only if
//!   every call matches and it does not commit; otherwise it is resolved by asking SAP
//!   about its TID or reported `OUTCOME_UNKNOWN`, never run twice. Default:
//!   `["*_GETDETAIL*", "*_GETLIST", "RFC_READ_TABLE", "STFC_CONNECTION", "RFC_PING",
//!   "RFC_SYSTEM_INFO", "RFC_GET_FUNCTION_INTERFACE", "DDIF_FIELDINFO_GET"]`; `[]`
//!   treats everything as a write.
//! - `journal_sync` — `"normal"` (default; SQLite `synchronous=NORMAL` in WAL mode):
//!   a journaled record survives the agent process crashing or being killed, but the
//!   last commits may be lost if the host loses power or the OS crashes — then a call
//!   that ran could look new and run again. `"full"` (`synchronous=FULL`) fsyncs
//!   every commit, so "at most once" also holds across power loss; group commit keeps
//!   the cost to one fsync per batch of records.
//! - `journal_retention_days` — how long outcomes the relay acknowledged stay in the
//!   journal, so a late redelivery is still answered without calling SAP (default 7;
//!   swept hourly). Unacknowledged outcomes are kept until acknowledged.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use sapbridge_proto::Secret;
use serde::Deserialize;

mod nwrfc;
mod passthrough;

pub use nwrfc::NwrfcBackend;
pub use passthrough::HttpConfig;

use crate::allowlist::Allowlist;
use crate::read_only::{DEFAULT_READ_ONLY_FUNCTIONS, ReadOnlyFunctions};

/// The agent's configuration.
///
/// `Debug` masks the token (it is a [`Secret`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Full URL of the relay's agent endpoint, `ws://` or `wss://`, ending in
    /// `/v1/agent/connect`.
    pub relay_url: String,
    /// The agent token, sent as `Authorization: Bearer <token>`. Exactly one of
    /// `token` and `token_file` must be set.
    #[serde(default)]
    pub token: Option<Secret>,
    /// A file holding the agent token (surrounding whitespace is ignored). Read again
    /// on every connection attempt, so a rotated token is picked up without a restart.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// A stable id of this agent installation; the host name by default.
    #[serde(default = "default_agent_id")]
    pub agent_id: String,
    /// How many units the agent runs at once; also the credits it grants the relay.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Threads of the agent process's async runtime (0: one per CPU); see the module
    /// docs.
    #[serde(default = "default_worker_threads")]
    pub worker_threads: usize,
    /// An extra PEM file of CA certificates trusted on top of the system roots (for a
    /// relay behind a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate (with its intermediates) the agent presents to the
    /// relay, for a relay that requires one (`[tls] client_ca_file`); with
    /// `client_key_file`.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// The PEM private key of `client_cert_file`.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// Pins of the relay's public key: SHA-256 digests of a certificate's
    /// SubjectPublicKeyInfo, base64 (optionally `sha256/…`) or hex, as printed by
    /// `sapbridge keys pin CERT.pem`. When set, the relay's certificate (or one of
    /// its intermediates) must carry one of these keys, on top of being trusted.
    /// None by default.
    #[serde(default)]
    pub relay_spki_sha256: Vec<String>,
    /// An HTTP proxy the agent reaches the relay through with `CONNECT`
    /// (`http://proxy.example.com:3128`, no credentials in it). Unset: the
    /// environment's `HTTPS_PROXY` / `ALL_PROXY` (`HTTP_PROXY` for `ws://`) unless
    /// `NO_PROXY` covers the relay; `""` or `"none"`: no proxy, whatever the
    /// environment says (see `proxy_env`).
    #[serde(default)]
    pub proxy_url: Option<String>,
    /// The proxy user for Basic authentication, with `proxy_password_file` or
    /// `proxy_password_env` (read again before every connection, never logged).
    #[serde(default)]
    pub proxy_user: Option<String>,
    /// A file holding the proxy user's password (trailing newline ignored).
    #[serde(default)]
    pub proxy_password_file: Option<PathBuf>,
    /// The name of an environment variable holding the proxy user's password.
    #[serde(default)]
    pub proxy_password_env: Option<String>,
    /// Where the agent keeps its files: the execution journal (`journal.db`) and
    /// simulator state; [`DEFAULT_DATA_DIR`] (`/var/lib/sapbridge-agent`) by default.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Patterns (`*` wildcards anywhere) of functions that only read: a unit of
    /// only these found in doubt after a crash may run again. See the module docs.
    #[serde(default = "default_read_only_functions")]
    pub read_only_functions: Vec<String>,
    /// How hard journal commits go to disk; see [`JournalSync`].
    #[serde(default)]
    pub journal_sync: JournalSync,
    /// How many days acknowledged outcomes stay in the journal (0: purged at the
    /// next sweep).
    #[serde(default = "default_journal_retention_days")]
    pub journal_retention_days: u32,
    /// First reconnect delay, in milliseconds.
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// Largest reconnect delay, in milliseconds.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// How long a graceful shutdown waits for in-flight units, in seconds.
    #[serde(default = "default_shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
    /// The SAP systems this agent serves.
    #[serde(default)]
    pub systems: Vec<SystemConfig>,
}

/// How hard the execution journal pushes its commits to disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalSync {
    /// SQLite `synchronous=NORMAL` (WAL): survives an agent crash, not a power loss
    /// or OS crash (the last commits may be lost).
    #[default]
    Normal,
    /// SQLite `synchronous=FULL`: every commit is fsynced, so the journal survives
    /// power loss too; costs one fsync per group-committed batch.
    Full,
}

/// One SAP system the agent serves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemConfig {
    /// The system's name as clients and the relay know it (`PRD`, `SIM`).
    pub name: String,
    /// How the agent reaches the system.
    pub backend: BackendConfig,
    /// The functions the cloud may run on this system: exact names
    /// (`STFC_CONNECTION`), prefixes ending in `*` (`BAPI_CUSTOMER_*`), or `*` alone
    /// for everything. Anything else is denied.
    #[serde(default)]
    pub allow_functions: Vec<String>,
    /// The tables `RFC_READ_TABLE` (any call with a `QUERY_TABLE` parameter) may
    /// read on this system, same syntax as `allow_functions`; none by default.
    #[serde(default)]
    pub allow_tables: Vec<String>,
    /// HTTP pass-through to the system's HTTP service (`[systems.http]`); without
    /// it the system refuses every pass-through request.
    #[serde(default)]
    pub http: Option<HttpConfig>,
}

/// What to do when the agent token cannot be read (the log and the doctor say it).
pub(crate) const TOKEN_ADVICE: &str = "set `token_file` (or `token`) in the configuration or \
                                       the SAPBRIDGE_AGENT_TOKEN environment variable";

/// How the agent reaches an SAP system, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum BackendConfig {
    /// The embedded SAP simulator.
    Sim {
        /// The simulator's state file; `data_dir/sim-<name>.db` by default.
        #[serde(default)]
        db_path: Option<PathBuf>,
        /// Added latency per function call, in milliseconds.
        #[serde(default)]
        latency_ms: u64,
        /// Probability (0.0..=1.0) that a call fails with `COMMUNICATION_FAILURE`.
        #[serde(default)]
        fault_rate: f64,
    },
    /// An SAP NetWeaver ABAP system reached over SOAP-RFC (`/sap/bc/soap/rfc`),
    /// without SAP's RFC SDK.
    Soap {
        /// `https://sap.example.com:44300/` (the ICF path is appended) or the full
        /// `…/sap/bc/soap/rfc` URL.
        base_url: String,
        /// The SAP client (`sap-client`), e.g. `"100"`; empty for the default.
        #[serde(default)]
        client: String,
        /// The SAP user.
        user: String,
        /// A file holding the user's password (trailing newline ignored).
        #[serde(default)]
        password_file: Option<PathBuf>,
        /// The name of an environment variable holding the password.
        #[serde(default)]
        password_env: Option<String>,
        /// Timeout of one function call, in seconds (default 60).
        #[serde(default = "default_soap_timeout_secs")]
        timeout_secs: u64,
        /// Extra PEM CA certificates to trust for this system.
        #[serde(default)]
        ca_file: Option<PathBuf>,
        /// An HTTP proxy to reach SAP through (`http://proxy:3128`, no
        /// credentials); none by default. The environment's proxy variables are
        /// not used for SAP.
        #[serde(default)]
        proxy_url: Option<String>,
    },
    /// An SAP ABAP system reached over RFC through SAP's NW RFC SDK
    /// (`libsapnwrfc.so` / `sapnwrfc.dll`), loaded when the agent starts. Without
    /// the library the agent still starts; calls to this system then fail with
    /// the loader's reason. See [`NwrfcBackend`].
    Nwrfc(Box<NwrfcBackend>),
}

pub(crate) fn default_soap_timeout_secs() -> u64 {
    60
}

/// A configuration problem. [`ConfigError::Invalid`] lists every problem found.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML text could not be parsed into a configuration.
    #[error("agent configuration: {0}")]
    Parse(#[from] toml::de::Error),
    /// The configuration parsed but breaks rules; one message per problem.
    #[error("invalid agent configuration: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The token file could not be read or is empty.
    #[error("token file {path}: {reason}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

impl AgentConfig {
    /// Parses a configuration from TOML text and validates it.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] for TOML that does not fit (unknown fields included),
    /// [`ConfigError::Invalid`] for a configuration that breaks a rule.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// A configuration with defaults for everything but the relay URL, token and
    /// systems (handy for tests and for the CLI's dev mode).
    pub fn new(relay_url: impl Into<String>, token: Secret, systems: Vec<SystemConfig>) -> Self {
        Self {
            relay_url: relay_url.into(),
            token: Some(token),
            token_file: None,
            agent_id: default_agent_id(),
            concurrency: default_concurrency(),
            worker_threads: default_worker_threads(),
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            relay_spki_sha256: Vec::new(),
            proxy_url: None,
            proxy_user: None,
            proxy_password_file: None,
            proxy_password_env: None,
            data_dir: default_data_dir(),
            read_only_functions: default_read_only_functions(),
            journal_sync: JournalSync::default(),
            journal_retention_days: default_journal_retention_days(),
            backoff_initial_ms: default_backoff_initial_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            shutdown_grace_secs: default_shutdown_grace_secs(),
            systems,
        }
    }

    /// Checks the rules serde cannot express.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] with one message per problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if let Err(problem) = self.check_proxy() {
            problems.push(problem);
        }
        if let Err(problem) = check_relay_url(&self.relay_url) {
            problems.push(problem);
        }
        problems.extend(self.check_relay_tls());
        match (&self.token, &self.token_file) {
            (Some(_), Some(_)) => problems.push("set either token or token_file, not both".into()),
            (None, None) => problems.push("token or token_file is required".into()),
            (Some(token), None) if token.is_empty() => problems.push("token is empty".into()),
            _ => {}
        }
        if self.agent_id.trim().is_empty() {
            problems.push("agent_id is empty".into());
        }
        if self.worker_threads > MAX_WORKER_THREADS {
            problems.push(format!(
                "worker_threads must be at most {MAX_WORKER_THREADS} (0: one per CPU)"
            ));
        }
        if self.concurrency == 0 {
            problems.push("concurrency must be at least 1".into());
        }
        if self.backoff_initial_ms == 0 {
            problems.push("backoff_initial_ms must be at least 1".into());
        }
        if self.backoff_max_ms < self.backoff_initial_ms {
            problems.push(format!(
                "backoff_max_ms ({}) is below backoff_initial_ms ({})",
                self.backoff_max_ms, self.backoff_initial_ms
            ));
        }
        if let Err(pattern_problems) = ReadOnlyFunctions::parse(&self.read_only_functions) {
            problems.extend(pattern_problems);
        }
        if self.systems.is_empty() {
            problems.push("at least one [[systems]] entry is required".into());
        }
        let mut names = HashSet::new();
        for system in &self.systems {
            check_system(system, &mut names, &mut problems);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// The agent token: `token`, or the trimmed content of `token_file`.
    ///
    /// # Errors
    /// [`ConfigError::TokenFile`] when the file cannot be read or is empty;
    /// [`ConfigError::Invalid`] when neither is set.
    pub fn resolve_token(&self) -> Result<Secret, ConfigError> {
        if let Some(token) = &self.token {
            return Ok(token.clone());
        }
        let Some(path) = &self.token_file else {
            return Err(ConfigError::Invalid(vec![
                "token or token_file is required".into(),
            ]));
        };
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::TokenFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(ConfigError::TokenFile {
                path: path.clone(),
                reason: "file is empty".into(),
            });
        }
        Ok(Secret::new(token))
    }

    /// The execution journal's file: `data_dir/journal.db`.
    pub fn journal_path(&self) -> PathBuf {
        self.data_dir.join(crate::journal::JOURNAL_FILE)
    }

    /// The simulator state file of a system: its `db_path`, or `data_dir/sim-<name>.db`.
    pub fn sim_db_path(&self, system: &str, db_path: Option<&Path>) -> PathBuf {
        match db_path {
            Some(path) => path.to_path_buf(),
            None => self.data_dir.join(format!("sim-{system}.db")),
        }
    }
}

impl fmt::Display for BackendConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sim { .. } => f.write_str("sim"),
            Self::Soap { .. } => f.write_str("soap"),
            Self::Nwrfc(_) => f.write_str("nwrfc"),
        }
    }
}

impl AgentConfig {
    /// The client certificate comes with its key, and every pin parses.
    fn check_relay_tls(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            problems.push("client_cert_file and client_key_file go together".into());
        }
        let plain = !self.relay_url.starts_with("wss:");
        if plain && (!self.relay_spki_sha256.is_empty() || self.client_cert_file.is_some()) {
            problems.push(
                "relay_spki_sha256 and client_cert_file need a wss:// relay_url (there is no \
                 TLS on ws://)"
                    .into(),
            );
        }
        for pin in &self.relay_spki_sha256 {
            if let Err(problem) = crate::tls::parse_pin(pin) {
                problems.push(format!("relay_spki_sha256: {problem}"));
            }
        }
        problems
    }

    /// `proxy_url` is `http://host:port` without credentials, and a proxy user
    /// comes with one password source (and only with a proxy).
    fn check_proxy(&self) -> Result<(), String> {
        let password = self.proxy_password_file.is_some() || self.proxy_password_env.is_some();
        let Some(url) = self
            .proxy_url
            .as_ref()
            .filter(|u| !crate::proxy_env::disables(u))
        else {
            return if self.proxy_user.is_some() || password {
                Err("proxy_user and proxy_password_* need proxy_url".into())
            } else {
                Ok(())
            };
        };
        if holds_credentials(url) {
            return Err(
                "proxy_url must not hold a user or password: use proxy_user and \
                 proxy_password_file or proxy_password_env"
                    .into(),
            );
        }
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("proxy_url {url:?} is not a URL: {e}"))?;
        if uri.scheme_str() != Some("http")
            || uri.host().is_none_or(str::is_empty)
            || !matches!(uri.path(), "" | "/")
        {
            return Err(format!(
                "proxy_url {url:?} must be http://host:port (the tunnel to the relay is \
                 TLS inside CONNECT when relay_url is wss://)"
            ));
        }
        match (
            &self.proxy_user,
            self.proxy_password_file.is_some(),
            self.proxy_password_env.is_some(),
        ) {
            (Some(_), true, true) => {
                Err("set proxy_password_file or proxy_password_env, not both".into())
            }
            (Some(_), false, false) => {
                Err("proxy_user needs proxy_password_file or proxy_password_env".into())
            }
            (None, true, _) | (None, _, true) => Err("proxy_password_* needs proxy_user".into()),
            _ => Ok(()),
        }
    }
}

fn check_relay_url(url: &str) -> Result<(), String> {
    if holds_credentials(url) {
        return Err(
            "relay_url must not hold a user or password (user:password@): the agent \
             authenticates with its token"
                .into(),
        );
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("relay_url {url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("ws" | "wss") => {}
        _ => return Err(format!("relay_url {url:?} must start with ws:// or wss://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("relay_url {url:?} has no host"));
    }
    Ok(())
}

/// Whether a URL carries credentials in its authority (`scheme://user:password@host`).
/// Such a URL is refused rather than logged or sent: credentials go in `user` and
/// `password_file`/`password_env`, or the token. Checked on the text, so a URL that
/// does not parse is caught too, and the messages refusing it do not repeat it.
/// What is wrong with a backend's `proxy_url`, if anything: it must be
/// `http://host:port`, without credentials.
pub(crate) fn check_backend_proxy(url: &str) -> Option<String> {
    if holds_credentials(url) {
        return Some("proxy_url must not hold a user or password".into());
    }
    let uri: Option<http::Uri> = url.parse().ok();
    let fits = uri.is_some_and(|u| {
        u.scheme_str() == Some("http")
            && u.host().is_some_and(|h| !h.is_empty())
            && matches!(u.path(), "" | "/")
    });
    (!fits).then(|| format!("proxy_url {url:?} must be http://host:port"))
}

pub(crate) fn holds_credentials(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.contains('@')
}

fn check_system(system: &SystemConfig, names: &mut HashSet<String>, problems: &mut Vec<String>) {
    let name = system.name.trim();
    if name.is_empty() {
        problems.push("a system has an empty name".into());
        return;
    }
    if !names.insert(name.to_owned()) {
        problems.push(format!("system {name} is listed twice"));
    }
    if let Err(entry_problems) = Allowlist::parse(&system.allow_functions) {
        problems.extend(
            entry_problems
                .into_iter()
                .map(|p| format!("system {name}: {p}")),
        );
    }
    if let Err(entry_problems) = Allowlist::parse_named("allow_tables", &system.allow_tables) {
        problems.extend(
            entry_problems
                .into_iter()
                .map(|p| format!("system {name}: {p}")),
        );
    }
    if let Some(http) = &system.http {
        http.check(name, problems);
    }
    match &system.backend {
        BackendConfig::Soap {
            base_url,
            user,
            password_file,
            password_env,
            timeout_secs,
            proxy_url,
            ..
        } => {
            if let Some(problem) = proxy_url.as_deref().and_then(check_backend_proxy) {
                problems.push(format!("system {name}: {problem}"));
            }
            if holds_credentials(base_url) {
                problems.push(format!(
                    "system {name}: base_url must not hold a user or password \
                     (user:password@); set user and password_file or password_env"
                ));
            } else if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                problems.push(format!(
                    "system {name}: base_url {base_url:?} must start with http:// or https://"
                ));
            }
            if user.trim().is_empty() {
                problems.push(format!("system {name}: user must not be empty"));
            }
            if password_file.is_some() == password_env.is_some() {
                problems.push(format!(
                    "system {name}: set exactly one of password_file and password_env"
                ));
            }
            if *timeout_secs == 0 {
                problems.push(format!("system {name}: timeout_secs must be at least 1"));
            }
        }
        BackendConfig::Nwrfc(nwrfc) => nwrfc.check(name, problems),
        BackendConfig::Sim { fault_rate, .. } => {
            if !(0.0..=1.0).contains(fault_rate) {
                problems.push(format!(
                    "system {name}: fault_rate {fault_rate} must be between 0.0 and 1.0"
                ));
            }
        }
    }
}

fn default_agent_id() -> String {
    ["/etc/hostname", "/proc/sys/kernel/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_owned())
        .chain(std::env::var("COMPUTERNAME").ok())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "sapbridge-agent".to_owned())
}

/// The most runtime threads an agent may ask for.
const MAX_WORKER_THREADS: usize = 256;

fn default_worker_threads() -> usize {
    1
}

fn default_concurrency() -> u32 {
    8
}

/// The data directory when the file names none: the state directory of the
/// shipped systemd unit and the volume of the container image.
pub const DEFAULT_DATA_DIR: &str = if cfg!(windows) {
    r"C:\ProgramData\sapbridge-agent"
} else {
    "/var/lib/sapbridge-agent"
};

fn default_data_dir() -> PathBuf {
    PathBuf::from(DEFAULT_DATA_DIR)
}

fn default_read_only_functions() -> Vec<String> {
    DEFAULT_READ_ONLY_FUNCTIONS
        .iter()
        .map(|pattern| (*pattern).to_owned())
        .collect()
}

fn default_journal_retention_days() -> u32 {
    7
}

fn default_backoff_initial_ms() -> u64 {
    500
}

fn default_backoff_max_ms() -> u64 {
    30_000
}

fn default_shutdown_grace_secs() -> u64 {
    30
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        relay_url = "wss://relay.example.com/v1/agent/connect"
        token = "s3cret-token"
        concurrency = 4

        [[systems]]
        name = "PRD"
        allow_functions = ["STFC_CONNECTION", "BAPI_CUSTOMER_*"]
        backend = { type = "sim", latency_ms = 5 }
    "#;

    #[test]
    fn parses_example_with_defaults() {
        let config = AgentConfig::from_toml_str(EXAMPLE).unwrap();
        assert_eq!(config.concurrency, 4);
        assert_eq!(config.worker_threads, 1);
        assert_eq!(config.backoff_initial_ms, 500);
        assert_eq!(config.backoff_max_ms, 30_000);
        assert_eq!(config.shutdown_grace_secs, 30);
        assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert!(config.data_dir.is_absolute());
        assert_eq!(
            config.journal_path(),
            PathBuf::from(DEFAULT_DATA_DIR).join("journal.db")
        );
        assert_eq!(config.journal_sync, JournalSync::Normal);
        assert_eq!(config.journal_retention_days, 7);
        assert_eq!(config.read_only_functions, DEFAULT_READ_ONLY_FUNCTIONS);
        assert!(!config.agent_id.is_empty());
        assert_eq!(
            config.systems[0].backend,
            BackendConfig::Sim {
                db_path: None,
                latency_ms: 5,
                fault_rate: 0.0
            }
        );
        assert_eq!(
            config.sim_db_path("PRD", None),
            PathBuf::from(DEFAULT_DATA_DIR).join("sim-PRD.db")
        );
    }

    #[test]
    fn journal_keys_parse() {
        let text = format!(
            "journal_sync = \"full\"\njournal_retention_days = 2\n\
             read_only_functions = [\"Z_*_READ*\"]\n{EXAMPLE}"
        );
        let config = AgentConfig::from_toml_str(&text).unwrap();
        assert_eq!(config.journal_sync, JournalSync::Full);
        assert_eq!(config.journal_retention_days, 2);
        assert_eq!(config.read_only_functions, ["Z_*_READ*"]);
        let bad = format!("journal_sync = \"sometimes\"\n{EXAMPLE}");
        assert!(matches!(
            AgentConfig::from_toml_str(&bad),
            Err(ConfigError::Parse(_))
        ));
        let empty = format!("read_only_functions = [\"\"]\n{EXAMPLE}");
        let err = AgentConfig::from_toml_str(&empty).unwrap_err().to_string();
        assert!(err.contains("read_only_functions"), "{err}");
    }

    #[test]
    fn proxy_settings_are_checked() {
        let ok = "proxy_url = \"http://proxy.corp:3128\"\nproxy_user = \"u\"\n\
                  proxy_password_env = \"PROXY_PW\"\n";
        assert!(AgentConfig::from_toml_str(&format!("{ok}{EXAMPLE}")).is_ok());
        assert!(
            AgentConfig::from_toml_str(&format!("proxy_url = \"http://p:8080\"\n{EXAMPLE}"))
                .is_ok(),
            "a proxy without credentials"
        );
        for (bad, says) in [
            (
                "proxy_url = \"http://u:pw@p:8080\"\n",
                "must not hold a user or password",
            ),
            (
                "proxy_url = \"https://p:8080\"\n",
                "must be http://host:port",
            ),
            (
                "proxy_url = \"http://p:8080/path\"\n",
                "must be http://host:port",
            ),
            (
                "proxy_user = \"u\"\nproxy_password_env = \"X\"\n",
                "need proxy_url",
            ),
            (
                "proxy_url = \"http://p:1\"\nproxy_user = \"u\"\n",
                "needs proxy_password",
            ),
            (
                "proxy_url = \"http://p:1\"\nproxy_password_env = \"X\"\n",
                "needs proxy_user",
            ),
        ] {
            let err = AgentConfig::from_toml_str(&format!("{bad}{EXAMPLE}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{bad}: {err}");
            assert!(!err.contains("pw@"), "{err}");
        }
    }

    #[test]
    fn relay_tls_settings_are_checked() {
        let pin = "relay_spki_sha256 = [\"sha256/AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"]\n";
        assert!(AgentConfig::from_toml_str(&format!("{pin}{EXAMPLE}")).is_ok());
        let hex = format!("relay_spki_sha256 = [\"{}\"]\n", "ab".repeat(32));
        assert!(AgentConfig::from_toml_str(&format!("{hex}{EXAMPLE}")).is_ok());
        let plain = EXAMPLE.replace("wss://", "ws://");
        for (bad, example, says) in [
            ("relay_spki_sha256 = [\"c2hvcnQ=\"]\n", EXAMPLE, "32 bytes"),
            ("client_cert_file = \"a.pem\"\n", EXAMPLE, "go together"),
            (pin, plain.as_str(), "need a wss:// relay_url"),
        ] {
            let err = AgentConfig::from_toml_str(&format!("{bad}{example}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn debug_masks_the_token() {
        let config = AgentConfig::from_toml_str(EXAMPLE).unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret-token"), "{debug}");
        assert!(debug.contains("MASKED"));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let text = format!("{EXAMPLE}\nsurprise = 1\n");
        assert!(matches!(
            AgentConfig::from_toml_str(&text),
            Err(ConfigError::Parse(_))
        ));
    }

    #[test]
    fn every_problem_is_named() {
        let text = r#"
            relay_url = "https://relay.example.com"
            concurrency = 0
            worker_threads = 1000
            backoff_initial_ms = 100
            backoff_max_ms = 10

            [[systems]]
            name = "PRD"
            allow_functions = ["BAPI_*_GET", ""]
            backend = { type = "sim", fault_rate = 2.0 }

            [[systems]]
            name = "PRD"
            backend = { type = "sim" }
        "#;
        let Err(ConfigError::Invalid(problems)) = AgentConfig::from_toml_str(text) else {
            panic!("expected invalid config");
        };
        let all = problems.join("\n");
        for needle in [
            "ws:// or wss://",
            "token or token_file is required",
            "concurrency",
            "worker_threads",
            "backoff_max_ms",
            "listed twice",
            "BAPI_*_GET",
            "empty entry",
            "fault_rate",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
    }

    #[test]
    fn urls_with_credentials_are_refused_without_repeating_them() {
        let text = r#"
            relay_url = "wss://agent:relay-pw@relay.example.com/v1/agent/connect"
            token = "t"

            [[systems]]
            name = "PRD"
            backend = { type = "soap", base_url = "https://RFC:sap-pw@sap:44300/", user = "RFC", password_env = "PW" }

            [systems.http]
            base_url = "http://GW:gw-pw@sapgw:8000/"
            allow_paths = ["/sap/opu/odata"]
        "#;
        let Err(ConfigError::Invalid(problems)) = AgentConfig::from_toml_str(text) else {
            panic!("expected invalid config");
        };
        let all = problems.join("\n");
        assert_eq!(
            all.matches("must not hold a user or password").count(),
            3,
            "{all}"
        );
        for password in ["relay-pw", "sap-pw", "gw-pw"] {
            assert!(!all.contains(password), "{all}");
        }
        for url in [
            "wss://relay.example.com/v1/agent/connect?x=a@b",
            "https://sap:44300/sap/bc/soap/rfc#a@b",
            "http://sapgw:8000/a@b",
        ] {
            assert!(!holds_credentials(url), "{url}");
        }
        assert!(holds_credentials("wss://token@relay.example.com"));
    }

    #[test]
    fn token_and_token_file_are_exclusive() {
        let text = EXAMPLE.replace(
            "token = \"s3cret-token\"",
            "token = \"a\"\ntoken_file = \"/tmp/x\"",
        );
        let err = AgentConfig::from_toml_str(&text).unwrap_err().to_string();
        assert!(err.contains("not both"), "{err}");
    }

    #[test]
    fn token_file_is_read_and_trimmed() {
        let dir = std::env::temp_dir().join(format!("sapbridge-agent-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "  tok-123\n").unwrap();
        let mut config = AgentConfig::from_toml_str(EXAMPLE).unwrap();
        config.token = None;
        config.token_file = Some(path.clone());
        assert_eq!(config.resolve_token().unwrap().expose(), "tok-123");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            config.resolve_token(),
            Err(ConfigError::TokenFile { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
