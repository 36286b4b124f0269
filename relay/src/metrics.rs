//! The relay's Prometheus metrics: counters and histograms that move when their
//! event happens (kept in this process since it started), and gauges read from the
//! store and the agent registry when `/metrics` is scraped.
//!
//! Counters count what *this* relay did: with several replicas sharing a store, a
//! call's outcome is counted by the replica whose agent session reported it, and
//! `sum()` over the replicas gives the cluster's total. Gauges of the store
//! (calls stored, queue depth per system) are the same on every replica.
//!
//! Label values a client chooses (function names) are bounded: past
//! [`MAX_FUNCTION_LABELS`] distinct functions the rest count as `function="other"`,
//! so a flow calling random names cannot grow the scrape without end.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Distinct function label values kept before the rest count as `other`.
pub(crate) const MAX_FUNCTION_LABELS: usize = 1_000;

/// `{system}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SystemLabels {
    pub(crate) system: String,
}

/// `{system, function, outcome}` of a finished call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CallLabels {
    pub(crate) system: String,
    pub(crate) function: String,
    pub(crate) outcome: String,
}

/// `{system, reason}` of a refusal.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RefusalLabels {
    pub(crate) system: String,
    pub(crate) reason: String,
}

/// `{system, status}` of a pass-through response (`2xx`, `4xx`, …, or `error`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PassthroughLabels {
    pub(crate) system: String,
    pub(crate) status: String,
}

/// `{system, direction}` of pass-through bytes (`request` or `response`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct BytesLabels {
    pub(crate) system: String,
    pub(crate) direction: String,
}

/// `{credential}` of an authentication failure (`api_key`, `agent_token`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CredentialLabels {
    pub(crate) credential: String,
}

/// `{file}`: the certificate file the relay serves (`[tls] cert_file`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CertificateLabels {
    pub(crate) file: String,
}

/// `{status}` of stored calls.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StatusLabels {
    pub(crate) status: String,
}

/// `{result}` of an agent's connection attempt (`welcomed`, `refused`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SessionLabels {
    pub(crate) result: String,
}

type Seconds = Family<SystemLabels, Histogram, fn() -> Histogram>;

/// Time buckets from 5 ms to about 5.5 minutes, doubling.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 17))
}

/// Every metric the relay exposes, registered once.
pub(crate) struct Metrics {
    registry: Registry,
    /// Function names seen as labels so far (bounded by [`MAX_FUNCTION_LABELS`]).
    functions: Mutex<HashSet<String>>,
    pub(crate) calls_accepted: Family<SystemLabels, Counter>,
    pub(crate) calls_finished: Family<CallLabels, Counter>,
    pub(crate) calls_expired: Counter,
    pub(crate) calls_outcome_unknown: Counter,
    pub(crate) idempotent_replays: Family<SystemLabels, Counter>,
    pub(crate) queued_seconds: Seconds,
    pub(crate) executing_seconds: Seconds,
    pub(crate) leases: Family<SystemLabels, Counter>,
    pub(crate) redeliveries: Family<SystemLabels, Counter>,
    pub(crate) leases_lapsed: Counter,
    pub(crate) agent_sessions: Family<SessionLabels, Counter>,
    pub(crate) agent_refusals: Family<RefusalLabels, Counter>,
    pub(crate) outcomes_refused: Counter,
    pub(crate) passthrough_requests: Family<PassthroughLabels, Counter>,
    pub(crate) passthrough_bytes: Family<BytesLabels, Counter>,
    pub(crate) auth_failures: Family<CredentialLabels, Counter>,
    pub(crate) calls_stored: Family<StatusLabels, Gauge>,
    pub(crate) queue_depth: Gauge,
    pub(crate) system_queue_depth: Family<SystemLabels, Gauge>,
    pub(crate) system_oldest: Family<SystemLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub(crate) agents_connected: Gauge,
    pub(crate) system_agents: Family<SystemLabels, Gauge>,
    pub(crate) store_full: Counter,
    /// The store's own count of space refusals as last copied into `store_full`.
    store_full_seen: std::sync::atomic::AtomicU64,
    pub(crate) audit_dropped: Counter,
    pub(crate) rate_limited: Family<KeyLabels, Counter>,
    pub(crate) limit_refusals: Family<ReasonLabels, Counter>,
    pub(crate) webhook_attempts: Family<OutcomeLabels, Counter>,
    pub(crate) tls_expiry: Family<CertificateLabels, Gauge>,
    /// Held while counters are brought up to counts kept elsewhere, so two scrapes
    /// at once do not both add the same difference.
    catching_up: Mutex<()>,
}

