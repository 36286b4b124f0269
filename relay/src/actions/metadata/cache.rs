//! The per-system cache of function interfaces.
//!
//! An entry is valid for `metadata_cache_secs` (default 15 minutes) *and* only
//! while the set of agents serving the system (agent id and version, as
//! `AgentRegistry::versions_serving` lists them) is the one it was fetched under: an agent joining, leaving or upgrading may mean another SAP
//! system behind the name, so entries of that system are no longer trusted. Each
//! relay replica keeps its own cache. A TTL of 0 disables caching.
//!
//! Concurrency: one `std` mutex over the map, held for map operations only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::interface::FunctionInterface;

/// Entries kept at most; past it, expired entries go first, then all.
const MAX_ENTRIES: usize = 4096;

#[derive(Debug)]
struct Entry {
    interface: Arc<FunctionInterface>,
    agents: Vec<String>,
    stored: Instant,
}

/// Entries by system, then function (looked up by `&str`, without building a key).
type Entries = HashMap<String, HashMap<String, Entry>>;

/// Function interfaces by system and function.
#[derive(Debug)]
pub(crate) struct MetadataCache {
    ttl: Duration,
    entries: Mutex<Entries>,
}

impl MetadataCache {
    /// An empty cache whose entries live `ttl`.
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached interface, if fresh and fetched under the same agents; `agents`
    /// lists the agents serving the system now, asked for only when an entry is
    /// found (most calls find none) and outside the cache's lock.
    pub(crate) fn get(
        &self,
        system: &str,
        function: &str,
        agents: impl FnOnce() -> Vec<String>,
    ) -> Option<Arc<FunctionInterface>> {
        if self.ttl.is_zero() {
            return None;
        }
        // (The guard is dropped at the end of the statement: `agents` runs unlocked.)
        let cached = self
            .lock()
            .get(system)
            .is_some_and(|functions| functions.contains_key(function));
        if !cached {
            return None;
        }
        let agents = agents();
        let mut entries = self.lock();
        let functions = entries.get_mut(system)?;
        let entry = functions.get(function)?;
        if entry.stored.elapsed() < self.ttl && entry.agents == agents {
            return Some(Arc::clone(&entry.interface));
        }
        functions.remove(function);
        if functions.is_empty() {
            entries.remove(system);
        }
        None
    }

    /// Stores an interface fetched while `agents` served the system.
    pub(crate) fn put(&self, system: &str, interface: Arc<FunctionInterface>, agents: Vec<String>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.lock();
        let count = |entries: &Entries| entries.values().map(HashMap::len).sum::<usize>();
        if count(&entries) >= MAX_ENTRIES {
            let ttl = self.ttl;
            for functions in entries.values_mut() {
                functions.retain(|_, e| e.stored.elapsed() < ttl);
            }
            entries.retain(|_, functions| !functions.is_empty());
            if count(&entries) >= MAX_ENTRIES {
                entries.clear();
            }
        }
        let entry = Entry {
            interface,
            agents,
            stored: Instant::now(),
        };
        entries
            .entry(system.to_owned())
            .or_default()
            .insert(entry.interface.function.clone(), entry);
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
        cache.put("SIM", Arc::new(interface("F")), agents.clone());
        assert!(cache.get("SIM", "F", || agents.clone()).is_some());
        assert!(cache.get("PRD", "F", || agents.clone()).is_none());
        assert!(cache.get("SIM", "F", || vec!["a@2".to_owned()]).is_none());
        // The mismatch dropped the entry.
        assert!(cache.get("SIM", "F", || agents.clone()).is_none());
        cache.put("SIM", Arc::new(interface("F")), agents.clone());
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(cache.get("SIM", "F", || agents.clone()).is_none());
        let off = MetadataCache::new(Duration::ZERO);
        off.put("SIM", Arc::new(interface("F")), agents.clone());
        assert!(off.get("SIM", "F", || agents.clone()).is_none());
    }
}
