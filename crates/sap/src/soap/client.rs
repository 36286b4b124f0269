//! The SOAP-RFC backend: [`SoapSystem`] calls function modules on an SAP system
//! through its `/sap/bc/soap/rfc` ICF service (basic auth, `sap-client`), with a
//! pooled keep-alive HTTP client (rustls). Results are the same JSON the system
//! gives when called directly: the function's interface, read once per function
//! through SOAP itself (`RFC_GET_FUNCTION_INTERFACE`, `DDIF_FIELDINFO_GET`) and
//! cached per `SoapSystem`, types the values and tells which TABLES to ask for
//! (every TABLES parameter is sent, as an empty element when the caller gave none,
//! so that all of them come back).
//!
//! Sessions: see the module documentation of [`crate::soap`] — every
//! [`SoapConnection`] asks for a stateful session with SAP's session header and
//! keeps the `sap-contextid` cookie; when the server does not grant one, the
//! connection refuses `BAPI_TRANSACTION_COMMIT` after earlier calls instead of
//! pretending to commit them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, HeaderValue, SET_COOKIE};
use sapbridge_proto::Secret;

use crate::logon_guard::{LogonGuard, LogonState, PasswordSource};

use super::convert;
use super::envelope::{self, Reply};
use super::fault::error_from_fault;
use super::metadata::{Direction, FunctionMeta, MetadataCache};
use super::{CONTEXT_COOKIE, RFC_NS, SOAP_RFC_PATH};
use crate::{ErrorGroup, Parameters, RfcError, SapConnection, SapSystem};

/// The largest answer accepted from the SOAP endpoint.
const MAX_REPLY_BYTES: usize = 64 * 1024 * 1024;

/// Where and how to reach an SAP system's SOAP-RFC service.
#[derive(Debug, Clone)]
pub struct SoapConfig {
    /// `https://sap.example.com:44300/` (the ICF path is appended) or the full
    /// `…/sap/bc/soap/rfc` URL.
    pub base_url: String,
    /// The SAP client, sent as `sap-client`; empty for the system's default.
    pub client: String,
    /// The SAP user.
    pub user: String,
    /// Where its password comes from (read before every logon, never logged;
    /// after SAP refused it, no logon is made with it until it changes: see
    /// [`crate::logon_guard`]).
    pub password: PasswordSource,
    /// Timeout of one HTTP request (one function call).
    pub timeout: Duration,
    /// A PEM file of extra CA certificates to trust, for company CAs.
    pub ca_file: Option<PathBuf>,
    /// An HTTP proxy to reach SAP through (`http://proxy:3128`); `None`: directly,
    /// whatever proxy variables the environment holds (SAP is on the local
    /// network, where the corporate proxy for the internet rarely reaches).
    pub proxy_url: Option<String>,
}

/// Why a [`SoapSystem`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SoapConfigError {
    /// The base URL is not an absolute http(s) URL.
    #[error("invalid SAP URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The CA file could not be read.
    #[error("cannot read CA file {path:?}: {source}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The proxy URL is not usable.
    #[error("invalid proxy_url {url:?}: {reason}")]
    InvalidProxy {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The CA file holds no usable certificate, or the HTTP client failed to build.
    #[error("TLS setup: {0}")]
    Tls(String),
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    url: reqwest::Url,
    user: String,
    guard: LogonGuard,
    metadata: MetadataCache,
}

/// An SAP system reached through SOAP-RFC. Cheap to clone; clones share the HTTP
/// connection pool and the metadata cache.
#[derive(Debug, Clone)]
pub struct SoapSystem {
    inner: Arc<Inner>,
}

impl SoapSystem {
    /// Builds the backend. Nothing is sent until the first call.
    ///
    /// # Errors
    /// [`SoapConfigError`] for a bad URL, an unreadable or empty CA file, or an
    /// HTTP client that cannot be built.
    pub fn new(config: SoapConfig) -> Result<Self, SoapConfigError> {
        let invalid = |reason: &str| SoapConfigError::InvalidUrl {
            url: config.base_url.clone(),
            reason: reason.to_owned(),
        };
        let mut url = reqwest::Url::parse(&config.base_url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid("must be an http:// or https:// URL with a host"));
        }
        if !url.path().trim_end_matches('/').ends_with(SOAP_RFC_PATH) {
            let path = format!("{}{}", url.path().trim_end_matches('/'), SOAP_RFC_PATH);
            url.set_path(&path);
        }
        url.set_query(None);
        if !config.client.is_empty() {
            url.query_pairs_mut()
                .append_pair("sap-client", &config.client);
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(30)))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none());
        builder = match &config.proxy_url {
            Some(proxy) => builder.proxy(reqwest::Proxy::all(proxy).map_err(|e| {
                SoapConfigError::InvalidProxy {
                    url: proxy.clone(),
                    reason: e.to_string(),
                }
            })?),
            None => builder.no_proxy(),
        };
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|source| SoapConfigError::CaFile {
                path: path.clone(),
                source,
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| SoapConfigError::Tls(e.to_string()))?;
            if certificates.is_empty() {
                return Err(SoapConfigError::Tls(format!(
                    "no certificate in {}",
                    path.display()
                )));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|e| SoapConfigError::Tls(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                url,
                user: config.user,
                guard: LogonGuard::new(config.password),
                metadata: MetadataCache::default(),
            }),
        })
    }

    /// Whether logons go through or SAP refused the password.
    pub fn logon_state(&self) -> LogonState {
        self.inner.guard.state()
    }

    /// Lifts a logon block (the password was fixed in SAP, not in the source).
    pub fn reset_logon_block(&self) {
        self.inner.guard.reset();
    }
}

