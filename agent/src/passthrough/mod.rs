//! HTTP pass-through on the agent: the relay tunnels a client's HTTP request for a
//! system (`ANY /v1/systems/{system}/http/{*path}`), the agent runs it against the
//! system's HTTP service configured in `[systems.http]` and streams the answer back.
//!
//! The agent decides what is reachable: a system without an `http` block refuses
//! every request, and its `allow_paths` (deny by default, segment-boundary prefixes,
//! traversal refused in every encoding; see `paths.rs`), checked on the exact path
//! the backend receives (`request_target.rs`), decide the rest. Every refusal is
//! logged at `warn` (`crate::refusal`). The
//! client's sapbridge credentials never reach the backend; the agent adds its own
//! basic auth if configured, handles SAP Gateway's CSRF tokens (`csrf.rs`) and keeps
//! backend cookies on-premises unless `forward_cookies` is set (`target.rs`).
//!
//! Per session, [`SessionStreams`] (`streams.rs`) runs one task per request
//! (`exchange.rs`); bodies travel as binary chunks within per-stream windows, so
//! neither the agent nor the relay holds a body whole — except a CSRF write, which
//! is buffered up to `max_body_bytes` so its one retry can resend it.

mod connector;
mod csrf;
mod exchange;
mod paths;
mod request_target;
mod streams;
mod target;

use std::collections::HashMap;
use std::sync::Arc;

pub(crate) use paths::PathAllowlist;
pub(crate) use streams::{SessionStreams, StreamTable};
use target::HttpTarget;

use crate::AgentError;
use crate::config::AgentConfig;

/// The HTTP services of the systems that have an `http` block.
#[derive(Debug, Default)]
pub(crate) struct HttpTargets {
    /// The id of the agent (for logs).
    agent_id: Arc<str>,
    by_system: HashMap<String, Arc<HttpTarget>>,
}

impl HttpTargets {
    /// Builds the targets of a validated configuration.
    ///
    /// # Errors
    /// [`AgentError::OpenSystem`] when a block is unusable (password not readable,
    /// CA file broken).
    pub(crate) fn from_config(config: &AgentConfig) -> Result<Self, AgentError> {
        let agent_id: Arc<str> = Arc::from(config.agent_id.as_str());
        let mut by_system = HashMap::new();
        for system in &config.systems {
            let Some(http) = &system.http else { continue };
            let target =
                HttpTarget::new(Arc::clone(&agent_id), &system.name, http).map_err(|reason| {
                    AgentError::OpenSystem {
                        system: system.name.clone(),
                        reason: format!("http: {reason}"),
                    }
                })?;
            tracing::info!(system = %system.name, base_url = %target.base(),
                allow_paths = ?http.allow_paths, csrf = http.csrf, "HTTP pass-through enabled");
            by_system.insert(system.name.clone(), Arc::new(target));
        }
        Ok(Self {
            agent_id,
            by_system,
        })
    }

    /// The id of the agent (for logs).
    fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// The target of `system`, if it has one.
    fn get(&self, system: &str) -> Option<Arc<HttpTarget>> {
        self.by_system.get(system).cloned()
    }
}