/// `{key}`: an API key's name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KeyLabels {
    pub(crate) key: String,
}

/// `{outcome}` of a webhook attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    pub(crate) outcome: String,
}

/// `{reason}` of a limit's refusal.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    pub(crate) reason: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero, registered.
    pub(crate) fn new() -> Self {
        let metrics = Self {
            registry: Registry::default(),
            functions: Mutex::default(),
            calls_accepted: Family::default(),
            calls_finished: Family::default(),
            calls_expired: Counter::default(),
            calls_outcome_unknown: Counter::default(),
            idempotent_replays: Family::default(),
            queued_seconds: Family::new_with_constructor(seconds),
            executing_seconds: Family::new_with_constructor(seconds),
            leases: Family::default(),
            redeliveries: Family::default(),
            leases_lapsed: Counter::default(),
            agent_sessions: Family::default(),
            agent_refusals: Family::default(),
            outcomes_refused: Counter::default(),
            passthrough_requests: Family::default(),
            passthrough_bytes: Family::default(),
            auth_failures: Family::default(),
            calls_stored: Family::default(),
            queue_depth: Gauge::default(),
            system_queue_depth: Family::default(),
            system_oldest: Family::default(),
            agents_connected: Gauge::default(),
            system_agents: Family::default(),
            store_full: Counter::default(),
            store_full_seen: std::sync::atomic::AtomicU64::new(0),
            audit_dropped: Counter::default(),
            rate_limited: Family::default(),
            limit_refusals: Family::default(),
            webhook_attempts: Family::default(),
            tls_expiry: Family::default(),
            catching_up: Mutex::default(),
        };
        metrics.register()
    }

    fn register(mut self) -> Self {
        let r = &mut self.registry;
        r.register(
            "sapbridge_calls_accepted",
            "Calls accepted and stored by this relay, by system.",
            self.calls_accepted.clone(),
        );
        r.register(
            "sapbridge_calls",
            "Calls finished through this relay, by system, (first) function and outcome \
             (succeeded, failed, cancelled).",
            self.calls_finished.clone(),
        );
        r.register(
            "sapbridge_calls_expired",
            "Queued calls that no agent took before their TTL.",
            self.calls_expired.clone(),
        );
        r.register(
            "sapbridge_calls_outcome_unknown",
            "Calls an agent took and never answered, failed OUTCOME_UNKNOWN after their hold.",
            self.calls_outcome_unknown.clone(),
        );
        r.register(
            "sapbridge_idempotent_replays",
            "Requests whose Idempotency-Key named a stored call (answered from it).",
            self.idempotent_replays.clone(),
        );
        r.register(
            "sapbridge_call_queued_seconds",
            "Time from a call's acceptance to its unit being sent to an agent.",
            self.queued_seconds.clone(),
        );
        r.register(
            "sapbridge_call_executing_seconds",
            "Time from a unit being sent to an agent to its outcome being stored.",
            self.executing_seconds.clone(),
        );
        r.register(
            "sapbridge_leases",
            "Units leased (sent) to agent sessions, first attempts and redeliveries.",
            self.leases.clone(),
        );
        r.register(
            "sapbridge_redeliveries",
            "Units sent again (attempt 2 or later).",
            self.redeliveries.clone(),
        );
        r.register(
            "sapbridge_leases_lapsed",
            "Leases that passed their deadline without an outcome (returned to the queue).",
            self.leases_lapsed.clone(),
        );
        r.register(
            "sapbridge_agent_sessions",
            "Agent connection attempts by result (welcomed, refused); welcomed ones past \
             the first are reconnects.",
            self.agent_sessions.clone(),
        );
        r.register(
            "sapbridge_agent_refusals",
            "Calls the agent refused by its own rules (allowlist, read-only), by reason.",
            self.agent_refusals.clone(),
        );
        r.register(
            "sapbridge_agent_outcomes_refused",
            "Outcomes refused because the reporting agent session did not hold the call's \
             lease for that attempt.",
            self.outcomes_refused.clone(),
        );
        r.register(
            "sapbridge_passthrough_requests",
            "Pass-through requests answered, by system and status class.",
            self.passthrough_requests.clone(),
        );
        r.register(
            "sapbridge_passthrough_bytes",
            "Pass-through body bytes, by system and direction.",
            self.passthrough_bytes.clone(),
        );
        r.register(
            "sapbridge_auth_failures",
            "Requests and agent connections refused for a missing or unknown credential.",
            self.auth_failures.clone(),
        );
        r.register(
            "sapbridge_calls_stored",
            "Calls in the store by state (final states until purged).",
            self.calls_stored.clone(),
        );
        r.register(
            "sapbridge_queue_depth",
            "Calls waiting for an agent, all systems.",
            self.queue_depth.clone(),
        );
        r.register(
            "sapbridge_system_queue_depth",
            "Calls waiting for an agent, by system.",
            self.system_queue_depth.clone(),
        );
        r.register(
            "sapbridge_system_oldest_call_seconds",
            "Age of the oldest call waiting for an agent, by system.",
            self.system_oldest.clone(),
        );
        r.register(
            "sapbridge_agents_connected",
            "Agent sessions connected to this relay.",
            self.agents_connected.clone(),
        );
        r.register(
            "sapbridge_system_agents",
            "Agent sessions connected to this relay serving a system.",
            self.system_agents.clone(),
        );
        r.register(
            "sapbridge_store_full",
            "Changes the queue store refused for want of space (a full disk, or \
             [queue] max_size_mib).",
            self.store_full.clone(),
        );
        r.register(
            "sapbridge_audit_dropped",
            "Audit records dropped because too many waited to be stored.",
            self.audit_dropped.clone(),
        );
        r.register(
            "sapbridge_rate_limited",
            "Requests refused by their API key's rate limit, by key.",
            self.rate_limited.clone(),
        );
        r.register(
            "sapbridge_limit_refusals",
            "Requests refused by a limit, by reason (rate: a key's rate; in_flight: a key's \
             calls queued or running; queue_depth: a system's queued calls).",
            self.limit_refusals.clone(),
        );
        r.register(
            "sapbridge_webhook_attempts",
            "Webhook delivery attempts, by outcome (delivered; retry: not taken, tried \
             again later; failed: not taken, no more attempts).",
            self.webhook_attempts.clone(),
        );
        r.register(
            "sapbridge_tls_certificate_expiry_timestamp_seconds",
            "When the certificate the relay serves ([tls] cert_file, its first one) stops \
             being valid, in seconds since the Unix epoch; follows reloads. No sample \
             without [tls].",
            self.tls_expiry.clone(),
        );
        self
    }

    /// Brings `counter` up to `total`, a count kept elsewhere since start.
    pub(crate) fn catch_up(&self, counter: &Counter, total: u64) {
        let _held = self
            .catching_up
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = counter.get();
        if total > now {
            counter.inc_by(total - now);
        }
    }

    /// The function label for `name`: itself while fewer than
    /// [`MAX_FUNCTION_LABELS`] names were seen, else `other`.
    pub(crate) fn function_label(&self, name: &str) -> String {
        let mut seen = self
            .functions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.contains(name) {
            return name.to_owned();
        }
        if seen.len() < MAX_FUNCTION_LABELS {
            seen.insert(name.to_owned());
            return name.to_owned();
        }
        "other".to_owned()
    }

    /// Counts a finished call.
    pub(crate) fn call_finished(&self, system: &str, function: &str, outcome: &str) {
        self.calls_finished
            .get_or_create(&CallLabels {
                system: system.to_owned(),
                function: self.function_label(function),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts a unit sent to an agent: its lease, a redelivery, and the time it
    /// waited since `queued_for` (when known).
    pub(crate) fn unit_sent(&self, system: &str, attempt: u32, queued_for: Option<Duration>) {
        let labels = system_labels(system);
        self.leases.get_or_create(&labels).inc();
        if attempt > 1 {
            self.redeliveries.get_or_create(&labels).inc();
        }
        if let Some(waited) = queued_for {
            self.queued_seconds
                .get_or_create(&labels)
                .observe(waited.as_secs_f64());
        }
    }

    /// Counts a refused credential.
    /// Counts one webhook attempt that ended as `outcome`.
    pub(crate) fn webhook_attempt(&self, outcome: &str) {
        self.webhook_attempts
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub(crate) fn auth_failed(&self, credential: &str) {
        self.auth_failures
            .get_or_create(&CredentialLabels {
                credential: credential.to_owned(),
            })
            .inc();
    }

    /// Counts one pass-through request answered by an agent of this relay with
    /// `status` (`None`: no response head, the relay answered an error).
    pub(crate) fn passthrough_answered(&self, system: &str, status: Option<u16>) {
        let status = status.map_or_else(|| "error".to_owned(), |s| format!("{}xx", s / 100));
        self.passthrough_requests
            .get_or_create(&PassthroughLabels {
                system: system.to_owned(),
                status,
            })
            .inc();
    }

    /// The counter of pass-through body bytes of `system` going `direction`
    /// (`request` or `response`).
    pub(crate) fn passthrough_bytes_counter(&self, system: &str, direction: &str) -> Counter {
        self.passthrough_bytes
            .get_or_create(&BytesLabels {
                system: system.to_owned(),
                direction: direction.to_owned(),
            })
            .clone()
    }

    /// Brings `sapbridge_store_full_total` up to the store's own count `total`.
    pub(crate) fn store_full_seen(&self, total: u64) {
        let before = self
            .store_full_seen
            .fetch_max(total, std::sync::atomic::Ordering::Relaxed);
        if total > before {
            self.store_full.inc_by(total - before);
        }
    }

    /// The OpenMetrics text of every metric.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// `{system}` of `system`.
pub(crate) fn system_labels(system: &str) -> SystemLabels {
    SystemLabels {
        system: system.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_labels_are_bounded() {
        let metrics = Metrics::new();
        for i in 0..MAX_FUNCTION_LABELS {
            assert_eq!(metrics.function_label(&format!("Z_{i}")), format!("Z_{i}"));
        }
        assert_eq!(metrics.function_label("Z_NEW"), "other");
        assert_eq!(metrics.function_label("Z_7"), "Z_7");
    }

    #[test]
    fn the_text_is_openmetrics_with_every_family() {
        let metrics = Metrics::new();
        metrics.call_finished("PRD", "RFC_PING", "succeeded");
        metrics.unit_sent("PRD", 2, Some(Duration::from_millis(20)));
        let text = metrics.encode();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(
            text.contains(
                "sapbridge_calls_total{system=\"PRD\",function=\"RFC_PING\",outcome=\"succeeded\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("sapbridge_redeliveries_total{system=\"PRD\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sapbridge_call_queued_seconds_count{system=\"PRD\"} 1"),
            "{text}"
        );
    }
}
