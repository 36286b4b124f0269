//! The request-target a pass-through request reaches the backend with, built byte
//! for byte, and the path below the base URL that the allowlist is checked on.
//!
//! The URI is the base URL's scheme and authority, the base URL's path, the
//! request's path and `?query`, put together as text and parsed once by `http`
//! (which validates but never normalises: no dot-segment resolution, no stripping
//! of tabs or newlines, no percent-encoding). hyper sends its path and query as the
//! request-target unchanged. A URI whose path or query differs from what was put in
//! (the parser cut a fragment, say) is refused, so the path below the base URL that
//! [`BaseUrl::below`] returns is exactly what the backend receives, and that is
//! what the allowlist sees.
//!
//! The query is passed on as the client sent it (the agent does not restrict it),
//! but only as printable ASCII without `#`: nothing in it can end the request line
//! or be cut off as a fragment, and nothing in it is part of the path.

use http::Uri;
use http::uri::{Authority, Parts, PathAndQuery, Scheme};

use super::paths::PathError;

/// Why a request cannot go to the backend as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TargetError {
    /// The path failed its checks (`paths.rs`).
    #[error(transparent)]
    Path(#[from] PathError),
    /// The query holds a byte that could end the request line or the query.
    #[error(
        "the query holds the byte {0:#04x}, which the agent does not forward (percent-encode it)"
    )]
    QueryByte(u8),
    /// `http` refused the URI (too long, say).
    #[error("the backend URL is not a valid request URI: {0}")]
    Invalid(String),
    /// The URI would not carry the path or query as given.
    #[error("the backend would receive a different path or query than the one requested")]
    Rewritten,
    /// The allowlist does not allow the path.
    #[error("the agent does not allow the path {path:?} on system {system}")]
    NotAllowed {
        /// The path below the base URL.
        path: String,
        /// The system.
        system: String,
    },
}

/// The parts of a backend's base URL each request's URI is built from.
#[derive(Debug, Clone)]
pub(crate) struct BaseUrl {
    scheme: Scheme,
    authority: Authority,
    /// The base URL's path without a trailing `/` (`""` for the root).
    path: String,
}

impl BaseUrl {
    /// Takes the parts of a parsed `http://` or `https://` URL.
    ///
    /// # Errors
    /// When the URL has credentials, a query or a fragment (none of which would
    /// reach the backend as meant), or its parts are not valid in a request URI.
    pub(crate) fn new(url: &url::Url) -> Result<Self, String> {
        if !url.username().is_empty() || url.password().is_some() {
            return Err("base_url must not hold credentials (use user and password_file)".into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("base_url must not have a query or a fragment".into());
        }
        let scheme = Scheme::try_from(url.scheme()).map_err(|e| e.to_string())?;
        let authority =
            Authority::try_from(&url[url::Position::BeforeHost..url::Position::AfterPort])
                .map_err(|e| format!("base_url's host and port: {e}"))?;
        let path = url.path().trim_end_matches('/').to_owned();
        Ok(Self {
            scheme,
            authority,
            path,
        })
    }

    /// The URI for `path` (starting with `/`) and `query` below this base, exactly
    /// as given.
    ///
    /// # Errors
    /// [`TargetError::QueryByte`] for a query byte outside printable ASCII or `#`,
    /// [`TargetError::Invalid`] when `http` refuses the URI,
    /// [`TargetError::Rewritten`] when it would not carry `path` and `query` as given.
    pub(crate) fn uri(&self, path: &str, query: Option<&str>) -> Result<Uri, TargetError> {
        if let Some(&byte) = query
            .unwrap_or_default()
            .as_bytes()
            .iter()
            .find(|&&b| !(0x21..=0x7e).contains(&b) || b == b'#')
        {
            return Err(TargetError::QueryByte(byte));
        }
        let path_len = self.path.len() + path.len();
        let mut text = String::with_capacity(path_len + query.map_or(0, |q| q.len() + 1));
        text.push_str(&self.path);
        text.push_str(path);
        if let Some(query) = query {
            text.push('?');
            text.push_str(query);
        }
        let path_and_query = PathAndQuery::try_from(text.as_str())
            .map_err(|e| TargetError::Invalid(e.to_string()))?;
        if path_and_query.path() != &text[..path_len] || path_and_query.query() != query {
            return Err(TargetError::Rewritten);
        }
        let mut parts = Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(path_and_query);
        Uri::from_parts(parts).map_err(|e| TargetError::Invalid(e.to_string()))
    }

    /// The path `uri` (one of [`BaseUrl::uri`]'s) reaches the backend with, minus
    /// the base URL's path.
    ///
    /// # Errors
    /// [`TargetError::Rewritten`] when that path is not below the base URL's.
    pub(crate) fn below<'u>(&self, uri: &'u Uri) -> Result<&'u str, TargetError> {
        uri.path()
            .strip_prefix(self.path.as_str())
            .filter(|rest| rest.starts_with('/'))
            .ok_or(TargetError::Rewritten)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(url: &str) -> BaseUrl {
        BaseUrl::new(&url::Url::parse(url).unwrap()).unwrap()
    }

