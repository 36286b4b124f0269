//! The TLS client configuration for `wss://` relays: the operating system's root
//! certificates plus, optionally, an extra PEM file of CA certificates (a relay
//! behind a private CA). Built once per agent run with the `ring` provider.
//!
//! For the relay connection ([`relay_client_config`]) also: a client certificate
//! for a relay that requires one (mutual TLS), and pins of the relay's public key
//! (`relay_spki_sha256`): the certificate chain must be trusted as usual *and* the
//! end-entity certificate or one of the intermediates sent with it must carry a
//! pinned key. A mismatch fails the handshake with an error naming the key seen.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use tracing::{debug, warn};

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The extra CA file could not be read.
    #[error("CA file {path}: {source}")]
    CaFileRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The extra CA file holds no usable certificate.
    #[error("CA file {path}: {reason}")]
    CaFileInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client certificate or its key cannot be used.
    #[error("client certificate {path}: {reason}")]
    ClientCertificate {
        /// The certificate or key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// The SHA-256 of a public key (its DER SubjectPublicKeyInfo).
pub(crate) type Pin = [u8; 32];

/// Parses a pin: 32 bytes as base64 (optionally prefixed `sha256/`) or as 64 hex
/// digits.
///
/// # Errors
/// What is wrong with the text.
pub(crate) fn parse_pin(text: &str) -> Result<Pin, String> {
    let text = text.trim();
    let bare = text.strip_prefix("sha256/").unwrap_or(text);
    let bytes = if bare.len() == 64 && bare.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(bare).map_err(|e| e.to_string())?
    } else {
        BASE64
            .decode(bare)
            .map_err(|_| format!("{text:?} is neither base64 nor 64 hex digits"))?
    };
    Pin::try_from(bytes.as_slice())
        .map_err(|_| format!("{text:?} is not a SHA-256 digest (32 bytes)"))
}

/// A pin as `sapbridge keys pin` prints it and errors name it: `sha256/<base64>`.
pub(crate) fn show_pin(pin: &Pin) -> String {
    format!("sha256/{}", BASE64.encode(pin))
}

/// The pin of the public key in a DER certificate.
///
/// # Errors
/// When the certificate does not parse.
fn pin_of(cert: &CertificateDer<'_>) -> Result<Pin, String> {
    let parsed = webpki::EndEntityCert::try_from(cert).map_err(|e| e.to_string())?;
    Ok(Sha256::digest(parsed.subject_public_key_info().as_ref()).into())
}

/// The public key pins of every certificate in a PEM text, in order, each as
/// `(base64 with sha256/, hex)`.
///
/// # Errors
/// When the text holds no certificate or one does not parse.
pub fn pins_of_pem(pem: &[u8]) -> Result<Vec<(String, String)>, String> {
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block found".into());
    }
    certs
        .iter()
        .map(|cert| pin_of(cert).map(|pin| (show_pin(&pin), hex::encode(pin))))
        .collect()
}

/// The configuration of the relay connection: [`client_config`]'s roots, the
/// client certificate, and the pins of `config`.
///
/// # Errors
/// As [`client_config`], and [`TlsError::ClientCertificate`] for a client
/// certificate or key that cannot be read or used.
pub(crate) fn relay_client_config(
    config: &crate::AgentConfig,
) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = Arc::new(roots(config.ca_file.as_deref())?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    // The configuration validated the pins.
    let pins: Vec<Pin> = config
        .relay_spki_sha256
        .iter()
        .filter_map(|p| parse_pin(p).ok())
        .collect();
    let builder = if pins.is_empty() {
        builder.with_root_certificates(roots)
    } else {
        let trusted = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedRelay { trusted, pins }))
    };
    let tls = match (&config.client_cert_file, &config.client_key_file) {
        (Some(cert), Some(key)) => {
            let (chain, key) = client_identity(cert, key)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::ClientCertificate {
                    path: cert.clone(),
                    reason: e.to_string(),
                })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(tls))
}

