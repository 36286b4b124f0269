//! Authentication of clients (API keys) and agents (agent tokens).
//!
//! Only SHA-256 hashes of keys and tokens are kept in memory. A presented secret is
//! hashed and compared against every configured hash in constant time, so neither
//! timing nor an early exit tells which entry came close. Secrets are never logged.

use std::collections::HashSet;

use http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::config::{ALL_SYSTEMS, AgentTokenConfig, ApiKeyConfig, parse_sha256, sha256};

/// The systems a credential covers.
#[derive(Debug, Clone)]
pub(crate) enum Scope {
    /// Every system (`"*"`).
    All,
    /// The named systems.
    Systems(HashSet<String>),
}

impl Scope {
    /// The scope of a list of systems (`"*"`: all).
    pub(crate) fn new(systems: &[String]) -> Self {
        if systems.iter().any(|s| s == ALL_SYSTEMS) {
            Self::All
        } else {
            Self::Systems(systems.iter().cloned().collect())
        }
    }

    /// The scope as a list of systems (`["*"]`: all), sorted.
    pub(crate) fn systems(&self) -> Vec<String> {
        match self {
            Self::All => vec![ALL_SYSTEMS.to_owned()],
            Self::Systems(systems) => {
                let mut list: Vec<String> = systems.iter().cloned().collect();
                list.sort();
                list
            }
        }
    }

    /// Whether the scope covers `system`.
    pub(crate) fn covers(&self, system: &str) -> bool {
        match self {
            Self::All => true,
            Self::Systems(systems) => systems.contains(system),
        }
    }
}

/// A configured credential: its name, hash and scope.
#[derive(Debug, Clone)]
pub(crate) struct Credential {
    /// The entry's name, safe to log.
    pub(crate) name: String,
    hash: [u8; 32],
    /// The systems it covers.
    pub(crate) scope: Scope,
    /// Whether it holds the operator scope (API keys only): it may read and cancel
    /// the calls of every key.
    pub(crate) operator: bool,
}

/// A set of credentials (all API keys, or all agent tokens).
#[derive(Debug, Clone, Default)]
pub(crate) struct Credentials {
    entries: Vec<Credential>,
}

impl Credentials {
    /// The API keys of a validated configuration.
    pub(crate) fn api_keys(keys: &[ApiKeyConfig]) -> Self {
        Self::build(keys.iter().map(|k| {
            (
                &k.name,
                k.key.as_ref(),
                k.key_sha256.as_deref(),
                &k.systems,
                k.operator,
            )
        }))
    }

    /// The agent tokens of a validated configuration.
    pub(crate) fn agent_tokens(tokens: &[AgentTokenConfig]) -> Self {
        Self::build(tokens.iter().map(|t| {
            (
                &t.name,
                t.token.as_ref(),
                t.token_sha256.as_deref(),
                &t.systems,
                false,
            )
        }))
    }

    fn build<'a>(
        entries: impl Iterator<
            Item = (
                &'a String,
                Option<&'a sapbridge_proto::Secret>,
                Option<&'a str>,
                &'a Vec<String>,
                bool,
            ),
        >,
    ) -> Self {
        let entries = entries
            .filter_map(|(name, clear, hashed, systems, operator)| {
                let hash = match (clear, hashed) {
                    (Some(secret), _) => sha256(secret.expose()),
                    (None, Some(h)) => parse_sha256(h)?,
                    (None, None) => return None,
                };
                Some(Credential {
                    name: name.clone(),
                    hash,
                    scope: Scope::new(systems),
                    operator,
                })
            })
            .collect();
        Self { entries }
    }

    /// The credential whose secret is `presented`, compared in constant time against
    /// every entry.
    pub(crate) fn find(&self, presented: &str) -> Option<&Credential> {
        let hash = sha256(presented);
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.hash.ct_eq(&hash)) {
                found = Some(entry);
            }
        }
        found
    }
}

/// The secret a request presents: `Authorization: Bearer <secret>` or, for clients,
/// `X-API-Key: <secret>`.
pub(crate) fn presented_secret(headers: &HeaderMap, allow_api_key_header: bool) -> Option<&str> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?.trim();
        let (scheme, secret) = value.split_once(' ')?;
        if scheme.eq_ignore_ascii_case("bearer") && !secret.trim().is_empty() {
            return Some(secret.trim());
        }
        return None;
    }
    if allow_api_key_header {
        let value = headers.get("x-api-key")?.to_str().ok()?.trim();
        if !value.is_empty() {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use sapbridge_proto::Secret;

    #[test]
    fn finds_by_clear_or_hashed_secret() {
        let keys = vec![
            ApiKeyConfig {
                name: "a".into(),
                key: Some(Secret::new("alpha")),
                key_sha256: None,
                systems: vec!["*".into()],
                operator: false,
            },
            ApiKeyConfig {
                name: "b".into(),
                key: None,
                key_sha256: Some(hex::encode(sha256("beta"))),
                systems: vec!["PRD".into()],
                operator: true,
            },
        ];
        let creds = Credentials::api_keys(&keys);
        assert_eq!(creds.find("alpha").map(|c| c.name.as_str()), Some("a"));
        let b = creds.find("beta").expect("b");
        assert!(b.scope.covers("PRD") && !b.scope.covers("QAS"));
        assert!(b.operator && !creds.find("alpha").expect("a").operator);
        assert!(creds.find("gamma").is_none());
    }

    #[test]
    fn reads_bearer_and_api_key_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", "k".parse().unwrap());
        assert_eq!(presented_secret(&headers, true), Some("k"));
        assert_eq!(presented_secret(&headers, false), None);
        headers.insert("authorization", "Bearer  t ".parse().unwrap());
        assert_eq!(presented_secret(&headers, true), Some("t"));
        headers.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(presented_secret(&headers, true), None);
    }
}
