//! Server-side stateful sessions for the SOAP-RFC endpoint: SAP's session header
//! (`enableSession`) plus the `sap-contextid` cookie keep one [`SapConnection`]
//! alive across requests, so a BAPI and its `BAPI_TRANSACTION_COMMIT` can run in
//! one SAP session over several HTTP requests.
//!
//! Sessions end when the client sends `enableSession` = `false`, or after
//! [`SESSION_IDLE_TIMEOUT`] without a request (swept whenever a session is looked
//! up); dropping the connection discards uncommitted work, as SAP does when a
//! session ends. Concurrency: the table is a `std::sync::Mutex` never held across
//! an `.await`; each session's connection sits behind a `tokio::sync::Mutex`, so
//! two requests on one session run one after the other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::SapConnection;

/// How long an idle stateful session survives (SAP's ICF default is longer; a
/// relay agent commits within seconds).
pub(crate) const SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Most stateful sessions open at once; further requests for one are refused.
pub(crate) const MAX_SESSIONS: usize = 512;

/// One session's connection, shared between the requests of that session.
pub(crate) type SharedConnection = Arc<tokio::sync::Mutex<Box<dyn SapConnection>>>;

struct Entry {
    connection: SharedConnection,
    last_used: Instant,
}

/// The table of open stateful sessions, by context id.
#[derive(Default)]
pub(crate) struct Sessions {
    table: Mutex<HashMap<String, Entry>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("open", &self.lock().len())
            .finish()
    }
}

/// The session table is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many open SOAP sessions")]
pub(crate) struct SessionsFull;

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The connection of session `id`, if it is still open.
    pub(crate) fn get(&self, id: &str) -> Option<SharedConnection> {
        let now = Instant::now();
        let mut table = self.lock();
        table.retain(|_, entry| now.duration_since(entry.last_used) < SESSION_IDLE_TIMEOUT);
        let entry = table.get_mut(id)?;
        entry.last_used = now;
        Some(entry.connection.clone())
    }

    /// Opens a session around `connection` and returns its new context id.
    ///
    /// # Errors
    /// [`SessionsFull`] when [`MAX_SESSIONS`] are open.
    pub(crate) fn open(
        &self,
        connection: Box<dyn SapConnection>,
    ) -> Result<(String, SharedConnection), SessionsFull> {
        let now = Instant::now();
        let mut table = self.lock();
        table.retain(|_, entry| now.duration_since(entry.last_used) < SESSION_IDLE_TIMEOUT);
        if table.len() >= MAX_SESSIONS {
            return Err(SessionsFull);
        }
        let bytes: [u8; 16] = rand::rng().random();
        let id: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
        let shared = Arc::new(tokio::sync::Mutex::new(connection));
        table.insert(
            id.clone(),
            Entry {
                connection: shared.clone(),
                last_used: now,
            },
        );
        Ok((id, shared))
    }

    /// Ends session `id` (its connection is dropped once the last request using
    /// it finishes).
    pub(crate) fn close(&self, id: &str) {
        self.lock().remove(id);
    }
}
