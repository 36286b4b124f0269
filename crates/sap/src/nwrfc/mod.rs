//! The NW RFC backend ([`NwrfcSystem`]): function modules called over RFC through
//! SAP's NW RFC SDK, loaded at run time (`sapbridge_nwrfc`), the way PyRFC, node-rfc,
//! NCo and JCo reach SAP.
//!
//! - Logon parameters pass through as given (`ASHOST`/`SYSNR` for an application
//!   server, `MSHOST`/`MSSERV`/`SYSID`/`GROUP` for logon groups, `CLIENT`, `USER`,
//!   `LANG`, SNC parameters, `SAPROUTER`); the password comes from a
//!   [`PasswordSource`] read before every logon, through a [`LogonGuard`] that never
//!   lets a refused password lock the user.
//! - Every SDK call is blocking and runs on tokio's blocking pool; a connection is
//!   used by one thread at a time (moved into the blocking task and back).
//! - A call that outlives `timeout` is stopped with `RfcCancel` from another
//!   thread; the connection is then discarded.
//! - One [`NwrfcConnection`] is one ABAP session: a unit of work's BAPIs and their
//!   commit or rollback run on it. Dropped, it returns to the system's pool after
//!   `RfcResetServerContext` (uncommitted work is discarded, as when SAP closes a
//!   session); a broken connection is closed instead.
//! - Exactly-once writes: [`SapConnection::submit_transaction`] sends calls as one
//!   tRFC unit whose TID is derived from the call id ([`trfc_tid`]); SAP runs a TID
//!   at most once, so a unit resubmitted after a crash is not run twice.
//! - Interfaces are read with `RfcGetFunctionDesc` and cached per system
//!   ([`NwrfcSystem::invalidate_metadata`]).

// `RfcError` / `RfcErrorInfo` carry SAP's texts as given; errors are the
// exception, and boxing each would buy nothing.
#![allow(clippy::result_large_err)]

pub(crate) mod convert;
pub(crate) mod errors;
pub(crate) mod metadata;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use sapbridge_nwrfc::ffi::RFC_TID_LN;
use sapbridge_nwrfc::{Connection, Function, Sdk};
pub use sapbridge_nwrfc::{LoadError, SdkVersion};
use sapbridge_proto::FunctionCall;
use sha2::{Digest, Sha256};

use self::errors::{breaks_connection, from_info};
use self::metadata::MetadataCache;
use crate::logon_guard::{LogonGuard, LogonState, PasswordSource};
use crate::{ErrorGroup, Parameters, RfcError, SapConnection, SapSystem};

/// How to reach an SAP system over RFC.
#[derive(Debug, Clone)]
pub struct NwrfcConfig {
    /// The NW RFC library; `None`: `libsapnwrfc.so` / `sapnwrfc.dll` from the
    /// platform's search path.
    pub library: Option<PathBuf>,
    /// Logon parameters by SDK name (`ASHOST`, `SYSNR`, `CLIENT`, `USER`, `LANG`,
    /// `SNC_*`, `SAPROUTER`, ...), without the password.
    pub parameters: Vec<(String, String)>,
    /// Where the password comes from (read before every logon, never logged).
    pub password: PasswordSource,
    /// Longest time one function call may take before it is cancelled.
    pub timeout: Duration,
    /// Idle connections kept for reuse.
    pub pool_size: usize,
    /// Functions (exact names, `PREFIX*`, or `*`) whose committing units go as
    /// one tRFC unit: a unit all of whose calls match is sent with
    /// [`SapConnection::submit_transaction`], runs at most once per call id and
    /// returns no call results.
    pub trfc_functions: Vec<String>,
}

/// The TID of the tRFC unit of call `call_id`: 24 upper-case hex digits of its
/// SHA-256, so every attempt of a call uses the same TID (SAP's TIDs are 24
/// characters; call ids are longer).
pub fn trfc_tid(call_id: &str) -> String {
    let digest = Sha256::digest(call_id.as_bytes());
    digest[..RFC_TID_LN / 2]
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// Whether `function` matches `pattern` (an exact name, `PREFIX*`, or `*`;
/// case-insensitive, as function names are).
fn matches_pattern(pattern: &str, function: &str) -> bool {
    let (pattern, function) = (
        pattern.trim().to_ascii_uppercase(),
        function.trim().to_ascii_uppercase(),
    );
    match pattern.strip_suffix('*') {
        Some(prefix) => function.starts_with(prefix),
        None => pattern == function,
    }
}

struct Inner {
    sdk: &'static Sdk,
    parameters: Vec<(String, String)>,
    guard: LogonGuard,
    timeout: Duration,
    pool_size: usize,
    trfc_functions: Vec<String>,
    idle: Mutex<Vec<Connection>>,
    metadata: MetadataCache,
}

/// An SAP system reached through the NW RFC SDK. Cheap to clone; clones share
/// the pool, the logon guard and the metadata cache.
#[derive(Clone)]
pub struct NwrfcSystem {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NwrfcSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NwrfcSystem")
            .field("library", &self.inner.sdk.library())
            .field("version", self.inner.sdk.version())
            .finish_non_exhaustive()
    }
}

