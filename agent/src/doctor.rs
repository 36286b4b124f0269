//! `sapbridge agent doctor`: checks, on the agent's own machine and with its own
//! configuration, what an administrator checks first when calls fail. The relay:
//! the token can be read, the URL answers, plain HTTP and TLS are not mixed up,
//! the path is the agent endpoint, and the relay accepts the token for the
//! configured systems (one hello with no credits, so no work comes; then a
//! goodbye). Each system: the NW RFC library (found, and its version), the logon
//! (one attempt: it succeeds, or SAP's exact error is shown), and whether each
//! function the allowlist names exists in SAP.
//!
//! One logon per system and no retries: SAP locks a user after a few failed
//! logons, so the doctor never adds more than one failure to the count.

// `RfcError` is what every backend call fails with; boxing it here would buy nothing.
#![allow(clippy::result_large_err)]

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sapbridge_proto::{ErrorGroup, Parameters, RfcError};
use sapbridge_sap::{SapConnection, SapSystem};
use serde_json::Value;

use crate::config::{AgentConfig, BackendConfig, SystemConfig};
use crate::systems::{load_nwrfc, open_system};

mod relay;

/// How long one check may take before it counts as failed (the backends have
/// timeouts of their own; this bounds a hung network as well).
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// The function whose interface answers whether a function module exists.
const INTERFACE_FUNCTION: &str = "RFC_GET_FUNCTION_INTERFACE";

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// As it should be.
    Ok,
    /// Calls will fail because of it.
    Failed,
    /// Not checked (says why).
    Skipped,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked (`logon`, `function BAPI_…`).
    pub what: String,
    /// How it ended.
    pub verdict: Verdict,
    /// What was found, or SAP's error.
    pub detail: String,
}

/// The checks of one thing: the relay, or a system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// What was checked (`relay ws://…`, `system PRD (NW RFC, …)`); never a secret.
    pub title: String,
    /// The checks, in the order they ran.
    pub checks: Vec<Check>,
}

/// What the doctor found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The relay first, then one section per configured system.
    pub sections: Vec<Section>,
}

impl Report {
    /// Whether no check failed.
    pub fn healthy(&self) -> bool {
        self.failed() == 0
    }

    fn failed(&self) -> usize {
        self.sections
            .iter()
            .flat_map(|s| &s.checks)
            .filter(|c| c.verdict == Verdict::Failed)
            .count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for section in &self.sections {
            writeln!(f, "{}", section.title)?;
            for check in &section.checks {
                let mark = match check.verdict {
                    Verdict::Ok => "ok  ",
                    Verdict::Failed => "FAIL",
                    Verdict::Skipped => "skip",
                };
                writeln!(f, "  {mark}  {}: {}", check.what, check.detail)?;
            }
        }
        match self.failed() {
            0 => write!(f, "all checks passed"),
            failed => write!(f, "{failed} check(s) failed"),
        }
    }
}

/// Runs every check: the relay's, then every configured system's.
pub async fn doctor(config: &AgentConfig) -> Report {
    let mut sections = vec![relay::examine(config).await];
    for system in &config.systems {
        sections.push(examine(config, system).await);
    }
    Report { sections }
}

async fn examine(config: &AgentConfig, system: &SystemConfig) -> Section {
    let mut report = Section {
        title: format!("system {} ({})", system.name, describe(system)),
        checks: Vec::new(),
    };
    let backend = match &system.backend {
        BackendConfig::Nwrfc(nwrfc) => match load_nwrfc(nwrfc) {
            Ok(sdk) => {
                report.checks.push(ok(
                    "NW RFC library",
                    format!("{} ({})", sdk.sdk_version(), sdk.library()),
                ));
                Ok(Arc::new(sdk) as Arc<dyn SapSystem>)
            }
            Err(error) => Err(format!(
                "{error}; install SAP's NW RFC SDK next to the agent and set `library` in the \
                 system's backend (or put the library on the search path)"
            )),
        },
        _ => open_system(config, system).map_err(|e| e.to_string()),
    };
    let sap = match backend {
        Ok(sap) => sap,
        Err(reason) => {
            report.checks.push(failed("backend", reason));
            report
                .checks
                .push(skipped("logon", "the backend could not be opened"));
            return report;
        }
    };
    let mut session = match logon(sap.as_ref()).await {
        Ok((session, detail)) => {
            report.checks.push(ok("logon", detail));
            session
        }
        Err(detail) => {
            report.checks.push(failed("logon", detail));
            for name in exact_functions(system) {
                report
                    .checks
                    .push(skipped(&format!("function {name}"), "no logon"));
            }
            return report;
        }
    };
    for entry in &system.allow_functions {
        let name = entry.trim().to_ascii_uppercase();
        let what = format!("function {name}");
        if name.ends_with('*') {
            report.checks.push(skipped(
                &what,
                "a pattern: the functions it matches are not listed one by one",
            ));
            continue;
        }
        report
            .checks
            .push(function_exists(session.as_mut(), &name, &what).await);
    }
    report
}

