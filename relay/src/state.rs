//! The state shared by every HTTP handler and agent session of one relay: the
//! validated settings, hashed credentials, the queue, the agent registry and the
//! shutdown token. Also the id generator for calls and sessions.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use rand::RngCore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agents::AgentRegistry;
use crate::auth::Credentials;
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
    /// Connected agents.
    pub(crate) agents: Arc<AgentRegistry>,
    /// Cancelled when the relay shuts down.
    pub(crate) shutdown: CancellationToken,
    /// Tracks agent session tasks so shutdown can wait for them.
    pub(crate) sessions: TaskTracker,
    /// Defaults of the customer actions.
    pub(crate) customer_defaults: crate::config::CustomerDefaults,
    /// Function interfaces fetched per system.
    pub(crate) metadata: crate::http::MetadataCache,
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
            queue,
            agents: Arc::default(),
            shutdown,
            sessions: TaskTracker::new(),
            customer_defaults: config.customer_defaults.clone(),
            metadata: crate::http::MetadataCache::new(Duration::from_secs(
                config.metadata_cache_secs,
            )),
            refused_outcomes: Arc::default(),
        }
    }
}

/// A new random id with a prefix (`c_` for calls, `s_` for sessions): 128 random bits
/// in hex, unguessable, so a call id alone grants nothing without a key.
pub(crate) fn new_id(prefix: &str) -> String {
    let mut id = String::with_capacity(prefix.len() + 32);
    id.push_str(prefix);
    push_random_hex(&mut id);
    id
}

/// Appends 128 random bits as 32 lower-case hex digits.
fn push_random_hex(id: &mut String) {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    push_hex(id, &bytes);
}

/// Appends `bytes` as lower-case hex digits.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
}

/// A new call id: `c_`, the Unix time in milliseconds (12 hex digits), then 128
/// random bits in hex. As unguessable as [`new_id`], and ids created close in time
/// sort close together, so the queue's id index grows at its end instead of
/// touching a random page for every new call.
pub(crate) fn new_call_id() -> String {
    let millis = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let millis = u64::try_from(millis).unwrap_or(0) & 0xffff_ffff_ffff;
    // One buffer, no formatting machinery: this runs for every call.
    let mut id = String::with_capacity(2 + 12 + 32);
    id.push_str("c_");
    push_hex(&mut id, &millis.to_be_bytes()[2..]);
    push_random_hex(&mut id);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_hex(text: &str) -> bool {
        text.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    #[test]
    fn call_ids_are_time_then_random_hex() {
        let before = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let (a, b) = (new_call_id(), new_call_id());
        let after = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        for id in [&a, &b] {
            assert_eq!(id.len(), 2 + 12 + 32, "{id}");
            assert!(id.starts_with("c_") && is_hex(&id[2..]), "{id}");
            let millis = i128::from_str_radix(&id[2..14], 16).unwrap();
            assert!((before..=after).contains(&millis), "{id}: {millis}");
        }
        assert_ne!(a[14..], b[14..], "the random part differs");
        assert!(a[..14] <= b[..14], "later ids sort later");
    }

    #[test]
    fn ids_are_prefix_then_128_random_bits() {
        let (a, b) = (new_id("s_"), new_id("s_"));
        assert_eq!(a.len(), 34);
        assert!(a.starts_with("s_") && is_hex(&a[2..]), "{a}");
        assert_ne!(a, b);
        let mut out = String::new();
        push_hex(&mut out, &[0x00, 0x0f, 0xa5, 0xff]);
        assert_eq!(out, "000fa5ff");
    }
}
