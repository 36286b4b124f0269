//! The PostgreSQL schema and its migrations, embedded and applied when a relay
//! opens the store.
//!
//! Replicas that start together must not race: [`migrate`] runs in one
//! transaction that first takes a transaction-level advisory lock
//! ([`MIGRATION_LOCK`]), so the first replica migrates and the others wait, then
//! find the schema current. The version lives in `sapbridge_schema`; a database
//! written by a newer relay is refused (a rolling upgrade migrates forward only,
//! and an older replica must not write a schema it does not know).
//!
//! Times are Unix nanoseconds (`bigint`), as in the SQLite store: the rules of the
//! queue module compare them exactly as they were written. Kinds, calls and
//! outcomes are JSON text, opaque to the database.
//!
//! Every index costs each change of state (no update of a call's state is HOT):
//! leased calls (as many as agents run at once) have one index, which the
//! reaper's and a release's scans share.

use tokio_postgres::Client;

use super::super::QueueError;
use super::rows::store_error;

/// The schema version this relay writes.
pub(super) const SCHEMA_VERSION: i32 = 8;

/// The advisory lock key that serialises migrations (`"sapbridg"` in ASCII).
const MIGRATION_LOCK: i64 = 0x7361_7062_7269_6467;

/// Version 1: calls, idempotency keys, counts of final calls, the live replicas
/// and the agent sessions each lists.
const V1: &str = "
CREATE TABLE sapbridge_replicas (
    id         text   PRIMARY KEY,
    started_at bigint NOT NULL,
    seen_at    bigint NOT NULL
);
CREATE TABLE sapbridge_agent_sessions (
    replica  text NOT NULL REFERENCES sapbridge_replicas (id) ON DELETE CASCADE,
    systems  text[] NOT NULL,
    listing  text NOT NULL
);
CREATE INDEX sapbridge_agent_sessions_replica ON sapbridge_agent_sessions (replica);
CREATE TABLE sapbridge_final_counts (
    replica  text    NOT NULL,
    slot     integer NOT NULL,
    state    text    NOT NULL,
    n        bigint  NOT NULL,
    PRIMARY KEY (replica, slot, state)
);
CREATE TABLE sapbridge_calls (
    seq              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               text    NOT NULL UNIQUE,
    system           text    NOT NULL,
    kind             text    NOT NULL,
    calls            text    NOT NULL,
    commit_policy    text    NOT NULL,
    state            text    NOT NULL,
    lease_session    text,
    lease_agent      text,
    lease_replica    text,
    lease_until      bigint,
    hold_until       bigint,
    attempts         integer NOT NULL DEFAULT 0,
    submitted_at     bigint  NOT NULL,
    expires_at       bigint  NOT NULL,
    completed_at     bigint,
    agent            text,
    outcome          text,
    idem_scope       text,
    idem_key         text,
    idem_fingerprint text,
    owner            text
);
CREATE INDEX sapbridge_calls_queued ON sapbridge_calls (system, seq) WHERE state = 'queued';
CREATE INDEX sapbridge_calls_queued_expiry ON sapbridge_calls (expires_at) WHERE state = 'queued';
CREATE INDEX sapbridge_calls_leased ON sapbridge_calls (lease_session, lease_until) WHERE state = 'leased';
CREATE INDEX sapbridge_calls_completed ON sapbridge_calls (completed_at) WHERE completed_at IS NOT NULL;
CREATE TABLE sapbridge_idempotency_keys (
    scope        text   NOT NULL,
    key          text   NOT NULL,
    fingerprint  text   NOT NULL,
    call_id      text   NOT NULL,
    created_at   bigint NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX sapbridge_idempotency_keys_call ON sapbridge_idempotency_keys (call_id);
CREATE INDEX sapbridge_idempotency_keys_created ON sapbridge_idempotency_keys (created_at);
";

/// Version 2: the address at which each replica takes pass-through requests
/// forwarded by the others, and the systems each agent session forwards HTTP
/// pass-through for.
const V2: &str = "
ALTER TABLE sapbridge_replicas ADD COLUMN address text;
ALTER TABLE sapbridge_agent_sessions ADD COLUMN http_systems text[] NOT NULL DEFAULT '{}';
";

/// Version 3: the audit log (see `queue::audit`), numbered in storing order,
/// `at` in Unix nanoseconds, purged by `at`; and the index that counts a key's
/// open calls (its `max_in_flight`).
const V3: &str = "
CREATE TABLE sapbridge_audit (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           bigint  NOT NULL,
    event        text    NOT NULL,
    key          text,
    client       text,
    system       text,
    method       text,
    target       text,
    call_id      text,
    outcome      text    NOT NULL,
    status       integer,
    duration_ms  bigint,
    agent        text,
    detail       text
);
CREATE INDEX sapbridge_audit_at ON sapbridge_audit (at);
CREATE INDEX sapbridge_audit_call ON sapbridge_audit (call_id) WHERE call_id IS NOT NULL;
CREATE INDEX sapbridge_calls_open_by_owner ON sapbridge_calls (owner)
    WHERE state IN ('queued', 'leased');
";

/// Version 4: the call's W3C `traceparent`, handed to the agent with its unit.
const V4: &str = "
ALTER TABLE sapbridge_calls ADD COLUMN trace text;
";

/// Version 5: webhook deliveries (inserted with their call, leased to one replica
/// at a time, due by `next_at`) and subscriptions.
const V5: &str = "
CREATE TABLE sapbridge_webhook_deliveries (
    seq              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               text    NOT NULL UNIQUE,
    call_id          text    NOT NULL,
    owner            text,
    system           text    NOT NULL,
    url              text    NOT NULL,
    subscription     text,
    state            text    NOT NULL,
    attempts         bigint  NOT NULL,
    created_at       bigint  NOT NULL,
    next_at          bigint  NOT NULL,
    give_up_at       bigint,
    lease_until      bigint,
    last_attempt_at  bigint,
    last_status      integer,
    last_error       text,
    delivered_at     bigint,
    payload          text
);
CREATE INDEX sapbridge_webhook_deliveries_due ON sapbridge_webhook_deliveries (next_at)
    WHERE state IN ('waiting', 'pending');
CREATE INDEX sapbridge_webhook_deliveries_call ON sapbridge_webhook_deliveries (call_id);
CREATE INDEX sapbridge_webhook_deliveries_created ON sapbridge_webhook_deliveries (created_at);
CREATE TABLE sapbridge_webhook_subscriptions (
    id          text   PRIMARY KEY,
    owner       text   NOT NULL,
    url         text   NOT NULL,
    system      text,
    created_at  bigint NOT NULL
);
";

/// Version 6: API keys created through the API (`/v1/admin/keys`).
const V6: &str = "
CREATE TABLE sapbridge_api_keys (
    name        text    PRIMARY KEY,
    sha256      text    NOT NULL,
    systems     text    NOT NULL,
    operator    boolean NOT NULL,
    created_at  bigint  NOT NULL,
    created_by  text    NOT NULL,
    revoked_at  bigint
);
";

/// Version 7: the index `GET /v1/calls` reads calls by, newest first (ids in
/// byte order, as the listing compares them).
const V7: &str = "
CREATE INDEX sapbridge_calls_submitted ON sapbridge_calls (submitted_at, id COLLATE \"C\");
";

/// Version 8: agent tokens created through the API (`/v1/admin/agent-tokens`),
/// and when each key and token was last used (the configuration's too, by name).
const V8: &str = "
CREATE TABLE sapbridge_agent_tokens (
    name        text    PRIMARY KEY,
    sha256      text    NOT NULL,
    systems     text    NOT NULL,
    created_at  bigint  NOT NULL,
    created_by  text    NOT NULL,
    revoked_at  bigint
);
CREATE TABLE sapbridge_credential_uses (
    kind          text    NOT NULL,
    name          text    NOT NULL,
    last_used_at  bigint  NOT NULL,
    PRIMARY KEY (kind, name)
);
";

/// The migrations: `MIGRATIONS[i]` takes version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7, V8];

/// Brings the database to [`SCHEMA_VERSION`] under the migration lock; returns the
/// version found before (0 for an empty database).
///
/// # Errors
/// [`QueueError::Store`] when the database refuses (no right to create tables, a
/// broken connection) or holds a newer schema.
pub(super) async fn migrate(client: &mut Client) -> Result<i32, QueueError> {
    let tx = client.transaction().await.map_err(store_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(store_error)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS sapbridge_schema (version integer NOT NULL)")
        .await
        .map_err(store_error)?;
    let found: i32 = tx
        .query_opt("SELECT version FROM sapbridge_schema", &[])
        .await
        .map_err(store_error)?
        .map_or(0, |row| row.get(0));
    if found > SCHEMA_VERSION {
        return Err(QueueError::Store(format!(
            "the database has queue schema version {found}; this relay knows up to \
             {SCHEMA_VERSION} (written by a newer sapbridge?)"
        )));
    }
    let from = usize::try_from(found).unwrap_or(0);
    for step in MIGRATIONS.get(from..).unwrap_or_default() {
        tx.batch_execute(step).await.map_err(store_error)?;
    }
    if found == 0 {
        tx.execute(
            "INSERT INTO sapbridge_schema (version) VALUES ($1)",
            &[&SCHEMA_VERSION],
        )
        .await
        .map_err(store_error)?;
    } else if found < SCHEMA_VERSION {
        tx.execute(
            "UPDATE sapbridge_schema SET version = $1",
            &[&SCHEMA_VERSION],
        )
        .await
        .map_err(store_error)?;
    }
    tx.commit().await.map_err(store_error)?;
    Ok(found)
}
