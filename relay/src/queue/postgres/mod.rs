//! The PostgreSQL [`Queue`]: every call in one database that any number of relay
//! replicas share.
//!
//! - The hot changes (enqueue without an idempotency key, claim, complete) go
//!   through group commit ([`batch`]): many callers' changes, one transaction of a
//!   few set-based statements, one commit flush. The others (keyed enqueue,
//!   release, cancel, reap) run in a transaction of their own ([`ops`]).
//! - Claims lock their candidates `FOR UPDATE SKIP LOCKED`, so replicas claiming
//!   at once take different calls and never wait for each other; the claim rule is
//!   the queue module's [`claim_rule`](super::claim_rule), applied to the locked
//!   candidates.
//! - Leases are deadlines in the database: any replica's reaper returns a lapsed
//!   lease to the queue (one replica reaps at a time, under an advisory lock).
//!   Nothing is requeued at start-up: other replicas' sessions are alive. Each
//!   replica records itself in `sapbridge_replicas` and says it is alive on every
//!   reaper pass; the leases of a replica silent for
//!   [`REPLICA_TIMEOUT`](replicas::REPLICA_TIMEOUT) go back to the queue (held for
//!   their agents) without waiting for their deadlines.
//! - Idempotency keys are rows with a primary key: the same key sent to two
//!   replicas at once makes one call.
//! - Wake-ups cross replicas with `LISTEN/NOTIFY` ([`listen`]); the users of the
//!   signals also poll.
//! - Handing a new call straight to a local session ([`Taker`](super::Taker)) is a
//!   same-process shortcut; calls for sessions on other replicas are claimed.
//! - Final calls are counted by counter rows each change updates ([`counts`]),
//!   and each replica publishes its agent sessions for the others to list
//!   ([`agents`]).
//!
//! The schema is created and migrated on open ([`schema`]). Connections come from a
//! pool that replaces broken ones, so the store outlives a database restart:
//! changes fail while the database is down and work again once it is back.

mod activity;
mod agents;
mod audit;
mod batch;
mod counts;
mod keys;
mod listen;
mod ops;
mod replicas;
mod rows;
mod schema;
#[cfg(test)]
pub(super) mod testdb;
#[cfg(test)]
mod tests;
mod webhooks;

use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod};
use sapbridge_proto::{Outcome, Unit};
use time::OffsetDateTime;
use tokio_postgres::NoTls;

use super::config::DatabaseUrl;
use super::{
    Activity, AuditFilter, AuditRecord, CallRecord, Cancelled, Claimant, Completion, Delivery,
    DeliveryFilter, DeliveryState, Enqueued, ListedAgent, NewCall, PeerReplica, Queue, QueueError,
    QueueStats, Reaped, Retention, Signals, Subscription, SystemBacklog,
};
use batch::{ClaimJob, CompleteJob, Job, Shared, Writer};
use ops::Effects;
use rows::{load, pool_error, store_error};

/// Connections in the pool: the batches in flight, plus room for reads and the
/// changes that run alone.
const POOL_SIZE: usize = batch::MAX_CONCURRENT + 12;

/// Settings of every pooled connection. Custom plans: a prepared statement's
/// generic plan is chosen after its fifth run on that connection and kept for
/// the connection's life; chosen while the calls table was small (a new
/// database), it scans the whole table for ever (measured: the outcome lookup by
/// id at 0.9 ms instead of 0.08 ms per batch).
const SESSION_SETTINGS: &str = "SET plan_cache_mode = force_custom_plan";

/// How long a new connection may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a change waits for a pooled connection before it fails (the database
/// is away, or every connection is stuck).
const POOL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A connection whose peer stops acknowledging for this long is dead (a
/// database behind a network partition sends no reset).
const DEAD_PEER: std::time::Duration = std::time::Duration::from_secs(30);

/// The PostgreSQL queue. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub(crate) struct PostgresQueue {
    shared: Arc<Shared>,
    /// Where this replica takes forwarded pass-through requests, once advertised.
    address: std::sync::RwLock<Option<String>>,
    writer: Writer,
    _listener: listen::Listener,
}

