//! A hostile relay against the agent's pass-through path allowlist: it sends
//! request heads whose path (and query) hide dot segments behind control
//! characters, encodings, backslashes and other bytes a URL library rewrites, and
//! a real local backend records the raw request-target it receives. Whatever the
//! agent accepts must reach the backend under the base URL's path and under an
//! allowed prefix, judged the way a normalising backend would (percent-decoded,
//! control characters dropped, `\` and encoded slashes as separators, `.` and `..`
//! resolved); whatever it refuses must not reach the backend at all.

mod support;

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sapbridge_agent::HttpConfig;
use sapbridge_proto::{AgentMessage, HttpFailureKind, HttpRequestHead, RelayMessage};
use support::{Agent, Conn, FakeRelay, FakeSap, config, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The base URL's own path: every request must stay below it.
const BASE_PATH: &str = "/base";

/// The agent's `allow_paths` in the test.
const ALLOWED: [&str; 2] = ["/sap/opu/odata/sap/API_X", "/api"];

/// Request targets the backend received, raw, in order.
type Received = Arc<Mutex<Vec<Vec<u8>>>>;

/// The header lines the backend received, lower-cased, in order.
type Heads = Arc<Mutex<Vec<String>>>;

/// A backend on 127.0.0.1:0 that records each request's raw request-target and
/// header lines and answers `200 ok`, closing the connection. Returns its base URL.
async fn recording_backend(received: Received, heads: Heads) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!(
        "http://127.0.0.1:{}{BASE_PATH}/",
        listener.local_addr()?.port()
    );
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let received = Arc::clone(&received);
            let heads = Arc::clone(&heads);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 256 * 1024 {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line_end = head
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .unwrap_or(head.len());
                let line = &head[..line_end];
                // `METHOD SP request-target SP HTTP/1.1`: the target is everything
                // between the first and the last space, whatever bytes it holds.
                let first = line.iter().position(|&b| b == b' ');
                let last = line.iter().rposition(|&b| b == b' ');
                let target = match (first, last) {
                    (Some(first), Some(last)) if last > first => line[first + 1..last].to_vec(),
                    _ => line.to_vec(),
                };
                received.lock().unwrap().push(target);
                heads
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head[line_end..]).to_lowercase());
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                let _ = tcp.write_all(answer).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    Ok(url)
}

