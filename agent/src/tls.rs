//! The TLS client configuration for `wss://` relays: the operating system's root
//! certificates plus, optionally, an extra PEM file of CA certificates (a relay
//! behind a private CA). Built once per agent run with the `ring` provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
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
}

/// Builds the client configuration: native roots plus the certificates in `ca_file`.
///
/// # Errors
/// [`TlsError::CaFileRead`] / [`TlsError::CaFileInvalid`] for a CA file that cannot
/// be read or holds no valid certificate. Missing native roots only log a warning
/// (an agent with a CA file may not need them).
pub(crate) fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
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
    Ok(Arc::new(config_with(roots)?))
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
    fn native_roots_alone_build_a_config() {
        assert!(client_config(None).is_ok());
    }
}
