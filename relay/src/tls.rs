//! TLS served by the relay itself (`[tls]`): the certificate and key, optional
//! client certificates for agents (mutual TLS), ALPN `h2` and `http/1.1`, and
//! reloading the files without dropping a connection.
//!
//! [`TlsServer`] holds the current rustls configuration; every new connection
//! takes the one current at its accept, so a reload (on SIGHUP, or when a file's
//! modification time changes, polled every `reload_poll_secs`) affects new
//! handshakes only and established connections carry on with what they
//! negotiated. A reload that fails (a half-written file, a key that does not fit
//! the certificate) is logged and the previous configuration stays.
//!
//! Client certificates: with `client_ca_file`, a client that presents a
//! certificate must present one issued by that CA, and `GET /v1/agent/connect`
//! is refused (403) without one (`client_auth = "optional"`, the default: API
//! clients need none). `client_auth = "required"` refuses every handshake
//! without one, API clients' too.
//!
//! Expiry: the served certificate's end of validity is published on `/metrics`
//! (`sapbridge_tls_certificate_expiry_timestamp_seconds`, following reloads), and
//! loading one that ends within [`EXPIRY_WARNING_DAYS`] days is logged as a
//! warning (an error once it has ended): the relay keeps serving it, since a
//! renewal is one reload away, but nobody should learn of it from the agents.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ServerConfig, crypto::CryptoProvider};
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::metrics::CertificateLabels;

/// A certificate loaded with fewer days than this left is logged as a warning.
pub(crate) const EXPIRY_WARNING_DAYS: i64 = 14;

/// The longest `reload_poll_secs` accepted: one day.
const MAX_RELOAD_POLL_SECS: u64 = 86_400;

/// The `[tls]` table: the relay terminates TLS itself (`https://`, `wss://`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the relay's certificate, followed by its intermediates.
    pub cert_file: PathBuf,
    /// PEM file of the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM file of the CA certificates that issue agents' client certificates;
    /// with it, agents must present one (mutual TLS). None by default.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Who must present a client certificate when `client_ca_file` is set:
    /// `"optional"` (default: agents must, API clients need not) or `"required"`
    /// (every handshake without one is refused).
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// How often the files' modification times are checked for a reload, in
    /// seconds (default 10; 0: only on SIGHUP).
    #[serde(default = "default_reload_poll_secs")]
    pub reload_poll_secs: u64,
}

/// Who must present a client certificate (see [`TlsConfig::client_auth`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// Agents must; API clients may.
    #[default]
    Optional,
    /// Every client must: handshakes without a valid certificate fail.
    Required,
}

fn default_reload_poll_secs() -> u64 {
    10
}

impl TlsConfig {
    /// A configuration serving `cert_file` and `key_file`, without client
    /// certificates.
    pub fn new(cert_file: PathBuf, key_file: PathBuf) -> Self {
        Self {
            cert_file,
            key_file,
            client_ca_file: None,
            client_auth: ClientAuth::default(),
            reload_poll_secs: default_reload_poll_secs(),
        }
    }

    /// Checks what can be checked without reading the files.
    pub(crate) fn validate(&self) -> Result<(), crate::ConfigError> {
        let out = |field, problem: &str| {
            Err(crate::ConfigError::OutOfRange {
                field,
                problem: problem.to_owned(),
            })
        };
        if self.cert_file.as_os_str().is_empty() {
            return out("tls.cert_file", "must name the certificate's PEM file");
        }
        if self.key_file.as_os_str().is_empty() {
            return out("tls.key_file", "must name the private key's PEM file");
        }
        if self.reload_poll_secs > MAX_RELOAD_POLL_SECS {
            return out(
                "tls.reload_poll_secs",
                &format!("must be at most {MAX_RELOAD_POLL_SECS} (0: only on SIGHUP)"),
            );
        }
        if self.client_auth == ClientAuth::Required && self.client_ca_file.is_none() {
            return out(
                "tls.client_auth",
                "\"required\" needs client_ca_file: the CA that issues the certificates",
            );
        }
        Ok(())
    }

