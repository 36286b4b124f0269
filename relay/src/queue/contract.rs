//! The queue contract, run against every store: each test is written once over
//! `&dyn Queue` and instantiated for the memory store, the SQLite store (a fresh
//! file per test) and the PostgreSQL store (a fresh database per test; skipped
//! loudly without a server, see `postgres::testdb`).

use std::sync::Arc;

use sapbridge_proto::{
    CallResult, CommitPolicy, ErrorGroup, FunctionCall, Outcome, RfcError, TransactionOutcome,
};
use tempfile::TempDir;
use time::{Duration, OffsetDateTime};

use super::config::Durability;
use super::memory::MemoryQueue;
use super::postgres::PostgresQueue;
use super::postgres::testdb::TestDatabase;
use super::sqlite::{SqliteOptions, SqliteQueue};
use super::{
    ActionStep, AuditFilter, AuditRecord, CallCursor, CallFilter, CallKind, CallState, Cancelled,
    Claimant, Completion, DeliveryFilter, DeliveryState, Enqueued, IdempotencyKey, NewCall,
    NewDelivery, Queue, Retention, StateFilter, Subscription, Taker,
};

/// A store under test, with the directory its file lives in or its database (if
/// any). The queue is dropped before the database.
pub(super) struct Fixture {
    pub(super) queue: Arc<dyn Queue>,
    _dir: Option<TempDir>,
    _db: Option<TestDatabase>,
}

pub(super) fn memory() -> Fixture {
    Fixture {
        queue: Arc::new(MemoryQueue::new()),
        _dir: None,
        _db: None,
    }
}

/// A PostgreSQL store on a fresh database; `None` when no server answers (said
/// on stderr; a failure under `CI=true`).
pub(super) async fn postgres() -> Option<Fixture> {
    let db = TestDatabase::create().await?;
    let queue = PostgresQueue::open(db.url()).await.expect("open");
    Some(Fixture {
        queue: Arc::new(queue),
        _dir: None,
        _db: Some(db),
    })
}

pub(super) fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = SqliteOptions::new(Durability::ProcessCrash);
    let queue = SqliteQueue::open(&dir.path().join("relay.db"), options).expect("open");
    Fixture {
        queue: Arc::new(queue),
        _dir: Some(dir),
        _db: None,
    }
}

pub(super) fn new_call(id: &str, system: &str, ttl: Duration) -> NewCall {
    let now = OffsetDateTime::now_utc();
    NewCall {
        id: id.into(),
        system: system.into(),
        kind: CallKind::Function,
        calls: vec![FunctionCall {
            function: "STFC_CONNECTION".into(),
            parameters: Default::default(),
        }],
        commit: CommitPolicy::None,
        submitted_at: now,
        expires_at: now + ttl,
        idempotency: None,
        owner: Some("flow".into()),
        trace: None,
        webhooks: Vec::new(),
    }
}

pub(super) fn keyed(id: &str, key: &str, fingerprint: &str) -> NewCall {
    let mut call = new_call(id, "PRD", Duration::days(3));
    let key = IdempotencyKey {
        scope: "flow".into(),
        key: key.into(),
    };
    call.idempotency = Some((key, fingerprint.into()));
    call
}

pub(super) fn ok() -> Outcome {
    Outcome::Completed {
        results: vec![CallResult::Ok(Default::default())],
        transaction: None,
    }
}

pub(super) fn later() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::minutes(5)
}

pub(super) fn retention(days: i64) -> Retention {
    Retention {
        results: Duration::days(days),
        idempotency: Duration::days(days),
        owner_hold: HOLD,
        audit: Duration::days(90),
    }
}

/// The owner hold of [`retention`].
const HOLD: Duration = Duration::minutes(1);

/// Session `session` of agent installation `agent`, speaking protocol 2.
pub(super) fn by<'a>(session: &'a str, agent: &'a str) -> Claimant<'a> {
    Claimant {
        session,
        agent,
        takes_in_doubt: true,
    }
}

/// Session `session` of agent installation `agent`, speaking protocol 1 (never
/// sent a unit in doubt).
fn by_v1<'a>(session: &'a str, agent: &'a str) -> Claimant<'a> {
    Claimant {
        takes_in_doubt: false,
        ..by(session, agent)
    }
}

/// The agent's "did not start before the deadline" outcome.
fn not_started() -> Outcome {
    Outcome::Failed {
        error: RfcError::new(ErrorGroup::Expired, "EXPIRED", "too late"),
    }
}

fn prd() -> Vec<String> {
    vec!["PRD".to_owned()]
}

/// Instantiates each named test body for every store.
macro_rules! for_every_store {
    ($($name:ident),* $(,)?) => {
        mod memory_store {
            $(#[tokio::test]
            async fn $name() {
                let fixture = super::memory();
                super::$name(fixture.queue.as_ref()).await;
            })*
        }
        mod sqlite_store {
            $(#[tokio::test]
            async fn $name() {
                let fixture = super::sqlite();
                super::$name(fixture.queue.as_ref()).await;
            })*
        }
        mod postgres_store {
            $(#[tokio::test]
            async fn $name() {
                let Some(fixture) = super::postgres().await else {
                    return;
                };
                super::$name(fixture.queue.as_ref()).await;
            })*
        }
    };
}

for_every_store!(
    claims_oldest_first_and_respects_max,
    release_requeues_with_next_attempt_and_complete_is_idempotent,
    reaper_requeues_expires_and_purges,
    calls_past_their_ttl_are_not_handed_out,
    idempotency_key_returns_existing_or_mismatch,
    idempotency_keys_are_kept_for_their_retention,
    cancel_only_while_queued,
    leases_are_deadlines_and_stats_count,
    stats_follow_every_change_of_state,
    work_and_call_signals_fire,
    new_calls_go_straight_to_a_session_with_free_credits,
    an_outcome_is_judged_by_the_calls_commit_policy,
    outcomes_count_only_from_the_lease_holder_for_its_attempt,
    a_lapsed_lease_goes_back_to_its_agent_then_to_others_in_doubt,
    the_holder_of_a_lapsed_lease_may_still_report,
    a_call_an_agent_took_fails_unknown_after_its_ttl_and_hold,
    the_holder_gets_its_call_back_even_past_the_ttl,
    a_unit_not_started_before_its_deadline_is_queued_again_for_anyone,
    units_carry_the_time_left_to_start,
    the_owner_stays_with_the_call,
    the_backlog_per_system_counts_queued_calls_and_their_oldest,
    audit_records_page_filter_and_purge,
    open_calls_are_counted_by_owner_and_queued_ones_by_system,
    deliveries_are_stored_with_their_call_leased_saved_and_listed,
    subscriptions_are_kept_per_key,
    stored_keys_are_added_once_listed_and_revoked,
    stored_agent_tokens_are_added_once_listed_and_revoked,
    last_uses_keep_the_latest_per_kind_and_name,
    calls_are_listed_newest_first_by_filter_and_cursor,
    activity_counts_finished_calls_errors_and_refusals,
);

/// Lists with `filter` and returns the ids, in the store's order.
async fn listed(q: &dyn Queue, filter: CallFilter) -> Vec<String> {
    q.list_calls(filter)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
}

