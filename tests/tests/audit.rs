//! The audit log end to end, on the SQLite store and on the PostgreSQL store: a
//! relay with an operator key, a real agent on the simulator whose allowlist
//! refuses a function, a key out of scope and a reload of the keys. `GET
//! /v1/audit` lists each with its fields, as JSON lines and as CSV, filters and
//! pages; a non-operator key is refused; a record past the retention is purged
//! by the reaper of a restarted relay.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sapbridge_relay::RelayConfig;
use sapbridge_tests::postgres::{TestDatabase, skip_or_fail};
use sapbridge_tests::{AGENT_TOKEN, API_KEY, Client, DEADLINE, SCOPED_KEY, TestAgent, simulator};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The operator's key.
const OPS_KEY: &str = "test-ops-key";

/// A relay taking reloads of its configuration.
struct Relay {
    url: String,
    reloads: mpsc::UnboundedSender<RelayConfig>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), sapbridge_relay::RelayError>>,
}

fn config(queue: &Value) -> Value {
    json!({
        "api_keys": [
            {"name": "all", "key": API_KEY, "systems": ["*"]},
            {"name": "other-only", "key": SCOPED_KEY, "systems": ["OTHER"]},
            {"name": "ops", "key": OPS_KEY, "systems": ["*"], "operator": true},
        ],
        "agent_tokens": [
            {"name": "agent", "token": AGENT_TOKEN, "systems": ["SIM", "OTHER"]},
        ],
        "queue": queue,
    })
}

impl Relay {
    async fn start(queue: &Value) -> Result<Self> {
        let config: RelayConfig = serde_json::from_value(config(queue))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (reloads, rx) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(sapbridge_relay::run_with_reloads(
            listener,
            config,
            shutdown.clone(),
            rx,
        ));
        Ok(Self {
            url,
            reloads,
            shutdown,
            task,
        })
    }

    async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        match tokio::time::timeout(DEADLINE, self.task).await {
            Ok(Ok(result)) => result.context("relay failed"),
            Ok(Err(join)) => std::panic::resume_unwind(join.into_panic()),
            Err(_) => bail!("relay did not stop"),
        }
    }
}

/// `GET /v1/audit{query}` as the operator, with `accept`: status, next cursor
/// header, body text.
async fn audit(relay: &Relay, query: &str, accept: &str) -> Result<(u16, Option<String>, String)> {
    audit_as(relay, OPS_KEY, query, accept).await
}

async fn audit_as(
    relay: &Relay,
    key: &str,
    query: &str,
    accept: &str,
) -> Result<(u16, Option<String>, String)> {
    let response = reqwest::Client::new()
        .get(format!("{}/v1/audit{query}", relay.url))
        .bearer_auth(key)
        .header("accept", accept)
        .send()
        .await?;
    let status = response.status().as_u16();
    let next = response
        .headers()
        .get("sapbridge-next-cursor")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((status, next, response.text().await?))
}

