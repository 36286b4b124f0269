//! SAP Gateway's CSRF protection, handled by the agent for writes.
//!
//! SAP Gateway refuses a modifying request (`POST`, `PUT`, `PATCH`, `MERGE`,
//! `DELETE`) unless it carries a token fetched earlier with
//! `GET … X-CSRF-Token: Fetch` *and* the session cookies that fetch opened. The agent
//! keeps one token and its cookies per system ([`CsrfCache`]), fetches one before the
//! first write, and when a write still answers `403` with `X-CSRF-Token: Required`
//! (the token expired with its session) refetches once and retries once.
//!
//! The token and cookies are credentials: they never appear in logs or `Debug`.

use http::header::{HeaderMap, HeaderValue, SET_COOKIE};
use http::{Method, StatusCode};
use sapbridge_proto::Secret;
use tokio::sync::Mutex;

/// The CSRF header, in SAP's spelling (header names are case-insensitive).
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// Whether a method needs a CSRF token: anything but the safe methods.
pub(crate) fn needs_token(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Whether a response says the token was missing or stale.
pub(crate) fn token_required(status: StatusCode, headers: &HeaderMap) -> bool {
    status == StatusCode::FORBIDDEN
        && headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("required"))
}

/// A fetched token and the session cookies that go with it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct CsrfToken {
    /// The token value.
    pub(crate) token: Secret,
    /// `name=value` pairs to send as `Cookie`.
    pub(crate) cookies: Vec<Secret>,
}

impl std::fmt::Debug for CsrfToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsrfToken")
            .field("cookies", &self.cookies.len())
            .finish_non_exhaustive()
    }
}

impl CsrfToken {
    /// Reads a fetch response: its token header and its `Set-Cookie` pairs. `None`
    /// when it carries no token.
    pub(crate) fn from_response(headers: &HeaderMap) -> Option<Self> {
        let token = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("required"))?;
        Some(Self {
            token: Secret::new(token),
            cookies: cookie_pairs(headers),
        })
    }

    /// The `Cookie` header value: the client's cookies (if any) and the session's.
    pub(crate) fn cookie_header(&self, client: Option<&HeaderValue>) -> Option<HeaderValue> {
        let mut parts: Vec<&str> = client.and_then(|v| v.to_str().ok()).into_iter().collect();
        parts.extend(self.cookies.iter().map(Secret::expose));
        if parts.is_empty() {
            return None;
        }
        let mut value = HeaderValue::from_str(&parts.join("; ")).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

/// The `name=value` part of every `Set-Cookie`.
fn cookie_pairs(headers: &HeaderMap) -> Vec<Secret> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::trim)
        .filter(|pair| pair.contains('='))
        .map(Secret::new)
        .collect()
}

/// One system's current token. Fetches are serialised so concurrent writes share
/// one fetch instead of stampeding the backend.
#[derive(Debug, Default)]
pub(crate) struct CsrfCache {
    current: Mutex<Option<CsrfToken>>,
}

impl CsrfCache {
    /// The cached token, or a new one from `fetch` (run under the cache's lock; a
    /// fetch that yields no token caches nothing).
    ///
    /// # Errors
    /// `fetch`'s error.
    pub(crate) async fn get_or_fetch<F, Fut, E>(&self, fetch: F) -> Result<Option<CsrfToken>, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<CsrfToken>, E>>,
    {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref() {
            return Ok(Some(token.clone()));
        }
        let fetched = fetch().await?;
        current.clone_from(&fetched);
        Ok(fetched)
    }

    /// Forgets `stale` (unless another request already replaced it), so the next
    /// [`CsrfCache::get_or_fetch`] fetches anew.
    pub(crate) async fn invalidate(&self, stale: Option<&CsrfToken>) {
        let mut current = self.current.lock().await;
        if current.as_ref() == stale {
            *current = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_token_and_cookies_from_a_fetch_answer() {
        let mut headers = HeaderMap::new();
        headers.insert(CSRF_HEADER, "tok123".parse().unwrap());
        headers.append(
            SET_COOKIE,
            "SAP_SESSIONID_X=abc; path=/; HttpOnly".parse().unwrap(),
        );
        headers.append(SET_COOKIE, "sap-usercontext=c=001; path=/".parse().unwrap());
        let token = CsrfToken::from_response(&headers).unwrap();
        assert_eq!(token.token.expose(), "tok123");
        let client = HeaderValue::from_static("mine=1");
        let cookie = token.cookie_header(Some(&client)).unwrap();
        assert_eq!(
            cookie.to_str().unwrap(),
            "mine=1; SAP_SESSIONID_X=abc; sap-usercontext=c=001"
        );
        assert!(!format!("{token:?}").contains("tok123"));
    }

    #[test]
    fn required_answers_are_recognised() {
        let mut headers = HeaderMap::new();
        headers.insert(CSRF_HEADER, "Required".parse().unwrap());
        assert!(token_required(StatusCode::FORBIDDEN, &headers));
        assert!(!token_required(StatusCode::OK, &headers));
        assert!(CsrfToken::from_response(&headers).is_none());
        assert!(needs_token(&Method::POST));
        assert!(needs_token(&Method::from_bytes(b"MERGE").unwrap()));
        assert!(!needs_token(&Method::GET));
    }

    #[tokio::test]
    async fn cache_fetches_once_and_invalidates_only_the_stale_token() {
        let cache = CsrfCache::default();
        let token = |t: &str| CsrfToken {
            token: Secret::new(t),
            cookies: Vec::new(),
        };
        let first = cache
            .get_or_fetch(|| async { Ok::<_, ()>(Some(token("a"))) })
            .await
            .unwrap();
        let again = cache
            .get_or_fetch(|| async { Ok::<_, ()>(Some(token("b"))) })
            .await
            .unwrap();
        assert_eq!(first, again);
        cache.invalidate(Some(&token("other"))).await;
        assert_eq!(
            cache.get_or_fetch(|| async { Err(()) }).await.unwrap(),
            first
        );
        cache.invalidate(first.as_ref()).await;
        let fresh = cache
            .get_or_fetch(|| async { Ok::<_, ()>(Some(token("c"))) })
            .await
            .unwrap();
        assert_eq!(fresh, Some(token("c")));
    }
}
