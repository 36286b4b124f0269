//! Forwarding a pass-through request to another relay replica, one that has an
//! agent forwarding HTTP for the system, and streaming its answer back.
//!
//! The request goes to the peer's advertised address with the same method, path
//! and query, its end-to-end headers (not the client's API key, nor hop-by-hop
//! headers), and a signed [`FORWARDED_HEADER`] carrying the caller as this
//! replica authenticated it. Bodies stream both ways as they arrive: the request
//! body counted against the pass-through limit, the response body given at most
//! the pass-through timeout between two pieces.
//!
//! Connections to peers are kept alive and reused (plain HTTP/1.1: the peers'
//! network is private). Which peers have an agent for a system is read from the
//! store at most every [`CANDIDATES_FOR`] per system (the store's listings are
//! themselves published every 2 s), and a peer that did not answer is tried
//! last for [`DOWN_FOR`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::response::Response;
use futures_util::StreamExt;
use http::header::{AUTHORIZATION, CONNECTION, EXPECT, HOST};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use sapbridge_proto::is_hop_by_hop;

use super::PassthroughSettings;
use super::cluster::{FORWARDED_HEADER, ForwardedCaller, Signer};
use crate::queue::{PeerReplica, Queue};

/// How long the peers found for a system are used before the store is asked
/// again.
const CANDIDATES_FOR: Duration = Duration::from_secs(1);

/// How long a peer that did not answer is tried after the others.
const DOWN_FOR: Duration = Duration::from_secs(5);

/// How long a connection to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How much longer than the pass-through timeout this replica waits for a peer's
/// response head: the peer answers its own 504 at the timeout, and that answer
/// should be the client's.
const HEAD_MARGIN: Duration = Duration::from_secs(5);

/// Why a peer gave no response to stream.
#[derive(Debug)]
pub(crate) enum PeerError {
    /// No connection to the peer (it is gone, or unreachable).
    Unreachable(String),
    /// The connection failed after the request was sent, before the head.
    Lost(String),
    /// No response head in time.
    Timeout(Duration),
    /// The client's body passed the limit (bytes).
    TooLarge(usize),
    /// The client's body could not be read.
    BadRequest(String),
}

/// The request body as the peer receives it: what went wrong reading the
/// client's body, if anything.
const BODY_OK: u8 = 0;
const BODY_TOO_LARGE: u8 = 1;
const BODY_CLIENT_FAILED: u8 = 2;

/// The peers found for a system, and when.
type Found = (Instant, Arc<[PeerReplica]>);

/// Forwards pass-through requests to peer replicas.
pub(crate) struct Peers {
    signer: Signer,
    /// How long a kept-alive connection to a peer may sit unused.
    pool_idle: Duration,
    client: OnceLock<Client<HttpConnector, Body>>,
    /// Per system: when its peers were read, and which.
    candidates: Mutex<HashMap<String, Found>>,
    /// Peers that did not answer, and when.
    down: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

impl Peers {
    /// Peers signing with `signer`, whose servers close connections idle for
    /// `peer_idle` (the replicas' `idle_timeout_secs`): an idle connection is
    /// dropped here at half that, so a request is never sent on a connection the
    /// peer is closing (it would fail as if the peer had died).
    pub(crate) fn new(signer: Signer, peer_idle: Duration) -> Self {
        Self {
            signer,
            pool_idle: (peer_idle / 2).max(Duration::from_millis(500)),
            client: OnceLock::new(),
            candidates: Mutex::default(),
            down: Mutex::default(),
        }
    }

    /// The other live replicas with an agent forwarding HTTP for `system`, in
    /// the order to try them: the store's order, those that recently did not
    /// answer last. Read from `queue` at most every [`CANDIDATES_FOR`].
    ///
    /// # Errors
    /// The store's error, when it had to be asked and failed.
    pub(crate) async fn candidates(
        &self,
        queue: &dyn Queue,
        system: &str,
    ) -> Result<Vec<PeerReplica>, crate::queue::QueueError> {
        let now = Instant::now();
        let cached = self
            .candidates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(system)
            .filter(|(at, _)| now.duration_since(*at) < CANDIDATES_FOR)
            .map(|(_, peers)| Arc::clone(peers));
        let peers = match cached {
            Some(peers) => peers,
            None => {
                let peers: Arc<[PeerReplica]> = queue.http_replicas(system).await?.into();
                let mut all = self
                    .candidates
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                all.retain(|_, (at, _)| now.duration_since(*at) < CANDIDATES_FOR);
                all.insert(system.to_owned(), (now, Arc::clone(&peers)));
                peers
            }
        };
        let mut ordered = peers.to_vec();
        let mut down = self.down.lock().unwrap_or_else(PoisonError::into_inner);
        down.retain(|_, at| now.duration_since(*at) < DOWN_FOR);
        ordered.sort_by_key(|peer| down.contains_key(&peer.id));
        Ok(ordered)
    }

