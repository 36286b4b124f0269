//! When each API key and agent token was last used: kept in memory as it
//! happens, and written to the queue store (shared by replicas) at most once per
//! [`WRITE_EVERY`] per key or token, never once per request.
//!
//! The first use of a credential since this relay started is written at once;
//! later ones only when the last write is [`WRITE_EVERY`] old. So the store's
//! time lags the truth by less than that, and this relay's own listing merges in
//! the exact time it saw ([`LastUses::seen`]).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::queue::{CredentialKind, CredentialUse};

/// The least time between two writes of one credential's last use.
pub(crate) const WRITE_EVERY: Duration = Duration::from_secs(60);

/// The last uses this relay saw, and when it last wrote each.
#[derive(Debug, Default)]
pub(crate) struct LastUses {
    /// By kind, then name: looked up by `&str`, so a request allocates nothing.
    seen: Mutex<HashMap<CredentialKind, HashMap<String, Seen>>>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    at: OffsetDateTime,
    written: Option<Instant>,
}

impl LastUses {
    /// Notes a use of `name` now; the use to write to the store, if one is due.
    pub(crate) fn used(&self, kind: CredentialKind, name: &str) -> Option<CredentialUse> {
        self.used_at(kind, name, OffsetDateTime::now_utc(), Instant::now())
    }

    fn used_at(
        &self,
        kind: CredentialKind,
        name: &str,
        at: OffsetDateTime,
        now: Instant,
    ) -> Option<CredentialUse> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let names = seen.entry(kind).or_default();
        if !names.contains_key(name) {
            names.insert(name.to_owned(), Seen { at, written: None });
        }
        let entry = names.get_mut(name)?;
        entry.at = entry.at.max(at);
        let due = entry
            .written
            .is_none_or(|written| now.saturating_duration_since(written) >= WRITE_EVERY);
        due.then(|| {
            entry.written = Some(now);
            CredentialUse {
                kind,
                name: name.to_owned(),
                at: entry.at,
            }
        })
    }

    /// The last use this relay saw of `name`, if any.
    pub(crate) fn seen(&self, kind: CredentialKind, name: &str) -> Option<OffsetDateTime> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&kind)
            .and_then(|names| names.get(name))
            .map(|s| s.at)
    }
}

/// Writes `used` to `queue` in the background (a failure is logged: a last use
/// is information, not a reason to refuse a request).
pub(crate) fn write(queue: &std::sync::Arc<dyn crate::queue::Queue>, used: CredentialUse) {
    let queue = std::sync::Arc::clone(queue);
    tokio::spawn(async move {
        if let Err(error) = queue.record_uses(vec![used]).await {
            tracing::debug!(%error, "could not record a key's last use");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_first_use_then_at_most_once_a_minute() {
        let uses = LastUses::default();
        let start = Instant::now();
        let t0 = OffsetDateTime::now_utc();
        let key = CredentialKind::ApiKey;
        let first = uses
            .used_at(key, "flow", t0, start)
            .expect("first use written");
        assert_eq!(first.at, t0);
        let later = t0 + time::Duration::seconds(30);
        assert!(
            uses.used_at(key, "flow", later, start + Duration::from_secs(30))
                .is_none()
        );
        assert_eq!(uses.seen(key, "flow"), Some(later), "seen, not written");
        // Another credential (or kind) has its own minute.
        assert!(
            uses.used_at(CredentialKind::AgentToken, "flow", later, start)
                .is_some()
        );
        let due = uses
            .used_at(
                key,
                "flow",
                t0 + time::Duration::seconds(61),
                start + WRITE_EVERY,
            )
            .expect("written again after a minute");
        assert_eq!(due.at, t0 + time::Duration::seconds(61));
        assert!(uses.seen(key, "nobody").is_none());
    }
}