async fn calls_are_listed_newest_first_by_filter_and_cursor(q: &dyn Queue) {
    let t0 = OffsetDateTime::now_utc() - Duration::minutes(30);
    let at = |call: &mut NewCall, seconds: i64| {
        call.submitted_at = t0 + Duration::seconds(seconds);
    };
    // PRD: a (flow, 0s), b (other, 1s), t1 and t2 (flow, both 2s: ties broken
    // by id), an action (flow, 3s); QAS: q (flow, 4s, a BAPI transaction).
    let mut a = new_call("a", "PRD", Duration::hours(1));
    at(&mut a, 0);
    let mut b = new_call("b", "PRD", Duration::hours(1));
    at(&mut b, 1);
    b.owner = Some("other".into());
    let mut t1 = new_call("t1", "PRD", Duration::hours(1));
    at(&mut t1, 2);
    let mut t2 = new_call("t2", "PRD", Duration::hours(1));
    at(&mut t2, 2);
    let mut action = new_call("act", "PRD", Duration::hours(1));
    at(&mut action, 3);
    action.kind = CallKind::Action(ActionStep {
        action: "customer.get".into(),
        version: 1,
        data: serde_json::json!({"customer": "1"}),
    });
    action.calls[0].function = "BAPI_CUSTOMER_GETDETAIL2".into();
    let mut qas = new_call("q", "QAS", Duration::hours(1));
    at(&mut qas, 4);
    qas.kind = CallKind::Transaction;
    qas.calls[0].function = "BAPI_SALESORDER_CREATEFROMDAT2".into();
    qas.commit = CommitPolicy::CommitOnSuccess;
    for call in [a, b, t1, t2, action, qas] {
        q.enqueue(call).await.unwrap();
    }
    let all = CallFilter {
        limit: 100,
        ..CallFilter::default()
    };
    assert_eq!(
        listed(q, all.clone()).await,
        ["q", "act", "t2", "t1", "b", "a"]
    );

    // States: a runs, then succeeds; b is cancelled; t1 runs.
    let units = q.claim(&prd(), by("s1", "A"), 1, later()).await.unwrap();
    assert_eq!(units[0].call_id, "a");
    q.complete("a", 1, "s1", "A", ok()).await.unwrap();
    assert!(matches!(q.cancel("b").await.unwrap(), Cancelled::Done(_)));
    let units = q.claim(&prd(), by("s1", "A"), 1, later()).await.unwrap();
    assert_eq!(units[0].call_id, "t1");
    let with = |f: &dyn Fn(&mut CallFilter)| {
        let mut filter = all.clone();
        f(&mut filter);
        filter
    };
    assert_eq!(
        listed(q, with(&|f| f.state = Some(StateFilter::Succeeded))).await,
        ["a"]
    );
    assert_eq!(
        listed(q, with(&|f| f.state = Some(StateFilter::Running))).await,
        ["t1"]
    );
    assert_eq!(
        listed(q, with(&|f| f.state = Some(StateFilter::Cancelled))).await,
        ["b"]
    );
    assert_eq!(
        listed(q, with(&|f| f.state = Some(StateFilter::Queued))).await,
        ["q", "act", "t2"]
    );
    assert!(
        listed(q, with(&|f| f.state = Some(StateFilter::Expired)))
            .await
            .is_empty()
    );
    let succeeded = q.list_calls(with(&|f| f.state = Some(StateFilter::Succeeded)));
    let record = &succeeded.await.unwrap()[0];
    assert_eq!(record.agent.as_deref(), Some("A"));
    assert_eq!(record.attempts, 1);
    assert!(record.completed_at.is_some());

    // System (one or several), function (an action's name, else the first
    // call's function module), owner, time range.
    assert_eq!(
        listed(q, with(&|f| f.systems = Some(vec!["QAS".into()]))).await,
        ["q"]
    );
    assert_eq!(
        listed(
            q,
            with(&|f| f.systems = Some(vec!["QAS".into(), "PRD".into()]))
        )
        .await,
        ["q", "act", "t2", "t1", "b", "a"]
    );
    assert!(
        listed(q, with(&|f| f.systems = Some(vec!["DEV".into()])))
            .await
            .is_empty()
    );
    assert_eq!(
        listed(q, with(&|f| f.function = Some("customer.get".into()))).await,
        ["act"]
    );
    assert!(
        listed(
            q,
            with(&|f| f.function = Some("BAPI_CUSTOMER_GETDETAIL2".into()))
        )
        .await
        .is_empty()
    );
    assert_eq!(
        listed(q, with(&|f| f.function = Some("STFC_CONNECTION".into()))).await,
        ["t2", "t1", "b", "a"]
    );
    assert_eq!(
        listed(
            q,
            with(&|f| f.function = Some("BAPI_SALESORDER_CREATEFROMDAT2".into()))
        )
        .await,
        ["q"]
    );
    assert_eq!(
        listed(q, with(&|f| f.owner = Some("other".into()))).await,
        ["b"]
    );
    assert_eq!(
        listed(
            q,
            with(&|f| {
                f.since = Some(t0 + Duration::seconds(1));
                f.until = Some(t0 + Duration::seconds(3));
            })
        )
        .await,
        ["t2", "t1", "b"]
    );
    // Filters combine.
    assert_eq!(
        listed(
            q,
            with(&|f| {
                f.systems = Some(prd());
                f.owner = Some("flow".into());
                f.state = Some(StateFilter::Queued);
            })
        )
        .await,
        ["act", "t2"]
    );

    // Pages of two, each after the last call of the one before: every call
    // once, in order, ties included.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = q
            .list_calls(CallFilter {
                limit: 2,
                after: after.clone(),
                ..CallFilter::default()
            })
            .await
            .unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(CallCursor {
            submitted_at: last.submitted_at,
            id: last.id.clone(),
        });
        seen.extend(page.into_iter().map(|r| r.id));
    }
    assert_eq!(seen, ["q", "act", "t2", "t1", "b", "a"]);
    // A cursor before `since` selects nothing (and does not fail).
    let empty = with(&|f| {
        f.since = Some(t0 + Duration::seconds(3));
        f.after = Some(CallCursor {
            submitted_at: t0 + Duration::seconds(1),
            id: "b".into(),
        });
    });
    assert!(listed(q, empty).await.is_empty());
}

async fn stored_keys_are_added_once_listed_and_revoked(q: &dyn Queue) {
    let at = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let key = |name: &str, operator: bool| super::StoredKey {
        name: name.into(),
        sha256: format!("{:064x}", name.len()),
        systems: vec!["PRD".into(), "QAS".into()],
        operator,
        created_at: at,
        created_by: "ops".into(),
        revoked_at: None,
    };
    assert!(q.stored_keys().await.unwrap().is_empty());
    assert!(q.add_key(key("flow", false)).await.unwrap());
    assert!(q.add_key(key("admin", true)).await.unwrap());
    // A name is taken once, whatever the rest says.
    assert!(!q.add_key(key("flow", true)).await.unwrap());
    let listed = q.stored_keys().await.unwrap();
    assert_eq!(listed, vec![key("admin", true), key("flow", false)]);

    let later = at + time::Duration::seconds(5);
    assert!(q.revoke_key("flow", later).await.unwrap());
    assert!(!q.revoke_key("flow", later).await.unwrap(), "revoked once");
    assert!(!q.revoke_key("nobody", later).await.unwrap());
    let listed = q.stored_keys().await.unwrap();
    assert_eq!(listed[1].revoked_at, Some(later));
    assert_eq!(listed[0].revoked_at, None);
    // A revoked key's name stays taken.
    assert!(!q.add_key(key("flow", false)).await.unwrap());
}

async fn stored_agent_tokens_are_added_once_listed_and_revoked(q: &dyn Queue) {
    let at = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let token = |name: &str, systems: &[&str]| super::StoredAgentToken {
        name: name.into(),
        sha256: format!("{:064x}", name.len()),
        systems: systems.iter().map(|s| (*s).to_owned()).collect(),
        created_at: at,
        created_by: "ops".into(),
        revoked_at: None,
    };
    assert!(q.stored_agent_tokens().await.unwrap().is_empty());
    assert!(q.add_agent_token(token("plant-b", &["PRD"])).await.unwrap());
    assert!(
        q.add_agent_token(token("plant-a", &["PRD", "QAS"]))
            .await
            .unwrap()
    );
    assert!(!q.add_agent_token(token("plant-b", &["QAS"])).await.unwrap());
    // Keys and tokens are two name spaces.
    assert!(q.stored_keys().await.unwrap().is_empty());
    let listed = q.stored_agent_tokens().await.unwrap();
    assert_eq!(
        listed,
        vec![
            token("plant-a", &["PRD", "QAS"]),
            token("plant-b", &["PRD"])
        ]
    );

    let later = at + time::Duration::seconds(5);
    assert!(q.revoke_agent_token("plant-b", later).await.unwrap());
    assert!(!q.revoke_agent_token("plant-b", later).await.unwrap());
    assert!(!q.revoke_agent_token("nobody", later).await.unwrap());
    let listed = q.stored_agent_tokens().await.unwrap();
    assert_eq!(listed[1].revoked_at, Some(later));
    assert_eq!(listed[0].revoked_at, None);
    assert!(!q.add_agent_token(token("plant-b", &["PRD"])).await.unwrap());
}