/// Percent-decodes leniently (a bad escape stays as it is).
fn lenient_decode(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let hex = text
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (text[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// Why a request-target the backend received is outside what the agent allows;
/// `None` when it is inside.
fn escape(target: &[u8]) -> Option<String> {
    let shown = String::from_utf8_lossy(target).into_owned();
    if let Some(byte) = target.iter().find(|b| !(0x21..=0x7e).contains(*b)) {
        return Some(format!("{shown:?} holds the byte {byte:#04x}"));
    }
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let Some(below) = path.strip_prefix(BASE_PATH.as_bytes()) else {
        return Some(format!("{shown:?} is not below the base path {BASE_PATH}"));
    };
    if !below.starts_with(b"/") {
        return Some(format!("{shown:?} is not below the base path {BASE_PATH}/"));
    }
    // What a backend that decodes (up to three times), drops control characters,
    // splits on `/` and `\` and ignores `;` parameters would make of the path.
    let mut resolved: Vec<Vec<u8>> = Vec::new();
    for raw in below[1..].split(|&b| b == b'/') {
        let mut segment = raw.to_vec();
        for _ in 0..3 {
            segment = lenient_decode(&segment);
        }
        segment.retain(|&b| b >= 0x20 && b != 0x7f);
        for part in segment.split(|&b| b == b'/' || b == b'\\') {
            let part = part.split(|&b| b == b';').next().unwrap_or_default();
            match part {
                b"." => {}
                b".." => {
                    if resolved.pop().is_none() {
                        return Some(format!("{shown:?} climbs above the base path"));
                    }
                }
                other => resolved.push(other.to_vec()),
            }
        }
    }
    let inside = ALLOWED.iter().any(|entry| {
        let entry: Vec<&[u8]> = entry[1..].split('/').map(str::as_bytes).collect();
        entry.len() <= resolved.len() && entry.iter().zip(&resolved).all(|(a, b)| *a == &b[..])
    });
    (!inside).then(|| format!("{shown:?} resolves outside allow_paths"))
}

/// The relay's side of the test: the agent's connection and a stream id counter.
struct Hostile {
    _relay: FakeRelay,
    conn: Conn,
    next_stream: u64,
    received: Received,
    heads: Heads,
}

/// What the agent made of one request.
#[derive(Debug)]
enum Answer {
    /// It answered with the backend's response head.
    Forwarded,
    /// It refused or failed the request.
    Failed(HttpFailureKind, String),
}

impl Hostile {
    /// Sends one request head; the agent's answer and the targets the backend
    /// received meanwhile.
    async fn request(
        &mut self,
        path: &str,
        query: Option<&str>,
    ) -> anyhow::Result<(Answer, Vec<Vec<u8>>)> {
        self.request_with(path, query, vec![]).await
    }

    /// [`Hostile::request`] with request headers.
    async fn request_with(
        &mut self,
        path: &str,
        query: Option<&str>,
        headers: Vec<(String, String)>,
    ) -> anyhow::Result<(Answer, Vec<Vec<u8>>)> {
        self.next_stream += 1;
        let id = self.next_stream;
        self.conn
            .send(RelayMessage::HttpRequest {
                request: HttpRequestHead {
                    stream_id: id,
                    system: "SIM".into(),
                    method: "GET".into(),
                    path: path.to_owned(),
                    query: query.map(str::to_owned),
                    headers,
                    body: false,
                    timeout_ms: 10_000,
                },
            })
            .await?;
        let answer = loop {
            match self.conn.recv().await? {
                AgentMessage::HttpResponse { response } if response.stream_id == id => {
                    break Answer::Forwarded;
                }
                AgentMessage::HttpError { stream_id, error } if stream_id == id => {
                    break Answer::Failed(error.kind, error.detail);
                }
                _ => {}
            }
        };
        // The backend records a target before it answers, so a forwarded request's
        // target is already here.
        let received = std::mem::take(&mut *self.received.lock().unwrap());
        Ok((answer, received))
    }
}

/// A fake relay, an agent whose system `SIM` passes through to a recording
/// backend under [`BASE_PATH`] with [`ALLOWED`], and the relay's end of the session.
async fn setup() -> anyhow::Result<(Hostile, Agent)> {
    let received = Received::default();
    let heads = Heads::default();
    let backend = recording_backend(Arc::clone(&received), Arc::clone(&heads)).await?;
    let mut relay = FakeRelay::start().await?;
    let mut config = config(&relay.url, &["STFC_CONNECTION"], 1);
    config.systems[0].http = Some(HttpConfig::new(
        backend,
        ALLOWED.iter().map(|s| (*s).to_owned()).collect(),
    ));
    let agent = Agent::start(config, &FakeSap::default());
    let mut conn = relay.conn().await?;
    conn.handshake(15).await?;
    Ok((
        Hostile {
            _relay: relay,
            conn,
            next_stream: 0,
            received,
            heads,
        },
        agent,
    ))
}

/// Checks one request: a forwarded one reached the backend once, inside; a
/// refused one did not reach it.
fn judge(answer: &Answer, received: &[Vec<u8>]) -> Result<(), String> {
    for target in received {
        if let Some(why) = escape(target) {
            return Err(format!("the backend received {why} (agent: {answer:?})"));
        }
    }
    match answer {
        Answer::Forwarded if received.len() != 1 => Err(format!(
            "a forwarded request reached the backend {} times",
            received.len()
        )),
        Answer::Failed(HttpFailureKind::NotAllowed | HttpFailureKind::BadRequest, _)
            if !received.is_empty() =>
        {
            Err("a refused request reached the backend".into())
        }
        Answer::Failed(HttpFailureKind::NotAllowed | HttpFailureKind::BadRequest, _)
        | Answer::Forwarded => Ok(()),
        Answer::Failed(kind, detail) => Err(format!(
            "the local backend should answer or the agent refuse, got {kind:?}: {detail}"
        )),
    }
}

/// Bytes a URL library strips, rewrites or treats as a separator, and other noise.
fn noise() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["\t", "\r", "\n", "\r\n"]),
        3 => prop::sample::select(vec![
            " ", "\x00", "\x01", "\x0b", "\x0c", "\x1f", "\x7f", "\\", "#", "?", ";", "%",
            "%2", "%2f", "%2F", "%5c", "%5C", "%09", "%0a", "%0D", "%00", "%7f", "%20",
            "\u{a0}", "\u{feff}", "\u{200b}", "\u{3002}", "\u{ff0e}", "ü", "%C3%A4", "{",
            "}", "|", "^", "`", "\"", "<", ">", "[", "]", "@", ":",
        ]),
    ]
    .prop_map(str::to_owned)
}

