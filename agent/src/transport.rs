//! The WebSocket under a session: dialing the relay (`ws://` or `wss://` with the
//! agent's rustls configuration and `Authorization: Bearer <token>`), and adapting
//! the socket into a `Sink<AgentMessage>` / `Stream<Result<RelayMessage, _>>` pair.
//!
//! Frame rules: every message is one JSON text frame of at most
//! [`MAX_FRAME_BYTES`]; an `AgentMessage::Close` is followed by a WebSocket close
//! frame carrying [`CloseReason::code`]; pings and pongs from the relay count as
//! signs of life (they surface as `RelayMessage::Heartbeat`). HTTP pass-through body
//! chunks are binary frames ([`BodyChunk`]): outgoing ones are [`Outgoing::Chunk`],
//! incoming ones go straight to the session's [`StreamTable`] and never surface as
//! messages.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt, future, stream};
use sapbridge_proto::{
    AgentMessage, BodyChunk, ChunkError, CloseReason, DecodeError, HANDSHAKE_TIMEOUT_SECS,
    MAX_FRAME_BYTES, RelayMessage, Secret, decode_relay_message, encode_agent_message,
    is_chunk_frame,
};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header::AUTHORIZATION};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::passthrough::StreamTable;

/// Read buffer of the relay socket. tungstenite zero-fills all of it on the first
/// read, so it stays resident for as long as the connection is up (its default is
/// 128 KiB); larger frames still arrive, in reads of this size.
const READ_BUFFER_BYTES: usize = 16 * 1024;
/// Queued frames past this size are written out before the session flushes (its
/// loop flushes when idle, see `sapbridge_proto::Outbox`): bounds what a busy
/// session holds in its write buffer (tungstenite's default is 128 KiB).
const WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// An open connection to the relay.
pub(crate) type RelaySocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the session writes: a protocol message (a JSON text frame) or an encoded
/// pass-through body chunk (a binary frame).
// Messages are built once and written at once; boxing them would cost an
// allocation per message for no gain (as for `AgentMessage` itself).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outgoing {
    /// A protocol message.
    Message(AgentMessage),
    /// An encoded [`BodyChunk`].
    Chunk(Bytes),
}

impl From<AgentMessage> for Outgoing {
    fn from(message: AgentMessage) -> Self {
        Self::Message(message)
    }
}

