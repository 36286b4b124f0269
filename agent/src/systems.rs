//! The SAP systems an agent serves: opening their backends from the configuration
//! and pairing each with its allowlist.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sapbridge_proto::Secret;
use sapbridge_sap::logon_guard::PasswordSource;
use sapbridge_sap::nwrfc::{LoadError, NwrfcConfig, NwrfcSystem};
use sapbridge_sap::sim::{SimOptions, Simulator};
use sapbridge_sap::soap::{SoapConfig, SoapSystem};
use sapbridge_sap::{SapSystem, UnavailableSystem};

use crate::AgentError;
use crate::allowlist::Allowlist;
use crate::config::{AgentConfig, BackendConfig, NwrfcBackend, SystemConfig};

/// One served system: its name, its allowlist and its backend.
#[derive(Clone)]
pub(crate) struct ServedSystem {
    /// The id of the agent serving it (for logs).
    pub(crate) agent_id: Arc<str>,
    /// The system's name.
    pub(crate) name: String,
    /// What the cloud may run on it.
    pub(crate) allowlist: Allowlist,
    /// Which tables `RFC_READ_TABLE` may read on it.
    pub(crate) tables: Allowlist,
    /// The backend sessions are opened on.
    pub(crate) sap: Arc<dyn SapSystem>,
}

impl std::fmt::Debug for ServedSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedSystem")
            .field("name", &self.name)
            .field("allowlist", &self.allowlist)
            .finish_non_exhaustive()
    }
}

/// Opens the backend of every configured system.
///
/// # Errors
/// [`AgentError::DataDir`] when the data directory cannot be created,
/// [`AgentError::OpenSystem`] when a backend cannot be opened.
pub(crate) fn open_systems(
    config: &AgentConfig,
) -> Result<HashMap<String, Arc<dyn SapSystem>>, AgentError> {
    let mut systems: HashMap<String, Arc<dyn SapSystem>> = HashMap::new();
    for system in &config.systems {
        systems.insert(system.name.clone(), open_system(config, system)?);
    }
    Ok(systems)
}