/// The basic-auth header for `user` and `password`, marked sensitive.
#[allow(clippy::result_large_err)]
fn authorization(user: &str, password: &Secret) -> Result<HeaderValue, RfcError> {
    let credentials = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{user}:{}", password.expose()),
    );
    let mut value = HeaderValue::from_str(&format!("Basic {credentials}")).map_err(|_| {
        RfcError::new(
            ErrorGroup::LogonFailure,
            "PASSWORD_UNUSABLE",
            "the SAP user or password holds characters HTTP cannot carry",
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

#[async_trait]
impl SapSystem for SoapSystem {
    fn logon_state(&self) -> Option<LogonState> {
        Some(self.inner.guard.state())
    }

    fn lift_logon_block(&self) {
        self.inner.guard.reset();
    }

    fn forget_metadata(&self) {
        self.inner.metadata.clear();
    }

    async fn connect(&self) -> Result<Box<dyn SapConnection>, RfcError> {
        Ok(Box::new(SoapConnection {
            inner: self.inner.clone(),
            context: None,
            stateless: false,
            calls: 0,
        }))
    }
}

/// One logical SAP session over SOAP-RFC (see the module docs for how sessions
/// and commits behave).
#[derive(Debug)]
pub struct SoapConnection {
    inner: Arc<Inner>,
    /// The `sap-contextid` of our stateful session, once granted: whoever holds it
    /// works in that session, so `Debug` masks it.
    context: Option<Secret>,
    /// The server answered our first call without a session: every request is
    /// its own SAP session.
    stateless: bool,
    /// Calls attempted on this connection.
    calls: usize,
}

#[async_trait]
impl SapConnection for SoapConnection {
    async fn call(
        &mut self,
        function: &str,
        parameters: &Parameters,
    ) -> Result<Parameters, RfcError> {
        if function == "BAPI_TRANSACTION_COMMIT" && self.stateless && self.calls > 0 {
            return Err(RfcError::new(
                ErrorGroup::ExternalRuntimeFailure,
                "STATELESS_SESSION",
                "the SOAP-RFC service runs every request in its own SAP session (no stateful session was \
                 granted), so this commit cannot commit the earlier calls; nothing was committed",
            ));
        }
        let meta = self.inner.function_meta(function).await?;
        let mut body = String::new();
        for param in &meta.params {
            match parameters.get(&param.name) {
                Some(value) => convert::push_value(&mut body, &param.name, value, &param.shape),
                None if param.direction == Direction::Tables => convert::push_value(
                    &mut body,
                    &param.name,
                    &serde_json::Value::Array(Vec::new()),
                    &param.shape,
                ),
                None => Ok(()),
            }
            .map_err(conversion_error)?;
        }
        for (name, value) in parameters {
            if meta.param(name).is_none() {
                convert::push_value(&mut body, name, value, meta.shape_of(name))
                    .map_err(conversion_error)?;
            }
        }
        let session = if self.stateless { None } else { Some(true) };
        self.calls += 1;
        let first = self.calls == 1;
        let exchange = self
            .inner
            .post(
                function,
                &body,
                session,
                self.context.as_ref().map(Secret::expose),
            )
            .await?;
        if let Some(id) = exchange.context {
            self.context = Some(Secret::new(id));
        } else if first && self.context.is_none() {
            self.stateless = true;
        }
        match exchange.reply {
            Reply::Response(response) => {
                convert::params_from_xml(&response, &meta).map_err(conversion_error)
            }
            Reply::Fault(fault) => {
                let error = error_from_fault(&fault);
                if error.key == "SESSION_EXPIRED" {
                    self.context = None;
                }
                Err(error)
            }
        }
    }
}

impl Drop for SoapConnection {
    fn drop(&mut self) {
        let Some(id) = self.context.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = self.inner.clone();
        // End the server-side session now rather than at its idle timeout; any
        // uncommitted work in it is discarded, as when an RFC connection closes.
        runtime.spawn(async move {
            let _ = inner
                .post("RFC_PING", "", Some(false), Some(id.expose()))
                .await;
        });
    }
}

struct Exchange {
    reply: Reply,
    context: Option<String>,
}

impl Inner {
    /// The function's interface; generic when the system offers none. Logon and
    /// communication failures are returned at once.
    async fn function_meta(&self, function: &str) -> Result<Arc<FunctionMeta>, RfcError> {
        let mut lookup = MetadataConnection { inner: self };
        match self.metadata.function(&mut lookup, function).await {
            Ok(meta) => Ok(meta),
            Err(error)
                if matches!(
                    error.group,
                    ErrorGroup::LogonFailure | ErrorGroup::CommunicationFailure
                ) =>
            {
                Err(error)
            }
            Err(error) => {
                tracing::debug!(function, key = %error.key, "no interface metadata; converting generically");
                Ok(Arc::new(FunctionMeta::default()))
            }
        }
    }

    /// One HTTP round trip.
    async fn post(
        &self,
        function: &str,
        params_xml: &str,
        session: Option<bool>,
        context: Option<&str>,
    ) -> Result<Exchange, RfcError> {
        let envelope = envelope::request_envelope(function, params_xml, session);
        // Every SOAP request is a logon: through the guard, so that a refused
        // password is not tried again.
        let attempt = self.guard.attempt().await?;
        let header = match authorization(&self.user, &attempt.password) {
            Ok(header) => header,
            Err(error) => {
                self.guard.failed(attempt, &error);
                return Err(error);
            }
        };
        let mut request = self
            .http
            .post(self.url.clone())
            .header(AUTHORIZATION, header)
            .header(CONTENT_TYPE, "text/xml; charset=utf-8")
            .header("SOAPAction", RFC_NS)
            .body(envelope);
        if let Some(id) = context {
            request = request.header(COOKIE, format!("{CONTEXT_COOKIE}={id}"));
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                drop(attempt);
                return Err(communication_error(error));
            }
        };
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            let error = RfcError::new(
                ErrorGroup::LogonFailure,
                "RFC_LOGON_FAILURE",
                format!("SAP refused the logon (HTTP {})", status.as_u16()),
            );
            self.guard.failed(attempt, &error);
            return Err(error);
        }
        self.guard.succeeded(attempt);
        let granted = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next()?.trim().split_once('='))
            .find(|(name, _)| *name == CONTEXT_COOKIE)
            .map(|(_, value)| value.to_owned());
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(communication_error)? {
            if body.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(RfcError::new(
                    ErrorGroup::CommunicationFailure,
                    "REPLY_TOO_LARGE",
                    "the SOAP answer exceeds 64 MiB",
                ));
            }
            body.extend_from_slice(&chunk);
        }
        match envelope::parse_reply(&body) {
            Ok(reply @ Reply::Fault(_)) => Ok(Exchange {
                reply,
                context: granted,
            }),
            Ok(reply) if status.is_success() => Ok(Exchange {
                reply,
                context: granted,
            }),
            Ok(_) | Err(_) => Err(RfcError::new(
                ErrorGroup::CommunicationFailure,
                "HTTP_ERROR",
                format!(
                    "unexpected answer from the SOAP-RFC service: HTTP {}",
                    status.as_u16()
                ),
            )),
        }
    }
}