    /// `peer` did not answer: try it after the others for a while.
    pub(crate) fn mark_down(&self, peer: &PeerReplica) {
        self.down
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(peer.id.clone(), Instant::now());
    }

    /// The signer (also checks forwarded requests this replica receives).
    pub(crate) fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The HTTP client, made on first use (inside the runtime).
    fn client(&self) -> &Client<HttpConnector, Body> {
        self.client.get_or_init(|| {
            let mut connector = HttpConnector::new();
            connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
            connector.set_nodelay(true);
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(self.pool_idle)
                .pool_timer(TokioTimer::new())
                .build(connector)
        })
    }

    /// Sends the request (`parts`, and `body` when it has one) from replica `me`
    /// to `peer` on behalf of `caller`, and answers with the peer's response, its
    /// body streamed as it arrives.
    ///
    /// # Errors
    /// [`PeerError`] when there is no response to stream. Nothing of the body
    /// was read when the error is [`PeerError::Unreachable`].
    pub(crate) async fn forward(
        &self,
        me: &str,
        peer: &PeerReplica,
        caller: ForwardedCaller,
        parts: &Parts,
        body: Option<Body>,
        settings: &PassthroughSettings,
    ) -> Result<Response, PeerError> {
        let target = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
        let uri: Uri = format!("{}{target}", peer.address.trim_end_matches('/'))
            .parse()
            .map_err(|e| PeerError::Unreachable(format!("bad peer address: {e}")))?;
        let signed = self
            .signer
            .sign(me, &peer.id, parts.method.as_str(), &target, caller)
            .ok_or_else(|| PeerError::Unreachable("no cluster secret".into()))?;
        let signed = HeaderValue::from_str(&signed)
            .map_err(|e| PeerError::Unreachable(format!("unencodable signature: {e}")))?;
        let body_state = Arc::new(AtomicU8::new(BODY_OK));
        // A safe request without a body may go again once when a kept-alive
        // connection turns out to be dead (the peer went away while it idled in
        // the pool): then the next attempt connects afresh and says whether the
        // peer is there at all.
        let replayable = body.is_none() && parts.method.is_safe();
        let outgoing = match body {
            Some(body) => limited(body, settings.body_limit_bytes, Arc::clone(&body_state)),
            None => Body::empty(),
        };
        let build = |outgoing: Body| {
            let mut request = Request::new(outgoing);
            *request.method_mut() = parts.method.clone();
            *request.uri_mut() = uri.clone();
            *request.headers_mut() = request_headers(&parts.headers);
            request
                .headers_mut()
                .insert(HeaderName::from_static(FORWARDED_HEADER), signed.clone());
            request
        };
        let wait = settings.timeout + HEAD_MARGIN;
        let mut answer = tokio::time::timeout(wait, self.client().request(build(outgoing))).await;
        if replayable && matches!(&answer, Ok(Err(error)) if !error.is_connect()) {
            tracing::debug!(replica = %peer.id, "a pooled connection to the replica was dead; trying a new one");
            answer = tokio::time::timeout(wait, self.client().request(build(Body::empty()))).await;
        }
        let response = match answer {
            Err(_) => return Err(PeerError::Timeout(settings.timeout)),
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                return Err(match body_state.load(Ordering::Acquire) {
                    BODY_TOO_LARGE => PeerError::TooLarge(settings.body_limit_bytes),
                    BODY_CLIENT_FAILED => {
                        PeerError::BadRequest("reading the request body failed".into())
                    }
                    _ if error.is_connect() => PeerError::Unreachable(error.to_string()),
                    _ => PeerError::Lost(error.to_string()),
                });
            }
        };
        let (head, incoming) = response.into_parts();
        tracing::info!(
            status = head.status.as_u16(),
            replica = %peer.id,
            "pass-through response from another replica"
        );
        let mut response = Response::new(idle_limited(incoming, settings.timeout));
        *response.status_mut() = head.status;
        *response.headers_mut() = response_headers(&head.headers);
        Ok(response)
    }
}

