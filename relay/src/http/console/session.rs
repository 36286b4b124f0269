//! The console's sessions: in the relay's memory (a restart signs every operator
//! out, and relay replicas do not share them; put sticky sessions in front of
//! several replicas). A session holds the SHA-256 of the operator's API key, never
//! the key, and finds the key again on every request, so a key removed or stripped
//! of its operator scope by a reload ends its sessions at once.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// One signed-in operator.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// The SHA-256 of the API key it signed in with.
    pub(crate) key_hash: [u8; 32],
    /// The token every form of the session carries.
    pub(crate) csrf: String,
    created: Instant,
    last_seen: Instant,
}

/// The sessions of the moment, by the SHA-256 of their id (the id itself is only
/// in the operator's cookie).
#[derive(Debug)]
pub(crate) struct Sessions {
    idle: Duration,
    max: Duration,
    by_id: Mutex<HashMap<[u8; 32], Session>>,
}

/// A random token: 32 bytes, base64url.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether two tokens are equal, compared in constant time.
pub(crate) fn same_token(a: &str, b: &str) -> bool {
    !a.is_empty() && a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// Sessions that end after `idle` without a request, or `max` after sign-in.
    pub(crate) fn new(idle: Duration, max: Duration) -> Self {
        Self {
            idle,
            max,
            by_id: Mutex::default(),
        }
    }

    /// The longest a session lasts (the cookie's `Max-Age`).
    pub(crate) fn max(&self) -> Duration {
        self.max
    }

    /// Starts a session for the key hashing to `key_hash`; its id.
    pub(crate) fn start(&self, key_hash: [u8; 32]) -> String {
        let id = random_token();
        let now = Instant::now();
        let session = Session {
            key_hash,
            csrf: random_token(),
            created: now,
            last_seen: now,
        };
        let mut by_id = self.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        by_id.retain(|_, s| self.live(s, now));
        by_id.insert(digest(&id), session);
        id
    }

    fn live(&self, session: &Session, now: Instant) -> bool {
        now.duration_since(session.last_seen) < self.idle
            && now.duration_since(session.created) < self.max
    }

    /// The live session with `id`; `touch` counts this as the session's latest
    /// request (a page or form; not the live updates, which would keep an
    /// abandoned tab signed in). An expired session is dropped.
    pub(crate) fn find(&self, id: &str, touch: bool) -> Option<Session> {
        let now = Instant::now();
        let key = digest(id);
        let mut by_id = self.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        let session = by_id.get_mut(&key)?;
        if !self.live(session, now) {
            by_id.remove(&key);
            return None;
        }
        if touch {
            session.last_seen = now;
        }
        Some(session.clone())
    }

    /// Ends the session with `id`.
    pub(crate) fn end(&self, id: &str) {
        self.by_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&digest(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle_and_end_on_sign_out() {
        let sessions = Sessions::new(Duration::ZERO, Duration::from_secs(60));
        let id = sessions.start([1; 32]);
        assert!(
            sessions.find(&id, true).is_none(),
            "idle time zero: expired"
        );

        let sessions = Sessions::new(Duration::from_secs(60), Duration::ZERO);
        let id = sessions.start([1; 32]);
        assert!(
            sessions.find(&id, true).is_none(),
            "longest time zero: expired"
        );

        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_secs(60));
        let id = sessions.start([1; 32]);
        let found = sessions.find(&id, true).expect("live session");
        assert_eq!(found.key_hash, [1; 32]);
        assert!(sessions.find("not-an-id", true).is_none());
        sessions.end(&id);
        assert!(sessions.find(&id, true).is_none());
    }

    #[test]
    fn tokens_compare_whole() {
        let token = random_token();
        assert!(same_token(&token, &token.clone()));
        assert!(!same_token(&token, &token[..10]));
        assert!(!same_token("", ""));
    }
}