async fn last_uses_keep_the_latest_per_kind_and_name(q: &dyn Queue) {
    use super::{CredentialKind, CredentialUse};
    let at = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let used = |kind, name: &str, secs: i64| CredentialUse {
        kind,
        name: name.into(),
        at: at + time::Duration::seconds(secs),
    };
    assert!(q.credential_uses().await.unwrap().is_empty());
    q.record_uses(Vec::new()).await.unwrap();
    q.record_uses(vec![
        used(CredentialKind::ApiKey, "flow", 10),
        used(CredentialKind::AgentToken, "flow", 20),
        used(CredentialKind::ApiKey, "admin", 5),
    ])
    .await
    .unwrap();
    // An earlier use (a slower replica's) does not replace a later one; the
    // same credential twice in one batch keeps the later.
    q.record_uses(vec![
        used(CredentialKind::ApiKey, "flow", 3),
        used(CredentialKind::ApiKey, "admin", 8),
        used(CredentialKind::ApiKey, "admin", 7),
    ])
    .await
    .unwrap();
    let mut uses = q.credential_uses().await.unwrap();
    uses.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    assert_eq!(
        uses,
        vec![
            used(CredentialKind::ApiKey, "admin", 8),
            used(CredentialKind::ApiKey, "flow", 10),
            used(CredentialKind::AgentToken, "flow", 20),
        ]
    );
}

/// A call with a webhook delivery to `url`.
fn with_webhook(mut call: NewCall, delivery: &str, url: &str) -> NewCall {
    call.webhooks.push(NewDelivery {
        id: delivery.into(),
        url: url.into(),
        subscription: None,
    });
    call
}

