//! The SQLite file's layout and settings: WAL mode, the `synchronous` level the
//! configured durability asks for, the tables and indexes (versioned with
//! `PRAGMA user_version`), and the recovery every start runs.
//!
//! Tables:
//! - `calls`: one row per call. `seq` (the rowid) is the enqueue order; `state` is
//!   `queued | leased | succeeded | failed | expired | cancelled`; a leased row has
//!   `lease_until`; `lease_session` and `lease_agent` name the latest lease's holder
//!   and stay after the lease ended (with `hold_until`, until when the call waits
//!   for that agent); a final row has `completed_at` (and the outcome as JSON once
//!   an agent reported one). Times are Unix nanoseconds (UTC). `owner` is the name
//!   of the API key that created the call (NULL in rows written before schema
//!   version 3 without an idempotency key).
//! - `idempotency_keys`: the keys still enforced, each naming its call and the
//!   request fingerprint it was first used with. The reaper forgets them.
//! - `audit`: the audit log (see `queue::audit`), numbered by `seq` in storing
//!   order; `at` in Unix nanoseconds. The reaper purges it by `at`.
//!
//! `calls_open_by_owner` counts a key's calls queued or leased (its
//! `max_in_flight`); a system's queued calls are counted on the claim's index.

use std::time::Duration;

use rusqlite::Connection;

use super::super::QueueError;
use super::super::config::Durability;

/// The schema version this relay writes.
pub(super) const SCHEMA_VERSION: i64 = 10;

/// How long a statement waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How many prepared statements each connection keeps.
const STATEMENT_CACHE: usize = 64;

/// The WAL is truncated to this size after a checkpoint.
const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Version 5: the audit log's table, and the index that counts a key's open calls
/// (its `max_in_flight`); in the schema and in the migration to it.
macro_rules! audit_table {
    () => {
        "
CREATE TABLE audit (
    seq          INTEGER PRIMARY KEY,
    at           INTEGER NOT NULL,
    event        TEXT    NOT NULL,
    key          TEXT,
    client       TEXT,
    system       TEXT,
    method       TEXT,
    target       TEXT,
    call_id      TEXT,
    outcome      TEXT    NOT NULL,
    status       INTEGER,
    duration_ms  INTEGER,
    agent        TEXT,
    detail       TEXT
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_call ON audit (call_id) WHERE call_id IS NOT NULL;
CREATE INDEX calls_open_by_owner ON calls (owner) WHERE state IN ('queued', 'leased');
"
    };
}

/// Version 7: webhook deliveries (stored with their call, leased to one sender at
/// a time, due by `next_at`) and subscriptions; in the schema and in the migration
/// to it.
macro_rules! webhook_tables {
    () => {
        "
CREATE TABLE webhook_deliveries (
    seq              INTEGER PRIMARY KEY,
    id               TEXT    NOT NULL UNIQUE,
    call_id          TEXT    NOT NULL,
    owner            TEXT,
    system           TEXT    NOT NULL,
    url              TEXT    NOT NULL,
    subscription     TEXT,
    state            TEXT    NOT NULL,
    attempts         INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    next_at          INTEGER NOT NULL,
    give_up_at       INTEGER,
    lease_until      INTEGER,
    last_attempt_at  INTEGER,
    last_status      INTEGER,
    last_error       TEXT,
    delivered_at     INTEGER,
    payload          TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at)
    WHERE state IN ('waiting', 'pending');
CREATE INDEX webhook_deliveries_call ON webhook_deliveries (call_id);
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);
CREATE TABLE webhook_subscriptions (
    id          TEXT    PRIMARY KEY,
    owner       TEXT    NOT NULL,
    url         TEXT    NOT NULL,
    system      TEXT,
    created_at  INTEGER NOT NULL
);
"
    };
}

/// Version 8: API keys created through the API (`/v1/admin/keys`); in the
/// schema and in the migration to it.
macro_rules! keys_table {
    () => {
        "
CREATE TABLE api_keys (
    name        TEXT    PRIMARY KEY,
    sha256      TEXT    NOT NULL,
    systems     TEXT    NOT NULL,
    operator    INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    created_by  TEXT    NOT NULL,
    revoked_at  INTEGER
);
"
    };
}

