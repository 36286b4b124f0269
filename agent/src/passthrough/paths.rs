//! The agent's path allowlist for HTTP pass-through, and the path checks that come
//! before it.
//!
//! A request path is first checked ([`check_path`]): it must start with `/`, hold
//! only the characters RFC 3986 allows in a path (letters, digits, `-._~`,
//! `!$&'()*+,;=`, `:@`, `/` and `%` escapes) — so no control character, space,
//! backslash, `#`, `?`, non-ASCII or other byte a URL library would strip, rewrite
//! or percent-encode on the way to the backend — be validly percent-encoded without
//! encoding a control character, and hold no `.` or `..` segment in any disguise —
//! plain, percent-encoded (`%2e%2e`), double-encoded (`%252e%252e`), hidden behind
//! an encoded slash or backslash (`x%2F..%2Fsecret`) or a `;` parameter (`..;x`) —
//! since a backend that decodes or normalises differently could otherwise step
//! outside the allowed prefix. Encoded slashes without traversal
//! (`A_Product('A%2F1')`, common in OData keys) pass.
//!
//! Then the allowlist ([`PathAllowlist::matching`]), on the path exactly as the
//! backend receives it (see `request_target.rs`): entries are path prefixes matched
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
    /// A byte that is not an RFC 3986 path character (the first one found).
    #[error(
        "the path holds the byte {0:#04x}, which is not a URI path character (percent-encode it)"
    )]
    Byte(u8),
    /// A `%` is not followed by two hex digits, or encodes a control character or
    /// bytes that are not UTF-8.
    #[error("the path is not validly percent-encoded, or encodes a control character")]
    BadEncoding,
    /// A `.` or `..` segment, in any encoding.
    #[error("the path holds a . or .. segment")]
    Traversal,
}

/// A parsed path allowlist of one system.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PathAllowlist {
    entries: Vec<Entry>,
}