/// The names a message's `Connection` header lists (lower case).
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect()
}

/// The client's headers as the peer gets them: end to end only, without the
/// client's credentials (the signed header carries who it is), `Host` (the
/// peer's address sets it), `Expect` (this replica already answered any
/// `100-continue`) and any forwarding header of the client's own.
fn request_headers(headers: &HeaderMap) -> HeaderMap {
    let listed = connection_listed(headers);
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let n = name.as_str();
        let dropped = is_hop_by_hop(n)
            || listed.iter().any(|l| l == n)
            || *name == AUTHORIZATION
            || *name == HOST
            || *name == EXPECT
            || n == "x-api-key"
            || n == FORWARDED_HEADER;
        if !dropped {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The peer's response headers as the client gets them: end to end only.
fn response_headers(headers: &HeaderMap) -> HeaderMap {
    let listed = connection_listed(headers);
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let n = name.as_str();
        if !is_hop_by_hop(n) && !listed.iter().any(|l| l == n) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The client's body, streamed as it comes, failing past `limit` bytes (and
/// saying why in `state`, which the caller reads when the request fails).
fn limited(body: Body, limit: usize, state: Arc<AtomicU8>) -> Body {
    let mut total: usize = 0;
    let stream = body.into_data_stream().map(move |piece| match piece {
        Ok(piece) => {
            total = total.saturating_add(piece.len());
            if total > limit {
                state.store(BODY_TOO_LARGE, Ordering::Release);
                return Err(std::io::Error::other("the body exceeds the limit"));
            }
            Ok(piece)
        }
        Err(error) => {
            state.store(BODY_CLIENT_FAILED, Ordering::Release);
            Err(std::io::Error::other(error.to_string()))
        }
    });
    Body::from_stream(stream)
}

/// The peer's response body, as the client's: at most `idle` between two
/// pieces, then cut off (as a local agent gone quiet cuts it off).
fn idle_limited<B>(body: B, idle: Duration) -> Body
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display,
{
    let stream = futures_util::stream::unfold(Some(body), move |body| async move {
        let mut body = body?;
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                tracing::warn!("another replica went silent mid-body; response cut off");
                Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the relay replica sent no body piece in time",
                    )),
                    None,
                ))
            }
            Ok(None) => None,
            Ok(Some(Err(error))) => {
                tracing::warn!(%error, "another replica's response body broke off");
                Some((Err(std::io::Error::other(error.to_string())), None))
            }
            Ok(Some(Ok(frame))) => {
                // Trailers are not carried (nor are they through an agent).
                let data = frame.into_data().unwrap_or_default();
                Some((Ok(data), Some(body)))
            }
        }
    });
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_host_and_hop_by_hop_headers_stay_behind() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer secret-key".parse().unwrap());
        headers.insert("x-api-key", "secret-key".parse().unwrap());
        headers.insert("connection", "keep-alive, x-private".parse().unwrap());
        headers.insert("x-private", "1".parse().unwrap());
        headers.insert("transfer-encoding", "chunked".parse().unwrap());
        headers.insert("host", "relay-a".parse().unwrap());
        headers.insert("expect", "100-continue".parse().unwrap());
        headers.insert(FORWARDED_HEADER, "forged".parse().unwrap());
        headers.insert("content-type", "application/json".parse().unwrap());
        headers.insert("content-length", "12".parse().unwrap());
        headers.insert("cookie", "a=b".parse().unwrap());
        let out = request_headers(&headers);
        let mut names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-length", "content-type", "cookie"]);

        let mut answer = HeaderMap::new();
        answer.insert("connection", "close".parse().unwrap());
        answer.insert("keep-alive", "timeout=5".parse().unwrap());
        answer.insert("content-length", "5".parse().unwrap());
        answer.append("set-cookie", "a=1".parse().unwrap());
        answer.append("set-cookie", "b=2".parse().unwrap());
        let out = response_headers(&answer);
        assert_eq!(out.len(), 3);
        assert_eq!(out.get_all("set-cookie").iter().count(), 2);
    }
}