impl PostgresQueue {
    /// Connects to the database at `url`, brings its schema up to date and starts
    /// listening for other replicas' notifications.
    ///
    /// # Errors
    /// [`QueueError::Store`] when the database cannot be reached, refuses the
    /// schema, or holds a newer schema.
    pub(crate) async fn open(url: &DatabaseUrl) -> Result<Self, QueueError> {
        let mut settings = url.settings();
        if settings.get_connect_timeout().is_none() {
            settings.connect_timeout(CONNECT_TIMEOUT);
        }
        settings.application_name("sapbridge-relay");
        settings.keepalives_idle(DEAD_PEER / 3);
        settings.tcp_user_timeout(DEAD_PEER);
        let manager = Manager::from_config(
            settings.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .post_create(Hook::async_fn(|client, _| {
                Box::pin(async move {
                    client
                        .batch_execute(SESSION_SETTINGS)
                        .await
                        .map_err(HookError::Backend)
                })
            }))
            .build()
            .map_err(|e| QueueError::Store(format!("postgres connection pool: {e}")))?;
        let found = {
            let mut client = pool.get().await.map_err(pool_error)?;
            schema::migrate(&mut client).await?
        };
        let replica = crate::ids::new_id("r_");
        let client = pool.get().await.map_err(pool_error)?;
        replicas::heartbeat(&**client, &replica, None).await?;
        drop(client);
        let signals = Arc::new(Signals::default());
        let listener =
            listen::Listener::start(settings, replica.clone(), Arc::clone(&signals)).await?;
        tracing::info!(
            database = %url.redacted(),
            new = found == 0,
            schema = schema::SCHEMA_VERSION,
            replica,
            "queue store opened"
        );
        let shared = Arc::new(Shared {
            pool,
            signals,
            replica,
        });
        Ok(Self {
            address: std::sync::RwLock::new(None),
            writer: Writer::start(Arc::clone(&shared)),
            shared,
            _listener: listener,
        })
    }

    /// The advertised address, if any.
    fn address(&self) -> Option<String> {
        self.address
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// A pooled connection.
    async fn client(&self) -> Result<deadpool_postgres::Object, QueueError> {
        self.shared.pool.get().await.map_err(pool_error)
    }

    /// Ends a change that ran in a transaction of its own: counts its final
    /// calls, commits, fires its wake-ups once committed and has the other
    /// replicas notified (see [`listen`]) by a task of its own, so the caller's
    /// answer never waits for a pooled connection to notify on.
    async fn finish<T>(
        &self,
        tx: Transaction<'_>,
        effects: Effects,
        result: Result<T, QueueError>,
    ) -> Result<T, QueueError> {
        let committed = match result {
            Ok(value) => match effects.record(&tx, &self.shared.replica).await {
                Ok(()) => tx.commit().await.map_err(store_error).map(|()| value),
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        };
        match committed {
            Ok(value) => {
                let notes = effects.notes(&self.shared.replica);
                effects.fire(&self.shared.signals);
                if !notes.is_empty() {
                    let pool = self.shared.pool.clone();
                    tokio::spawn(async move {
                        match pool.get().await {
                            Ok(client) => notes.send(&client).await,
                            Err(error) => tracing::warn!(
                                %error,
                                "queue notifications not sent; other replicas poll"
                            ),
                        }
                    });
                }
                Ok(value)
            }
            Err(error) => {
                effects.abandon();
                Err(error)
            }
        }
    }
}

/// Starts a transaction on `client`.
async fn begin(client: &mut deadpool_postgres::Object) -> Result<Transaction<'_>, QueueError> {
    client.transaction().await.map_err(store_error)
}

#[async_trait]
impl Queue for PostgresQueue {
    async fn enqueue(&self, call: NewCall) -> Result<Enqueued, QueueError> {
        if call.idempotency.is_none() && call.webhooks.is_empty() {
            let record = Box::new(CallRecord::new(call));
            return self.writer.run(|reply| Job::Enqueue(record, reply)).await;
        }
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let mut effects = Effects::default();
        let shared = &self.shared;
        let result =
            ops::enqueue_alone(&tx, &mut effects, &shared.signals, &shared.replica, call).await;
        self.finish(tx, effects, result).await
    }

    async fn claim(
        &self,
        systems: &[String],
        claimant: Claimant<'_>,
        max: usize,
        until: OffsetDateTime,
    ) -> Result<Vec<Unit>, QueueError> {
        if max == 0 || systems.is_empty() {
            return Ok(Vec::new());
        }
        let job = ClaimJob {
            systems: systems.to_vec(),
            session: claimant.session.to_owned(),
            agent: claimant.agent.to_owned(),
            takes_in_doubt: claimant.takes_in_doubt,
            max,
            until,
        };
        self.writer.run(|reply| Job::Claim(job, reply)).await
    }

    async fn complete(
        &self,
        call_id: &str,
        attempt: u32,
        session: &str,
        agent: &str,
        outcome: Outcome,
    ) -> Result<Completion, QueueError> {
        let job = CompleteJob {
            call_id: call_id.to_owned(),
            attempt,
            session: session.to_owned(),
            agent: agent.to_owned(),
            outcome,
        };
        self.writer
            .run(|reply| Job::Complete(Box::new(job), reply))
            .await
    }

    async fn release_session(
        &self,
        session: &str,
        hold_until: OffsetDateTime,
    ) -> Result<usize, QueueError> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let mut effects = Effects::default();
        let result = ops::release_session(&tx, &mut effects, session, hold_until).await;
        self.finish(tx, effects, result).await
    }

    async fn cancel(&self, call_id: &str) -> Result<Cancelled, QueueError> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let mut effects = Effects::default();
        let now = OffsetDateTime::now_utc();
        let result = ops::cancel(&tx, &mut effects, call_id, now).await;
        self.finish(tx, effects, result).await
    }