async fn deliveries_are_stored_with_their_call_leased_saved_and_listed(q: &dyn Queue) {
    let a = with_webhook(
        new_call("a", "PRD", Duration::hours(1)),
        "msg_a",
        "https://x/a",
    );
    q.enqueue(a).await.unwrap();
    // Keyed, and the same request again: the second adds no delivery.
    let b = with_webhook(keyed("b", "k", "f"), "msg_b", "https://x/b");
    q.enqueue(b).await.unwrap();
    let again = with_webhook(keyed("b2", "k", "f"), "msg_b2", "https://x/b");
    assert!(matches!(
        q.enqueue(again).await.unwrap(),
        Enqueued::Existing(_)
    ));
    let mut other = with_webhook(
        new_call("c", "QAS", Duration::hours(1)),
        "msg_c",
        "https://x/c",
    );
    other.owner = Some("other".into());
    q.enqueue(other).await.unwrap();
    assert!(q.delivery("msg_b2").await.unwrap().is_none());

    // After the deliveries were stored: each is due by now.
    let now = OffsetDateTime::now_utc();
    let all = q
        .deliveries(DeliveryFilter {
            limit: 10,
            ..DeliveryFilter::default()
        })
        .await
        .unwrap();
    let ids: Vec<_> = all.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["msg_a", "msg_b", "msg_c"]);
    let a = &all[0];
    assert_eq!((a.call_id.as_str(), a.system.as_str()), ("a", "PRD"));
    assert_eq!(a.owner.as_deref(), Some("flow"));
    assert_eq!(
        (a.state, a.attempts, a.payload.as_ref()),
        (DeliveryState::Waiting, 0, None)
    );
    let mine = q
        .deliveries(DeliveryFilter {
            owner: Some("flow".into()),
            limit: 10,
            ..DeliveryFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(mine.len(), 2);
    let page = q
        .deliveries(DeliveryFilter {
            after: Some(all[0].seq),
            limit: 1,
            ..DeliveryFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(page[0].id, "msg_b", "the cursor pages on");

    // Leased once: a second claim before the lease ends gets nothing.
    let until = now + Duration::minutes(1);
    let waiting = q
        .claim_deliveries(
            DeliveryState::Waiting,
            now + Duration::seconds(1),
            until,
            10,
        )
        .await
        .unwrap();
    assert_eq!(waiting.len(), 3);
    assert!(
        q.claim_deliveries(
            DeliveryState::Waiting,
            now + Duration::seconds(2),
            until,
            10
        )
        .await
        .unwrap()
        .is_empty()
    );
    assert!(
        q.claim_deliveries(
            DeliveryState::Pending,
            now + Duration::seconds(2),
            until,
            10
        )
        .await
        .unwrap()
        .is_empty()
    );

    // Saved pending with a payload, due later: claimed as pending once due.
    let mut a = waiting.into_iter().find(|d| d.id == "msg_a").unwrap();
    a.state = DeliveryState::Pending;
    a.payload = Some(r#"{"type":"call.completed"}"#.into());
    a.attempts = 2;
    a.next_at = now + Duration::seconds(30);
    a.give_up_at = Some(now + Duration::days(1));
    a.last_attempt_at = Some(now);
    a.last_status = Some(503);
    a.last_error = Some("the receiver answered 503".into());
    q.save_delivery(a.clone()).await.unwrap();
    assert_eq!(q.delivery("msg_a").await.unwrap().unwrap(), a);
    assert!(
        q.claim_deliveries(
            DeliveryState::Pending,
            now + Duration::seconds(10),
            until,
            10
        )
        .await
        .unwrap()
        .is_empty(),
        "not due yet"
    );
    let due = q
        .claim_deliveries(
            DeliveryState::Pending,
            now + Duration::seconds(31),
            until,
            10,
        )
        .await
        .unwrap();
    assert_eq!(due.len(), 1);

    // Delivered; then sent again on demand with fresh attempts.
    a.state = DeliveryState::Delivered;
    a.delivered_at = Some(now + Duration::seconds(31));
    a.attempts = 3;
    q.save_delivery(a.clone()).await.unwrap();
    let again = q
        .redeliver(
            "msg_a",
            now + Duration::seconds(40),
            now + Duration::days(2),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (again.state, again.attempts, again.delivered_at),
        (DeliveryState::Pending, 0, None)
    );
    assert_eq!(again.payload, a.payload, "the same payload goes again");
    // A waiting one (no payload) stays as it is.
    let b = q.redeliver("msg_b", now, now).await.unwrap().unwrap();
    assert_eq!(b.state, DeliveryState::Waiting);
    assert!(q.redeliver("msg_none", now, now).await.unwrap().is_none());

    // Finished deliveries are purged; open ones stay.
    let mut c = q.delivery("msg_c").await.unwrap().unwrap();
    c.state = DeliveryState::Failed;
    q.save_delivery(c).await.unwrap();
    assert_eq!(
        q.purge_deliveries(now + Duration::days(1)).await.unwrap(),
        1
    );
    assert!(q.delivery("msg_c").await.unwrap().is_none());
    assert!(q.delivery("msg_a").await.unwrap().is_some());
}

async fn subscriptions_are_kept_per_key(q: &dyn Queue) {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    for (id, owner, system) in [
        ("s1", "flow", Some("PRD")),
        ("s2", "flow", None),
        ("s3", "other", None),
    ] {
        q.add_subscription(Subscription {
            id: id.into(),
            owner: owner.into(),
            url: format!("https://hooks/{id}"),
            system: system.map(str::to_owned),
            created_at: now,
        })
        .await
        .unwrap();
    }
    let mine = q.subscriptions(Some("flow")).await.unwrap();
    assert_eq!(
        mine.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["s1", "s2"]
    );
    assert_eq!(mine[0].system.as_deref(), Some("PRD"));
    assert_eq!(mine[0].created_at, now);
    assert_eq!(q.subscriptions(None).await.unwrap().len(), 3);
    assert!(
        !q.remove_subscription(Some("other"), "s1").await.unwrap(),
        "another key's"
    );
    assert!(q.remove_subscription(Some("flow"), "s1").await.unwrap());
    assert!(
        q.remove_subscription(None, "s3").await.unwrap(),
        "an operator's"
    );
    assert_eq!(q.subscriptions(None).await.unwrap().len(), 1);
}

async fn open_calls_are_counted_by_owner_and_queued_ones_by_system(q: &dyn Queue) {
    for (id, system, owner) in [
        ("a", "PRD", "flow"),
        ("b", "PRD", "flow"),
        ("c", "QAS", "flow"),
        ("d", "PRD", "other"),
    ] {
        let mut call = new_call(id, system, Duration::hours(1));
        call.owner = Some(owner.into());
        q.enqueue(call).await.unwrap();
    }
    assert_eq!(q.open_calls_of("flow", 10).await.unwrap(), 3);
    assert_eq!(
        q.open_calls_of("flow", 2).await.unwrap(),
        2,
        "counts up to the cap"
    );
    assert_eq!(q.open_calls_of("nobody", 10).await.unwrap(), 0);
    assert_eq!(q.queued_in("PRD", 10).await.unwrap(), 3);
    assert_eq!(q.queued_in("PRD", 1).await.unwrap(), 1);
    // Leased calls are still open but no longer queued; final ones are neither.
    let units = q.claim(&prd(), by("s1", "A"), 1, later()).await.unwrap();
    assert_eq!(units[0].call_id, "a");
    assert_eq!(q.open_calls_of("flow", 10).await.unwrap(), 3);
    assert_eq!(q.queued_in("PRD", 10).await.unwrap(), 2);
    q.complete("a", 1, "s1", "A", ok()).await.unwrap();
    assert!(matches!(q.cancel("c").await.unwrap(), Cancelled::Done(_)));
    assert_eq!(q.open_calls_of("flow", 10).await.unwrap(), 1);
    assert_eq!(q.queued_in("QAS", 10).await.unwrap(), 0);
}

/// An audit record of `event` at `at`, with every field set.
fn audit_record(event: &str, at: OffsetDateTime, system: &str, outcome: &str) -> AuditRecord {
    let mut record = AuditRecord::new(event, at, outcome);
    record.key = Some(format!("key-{system}"));
    record.client = Some("192.0.2.7".into());
    record.system = Some(system.into());
    record.method = Some("POST".into());
    record.target = Some("STFC_CONNECTION".into());
    record.call_id = Some(format!("c_{outcome}_{system}"));
    record.status = Some(200);
    record.duration_ms = Some(12);
    record.agent = Some("agent-1".into());
    record.detail = Some("d".into());
    record
}

async fn audit_records_page_filter_and_purge(q: &dyn Queue) {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let old = now - Duration::days(100);
    q.append_audit(vec![
        audit_record("request", old, "PRD", "succeeded"),
        audit_record("request", now, "PRD", "forbidden"),
    ])
    .await
    .unwrap();
    q.append_audit(vec![
        audit_record("call", now, "QAS", "not-allowed"),
        AuditRecord::new("config", now + Duration::seconds(1), "ok"),
    ])
    .await
    .unwrap();
    q.append_audit(Vec::new()).await.unwrap();

    let all = q
        .audit(AuditFilter {
            limit: 100,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "storing order");
    let mut expected = audit_record("request", old, "PRD", "succeeded");
    expected.seq = all[0].seq;
    assert_eq!(all[0], expected, "every field survives the store");
    assert_eq!(all[3].key, None);
    assert_eq!(all[3].event, "config");

    // Pages of two, after the cursor.
    let page = |after: Option<i64>| AuditFilter {
        after,
        limit: 2,
        ..AuditFilter::default()
    };
    let first = q.audit(page(None)).await.unwrap();
    let second = q.audit(page(Some(first[1].seq))).await.unwrap();
    let third = q.audit(page(Some(second[1].seq))).await.unwrap();
    assert_eq!((first.len(), second.len(), third.len()), (2, 2, 0));
    assert_eq!(second[0], all[2]);

    // Filters.
    let by = |filter: AuditFilter| async move {
        let filter = AuditFilter {
            limit: 100,
            ..filter
        };
        q.audit(filter)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.seq)
            .collect::<Vec<_>>()
    };
    let seqs: Vec<i64> = all.iter().map(|r| r.seq).collect();
    assert_eq!(
        by(AuditFilter {
            system: Some("PRD".into()),
            ..AuditFilter::default()
        })
        .await,
        seqs[..2]
    );
    assert_eq!(
        by(AuditFilter {
            key: Some("key-QAS".into()),
            ..AuditFilter::default()
        })
        .await,
        [seqs[2]]
    );
    assert_eq!(
        by(AuditFilter {
            outcome: Some("forbidden".into()),
            ..AuditFilter::default()
        })
        .await,
        [seqs[1]]
    );
    assert_eq!(
        by(AuditFilter {
            call_id: Some("c_not-allowed_QAS".into()),
            ..AuditFilter::default()
        })
        .await,
        [seqs[2]]
    );
    assert_eq!(
        by(AuditFilter {
            from: Some(now),
            to: Some(now + Duration::seconds(1)),
            ..AuditFilter::default()
        })
        .await,
        seqs[1..3],
        "from is inclusive, to exclusive"
    );

    // Retention: the record of 100 days ago goes, the others stay.
    assert_eq!(q.purge_audit(now - Duration::days(90)).await.unwrap(), 1);
    assert_eq!(by(AuditFilter::default()).await, seqs[1..]);
    assert_eq!(q.purge_audit(now - Duration::days(90)).await.unwrap(), 0);
}

/// `(finished, errors)` of `system` in `activity`, summed over its minutes.
fn finished_of(activity: &super::Activity, system: &str) -> (u64, u64) {
    activity
        .calls
        .iter()
        .filter(|m| m.system == system)
        .fold((0, 0), |(f, e), m| (f + m.finished, e + m.errors))
}

async fn activity_counts_finished_calls_errors_and_refusals(q: &dyn Queue) {
    let start = OffsetDateTime::now_utc();
    assert_eq!(q.activity(start).await.unwrap(), super::Activity::default());
    for (id, system, ttl) in [
        ("ok", "PRD", Duration::hours(1)),
        ("abap", "PRD", Duration::hours(1)),
        ("cancelled", "PRD", Duration::hours(1)),
        ("open", "PRD", Duration::hours(1)),
        ("qas", "QAS", Duration::hours(1)),
    ] {
        q.enqueue(new_call(id, system, ttl)).await.unwrap();
    }
    q.cancel("cancelled").await.unwrap();
    let units = q.claim(&prd(), by("s1", "A"), 3, later()).await.unwrap();
    let ids: Vec<&str> = units.iter().map(|u| u.call_id.as_str()).collect();
    assert_eq!(ids, ["ok", "abap", "open"]);
    q.enqueue(new_call("late", "PRD", Duration::seconds(-1)))
        .await
        .unwrap();
    let abap = Outcome::Failed {
        error: RfcError::new(ErrorGroup::AbapApplicationFailure, "NOT_FOUND", "no"),
    };
    for (id, outcome) in [("ok", ok()), ("abap", abap)] {
        assert_eq!(
            q.complete(id, 1, "s1", "A", outcome).await.unwrap(),
            Completion::Stored
        );
    }
    let reaped = q
        .reap(OffsetDateTime::now_utc(), retention(1))
        .await
        .unwrap();
    assert_eq!(reaped.expired, 1, "the call no agent took in time");
    let qas = vec!["QAS".to_owned()];
    q.claim(&qas, by("s2", "B"), 1, later()).await.unwrap();
    q.complete("qas", 1, "s2", "B", ok()).await.unwrap();
    let end = OffsetDateTime::now_utc();

    let now = OffsetDateTime::now_utc();
    let old = now - Duration::hours(2);
    let mut unknown_key = AuditRecord::new("request", now, "unauthorized");
    unknown_key.status = Some(401);
    q.append_audit(vec![
        audit_record("request", now, "PRD", "forbidden"),
        audit_record("request", now, "PRD", "forbidden"),
        audit_record("call", now, "PRD", "not-allowed"),
        audit_record("request", now, "PRD", "succeeded"),
        audit_record("request", old, "PRD", "rate-limited"),
        unknown_key,
    ])
    .await
    .unwrap();

    let activity = q.activity(start - Duration::seconds(1)).await.unwrap();
    // Succeeded, failed and expired count; cancelled and open calls do not; a
    // failed and an expired call are the errors.
    assert_eq!(finished_of(&activity, "PRD"), (3, 2));
    assert_eq!(finished_of(&activity, "QAS"), (1, 0));
    let (first, last) = (
        super::activity::minute_of(start),
        super::activity::minute_of(end),
    );
    assert!(
        activity
            .calls
            .iter()
            .all(|m| (first..=last).contains(&m.minute) && m.finished > 0),
        "minutes of completion: {:?} not in {first}..={last}",
        activity.calls
    );
    let mut refusals: Vec<(Option<&str>, &str, &str, u64)> = activity
        .refusals
        .iter()
        .map(|r| {
            (
                r.system.as_deref(),
                r.event.as_str(),
                r.outcome.as_str(),
                r.count,
            )
        })
        .collect();
    refusals.sort_unstable();
    assert_eq!(
        refusals,
        [
            (None, "request", "unauthorized", 1),
            (Some("PRD"), "call", "not-allowed", 1),
            (Some("PRD"), "request", "forbidden", 2),
        ],
        "refusals since the time asked, by system, event and outcome"
    );

    // Nothing finished or was refused after now.
    let later_on = q
        .activity(OffsetDateTime::now_utc() + Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(later_on, super::Activity::default());
}

async fn claims_oldest_first_and_respects_max(q: &dyn Queue) {
    for id in ["a", "b", "c"] {
        q.enqueue(new_call(id, "PRD", Duration::hours(1)))
            .await
            .unwrap();
    }
    q.enqueue(new_call("x", "QAS", Duration::hours(1)))
        .await
        .unwrap();
    q.enqueue(new_call("other", "DEV", Duration::hours(1)))
        .await
        .unwrap();
    let systems = vec!["PRD".to_owned(), "QAS".to_owned()];
    let units = q.claim(&systems, by("s1", "A"), 2, later()).await.unwrap();
    let ids: Vec<_> = units.iter().map(|u| u.call_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert!(units.iter().all(|u| u.attempt == 1));
    assert_eq!(units[0].calls[0].function, "STFC_CONNECTION");
    let units = q.claim(&systems, by("s2", "A"), 5, later()).await.unwrap();
    let ids: Vec<_> = units.iter().map(|u| u.call_id.as_str()).collect();
    assert_eq!(ids, ["c", "x"]);
    assert!(
        q.claim(&systems, by("s2", "A"), 5, later())
            .await
            .unwrap()
            .is_empty()
    );
    let record = q.get("a").await.unwrap().unwrap();
    assert!(matches!(record.state, CallState::Leased { ref session, .. } if session == "s1"));
}

async fn release_requeues_with_next_attempt_and_complete_is_idempotent(q: &dyn Queue) {
    q.enqueue(new_call("a", "PRD", Duration::hours(1)))
        .await
        .unwrap();
    let systems = vec!["PRD".to_owned()];
    q.claim(&systems, by("s1", "A"), 1, later()).await.unwrap();
    let hold = OffsetDateTime::now_utc() + HOLD;
    assert_eq!(q.release_session("s1", hold).await.unwrap(), 1);
    assert_eq!(q.release_session("s1", hold).await.unwrap(), 0);
    let units = q.claim(&systems, by("s2", "A"), 1, later()).await.unwrap();
    assert_eq!(units[0].attempt, 2);
    assert!(!units[0].in_doubt, "back to the agent that had it");
    assert_eq!(
        q.complete("a", 2, "s2", "agent", ok()).await.unwrap(),
        Completion::Stored
    );
    assert_eq!(
        q.complete("a", 1, "s1", "agent", ok()).await.unwrap(),
        Completion::AlreadyFinal
    );
    assert_eq!(
        q.complete("zz", 1, "s2", "agent", ok()).await.unwrap(),
        Completion::Unknown
    );
    let record = q.get("a").await.unwrap().unwrap();
    assert_eq!(record.state, CallState::Succeeded);
    assert_eq!(record.agent.as_deref(), Some("agent"));
    assert_eq!(record.outcome, Some(ok()));
    assert_eq!(record.attempts, 2);
    assert!(record.completed_at.is_some());
    assert!(matches!(
        q.cancel("a").await.unwrap(),
        Cancelled::TooLate(_)
    ));
}

async fn reaper_requeues_expires_and_purges(q: &dyn Queue) {
    q.enqueue(new_call("lease", "PRD", Duration::hours(1)))
        .await
        .unwrap();
    let systems = vec!["PRD".to_owned()];
    let past = OffsetDateTime::now_utc() - Duration::seconds(1);
    q.claim(&systems, by("s1", "A"), 1, past).await.unwrap();
    q.enqueue(new_call("old", "PRD", Duration::seconds(-1)))
        .await
        .unwrap();
    let now = OffsetDateTime::now_utc();
    let reaped = q.reap(now, retention(1)).await.unwrap();
    assert_eq!((reaped.requeued, reaped.expired), (1, 1));
    assert_eq!(
        reaped.ended,
        ["old"],
        "the calls the pass ended, for the audit log"
    );
    assert_eq!(
        q.get("old").await.unwrap().unwrap().state,
        CallState::Expired
    );
    let reaped = q.reap(now + Duration::days(2), retention(1)).await;
    assert_eq!(reaped.unwrap().purged, 1);
    assert!(q.get("old").await.unwrap().is_none());
}

async fn calls_past_their_ttl_are_not_handed_out(q: &dyn Queue) {
    q.enqueue(new_call("old", "PRD", Duration::seconds(-1)))
        .await
        .unwrap();
    q.enqueue(new_call("fresh", "PRD", Duration::hours(1)))
        .await
        .unwrap();
    let units = q
        .claim(&["PRD".to_owned()], by("s", "A"), 5, later())
        .await
        .unwrap();
    let ids: Vec<_> = units.iter().map(|u| u.call_id.as_str()).collect();
    assert_eq!(ids, ["fresh"]);
    q.reap(OffsetDateTime::now_utc(), retention(1))
        .await
        .unwrap();
    assert_eq!(
        q.get("old").await.unwrap().unwrap().state,
        CallState::Expired
    );
}

async fn idempotency_key_returns_existing_or_mismatch(q: &dyn Queue) {
    let call = keyed("a", "k1", "f1");
    assert!(matches!(
        q.enqueue(call.clone()).await.unwrap(),
        Enqueued::Created(_)
    ));
    let mut retry = call.clone();
    retry.id = "b".into();
    assert!(matches!(
        q.enqueue(retry).await.unwrap(),
        Enqueued::Existing(r) if r.id == "a" && !r.state.is_final()
    ));
    assert!(matches!(
        q.enqueue(keyed("c", "k1", "f2")).await.unwrap(),
        Enqueued::KeyMismatch
    ));
    // Another client's key of the same text is another key.
    let mut other = keyed("d", "k1", "f2");
    if let Some((key, _)) = other.idempotency.as_mut() {
        key.scope = "other".into();
    }
    assert!(matches!(
        q.enqueue(other).await.unwrap(),
        Enqueued::Created(_)
    ));
    // Once final, a retry gets the stored outcome.
    let units = q
        .claim(&["PRD".to_owned()], by("s", "A"), 1, later())
        .await
        .unwrap();
    q.complete(&units[0].call_id, 1, "s", "agent", ok())
        .await
        .unwrap();
    assert!(matches!(
        q.enqueue(keyed("e", "k1", "f1")).await.unwrap(),
        Enqueued::Existing(r) if r.id == "a" && r.outcome == Some(ok())
    ));
    assert!(q.get("b").await.unwrap().is_none());
}

async fn idempotency_keys_are_kept_for_their_retention(q: &dyn Queue) {
    q.enqueue(keyed("open", "k-open", "f")).await.unwrap();
    q.enqueue(keyed("done", "k-done", "f")).await.unwrap();
    let units = q
        .claim(&["PRD".to_owned()], by("s", "A"), 2, later())
        .await
        .unwrap();
    assert_eq!(units.len(), 2);
    q.complete("done", 1, "s", "agent", ok()).await.unwrap();
    let short = Retention {
        results: Duration::seconds(1),
        idempotency: Duration::hours(1),
        owner_hold: HOLD,
        audit: Duration::days(90),
    };
    // Past the result retention but within the key's: the call stays.
    let soon = OffsetDateTime::now_utc() + Duration::minutes(1);
    let reaped = q.reap(soon, short).await.unwrap();
    assert_eq!((reaped.purged, reaped.keys_forgotten), (0, 0));
    assert!(matches!(
        q.enqueue(keyed("again", "k-done", "f")).await.unwrap(),
        Enqueued::Existing(r) if r.id == "done"
    ));
    // Past both: the finished call's key is forgotten and the call purged; the open
    // call's key stays (its lease lapsed, so it is queued again).
    let late = OffsetDateTime::now_utc() + Duration::minutes(30);
    let reaped = q.reap(late, short).await.unwrap();
    assert_eq!(reaped.requeued, 1);
    assert_eq!((reaped.purged, reaped.keys_forgotten), (0, 0));
    let later_still = OffsetDateTime::now_utc() + Duration::hours(2);
    let reaped = q.reap(later_still, short).await.unwrap();
    assert_eq!((reaped.purged, reaped.keys_forgotten), (1, 1));
    assert!(q.get("done").await.unwrap().is_none());
    assert!(matches!(
        q.enqueue(keyed("new", "k-done", "f")).await.unwrap(),
        Enqueued::Created(r) if r.id == "new"
    ));
    assert!(matches!(
        q.enqueue(keyed("dup", "k-open", "f")).await.unwrap(),
        Enqueued::Existing(r) if r.id == "open"
    ));
}

async fn cancel_only_while_queued(q: &dyn Queue) {
    q.enqueue(new_call("a", "PRD", Duration::hours(1)))
        .await
        .unwrap();
    match q.cancel("a").await.unwrap() {
        Cancelled::Done(record) => {
            assert_eq!(record.state, CallState::Cancelled);
            assert!(record.completed_at.is_some());
        }
        other => panic!("expected Done, got {other:?}"),
    }
    let units = q
        .claim(&["PRD".to_owned()], by("s", "A"), 1, later())
        .await
        .unwrap();
    assert!(units.is_empty());
    assert!(matches!(q.cancel("zz").await.unwrap(), Cancelled::Unknown));
    assert_eq!(
        q.get("a").await.unwrap().unwrap().state,
        CallState::Cancelled
    );
}

async fn leases_are_deadlines_and_stats_count(q: &dyn Queue) {
    for id in ["a", "b", "c"] {
        q.enqueue(new_call(id, "PRD", Duration::hours(1)))
            .await
            .unwrap();
    }
    let soon = OffsetDateTime::now_utc() + Duration::seconds(30);
    q.claim(&prd(), by("s1", "A"), 2, soon).await.unwrap();
    let now = OffsetDateTime::now_utc();
    assert_eq!(q.reap(now, retention(1)).await.unwrap().requeued, 0);
    q.complete("a", 1, "s1", "agent", ok()).await.unwrap();
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.queued, stats.leased, stats.succeeded), (1, 1, 1));
    // Nothing renews a lease: past its deadline it lapses, whatever the session
    // did meanwhile.
    let reaped = q.reap(now + Duration::minutes(1), retention(1)).await;
    assert_eq!(reaped.unwrap().requeued, 1);
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.queued, stats.leased, stats.succeeded), (2, 0, 1));
    q.ping().await.unwrap();
}

async fn the_backlog_per_system_counts_queued_calls_and_their_oldest(q: &dyn Queue) {
    assert_eq!(q.queued_by_system().await.unwrap(), Vec::new());
    // The younger call of PRD has the shorter TTL: it expires first.
    for (id, system, ttl) in [
        ("a", "PRD", Duration::hours(1)),
        ("b", "PRD", Duration::minutes(10)),
        ("c", "QAS", Duration::hours(1)),
    ] {
        q.enqueue(new_call(id, system, ttl)).await.unwrap();
    }
    let first = q.get("a").await.unwrap().unwrap().submitted_at;
    let short = q.get("b").await.unwrap().unwrap().expires_at;
    let mut backlog = q.queued_by_system().await.unwrap();
    backlog.sort_by(|x, y| x.system.cmp(&y.system));
    let seen: Vec<(&str, u64)> = backlog
        .iter()
        .map(|b| (b.system.as_str(), b.queued))
        .collect();
    assert_eq!(seen, [("PRD", 2), ("QAS", 1)]);
    // Times go through the store's own encoding: equal to the microsecond.
    let oldest = backlog[0].oldest;
    assert!(
        (oldest - first).abs() < Duration::milliseconds(1),
        "{oldest} vs {first}"
    );
    let next = backlog[0].next_expiry;
    assert!(
        (next - short).abs() < Duration::milliseconds(1),
        "{next} vs {short}"
    );
    // A leased call no longer waits; a cancelled one neither.
    let soon = OffsetDateTime::now_utc() + Duration::seconds(30);
    q.claim(&prd(), by("s1", "A"), 1, soon).await.unwrap();
    q.cancel("c").await.unwrap();
    let backlog = q.queued_by_system().await.unwrap();
    let seen: Vec<(&str, u64)> = backlog
        .iter()
        .map(|b| (b.system.as_str(), b.queued))
        .collect();
    assert_eq!(seen, [("PRD", 1)]);
}

/// `(queued, leased, succeeded, failed, expired, cancelled)`.
async fn counts(q: &dyn Queue) -> (u64, u64, u64, u64, u64, u64) {
    let s = q.stats().await.unwrap();
    (
        s.queued,
        s.leased,
        s.succeeded,
        s.failed,
        s.expired,
        s.cancelled,
    )
}

async fn stats_follow_every_change_of_state(q: &dyn Queue) {
    for id in ["a", "b", "c", "d", "e", "f"] {
        q.enqueue(new_call(id, "PRD", Duration::hours(1)))
            .await
            .unwrap();
    }
    q.enqueue(new_call("late", "PRD", Duration::seconds(-1)))
        .await
        .unwrap();
    assert_eq!(counts(q).await, (7, 0, 0, 0, 0, 0));
    let units = q
        .claim(&["PRD".to_owned()], by("s1", "A"), 3, later())
        .await;
    assert_eq!(units.unwrap().len(), 3);
    q.complete("a", 1, "s1", "agent", ok()).await.unwrap();
    let failed = Outcome::Completed {
        results: vec![],
        transaction: None,
    };
    q.complete("b", 1, "s1", "agent", failed).await.unwrap();
    // A second outcome for a final call changes nothing.
    q.complete("a", 1, "s1", "agent", ok()).await.unwrap();
    assert!(matches!(q.cancel("d").await.unwrap(), Cancelled::Done(_)));
    let now = OffsetDateTime::now_utc();
    q.reap(now, retention(1)).await.unwrap();
    assert_eq!(counts(q).await, (2, 1, 1, 1, 1, 1));
    // Two days on: the final calls are purged; `e` and `f`, which no agent took,
    // expire; the lapsed lease of `c` returns to the queue, held for its agent,
    // and once the hold is over fails with its outcome unknown.
    let reaped = q.reap(now + Duration::days(2), retention(1)).await.unwrap();
    assert_eq!(reaped.purged, 4);
    q.reap(now + Duration::days(2), retention(1)).await.unwrap();
    assert_eq!(counts(q).await, (1, 0, 0, 0, 2, 0));
    let reaped = q
        .reap(now + Duration::days(2) + HOLD * 2, retention(1))
        .await
        .unwrap();
    assert_eq!(reaped.failed_unknown, 1);
    assert_eq!(reaped.ended, ["c"]);
    assert_eq!(counts(q).await, (0, 0, 0, 1, 2, 0));
}

async fn work_and_call_signals_fire(q: &dyn Queue) {
    let work = q.signals().work("PRD");
    let notified = work.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    q.enqueue(new_call("a", "PRD", Duration::hours(1)))
        .await
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), notified)
        .await
        .expect("work signal");
    q.claim(&["PRD".to_owned()], by("s", "A"), 1, later())
        .await
        .unwrap();
    let watch = q.signals().watch_call("a");
    let finished = watch.notify().notified();
    tokio::pin!(finished);
    finished.as_mut().enable();
    q.complete("a", 1, "s", "agent", ok()).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), finished)
        .await
        .expect("call signal");
}