/// A dot in one of its spellings.
fn dot() -> impl Strategy<Value = String> {
    prop::sample::select(vec![".", ".", "%2e", "%2E", "%252e", "%252E", "%25%32%65"])
        .prop_map(str::to_owned)
}

/// A segment: dots mixed with noise (the attack), a name, or anything.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        5 => prop::collection::vec(prop_oneof![3 => dot(), 2 => noise()], 1..5)
            .prop_map(|parts| parts.concat()),
        2 => prop::sample::select(vec![
            "API_X", "API_Y", "x", "secret", "$metadata", "A_Product('A%2F1')", "..x", "...",
        ])
        .prop_map(str::to_owned),
        1 => ".{0,6}",
    ]
}

/// A path: an allowed (or nearly allowed) prefix, then segments joined by a
/// separator or a disguised one; or random text and random bytes.
fn hostile_path() -> impl Strategy<Value = String> {
    let prefix = prop::sample::select(vec![
        "/sap/opu/odata/sap/API_X",
        "/api",
        "/sap/opu/odata/sap",
        "",
        "/apix",
    ]);
    let separator = prop::sample::select(vec!["/", "/", "/", "\\", "/\t", "%2f", "/;x/"]);
    prop_oneof![
        8 => (prefix, prop::collection::vec((separator, segment()), 0..5)).prop_map(
            |(prefix, parts)| {
                let mut path = prefix.to_owned();
                for (separator, segment) in parts {
                    path.push_str(separator);
                    path.push_str(&segment);
                }
                if path.is_empty() { "/".to_owned() } else { path }
            }
        ),
        1 => ".{0,24}".prop_map(|s| format!("/api/{s}")),
        1 => prop::collection::vec(any::<u8>(), 0..24)
            .prop_map(|b| format!("/api/{}", String::from_utf8_lossy(&b))),
    ]
}

/// A query: none, a plain one, or one that tries to end the query or the line.
fn hostile_query() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        3 => prop::sample::select(vec![
            "a=1", "$top=1&$filter=Name%20eq%20'x'", "#/../../secret", "x=1#/..", "/../secret",
            "a=\t..", "a b", "?a", "\r\nX-Injected: 1", " HTTP/1.1\r\nHost: evil\r\n\r\nGET /",
            "%23", "\\..\\..", "ü=1", "\x00", "",
        ])
        .prop_map(str::to_owned),
        1 => ".{0,12}",
    ])
}

#[test]
fn every_path_the_agent_accepts_reaches_the_backend_inside_allow_paths() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (hostile, agent) = runtime.block_on(setup()).unwrap();
    let hostile = RefCell::new(Some(hostile));
    let counts = RefCell::new((0u32, 0u32));
    // 1024 cases take about a second; at 256 the old code's hole was missed in one
    // run out of ten. `PROPTEST_CASES` sets another number for a longer run.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1024);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&(hostile_path(), hostile_query()), |(path, query)| {
        let mut relay = hostile
            .take()
            .expect("the relay's side is back after each case");
        let answer = runtime.block_on(async {
            within("the agent's answer", relay.request(&path, query.as_deref())).await?
        });
        hostile.replace(Some(relay));
        let (answer, received) = answer.map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        let mut counts = counts.borrow_mut();
        match answer {
            Answer::Forwarded => counts.0 += 1,
            Answer::Failed(..) => counts.1 += 1,
        }
        judge(&answer, &received)
            .map_err(|why| TestCaseError::fail(format!("path {path:?} query {query:?}: {why}")))
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    let (forwarded, refused) = *counts.borrow();
    eprintln!("{cases} cases: {forwarded} forwarded, {refused} refused");
    // Both sides were exercised: the property is not met by refusing everything.
    assert!(
        forwarded > 0 && refused > 0,
        "forwarded {forwarded}, refused {refused}"
    );
    agent.shutdown.cancel();
    runtime.block_on(agent.join()).unwrap();
}

