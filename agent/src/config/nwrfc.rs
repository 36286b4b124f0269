//! The `type = "nwrfc"` backend's configuration ([`NwrfcBackend`]): where SAP's
//! NW RFC library is, how to log on (application server or message server with a
//! logon group, SNC and SAP router parameters passed through), timeouts, the pool,
//! and which functions go as tRFC units.

use std::path::PathBuf;

use serde::Deserialize;

use super::default_soap_timeout_secs;
use crate::allowlist::Allowlist;

/// The `type = "nwrfc"` backend: where the SDK is and how to log on.
///
/// Logon: an application server (`ashost` + `sysnr`) or a message server with a
/// logon group (`mshost`, optional `msserv`, `sysid`, `group`); `client`, `user`,
/// the password from `password_file` or `password_env` (read again before every
/// logon, never logged; after SAP refused it, no further logon is made with it
/// until it changes), `lang`, an optional `saprouter` string, and any other SDK
/// logon parameter (SNC: `SNC_MODE`, `SNC_PARTNERNAME`, `SNC_QOP`, `SNC_MYNAME`,
/// `SNC_LIB`) in `parameters`, passed through as given.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NwrfcBackend {
    /// The NW RFC library's path; default: `libsapnwrfc.so` (`sapnwrfc.dll` on
    /// Windows) from the platform's search path.
    #[serde(default)]
    pub library: Option<PathBuf>,
    /// Application server host (`ASHOST`).
    #[serde(default)]
    pub ashost: Option<String>,
    /// Its system number, two digits (`SYSNR`).
    #[serde(default)]
    pub sysnr: Option<String>,
    /// Message server host (`MSHOST`), for logon groups.
    #[serde(default)]
    pub mshost: Option<String>,
    /// Message server service or port (`MSSERV`); default `sapms<SYSID>`.
    #[serde(default)]
    pub msserv: Option<String>,
    /// System id (`SYSID`), with a message server.
    #[serde(default)]
    pub sysid: Option<String>,
    /// Logon group (`GROUP`), with a message server.
    #[serde(default)]
    pub group: Option<String>,
    /// The SAP client, three digits (`CLIENT`).
    pub client: String,
    /// The SAP user (`USER`).
    pub user: String,
    /// A file holding the user's password (trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The name of an environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Logon language (`LANG`), default `EN`.
    #[serde(default = "default_lang")]
    pub lang: String,
    /// A SAP router string (`SAPROUTER`), e.g. `/H/router.example.com/S/3299/H/`.
    #[serde(default)]
    pub saprouter: Option<String>,
    /// Further SDK logon parameters by name (SNC, trace), passed through.
    #[serde(default)]
    pub parameters: std::collections::BTreeMap<String, String>,
    /// Longest time one function call may take before it is cancelled
    /// (`RfcCancel`), in seconds (default 60).
    #[serde(default = "default_soap_timeout_secs")]
    pub timeout_secs: u64,
    /// Idle RFC connections kept open for reuse (default 8).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Functions (same syntax as `allow_functions`) whose committing units are
    /// sent as one tRFC unit: SAP runs it at most once per call id, also when it
    /// is redelivered after a crash, and gives no call results back.
    #[serde(default)]
    pub trfc_functions: Vec<String>,
}

/// Logon parameters with keys of their own in [`NwrfcBackend`].
const NWRFC_OWN_KEYS: &[&str] = &[
    "ASHOST",
    "SYSNR",
    "MSHOST",
    "MSSERV",
    "SYSID",
    "R3NAME",
    "GROUP",
    "CLIENT",
    "USER",
    "LANG",
    "SAPROUTER",
];

fn default_lang() -> String {
    "EN".into()
}

fn default_pool_size() -> usize {
    8
}

impl NwrfcBackend {
    /// The SDK logon parameters, without the password.
    pub fn logon_parameters(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut push = |name: &str, value: &Option<String>| {
            if let Some(value) = value {
                out.push((name.to_owned(), value.clone()));
            }
        };
        push("ASHOST", &self.ashost);
        push("SYSNR", &self.sysnr);
        push("MSHOST", &self.mshost);
        push("MSSERV", &self.msserv);
        push("SYSID", &self.sysid);
        push("GROUP", &self.group);
        push("SAPROUTER", &self.saprouter);
        out.push(("CLIENT".into(), self.client.clone()));
        out.push(("USER".into(), self.user.clone()));
        out.push(("LANG".into(), self.lang.clone()));
        out.extend(
            self.parameters
                .iter()
                .map(|(k, v)| (k.to_ascii_uppercase(), v.clone())),
        );
        out
    }