impl NwrfcSystem {
    /// Loads the library (once per process) and builds the backend. Nothing is
    /// sent to SAP until the first call.
    ///
    /// # Errors
    /// [`LoadError`] naming the library and why it cannot be used.
    pub fn new(config: NwrfcConfig) -> Result<Self, LoadError> {
        let sdk = Sdk::load(config.library.as_deref())?;
        Ok(Self {
            inner: Arc::new(Inner {
                sdk,
                parameters: config.parameters,
                guard: LogonGuard::new(config.password),
                timeout: config.timeout,
                pool_size: config.pool_size,
                trfc_functions: config.trfc_functions,
                idle: Mutex::default(),
                metadata: MetadataCache::default(),
            }),
        })
    }

    /// The SDK version found.
    pub fn sdk_version(&self) -> &SdkVersion {
        self.inner.sdk.version()
    }

    /// The library loaded: the path configured, or the file name found on the
    /// platform's search path.
    pub fn library(&self) -> &str {
        self.inner.sdk.library()
    }

    /// Forgets a function's cached interface (every function's with `None`).
    pub fn invalidate_metadata(&self, function: Option<&str>) {
        self.inner.metadata.invalidate(function);
    }

    /// Whether logons go through or SAP refused the password.
    pub fn logon_state(&self) -> LogonState {
        self.inner.guard.state()
    }

    /// Lifts a logon block (the password was fixed in SAP, not in the source).
    pub fn reset_logon_block(&self) {
        self.inner.guard.reset();
    }

    /// Idle connections in the pool.
    pub fn idle_connections(&self) -> usize {
        self.inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Inner {
    async fn open(self: &Arc<Self>) -> Result<Connection, RfcError> {
        let attempt = self.guard.attempt().await?;
        let inner = Arc::clone(self);
        let password = attempt.password.clone();
        let opened = tokio::task::spawn_blocking(move || {
            let mut parameters: Vec<(&str, &str)> = inner
                .parameters
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            parameters.push(("PASSWD", password.expose()));
            Connection::open(inner.sdk, &parameters).map_err(|e| from_info(&e))
        })
        .await
        .map_err(|e| {
            RfcError::new(
                ErrorGroup::CommunicationFailure,
                "RFC_OPEN_FAILED",
                e.to_string(),
            )
        })?;
        match opened {
            Ok(conn) => {
                self.guard.succeeded(attempt);
                Ok(conn)
            }
            Err(error) => {
                self.guard.failed(attempt, &error);
                Err(error)
            }
        }
    }

    /// Puts a connection back after resetting its session, or closes it.
    fn give_back(self: Arc<Self>, mut conn: Connection) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn_blocking(move || {
            if conn.reset_server_context().is_err() || !conn.is_valid() {
                return;
            }
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < self.pool_size {
                idle.push(conn);
            }
        });
    }

    fn call_blocking(
        &self,
        conn: &mut Connection,
        function: &str,
        params: &Parameters,
    ) -> Result<Parameters, RfcError> {
        let name = function.trim().to_ascii_uppercase();
        let meta = self
            .metadata
            .function(conn, &name)
            .map_err(|e| from_info(&e))?;
        convert::check_names(&meta, params)?;
        let mut call = Function::new(&meta.desc).map_err(|e| from_info(&e))?;
        convert::set_inputs(&mut call.data(), &meta, params)?;
        conn.invoke(&mut call).map_err(|e| from_info(&e))?;
        convert::read_outputs(&mut call.data(), &meta)
    }

    fn submit_blocking(
        &self,
        conn: &mut Connection,
        tid: &str,
        calls: &[FunctionCall],
    ) -> Result<(), RfcError> {
        let mut prepared = Vec::with_capacity(calls.len());
        for call in calls {
            let name = call.function.trim().to_ascii_uppercase();
            let meta = self
                .metadata
                .function(conn, &name)
                .map_err(|e| from_info(&e))?;
            let mut function = Function::new(&meta.desc).map_err(|e| from_info(&e))?;
            convert::set_inputs(&mut function.data(), &meta, &call.parameters)?;
            prepared.push(function);
        }
        let mut unit = conn.transaction(tid).map_err(|e| from_info(&e))?;
        for function in &mut prepared {
            unit.invoke(function).map_err(|e| from_info(&e))?;
        }
        unit.submit().map_err(|e| from_info(&e))?;
        // The unit committed; a confirm failure only leaves SAP's TID record
        // behind (which its own reorganisation removes), so it is logged.
        if let Err(e) = unit.confirm() {
            tracing::warn!(tid, error = %e, "tRFC unit committed but its confirmation failed");
        }
        Ok(())
    }
}

#[async_trait]
impl SapSystem for NwrfcSystem {
    fn logon_state(&self) -> Option<LogonState> {
        Some(self.inner.guard.state())
    }