/// Stateless, untyped calls used to read metadata through SOAP.
struct MetadataConnection<'a> {
    inner: &'a Inner,
}

#[async_trait]
impl SapConnection for MetadataConnection<'_> {
    async fn call(
        &mut self,
        function: &str,
        parameters: &Parameters,
    ) -> Result<Parameters, RfcError> {
        let generic = FunctionMeta::default();
        let mut body = String::new();
        for (name, value) in parameters {
            convert::push_value(&mut body, name, value, generic.shape_of(name))
                .map_err(conversion_error)?;
        }
        match self.inner.post(function, &body, None, None).await?.reply {
            Reply::Response(response) => {
                convert::params_from_xml(&response, &generic).map_err(conversion_error)
            }
            Reply::Fault(fault) => Err(error_from_fault(&fault)),
        }
    }
}

fn conversion_error(error: convert::ConvertError) -> RfcError {
    RfcError::new(
        ErrorGroup::ExternalRuntimeFailure,
        "RFC_CONVERSION_FAILURE",
        error.0,
    )
}

fn communication_error(error: reqwest::Error) -> RfcError {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "HTTP failure"
    };
    // reqwest errors carry the URL (never the credentials, which travel in a header).
    RfcError::new(
        ErrorGroup::CommunicationFailure,
        "RFC_COMMUNICATION_FAILURE",
        format!("SOAP-RFC service {what}: {error}"),
    )
}