async fn new_calls_go_straight_to_a_session_with_free_credits(q: &dyn Queue) {
    let (taker, mut handed) = Taker::new("s1", "A", std::time::Duration::from_secs(60), 8);
    taker.give(1);
    q.signals().add_taker(&["PRD".to_owned()], &taker);
    // One credit: the first call is leased to s1 in the enqueue itself.
    let Enqueued::Created(first) = q
        .enqueue(new_call("a", "PRD", Duration::hours(1)))
        .await
        .unwrap()
    else {
        panic!("created")
    };
    assert!(matches!(&first.state, CallState::Leased { session, .. } if session == "s1"));
    let unit = handed.try_recv().expect("handed over once committed");
    assert_eq!((unit.call_id.as_str(), unit.attempt), ("a", 1));
    assert_eq!(taker.credits(), 0);
    let stored = q.get("a").await.unwrap().unwrap();
    assert!(matches!(stored.state, CallState::Leased { .. }));
    assert_eq!(stored.attempts, 1);
    // No credit left: queued, as without takers.
    q.enqueue(new_call("b", "PRD", Duration::hours(1)))
        .await
        .unwrap();
    assert!(handed.try_recv().is_err());
    assert_eq!(q.get("b").await.unwrap().unwrap().state, CallState::Queued);
    // With a credit again but an older call queued, the new one queues behind it.
    taker.give(1);
    q.enqueue(new_call("c", "PRD", Duration::hours(1)))
        .await
        .unwrap();
    assert!(handed.try_recv().is_err());
    assert_eq!(taker.credits(), 1, "the credit is still the session's");
    // Another system's calls are not offered to a taker of PRD.
    q.enqueue(new_call("d", "QAS", Duration::hours(1)))
        .await
        .unwrap();
    assert!(handed.try_recv().is_err());
    // Gone: its handed call returns to the queue with its other leases, first in
    // line again (it was enqueued first), and nothing more is handed to it.
    q.signals().remove_taker("s1");
    let hold = OffsetDateTime::now_utc() + HOLD;
    assert_eq!(q.release_session("s1", hold).await.unwrap(), 1);
    let units = q
        .claim(&["PRD".to_owned()], by("s2", "A"), 10, later())
        .await
        .unwrap();
    let ids: Vec<(&str, u32)> = units
        .iter()
        .map(|u| (u.call_id.as_str(), u.attempt))
        .collect();
    assert_eq!(ids, [("a", 2), ("b", 1), ("c", 1)]);
    q.enqueue(new_call("e", "PRD", Duration::hours(1)))
        .await
        .unwrap();
    assert!(handed.try_recv().is_err());
}