#[tokio::test]
async fn dot_segments_hidden_by_control_characters_are_refused() -> anyhow::Result<()> {
    let (mut hostile, agent) = setup().await?;
    let root = "/sap/opu/odata/sap/API_X";
    let mut attacks = Vec::new();
    for control in ["\t", "\r", "\n"] {
        for dots in [
            format!(".{control}."),
            format!("%2e{control}%2e"),
            format!("{control}.."),
            format!("..{control}"),
            format!(".%2E{control}"),
            format!("{control}."),
        ] {
            attacks.push(format!("{root}/{dots}/API_Y"));
            attacks.push(format!("{root}/x/{dots}/{dots}/secret"));
        }
    }
    attacks.extend([
        format!("{root}/..\\API_Y"),
        format!("{root}\\..\\API_Y"),
        format!("{root}/%2e%2e%5cAPI_Y"),
        format!("{root}/.%09./API_Y"),
        format!("{root}/.%0d%0a./API_Y"),
        format!("{root}/x#/../../API_Y"),
        format!("{root}/x?/../../API_Y"),
        format!("{root}/\u{ff0e}\u{ff0e}/API_Y"),
        format!("{root}/A B"),
        format!("{root}/\x7f"),
    ]);
    for path in &attacks {
        let (answer, received) = hostile.request(path, None).await?;
        assert!(
            received.is_empty(),
            "{path:?} reached the backend as {:?}",
            received
                .iter()
                .map(|t| String::from_utf8_lossy(t).into_owned())
                .collect::<Vec<_>>()
        );
        assert!(
            matches!(
                answer,
                Answer::Failed(HttpFailureKind::NotAllowed | HttpFailureKind::BadRequest, _)
            ),
            "{path:?}: {answer:?}"
        );
    }
    // A query cannot end the request line or carry a fragment that would be cut.
    for query in ["a=1#/../x", "a=\t1", "a=1\r\nX: y", "a b", "ü"] {
        let (answer, received) = hostile.request(&format!("{root}/x"), Some(query)).await?;
        assert!(received.is_empty(), "query {query:?} reached the backend");
        assert!(
            matches!(answer, Answer::Failed(HttpFailureKind::BadRequest, _)),
            "query {query:?}: {answer:?}"
        );
    }
    // Ordinary OData requests still pass, byte for byte, below the base path.
    for (path, query) in [
        (
            "/sap/opu/odata/sap/API_X/A_Product('A%2F1')",
            Some("$format=json"),
        ),
        ("/sap/opu/odata/sap/API_X/$metadata", None),
        (
            "/api/Customers('1')/$value",
            Some("sap-client=100&$filter=Name%20eq%20'x'"),
        ),
        ("/api/x..y/...", None),
    ] {
        let (answer, received) = hostile.request(path, query).await?;
        assert!(matches!(answer, Answer::Forwarded), "{path}: {answer:?}");
        let expected = match query {
            Some(query) => format!("{BASE_PATH}{path}?{query}"),
            None => format!("{BASE_PATH}{path}"),
        };
        assert_eq!(received, vec![expected.into_bytes()], "{path}");
    }
    // Headers that some servers read as the path in place of the request line do
    // not reach the backend.
    let overrides: Vec<(String, String)> = ["X-Original-URL", "x-rewrite-url", "X-Original-URI"]
        .iter()
        .map(|name| ((*name).to_owned(), "/sap/opu/odata/sap/API_Y".to_owned()))
        .collect();
    let (answer, received) = hostile
        .request_with(&format!("{root}/x"), None, overrides)
        .await?;
    assert!(matches!(answer, Answer::Forwarded), "{answer:?}");
    assert_eq!(received.len(), 1);
    let head = hostile.heads.lock().unwrap().pop().unwrap_or_default();
    assert!(!head.contains("api_y"), "{head}");
    agent.shutdown.cancel();
    agent.join().await
}
