//! A database of its own for each test of the PostgreSQL store, created on the
//! server that `SAPBRIDGE_TEST_POSTGRES` names (default: the local server at
//! 127.0.0.1:5432, user `postgres`, trust authentication) and dropped when the
//! test ends, so tests run in parallel.
//!
//! Without a reachable server the test says so loudly on stderr (past the test
//! harness's capture) and passes without running; under `CI=true` that is a
//! failure instead.

use std::io::Write;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::NoTls;

use super::super::config::DatabaseUrl;

/// The variable naming the server (a connection string to an existing database).
const SERVER_ENV: &str = "SAPBRIDGE_TEST_POSTGRES";
/// The server when the variable is not set.
const DEFAULT_SERVER: &str =
    "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3";

/// A database made for one test; dropped with it.
#[derive(Debug)]
pub(crate) struct TestDatabase {
    server: String,
    name: String,
    url: DatabaseUrl,
}

impl TestDatabase {
    /// Creates a fresh database, or returns `None` (after saying why on stderr)
    /// when no server answers.
    ///
    /// # Panics
    /// When no server answers and `CI=true`, or when the server refuses to create
    /// the database.
    pub(crate) async fn create() -> Option<Self> {
        let server = std::env::var(SERVER_ENV).unwrap_or_else(|_| DEFAULT_SERVER.to_owned());
        let admin = match tokio_postgres::Config::from_str(&server) {
            Ok(config) => config,
            Err(error) => panic!("{SERVER_ENV} is not a PostgreSQL connection string: {error}"),
        };
        let client = match admin.connect(NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                client
            }
            Err(error) => {
                let message = format!(
                    "SKIPPED: a PostgreSQL store test did not run: no PostgreSQL server at \
                     {server:?} ({error}). Start one or point {SERVER_ENV} at one."
                );
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("{message} (CI=true: PostgreSQL tests must run)");
                }
                // Straight to stderr: the test harness hides what `eprintln!` prints
                // in a passing test.
                let _ = writeln!(std::io::stderr(), "{message}");
                return None;
            }
        };
        let name = format!("sapbridge_test_{}", rand::random::<u64>());
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
        let mut url = admin.clone();
        url.dbname(&name);
        let url = DatabaseUrl::from(to_connection_string(&url));
        Some(Self { server, name, url })
    }

    /// The test database's connection string.
    pub(crate) fn url(&self) -> &DatabaseUrl {
        &self.url
    }
}

/// A `key=value` connection string for the parts of `config` the tests use.
fn to_connection_string(config: &tokio_postgres::Config) -> String {
    let mut parts = Vec::new();
    for host in config.get_hosts() {
        if let tokio_postgres::config::Host::Tcp(name) = host {
            parts.push(format!("host={name}"));
        }
    }
    if let Some(port) = config.get_ports().first() {
        parts.push(format!("port={port}"));
    }
    if let Some(user) = config.get_user() {
        parts.push(format!("user={user}"));
    }
    if let Some(password) = config.get_password() {
        parts.push(format!("password={}", String::from_utf8_lossy(password)));
    }
    if let Some(db) = config.get_dbname() {
        parts.push(format!("dbname={db}"));
    }
    parts.join(" ")
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let server = self.server.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime: the database is dropped from a
        // thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async move {
                let (client, connection) = tokio_postgres::connect(&server, NoTls)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let drop = client.batch_execute(&sql);
                tokio::time::timeout(Duration::from_secs(30), drop)
                    .await
                    .map_err(|_| "timed out".to_owned())?
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("could not drop test database {}: {error}", self.name),
            Err(_) => eprintln!("dropping test database {} panicked", self.name),
        }
    }
}
