//! Which function modules only read: the `read_only_functions` patterns.
//!
//! A unit whose every call is read-only may run again when the journal finds it in
//! doubt (started, no outcome: the agent died mid-unit), because running it twice
//! changes nothing in SAP. Everything else in doubt is never run a second time.
//!
//! Patterns are function names with `*` wildcards anywhere (`*_GETDETAIL*`,
//! `RFC_READ_TABLE`), compared case-insensitively. A unit that commits
//! ([`CommitPolicy::CommitOnSuccess`]) is never read-only: it runs
//! `BAPI_TRANSACTION_COMMIT`.

use sapbridge_proto::{CommitPolicy, Unit};

/// The default `read_only_functions`: SAP's standard readers.
pub(crate) const DEFAULT_READ_ONLY_FUNCTIONS: &[&str] = &[
    "*_GETDETAIL*",
    "*_GETLIST",
    "RFC_READ_TABLE",
    "STFC_CONNECTION",
    "RFC_PING",
    "RFC_SYSTEM_INFO",
    "RFC_GET_FUNCTION_INTERFACE",
    "DDIF_FIELDINFO_GET",
];

/// Parsed `read_only_functions` patterns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ReadOnlyFunctions {
    /// Each pattern split at its `*`s, upper case.
    patterns: Vec<Vec<String>>,
}

impl ReadOnlyFunctions {
    /// Parses the configured patterns.
    ///
    /// # Errors
    /// One message per empty pattern.
    pub(crate) fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, Vec<String>> {
        let mut parsed = Vec::with_capacity(patterns.len());
        let mut problems = Vec::new();
        for raw in patterns {
            let pattern = raw.as_ref().trim().to_ascii_uppercase();
            if pattern.is_empty() {
                problems.push("read_only_functions has an empty entry".to_owned());
            } else {
                parsed.push(pattern.split('*').map(str::to_owned).collect());
            }
        }
        if problems.is_empty() {
            Ok(Self { patterns: parsed })
        } else {
            Err(problems)
        }
    }

    /// Whether `function` matches one of the patterns.
    pub(crate) fn matches(&self, function: &str) -> bool {
        let function = function.to_ascii_uppercase();
        self.patterns
            .iter()
            .any(|pieces| glob_matches(pieces, &function))
    }

    /// Whether running `unit` twice changes nothing: every call is read-only and
    /// the unit does not commit.
    pub(crate) fn unit_is_read_only(&self, unit: &Unit) -> bool {
        unit.commit != CommitPolicy::CommitOnSuccess
            && !unit.calls.is_empty()
            && unit.calls.iter().all(|call| self.matches(&call.function))
    }
}

/// Matches `text` against a pattern split at its `*`s: the first piece is a prefix,
/// the last a suffix, the ones between appear in order.
fn glob_matches(pieces: &[String], text: &str) -> bool {
    let [first, middle @ .., last] = pieces else {
        // `split` yields at least one piece; a lone piece is an exact name.
        return pieces.first().is_some_and(|p| p == text);
    };
    let Some(mut rest) = text.strip_prefix(first.as_str()) else {
        return false;
    };
    for piece in middle {
        match rest.find(piece.as_str()) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_units::unit;

    fn defaults() -> ReadOnlyFunctions {
        ReadOnlyFunctions::parse(DEFAULT_READ_ONLY_FUNCTIONS).unwrap()
    }

    #[test]
    fn wildcards_match_anywhere() {
        let read_only = defaults();
        for yes in [
            "BAPI_CUSTOMER_GETDETAIL2",
            "BAPI_CUSTOMER_GETDETAIL",
            "bapi_material_getdetail",
            "BAPI_CUSTOMER_GETLIST",
            "RFC_READ_TABLE",
            "STFC_CONNECTION",
        ] {
            assert!(read_only.matches(yes), "{yes}");
        }
        for no in [
            "BAPI_CUSTOMER_CREATEFROMDATA1",
            "BAPI_CUSTOMER_GETLIST_X",
            "RFC_READ_TABLE2",
            "BAPI_TRANSACTION_COMMIT",
            "",
        ] {
            assert!(!read_only.matches(no), "{no}");
        }
    }

    #[test]
    fn pieces_must_not_overlap() {
        let read_only = ReadOnlyFunctions::parse(&["AB*BA"]).unwrap();
        assert!(read_only.matches("ABBA"));
        assert!(read_only.matches("ABXBA"));
        assert!(!read_only.matches("ABA"), "the prefix and suffix share a B");
        let star = ReadOnlyFunctions::parse(&["*"]).unwrap();
        assert!(star.matches("ANYTHING"));
        let middle = ReadOnlyFunctions::parse(&["Z*READ*X"]).unwrap();
        assert!(middle.matches("Z_READ_X"));
        assert!(!middle.matches("Z_WRITE_X"));
    }

    #[test]
    fn empty_patterns_are_reported() {
        assert_eq!(ReadOnlyFunctions::parse(&["A", " "]).unwrap_err().len(), 1);
    }

    #[test]
    fn a_unit_is_read_only_when_every_call_is_and_it_does_not_commit() {
        let read_only = defaults();
        let reads = ["BAPI_CUSTOMER_GETDETAIL2", "RFC_READ_TABLE"];
        assert!(read_only.unit_is_read_only(&unit(&reads, CommitPolicy::None)));
        assert!(read_only.unit_is_read_only(&unit(&reads, CommitPolicy::Rollback)));
        assert!(!read_only.unit_is_read_only(&unit(&reads, CommitPolicy::CommitOnSuccess)));
        let mixed = ["BAPI_CUSTOMER_GETDETAIL2", "BAPI_CUSTOMER_CREATEFROMDATA1"];
        assert!(!read_only.unit_is_read_only(&unit(&mixed, CommitPolicy::None)));
        assert!(!read_only.unit_is_read_only(&unit(&[], CommitPolicy::None)));
    }
}