/// The records of an NDJSON body.
fn lines(body: &str) -> Vec<Value> {
    body.lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// Polls the JSON-lines log until `wanted` holds for some record set.
async fn until(
    relay: &Relay,
    query: &str,
    wanted: impl Fn(&[Value]) -> bool,
) -> Result<Vec<Value>> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (status, _, body) = audit(relay, query, "application/x-ndjson").await?;
        anyhow::ensure!(status == 200, "GET /v1/audit{query}: {status} {body}");
        let records = lines(&body);
        if wanted(&records) {
            return Ok(records);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the audit log never held what was wanted: {records:#?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn find(records: &[Value], pred: impl Fn(&Value) -> bool) -> Option<&Value> {
    records.iter().find(|r| pred(r))
}

/// A minimal RFC 4180 reader: rows of fields, quotes undone.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    rows
}

/// The whole scenario on the store `queue` names; `old_record` inserts a record
/// of 100 days ago into that store directly (for the retention check).
async fn scenario<F, Fut>(queue: Value, dir: &Path, old_record: F) -> Result<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let relay = Relay::start(&queue).await?;
    let client = Client::at(relay.url.clone(), Some(API_KEY));
    let sim = simulator(dir, Duration::ZERO)?;
    let agent = TestAgent::start_via(
        &format!("{}/v1/agent/connect", relay.url.replace("http", "ws")),
        "agent-audit",
        dir,
        sim,
        &["STFC_CONNECTION"],
        4,
    )?;
    client.wait_agents("SIM", 1).await?;

    // A call that runs, one the agent's allowlist refuses, one out of the key's scope.
    let ok = client
        .call("SIM", "STFC_CONNECTION", &json!({"REQUTEXT": "audit"}))
        .await?;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    let ok_id = ok.body["id"].as_str().context("call id")?.to_owned();
    let refused = client.call("SIM", "Z_NOT_ON_THE_LIST", &json!({})).await?;
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    assert_eq!(refused.body["type"], "/problems/not-allowed");
    let refused_id = refused.body["call_id"]
        .as_str()
        .context("call id")?
        .to_owned();
    let scoped = Client::at(relay.url.clone(), Some(SCOPED_KEY))
        .call("SIM", "STFC_CONNECTION", &json!({}))
        .await?;
    assert_eq!(scoped.status, 403);
    // A reload of the keys (as SIGHUP sends it).
    relay
        .reloads
        .send(serde_json::from_value(config(&queue))?)
        .context("reload")?;

    // Only operators read the log.
    let (status, _, _) = audit_as(&relay, API_KEY, "", "application/json").await?;
    assert_eq!(status, 403, "a key without the operator scope");
    let (status, _, _) = audit_as(&relay, "no-such-key", "", "application/json").await?;
    assert_eq!(status, 401);

    let records = until(&relay, "?limit=1000", |r| {
        find(r, |x| x["event"] == "config").is_some()
            && find(r, |x| x["event"] == "call" && x["outcome"] == "not-allowed").is_some()
            && find(r, |x| x["event"] == "call" && x["outcome"] == "succeeded").is_some()
            // The refused reads of the log are recorded after their answers.
            && find(r, |x| x["target"] == "/v1/audit" && x["outcome"] == "unauthorized").is_some()
            && find(r, |x| x["target"] == "/v1/audit" && x["key"] == "all").is_some()
    })
    .await?;

    // The successful call: its request and its outcome.
    let request = find(&records, |r| {
        r["event"] == "request" && r["call_id"] == ok_id.as_str()
    })
    .context("the call's request")?;
    assert_eq!(request["key"], "all");
    assert_eq!(request["client"], "127.0.0.1");
    assert_eq!(request["system"], "SIM");
    assert_eq!(request["method"], "POST");
    assert_eq!(request["target"], "STFC_CONNECTION");
    assert_eq!(request["outcome"], "succeeded");
    assert_eq!(request["status"], 200);
    assert_eq!(request["agent"], "agent-audit");
    assert!(request["duration_ms"].as_i64().is_some());
    assert!(request["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    let ended = find(&records, |r| {
        r["event"] == "call" && r["call_id"] == ok_id.as_str()
    })
    .context("the call's outcome")?;
    assert_eq!(ended["key"], "all");
    assert_eq!(ended["agent"], "agent-audit");
    assert_eq!(ended["outcome"], "succeeded");

    // The agent's refusal, as the request saw it and as the agent reported it.
    let refusal = find(&records, |r| {
        r["event"] == "call" && r["call_id"] == refused_id.as_str()
    })
    .context("the agent's refusal")?;
    assert_eq!(refusal["outcome"], "not-allowed");
    assert_eq!(refusal["target"], "Z_NOT_ON_THE_LIST");
    assert_eq!(refusal["key"], "all");
    assert_eq!(refusal["agent"], "agent-audit");
    let refused_request = find(&records, |r| {
        r["event"] == "request" && r["call_id"] == refused_id.as_str()
    })
    .context("the refused call's request")?;
    assert_eq!(
        (
            refused_request["outcome"].as_str(),
            refused_request["status"].as_u64()
        ),
        (Some("not-allowed"), Some(403))
    );

    // The relay's refusals: out of scope, no operator scope, unknown key.
    let out_of_scope = find(&records, |r| r["key"] == "other-only").context("out of scope")?;
    assert_eq!(out_of_scope["outcome"], "forbidden");
    assert_eq!(out_of_scope["status"], 403);
    assert_eq!(out_of_scope["system"], "SIM");
    assert!(
        find(&records, |r| r["target"] == "/v1/audit"
            && r["outcome"] == "unauthorized")
        .is_some()
    );
    assert!(
        find(&records, |r| r["target"] == "/v1/audit"
            && r["key"] == "all"
            && r["outcome"] == "forbidden")
        .is_some()
    );

    // The reload.
    let reload = find(&records, |r| r["event"] == "config").context("reload")?;
    assert_eq!(reload["outcome"], "ok");
    assert!(
        reload["detail"]
            .as_str()
            .is_some_and(|d| d.contains("api_keys=3"))
    );

    // CSV: a header row, then the same records, quoting undone.
    let (status, _, csv) = audit(&relay, "?limit=1000", "text/csv").await?;
    assert_eq!(status, 200);
    let rows = parse_csv(&csv);
    assert_eq!(
        rows[0],
        [
            "time",
            "event",
            "key",
            "client",
            "system",
            "method",
            "target",
            "call_id",
            "outcome",
            "status",
            "duration_ms",
            "agent",
            "detail"
        ]
    );
    let reload_row = rows
        .iter()
        .find(|row| row[1] == "config")
        .context("reload row")?;
    assert_eq!(
        reload_row[12],
        reload["detail"].as_str().unwrap_or_default()
    );
    assert!(
        csv.contains("\"api_keys=3, "),
        "a field with commas is quoted"
    );
    let call_row = rows
        .iter()
        .find(|row| row[1] == "request" && row[7] == ok_id)
        .context("call row")?;
    assert_eq!(
        (
            &call_row[2][..],
            &call_row[3][..],
            &call_row[8][..],
            &call_row[11][..]
        ),
        ("all", "127.0.0.1", "succeeded", "agent-audit")
    );
    assert!(rows.len() > records.len(), "every record and the header");

    // Filters.
    let only = |query: &str| {
        let query = query.to_owned();
        let relay = &relay;
        async move {
            let (status, _, body) = audit(relay, &query, "application/x-ndjson").await?;
            anyhow::ensure!(status == 200, "{query}: {status} {body}");
            Ok::<_, anyhow::Error>(lines(&body))
        }
    };
    let by_outcome = only("?outcome=not-allowed").await?;
    assert!(by_outcome.len() >= 2 && by_outcome.iter().all(|r| r["outcome"] == "not-allowed"));
    let by_key = only("?key=other-only").await?;
    assert!(!by_key.is_empty() && by_key.iter().all(|r| r["key"] == "other-only"));
    let by_call = only(&format!("?call_id={ok_id}")).await?;
    assert_eq!(
        by_call.len(),
        2,
        "its request and its outcome: {by_call:#?}"
    );
    let by_system = only("?system=OTHER").await?;
    assert!(by_system.is_empty());
    let future = only("?from=2100-01-01T00:00:00Z").await?;
    assert!(future.is_empty());
    let past = only("?to=2000-01-01T00:00:00Z").await?;
    assert!(past.is_empty());
    let window = only("?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z&limit=1000").await?;
    assert!(window.len() >= records.len());
    let (status, _, _) = audit(&relay, "?from=yesterday", "application/json").await?;
    assert_eq!(status, 400);
    let (status, _, _) = audit(&relay, "?cursor=bogus", "application/json").await?;
    assert_eq!(status, 400);
    let (status, _, _) = audit(&relay, "?colour=red", "application/json").await?;
    assert_eq!(status, 400);

    // Cursor paging: pages of 2 (the JSON page object) walk the same records.
    let everything = only("?limit=1000").await?;
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("?limit=2&cursor={c}"),
            None => "?limit=2".to_owned(),
        };
        let (status, _, body) = audit(&relay, &query, "application/json").await?;
        assert_eq!(status, 200);
        let page: Value = serde_json::from_str(&body)?;
        let items = page["items"].as_array().context("items")?;
        assert!(items.len() <= 2);
        paged.extend(items.iter().cloned());
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        anyhow::ensure!(paged.len() <= everything.len() + 50, "paging does not end");
    }
    // The paging requests themselves are recorded too, after the snapshot.
    assert_eq!(paged[..everything.len()], everything[..]);
    let (_, next, _) = audit(&relay, "?limit=1", "application/x-ndjson").await?;
    assert!(
        next.is_some(),
        "JSON lines carry the next cursor in a header"
    );

    agent.stop().await?;
    relay.stop().await?;

    // Retention: a record of 100 days ago goes at the first reaper pass.
    old_record().await?;
    let relay = Relay::start(&queue).await?;
    until(&relay, "?to=2099-01-01T00:00:00Z&limit=1000", |r| {
        !r.is_empty() && r.iter().all(|x| x["detail"] != OLD_RECORD_DETAIL)
    })
    .await?;
    relay.stop().await?;
    Ok(())
}