/// Opens the backend of one configured system.
///
/// # Errors
/// As [`open_systems`].
pub(crate) fn open_system(
    config: &AgentConfig,
    system: &SystemConfig,
) -> Result<Arc<dyn SapSystem>, AgentError> {
    let opened: Arc<dyn SapSystem> = match &system.backend {
        BackendConfig::Sim {
            db_path,
            latency_ms,
            fault_rate,
        } => {
            let path = config.sim_db_path(&system.name, db_path.as_deref());
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|source| AgentError::DataDir {
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
            let options = SimOptions {
                latency: Duration::from_millis(*latency_ms),
                fault_rate: *fault_rate,
            };
            let sim = Simulator::open(&path, options).map_err(|e| AgentError::OpenSystem {
                system: system.name.clone(),
                reason: e.to_string(),
            })?;
            Arc::new(sim)
        }
        BackendConfig::Soap {
            base_url,
            client,
            user,
            password_file,
            password_env,
            timeout_secs,
            ca_file,
            proxy_url,
        } => {
            let open_error = |reason: String| AgentError::OpenSystem {
                system: system.name.clone(),
                reason,
            };
            // Read once now, so that an unreadable password stops the start;
            // the backend reads it again before every logon.
            read_password(password_file.as_deref(), password_env.as_deref()).map_err(open_error)?;
            let password = password_source(password_file.as_deref(), password_env.as_deref());
            let soap = SoapSystem::new(SoapConfig {
                base_url: base_url.clone(),
                client: client.clone(),
                user: user.clone(),
                password,
                timeout: Duration::from_secs(*timeout_secs),
                ca_file: ca_file.clone(),
                proxy_url: proxy_url.clone(),
            })
            .map_err(|e| open_error(e.to_string()))?;
            Arc::new(soap)
        }
        BackendConfig::Nwrfc(nwrfc) => open_nwrfc(&system.name, nwrfc),
    };
    Ok(opened)
}

/// Opens an `nwrfc` system. Without a usable NW RFC library the agent still
/// starts: the reason is logged now, and every call to the system answers it.
fn open_nwrfc(name: &str, config: &NwrfcBackend) -> Arc<dyn SapSystem> {
    match load_nwrfc(config) {
        Ok(system) => {
            tracing::info!(system = name, sdk = %system.sdk_version(), "SAP NW RFC library loaded");
            Arc::new(system)
        }
        Err(error) => {
            let reason = format!(
                "system {name} is unavailable: {error}. Install SAP's NW RFC SDK next to the agent \
                 and set `library` in its backend (or put the library on the search path), then \
                 restart the agent"
            );
            tracing::error!(system = name, error = %error, "{reason}");
            Arc::new(UnavailableSystem::new("NWRFC_UNAVAILABLE", reason))
        }
    }
}

/// Loads SAP's NW RFC library for an `nwrfc` system.
///
/// # Errors
/// The loader's reason when the library is missing or unusable.
pub(crate) fn load_nwrfc(config: &NwrfcBackend) -> Result<NwrfcSystem, LoadError> {
    let password = password_source(
        config.password_file.as_deref(),
        config.password_env.as_deref(),
    );
    NwrfcSystem::new(NwrfcConfig {
        library: config.library.clone(),
        parameters: config.logon_parameters(),
        password,
        timeout: Duration::from_secs(config.timeout_secs),
        pool_size: config.pool_size,
        trfc_functions: config.trfc_functions.clone(),
    })
}

/// Where a backend's password comes from: the file, else the variable.
fn password_source(file: Option<&Path>, env: Option<&str>) -> PasswordSource {
    match (file, env) {
        (Some(path), _) => PasswordSource::File(path.to_path_buf()),
        (None, Some(var)) => PasswordSource::Env(var.to_owned()),
        (None, None) => PasswordSource::Env(String::new()),
    }
}

/// Reads a backend password from a file (trailing newline dropped) or an
/// environment variable. The error names the source, never the value.
pub(crate) fn read_password(file: Option<&Path>, env: Option<&str>) -> Result<Secret, String> {
    if file.is_none() && env.is_none() {
        return Err("no password configured".into());
    }
    password_source(file, env).read()
}

/// Pairs each configured system with its opened backend and parsed allowlist.
///
/// # Errors
/// [`AgentError::OpenSystem`] when a configured system has no backend in `opened`
/// or its allowlist does not parse (which `validate` would have caught).
pub(crate) fn serve(
    config: &AgentConfig,
    mut opened: HashMap<String, Arc<dyn SapSystem>>,
) -> Result<HashMap<String, ServedSystem>, AgentError> {
    let agent_id: Arc<str> = Arc::from(config.agent_id.as_str());
    let mut served = HashMap::new();
    for system in &config.systems {
        let sap = opened
            .remove(&system.name)
            .ok_or_else(|| AgentError::OpenSystem {
                system: system.name.clone(),
                reason: "no backend was opened for this system".into(),
            })?;
        let allowlist = Allowlist::parse(&system.allow_functions).map_err(|problems| {
            AgentError::OpenSystem {
                system: system.name.clone(),
                reason: problems.join("; "),
            }
        })?;
        let tables =
            Allowlist::parse_named("allow_tables", &system.allow_tables).map_err(|problems| {
                AgentError::OpenSystem {
                    system: system.name.clone(),
                    reason: problems.join("; "),
                }
            })?;
        served.insert(
            system.name.clone(),
            ServedSystem {
                agent_id: Arc::clone(&agent_id),
                name: system.name.clone(),
                allowlist,
                tables,
                sap,
            },
        );
    }
    Ok(served)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_nwrfc_system_without_the_library_is_served_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            r#"
            relay_url = "ws://127.0.0.1:1/v1/agent/connect"
            token = "t"
            data_dir = "{}"

            [[systems]]
            name = "PRD"
            allow_functions = ["*"]
            [systems.backend]
            type = "nwrfc"
            library = "/nonexistent/nwrfcsdk/lib/libsapnwrfc.so"
            ashost = "sap.example.com"
            sysnr = "00"
            client = "100"
            user = "RFC"
            password_env = "UNUSED"

            [[systems]]
            name = "SIM"
            backend = {{ type = "sim" }}
            "#,
            dir.path().display()
        );
        let config = AgentConfig::from_toml_str(&text).unwrap();
        let systems = open_systems(&config).expect("the agent starts without the SDK");
        systems["SIM"]
            .connect()
            .await
            .expect("other systems are served");
        let Err(error) = systems["PRD"].connect().await else {
            panic!("PRD has no library")
        };
        assert_eq!(error.key, "NWRFC_UNAVAILABLE");
        assert!(
            error
                .message
                .contains("/nonexistent/nwrfcsdk/lib/libsapnwrfc.so"),
            "{}",
            error.message
        );
        assert!(
            error.message.contains("system PRD is unavailable"),
            "{}",
            error.message
        );
    }
}