/// The same outcome, every call fine but nothing committed, under each commit
/// policy: a transaction that had to commit failed, one that was to roll back
/// succeeded, a plain call succeeded. The waiter's end says the same as the store.
async fn an_outcome_is_judged_by_the_calls_commit_policy(q: &dyn Queue) {
    let outcome = Outcome::Completed {
        results: vec![CallResult::Ok(Default::default())],
        transaction: Some(TransactionOutcome {
            committed: false,
            failed_call: None,
            reason: None,
            result: None,
        }),
    };
    let cases = [
        ("none", CommitPolicy::None, CallState::Succeeded),
        ("commit", CommitPolicy::CommitOnSuccess, CallState::Failed),
        ("rollback", CommitPolicy::Rollback, CallState::Succeeded),
    ];
    for (id, commit, _) in &cases {
        let mut call = new_call(id, "PRD", Duration::hours(1));
        call.commit = *commit;
        q.enqueue(call).await.unwrap();
    }
    q.claim(&["PRD".to_owned()], by("s1", "A"), 10, later())
        .await
        .unwrap();
    for (id, _, state) in &cases {
        let watch = q.signals().watch_call(id);
        assert_eq!(
            q.complete(id, 1, "s1", "agent", outcome.clone())
                .await
                .unwrap(),
            Completion::Stored
        );
        assert_eq!(&q.get(id).await.unwrap().unwrap().state, state, "{id}");
        let end = watch.take_ended().expect("the waiter heard the end");
        assert_eq!(&end.state, state, "{id}");
    }
}

