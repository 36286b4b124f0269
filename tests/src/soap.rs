//! [`SoapSap`]: an SAP system reached over SOAP-RFC, as `sapbridge sim` serves it —
//! the SOAP-RFC server of `crates/sap` on a free loopback port in front of any
//! system (the simulator, maybe gated) — and backends that call it as an agent's
//! `type = "soap"` backend does. SOAP-RFC keeps no record of committed TIDs, like
//! real SAP over SOAP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use sapbridge_proto::Secret;
use sapbridge_sap::SapSystem;
use sapbridge_sap::logon_guard::PasswordSource;
use sapbridge_sap::soap::{SoapAuth, SoapConfig, SoapSystem, router};
use tokio::task::JoinHandle;

/// The SAP user the SOAP endpoint accepts.
pub const SOAP_USER: &str = "RFCUSER";
/// Its password.
pub const SOAP_PASSWORD: &str = "rfc-secret";

/// A SOAP-RFC endpoint in this process.
#[derive(Debug)]
pub struct SoapSap {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
}

impl SoapSap {
    /// Serves `system` over SOAP-RFC on a free loopback port, client `001`.
    ///
    /// # Errors
    /// When the listener cannot bind.
    pub async fn start(system: Arc<dyn SapSystem>) -> Result<Self> {
        let auth = SoapAuth {
            user: SOAP_USER.into(),
            password: Secret::new(SOAP_PASSWORD),
            client: "001".into(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move { axum::serve(listener, router(system, auth)).await });
        Ok(Self { addr, task })
    }

    /// The base URL an agent's SOAP backend is configured with.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// A SOAP-RFC backend logging on to this endpoint (what an agent opens for
    /// `[systems.backend] type = "soap"`).
    ///
    /// # Errors
    /// When the client cannot be built.
    pub fn backend(&self) -> Result<Arc<dyn SapSystem>> {
        let soap = SoapSystem::new(SoapConfig {
            base_url: self.url(),
            client: "001".into(),
            user: SOAP_USER.into(),
            password: PasswordSource::Value(Secret::new(SOAP_PASSWORD)),
            timeout: Duration::from_secs(30),
            ca_file: None,
            proxy_url: None,
        })?;
        Ok(Arc::new(soap))
    }
}

impl Drop for SoapSap {
    fn drop(&mut self) {
        self.task.abort();
    }
}