    fn files(&self) -> Vec<&Path> {
        let mut files = vec![self.cert_file.as_path(), self.key_file.as_path()];
        files.extend(self.client_ca_file.as_deref());
        files
    }
}

/// Why the TLS configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A file holds no usable PEM of the expected kind.
    #[error("{path}: {problem}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// rustls refused the certificate, key or client CA.
    #[error("{0}")]
    Rustls(String),
}

/// The relay's TLS configuration as served now; swapped whole on reload.
#[derive(Debug)]
pub(crate) struct TlsServer {
    current: RwLock<Served>,
    /// Where the served certificate's expiry is published, once the relay's
    /// metrics exist ([`TlsServer::publish_expiry`]).
    expiry: OnceLock<Family<CertificateLabels, Gauge>>,
}

#[derive(Debug)]
struct Served {
    config: TlsConfig,
    rustls: Arc<ServerConfig>,
    /// The files' modification times when they were read.
    stamps: Vec<Option<SystemTime>>,
    /// When the served (first) certificate stops being valid, Unix seconds;
    /// `None` when its validity could not be read.
    not_after: Option<i64>,
}

impl TlsServer {
    /// Reads the files of `config`.
    ///
    /// # Errors
    /// The first file that cannot be read or used, named.
    pub(crate) fn load(config: &TlsConfig) -> Result<Self, TlsError> {
        Ok(Self {
            current: RwLock::new(Served::read(config)?),
            expiry: OnceLock::new(),
        })
    }

    /// Publishes the served certificate's expiry in `gauge` (`/metrics`), now and
    /// after every reload.
    pub(crate) fn publish_expiry(&self, gauge: Family<CertificateLabels, Gauge>) {
        let gauge = self.expiry.get_or_init(|| gauge);
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        current.publish(gauge);
    }

    /// The acceptor for a connection accepted now, and whether agents must
    /// present a (verified) client certificate on it — read together, so a reload
    /// in between cannot mix two configurations.
    pub(crate) fn acceptor(&self) -> (TlsAcceptor, bool) {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        (
            TlsAcceptor::from(Arc::clone(&current.rustls)),
            current.config.client_ca_file.is_some(),
        )
    }

    /// Reads `config`'s files again and serves them to new handshakes; on failure
    /// the previous configuration stays.
    ///
    /// # Errors
    /// Why the new files cannot be served.
    pub(crate) fn reload(&self, config: &TlsConfig) -> Result<(), TlsError> {
        let served = Served::read(config)?;
        if let Some(gauge) = self.expiry.get() {
            served.publish(gauge);
        }
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = served;
        Ok(())
    }

    /// Whether a file changed since it was read.
    /// The configuration and its files' stamps now, when a file changed since it
    /// was read.
    fn changed(&self) -> Option<(TlsConfig, Vec<Option<SystemTime>>)> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        let now = stamps(&current.config);
        (now != current.stamps).then(|| (current.config.clone(), now))
    }

    fn poll_interval(&self) -> Option<Duration> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        (current.config.reload_poll_secs > 0)
            .then(|| Duration::from_secs(current.config.reload_poll_secs))
    }

    /// Reloads `config` (from SIGHUP), logging the outcome.
    /// Whether it was reloaded.
    pub(crate) fn reload_logged(&self, config: &TlsConfig, why: &'static str) -> bool {
        match self.reload(config) {
            Ok(()) => {
                tracing::info!(why, cert_file = %config.cert_file.display(), "TLS certificate reloaded");
                true
            }
            Err(error) => {
                tracing::error!(
                    why, %error,
                    "TLS certificate not reloaded; new connections keep the previous one"
                );
                false
            }
        }
    }
}