/// The relay trusts an agent only for its own leases: an outcome from another
/// session, for another attempt, or for a call never leased changes nothing.
async fn outcomes_count_only_from_the_lease_holder_for_its_attempt(q: &dyn Queue) {
    for id in ["a", "queued"] {
        q.enqueue(new_call(id, "PRD", Duration::hours(1)))
            .await
            .unwrap();
    }
    let units = q.claim(&prd(), by("s1", "A"), 1, later()).await.unwrap();
    assert_eq!(units[0].call_id, "a");
    let refused = [
        ("a", 1, "s2", "B"),      // another agent's session
        ("a", 1, "s2", "A"),      // another session of the same agent
        ("a", 2, "s1", "A"),      // the holder, for an attempt it was not given
        ("a", 0, "s1", "A"),      // ... or an earlier one
        ("queued", 1, "s1", "A"), // a call never leased to anyone
        ("queued", 0, "s1", "A"),
    ];
    for (id, attempt, session, agent) in refused {
        assert_eq!(
            q.complete(id, attempt, session, agent, ok()).await.unwrap(),
            Completion::Refused,
            "{id} attempt {attempt} from {session}"
        );
    }
    assert!(matches!(
        q.get("a").await.unwrap().unwrap().state,
        CallState::Leased { ref session, .. } if session == "s1"
    ));
    let queued = q.get("queued").await.unwrap().unwrap();
    assert_eq!((queued.state, queued.outcome), (CallState::Queued, None));
    assert_eq!(
        q.complete("a", 1, "s1", "A", ok()).await.unwrap(),
        Completion::Stored
    );
    assert_eq!(
        q.get("a").await.unwrap().unwrap().state,
        CallState::Succeeded
    );
}

/// A lease is a deadline: past it the call goes back to the queue, to the agent
/// that had it first (its journal knows whether it started), never again to the
/// session that still has it, and to other agents only after the hold, in doubt,
/// and never to an agent of protocol 1.
async fn a_lapsed_lease_goes_back_to_its_agent_then_to_others_in_doubt(q: &dyn Queue) {
    q.enqueue(new_call("a", "PRD", Duration::hours(1)))
        .await
        .unwrap();
    let soon = OffsetDateTime::now_utc() + Duration::seconds(10);
    q.claim(&prd(), by("s1", "A"), 1, soon).await.unwrap();
    let now = OffsetDateTime::now_utc();
    let lapsed = now + Duration::seconds(20);
    assert_eq!(q.reap(lapsed, retention(1)).await.unwrap().requeued, 1);
    assert_eq!(q.get("a").await.unwrap().unwrap().state, CallState::Queued);
    // The session still running it, another agent during the hold, and a
    // protocol 1 agent get nothing.
    for claimant in [by("s1", "A"), by("s2", "B"), by_v1("s3", "C")] {
        let units = q.claim(&prd(), claimant, 5, later()).await.unwrap();
        assert!(units.is_empty(), "{claimant:?}");
    }
    // The same agent on a new session gets it at once, not in doubt.
    let units = q.claim(&prd(), by("s4", "A"), 5, later()).await.unwrap();
    assert_eq!(units.len(), 1);
    assert_eq!((units[0].attempt, units[0].in_doubt), (2, false));
    // Its connection dies; once the hold is over another agent of protocol 2 may
    // take it, marked in doubt; one of protocol 1 still may not.
    let past = OffsetDateTime::now_utc() - Duration::seconds(1);
    assert_eq!(q.release_session("s4", past).await.unwrap(), 1);
    let units = q.claim(&prd(), by_v1("s5", "C"), 5, later()).await.unwrap();
    assert!(units.is_empty());
    let units = q.claim(&prd(), by("s6", "B"), 5, later()).await.unwrap();
    assert_eq!(units.len(), 1);
    assert_eq!((units[0].attempt, units[0].in_doubt), (3, true));
    // B holds it now: its outcome counts, A's late one does not.
    assert_eq!(
        q.complete("a", 2, "s4", "A", ok()).await.unwrap(),
        Completion::Refused
    );
    assert_eq!(
        q.complete("a", 3, "s6", "B", ok()).await.unwrap(),
        Completion::Stored
    );
}

