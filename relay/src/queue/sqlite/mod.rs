//! The SQLite [`Queue`]: every call in one file (WAL mode), so accepted calls
//! survive a restart and a `kill -9` of the relay.
//!
//! - Writes go through one writer with group commit ([`writer`]): callers
//!   hand over a change and await its answer, sent once the batch transaction that
//!   holds it committed. The changes themselves are in [`ops`]; WAL checkpoints run
//!   on a thread of their own ([`checkpoint`]).
//! - Reads (`get`, `stats`, `ping`) run on a small pool of read connections on the
//!   blocking thread pool; WAL lets them read committed data while the writer
//!   writes, and every answer a caller got was committed first, so a caller always
//!   reads its own writes.
//! - On open, calls leased before the restart go back to the queue (no session
//!   survives a restart); queued calls are claimable at once and final calls stay
//!   readable until the reaper purges them.
//!
//! Durability follows [`Durability`]: `synchronous = NORMAL` (survives a process
//! crash) or `FULL` (also survives a power loss).

mod activity;
mod audit;
mod checkpoint;
mod counts;
mod keys;
mod ops;
mod rows;
mod schema;
#[cfg(test)]
mod tests;
mod webhooks;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};
use sapbridge_proto::{Outcome, Unit};
use time::OffsetDateTime;

use super::config::Durability;
use super::{
    Activity, AuditFilter, AuditRecord, CallFilter, CallRecord, Cancelled, Claimant, Completion,
    Delivery, DeliveryFilter, DeliveryState, Enqueued, NewCall, Queue, QueueError, QueueStats,
    Reaped, Retention, Signals, Subscription, SystemBacklog,
};
use counts::FinalCounts;
use writer::{Placement, Space, Writer};

/// The most changes committed in one transaction.
const MAX_BATCH: usize = 1024;
/// The most idle read connections kept open.
const MAX_IDLE_READERS: usize = 8;

/// How a [`SqliteQueue`] commits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SqliteOptions {
    /// `synchronous = NORMAL` or `FULL`.
    pub(crate) durability: Durability,
    /// The most changes per transaction; 1 commits every change alone (for
    /// comparison in the throughput test).
    pub(crate) max_batch: usize,
    /// How long calls leased before a restart wait for their agent (see
    /// [`Retention::owner_hold`]).
    pub(crate) owner_hold: time::Duration,
    /// The most the file may grow to, in MiB (`PRAGMA max_page_count`).
    pub(crate) max_size_mib: Option<u64>,
}

impl SqliteOptions {
    /// Group commit with `durability`.
    pub(crate) fn new(durability: Durability) -> Self {
        Self {
            durability,
            max_batch: MAX_BATCH,
            owner_hold: super::DEFAULT_OWNER_HOLD,
            max_size_mib: None,
        }
    }
}

/// The SQLite queue. Cheap to share behind an `Arc`; the writer stops when it
/// is dropped, after committing what it was handed.
#[derive(Debug)]
pub(crate) struct SqliteQueue {
    writer: Writer,
    readers: Arc<Readers>,
    signals: Arc<Signals>,
    /// Retained final calls per state (see `counts`).
    finals: Arc<FinalCounts>,
    /// Whether the last batch found no room, and how often changes were refused.
    space: Arc<Space>,
    /// An exclusive lock on `<path>.lock`, held as long as the store lives: a
    /// second relay on the same file would hand out the first one's leases again.
    /// The operating system releases it when the process dies, even by `kill -9`.
    _lock: std::fs::File,
}

