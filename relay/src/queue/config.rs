//! The `[queue]` table of the relay configuration: which store holds the calls,
//! where, how durable each commit is, and how long idempotency keys are enforced.
//!
//! ```toml
//! [queue]
//! store = "sqlite"                    # "memory" (the default), "sqlite" or "postgres"
//! path = "/var/lib/sapbridge/relay.db"
//! durability = "process-crash"        # or "power-loss"
//! idempotency_retention_secs = 86400
//! ```
//!
//! `sapbridge relay` makes a relative `path` of its file absolute under the file's
//! folder (one given by a variable or flag, under the working directory). One relay
//! process per file: a second relay on the same file would hand out the first one's
//! leases again when it starts.
//!
//! `store = "postgres"` with `url = "postgres://user:password@host/db"` (or the
//! `--queue-url` flag / `SAPBRIDGE_QUEUE_URL`) shares one PostgreSQL database among
//! any number of relay replicas. The URL may hold a password: it is a secret, never
//! logged, and masked in `Debug`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;

/// The SQLite file of `store = "sqlite"` without `path`: in the state directory of
/// the shipped systemd unit and the volume of the container image.
pub(crate) const DEFAULT_SQLITE_PATH: &str = "/var/lib/sapbridge/relay.db";

/// Where the relay keeps its calls: the `[queue]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// The store (default `"memory"`: pending calls and results are lost when the
    /// relay stops; use `"sqlite"` in production).
    pub store: StoreKind,
    /// The SQLite file (with `store = "sqlite"`; refused with the other stores),
    /// `/var/lib/sapbridge/relay.db` when not given. Created with its WAL files (`-wal`,
    /// `-shm`) next to it if missing.
    pub path: Option<PathBuf>,
    /// What an accepted call survives (sqlite only; default `"process-crash"`).
    /// PostgreSQL keeps its server's `synchronous_commit` (`on` by default: an
    /// accepted call survives a power loss of the database machine).
    pub durability: Durability,
    /// The PostgreSQL connection URL (required with `store = "postgres"`, refused
    /// otherwise): `postgres://user:password@host:5432/database?sslmode=disable`
    /// or the `key=value` form libpq accepts.
    pub url: Option<DatabaseUrl>,
    /// How long an `Idempotency-Key` is enforced after its call was submitted
    /// (default 86400 s = 24 h). While enforced, a retry with the same key and body
    /// gets the stored outcome and the call is kept even past
    /// `result_retention_secs`; an open call's key is always enforced.
    pub idempotency_retention_secs: u64,
    /// The most the SQLite file may grow to, in MiB (sqlite only; default: as far
    /// as the disk allows). At the limit, as on a full disk, new calls answer
    /// `503` with `Retry-After` and `/readyz` answers `503` until space is free
    /// again (results purged, the limit raised).
    pub max_size_mib: Option<u64>,
    /// The most calls queued for one system (default: no limit). Past it a new
    /// call for that system answers `503` with `Retry-After` (problem type
    /// `queue-full`); calls already queued are untouched. Counted in the store, so
    /// it holds across replicas.
    pub max_depth_per_system: Option<u64>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            store: StoreKind::Memory,
            path: None,
            durability: Durability::ProcessCrash,
            url: None,
            idempotency_retention_secs: 86_400,
            max_size_mib: None,
            max_depth_per_system: None,
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
    /// A PostgreSQL database, shared by any number of relay replicas.
    Postgres,
}