/// Reloads `server` whenever one of its files changes, until `stop`.
pub(crate) async fn watch(server: Arc<TlsServer>, stop: CancellationToken) {
    let Some(every) = server.poll_interval() else {
        return;
    };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The stamps of files that did not load: tried again only once they change.
    let mut refused = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let Some((config, now)) = server.changed() else {
            continue;
        };
        if refused.as_ref() == Some(&now) {
            continue;
        }
        // Read off the runtime: the files are small, but a slow disk is not ours.
        let reloaded = Arc::clone(&server);
        let loaded =
            tokio::task::spawn_blocking(move || reloaded.reload_logged(&config, "file changed"))
                .await
                .unwrap_or(false);
        refused = (!loaded).then_some(now);
    }
}

impl Served {
    fn read(config: &TlsConfig) -> Result<Self, TlsError> {
        // Stamped before reading: a file written meanwhile is read again next poll.
        let stamps = stamps(config);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = certificates(&config.cert_file)?;
        // `certificates` refuses a file without one.
        let leaf = chain[0].clone();
        let key = private_key(&config.key_file)?;
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let builder = match &config.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(path) => builder.with_client_cert_verifier(client_verifier(
                path,
                config.client_auth,
                provider,
            )?),
        };
        let mut rustls = builder.with_single_cert(chain, key).map_err(|e| {
            TlsError::Rustls(format!(
                "{} and {}: {e}",
                config.cert_file.display(),
                config.key_file.display()
            ))
        })?;
        rustls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let not_after = not_after(&leaf);
        warn_if_expiring(&config.cert_file, not_after, now_unix());
        Ok(Self {
            config: config.clone(),
            rustls: Arc::new(rustls),
            stamps,
            not_after,
        })
    }

    /// Sets `gauge` to this certificate's expiry, alone (a reload may name
    /// another file).
    fn publish(&self, gauge: &Family<CertificateLabels, Gauge>) {
        gauge.clear();
        if let Some(not_after) = self.not_after {
            gauge
                .get_or_create(&CertificateLabels {
                    file: self.config.cert_file.display().to_string(),
                })
                .set(not_after);
        }
    }
}