/// Takes the exclusive lock on `<path>.lock` that keeps other relays off the file.
fn lock_store(path: &Path) -> Result<std::fs::File, QueueError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| QueueError::Store(format!("{}: {e}", lock_path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(QueueError::Store(format!(
            "{} is in use by another relay (lock {} is held); one relay per queue file",
            path.display(),
            lock_path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(QueueError::Store(format!(
            "{}: cannot lock: {e}",
            lock_path.display()
        ))),
    }
}

impl SqliteQueue {
    /// Opens (or creates) the queue file at `path`, requeues calls leased before a
    /// restart and starts the writer. Blocks while doing so.
    ///
    /// # Errors
    /// [`QueueError::Store`] when the file cannot be opened or created, is not a
    /// database, cannot use WAL mode, or has a newer schema.
    pub(crate) fn open(path: &Path, options: SqliteOptions) -> Result<Self, QueueError> {
        let context = |e: QueueError| QueueError::Store(format!("{}: {e}", path.display()));
        let lock = lock_store(path)?;
        let conn = Connection::open(path).map_err(|e| context(e.into()))?;
        let found = schema::prepare(&conn, options.durability).map_err(context)?;
        if let Some(mib) = options.max_size_mib {
            schema::limit_size(&conn, mib).map_err(context)?;
        }
        let hold_until = rows::nanos(OffsetDateTime::now_utc() + options.owner_hold);
        let requeued = schema::requeue_orphaned_leases(&conn, hold_until).map_err(context)?;
        let finals = Arc::new(FinalCounts::seeded(
            rows::final_counts(&conn).map_err(context)?,
        ));
        tracing::info!(
            path = %path.display(),
            new = found == 0,
            requeued,
            durability = ?options.durability,
            "queue store opened"
        );
        let signals = Arc::new(Signals::default());
        let checkpoints = checkpoint::start(path).map_err(context)?;
        let place = match options.durability {
            Durability::ProcessCrash => Placement::Runtime,
            Durability::PowerLoss => Placement::Thread,
        };
        let space = Arc::new(Space::default());
        let writer = Writer::start(
            conn,
            Arc::clone(&signals),
            Arc::clone(&finals),
            options.max_batch,
            checkpoints,
            place,
            Arc::clone(&space),
        )?;
        let readers = Arc::new(Readers {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
        });
        Ok(Self {
            writer,
            readers,
            signals,
            finals,
            space,
            _lock: lock,
        })
    }

    /// Runs `read` on a read connection on the blocking thread pool.
    async fn read<T, F>(&self, read: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, QueueError> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let conn = readers.take()?;
            let result = read(&conn);
            readers.give_back(conn);
            result
        })
        .await
        .map_err(|e| QueueError::Store(format!("read task failed: {e}")))?
    }
}

/// Idle read connections, opened on demand.
#[derive(Debug)]
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    fn take(&self) -> Result<Connection, QueueError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        if let Some(conn) = idle {
            return Ok(conn);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        schema::configure(&conn)?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
    }
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn enqueue(&self, call: NewCall) -> Result<Enqueued, QueueError> {
        // One row without an idempotency key or deliveries; more with them.
        let keyed = call.idempotency.is_some() || !call.webhooks.is_empty();
        let signals = Arc::clone(&self.signals);
        let work = move |conn: &Connection, effects: &mut writer::Effects| {
            ops::enqueue(conn, effects, &signals, call)
        };
        // Without an idempotency key the enqueue writes one row, last.
        if keyed {
            self.writer.write(work).await
        } else {
            self.writer.write_one(work).await
        }
    }

    async fn claim(
        &self,
        systems: &[String],
        claimant: Claimant<'_>,
        max: usize,
        until: OffsetDateTime,
    ) -> Result<Vec<Unit>, QueueError> {
        let systems = systems.to_vec();
        let session = claimant.session.to_owned();
        let agent = claimant.agent.to_owned();
        let takes_in_doubt = claimant.takes_in_doubt;
        self.writer
            .write(move |conn, _| {
                let now = OffsetDateTime::now_utc();
                let claimant = Claimant {
                    session: &session,
                    agent: &agent,
                    takes_in_doubt,
                };
                ops::claim(conn, &systems, &claimant, max, until, now)
            })
            .await
    }

    async fn complete(
        &self,
        call_id: &str,
        attempt: u32,
        session: &str,
        agent: &str,
        outcome: Outcome,
    ) -> Result<Completion, QueueError> {
        let call_id = call_id.to_owned();
        let session = session.to_owned();
        let agent = agent.to_owned();
        // One read, then one update, last.
        self.writer
            .write_one(move |conn, effects| {
                let now = OffsetDateTime::now_utc();
                let report = ops::Report {
                    call_id: &call_id,
                    attempt,
                    session: &session,
                    agent: &agent,
                };
                ops::complete(conn, effects, &report, outcome, now)
            })
            .await
    }

    async fn release_session(
        &self,
        session: &str,
        hold_until: OffsetDateTime,
    ) -> Result<usize, QueueError> {
        let session = session.to_owned();
        self.writer
            .write(move |conn, effects| ops::release_session(conn, effects, &session, hold_until))
            .await
    }

    async fn cancel(&self, call_id: &str) -> Result<Cancelled, QueueError> {
        let call_id = call_id.to_owned();
        self.writer
            .write(move |conn, effects| {
                ops::cancel(conn, effects, &call_id, OffsetDateTime::now_utc())
            })
            .await
    }

    async fn get(&self, call_id: &str) -> Result<Option<CallRecord>, QueueError> {
        let call_id = call_id.to_owned();
        self.read(move |conn| rows::load(conn, &call_id)).await
    }

    async fn list_calls(&self, filter: CallFilter) -> Result<Vec<CallRecord>, QueueError> {
        self.read(move |conn| rows::list(conn, &filter)).await
    }

    async fn reap(&self, now: OffsetDateTime, retention: Retention) -> Result<Reaped, QueueError> {
        self.writer
            .write(move |conn, effects| ops::reap(conn, effects, now, retention))
            .await
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let (queued, leased) = self.read(rows::open_counts).await?;
        Ok(QueueStats {
            queued,
            leased,
            ..self.finals.get()
        })
    }

    async fn queued_by_system(&self) -> Result<Vec<SystemBacklog>, QueueError> {
        self.read(rows::backlog).await
    }

    async fn activity(&self, since: OffsetDateTime) -> Result<Activity, QueueError> {
        let since = rows::nanos(since);
        self.read(move |conn| activity::since(conn, since)).await
    }

    async fn ping(&self) -> Result<(), QueueError> {
        if self.writer.is_closed() {
            return Err(QueueError::Closed);
        }
        if self.space.full() {
            // Found full: a change that needs a new page says whether there is room
            // again (nothing else may write while load balancers keep clients away).
            self.writer.write_one(writer::probe_space).await?;
        }
        self.read(rows::ping).await
    }

    fn full_refusals(&self) -> u64 {
        self.space.refusals()
    }

    async fn open_calls_of(&self, owner: &str, cap: u64) -> Result<u64, QueueError> {
        let owner = owner.to_owned();
        self.read(move |conn| audit::open_calls_of(conn, &owner, cap))
            .await
    }

    async fn queued_in(&self, system: &str, cap: u64) -> Result<u64, QueueError> {
        let system = system.to_owned();
        self.read(move |conn| audit::queued_in(conn, &system, cap))
            .await
    }

    async fn append_audit(&self, records: Vec<AuditRecord>) -> Result<(), QueueError> {
        if records.is_empty() {
            return Ok(());
        }
        self.writer
            .write(move |conn, effects| audit::append(conn, effects, &records))
            .await
    }

    async fn audit(&self, filter: AuditFilter) -> Result<Vec<AuditRecord>, QueueError> {
        self.read(move |conn| audit::page(conn, &filter)).await
    }

    async fn purge_audit(&self, before: OffsetDateTime) -> Result<usize, QueueError> {
        let before = rows::nanos(before);
        self.writer
            .write(move |conn, effects| audit::purge(conn, effects, before))
            .await
    }

    async fn claim_deliveries(
        &self,
        state: DeliveryState,
        now: OffsetDateTime,
        until: OffsetDateTime,
        max: usize,
    ) -> Result<Vec<Delivery>, QueueError> {
        // Most rounds find nothing due: asked on a read connection first.
        if !self
            .read(move |conn| webhooks::any_due(conn, state, now))
            .await?
        {
            return Ok(Vec::new());
        }
        self.writer
            .write(move |conn, effects| webhooks::claim(conn, effects, state, now, until, max))
            .await
    }

    async fn save_delivery(&self, delivery: Delivery) -> Result<(), QueueError> {
        self.writer
            .write(move |conn, effects| webhooks::save(conn, effects, &delivery))
            .await
    }

    async fn deliveries(&self, filter: DeliveryFilter) -> Result<Vec<Delivery>, QueueError> {
        self.read(move |conn| webhooks::page(conn, &filter)).await
    }

    async fn delivery(&self, id: &str) -> Result<Option<Delivery>, QueueError> {
        let id = id.to_owned();
        self.read(move |conn| webhooks::get(conn, &id)).await
    }

    async fn redeliver(
        &self,
        id: &str,
        now: OffsetDateTime,
        give_up_at: OffsetDateTime,
    ) -> Result<Option<Delivery>, QueueError> {
        let id = id.to_owned();
        self.writer
            .write(move |conn, effects| webhooks::redeliver(conn, effects, &id, now, give_up_at))
            .await
    }

    async fn purge_deliveries(&self, before: OffsetDateTime) -> Result<usize, QueueError> {
        self.writer
            .write(move |conn, effects| webhooks::purge(conn, effects, before))
            .await
    }

    async fn add_subscription(&self, subscription: Subscription) -> Result<(), QueueError> {
        self.writer
            .write(move |conn, effects| webhooks::subscribe(conn, effects, &subscription))
            .await
    }

    async fn remove_subscription(&self, owner: Option<&str>, id: &str) -> Result<bool, QueueError> {
        let owner = owner.map(str::to_owned);
        let id = id.to_owned();
        self.writer
            .write(move |conn, effects| webhooks::unsubscribe(conn, effects, owner.as_deref(), &id))
            .await
    }

    async fn subscriptions(&self, owner: Option<&str>) -> Result<Vec<Subscription>, QueueError> {
        let owner = owner.map(str::to_owned);
        self.read(move |conn| webhooks::subscriptions(conn, owner.as_deref()))
            .await
    }

    async fn add_key(&self, key: super::StoredKey) -> Result<bool, QueueError> {
        self.writer
            .write(move |conn, effects| keys::add_key(conn, effects, &key))
            .await
    }

    async fn revoke_key(&self, name: &str, at: OffsetDateTime) -> Result<bool, QueueError> {
        let name = name.to_owned();
        self.writer
            .write(move |conn, effects| keys::revoke_key(conn, effects, &name, at))
            .await
    }

    async fn stored_keys(&self) -> Result<Vec<super::StoredKey>, QueueError> {
        self.read(keys::stored_keys).await
    }

    async fn add_agent_token(&self, token: super::StoredAgentToken) -> Result<bool, QueueError> {
        self.writer
            .write(move |conn, effects| keys::add_agent_token(conn, effects, &token))
            .await
    }

    async fn revoke_agent_token(&self, name: &str, at: OffsetDateTime) -> Result<bool, QueueError> {
        let name = name.to_owned();
        self.writer
            .write(move |conn, effects| keys::revoke_agent_token(conn, effects, &name, at))
            .await
    }

    async fn stored_agent_tokens(&self) -> Result<Vec<super::StoredAgentToken>, QueueError> {
        self.read(keys::stored_agent_tokens).await
    }

    async fn record_uses(&self, uses: Vec<super::CredentialUse>) -> Result<(), QueueError> {
        self.writer
            .write(move |conn, effects| keys::record_uses(conn, effects, &uses))
            .await
    }

    async fn credential_uses(&self) -> Result<Vec<super::CredentialUse>, QueueError> {
        self.read(keys::credential_uses).await
    }

    fn signals(&self) -> &Arc<Signals> {
        &self.signals
    }
}