/// A problem on an open connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    /// The WebSocket failed (I/O, TLS, protocol, size limit).
    #[error("websocket: {0}")]
    WebSocket(#[from] tungstenite::Error),
    /// A frame from the relay is not a valid message.
    #[error("bad frame from the relay: {0}")]
    Decode(#[from] DecodeError),
    /// A binary frame from the relay is not a valid body chunk.
    #[error("bad body chunk from the relay: {0}")]
    Chunk(#[from] ChunkError),
    /// The relay sent a WebSocket close frame.
    #[error("the relay closed the websocket (code {code}: {reason})")]
    Closed {
        /// The close code (1005 when none was given).
        code: u16,
        /// The close text.
        reason: String,
    },
    /// The other end of an in-process channel is gone (tests).
    #[cfg(test)]
    #[error("channel closed")]
    ChannelClosed,
}

impl TransportError {
    /// The reason to tell the relay before dropping the connection, when the relay
    /// broke the protocol.
    pub(crate) fn close_reason(&self) -> Option<CloseReason> {
        match self {
            Self::Decode(DecodeError::TooLarge { size }) => {
                Some(CloseReason::FrameTooLarge { size: *size })
            }
            Self::Decode(DecodeError::Malformed(e)) => Some(CloseReason::ProtocolError {
                detail: format!("malformed frame: {e}"),
            }),
            Self::Chunk(e) => Some(CloseReason::ProtocolError {
                detail: format!("bad body chunk: {e}"),
            }),
            Self::WebSocket(tungstenite::Error::Capacity(e)) => Some(CloseReason::ProtocolError {
                detail: e.to_string(),
            }),
            _ => None,
        }
    }
}

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DialError {
    /// The relay answered the upgrade with 401 or 403: the token is wrong, revoked,
    /// or not allowed to serve these systems.
    #[error("the relay rejected the agent token (HTTP {status})")]
    Rejected {
        /// The HTTP status.
        status: u16,
    },
    /// The relay answered the upgrade with another HTTP status.
    #[error("the relay answered the upgrade with HTTP {status}")]
    Http {
        /// The HTTP status.
        status: u16,
    },
    /// The relay answered the upgrade with 403 because the agent presented no
    /// client certificate (mutual TLS).
    #[error("the relay requires a client certificate (HTTP 403)")]
    CertificateRequired,
    /// The token cannot go into a header (control characters).
    #[error("the agent token holds characters not allowed in an HTTP header")]
    BadToken,
    /// TCP, TLS or WebSocket failure.
    #[error("{0}")]
    WebSocket(tungstenite::Error),
    /// No answer within the handshake timeout.
    #[error("no WebSocket handshake within {HANDSHAKE_TIMEOUT_SECS} s")]
    Timeout,
    /// The proxy could not be reached or did not speak HTTP.
    #[error("proxy {proxy}: {reason}")]
    ProxyUnreachable {
        /// `host:port` of the proxy.
        proxy: String,
        /// What went wrong.
        reason: String,
    },
    /// The proxy answered the `CONNECT` with another status than 2xx.
    #[error("the proxy refused the tunnel to the relay (HTTP {status})")]
    ProxyRefused {
        /// The HTTP status.
        status: u16,
        /// The authentication schemes of its `Proxy-Authenticate` headers
        /// (`Basic`, `NTLM`, `Negotiate`), as it spelled them.
        schemes: Vec<String>,
        /// Whether credentials were sent.
        credentials_sent: bool,
    },
}

/// An HTTP proxy to reach the relay through (`CONNECT`), with the Basic
/// credentials to present, read for this connection.
#[derive(Debug, Clone)]
pub(crate) struct Proxy {
    /// `host:port`.
    pub(crate) address: String,
    /// `Basic <base64 user:password>`, if the proxy wants credentials.
    pub(crate) authorization: Option<Secret>,
    /// Where the proxy was configured: `proxy_url` or an environment variable.
    pub(crate) source: &'static str,
}

impl Proxy {
    /// The proxy for the relay, its password read now: `proxy_url`, else the
    /// environment's (see `proxy_env`); `None` for a direct connection.
    ///
    /// # Errors
    /// The reason the proxy or its password cannot be used (naming its source,
    /// never its value).
    pub(crate) fn from_config(config: &crate::AgentConfig) -> Result<Option<Self>, String> {
        let url = match &config.proxy_url {
            Some(url) if crate::proxy_env::disables(url) => return Ok(None),
            Some(url) => url,
            None => {
                let found = crate::proxy_env::from_environment(&config.relay_url, |name| {
                    std::env::var(name).ok()
                })?;
                return Ok(found.map(|proxy| Self {
                    address: proxy.address,
                    authorization: proxy
                        .credentials
                        .map(|(user, password)| basic(&user, password.expose())),
                    source: proxy.variable,
                }));
            }
        };
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("proxy_url {url:?} is not a URL: {e}"))?;
        let host = uri.host().unwrap_or_default();
        let address = format!("{host}:{}", uri.port_u16().unwrap_or(80));
        let authorization = match &config.proxy_user {
            Some(user) => {
                let password = crate::systems::read_password(
                    config.proxy_password_file.as_deref(),
                    config.proxy_password_env.as_deref(),
                )
                .map_err(|e| format!("proxy password: {e}"))?;
                Some(basic(user, password.expose()))
            }
            None => None,
        };
        Ok(Some(Self {
            address,
            authorization,
            source: "proxy_url",
        }))
    }
}

/// The `Proxy-Authorization` value of Basic credentials.
fn basic(user: &str, password: &str) -> Secret {
    let credentials = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{user}:{password}"),
    );
    Secret::new(format!("Basic {credentials}"))
}

/// The most a proxy's answer to `CONNECT` may hold before its blank line.
const PROXY_HEAD_BYTES: usize = 8 * 1024;

/// Opens a TCP tunnel to `target` (`host:port`) through `proxy`.
async fn tunnel(proxy: &Proxy, target: &str) -> Result<TcpStream, DialError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let unreachable = |reason: String| DialError::ProxyUnreachable {
        proxy: proxy.address.clone(),
        reason,
    };
    let mut stream = TcpStream::connect(&proxy.address)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(authorization) = &proxy.authorization {
        request.push_str(&format!(
            "Proxy-Authorization: {}\r\n",
            authorization.expose()
        ));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    // Byte by byte up to the blank line, so nothing of the tunnel is read here.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= PROXY_HEAD_BYTES {
            return Err(unreachable("answer head too long".into()));
        }
        let byte = stream
            .read_u8()
            .await
            .map_err(|e| unreachable(format!("closed before answering CONNECT: {e}")))?;
        head.push(byte);
    }
    let head = String::from_utf8_lossy(&head);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| unreachable("not an HTTP answer to CONNECT".into()))?;
    if (200..300).contains(&status) {
        return Ok(stream);
    }
    let schemes = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("proxy-authenticate"))
        .filter_map(|(_, value)| value.split_whitespace().next())
        .map(|scheme| scheme.trim_end_matches(',').to_owned())
        .collect();
    Err(DialError::ProxyRefused {
        status,
        schemes,
        credentials_sent: proxy.authorization.is_some(),
    })
}

