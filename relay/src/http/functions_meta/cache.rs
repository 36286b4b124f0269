//! The per-system cache of function interfaces.
//!
//! An entry is valid for `metadata_cache_secs` (default 15 minutes) *and* only
//! while the set of agents serving the system (agent id and version) is the one it
//! was fetched under: an agent joining, leaving or upgrading may mean another SAP
//! system behind the name, so entries of that system are no longer trusted. Each
//! relay replica keeps its own cache. A TTL of 0 disables caching.
//!
//! Concurrency: one `std` mutex over the map, held for map operations only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::interface::FunctionInterface;
use crate::agents::AgentRegistry;

/// Entries kept at most; past it, expired entries go first, then all.
const MAX_ENTRIES: usize = 4096;

#[derive(Debug)]
struct Entry {
    interface: Arc<FunctionInterface>,
    agents: Vec<String>,
    stored: Instant,
}

/// Function interfaces by system and function.
#[derive(Debug)]
pub(crate) struct MetadataCache {
    ttl: Duration,
    entries: Mutex<HashMap<(String, String), Entry>>,
}

impl MetadataCache {
    /// An empty cache whose entries live `ttl`.
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The agents serving `system`, as the cache compares them.
    pub(crate) fn agent_set(registry: &AgentRegistry, system: &str) -> Vec<String> {
        let mut agents: Vec<String> = registry
            .serving(system)
            .iter()
            .map(|a| format!("{}@{}", a.agent_id, a.agent_version))
            .collect();
        agents.sort();
        agents.dedup();
        agents
    }

    /// The cached interface, if fresh and fetched under the same agents.
    pub(crate) fn get(
        &self,
        system: &str,
        function: &str,
        agents: &[String],
    ) -> Option<Arc<FunctionInterface>> {
        if self.ttl.is_zero() {
            return None;
        }
        let key = (system.to_owned(), function.to_owned());
        let mut entries = self.lock();
        let entry = entries.get(&key)?;
        if entry.stored.elapsed() < self.ttl && entry.agents == agents {
            return Some(Arc::clone(&entry.interface));
        }
        entries.remove(&key);
        None
    }

    /// Stores an interface fetched while `agents` served the system.
    pub(crate) fn put(&self, system: &str, interface: FunctionInterface, agents: Vec<String>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            entries.retain(|_, e| e.stored.elapsed() < ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        let key = (system.to_owned(), interface.function.clone());
        entries.insert(
            key,
            Entry {
                interface: Arc::new(interface),
                agents,
                stored: Instant::now(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interface(name: &str) -> FunctionInterface {
        FunctionInterface {
            function: name.into(),
            parameters: Vec::new(),
            exceptions: Vec::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_and_follow_the_agents() {
        let cache = MetadataCache::new(Duration::from_secs(60));
        let agents = vec!["a@1".to_owned()];
        cache.put("SIM", interface("F"), agents.clone());
        assert!(cache.get("SIM", "F", &agents).is_some());
        assert!(cache.get("PRD", "F", &agents).is_none());
        assert!(cache.get("SIM", "F", &["a@2".to_owned()]).is_none());
        // The mismatch dropped the entry.
        assert!(cache.get("SIM", "F", &agents).is_none());
        cache.put("SIM", interface("F"), agents.clone());
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(cache.get("SIM", "F", &agents).is_none());
        let off = MetadataCache::new(Duration::ZERO);
        off.put("SIM", interface("F"), agents.clone());
        assert!(off.get("SIM", "F", &agents).is_none());
    }
}
