//! Refusals through the real code paths — the executor for functions and tables,
//! the pass-through streams for paths — land in the log at WARN with the same
//! fields, and a hostile path cannot forge a log line.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sapbridge_proto::{
    AgentMessage, CommitPolicy, ErrorGroup, HttpFailureKind, HttpRequestHead, Outcome, RfcError,
    Secret,
};
use sapbridge_sap::{SapConnection, SapSystem};

use crate::allowlist::Allowlist;
use crate::config::{AgentConfig, BackendConfig, HttpConfig, SystemConfig};
use crate::executor::execute;
use crate::passthrough::{HttpTargets, SessionStreams};
use crate::systems::ServedSystem;
use crate::test_units::unit_with;
use crate::transport::Outgoing;

/// A system that must not be reached: every request here is refused first.
struct Unreachable;

#[async_trait]
impl SapSystem for Unreachable {
    async fn connect(&self) -> Result<Box<dyn SapConnection>, RfcError> {
        panic!("a refused unit reached SAP");
    }
}

/// A writer into a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn not_allowed(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Failed { error } if error.group == ErrorGroup::NotAllowed)
}

/// The pass-through failure of stream `id`, sent by the streams.
async fn http_error(streams: &mut SessionStreams, id: u64) -> (HttpFailureKind, String) {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), streams.next_outbound())
            .await
            .expect("the refusal within 10 s");
        if let Outgoing::Message(AgentMessage::HttpError { stream_id, error }) = next
            && stream_id == id
        {
            return (error.kind, error.detail);
        }
    }
}

fn head(stream_id: u64, system: &str, path: &str) -> HttpRequestHead {
    HttpRequestHead {
        stream_id,
        system: system.into(),
        method: "GET".into(),
        path: path.into(),
        query: None,
        headers: vec![],
        body: false,
        timeout_ms: 10_000,
    }
}

/// The one line that logged `fields` (each `name=value`), asserting it is a WARN
/// `request refused`.
fn refusal_line<'l>(lines: &'l [String], fields: &[&str]) -> &'l str {
    let found: Vec<&String> = lines
        .iter()
        .filter(|line| fields.iter().all(|field| line.contains(field)))
        .collect();
    assert_eq!(found.len(), 1, "one line with {fields:?} in {lines:#?}");
    let line = found[0];
    assert!(line.contains(" WARN "), "{line}");
    assert!(line.contains("request refused"), "{line}");
    line
}

#[tokio::test]
async fn refused_functions_tables_and_paths_are_logged_at_warn_with_their_fields() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    // A current-thread runtime: the streams' tasks run on this thread, under this
    // subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);

    // A function and a table, refused by the executor.
    let system = ServedSystem {
        agent_id: "agent-7".into(),
        name: "PRD".into(),
        allowlist: Allowlist::parse(&["STFC_*", "RFC_READ_TABLE"]).unwrap(),
        tables: Allowlist::parse(&["KNA1"]).unwrap(),
        sap: Arc::new(Unreachable),
    };
    let denied = unit_with("c_fn", 1, &["BAPI_USER_DELETE"], CommitPolicy::None);
    assert!(not_allowed(
        &execute(&denied, Some(&system), None, &()).await
    ));
    let mut read = unit_with("c_tab", 1, &["RFC_READ_TABLE"], CommitPolicy::None);
    read.calls[0]
        .parameters
        .insert("QUERY_TABLE".into(), "USR02".into());
    assert!(not_allowed(&execute(&read, Some(&system), None, &()).await));

    // Paths, refused by the pass-through streams.
    let system_config = SystemConfig {
        name: "PRD".into(),
        backend: BackendConfig::Sim {
            db_path: None,
            latency_ms: 0,
            fault_rate: 0.0,
        },
        allow_functions: vec![],
        allow_tables: vec![],
        http: Some(HttpConfig::new("http://127.0.0.1:9/", vec!["/api".into()])),
    };
    let mut config = AgentConfig::new("ws://127.0.0.1:9", Secret::new("t"), vec![system_config]);
    config.agent_id = "agent-7".into();
    let mut streams = SessionStreams::new(Arc::new(HttpTargets::from_config(&config).unwrap()));
    streams.start(head(41, "PRD", "/secret"), false).unwrap();
    assert_eq!(
        http_error(&mut streams, 41).await.0,
        HttpFailureKind::NotAllowed
    );
    streams
        .start(
            head(42, "PRD", "/api/.\t./x\n2000-01-01T00:00:00Z  INFO forged"),
            false,
        )
        .unwrap();
    assert_eq!(
        http_error(&mut streams, 42).await.0,
        HttpFailureKind::BadRequest
    );
    streams.start(head(43, "QAS", "/api"), false).unwrap();
    assert_eq!(
        http_error(&mut streams, 43).await.0,
        HttpFailureKind::NotConfigured
    );

    let lines = buffer.lines();
    let common = ["agent_id=agent-7"];
    let function = refusal_line(
        &lines,
        &[
            common[0],
            "system=PRD",
            "function=BAPI_USER_DELETE",
            "call_id=c_fn",
        ],
    );
    assert!(
        function.contains("reason=function BAPI_USER_DELETE is not allowed on system PRD"),
        "{function}"
    );
    let table = refusal_line(
        &lines,
        &[common[0], "system=PRD", "table=USR02", "call_id=c_tab"],
    );
    assert!(
        table.contains("reason=table USR02 is not allowed"),
        "{table}"
    );
    let path = refusal_line(
        &lines,
        &[common[0], "system=PRD", "path=/secret", "stream_id=41"],
    );
    assert!(
        path.contains(r#"reason=the agent does not allow the path "/secret" on system PRD"#),
        "{path}"
    );
    let hostile = refusal_line(&lines, &[common[0], "system=PRD", "stream_id=42"]);
    assert!(
        hostile.contains(r"path=/api/.\t./x\n2000-01-01T00:00:00Z  INFO forged"),
        "control characters are escaped: {hostile}"
    );
    assert!(
        hostile.contains("reason=the path holds the byte 0x09"),
        "{hostile}"
    );
    assert!(
        !lines.iter().any(|line| line.starts_with("2000-01-01")),
        "a path forged a log line: {lines:#?}"
    );
    let unconfigured = refusal_line(
        &lines,
        &[common[0], "system=QAS", "path=/api", "stream_id=43"],
    );
    assert!(
        unconfigured.contains("reason=the agent has no HTTP pass-through for system QAS"),
        "{unconfigured}"
    );
}