fn client_identity(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let bad = |path: &Path, reason: String| TlsError::ClientCertificate {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(cert).map_err(|e| bad(cert, e.to_string()))?;
    let chain = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, format!("not PEM: {e}")))?;
    if chain.is_empty() {
        return Err(bad(cert, "no CERTIFICATE block found".into()));
    }
    let pem = std::fs::read(key).map_err(|e| bad(key, e.to_string()))?;
    let key_der = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| bad(key, format!("not PEM: {e}")))?
        .ok_or_else(|| bad(key, "no PRIVATE KEY block found".into()))?;
    Ok((chain, key_der))
}

/// Verifies the relay's chain as usual, then that it carries a pinned key.
#[derive(Debug)]
struct PinnedRelay {
    trusted: Arc<WebPkiServerVerifier>,
    pins: Vec<Pin>,
}

impl ServerCertVerifier for PinnedRelay {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.trusted.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let seen = pin_of(end_entity).map_err(rustls::Error::General)?;
        let pinned = std::iter::once(Ok(seen))
            .chain(intermediates.iter().map(pin_of))
            .filter_map(Result::ok)
            .any(|pin| self.pins.contains(&pin));
        if pinned {
            Ok(verified)
        } else {
            Err(rustls::Error::General(format!(
                "the relay's public key {} is not one of relay_spki_sha256",
                show_pin(&seen)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.trusted.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.trusted.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.trusted.supported_verify_schemes()
    }
}

/// Builds the client configuration: native roots plus the certificates in `ca_file`.
///
/// # Errors
/// [`TlsError::CaFileRead`] / [`TlsError::CaFileInvalid`] for a CA file that cannot
/// be read or holds no valid certificate. Missing native roots only log a warning
/// (an agent with a CA file may not need them).
pub(crate) fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    Ok(Arc::new(config_with(roots(ca_file)?)?))
}

/// The system's root certificates plus those in `ca_file`.
fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        debug!(error = %error, "could not load some system root certificates");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    debug!(added, ignored, "system root certificates loaded");
    if let Some(path) = ca_file {
        add_ca_file(&mut roots, path)?;
    }
    if roots.is_empty() {
        warn!("no trusted root certificates: wss:// connections will fail; set ca_file");
    }
    Ok(roots)
}

/// A configuration that trusts no certificate, for a client that never makes a
/// TLS connection (one whose only URL is `http://`): the system's root
/// certificates are not loaded for nothing.
///
/// # Errors
/// When rustls refuses the configuration.
pub(crate) fn trusting_nothing() -> Result<ClientConfig, TlsError> {
    config_with(RootCertStore::empty())
}

fn config_with(roots: RootCertStore) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<(), TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::CaFileRead {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |reason: String| TlsError::CaFileInvalid {
        path: path.to_path_buf(),
        reason,
    };
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid("no CERTIFICATE block found".into()));
    }
    for cert in certs {
        roots.add(cert).map_err(|e| invalid(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_ca_files_are_errors() {
        let missing = client_config(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(matches!(missing, TlsError::CaFileRead { .. }), "{missing}");

        let dir = std::env::temp_dir().join(format!("sapbridge-agent-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = client_config(Some(&empty)).unwrap_err();
        assert!(matches!(err, TlsError::CaFileInvalid { .. }), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pins_parse_from_base64_and_hex_and_show_as_base64() {
        let pin: Pin = std::array::from_fn(|i| u8::try_from(i).unwrap());
        let shown = show_pin(&pin);
        assert!(shown.starts_with("sha256/"), "{shown}");
        assert_eq!(parse_pin(&shown).unwrap(), pin);
        assert_eq!(parse_pin(&shown["sha256/".len()..]).unwrap(), pin);
        assert_eq!(parse_pin(&hex::encode(pin)).unwrap(), pin);
        assert!(parse_pin("c2hvcnQ=").unwrap_err().contains("32 bytes"));
        assert!(parse_pin("not a pin!").is_err());
    }

    #[test]
    fn native_roots_alone_build_a_config() {
        assert!(client_config(None).is_ok());
    }
}
