//! The signature that lets one relay replica hand a pass-through request to
//! another: the `Sapbridge-Forwarded` header.
//!
//! The first replica authenticates the client (API key) and checks its scope;
//! the replica it forwards to believes only what the header proves: that a
//! replica holding the cluster secret sent this method and path, to this
//! replica, just now, once, on behalf of this caller. The header is
//!
//! ```text
//! Sapbridge-Forwarded: <claims>.<mac>
//! ```
//!
//! with `claims` the unpadded base64url of a JSON object (`v`, `from`, `to`,
//! `method`, `target` = path and query, `ts` = Unix seconds, `nonce`, and
//! `caller` = the API key's `name`, `systems` and `operator` as the first replica
//! established them) and `mac` the unpadded base64url of HMAC-SHA-256, keyed with
//! the cluster secret, over `sapbridge-forwarded-v1.` followed by `claims`.
//!
//! Why an HMAC over the head rather than the secret as a bearer: the secret never
//! crosses the network, a captured header is good for one request to one replica
//! (method, path, target replica and caller are signed), for at most
//! [`MAX_SKEW_SECS`] either side of its time, and only once (the nonce is
//! remembered for as long as the time would pass). The body is not signed (it is
//! streamed, and the head must go before it): keep replica-to-replica traffic on
//! a network only the replicas reach.
//!
//! The header is also the hop marker: a replica never forwards a request that
//! carries one, so a request crosses at most one replica-to-replica hop.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sapbridge_proto::Secret;
use serde::{Deserialize, Serialize};

/// The header that carries the signed claims of a forwarded request.
pub(crate) const FORWARDED_HEADER: &str = "sapbridge-forwarded";

/// How far a forwarded request's time may lie from the receiver's clock.
pub(crate) const MAX_SKEW_SECS: u64 = 30;

/// The version of the claims this relay writes and reads.
const VERSION: u32 = 1;

/// What the MAC covers before the claims (domain separation).
const MAC_CONTEXT: &[u8] = b"sapbridge-forwarded-v1.";

/// The most nonces remembered at once; past it, forwarded requests are refused
/// (busy) until old ones expire.
const MAX_NONCES: usize = 500_000;

/// The longest header accepted (claims with a long scope list fit easily).
const MAX_HEADER_BYTES: usize = 16 * 1024;

type HmacSha256 = Hmac<sha2_hmac::Sha256>;

/// The caller of a forwarded request, as the first replica authenticated it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ForwardedCaller {
    /// The API key's configured name.
    pub(crate) name: String,
    /// The systems its scope covers (`"*"`: all).
    pub(crate) systems: Vec<String>,
    /// Whether it holds the operator scope.
    pub(crate) operator: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Claims {
    v: u32,
    from: String,
    to: String,
    method: String,
    target: String,
    ts: u64,
    nonce: String,
    caller: ForwardedCaller,
}

/// Why a forwarded request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    /// This replica has no cluster secret.
    #[error("this relay takes no forwarded requests (no cluster secret configured)")]
    NotClustered,
    /// The header is not `<claims>.<mac>` in base64url, or too long.
    #[error("the Sapbridge-Forwarded header is malformed")]
    Malformed,
    /// The MAC does not check with this replica's secret.
    #[error("the Sapbridge-Forwarded signature does not match (another cluster secret?)")]
    BadSignature,
    /// Signed, but for another request, replica or version.
    #[error("the forwarded request does not match its signature ({0})")]
    Mismatch(&'static str),
    /// Its time is too far from this replica's clock.
    #[error("the forwarded request's time is more than {MAX_SKEW_SECS} s off (clocks in sync?)")]
    Stale,
    /// The nonce was seen before.
    #[error("the forwarded request was already received once (replayed)")]
    Replayed,
    /// Too many nonces to remember.
    #[error("too many forwarded requests to remember; retry")]
    Busy,
}