/// Version 10: agent tokens created through the API
/// (`/v1/admin/agent-tokens`), and when each key and token was last used (the
/// configuration's too, by name); in the schema and in the migration to it.
macro_rules! tokens_tables {
    () => {
        "
CREATE TABLE agent_tokens (
    name        TEXT    PRIMARY KEY,
    sha256      TEXT    NOT NULL,
    systems     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    created_by  TEXT    NOT NULL,
    revoked_at  INTEGER
);
CREATE TABLE credential_uses (
    kind          TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    last_used_at  INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
) WITHOUT ROWID;
"
    };
}

const SCHEMA: &str = concat!(
    "
CREATE TABLE calls (
    seq              INTEGER PRIMARY KEY,
    id               TEXT    NOT NULL UNIQUE,
    system           TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    calls            TEXT    NOT NULL,
    commit_policy    TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    lease_session    TEXT,
    lease_agent      TEXT,
    lease_until      INTEGER,
    hold_until       INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    submitted_at     INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    completed_at     INTEGER,
    agent            TEXT,
    outcome          TEXT,
    idem_scope       TEXT,
    idem_key         TEXT,
    idem_fingerprint TEXT,
    owner            TEXT,
    trace            TEXT
);
CREATE INDEX calls_queued_by_system ON calls (system, seq) WHERE state = 'queued';
CREATE INDEX calls_queued_expiry ON calls (expires_at) WHERE state = 'queued';
CREATE INDEX calls_leased_session ON calls (lease_session, lease_until) WHERE state = 'leased';
CREATE INDEX calls_completed_at ON calls (completed_at) WHERE completed_at > 0;
CREATE INDEX calls_submitted ON calls (submitted_at, id);
CREATE TABLE idempotency_keys (
    scope        TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    fingerprint  TEXT    NOT NULL,
    call_id      TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_call ON idempotency_keys (call_id);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
",
    audit_table!(),
    webhook_tables!(),
    keys_table!(),
    tokens_tables!()
);

/// From version 1: the claim's index (added late to version 1 files), without the
/// indexes every write paid for and no hot read needs. Version 1's
/// `calls_completed ... WHERE completed_at IS NOT NULL` made SQLite prepare every
/// statement that binds a call id again on each run (a variable compared against an
/// `IS NOT NULL` partial index counts as plan-relevant); `> 0` says the same of
/// Unix times without that. Its `AUTOINCREMENT` stays: harmless.
const MIGRATE_FROM_1: &str = "
CREATE INDEX IF NOT EXISTS calls_queued_by_system ON calls (system, seq) WHERE state = 'queued';
DROP INDEX IF EXISTS calls_by_state;
DROP INDEX IF EXISTS calls_completed;
CREATE INDEX IF NOT EXISTS calls_completed_at ON calls (completed_at) WHERE completed_at > 0;
";

/// From version 2: the call's owner. A row with an idempotency key holds the
/// key's scope, the name of the API key that sent it: that name is its owner.
/// Other rows stay NULL, which no API key's name matches (operators only).
const MIGRATE_FROM_2: &str = "
ALTER TABLE calls ADD COLUMN owner TEXT;
UPDATE calls SET owner = idem_scope WHERE idem_scope IS NOT NULL;
";

/// From version 3: a lease's holder outlives the lease (`lease_agent`,
/// `hold_until`; see the module docs). Calls leased under version 3 have no
/// recorded agent and are handed out as before.
const MIGRATE_FROM_3: &str = "
ALTER TABLE calls ADD COLUMN lease_agent TEXT;
ALTER TABLE calls ADD COLUMN hold_until INTEGER;
";

/// From version 4: the audit log.
const MIGRATE_FROM_4: &str = audit_table!();

/// From version 5: the call's W3C `traceparent`, handed to the agent with its
/// unit (NULL for calls stored before).
const MIGRATE_FROM_5: &str = "
ALTER TABLE calls ADD COLUMN trace TEXT;
";

/// From version 6: webhook deliveries and subscriptions.
const MIGRATE_FROM_6: &str = webhook_tables!();

/// From version 7: API keys created through the API.
const MIGRATE_FROM_7: &str = keys_table!();

/// From version 8: the index `GET /v1/calls` reads calls by, newest first.
const MIGRATE_FROM_8: &str = "
CREATE INDEX IF NOT EXISTS calls_submitted ON calls (submitted_at, id);
";

/// From version 9: agent tokens created through the API, and last uses.
const MIGRATE_FROM_9: &str = tokens_tables!();

/// The migrations, each from the version before it: `MIGRATIONS[i]` migrates
/// version `i + 1` to `i + 2`.
const MIGRATIONS: &[&str] = &[
    MIGRATE_FROM_1,
    MIGRATE_FROM_2,
    MIGRATE_FROM_3,
    MIGRATE_FROM_4,
    MIGRATE_FROM_5,
    MIGRATE_FROM_6,
    MIGRATE_FROM_7,
    MIGRATE_FROM_8,
    MIGRATE_FROM_9,
];

/// Settings every connection gets.
pub(super) fn configure(conn: &Connection) -> Result<(), QueueError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Room for every statement the writer caches, so none is prepared again.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

/// Prepares the write connection: WAL, `synchronous`, the schema. Returns the
/// schema version found before (0 for a new file).
///
/// # Errors
/// [`QueueError::Store`] when the file is not a database, cannot switch to WAL
/// (e.g. on a network file system without shared memory), or was written by a newer
/// schema.
/// Caps the file at `mib` MiB (`PRAGMA max_page_count`, which holds for this
/// connection: the writer's). A file already larger keeps what it holds; it takes
/// changes again once purges free pages below the cap.
///
/// # Errors
/// [`QueueError::Store`] when the pragma fails.
pub(super) fn limit_size(conn: &Connection, mib: u64) -> Result<(), QueueError> {
    let page_size: u64 = conn.query_row("PRAGMA page_size", [], |row| row.get(0))?;
    let pages = (mib.saturating_mul(1024 * 1024) / page_size.max(1)).max(1);
    conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
    Ok(())
}

pub(super) fn prepare(conn: &Connection, durability: Durability) -> Result<i64, QueueError> {
    configure(conn)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(QueueError::Store(format!(
            "the file cannot use WAL mode (journal_mode is {mode})"
        )));
    }
    let synchronous = match durability {
        Durability::ProcessCrash => "NORMAL",
        Durability::PowerLoss => "FULL",
    };
    conn.pragma_update(None, "synchronous", synchronous)?;
    // macOS flushes to the platter only with F_FULLFSYNC; a no-op elsewhere.
    let full = durability == Durability::PowerLoss;
    conn.pragma_update(None, "fullfsync", full)?;
    conn.pragma_update(None, "checkpoint_fullfsync", full)?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
    // Checkpoints run on their own thread (see `super::checkpoint`), not inside a
    // commit of the writer.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    let found: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    match found {
        0 => {
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))?;
        }
        SCHEMA_VERSION => {}
        older @ 1.. if older < SCHEMA_VERSION => {
            let from = usize::try_from(older - 1).unwrap_or(usize::MAX);
            let steps = MIGRATIONS.get(from..).unwrap_or_default().concat();
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE; {steps} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))?;
        }
        newer => {
            return Err(QueueError::Store(format!(
                "the queue file has schema version {newer}; this relay knows up to \
                 {SCHEMA_VERSION} (written by a newer sapbridge?)"
            )));
        }
    }
    Ok(found)
}

/// Start-up recovery: no agent session survives a restart, so every leased call
/// goes back to the queue, held for its agent until `hold_until` (its attempt
/// stays counted; the agent's journal answers a redelivered call it already ran).
/// Returns how many.
///
/// Only for a file one relay owns alone; a database shared by several relays must
/// release the leases of vanished sessions by lease expiry instead.
pub(super) fn requeue_orphaned_leases(
    conn: &Connection,
    hold_until: i64,
) -> Result<usize, QueueError> {
    let changed = conn.execute(
        "UPDATE calls SET state = 'queued', lease_until = NULL, hold_until = ?1
         WHERE state = 'leased'",
        [hold_until],
    )?;
    Ok(changed)
}
