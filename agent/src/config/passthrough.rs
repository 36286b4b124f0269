//! The `[systems.http]` block: HTTP pass-through to one system's HTTP service (SAP
//! Gateway OData, ICF services), with its own path allowlist.
//!
//! ```toml
//! [[systems]]
//! name = "PRD"
//! backend = { type = "soap", base_url = "https://sapgw:44300/", user = "RFC_USER", password_file = "/etc/sapbridge/prd.pw" }
//!
//! [systems.http]
//! base_url = "https://sapgw:44300/"
//! allow_paths = ["/sap/opu/odata/sap/API_BUSINESS_PARTNER"]
//! csrf = true
//! user = "ODATA_USER"
//! password_file = "/etc/sapbridge/prd-odata.pw"
//! ```
//!
//! `allow_paths` entries are path prefixes matched on segment boundaries, like SAP
//! Cloud Connector's "path and all sub-paths": `/api` allows `/api` and `/api/x`, not
//! `/apix`. Matching is case-sensitive (a differently cased path is denied, never
//! allowed by accident). `["/"]` allows every path; `[]` (the default) denies all.

use std::path::PathBuf;

use serde::Deserialize;

use crate::passthrough::PathAllowlist;

/// HTTP pass-through settings of one system.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The service's base URL, `http://` or `https://`; request paths are appended
    /// to it (`http://sapgw:8000/`).
    pub base_url: String,
    /// Path prefixes the cloud may reach (see the module docs). Anything else is
    /// denied.
    #[serde(default)]
    pub allow_paths: Vec<String>,
    /// SAP Gateway CSRF protection: for writes (anything but GET, HEAD, OPTIONS,
    /// TRACE) fetch a token with `X-CSRF-Token: Fetch`, send it with its session
    /// cookies, and refetch once on `403` + `X-CSRF-Token: Required`. Write bodies
    /// are then buffered (up to `max_body_bytes`) so the one retry can resend them.
    #[serde(default)]
    pub csrf: bool,
    /// Where the CSRF token is fetched (`GET`); by default the `allow_paths` entry
    /// the request matched (typically the OData service root).
    #[serde(default)]
    pub csrf_fetch_path: Option<String>,
    /// A backend user for HTTP basic authentication; without it requests go
    /// unauthenticated (the client's own `Authorization` never passes the relay).
    #[serde(default)]
    pub user: Option<String>,
    /// A file holding the backend user's password (trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The name of an environment variable holding the backend user's password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// How long the backend may take to answer with a response head, and the
    /// longest pause in a response body, in seconds (default 60).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Extra PEM CA certificates to trust for an `https://` backend, beside the
    /// operating system's root certificates (as for the relay's `wss://`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// An HTTP proxy the backend is reached through with `CONNECT`
    /// (`http://proxy:3128`, no credentials); none by default. The environment's
    /// proxy variables are not used for backends.
    #[serde(default)]
    pub proxy_url: Option<String>,
    /// Pass the client's `Cookie` header to the backend and the backend's
    /// `Set-Cookie` to the client (default off: backend sessions opened with the
    /// agent's credentials stay on-premises).
    #[serde(default)]
    pub forward_cookies: bool,
    /// The largest request body the agent accepts, in bytes (default 16 MiB).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// How many pass-through requests run at once for this system (default 32).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
}

fn default_timeout_secs() -> u64 {
    60
}

fn default_max_body_bytes() -> usize {
    16 * 1024 * 1024
}

fn default_max_in_flight() -> u32 {
    32
}

impl HttpConfig {
    /// A block with defaults for everything but the base URL and allowed paths.
    pub fn new(base_url: impl Into<String>, allow_paths: Vec<String>) -> Self {
        Self {
            base_url: base_url.into(),
            allow_paths,
            csrf: false,
            csrf_fetch_path: None,
            user: None,
            password_file: None,
            password_env: None,
            timeout_secs: default_timeout_secs(),
            ca_file: None,
            proxy_url: None,
            forward_cookies: false,
            max_body_bytes: default_max_body_bytes(),
            max_in_flight: default_max_in_flight(),
        }
    }

    /// Adds one line per problem of the block of system `name` to `problems`.
    pub(crate) fn check(&self, name: &str, problems: &mut Vec<String>) {
        let mut problem = |text: String| problems.push(format!("system {name}: http: {text}"));
        if let Some(text) = self
            .proxy_url
            .as_deref()
            .and_then(super::check_backend_proxy)
        {
            problem(text);
        }
        match self.base_url.parse::<http::Uri>() {
            _ if super::holds_credentials(&self.base_url) => problem(
                "base_url must not hold a user or password (user:password@); set user and \
                 password_file or password_env"
                    .into(),
            ),
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() =>
            {
                if uri.query().is_some() {
                    problem(format!(
                        "base_url {:?} must not have a query",
                        self.base_url
                    ));
                }
                if self.ca_file.is_some() && uri.scheme_str() != Some("https") {
                    problem(format!(
                        "ca_file is for an https:// base_url; {:?} makes no TLS connection",
                        self.base_url
                    ));
                }
            }
            _ => problem(format!(
                "base_url {:?} must be an http:// or https:// URL with a host",
                self.base_url
            )),
        }
        if let Err(entry_problems) = PathAllowlist::parse(&self.allow_paths) {
            entry_problems.into_iter().for_each(&mut problem);
        }
        if let Some(path) = self
            .csrf_fetch_path
            .as_ref()
            .filter(|p| !p.starts_with('/'))
        {
            problem(format!("csrf_fetch_path {path:?} must start with /"));
        }
        let has_password = self.password_file.is_some() || self.password_env.is_some();
        match &self.user {
            Some(user) if user.trim().is_empty() => problem("user must not be empty".into()),
            Some(_) if self.password_file.is_some() == self.password_env.is_some() => {
                problem("with user, set exactly one of password_file and password_env".into());
            }
            None if has_password => problem("password_file/password_env need a user".into()),
            _ => {}
        }
        if self.timeout_secs == 0 {
            problem("timeout_secs must be at least 1".into());
        }
        if self.max_body_bytes == 0 {
            problem("max_body_bytes must be at least 1".into());
        }
        if self.max_in_flight == 0 {
            problem("max_in_flight must be at least 1".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_named() {
        let mut config = HttpConfig::new("ftp://x/", vec!["api".into()]);
        config.user = Some("u".into());
        config.timeout_secs = 0;
        let mut problems = Vec::new();
        config.check("PRD", &mut problems);
        let all = problems.join("\n");
        for needle in [
            "base_url",
            "must start with /",
            "password_file",
            "timeout_secs",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in {all}");
        }
        let mut problems = Vec::new();
        HttpConfig::new("http://sapgw:8000/", vec!["/api".into()]).check("PRD", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        // A CA file is for TLS: with http:// it would silently do nothing.
        let mut config = HttpConfig::new("http://sapgw:8000/", vec!["/api".into()]);
        config.ca_file = Some("/etc/sapbridge/ca.pem".into());
        let mut problems = Vec::new();
        config.check("PRD", &mut problems);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("ca_file"), "{problems:?}");
        config.base_url = "https://sapgw:44300/".into();
        let mut problems = Vec::new();
        config.check("PRD", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
    }
}