/// When `certificate` stops being valid, in Unix seconds.
fn not_after(certificate: &CertificateDer<'_>) -> Option<i64> {
    x509_parser::parse_x509_certificate(certificate.as_ref())
        .ok()
        .map(|(_, parsed)| parsed.validity().not_after.timestamp())
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Logs a certificate that has ended or ends within [`EXPIRY_WARNING_DAYS`]; the
/// level it logged at, for tests.
fn warn_if_expiring(file: &Path, not_after: Option<i64>, now: i64) -> Option<tracing::Level> {
    let file = file.display();
    let Some(not_after) = not_after else {
        tracing::warn!(%file, "cannot read the TLS certificate's validity; its expiry is not on /metrics");
        return Some(tracing::Level::WARN);
    };
    let days_left = (not_after - now).div_euclid(86_400);
    if not_after <= now {
        tracing::error!(%file, days_ago = -days_left, "the TLS certificate has EXPIRED: clients and agents refuse it; renew it and reload (SIGHUP)");
        Some(tracing::Level::ERROR)
    } else if days_left < EXPIRY_WARNING_DAYS {
        tracing::warn!(%file, days_left, "the TLS certificate expires soon; renew it and reload (SIGHUP)");
        Some(tracing::Level::WARN)
    } else {
        None
    }
}

fn client_verifier(
    path: &Path,
    auth: ClientAuth,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = match auth {
        ClientAuth::Optional => builder.allow_unauthenticated(),
        ClientAuth::Required => builder,
    };
    builder
        .build()
        .map_err(|e| TlsError::Rustls(format!("{}: {e}", path.display())))
}

fn stamps(config: &TlsConfig) -> Vec<Option<SystemTime>> {
    config
        .files()
        .into_iter()
        .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            problem: format!("not PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            problem: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            problem: format!("not PEM: {e}"),
        })?
        .ok_or_else(|| TlsError::Pem {
            path: path.to_path_buf(),
            problem: "no PRIVATE KEY block found".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_client_auth_needs_a_ca_and_files_are_named_in_errors() {
        let mut config = TlsConfig::new("cert.pem".into(), "key.pem".into());
        assert!(config.validate().is_ok());
        config.client_auth = ClientAuth::Required;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("client_ca_file"), "{error}");

        let mut relay: crate::RelayConfig = serde_json::from_value(serde_json::json!({
            "api_keys": [{"name": "k", "key": "key-0123456789", "systems": ["*"]}],
            "agent_tokens": [{"name": "t", "token": "token-0123456789", "systems": ["S"]}],
            "tls": {"cert_file": "c.pem", "key_file": "k.pem"},
            "queue": {"store": "postgres", "url": "postgres://relay@db/sapbridge"},
            "cluster": {
                "advertise_url": "http://10.0.0.5:8080",
                "secret": "0123456789abcdef0123456789abcdef",
            },
        }))
        .unwrap();
        let error = relay.validate().unwrap_err().to_string();
        assert!(error.contains("cluster.advertise_url"), "{error}");
        relay.tls = None;
        assert!(relay.validate().is_ok());

        let missing = TlsConfig::new(
            "/nonexistent/cert.pem".into(),
            "/nonexistent/key.pem".into(),
        );
        let error = TlsServer::load(&missing).unwrap_err().to_string();
        assert!(error.contains("/nonexistent/cert.pem"), "{error}");
    }

    /// A self-signed certificate for `localhost` valid until 2 January of `year`,
    /// written to `dir` as `name`.pem and its key.
    fn certificate_until(dir: &Path, name: &str, year: i32) -> TlsConfig {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(year, 1, 2);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (cert_file, key_file) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        TlsConfig::new(cert_file, key_file)
    }

    #[test]
    fn the_served_certificates_expiry_is_published_and_follows_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let first = certificate_until(dir.path(), "first", 2031);
        let second = certificate_until(dir.path(), "second", 2032);
        let unix = |year| {
            time::Date::from_calendar_date(year, time::Month::January, 2)
                .unwrap()
                .midnight()
                .assume_utc()
                .unix_timestamp()
        };
        let metrics = crate::metrics::Metrics::new();
        let server = TlsServer::load(&first).unwrap();
        server.publish_expiry(metrics.tls_expiry.clone());
        let text = metrics.encode();
        let sample = |config: &TlsConfig, year| {
            format!(
                "sapbridge_tls_certificate_expiry_timestamp_seconds{{file=\"{}\"}} {}",
                config.cert_file.display(),
                unix(year)
            )
        };
        assert!(text.contains(&sample(&first, 2031)), "{text}");

        server.reload(&second).unwrap();
        let text = metrics.encode();
        assert!(text.contains(&sample(&second, 2032)), "{text}");
        assert!(
            !text.contains(&first.cert_file.display().to_string()),
            "the replaced certificate's sample stays: {text}"
        );

        // A reload that fails keeps the served certificate, and its sample.
        let broken = TlsConfig::new(dir.path().join("missing.pem"), second.key_file.clone());
        assert!(server.reload(&broken).is_err());
        assert!(metrics.encode().contains(&sample(&second, 2032)));
    }

    #[test]
    fn certificates_ending_soon_or_ended_are_logged() {
        let file = Path::new("tls.pem");
        let now = 1_800_000_000;
        let day = 86_400;
        assert_eq!(warn_if_expiring(file, Some(now + 90 * day), now), None);
        assert_eq!(
            warn_if_expiring(file, Some(now + 13 * day), now),
            Some(tracing::Level::WARN)
        );
        assert_eq!(
            warn_if_expiring(file, Some(now - day), now),
            Some(tracing::Level::ERROR)
        );
        assert_eq!(
            warn_if_expiring(file, None, now),
            Some(tracing::Level::WARN)
        );
    }
}