    #[test]
    fn the_uri_holds_base_path_path_and_query_byte_for_byte() {
        let prefixed = base("http://sapgw:8000/prefix/");
        let uri = prefixed
            .uri(
                "/api/x",
                Some("a=1&b=%20&$filter=Name eq 'x'".replace(' ', "+").as_str()),
            )
            .unwrap();
        assert_eq!(
            uri.to_string(),
            "http://sapgw:8000/prefix/api/x?a=1&b=%20&$filter=Name+eq+'x'"
        );
        assert_eq!(prefixed.below(&uri), Ok("/api/x"));
        // What a URL parser would normalise passes unchanged: the path checks, not
        // the library, decide about it.
        for (path, query) in [
            ("/a/./b/../c", None),
            ("/%2e%2E/x", Some("")),
            (
                "/A_Product('A%2F1')/$value",
                Some("sap-client=100&x=[1]|{2}"),
            ),
        ] {
            let uri = prefixed.uri(path, query).unwrap();
            assert_eq!(prefixed.below(&uri), Ok(path));
            assert_eq!(uri.query(), query);
        }
        let root = base("https://sapgw:44300");
        let uri = root.uri("/", None).unwrap();
        assert_eq!(uri.to_string(), "https://sapgw:44300/");
        assert_eq!(root.below(&uri), Ok("/"));
        let ipv6 = base("http://[::1]:8080/sap/");
        assert_eq!(
            ipv6.uri("/x", None).unwrap().to_string(),
            "http://[::1]:8080/sap/x"
        );
    }

    #[test]
    fn nothing_is_cut_stripped_or_appended() {
        let b = base("http://sapgw:8000/prefix");
        assert_eq!(b.uri("/api/x#frag", None), Err(TargetError::Rewritten));
        assert_eq!(b.uri("/api/x?y", None), Err(TargetError::Rewritten));
        for path in ["/api/\t..", "/api/a b", "/api/\r\n"] {
            assert!(
                matches!(b.uri(path, None), Err(TargetError::Invalid(_))),
                "{path:?}"
            );
        }
        for (query, byte) in [
            ("a=1#/../x", b'#'),
            ("a=\t", b'\t'),
            ("a\r\nX: 1", b'\r'),
            ("a b", b' '),
            ("\u{e4}", 0xc3),
            ("\x7f", 0x7f),
        ] {
            assert_eq!(
                b.uri("/api", Some(query)),
                Err(TargetError::QueryByte(byte)),
                "{query:?}"
            );
        }
        let long = format!("/{}", "a".repeat(70_000));
        assert!(matches!(b.uri(&long, None), Err(TargetError::Invalid(_))));
    }

    #[test]
    fn base_urls_with_credentials_queries_or_fragments_are_refused() {
        for url in [
            "http://user:pw@sapgw:8000/",
            "http://user@sapgw/",
            "http://sapgw/?sap-client=100",
            "http://sapgw/#x",
        ] {
            assert!(
                BaseUrl::new(&url::Url::parse(url).unwrap()).is_err(),
                "{url}"
            );
        }
    }
}