/// A PostgreSQL connection string. It may hold a password, so it is never
/// printed: `Debug` and [`DatabaseUrl::redacted`] show the user, hosts, port and
/// database only.
///
/// Any string is taken when the file is read and checked by
/// the configuration check (`RelayConfig::validate`): a parse error of the TOML reader would quote the
/// line, password and all.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The parsed connection settings (empty settings for a string that does not
    /// parse: the configuration check (`RelayConfig::validate`) refuses those).
    pub(crate) fn settings(&self) -> tokio_postgres::Config {
        tokio_postgres::Config::from_str(&self.0).unwrap_or_default()
    }

    /// Checks that the string is a connection string the driver understands.
    fn check(&self) -> Result<(), String> {
        match tokio_postgres::Config::from_str(&self.0) {
            // The driver's message names the part that is wrong, never the password.
            Err(error) => Err(format!("not a PostgreSQL connection string: {error}")),
            Ok(config) if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require => Err(
                "sslmode=require: TLS to the database is not supported yet (use \
                     sslmode=disable on a private network or through a local proxy)"
                    .to_owned(),
            ),
            Ok(_) => Ok(()),
        }
    }

    /// `user@host:port/database`, without the password or other options.
    pub fn redacted(&self) -> String {
        let config = self.settings();
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .map(|host| match host {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
        format!(
            "{}@{}:{}/{}",
            config.get_user().unwrap_or("(default user)"),
            hosts.join(","),
            if ports.is_empty() {
                "5432".to_owned()
            } else {
                ports.join(",")
            },
            config.get_dbname().unwrap_or("(default database)"),
        )
    }
}

impl From<String> for DatabaseUrl {
    fn from(text: String) -> Self {
        Self(text)
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    /// Parses and checks a connection string (for a command-line flag).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let url = Self(text.to_owned());
        url.check()?;
        Ok(url)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl")
            .field(&self.redacted())
            .finish()
    }
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
    /// The SQLite file: `path`, or [`DEFAULT_SQLITE_PATH`].
    pub fn sqlite_path(&self) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SQLITE_PATH))
    }

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
            (StoreKind::Sqlite, Some(path)) if path.as_os_str().is_empty() => {
                return out("queue.path", "must not be empty");
            }
            (StoreKind::Memory | StoreKind::Postgres, Some(_)) => {
                return out("queue.path", "only used with queue.store = \"sqlite\"");
            }
            _ => {}
        }
        match (self.store, &self.url) {
            (StoreKind::Postgres, None) => {
                return out(
                    "queue.url",
                    "required when queue.store = \"postgres\" (or --queue-url / \
                     SAPBRIDGE_QUEUE_URL)",
                );
            }
            (StoreKind::Memory | StoreKind::Sqlite, Some(_)) => {
                return out("queue.url", "only used with queue.store = \"postgres\"");
            }
            (StoreKind::Postgres, Some(url)) => {
                if let Err(problem) = url.check() {
                    return out("queue.url", &problem);
                }
            }
            _ => {}
        }
        if self.idempotency_retention_secs == 0 {
            return out("queue.idempotency_retention_secs", "must be at least 1");
        }
        match (self.store, self.max_size_mib) {
            (StoreKind::Sqlite, Some(0)) => return out("queue.max_size_mib", "must be at least 1"),
            (StoreKind::Memory | StoreKind::Postgres, Some(_)) => {
                return out(
                    "queue.max_size_mib",
                    "only used with queue.store = \"sqlite\"",
                );
            }
            _ => {}
        }
        if self.max_depth_per_system == Some(0) {
            return out("queue.max_depth_per_system", "must be at least 1");
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
    fn sqlite_has_an_absolute_default_path_and_memory_refuses_one() {
        let config = parse(
            r#"
            store = "sqlite"
            path = "relay.db"
            durability = "power-loss"
            "#,
        );
        config.validate().expect("valid");
        assert_eq!(config.durability, Durability::PowerLoss);
        let default = parse(r#"store = "sqlite""#);
        default.validate().expect("valid");
        assert_eq!(default.sqlite_path(), PathBuf::from(DEFAULT_SQLITE_PATH));
        assert!(default.sqlite_path().is_absolute());
        let err = parse("store = \"sqlite\"\npath = \"\"")
            .validate()
            .unwrap_err();
        assert!(err.to_string().starts_with("queue.path"), "{err}");
        let err = parse(r#"path = "relay.db""#).validate().unwrap_err();
        assert!(err.to_string().contains("only used with"), "{err}");
        assert!(toml::from_str::<QueueConfig>(r#"store = "mysql""#).is_err());
        assert!(toml::from_str::<QueueConfig>("file = 1").is_err());
    }

    #[test]
    fn postgres_needs_a_url_and_never_shows_its_password() {
        let config = parse(
            r#"
            store = "postgres"
            url = "postgres://relay:s3cret-pw@db.example:6432/sapbridge"
            "#,
        );
        config.validate().expect("valid");
        let url = config.url.as_ref().expect("a url");
        assert_eq!(url.redacted(), "relay@db.example:6432/sapbridge");
        let shown = format!("{config:?} {url:?}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        assert!(shown.contains("db.example"), "{shown}");
        let err = parse(r#"store = "postgres""#).validate().unwrap_err();
        assert!(err.to_string().starts_with("queue.url"), "{err}");
        let err = parse(r#"url = "postgres://h/db""#).validate().unwrap_err();
        assert!(err.to_string().contains("only used with"), "{err}");
        let err = parse("store = \"postgres\"\nurl = \"postgres://h/db\"\npath = \"x.db\"")
            .validate()
            .unwrap_err();
        assert!(err.to_string().starts_with("queue.path"), "{err}");
        // A malformed URL is refused, and the message holds no password.
        let err = parse("store = \"postgres\"\nurl = \"postgres://u:pw-in-url@h:notaport/db\"")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a PostgreSQL connection string"), "{err}");
        assert!(!err.contains("pw-in-url"), "{err}");
        let err = parse("store = \"postgres\"\nurl = \"postgres://h/db?sslmode=require\"")
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("not supported yet"), "{err}");
    }
}