/// The agent endpoint's path, for the advice when a URL names another.
const AGENT_PATH: &str = "/v1/agent/connect";

impl DialError {
    /// What this failure most likely means, and what to do (`secure`: the URL is
    /// `wss://`), for the log and the doctor.
    pub(crate) fn advice(&self, secure: bool) -> String {
        match self {
            Self::Rejected { status } => format!(
                "the relay rejected the agent token (HTTP {status}): check `token` / `token_file`; \
             the relay's `agent_tokens` must hold it (or its SHA-256)"
            ),
            Self::CertificateRequired => "the relay wants a client certificate from agents \
                (HTTP 403): set client_cert_file and client_key_file to one issued by the \
                relay's client CA"
                .to_owned(),
            Self::Http { status: 404 } => {
                format!("the relay answered HTTP 404: `relay_url` must end with {AGENT_PATH}")
            }
            Self::Http { status } => format!(
                "the WebSocket upgrade was answered with HTTP {status}: is this the relay's \
             address and path ({AGENT_PATH}), and does a proxy in between pass WebSockets?"
            ),
            Self::BadToken => "the agent token holds characters an HTTP header cannot \
                                carry (a stray newline in the token file?)"
                .to_owned(),
            Self::Timeout => format!(
                "no WebSocket handshake within {HANDSHAKE_TIMEOUT_SECS} s: a firewall dropping \
             packets, or a proxy holding the request?"
            ),
            Self::WebSocket(error) => explain_socket(error, secure),
            Self::ProxyUnreachable { proxy, reason } => {
                format!("the proxy {proxy} cannot be used ({reason}): check proxy_url")
            }
            Self::ProxyRefused {
                status: 407,
                schemes,
                credentials_sent,
            } => proxy_authentication_advice(schemes, *credentials_sent),
            Self::ProxyRefused { status, .. } => format!(
                "the proxy refused the tunnel to the relay (HTTP {status}): it must allow \
                 CONNECT to the relay's host and port"
            ),
        }
    }
}

/// What a 407 from the proxy means, by the schemes it offers.
fn proxy_authentication_advice(schemes: &[String], credentials_sent: bool) -> String {
    let basic = schemes.iter().any(|s| s.eq_ignore_ascii_case("basic"));
    if !schemes.is_empty() && !basic {
        let named = schemes.join(" or ");
        return format!(
            "the proxy asks for {named} (HTTP 407), which sapbridge does not support; use \
             Basic or allow the relay's host without authentication"
        );
    }
    if credentials_sent {
        "the proxy refused its credentials (HTTP 407): check proxy_user and \
         proxy_password_file / proxy_password_env (or the user:password in HTTPS_PROXY)"
            .to_owned()
    } else {
        "the proxy wants credentials (HTTP 407): set proxy_user with proxy_password_file or \
         proxy_password_env (or user:password in HTTPS_PROXY)"
            .to_owned()
    }
}

fn explain_socket(error: &tungstenite::Error, secure: bool) -> String {
    let text = error.to_string();
    if let tungstenite::Error::Io(io) = error
        && io.kind() == std::io::ErrorKind::ConnectionRefused
    {
        return format!(
            "{text}: nothing listens at that address and port; is the relay up, the URL right?"
        );
    }
    if secure && (text.contains("InvalidContentType") || text.contains("corrupt message")) {
        return format!(
            "{text}: the relay speaks plain HTTP there: use ws:// (or put TLS in front)"
        );
    }
    if secure && text.contains("relay_spki_sha256") {
        return format!(
            "{text}: the relay presents another key than pinned. If its certificate was \
             renewed with a new key, add the new pin (`sapbridge keys pin CERT.pem`) to \
             relay_spki_sha256; otherwise something between intercepts the connection (a \
             TLS-inspecting proxy?)"
        );
    }
    if secure && text.contains("CertificateRequired") {
        return format!(
            "{text}: the relay requires a client certificate: set client_cert_file and \
             client_key_file to one its client CA issued"
        );
    }
    if secure && text.contains("certificate") {
        return format!(
            "{text}: the relay's certificate is not trusted for this name; set `ca_file` to \
             the CA that issued it, or fix the URL's host name"
        );
    }
    if !secure
        && (text.contains("Handshake not finished")
            || text.contains("HTTP format")
            || text.contains("invalid HTTP"))
    {
        return format!("{text}: the relay (or a proxy before it) speaks TLS there: use wss://");
    }
    text
}

