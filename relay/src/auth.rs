//! Authentication of clients (API keys) and agents (agent tokens).
//!
//! Only SHA-256 hashes of keys and tokens are kept in memory. A presented secret is
//! hashed and compared against every configured hash in constant time, so neither
//! timing nor an early exit tells which entry came close. Secrets are never logged.
//!
//! The [`Keyring`] holds the current keys and tokens and takes new ones without a
//! restart (the relay's SIGHUP for the file's, a refresh from the queue store for
//! those created through the API): requests are judged by the keys of the moment,
//! and agent sessions whose token was revoked, or no longer covers a system they
//! serve, are told to end ([`Hold::revoked`]); the others stay connected. It also
//! keeps when each key and token was last used ([`crate::last_used`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tokio_util::sync::CancellationToken;

use http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::config::{ALL_SYSTEMS, AgentTokenConfig, ApiKeyConfig, parse_sha256, sha256};
use crate::limits::Rate;

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

impl Credential {
    /// The SHA-256 of its secret.
    pub(crate) fn hash(&self) -> [u8; 32] {
        self.hash
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
    /// Its limits (API keys only).
    pub(crate) limits: KeyLimits,
    /// The bytes of the secret that signs its calls' webhooks (API keys only).
    webhook_secret: Option<Arc<[u8]>>,
}

/// An API key's limits (see `crate::limits`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct KeyLimits {
    /// Its rate, if it has one.
    pub(crate) rate: Option<Rate>,
    /// The most of its calls queued or running at once, if capped.
    pub(crate) max_in_flight: Option<u32>,
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
            let limits = KeyLimits {
                rate: k.rate_per_sec.map(|rate| Rate::new(rate, k.burst)),
                max_in_flight: k.max_in_flight,
            };
            (
                &k.name,
                k.key.as_ref(),
                k.key_sha256.as_deref(),
                &k.systems,
                (
                    k.operator,
                    limits,
                    k.webhook_secret
                        .as_ref()
                        .and_then(|s| crate::config::webhook_secret_bytes(s.expose()))
                        .map(Arc::from),
                ),
            )
        }))
    }

    /// The limits of the API key named `name`, if there is one.
    pub(crate) fn limits_of(&self, name: &str) -> Option<KeyLimits> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.limits)
    }

    /// The agent tokens of a validated configuration.
    pub(crate) fn agent_tokens(tokens: &[AgentTokenConfig]) -> Self {
        Self::build(tokens.iter().map(|t| {
            (
                &t.name,
                t.token.as_ref(),
                t.token_sha256.as_deref(),
                &t.systems,
                (false, KeyLimits::default(), None),
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
                (bool, KeyLimits, Option<Arc<[u8]>>),
            ),
        >,
    ) -> Self {
        let entries = entries
            .filter_map(
                |(name, clear, hashed, systems, (operator, limits, webhook_secret))| {
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
                        limits,
                        webhook_secret,
                    })
                },
            )
            .collect();
        Self { entries }
    }

    /// The entry holding the same secret as `credential`, if any.
    fn same_secret(&self, credential: &Credential) -> Option<&Credential> {
        self.entries
            .iter()
            .find(|e| bool::from(e.hash.ct_eq(&credential.hash)))
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

/// The API keys and agent tokens of the moment, replaceable while the relay runs.
#[derive(Debug)]
pub(crate) struct Keyring {
    keys: RwLock<Arc<(Credentials, Credentials)>>,
    /// API keys created through the API and kept in the queue store (see
    /// `crate::http::admin`), refreshed from the store.
    managed: RwLock<Arc<Credentials>>,
    /// Agent tokens created through the API and kept in the queue store,
    /// refreshed from the store.
    managed_tokens: RwLock<Arc<Credentials>>,
    holders: Mutex<Vec<Holder>>,
    next_hold: std::sync::atomic::AtomicU64,
    /// When keys and tokens were last used, and last written to the store.
    uses: crate::last_used::LastUses,
}

/// An agent session authenticated by a token, to be told when that ends.
#[derive(Debug)]
struct Holder {
    id: u64,
    token: Credential,
    systems: Vec<String>,
    revoked: CancellationToken,
    why: Arc<Mutex<Option<String>>>,
}

/// A session's hold on its token: [`Hold::revoked`] resolves when the token was
/// revoked or no longer covers one of the session's systems. Dropped, the hold ends.
#[derive(Debug)]
pub(crate) struct Hold {
    keyring: Arc<Keyring>,
    id: u64,
    /// The token's name.
    token: String,
    /// Cancelled when the session must end.
    pub(crate) revoked: CancellationToken,
    why: Arc<Mutex<Option<String>>>,
}

impl Hold {
    /// A hold that is never revoked (session tests without keys).
    #[cfg(test)]
    pub(crate) fn never_revoked() -> Self {
        Self {
            keyring: Arc::new(Keyring::new(Credentials::default(), Credentials::default())),
            id: 0,
            token: String::new(),
            revoked: CancellationToken::new(),
            why: Arc::default(),
        }
    }

    /// Notes that the session's agent is still there: its token's last use to
    /// write to the store, if one is due (see [`crate::last_used`]).
    pub(crate) fn used(&self) -> Option<crate::queue::CredentialUse> {
        self.keyring
            .uses
            .used(crate::queue::CredentialKind::AgentToken, &self.token)
    }

    /// The system the token no longer covers (after [`Hold::revoked`]).
    pub(crate) fn system_lost(&self) -> String {
        self.why
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_default()
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.keyring
            .holders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|h| h.id != self.id);
    }
}

impl Keyring {
    /// A keyring with `api_keys` and `agent_tokens`.
    pub(crate) fn new(api_keys: Credentials, agent_tokens: Credentials) -> Self {
        Self {
            keys: RwLock::new(Arc::new((api_keys, agent_tokens))),
            managed: RwLock::default(),
            managed_tokens: RwLock::default(),
            holders: Mutex::default(),
            next_hold: std::sync::atomic::AtomicU64::new(1),
            uses: crate::last_used::LastUses::default(),
        }
    }

    fn keys(&self) -> Arc<(Credentials, Credentials)> {
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn managed(&self) -> Arc<Credentials> {
        Arc::clone(&self.managed.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn managed_tokens(&self) -> Arc<Credentials> {
        Arc::clone(
            &self
                .managed_tokens
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// When keys and tokens were last used (see [`crate::last_used`]).
    pub(crate) fn uses(&self) -> &crate::last_used::LastUses {
        &self.uses
    }

    /// The API key whose secret is `presented`: one of the configuration's, else
    /// one created through the API.
    pub(crate) fn api_key(&self, presented: &str) -> Option<Credential> {
        if let Some(found) = self.keys().0.find(presented) {
            return Some(found.clone());
        }
        self.managed().find(presented).cloned()
    }

    /// Takes the stored keys of the moment (those not revoked).
    pub(crate) fn set_managed(&self, keys: &[crate::queue::StoredKey]) {
        let entries = keys
            .iter()
            .filter(|k| k.revoked_at.is_none())
            .filter_map(|k| {
                Some(Credential {
                    name: k.name.clone(),
                    hash: parse_sha256(&k.sha256)?,
                    scope: Scope::new(&k.systems),
                    operator: k.operator,
                    limits: KeyLimits::default(),
                    webhook_secret: None,
                })
            })
            .collect();
        *self.managed.write().unwrap_or_else(PoisonError::into_inner) =
            Arc::new(Credentials { entries });
    }

    /// The configuration's API keys: name, systems and operator scope.
    pub(crate) fn configured_keys(&self) -> Vec<(String, Vec<String>, bool)> {
        self.keys()
            .0
            .entries
            .iter()
            .map(|e| (e.name.clone(), e.scope.systems(), e.operator))
            .collect()
    }

    /// The API key whose secret hashes to `hash` (SHA-256) now, after any reload:
    /// how a console session finds its key again without keeping the secret.
    pub(crate) fn api_key_by_hash(&self, hash: &[u8; 32]) -> Option<Credential> {
        let keys = self.keys();
        let managed = self.managed();
        let mut found = None;
        for entry in keys.0.entries.iter().chain(&managed.entries).rev() {
            if bool::from(entry.hash.ct_eq(hash)) {
                found = Some(entry.clone());
            }
        }
        found
    }

    /// The limits of the API key named `name` now (after any reload).
    pub(crate) fn limits_of(&self, name: &str) -> Option<KeyLimits> {
        self.keys().0.limits_of(name)
    }

    /// The bytes of the webhook secret of the API key named `name` now (after
    /// any reload), if it has one.
    pub(crate) fn webhook_secret(&self, name: &str) -> Option<Arc<[u8]>> {
        self.keys()
            .0
            .entries
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.webhook_secret.clone())
    }

    /// The agent token whose secret is `presented`: one of the configuration's,
    /// else one created through the API.
    pub(crate) fn agent_token(&self, presented: &str) -> Option<Credential> {
        if let Some(found) = self.keys().1.find(presented) {
            return Some(found.clone());
        }
        self.managed_tokens().find(presented).cloned()
    }

    /// The configuration's agent tokens: name and systems.
    pub(crate) fn configured_tokens(&self) -> Vec<(String, Vec<String>)> {
        self.keys()
            .1
            .entries
            .iter()
            .map(|e| (e.name.clone(), e.scope.systems()))
            .collect()
    }

    /// The systems the agent tokens name now (the configuration's, after any
    /// reload, and the stored ones not revoked): the systems the relay knows.
    pub(crate) fn token_systems(&self) -> std::collections::BTreeSet<String> {
        let file = self.keys();
        let stored = self.managed_tokens();
        file.1
            .entries
            .iter()
            .chain(&stored.entries)
            .flat_map(|e| e.scope.systems())
            .collect()
    }

    /// Whether an agent token of the moment names `system`.
    pub(crate) fn token_serves(&self, system: &str) -> bool {
        let file = self.keys();
        let stored = self.managed_tokens();
        file.1
            .entries
            .iter()
            .chain(&stored.entries)
            .any(|e| e.scope.covers(system))
    }

    /// Takes the stored agent tokens of the moment (those not revoked); tells
    /// every session whose token is gone to end. Returns how many were told.
    pub(crate) fn set_managed_tokens(&self, tokens: &[crate::queue::StoredAgentToken]) -> usize {
        let entries = tokens
            .iter()
            .filter(|t| t.revoked_at.is_none())
            .filter_map(|t| {
                Some(Credential {
                    name: t.name.clone(),
                    hash: parse_sha256(&t.sha256)?,
                    scope: Scope::new(&t.systems),
                    operator: false,
                    limits: KeyLimits::default(),
                    webhook_secret: None,
                })
            })
            .collect();
        let managed = Credentials { entries };
        let holders = self.holders.lock().unwrap_or_else(PoisonError::into_inner);
        let revoked = end_lost(&holders, &self.keys().1, &managed);
        *self
            .managed_tokens
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(managed);
        revoked
    }

    /// Holds `token` for a session serving `systems`, until the hold is dropped.
    pub(crate) fn hold(self: &Arc<Self>, token: &Credential, systems: &[String]) -> Hold {
        let id = self
            .next_hold
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let revoked = CancellationToken::new();
        let why = Arc::default();
        self.holders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Holder {
                id,
                token: token.clone(),
                systems: systems.to_vec(),
                revoked: revoked.clone(),
                why: Arc::clone(&why),
            });
        // Keys replaced between the token's check and this hold: judged now.
        if let Some(system) = lost_system(token, systems, &self.keys().1, &self.managed_tokens()) {
            *why.lock().unwrap_or_else(PoisonError::into_inner) = Some(system.clone());
            revoked.cancel();
        }
        Hold {
            keyring: Arc::clone(self),
            id,
            token: token.name.clone(),
            revoked,
            why,
        }
    }

    /// Takes new keys and tokens; tells every session whose token is gone, or no
    /// longer covers one of its systems, to end. Returns how many were told.
    pub(crate) fn replace(&self, api_keys: Credentials, agent_tokens: Credentials) -> usize {
        let holders = self.holders.lock().unwrap_or_else(PoisonError::into_inner);
        let revoked = end_lost(&holders, &agent_tokens, &self.managed_tokens());
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) =
            Arc::new((api_keys, agent_tokens));
        revoked
    }
}

/// The first of `systems` that neither the configuration's `file` tokens nor the
/// `stored` ones let the holder of `token` serve any more.
fn lost_system<'a>(
    token: &Credential,
    systems: &'a [String],
    file: &Credentials,
    stored: &Credentials,
) -> Option<&'a String> {
    let in_file = file.same_secret(token);
    let in_store = stored.same_secret(token);
    systems.iter().find(|system| {
        !in_file.is_some_and(|t| t.scope.covers(system))
            && !in_store.is_some_and(|t| t.scope.covers(system))
    })
}

/// Tells each of `holders` whose token `file` and `stored` no longer hold (or
/// no longer cover one of its systems) to end; how many were told.
fn end_lost(holders: &[Holder], file: &Credentials, stored: &Credentials) -> usize {
    let mut revoked = 0;
    for holder in holders {
        if holder.revoked.is_cancelled() {
            continue;
        }
        if let Some(system) = lost_system(&holder.token, &holder.systems, file, stored) {
            *holder.why.lock().unwrap_or_else(PoisonError::into_inner) = Some(system.clone());
            holder.revoked.cancel();
            revoked += 1;
        }
    }
    revoked
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
                rate_per_sec: None,
                burst: None,
                max_in_flight: None,
                webhook_secret: None,
            },
            ApiKeyConfig {
                name: "b".into(),
                key: None,
                key_sha256: Some(hex::encode(sha256("beta"))),
                systems: vec!["PRD".into()],
                operator: true,
                rate_per_sec: Some(2.0),
                burst: None,
                max_in_flight: Some(3),
                webhook_secret: None,
            },
        ];
        let creds = Credentials::api_keys(&keys);
        assert_eq!(creds.find("alpha").map(|c| c.name.as_str()), Some("a"));
        let b = creds.find("beta").expect("b");
        assert!(b.scope.covers("PRD") && !b.scope.covers("QAS"));
        assert!(b.operator && !creds.find("alpha").expect("a").operator);
        assert_eq!(b.limits.max_in_flight, Some(3));
        assert_eq!(b.limits.rate, Some(Rate::new(2.0, None)));
        assert_eq!(creds.limits_of("a"), Some(KeyLimits::default()));
        assert_eq!(creds.limits_of("nobody"), None);
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
