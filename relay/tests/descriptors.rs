//! Slow and idle clients cannot hold the relay's file descriptors: hundreds of
//! connections that send nothing, trickle a request head one byte at a time, or go
//! quiet after a request are all cut after their timeout, and the process's open
//! descriptors (`/proc/self/fd`) return to where they were.
//!
//! The only test of this binary, so that no other test opens descriptors meanwhile.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{STEP, TestRelay, config_json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Connections of each kind.
const PER_KIND: usize = 170;
const HEADER_READ: Duration = Duration::from_secs(2);
const IDLE: Duration = Duration::from_secs(2);

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// The IPv4 TCP sockets whose local port is `port`, as `(state, rx_queue)`.
fn sockets_on(port: u16) -> Vec<(String, usize)> {
    let table = std::fs::read_to_string("/proc/self/net/tcp").expect("/proc/self/net/tcp");
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if !fields.get(1)?.ends_with(&local) {
                return None;
            }
            let (_, rx) = fields.get(4)?.split_once(':')?;
            Some((
                fields.get(3)?.to_string(),
                usize::from_str_radix(rx, 16).ok()?,
            ))
        })
        .collect()
}

/// Established TCP connections whose local port is `port`: the relay's side of its
/// client connections.
fn established_on(port: u16) -> usize {
    sockets_on(port)
        .iter()
        .filter(|(state, _)| state == "01")
        .count()
}

/// Connections waiting in the accept queue of the listener on `port`.
fn accept_queue(port: u16) -> usize {
    sockets_on(port)
        .iter()
        .find(|(state, _)| state == "0A")
        .map_or(0, |(_, queued)| *queued)
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Connects and sends nothing.
    Silent,
    /// Sends a request head one byte every 200 ms, never finishing it.
    Trickle,
    /// Sends a whole request, reads the answer, then sends nothing.
    QuietAfterRequest,
}

/// Runs one slow client until the relay closes its connection; how long the
/// connection lived (from the answer, for [`Kind::QuietAfterRequest`]).
async fn slow_client(mut socket: TcpStream, kind: Kind) -> Duration {
    let mut started = Instant::now();
    let mut buffer = [0u8; 1024];
    match kind {
        Kind::Silent => {}
        Kind::Trickle => socket
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Slow: ")
            .await
            .expect("write"),
        Kind::QuietAfterRequest => {
            socket
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n")
                .await
                .expect("write");
            let mut answer = Vec::new();
            while !answer.ends_with(b"}") {
                let read = socket.read(&mut buffer).await.expect("read answer");
                assert!(read > 0, "closed before the answer");
                answer.extend_from_slice(&buffer[..read]);
            }
            assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
            started = Instant::now();
        }
    }
    let mut ticks = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            read = socket.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => panic!("{kind:?}: unexpected answer {:?}", String::from_utf8_lossy(&buffer)),
            },
            _ = ticks.tick() => {
                if matches!(kind, Kind::Trickle) && socket.write_all(b"a").await.is_err() {
                    return started.elapsed();
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_cut_and_descriptors_return_to_baseline() {
    let mut config = config_json();
    config["header_read_timeout_secs"] = HEADER_READ.as_secs().into();
    config["idle_timeout_secs"] = IDLE.as_secs().into();
    config["max_connections"] = 4096.into();
    let relay = TestRelay::start_with(config).await;
    let addr: SocketAddr = relay.url.trim_start_matches("http://").parse().unwrap();
    // Ready, and the runtime's own descriptors opened.
    relay
        .http
        .get(format!("{}/healthz", relay.url))
        .header("connection", "close")
        .send()
        .await
        .expect("healthz");
    let baseline = open_descriptors();

    // Connected in batches that the relay accepts before the next: a burst past the
    // listener's backlog would leave clients whose handshake the kernel never
    // completed on the relay's side (SYN cookies), which no server can close.
    let kinds = [Kind::Silent, Kind::Trickle, Kind::QuietAfterRequest];
    let all: Vec<Kind> = kinds
        .iter()
        .flat_map(|kind| std::iter::repeat_n(*kind, PER_KIND))
        .collect();
    let mut clients = Vec::new();
    for batch in all.chunks(50) {
        for &kind in batch {
            let socket = TcpStream::connect(addr).await.expect("connect");
            clients.push(tokio::spawn(async move {
                let lived = tokio::time::timeout(HEADER_READ + STEP, slow_client(socket, kind))
                    .await
                    .unwrap_or_else(|_| panic!("{kind:?}: connection never closed"));
                (kind, lived)
            }));
        }
        let deadline = Instant::now() + STEP;
        while accept_queue(addr.port()) > 0 {
            assert!(Instant::now() < deadline, "the relay stopped accepting");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    // The attack takes hold: the relay holds every connection for a while.
    let total = kinds.len() * PER_KIND;
    let deadline = Instant::now() + STEP;
    let mut peak = 0;
    while peak < total && Instant::now() < deadline {
        peak = peak.max(established_on(addr.port()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let peak_descriptors = open_descriptors();
    println!(
        "relay-side connections at the peak: {peak} of {total}; descriptors {baseline} -> {peak_descriptors}"
    );
    // Most at once, at least (under load, connecting them all may take longer than
    // the first ones are allowed to live).
    assert!(
        peak >= total * 3 / 4,
        "the relay never held the slow connections"
    );

    for client in clients {
        let (kind, lived) = client.await.expect("client task");
        let timeout = match kind {
            Kind::QuietAfterRequest => IDLE,
            Kind::Silent | Kind::Trickle => HEADER_READ,
        };
        assert!(
            lived >= timeout.saturating_sub(Duration::from_millis(100)),
            "{kind:?} cut after {lived:?}, before its timeout {timeout:?}"
        );
    }

    // The clients' sockets are closed with their tasks; the relay's were closed by
    // the relay.
    let deadline = Instant::now() + STEP;
    loop {
        let open = open_descriptors();
        if open <= baseline && established_on(addr.port()) == 0 {
            println!("descriptors back to {open} (baseline {baseline})");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} descriptors open, baseline {baseline}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay.stop().await;
}