/// One `allow_paths` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// As configured (still percent-encoded), without a trailing `/`; `/` for the
    /// root.
    raw: String,
    /// Its decoded segments; `[]` is `/` (everything).
    segments: Vec<String>,
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
                    let raw = match raw.trim_end_matches('/') {
                        "" => "/".to_owned(),
                        trimmed => trimmed.to_owned(),
                    };
                    parsed.push(Entry { raw, segments });
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

    /// The longest entry allowing `path` (a path [`check_path`] accepted), as
    /// configured (percent-encoded, without a trailing `/`); `None` when denied.
    pub(crate) fn matching(&self, path: &str) -> Option<&str> {
        let Ok(segments) = segments(path) else {
            return None;
        };
        self.entries
            .iter()
            .filter(|entry| {
                entry.segments.len() <= segments.len()
                    && entry.segments.iter().zip(&segments).all(|(a, b)| a == b)
            })
            .max_by_key(|entry| entry.segments.len())
            .map(|entry| entry.raw.as_str())
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
    if let Some(&byte) = path.as_bytes().iter().find(|&&b| !is_path_byte(b)) {
        return Err(PathError::Byte(byte));
    }
    for raw in path[1..].split('/') {
        let mut segment = raw.as_bytes().to_vec();
        for round in 0..DECODE_ROUNDS {
            if is_traversal(&segment) {
                return Err(PathError::Traversal);
            }
            // The path itself must be validly encoded; what it decodes to may hold
            // a literal `%` (from `%25`), which decodes no further.
            let decoded = decode(&segment, round == 0).ok_or(PathError::BadEncoding)?;
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

/// Whether `byte` may appear in a path as it is: an RFC 3986 `pchar` (unreserved,
/// sub-delims, `:`, `@`), `/`, or the `%` of an escape. Every other byte is either
/// not allowed in a request-target or rewritten by URL libraries.
fn is_path_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&byte)
}

/// Whether a (partly decoded) segment is, or hides, a `.`/`..` step: split on
/// slashes and backslashes, each part cut at `;`.
fn is_traversal(segment: &[u8]) -> bool {
    segment
        .split(|&b| b == b'/' || b == b'\\')
        .map(|part| part.split(|&b| b == b';').next().unwrap_or_default())
        .any(|part| part == b"." || part == b"..")
}

/// The value of an ASCII hex digit.
fn hex_digit(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// The path's segments, each percent-decoded once.
fn segments(path: &str) -> Result<Vec<String>, PathError> {
    let rest = path.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    rest.split('/')
        .map(|s| {
            decode(s.as_bytes(), true)
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or(PathError::BadEncoding)
        })
        .collect()
}

/// Percent-decodes once. `None` for an encoded control character (C0 or DEL: some
/// backends strip them, which could join dots into a `..`) and, when `strict`, for
/// a `%` without two hex digits or a result that is not UTF-8; otherwise such a `%`
/// stays as it is.
fn decode(segment: &[u8], strict: bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(segment.len());
    let mut i = 0;
    while i < segment.len() {
        let escaped = match segment.get(i..i + 3) {
            Some(&[b'%', high, low]) => hex_digit(high).zip(hex_digit(low)),
            _ => None,
        }
        .map(|(high, low)| high << 4 | low);
        match escaped {
            Some(byte) if byte < 0x20 || byte == 0x7f => return None,
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None if strict && segment[i] == b'%' => return None,
            None => {
                out.push(segment[i]);
                i += 1;
            }
        }
    }
    if strict && std::str::from_utf8(&out).is_err() {
        return None;
    }
    Some(out)
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
            allow.matching("/sap/opu/odata/sap/API_BP/x"),
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
        assert_eq!(check_path("/api/%+1"), Err(PathError::BadEncoding));
        assert_eq!(check_path("/api/%ff"), Err(PathError::BadEncoding));
        assert_eq!(check_path("api"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn dots_hidden_by_bytes_a_url_library_strips_are_refused() {
        let root = "/sap/opu/odata/sap/API_X";
        for control in [
            "\t", "\r", "\n", "\r\n", "\x0b", "\x0c", "\x00", "\x1f", "\x7f",
        ] {
            for dots in [
                format!(".{control}."),
                format!("%2e{control}%2e"),
                format!("{control}.."),
                format!("..{control}"),
                format!("{control}."),
            ] {
                let path = format!("{root}/{dots}/API_Y");
                let byte = control.as_bytes()[0];
                assert_eq!(check_path(&path), Err(PathError::Byte(byte)), "{path:?}");
            }
        }
        // Bytes a URL library turns into a separator, cuts off, or percent-encodes.
        for (path, byte) in [
            ("/api/..\\secret", b'\\'),
            ("/api\\..\\secret", b'\\'),
            ("/api/x#/../../secret", b'#'),
            ("/api/x?/../secret", b'?'),
            ("/api/a b", b' '),
            ("/api/\u{ff0e}\u{ff0e}/secret", 0xef),
            ("/api/\u{e4}", 0xc3),
            ("/api/{x}", b'{'),
            ("/api/x|y", b'|'),
            ("/api/\"x\"", b'"'),
            ("/api/<x>", b'<'),
            ("/api/x^y", b'^'),
            ("/api/`x`", b'`'),
            ("/api/[x]", b'['),
        ] {
            assert_eq!(check_path(path), Err(PathError::Byte(byte)), "{path:?}");
        }
        // Percent-encoded control characters, once or twice.
        for path in [
            "/api/.%09./secret",
            "/api/%2e%0a%2e/secret",
            "/api/..%0d",
            "/api/%7f",
            "/api/.%2509./secret",
        ] {
            assert_eq!(check_path(path), Err(PathError::BadEncoding), "{path:?}");
        }
    }

    #[test]
    fn ordinary_odata_paths_pass() {
        for path in [
            "/api/A_Product('A%2F1')",
            "/api/x..y",
            "/api/...",
            "/api/$metadata",
            "/api/",
            "/api/100%25",
            "/api/%25zz",
            "/api/Name%20with%20spaces",
            "/api/%C3%A4",
            "/api/a:b@c!$&'()*+,;=-_~",
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