/// Opens a WebSocket to the relay's agent endpoint, over TLS with `tls` (needed for
/// a `wss://` URL; `None` dials `ws://` in plain TCP).
///
/// Cancel-safe: dropping the future abandons the attempt.
///
/// # Errors
/// [`DialError::Rejected`] for 401/403 (bad token), [`DialError::Http`] for other
/// statuses, [`DialError::WebSocket`] for network and TLS failures,
/// [`DialError::Timeout`] when the handshake takes too long.
pub(crate) async fn dial(
    url: &str,
    token: &Secret,
    tls: Option<Arc<rustls::ClientConfig>>,
    proxy: Option<&Proxy>,
) -> Result<RelaySocket, DialError> {
    let mut request = url.into_client_request().map_err(DialError::WebSocket)?;
    let mut bearer = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .map_err(|_| DialError::BadToken)?;
    bearer.set_sensitive(true);
    request.headers_mut().insert(AUTHORIZATION, bearer);
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    let connector = Some(tls.map_or(Connector::Plain, Connector::Rustls));
    // Boxed: the handshake future is tens of KiB, and every worker thread that ever
    // polled it inline would keep that much stack resident.
    let connect = Box::pin(async move {
        let Some(proxy) = proxy else {
            return tokio_tungstenite::connect_async_tls_with_config(
                request,
                Some(config),
                true,
                connector,
            )
            .await
            .map_err(DialError::WebSocket);
        };
        let uri = request.uri();
        let secure = uri.scheme_str() == Some("wss");
        let target = format!(
            "{}:{}",
            uri.host().unwrap_or_default(),
            uri.port_u16().unwrap_or(if secure { 443 } else { 80 })
        );
        let stream = tunnel(proxy, &target).await?;
        stream
            .set_nodelay(true)
            .map_err(|e| DialError::WebSocket(e.into()))?;
        tokio_tungstenite::client_async_tls_with_config(request, stream, Some(config), connector)
            .await
            .map_err(DialError::WebSocket)
    });
    match tokio::time::timeout(Duration::from_secs(HANDSHAKE_TIMEOUT_SECS), connect).await {
        Err(_) => Err(DialError::Timeout),
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(DialError::WebSocket(tungstenite::Error::Http(response)))) => {
            let status = response.status();
            let certificate_required = response.body().as_deref().is_some_and(|b| {
                String::from_utf8_lossy(b).contains("client-certificate-required")
            });
            if status == StatusCode::FORBIDDEN && certificate_required {
                Err(DialError::CertificateRequired)
            } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                Err(DialError::Rejected {
                    status: status.as_u16(),
                })
            } else {
                Err(DialError::Http {
                    status: status.as_u16(),
                })
            }
        }
        Ok(Err(e)) => Err(e),
    }
}

/// Splits a socket into the sink and message stream a session runs on; incoming
/// body chunks are routed into `streams` on the way.
pub(crate) fn into_messages(
    socket: RelaySocket,
    streams: Arc<StreamTable>,
) -> (
    impl Sink<Outgoing, Error = TransportError> + Unpin,
    impl Stream<Item = Result<RelayMessage, TransportError>> + Unpin,
) {
    let (sink, frames) = socket.split();
    let sink = ErrInto(sink)
        .with_flat_map(|outgoing: Outgoing| stream::iter(frames_for(outgoing).into_iter().map(Ok)));
    let messages = frames.filter_map(move |frame| future::ready(incoming(frame, &streams)));
    (sink, messages)
}

/// What one frame read from the relay is for the session: a message, an error, or
/// nothing (a body chunk, routed into `streams` on the way).
pub(crate) fn incoming(
    frame: Result<Message, tungstenite::Error>,
    streams: &StreamTable,
) -> Option<Result<RelayMessage, TransportError>> {
    match frame {
        Ok(Message::Binary(bytes)) if is_chunk_frame(&bytes) => match BodyChunk::decode(bytes) {
            Ok(chunk) => {
                streams.route_chunk(chunk);
                None
            }
            Err(e) => Some(Err(TransportError::Chunk(e))),
        },
        other => Some(message_from(other)),
    }
}

