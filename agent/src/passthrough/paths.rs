//! The agent's path allowlist for HTTP pass-through, and the path checks that come
//! before it.
//!
//! A request path is first checked ([`check_path`]): it must start with `/`, be
//! validly percent-encoded, and hold no `.` or `..` segment in any disguise — plain,
//! percent-encoded (`%2e%2e`), double-encoded (`%252e%252e`), hidden behind an
//! encoded slash or backslash (`x%2F..%2Fsecret`) or a `;` parameter (`..;x`) — since
//! a backend that decodes or normalises differently could otherwise step outside the
//! allowed prefix. Encoded slashes without traversal (`A_Product('A%2F1')`, common in
//! OData keys) pass.
//!
//! Then the allowlist ([`PathAllowlist::allows`]): entries are path prefixes matched
//! on whole (percent-decoded) segments: `/api` allows `/api`, `/api/` and `/api/x`,
//! not `/apix`; `/` allows everything; an empty list denies everything.

/// How often a segment is percent-decoded looking for a disguised `..`.
const DECODE_ROUNDS: usize = 3;

/// Why a path is refused before the allowlist is consulted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PathError {
    /// The path does not start with `/`.
    #[error("the path must start with /")]
    NotAbsolute,
    /// A `%` is not followed by two hex digits, or decodes to a NUL.
    #[error("the path is not validly percent-encoded")]
    BadEncoding,
    /// A `.` or `..` segment, in any encoding.
    #[error("the path holds a . or .. segment")]
    Traversal,
}

/// A parsed path allowlist of one system.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PathAllowlist {
    /// Each entry as its decoded segments; `[]` is `/` (everything).
    entries: Vec<Vec<String>>,
}

impl PathAllowlist {
    /// Parses the configured prefixes.
    ///
    /// # Errors
    /// One message per bad entry (not starting with `/`, traversal, bad encoding).
    pub(crate) fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, Vec<String>> {
        let mut parsed = Vec::with_capacity(entries.len());
        let mut problems = Vec::new();
        for raw in entries {
            let raw = raw.as_ref().trim();
            match check_path(raw).and_then(|()| segments(raw)) {
                Ok(mut segments) => {
                    // `/api/` means the same as `/api`.
                    if segments.last().is_some_and(String::is_empty) {
                        segments.pop();
                    }
                    parsed.push(segments);
                }
                Err(e) => problems.push(format!("allow_paths entry {raw:?}: {e}")),
            }
        }
        if problems.is_empty() {
            Ok(Self { entries: parsed })
        } else {
            Err(problems)
        }
    }

    /// The longest entry allowing `path` (a path [`check_path`] accepted), as a
    /// path string; `None` when denied.
    pub(crate) fn matching(&self, path: &str) -> Option<String> {
        let Ok(segments) = segments(path) else {
            return None;
        };
        self.entries
            .iter()
            .filter(|entry| {
                entry.len() <= segments.len() && entry.iter().zip(&segments).all(|(a, b)| a == b)
            })
            .max_by_key(|entry| entry.len())
            .map(|entry| format!("/{}", entry.join("/")))
    }

    /// Whether `path` (checked by [`check_path`]) may be reached.
    #[cfg(test)]
    pub(crate) fn allows(&self, path: &str) -> bool {
        self.matching(path).is_some()
    }
}

/// Checks a raw (still percent-encoded) request path; see the module docs.
///
/// # Errors
/// A [`PathError`] saying what is wrong.
pub(crate) fn check_path(path: &str) -> Result<(), PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    for raw in path[1..].split('/') {
        let mut segment = raw.to_owned();
        for _ in 0..DECODE_ROUNDS {
            if is_traversal(&segment) {
                return Err(PathError::Traversal);
            }
            let decoded = decode(&segment).ok_or(PathError::BadEncoding)?;
            if decoded == segment {
                break;
            }
            segment = decoded;
        }
        if is_traversal(&segment) {
            return Err(PathError::Traversal);
        }
    }
    Ok(())
}

/// Whether a (partly decoded) segment is, or hides, a `.`/`..` step: split on
/// slashes and backslashes, each part cut at `;`.
fn is_traversal(segment: &str) -> bool {
    segment
        .split(['/', '\\'])
        .map(|part| part.split(';').next().unwrap_or(""))
        .any(|part| part == "." || part == "..")
}

/// The path's segments, each percent-decoded once.
fn segments(path: &str) -> Result<Vec<String>, PathError> {
    let rest = path.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    rest.split('/')
        .map(|s| decode(s).ok_or(PathError::BadEncoding))
        .collect()
}

/// Percent-decodes once; `None` for a bad escape, a NUL or bytes that are not UTF-8.
fn decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            let byte = u8::from_str_radix(hex, 16).ok()?;
            if byte == 0 {
                return None;
            }
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> PathAllowlist {
        PathAllowlist::parse(entries).unwrap()
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        let allow = list(&["/api", "/sap/opu/odata/sap/API_BP/"]);
        assert!(allow.allows("/api"));
        assert!(allow.allows("/api/"));
        assert!(allow.allows("/api/x/y"));
        assert!(!allow.allows("/apix"));
        assert!(!allow.allows("/ap"));
        assert!(!allow.allows("/API"));
        assert!(!allow.allows("/"));
        assert!(allow.allows("/sap/opu/odata/sap/API_BP/A_BusinessPartner('1')"));
        assert!(!allow.allows("/sap/opu/odata/sap/API_BPX"));
        assert_eq!(
            allow.matching("/sap/opu/odata/sap/API_BP/x").as_deref(),
            Some("/sap/opu/odata/sap/API_BP")
        );
    }

    #[test]
    fn root_allows_everything_and_empty_denies_everything() {
        assert!(list(&["/"]).allows("/anything/at/all"));
        assert!(list(&["/"]).allows("/"));
        assert!(!list(&[]).allows("/api"));
    }

    #[test]
    fn encoded_segments_match_decoded() {
        let allow = list(&["/api"]);
        assert!(allow.allows("/%61pi/x"));
        assert!(
            !allow.allows("/api%2Fx"),
            "an encoded slash is part of the segment"
        );
    }

    #[test]
    fn traversal_in_every_disguise_is_refused() {
        for path in [
            "/api/../secret",
            "/api/./x",
            "/api/..",
            "/api/%2e%2e/secret",
            "/api/%2E./secret",
            "/api/%252e%252e/secret",
            "/api/x%2F..%2Fsecret",
            "/api/x%5C..%5Csecret",
            "/api/..;jsessionid=1/secret",
            "/api/x%2f%2e%2e%2f%2e%2e%2fsecret",
        ] {
            assert_eq!(check_path(path), Err(PathError::Traversal), "{path}");
        }
        assert_eq!(check_path("/api/%zz"), Err(PathError::BadEncoding));
        assert_eq!(check_path("/api/%00"), Err(PathError::BadEncoding));
        assert_eq!(check_path("api"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn ordinary_odata_paths_pass() {
        for path in [
            "/api/A_Product('A%2F1')",
            "/api/x..y",
            "/api/...",
            "/api/$metadata",
            "/api/",
        ] {
            assert_eq!(check_path(path), Ok(()), "{path}");
        }
    }

    #[test]
    fn bad_entries_are_reported() {
        let problems = PathAllowlist::parse(&["api", "/a/../b", "/ok"]).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
