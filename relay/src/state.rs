//! The state shared by every HTTP handler and agent session of one relay: the
//! validated settings, hashed credentials, the queue, the agent registry and the
//! shutdown token.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::actions::metadata::MetadataCache;
use crate::agents::AgentRegistry;
use crate::auth::Credentials;
use crate::calls::Calls;
use crate::config::RelayConfig;
use crate::queue::Queue;

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
    /// The public base URL that relative `Location` headers are made absolute with
    /// (no trailing slash), if configured.
    pub(crate) public_url: Option<String>,
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
            public_url: config
                .public_url
                .as_ref()
                .map(|url| url.trim_end_matches('/').to_owned()),
        }
    }
}

/// Everything handlers and sessions share.
pub(crate) struct RelayState {
    /// Limits and timings.
    pub(crate) settings: Settings,
    /// Client API keys (hashed).
    pub(crate) api_keys: Credentials,
    /// Agent tokens (hashed).
    pub(crate) agent_tokens: Credentials,
    /// The systems the relay knows.
    pub(crate) systems: BTreeSet<String>,
    /// The call queue.
    pub(crate) queue: Arc<dyn Queue>,
    /// Submitting, waiting for, finding and cancelling calls (on `queue`).
    pub(crate) calls: Calls,
    /// Connected agents.
    pub(crate) agents: Arc<AgentRegistry>,
    /// Cancelled when the relay shuts down.
    pub(crate) shutdown: CancellationToken,
    /// Tracks agent session tasks so shutdown can wait for them.
    pub(crate) sessions: TaskTracker,
    /// Defaults of the customer actions.
    pub(crate) customer_defaults: crate::config::CustomerDefaults,
    /// Function interfaces fetched per system.
    pub(crate) metadata: MetadataCache,
    /// Outcomes refused because the reporting session did not hold the call's
    /// lease (for `/metrics`).
    pub(crate) refused_outcomes: Arc<AtomicU64>,
}

impl RelayState {
    /// Builds the state from a validated configuration.
    pub(crate) fn new(
        config: &RelayConfig,
        queue: Arc<dyn Queue>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            settings: Settings::new(config),
            api_keys: Credentials::api_keys(&config.api_keys),
            agent_tokens: Credentials::agent_tokens(&config.agent_tokens),
            systems: config.known_systems().into_iter().collect(),
            calls: Calls::new(Arc::clone(&queue), shutdown.clone()),
            queue,
            agents: Arc::default(),
            shutdown,
            sessions: TaskTracker::new(),
            customer_defaults: config.customer_defaults.clone(),
            metadata: MetadataCache::new(Duration::from_secs(config.metadata_cache_secs)),
            refused_outcomes: Arc::default(),
        }
    }
}