/// A sink adapter that converts every error of the socket into a
/// [`TransportError`]. (`SinkExt::sink_map_err` maps only the first error and
/// panics when the sink fails a second time, as a dead socket does when the session
/// still tries to say goodbye.)
struct ErrInto<S>(S);

impl<S> Sink<Message> for ErrInto<S>
where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    type Error = TransportError;

    fn poll_ready(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::pin::Pin::new(&mut self.0)
            .poll_ready(cx)
            .map_err(Into::into)
    }

    fn start_send(mut self: std::pin::Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        std::pin::Pin::new(&mut self.0)
            .start_send(item)
            .map_err(Into::into)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::pin::Pin::new(&mut self.0)
            .poll_flush(cx)
            .map_err(Into::into)
    }

    fn poll_close(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::pin::Pin::new(&mut self.0)
            .poll_close(cx)
            .map_err(Into::into)
    }
}

/// The WebSocket frames that carry one outgoing item.
fn frames_for(outgoing: Outgoing) -> Vec<Message> {
    let message = match outgoing {
        Outgoing::Chunk(frame) => return vec![Message::Binary(frame)],
        Outgoing::Message(message) => message,
    };
    let text = Message::text(encode_agent_message(&message));
    match message {
        AgentMessage::Close { reason } => {
            let frame = CloseFrame {
                code: CloseCode::from(reason.code()),
                reason: short(&reason.to_string()).into(),
            };
            vec![text, Message::Close(Some(frame))]
        }
        _ => vec![text],
    }
}

fn message_from(
    frame: Result<Message, tungstenite::Error>,
) -> Result<RelayMessage, TransportError> {
    match frame? {
        Message::Text(text) => Ok(decode_relay_message(text.as_bytes())?),
        Message::Binary(bytes) => Ok(decode_relay_message(&bytes)?),
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(RelayMessage::Heartbeat),
        Message::Close(frame) => Err(match frame {
            Some(frame) => TransportError::Closed {
                code: frame.code.into(),
                reason: frame.reason.to_string(),
            },
            None => TransportError::Closed {
                code: 1005,
                reason: String::new(),
            },
        }),
    }
}

/// A close frame's text is limited to 123 bytes; cut at a character boundary.
fn short(text: &str) -> String {
    let mut end = text.len().min(120);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket sink that has died: every operation fails.
    struct DeadSocket;

    impl Sink<Message> for DeadSocket {
        type Error = tungstenite::Error;
        fn poll_ready(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Err(tungstenite::Error::ConnectionClosed))
        }
        fn start_send(self: std::pin::Pin<&mut Self>, _: Message) -> Result<(), Self::Error> {
            Err(tungstenite::Error::ConnectionClosed)
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Err(tungstenite::Error::ConnectionClosed))
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Err(tungstenite::Error::ConnectionClosed))
        }
    }

    #[tokio::test]
    async fn a_dead_socket_fails_every_send_without_panicking() {
        use futures_util::SinkExt;
        let mut sink = ErrInto(DeadSocket);
        for _ in 0..3 {
            assert!(sink.send(Message::text("x")).await.is_err());
        }
        assert!(sink.close().await.is_err());
    }

    #[test]
    fn close_is_followed_by_a_close_frame_with_the_reason_code() {
        let frames = frames_for(Outgoing::Message(AgentMessage::Close {
            reason: CloseReason::ShuttingDown,
        }));
        assert_eq!(frames.len(), 2);
        let Message::Close(Some(frame)) = &frames[1] else {
            panic!("{frames:?}")
        };
        assert_eq!(u16::from(frame.code), 1001);
        assert_eq!(frames_for(AgentMessage::Heartbeat.into()).len(), 1);
        let chunk = Bytes::from_static(&[0xB7, 1, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(
            frames_for(Outgoing::Chunk(chunk.clone())),
            [Message::Binary(chunk)]
        );
    }

    #[test]
    fn pings_count_as_heartbeats_and_bad_frames_have_close_reasons() {
        assert_eq!(
            message_from(Ok(Message::Ping(Vec::new().into()))).unwrap(),
            RelayMessage::Heartbeat
        );
        let err = message_from(Ok(Message::text("{nope"))).unwrap_err();
        assert!(matches!(
            err.close_reason(),
            Some(CloseReason::ProtocolError { .. })
        ));
    }

    #[test]
    fn short_cuts_at_a_char_boundary() {
        let long = "é".repeat(100);
        let cut = short(&long);
        assert!(cut.len() <= 120 && long.starts_with(&cut));
    }
}
