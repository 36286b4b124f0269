//! API keys and agent tokens managed through the API (`/v1/admin/keys`,
//! `/v1/admin/agent-tokens`), kept in the queue store so that every relay replica
//! sharing it accepts them. Only the SHA-256 of a key or token is stored; the
//! secret itself is shown once, when it is created. Also when each key and token
//! (of the configuration or of the store) was last used.

use time::OffsetDateTime;

/// A stored API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredKey {
    /// Its name (unique among stored keys, revoked ones included).
    pub(crate) name: String,
    /// The SHA-256 of the key, lower-case hex.
    pub(crate) sha256: String,
    /// The systems it may call (`*`: all).
    pub(crate) systems: Vec<String>,
    /// Whether it holds the operator scope.
    pub(crate) operator: bool,
    /// When it was created.
    pub(crate) created_at: OffsetDateTime,
    /// The name of the key that created it.
    pub(crate) created_by: String,
    /// When it was revoked, if it was.
    pub(crate) revoked_at: Option<OffsetDateTime>,
}

/// The systems of a stored key as the stores keep them (a JSON array).
pub(crate) fn systems_text(systems: &[String]) -> String {
    serde_json::to_string(systems).unwrap_or_else(|_| "[]".to_owned())
}

/// The systems of a stored key from [`systems_text`].
pub(crate) fn systems_of(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// A stored agent token (`/v1/admin/agent-tokens`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredAgentToken {
    /// Its name (unique among stored tokens, revoked ones included).
    pub(crate) name: String,
    /// The SHA-256 of the token, lower-case hex.
    pub(crate) sha256: String,
    /// The systems an agent holding it may serve (explicit names).
    pub(crate) systems: Vec<String>,
    /// When it was created.
    pub(crate) created_at: OffsetDateTime,
    /// The name of the API key that created it.
    pub(crate) created_by: String,
    /// When it was revoked, if it was.
    pub(crate) revoked_at: Option<OffsetDateTime>,
}

/// What a credential is: an API key or an agent token (their names are two
/// separate name spaces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum CredentialKind {
    /// A client's API key.
    ApiKey,
    /// An agent's token.
    AgentToken,
}

impl CredentialKind {
    /// The kind as the stores keep it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::AgentToken => "agent_token",
        }
    }

    /// The kind from [`CredentialKind::as_str`].
    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "api_key" => Some(Self::ApiKey),
            "agent_token" => Some(Self::AgentToken),
            _ => None,
        }
    }
}

/// When a key or token (of the configuration or of the store) was last used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CredentialUse {
    /// An API key or an agent token.
    pub(crate) kind: CredentialKind,
    /// Its name.
    pub(crate) name: String,
    /// When it was last used (a later time replaces an earlier one, never the
    /// reverse).
    pub(crate) at: OffsetDateTime,
}