/// Signs and checks `Sapbridge-Forwarded` headers with the cluster secret.
pub(crate) struct Signer {
    secret: Option<Secret>,
    nonces: Mutex<Nonces>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("clustered", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Nonces {
    seen: HashSet<String>,
    /// Arrival order, with when each may be forgotten.
    expiry: VecDeque<(Instant, String)>,
}

impl Nonces {
    /// Remembers `nonce` unless already known; `Err` when known or full.
    fn remember(&mut self, nonce: &str, now: Instant) -> Result<(), Refused> {
        while let Some((until, _)) = self.expiry.front()
            && *until <= now
        {
            if let Some((_, old)) = self.expiry.pop_front() {
                self.seen.remove(&old);
            }
        }
        if self.seen.contains(nonce) {
            return Err(Refused::Replayed);
        }
        if self.seen.len() >= MAX_NONCES {
            return Err(Refused::Busy);
        }
        // A request signed up to MAX_SKEW_SECS ahead stays acceptable until
        // twice that from now.
        let keep = Duration::from_secs(2 * MAX_SKEW_SECS + 1);
        self.seen.insert(nonce.to_owned());
        self.expiry.push_back((now + keep, nonce.to_owned()));
        Ok(())
    }
}

/// Seconds since the Unix epoch on this machine's clock.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Signer {
    /// A signer with the cluster secret, or none (no forwarding either way).
    pub(crate) fn new(secret: Option<Secret>) -> Self {
        Self {
            secret,
            nonces: Mutex::default(),
        }
    }

    /// Whether this replica has a cluster secret.
    pub(crate) fn is_clustered(&self) -> bool {
        self.secret.is_some()
    }

    fn mac(secret: &Secret, claims: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(MAC_CONTEXT);
        mac.update(claims.as_bytes());
        mac
    }

    /// The header value for `method` `target` sent from replica `from` to replica
    /// `to` on behalf of `caller`; `None` without a cluster secret.
    pub(crate) fn sign(
        &self,
        from: &str,
        to: &str,
        method: &str,
        target: &str,
        caller: ForwardedCaller,
    ) -> Option<String> {
        let secret = self.secret.as_ref()?;
        let claims = Claims {
            v: VERSION,
            from: from.to_owned(),
            to: to.to_owned(),
            method: method.to_owned(),
            target: target.to_owned(),
            ts: unix_now(),
            nonce: hex::encode(rand::random::<[u8; 16]>()),
            caller,
        };
        let json = serde_json::to_vec(&claims).ok()?;
        let encoded = URL_SAFE_NO_PAD.encode(json);
        let tag = Self::mac(secret, &encoded).finalize().into_bytes();
        Some(format!("{encoded}.{}", URL_SAFE_NO_PAD.encode(tag)))
    }

    /// Checks a `Sapbridge-Forwarded` header received by replica `me` with a
    /// request of `method` and `target`; returns the caller it vouches for. The
    /// MAC is checked (in constant time) before anything of the claims is read.
    ///
    /// # Errors
    /// [`Refused`] saying why (never quoting the secret).
    pub(crate) fn verify(
        &self,
        header: &[u8],
        me: Option<&str>,
        method: &str,
        target: &str,
    ) -> Result<ForwardedCaller, Refused> {
        let (Some(secret), Some(me)) = (self.secret.as_ref(), me) else {
            return Err(Refused::NotClustered);
        };
        if header.len() > MAX_HEADER_BYTES {
            return Err(Refused::Malformed);
        }
        let text = std::str::from_utf8(header).map_err(|_| Refused::Malformed)?;
        let (encoded, tag) = text.split_once('.').ok_or(Refused::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| Refused::Malformed)?;
        Self::mac(secret, encoded)
            .verify_slice(&tag)
            .map_err(|_| Refused::BadSignature)?;
        let json = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| Refused::Malformed)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| Refused::Malformed)?;
        if claims.v != VERSION {
            return Err(Refused::Mismatch("version"));
        }
        if claims.to != me {
            return Err(Refused::Mismatch("addressed to another replica"));
        }
        if claims.method != method {
            return Err(Refused::Mismatch("method"));
        }
        if claims.target != target {
            return Err(Refused::Mismatch("path or query"));
        }
        if unix_now().abs_diff(claims.ts) > MAX_SKEW_SECS {
            return Err(Refused::Stale);
        }
        if claims.nonce.len() < 16 || claims.nonce.len() > 64 {
            return Err(Refused::Mismatch("nonce"));
        }
        self.nonces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remember(&claims.nonce, Instant::now())?;
        tracing::debug!(from = %claims.from, "forwarded request verified");
        Ok(claims.caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> ForwardedCaller {
        ForwardedCaller {
            name: "flow".into(),
            systems: vec!["SIM".into()],
            operator: false,
        }
    }

    fn signer(secret: &str) -> Signer {
        Signer::new(Some(Secret::from(secret.to_owned())))
    }

    const PATH: &str = "/v1/systems/SIM/http/x?a=1";

    #[test]
    fn a_signed_request_passes_once_and_only_where_it_was_meant() {
        let a = signer("a-secret-of-the-cluster-0123456789");
        let b = signer("a-secret-of-the-cluster-0123456789");
        let header = a.sign("r_a", "r_b", "POST", PATH, caller()).unwrap();
        assert!(!header.contains("a-secret"), "the secret never travels");
        assert_eq!(
            b.verify(header.as_bytes(), Some("r_b"), "POST", PATH),
            Ok(caller())
        );
        assert_eq!(
            b.verify(header.as_bytes(), Some("r_b"), "POST", PATH),
            Err(Refused::Replayed)
        );
        let header = a.sign("r_a", "r_b", "POST", PATH, caller()).unwrap();
        assert!(matches!(
            b.verify(header.as_bytes(), Some("r_c"), "POST", PATH),
            Err(Refused::Mismatch(_))
        ));
        assert!(matches!(
            b.verify(header.as_bytes(), Some("r_b"), "GET", PATH),
            Err(Refused::Mismatch(_))
        ));
        assert!(matches!(
            b.verify(
                header.as_bytes(),
                Some("r_b"),
                "POST",
                "/v1/systems/SIM/http/y"
            ),
            Err(Refused::Mismatch(_))
        ));
    }

    #[test]
    fn forged_tampered_and_unclustered_are_refused() {
        let a = signer("a-secret-of-the-cluster-0123456789");
        let other = signer("another-secret-entirely-0123456789");
        let header = other.sign("r_a", "r_b", "GET", PATH, caller()).unwrap();
        assert_eq!(
            a.verify(header.as_bytes(), Some("r_b"), "GET", PATH),
            Err(Refused::BadSignature)
        );
        // Widening the signed scope breaks the signature.
        let header = a.sign("r_a", "r_b", "GET", PATH, caller()).unwrap();
        let (claims, tag) = header.split_once('.').unwrap();
        let json = String::from_utf8(URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
        let widened = URL_SAFE_NO_PAD.encode(json.replace("[\"SIM\"]", "[\"*\"]"));
        assert_eq!(
            a.verify(
                format!("{widened}.{tag}").as_bytes(),
                Some("r_b"),
                "GET",
                PATH
            ),
            Err(Refused::BadSignature)
        );
        for garbage in ["", ".", "abc", "a.b.c", "!!.!!"] {
            assert!(
                a.verify(garbage.as_bytes(), Some("r_b"), "GET", PATH)
                    .is_err(),
                "{garbage:?}"
            );
        }
        let none = Signer::new(None);
        assert_eq!(none.sign("r_a", "r_b", "GET", PATH, caller()), None);
        assert_eq!(
            none.verify(header.as_bytes(), Some("r_b"), "GET", PATH),
            Err(Refused::NotClustered)
        );
    }

    #[test]
    fn nonces_are_forgotten_after_the_window() {
        let mut nonces = Nonces::default();
        let start = Instant::now();
        assert_eq!(nonces.remember("n1", start), Ok(()));
        assert_eq!(nonces.remember("n1", start), Err(Refused::Replayed));
        let later = start + Duration::from_secs(2 * MAX_SKEW_SECS + 2);
        assert_eq!(nonces.remember("n2", later), Ok(()));
        assert_eq!(nonces.seen.len(), 1, "n1 was forgotten");
    }
}