    async fn get(&self, call_id: &str) -> Result<Option<CallRecord>, QueueError> {
        let client = self.client().await?;
        load(&**client, call_id, false).await
    }

    async fn list_calls(&self, filter: super::CallFilter) -> Result<Vec<CallRecord>, QueueError> {
        let client = self.client().await?;
        rows::list(&**client, &filter).await
    }

    async fn reap(&self, now: OffsetDateTime, retention: Retention) -> Result<Reaped, QueueError> {
        // Every replica says it is alive, in a commit of its own: the pass that
        // follows may find another replica reaping and change nothing.
        let mut client = self.client().await?;
        let address = self.address();
        replicas::heartbeat(&**client, &self.shared.replica, address.as_deref()).await?;
        let tx = begin(&mut client).await?;
        let mut effects = Effects::default();
        let result = ops::reap(&tx, &mut effects, now, retention).await;
        self.finish(tx, effects, result).await
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let client = self.client().await?;
        counts::stats(&**client).await
    }

    async fn queued_by_system(&self) -> Result<Vec<SystemBacklog>, QueueError> {
        let client = self.client().await?;
        counts::backlog(&**client).await
    }

    async fn activity(&self, since: OffsetDateTime) -> Result<Activity, QueueError> {
        let client = self.client().await?;
        activity::since(&**client, rows::nanos(since)).await
    }

