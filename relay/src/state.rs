//! The composition root: everything of one relay, built once from a validated
//! configuration, and shared by its HTTP handlers. The layers below it get the
//! narrow parts they need (the queue, [`Calls`], the agent registry,
//! [`Sessions`], the metadata cache), never the whole state.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::actions::metadata::MetadataCache;
use crate::agents::AgentRegistry;
use crate::audit::AuditLog;
use crate::auth::{Credentials, Keyring};
use crate::calls::{Calls, Caps};
use crate::config::RelayConfig;
use crate::limits::{LimitCounters, RateLimiter};
use crate::metrics::Metrics;
use crate::passthrough::{Peers, Signer};
use crate::queue::Queue;
use crate::session::{Sessions, Timings};

/// Limits and timings taken from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Largest request body.
    pub(crate) body_limit_bytes: usize,
    /// Wait when the client sends no `Prefer: wait`.
    pub(crate) default_wait: Duration,
    /// Longest wait honoured.
    pub(crate) max_wait: Duration,
    /// Queue TTL of a call.
    pub(crate) queue_ttl: Duration,
    /// Lease length (a deadline).
    pub(crate) lease: Duration,
    /// How long a call whose lease ended waits for its agent.
    pub(crate) owner_hold: Duration,
    /// Heartbeat interval.
    pub(crate) heartbeat: Duration,
    /// Retention of finished calls.
    pub(crate) retention: Duration,
    /// HTTP pass-through limits.
    pub(crate) passthrough: crate::passthrough::PassthroughSettings,
    /// How relative `Location` headers are made absolute.
    pub(crate) public: crate::public_address::PublicAddress,
    /// Whether `/metrics` answers only to an operator's API key.
    pub(crate) metrics_require_key: bool,
    /// The operator console's settings.
    pub(crate) console: crate::config::ConsoleConfig,
    /// Whether the relay serves TLS itself (`[tls]`).
    pub(crate) tls: bool,
}

impl Settings {
    fn new(config: &RelayConfig) -> Self {
        Self {
            body_limit_bytes: config.body_limit_bytes,
            default_wait: Duration::from_secs(config.default_wait_secs),
            max_wait: Duration::from_secs(config.max_wait_secs),
            queue_ttl: Duration::from_secs(config.queue_ttl_secs),
            lease: Duration::from_secs(config.lease_secs),
            owner_hold: Duration::from_secs(config.owner_hold_secs),
            heartbeat: Duration::from_secs(config.heartbeat_secs),
            retention: Duration::from_secs(config.result_retention_secs),
            passthrough: crate::passthrough::PassthroughSettings::new(config),
            public: crate::public_address::PublicAddress::new(
                config.public_url.as_deref(),
                &config.trusted_proxies,
                config.absolute_locations,
            ),
            metrics_require_key: config.metrics_require_key,
            console: config.console.clone(),
            tls: config.tls.is_some(),
        }
    }
}

/// Everything the HTTP handlers share.
pub(crate) struct RelayState {
    /// Limits and timings.
    pub(crate) settings: Settings,
    /// Client API keys and agent tokens (hashed), replaceable while running.
    pub(crate) keys: Arc<Keyring>,
    /// The call queue.
    pub(crate) queue: Arc<dyn Queue>,
    /// Submitting, waiting for, finding and cancelling calls (on `queue`).
    pub(crate) calls: Calls,
    /// Connected agents.
    pub(crate) agents: Arc<AgentRegistry>,
    /// Cancelled when the relay shuts down.
    pub(crate) shutdown: CancellationToken,
    /// The agent sessions.
    pub(crate) sessions: Arc<Sessions>,
    /// Defaults of the customer actions.
    pub(crate) customer_defaults: crate::config::CustomerDefaults,
    /// Function interfaces fetched per system.
    pub(crate) metadata: MetadataCache,
    /// The other relay replicas pass-through requests are forwarded to, and the
    /// check of those forwarded here.
    pub(crate) peers: Peers,
    /// The relay's metrics (`/metrics`).
    pub(crate) metrics: Arc<Metrics>,
    /// The audit log's writer.
    pub(crate) audit: Arc<AuditLog>,
    /// The API keys' rate limits and the limits' refusals.
    pub(crate) limits: Limits,
    /// Where webhooks may go, and the client that sends them.
    pub(crate) webhooks: crate::webhooks::Targets,
}

/// The rate limits of the moment and what the limits refused.
#[derive(Debug, Default)]
pub(crate) struct Limits {
    /// The API keys' token buckets.
    pub(crate) rates: RateLimiter,
    /// The refusals of every limit (rates here, caps in [`Calls`]).
    pub(crate) counters: Arc<LimitCounters>,
}

impl RelayState {
    /// The systems the relay knows: those of the agent tokens of the moment
    /// (the configuration's, after any reload, and the stored ones not revoked).
    pub(crate) fn systems(&self) -> BTreeSet<String> {
        self.keys.token_systems()
    }

    /// Whether the relay knows `system` (see [`RelayState::systems`]).
    pub(crate) fn knows(&self, system: &str) -> bool {
        self.keys.token_serves(system)
    }

    /// Notes a use of an API key or agent token, and writes it to the store when
    /// one is due (at most once a minute per key or token; see
    /// [`crate::last_used`]).
    pub(crate) fn note_use(&self, kind: crate::queue::CredentialKind, name: &str) {
        if let Some(used) = self.keys.uses().used(kind, name) {
            crate::last_used::write(&self.queue, used);
        }
    }

    /// Builds the state from a validated configuration.
    pub(crate) fn new(
        config: &RelayConfig,
        queue: Arc<dyn Queue>,
        audit: Arc<AuditLog>,
        shutdown: CancellationToken,
    ) -> Self {
        let settings = Settings::new(config);
        let agents = Arc::<AgentRegistry>::default();
        let metrics = Arc::new(Metrics::new());
        let timings = Timings {
            heartbeat: settings.heartbeat,
            lease: settings.lease,
            owner_hold: settings.owner_hold,
        };
        let keys = Arc::new(Keyring::new(
            Credentials::api_keys(&config.api_keys),
            Credentials::agent_tokens(&config.agent_tokens),
        ));
        let sessions = Sessions::new(
            Arc::clone(&queue),
            Arc::clone(&agents),
            Arc::clone(&keys),
            timings,
            shutdown.clone(),
            Arc::clone(&metrics),
        )
        .with_audit(Arc::clone(&audit));
        let limits = Limits::default();
        let caps = Caps {
            keys: Arc::clone(&keys),
            max_depth_per_system: config.queue.max_depth_per_system,
            counters: Arc::clone(&limits.counters),
        };
        Self {
            settings,
            keys,
            calls: Calls::new(Arc::clone(&queue), shutdown.clone(), Arc::clone(&metrics))
                .with_caps(caps),
            queue,
            agents,
            shutdown,
            sessions: Arc::new(sessions),
            customer_defaults: config.customer_defaults.clone(),
            metadata: MetadataCache::new(Duration::from_secs(config.metadata_cache_secs)),
            peers: Peers::new(
                Signer::new(config.cluster.secret.clone()),
                Duration::from_secs(config.idle_timeout_secs),
            ),
            metrics,
            audit,
            limits,
            webhooks: crate::webhooks::Targets::new(&config.webhooks),
        }
    }
}