    pub(crate) fn check(&self, name: &str, problems: &mut Vec<String>) {
        let digits = |v: &str, n: usize| v.len() == n && v.bytes().all(|b| b.is_ascii_digit());
        match (&self.ashost, &self.mshost) {
            (Some(_), None) => {
                if !self.sysnr.as_deref().is_some_and(|v| digits(v, 2)) {
                    problems.push(format!(
                        "system {name}: ashost needs sysnr, two digits (\"00\")"
                    ));
                }
            }
            (None, Some(_)) => {
                if self.sysid.as_deref().is_none_or(|v| v.trim().is_empty())
                    || self.group.as_deref().is_none_or(|v| v.trim().is_empty())
                {
                    problems.push(format!("system {name}: mshost needs sysid and group"));
                }
            }
            _ => problems.push(format!(
                "system {name}: set either ashost (with sysnr) or mshost (with sysid and group)"
            )),
        }
        if !digits(&self.client, 3) {
            problems.push(format!(
                "system {name}: client must be three digits (\"100\")"
            ));
        }
        if self.user.trim().is_empty() {
            problems.push(format!("system {name}: user must not be empty"));
        }
        if self.password_file.is_some() == self.password_env.is_some() {
            problems.push(format!(
                "system {name}: set exactly one of password_file and password_env"
            ));
        }
        if self.timeout_secs == 0 {
            problems.push(format!("system {name}: timeout_secs must be at least 1"));
        }
        for key in self.parameters.keys() {
            let upper = key.to_ascii_uppercase();
            if upper == "PASSWD" {
                problems.push(format!(
                    "system {name}: the password goes in password_file or password_env, not in parameters"
                ));
            } else if NWRFC_OWN_KEYS.contains(&upper.as_str()) {
                problems.push(format!(
                    "system {name}: set {} with its own key, not in parameters",
                    upper.to_ascii_lowercase()
                ));
            }
        }
        if let Err(entry_problems) = Allowlist::parse_named("trfc_functions", &self.trfc_functions)
        {
            problems.extend(
                entry_problems
                    .into_iter()
                    .map(|p| format!("system {name}: {p}")),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{AgentConfig, BackendConfig, ConfigError};

    #[test]
    fn nwrfc_backends_parse_and_their_problems_are_named() {
        let text = r#"
            relay_url = "wss://relay.example.com/v1/agent/connect"
            token = "t"

            [[systems]]
            name = "PRD"
            [systems.backend]
            type = "nwrfc"
            mshost = "sapms.example.com"
            sysid = "PRD"
            group = "PUBLIC"
            client = "100"
            user = "RFC_USER"
            password_env = "SAP_PW"
            saprouter = "/H/router/S/3299/H/"
            parameters = { SNC_MODE = "1", snc_partnername = "p:CN=PRD" }
            trfc_functions = ["Z_*"]

            [[systems]]
            name = "QAS"
            [systems.backend]
            type = "nwrfc"
            ashost = "sapqas"
            client = "1"
            user = ""
            password_env = "A"
            password_file = "/b"
            parameters = { PASSWD = "nope", ashost = "x" }
            trfc_functions = [""]
        "#;
        let Err(ConfigError::Invalid(problems)) = AgentConfig::from_toml_str(text) else {
            panic!("expected invalid config");
        };
        let all = problems.join("\n");
        assert!(!all.contains("system PRD"), "{all}");
        for needle in [
            "ashost needs sysnr",
            "client must be three digits",
            "user must not be empty",
            "exactly one of password_file and password_env",
            "not in parameters",
            "set ashost with its own key",
            "trfc_functions",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        assert!(!all.contains("nope"), "{all}");
        let prd = text
            .split("[[systems]]\n            name = \"QAS\"")
            .next()
            .unwrap();
        let config = AgentConfig::from_toml_str(prd).unwrap();
        let BackendConfig::Nwrfc(backend) = &config.systems[0].backend else {
            panic!("an nwrfc backend");
        };
        let logon = backend.logon_parameters();
        for pair in [
            ("MSHOST", "sapms.example.com"),
            ("SYSID", "PRD"),
            ("GROUP", "PUBLIC"),
            ("CLIENT", "100"),
            ("LANG", "EN"),
            ("SAPROUTER", "/H/router/S/3299/H/"),
            ("SNC_PARTNERNAME", "p:CN=PRD"),
        ] {
            assert!(
                logon.contains(&(pair.0.into(), pair.1.into())),
                "{pair:?} in {logon:?}"
            );
        }
        assert!(!logon.iter().any(|(k, _)| k == "PASSWD"));
    }
}