const OLD_RECORD_DETAIL: &str = "planted 100 days ago";

fn hundred_days_ago_nanos() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let then = now.saturating_sub(Duration::from_secs(100 * 86_400));
    i64::try_from(then.as_nanos()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_on_sqlite() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("relay.db");
    let queue = json!({"store": "sqlite", "path": path});
    scenario(queue, dir.path(), || async {
        let conn = rusqlite::Connection::open(&path)?;
        let planted = conn.execute(
            "INSERT INTO audit (at, event, outcome, detail) VALUES (?1, 'request', 'ok', ?2)",
            rusqlite::params![hundred_days_ago_nanos(), OLD_RECORD_DETAIL],
        )?;
        anyhow::ensure!(planted == 1);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_on_postgres() -> Result<()> {
    let db = match TestDatabase::create().await {
        Ok(db) => db,
        Err(error) => {
            skip_or_fail("audit_log_on_postgres", &format!("{error:#}"));
            return Ok(());
        }
    };
    let dir = tempfile::tempdir()?;
    let url = db.url().to_owned();
    let queue = json!({"store": "postgres", "url": url});
    scenario(queue, dir.path(), || async {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        let planted = client
            .execute(
                "INSERT INTO sapbridge_audit (at, event, outcome, detail) \
                 VALUES ($1, 'request', 'ok', $2)",
                &[&hundred_days_ago_nanos(), &OLD_RECORD_DETAIL],
            )
            .await?;
        anyhow::ensure!(planted == 1);
        Ok(())
    })
    .await
}