/// The allowlist's exact names (patterns cannot be checked one by one).
fn exact_functions(system: &SystemConfig) -> impl Iterator<Item = String> + '_ {
    system
        .allow_functions
        .iter()
        .map(|e| e.trim().to_ascii_uppercase())
        .filter(|e| !e.ends_with('*'))
}

/// Logs on once, pings, and reads the release.
async fn logon(sap: &dyn SapSystem) -> Result<(Box<dyn SapConnection>, String), String> {
    let started = Instant::now();
    let mut session = bounded(sap.connect()).await.map_err(|e| rfc_error(&e))?;
    bounded(session.call("RFC_PING", &Parameters::new()))
        .await
        .map_err(|e| format!("logged on, but RFC_PING failed: {}", rfc_error(&e)))?;
    let took = started.elapsed().as_millis();
    let release = match bounded(session.call("RFC_SYSTEM_INFO", &Parameters::new())).await {
        Ok(info) => describe_release(&info),
        Err(e) => format!("RFC_SYSTEM_INFO failed: {}", rfc_error(&e)),
    };
    Ok((
        session,
        format!("logged on and RFC_PING answered in {took} ms; {release}"),
    ))
}

fn describe_release(info: &Parameters) -> String {
    let field = |name: &str| {
        info.get("RFCSI_EXPORT")
            .and_then(|s| s.get(name))
            .and_then(Value::as_str)
            .map(str::trim)
            .unwrap_or("?")
            .to_owned()
    };
    format!(
        "system {} release {} kernel {} on host {}",
        field("RFCSYSID"),
        field("RFCSAPRL"),
        field("RFCKERNRL"),
        field("RFCHOST")
    )
}

async fn function_exists(session: &mut dyn SapConnection, name: &str, what: &str) -> Check {
    let mut request = Parameters::new();
    request.insert("FUNCNAME".into(), Value::from(name));
    match bounded(session.call(INTERFACE_FUNCTION, &request)).await {
        Ok(answer) => {
            let parameters = answer
                .get("PARAMS")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            ok(what, format!("exists ({parameters} parameters)"))
        }
        Err(e) if e.key == "FU_NOT_FOUND" => failed(what, "does not exist in this SAP system"),
        Err(e) => failed(
            what,
            format!(
                "cannot tell whether it exists: {INTERFACE_FUNCTION} failed: {}",
                rfc_error(&e)
            ),
        ),
    }
}

async fn bounded<T>(work: impl Future<Output = Result<T, RfcError>>) -> Result<T, RfcError> {
    tokio::time::timeout(CHECK_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| {
            Err(RfcError::new(
                ErrorGroup::CommunicationFailure,
                "TIMEOUT",
                format!("no answer within {} s", CHECK_TIMEOUT.as_secs()),
            ))
        })
}

/// An RFC error in words: group, key, message and the ABAP message fields.
fn rfc_error(error: &RfcError) -> String {
    let mut text = format!("{} {}: {}", error.group.as_str(), error.key, error.message);
    if !error.msg_class.is_empty() {
        text.push_str(&format!(
            " (ABAP message {} {} {})",
            error.msg_class, error.msg_type, error.msg_number
        ));
    }
    text
}

fn describe(system: &SystemConfig) -> String {
    match &system.backend {
        BackendConfig::Sim { .. } => "embedded simulator".into(),
        BackendConfig::Soap {
            base_url,
            client,
            user,
            ..
        } => format!("SOAP-RFC at {base_url}, client {client}, user {user}"),
        BackendConfig::Nwrfc(nwrfc) => {
            let server = match (&nwrfc.ashost, &nwrfc.mshost) {
                (Some(host), _) => format!(
                    "application server {host} system number {}",
                    nwrfc.sysnr.as_deref().unwrap_or("?")
                ),
                (None, Some(host)) => format!(
                    "message server {host}, system {}, group {}",
                    nwrfc.sysid.as_deref().unwrap_or("?"),
                    nwrfc.group.as_deref().unwrap_or("PUBLIC")
                ),
                (None, None) => "no server configured".into(),
            };
            format!(
                "NW RFC, {server}, client {}, user {}",
                nwrfc.client, nwrfc.user
            )
        }
    }
}

pub(crate) fn ok(what: &str, detail: impl Into<String>) -> Check {
    check(what, Verdict::Ok, detail)
}

pub(crate) fn failed(what: &str, detail: impl Into<String>) -> Check {
    check(what, Verdict::Failed, detail)
}

pub(crate) fn skipped(what: &str, detail: impl Into<String>) -> Check {
    check(what, Verdict::Skipped, detail)
}

fn check(what: &str, verdict: Verdict, detail: impl Into<String>) -> Check {
    Check {
        what: what.to_owned(),
        verdict,
        detail: detail.into(),
    }
}