/// A lease that ran out while its unit was still running: nobody else took the
/// call, so the session that ran it is still its holder and its outcome counts.
async fn the_holder_of_a_lapsed_lease_may_still_report(q: &dyn Queue) {
    q.enqueue(new_call("a", "PRD", Duration::hours(1)))
        .await
        .unwrap();
    let soon = OffsetDateTime::now_utc() + Duration::seconds(10);
    q.claim(&prd(), by("s1", "A"), 1, soon).await.unwrap();
    let lapsed = OffsetDateTime::now_utc() + Duration::seconds(20);
    assert_eq!(q.reap(lapsed, retention(1)).await.unwrap().requeued, 1);
    let watch = q.signals().watch_call("a");
    assert_eq!(
        q.complete("a", 1, "s1", "A", ok()).await.unwrap(),
        Completion::Stored
    );
    let record = q.get("a").await.unwrap().unwrap();
    assert_eq!((record.state, record.attempts), (CallState::Succeeded, 1));
    assert!(watch.take_ended().is_some());
    // Nothing is left to hand out.
    let units = q.claim(&prd(), by("s2", "A"), 5, later()).await.unwrap();
    assert!(units.is_empty());
}

/// Past its TTL a call no agent took expires (504); one an agent took and never
/// answered fails with its outcome unknown, but only once its hold is over.
async fn a_call_an_agent_took_fails_unknown_after_its_ttl_and_hold(q: &dyn Queue) {
    q.enqueue(new_call("taken", "PRD", Duration::seconds(30)))
        .await
        .unwrap();
    let soon = OffsetDateTime::now_utc() + Duration::seconds(10);
    q.claim(&prd(), by("s1", "A"), 1, soon).await.unwrap();
    q.enqueue(new_call("untaken", "PRD", Duration::seconds(30)))
        .await
        .unwrap();
    let now = OffsetDateTime::now_utc();
    // Past the lease: held for A until lapse + HOLD.
    q.reap(now + Duration::seconds(20), retention(1))
        .await
        .unwrap();
    let watch = q.signals().watch_call("taken");
    // Past the TTL, within the hold: only the untaken call ends.
    let reaped = q
        .reap(now + Duration::seconds(40), retention(1))
        .await
        .unwrap();
    assert_eq!((reaped.expired, reaped.failed_unknown), (1, 0));
    assert_eq!(
        q.get("untaken").await.unwrap().unwrap().state,
        CallState::Expired
    );
    assert_eq!(
        q.get("taken").await.unwrap().unwrap().state,
        CallState::Queued
    );
    // Past the hold too: it fails, with an outcome that says why.
    let reaped = q
        .reap(now + Duration::seconds(20) + HOLD * 2, retention(1))
        .await;
    assert_eq!(reaped.unwrap().failed_unknown, 1);
    let record = q.get("taken").await.unwrap().unwrap();
    assert_eq!(record.state, CallState::Failed);
    let Some(Outcome::Failed { error }) = &record.outcome else {
        panic!("{:?}", record.outcome)
    };
    assert_eq!(
        (error.group, error.key.as_str()),
        (ErrorGroup::OutcomeUnknown, "LEASE_LAPSED")
    );
    assert!(error.message.contains("may or may not have run"), "{error}");
    let end = watch.take_ended().expect("the waiter heard the end");
    assert_eq!(end.state, CallState::Failed);
    assert!(matches!(
        end.outcome,
        Some(Outcome::Failed { ref error }) if error.group == ErrorGroup::OutcomeUnknown
    ));
}

/// The agent that held a call gets it back even past its TTL (with no time left
/// to start it), so that it can answer from its journal instead of the call
/// ending unknown.
async fn the_holder_gets_its_call_back_even_past_the_ttl(q: &dyn Queue) {
    q.enqueue(new_call("a", "PRD", Duration::seconds(2)))
        .await
        .unwrap();
    q.claim(&prd(), by("s1", "A"), 1, later()).await.unwrap();
    let hold = OffsetDateTime::now_utc() + HOLD;
    q.release_session("s1", hold).await.unwrap();
    // Past the TTL (the claim looks at the real clock).
    let mut record = q.get("a").await.unwrap().unwrap();
    while record.expires_at > OffsetDateTime::now_utc() {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        record = q.get("a").await.unwrap().unwrap();
    }
    assert!(
        q.claim(&prd(), by("s2", "B"), 1, later())
            .await
            .unwrap()
            .is_empty()
    );
    let units = q.claim(&prd(), by("s3", "A"), 1, later()).await.unwrap();
    assert_eq!(units.len(), 1);
    assert_eq!(
        (units[0].attempt, units[0].in_doubt, units[0].deadline_ms),
        (2, false, Some(0))
    );
}

/// An agent that could not start a unit before its deadline says so: before the
/// TTL, the call is queued again for any agent, not in doubt (it never ran).
async fn a_unit_not_started_before_its_deadline_is_queued_again_for_anyone(q: &dyn Queue) {
    q.enqueue(new_call("a", "PRD", Duration::hours(1)))
        .await
        .unwrap();
    q.claim(&prd(), by("s1", "A"), 1, later()).await.unwrap();
    assert_eq!(
        q.complete("a", 1, "s1", "A", not_started()).await.unwrap(),
        Completion::Requeued
    );
    let record = q.get("a").await.unwrap().unwrap();
    assert_eq!((record.state, record.holder), (CallState::Queued, None));
    let units = q.claim(&prd(), by_v1("s2", "B"), 1, later()).await.unwrap();
    assert_eq!(units.len(), 1);
    assert_eq!((units[0].attempt, units[0].in_doubt), (2, false));
    // Past the TTL the same answer ends the call as expired.
    let mut late = new_call("late", "PRD", Duration::seconds(1));
    late.expires_at = OffsetDateTime::now_utc() + Duration::milliseconds(300);
    q.enqueue(late).await.unwrap();
    q.claim(&prd(), by("s3", "A"), 1, later()).await.unwrap();
    while q.get("late").await.unwrap().unwrap().expires_at > OffsetDateTime::now_utc() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        q.complete("late", 1, "s3", "A", not_started())
            .await
            .unwrap(),
        Completion::Stored
    );
    assert_eq!(
        q.get("late").await.unwrap().unwrap().state,
        CallState::Expired
    );
}

/// A unit's deadline is the time left, relative (clocks drift): until the earlier
/// of its TTL and its lease's end.
async fn units_carry_the_time_left_to_start(q: &dyn Queue) {
    q.enqueue(new_call("long", "PRD", Duration::hours(1)))
        .await
        .unwrap();
    q.enqueue(new_call("short", "PRD", Duration::seconds(10)))
        .await
        .unwrap();
    let until = OffsetDateTime::now_utc() + Duration::seconds(60);
    let units = q.claim(&prd(), by("s1", "A"), 2, until).await.unwrap();
    let deadline = |id: &str| {
        units
            .iter()
            .find(|u| u.call_id == id)
            .and_then(|u| u.deadline_ms)
            .expect("a deadline")
    };
    // The lease (60 s) comes first for the long call, the TTL (10 s) for the short.
    assert!(
        (55_000..=60_000).contains(&deadline("long")),
        "{}",
        deadline("long")
    );
    assert!(
        (5_000..=10_000).contains(&deadline("short")),
        "{}",
        deadline("short")
    );
}

async fn the_owner_stays_with_the_call(q: &dyn Queue) {
    let mut unowned = new_call("unowned", "PRD", Duration::hours(1));
    unowned.owner = None;
    q.enqueue(unowned).await.unwrap();
    q.enqueue(keyed("a", "k1", "f1")).await.unwrap();
    let owner = |id: &'static str| async move { q.get(id).await.unwrap().unwrap().owner };
    assert_eq!(owner("a").await.as_deref(), Some("flow"));
    assert_eq!(owner("unowned").await, None);
    // Through a lease and an outcome, and on the record an idempotent retry gets.
    let units = q.claim(&prd(), by("s", "A"), 2, later()).await.unwrap();
    for unit in &units {
        q.complete(&unit.call_id, 1, "s", "agent", ok())
            .await
            .unwrap();
    }
    assert_eq!(owner("a").await.as_deref(), Some("flow"));
    assert_eq!(owner("unowned").await, None);
    assert!(matches!(
        q.enqueue(keyed("b", "k1", "f1")).await.unwrap(),
        Enqueued::Existing(r) if r.id == "a" && r.owner.as_deref() == Some("flow")
    ));
}
