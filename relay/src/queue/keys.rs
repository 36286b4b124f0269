//! API keys managed through the API (`/v1/admin/keys`), kept in the queue store so
//! that every relay replica sharing it accepts them. Only the SHA-256 of a key is
//! stored; the key itself is shown once, when it is created.

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
