//! The `[queue]` table of the relay configuration: which store holds the calls,
//! where, how durable each commit is, and how long idempotency keys are enforced.
//!
//! ```toml
//! [queue]
//! store = "sqlite"                    # "memory" (the default) or "sqlite"
//! path = "/var/lib/sapbridge/relay.db"
//! durability = "process-crash"        # or "power-loss"
//! idempotency_retention_secs = 86400
//! ```
//!
//! A relative `path` resolves against the relay's working directory. One relay
//! process per file: a second relay on the same file would hand out the first one's
//! leases again when it starts.

use std::path::PathBuf;

use serde::Deserialize;

/// Where the relay keeps its calls: the `[queue]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// The store (default `"memory"`: pending calls and results are lost when the
    /// relay stops; use `"sqlite"` in production).
    pub store: StoreKind,
    /// The SQLite file (required with `store = "sqlite"`, refused with `"memory"`).
    /// Created with its WAL files (`-wal`, `-shm`) next to it if missing.
    pub path: Option<PathBuf>,
    /// What an accepted call survives (sqlite only; default `"process-crash"`).
    pub durability: Durability,
    /// How long an `Idempotency-Key` is enforced after its call was submitted
    /// (default 86400 s = 24 h). While enforced, a retry with the same key and body
    /// gets the stored outcome and the call is kept even past
    /// `result_retention_secs`; an open call's key is always enforced.
    pub idempotency_retention_secs: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            store: StoreKind::Memory,
            path: None,
            durability: Durability::ProcessCrash,
            idempotency_retention_secs: 86_400,
        }
    }
}

/// The kind of store behind the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// In process memory: fast, and nothing survives a restart.
    Memory,
    /// One SQLite file in WAL mode, written by one writer thread with group commit.
    Sqlite,
}

/// What a call the relay has accepted (answered `200`/`202`) survives. The relay
/// answers only after the call's transaction committed, in either mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// `synchronous = NORMAL`: a commit is written to the WAL file but not flushed to
    /// the disk. Survives the relay process crashing or being killed (`kill -9`,
    /// OOM kill, container restart): the operating system still writes the data.
    /// An operating-system crash or a power loss may lose the last commits (never
    /// corrupts the file). The fast default.
    ProcessCrash,
    /// `synchronous = FULL`: every commit is flushed (`fsync`) to the disk before the
    /// relay answers. Also survives an operating-system crash or a power loss, on a
    /// disk that honours flushes. Group commit shares one flush among every call
    /// committed together, so throughput drops less than latency rises.
    PowerLoss,
}

/// A `[queue]` value that does not fit: the `queue.*` field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub(crate) struct QueueConfigError {
    /// The field, as `queue.path`.
    pub(crate) field: &'static str,
    /// What is wrong with it.
    pub(crate) problem: String,
}

impl QueueConfig {
    /// Checks the table.
    ///
    /// # Errors
    /// [`QueueConfigError`] naming the `queue.*` field that is wrong.
    pub(crate) fn validate(&self) -> Result<(), QueueConfigError> {
        let out = |field, problem: &str| {
            Err(QueueConfigError {
                field,
                problem: problem.to_owned(),
            })
        };
        match (self.store, &self.path) {
            (StoreKind::Sqlite, None) => {
                return out("queue.path", "required when queue.store = \"sqlite\"");
            }
            (StoreKind::Sqlite, Some(path)) if path.as_os_str().is_empty() => {
                return out("queue.path", "must not be empty");
            }
            (StoreKind::Memory, Some(_)) => {
                return out(
                    "queue.path",
                    "only used with queue.store = \"sqlite\" (the store is \"memory\")",
                );
            }
            _ => {}
        }
        if self.idempotency_retention_secs == 0 {
            return out("queue.idempotency_retention_secs", "must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> QueueConfig {
        toml::from_str(text).expect("valid toml")
    }

    #[test]
    fn defaults_to_memory() {
        let config = parse("");
        assert_eq!(config.store, StoreKind::Memory);
        assert_eq!(config.durability, Durability::ProcessCrash);
        assert_eq!(config.idempotency_retention_secs, 86_400);
        config.validate().expect("valid");
    }

    #[test]
    fn sqlite_needs_a_path_and_memory_refuses_one() {
        let config = parse(
            r#"
            store = "sqlite"
            path = "relay.db"
            durability = "power-loss"
            "#,
        );
        config.validate().expect("valid");
        assert_eq!(config.durability, Durability::PowerLoss);
        let err = parse(r#"store = "sqlite""#).validate().unwrap_err();
        assert!(err.to_string().starts_with("queue.path"), "{err}");
        let err = parse(r#"path = "relay.db""#).validate().unwrap_err();
        assert!(err.to_string().contains("only used with"), "{err}");
        assert!(toml::from_str::<QueueConfig>(r#"store = "postgres""#).is_err());
        assert!(toml::from_str::<QueueConfig>("file = 1").is_err());
    }
}