    fn lift_logon_block(&self) {
        self.inner.guard.reset();
    }

    fn forget_metadata(&self) {
        self.invalidate_metadata(None);
    }

    async fn connect(&self) -> Result<Box<dyn SapConnection>, RfcError> {
        let pooled = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => self.inner.open().await?,
        };
        Ok(Box::new(NwrfcConnection {
            inner: Arc::clone(&self.inner),
            conn: Some(conn),
        }))
    }

    fn sends_as_trfc(&self, calls: &[FunctionCall]) -> bool {
        !calls.is_empty()
            && calls.iter().all(|call| {
                self.inner
                    .trfc_functions
                    .iter()
                    .any(|pattern| matches_pattern(pattern, &call.function))
            })
    }
}

/// One RFC connection (one ABAP session) of an [`NwrfcSystem`].
pub struct NwrfcConnection {
    inner: Arc<Inner>,
    /// `None` while a call runs on it, or after it broke.
    conn: Option<Connection>,
}

impl std::fmt::Debug for NwrfcConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NwrfcConnection").finish_non_exhaustive()
    }
}

fn broken() -> RfcError {
    RfcError::new(
        ErrorGroup::CommunicationFailure,
        "RFC_CONNECTION_BROKEN",
        "the RFC connection broke during an earlier call of this unit of work; its uncommitted work is lost",
    )
}

impl NwrfcConnection {
    /// Runs `work` on the connection in a blocking task, cancelling it with
    /// `RfcCancel` past the timeout. The connection comes back unless the work
    /// broke it.
    async fn run<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&Inner, &mut Connection) -> Result<T, RfcError> + Send + 'static,
    ) -> Result<T, RfcError> {
        let mut conn = self.conn.take().ok_or_else(broken)?;
        let canceller = conn.canceller();
        let inner = Arc::clone(&self.inner);
        let mut task = tokio::task::spawn_blocking(move || {
            let result = work(&inner, &mut conn);
            (conn, result)
        });
        let (conn, result) = match tokio::time::timeout(self.inner.timeout, &mut task).await {
            Ok(joined) => joined.map_err(|e| {
                RfcError::new(
                    ErrorGroup::CommunicationFailure,
                    "RFC_CALL_FAILED",
                    e.to_string(),
                )
            })?,
            Err(_) => {
                canceller.cancel();
                let (conn, _) = task.await.map_err(|e| {
                    RfcError::new(
                        ErrorGroup::CommunicationFailure,
                        "RFC_CALL_FAILED",
                        e.to_string(),
                    )
                })?;
                tokio::task::spawn_blocking(move || drop(conn));
                return Err(RfcError::new(
                    ErrorGroup::CommunicationFailure,
                    "RFC_TIMEOUT",
                    format!(
                        "the call took longer than {} s and was cancelled (RfcCancel); the connection was closed",
                        self.inner.timeout.as_secs_f64()
                    ),
                ));
            }
        };
        let keep = match &result {
            Err(error) => !breaks_connection(error) && conn.is_valid(),
            Ok(_) => conn.is_valid(),
        };
        if keep {
            self.conn = Some(conn);
        } else {
            tokio::task::spawn_blocking(move || drop(conn));
        }
        result
    }
}

#[async_trait]
impl SapConnection for NwrfcConnection {
    async fn call(
        &mut self,
        function: &str,
        parameters: &Parameters,
    ) -> Result<Parameters, RfcError> {
        let function = function.to_owned();
        let parameters = parameters.clone();
        self.run(move |inner, conn| inner.call_blocking(conn, &function, &parameters))
            .await
    }

    async fn submit_transaction(
        &mut self,
        tid: &str,
        calls: &[FunctionCall],
    ) -> Result<(), RfcError> {
        let tid = trfc_tid(tid);
        let calls = calls.to_vec();
        self.run(move |inner, conn| inner.submit_blocking(conn, &tid, &calls))
            .await
    }
}

impl Drop for NwrfcConnection {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            Arc::clone(&self.inner).give_back(conn);
        }
    }
}