    async fn ping(&self) -> Result<(), QueueError> {
        if self.writer.is_closed() {
            return Err(QueueError::Closed);
        }
        let client = self.client().await?;
        client
            .query_one(
                "SELECT count(*) FROM (SELECT 1 FROM sapbridge_calls LIMIT 1) AS t",
                &[],
            )
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn open_calls_of(&self, owner: &str, cap: u64) -> Result<u64, QueueError> {
        let client = self.client().await?;
        audit::open_calls_of(&**client, owner, cap).await
    }

    async fn queued_in(&self, system: &str, cap: u64) -> Result<u64, QueueError> {
        let client = self.client().await?;
        audit::queued_in(&**client, system, cap).await
    }

    async fn append_audit(&self, records: Vec<AuditRecord>) -> Result<(), QueueError> {
        if records.is_empty() {
            return Ok(());
        }
        let client = self.client().await?;
        audit::append(&**client, &records).await
    }

    async fn audit(&self, filter: AuditFilter) -> Result<Vec<AuditRecord>, QueueError> {
        let client = self.client().await?;
        audit::page(&**client, &filter).await
    }

    async fn purge_audit(&self, before: OffsetDateTime) -> Result<usize, QueueError> {
        let client = self.client().await?;
        audit::purge(&**client, before).await
    }

    async fn claim_deliveries(
        &self,
        state: DeliveryState,
        now: OffsetDateTime,
        until: OffsetDateTime,
        max: usize,
    ) -> Result<Vec<Delivery>, QueueError> {
        let client = self.client().await?;
        webhooks::claim(&**client, state, now, until, max).await
    }

    async fn save_delivery(&self, delivery: Delivery) -> Result<(), QueueError> {
        let client = self.client().await?;
        webhooks::save(&**client, &delivery).await
    }

    async fn deliveries(&self, filter: DeliveryFilter) -> Result<Vec<Delivery>, QueueError> {
        let client = self.client().await?;
        webhooks::page(&**client, &filter).await
    }

    async fn delivery(&self, id: &str) -> Result<Option<Delivery>, QueueError> {
        let client = self.client().await?;
        webhooks::get(&**client, id).await
    }

    async fn redeliver(
        &self,
        id: &str,
        now: OffsetDateTime,
        give_up_at: OffsetDateTime,
    ) -> Result<Option<Delivery>, QueueError> {
        let client = self.client().await?;
        webhooks::redeliver(&**client, id, now, give_up_at).await
    }

    async fn purge_deliveries(&self, before: OffsetDateTime) -> Result<usize, QueueError> {
        let client = self.client().await?;
        webhooks::purge(&**client, before).await
    }

    async fn add_key(&self, key: super::StoredKey) -> Result<bool, QueueError> {
        let client = self.client().await?;
        keys::add_key(&**client, &key).await
    }

    async fn revoke_key(&self, name: &str, at: OffsetDateTime) -> Result<bool, QueueError> {
        let client = self.client().await?;
        keys::revoke_key(&**client, name, at).await
    }

    async fn stored_keys(&self) -> Result<Vec<super::StoredKey>, QueueError> {
        let client = self.client().await?;
        keys::stored_keys(&**client).await
    }

    async fn add_agent_token(&self, token: super::StoredAgentToken) -> Result<bool, QueueError> {
        let client = self.client().await?;
        keys::add_agent_token(&**client, &token).await
    }

    async fn revoke_agent_token(&self, name: &str, at: OffsetDateTime) -> Result<bool, QueueError> {
        let client = self.client().await?;
        keys::revoke_agent_token(&**client, name, at).await
    }

    async fn stored_agent_tokens(&self) -> Result<Vec<super::StoredAgentToken>, QueueError> {
        let client = self.client().await?;
        keys::stored_agent_tokens(&**client).await
    }

    async fn record_uses(&self, uses: Vec<super::CredentialUse>) -> Result<(), QueueError> {
        let client = self.client().await?;
        keys::record_uses(&**client, &uses).await
    }

    async fn credential_uses(&self) -> Result<Vec<super::CredentialUse>, QueueError> {
        let client = self.client().await?;
        keys::credential_uses(&**client).await
    }

    async fn add_subscription(&self, subscription: Subscription) -> Result<(), QueueError> {
        let client = self.client().await?;
        webhooks::subscribe(&**client, &subscription).await
    }

    async fn remove_subscription(&self, owner: Option<&str>, id: &str) -> Result<bool, QueueError> {
        let client = self.client().await?;
        webhooks::unsubscribe(&**client, owner, id).await
    }

    async fn subscriptions(&self, owner: Option<&str>) -> Result<Vec<Subscription>, QueueError> {
        let client = self.client().await?;
        webhooks::subscriptions(&**client, owner).await
    }

    async fn publish_agents(&self, agents: Vec<ListedAgent>) -> Result<(), QueueError> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let result = agents::publish(&tx, &self.shared.replica, &agents).await;
        self.finish(tx, Effects::default(), result).await
    }

    async fn remote_agents(&self) -> Result<Vec<ListedAgent>, QueueError> {
        let client = self.client().await?;
        agents::remote(&**client, &self.shared.replica).await
    }

    fn replica_id(&self) -> Option<&str> {
        Some(&self.shared.replica)
    }

    async fn advertise(&self, address: &str) -> Result<(), QueueError> {
        *self
            .address
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(address.to_owned());
        let client = self.client().await?;
        replicas::heartbeat(&**client, &self.shared.replica, Some(address)).await
    }

    async fn http_replicas(&self, system: &str) -> Result<Vec<PeerReplica>, QueueError> {
        let client = self.client().await?;
        replicas::with_http_agent(&**client, &self.shared.replica, system).await
    }

    async fn leave(&self) -> Result<(), QueueError> {
        self.address
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let client = self.client().await?;
        replicas::leave(&**client, &self.shared.replica).await
    }

    fn signals(&self) -> &Arc<Signals> {
        &self.shared.signals
    }
}
