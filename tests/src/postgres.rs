//! PostgreSQL for end-to-end tests.
//!
//! - [`TestDatabase`]: a database of its own on the shared server
//!   (`SAPBRIDGE_TEST_POSTGRES`, default 127.0.0.1:5432, user `postgres`, trust
//!   authentication), dropped with the value, so tests run in parallel.
//! - [`PgServer`]: a private server started from the installed binaries
//!   (`initdb`/`pg_ctl`, in a temp dir, on a free loopback port) for tests that
//!   stop, kill or restart the database itself.
//!
//! Without PostgreSQL, [`skip_or_fail`] says loudly on stderr that the test did
//! not run and why; under `CI=true` it fails the test instead.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio_postgres::NoTls;

use crate::processes::free_port;

/// The variable naming the shared server (a connection string to an existing
/// database).
pub const SERVER_ENV: &str = "SAPBRIDGE_TEST_POSTGRES";
/// The shared server when the variable is not set.
pub const DEFAULT_SERVER: &str =
    "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3";
/// The variable naming the directory of `initdb` and `pg_ctl`.
pub const BIN_ENV: &str = "SAPBRIDGE_PG_BIN";

/// Reports a test that could not run for want of PostgreSQL: on stderr (past the
/// harness's capture), or as a panic under `CI=true`.
///
/// # Panics
/// Under `CI=true`.
pub fn skip_or_fail(test: &str, why: &str) {
    let message = format!("SKIPPED: {test} did not run: {why}");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message} (CI=true: PostgreSQL tests must run)");
    }
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// A database made for one test on a running server; dropped with the value.
#[derive(Debug)]
pub struct TestDatabase {
    server: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates a fresh database on the shared server.
    ///
    /// # Errors
    /// When the server cannot be reached or refuses (the message says which).
    pub async fn create() -> Result<Self> {
        let server = std::env::var(SERVER_ENV).unwrap_or_else(|_| DEFAULT_SERVER.to_owned());
        Self::create_on(&server).await
    }

    /// Creates a fresh database on the server `server` connects to.
    ///
    /// # Errors
    /// When the server cannot be reached or refuses.
    pub async fn create_on(server: &str) -> Result<Self> {
        let admin = tokio_postgres::Config::from_str(server).context("server connection string")?;
        let (client, connection) = admin
            .connect(NoTls)
            .await
            .with_context(|| format!("no PostgreSQL server at {server:?}"))?;
        tokio::spawn(connection);
        let name = format!("sapbridge_test_{}", rand::random::<u64>());
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("creating database {name}"))?;
        let url = with_dbname(&admin, &name);
        Ok(Self {
            server: server.to_owned(),
            name,
            url,
        })
    }

    /// The database's connection string (`key=value` form).
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let server = self.server.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop runs inside the test's runtime: a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || -> Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let (client, connection) = tokio_postgres::connect(&server, NoTls).await?;
                tokio::spawn(connection);
                tokio::time::timeout(Duration::from_secs(30), client.batch_execute(&sql))
                    .await
                    .context("timed out")??;
                Ok(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// `config`'s host, port, user and password with database `dbname`, as a
/// `key=value` connection string.
fn with_dbname(config: &tokio_postgres::Config, dbname: &str) -> String {
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
    parts.push(format!("dbname={dbname}"));
    parts.join(" ")
}

/// A private PostgreSQL server in a temp dir, on a free loopback port, stopped
/// (immediately, as a crash would) and deleted when dropped. Its methods block
/// while `pg_ctl` works: call them from `spawn_blocking` in async tests.
#[derive(Debug)]
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// Run the binaries as the `postgres` user (the server refuses to run as root).
    as_postgres: bool,
}

impl PgServer {
    /// Initialises a cluster (trust authentication, superuser `postgres`) and
    /// starts it.
    ///
    /// # Errors
    /// When the binaries are missing, or `initdb` or `pg_ctl start` fails (their
    /// output is in the message).
    pub fn start() -> Result<Self> {
        let bin = binaries()?;
        let as_postgres = running_as_root();
        let dir = tempfile::Builder::new().prefix("sapbridge-pg-").tempdir()?;
        if as_postgres {
            run(Command::new("chown").arg("postgres:").arg(dir.path()))?;
        }
        let port = free_port()?;
        let server = Self {
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = server.data();
        server.pg(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
        )?;
        server.start_again()?;
        Ok(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs one of the server's binaries (as `postgres` when we are root).
    fn pg(&self, tool: &str, args: &[&str]) -> Result<()> {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        command.args(args);
        run(&mut command)
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection string to database `dbname` on this server.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={dbname} connect_timeout=3",
            self.port
        )
    }

    /// Starts the server (again) and waits until it accepts connections.
    ///
    /// # Errors
    /// When `pg_ctl start` fails.
    pub fn start_again(&self) -> Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            path_str(self.dir.path())?
        );
        let data = self.data();
        let log = self.dir.path().join("server.log");
        self.pg(
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-l",
                path_str(&log)?,
                "-o",
                &options,
                "-w",
                "-t",
                "30",
                "start",
            ],
        )
    }

    /// Stops the server as a crash would (`pg_ctl stop -m immediate`: no
    /// checkpoint, clients cut off; the next start recovers from the WAL).
    ///
    /// # Errors
    /// When `pg_ctl stop` fails.
    pub fn kill(&self) -> Result<()> {
        let data = self.data();
        self.pg(
            "pg_ctl",
            &["-D", path_str(&data)?, "-m", "immediate", "-w", "stop"],
        )
    }

    /// Kills the server and starts it again.
    ///
    /// # Errors
    /// When either step fails.
    pub fn restart(&self) -> Result<()> {
        self.kill()?;
        self.start_again()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Not running already is fine.
        let _ = self.kill();
    }
}

/// The directory of `initdb` and `pg_ctl`: `SAPBRIDGE_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin`.
fn binaries() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var(BIN_ENV) {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no PostgreSQL server binaries in /usr/lib/postgresql (set SAPBRIDGE_PG_BIN)")?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!("no pg_ctl under /usr/lib/postgresql/*/bin (set {BIN_ENV})"),
    }
}

/// Whether this process runs as root (whose files `/proc/self` shows).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

/// Runs `command`, failing with its output when it fails.
fn run(command: &mut Command) -> Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
