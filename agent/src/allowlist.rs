//! The agent's own allowlist: which function modules the cloud may run on a system.
//!
//! The on-premises side decides; a compromised relay must not be able to call
//! anything else. Entries are exact names (`STFC_CONNECTION`), prefixes ending in `*`
//! (`BAPI_CUSTOMER_*`), or `*` alone for everything. Anything not matched is denied.
//! Names are compared case-insensitively (SAP function names are upper case).
//!
//! Tables have an allowlist of their own (`allow_tables`, same syntax, deny by
//! default): `RFC_READ_TABLE` and its look-alikes could otherwise read any table, so
//! every call that names a table in `QUERY_TABLE` needs that table allowed too.
//! Their WHERE clause (`OPTIONS`) could name other tables through subqueries, so it
//! must pass `sapbridge_sap::where_clause`'s grammar, and their `FIELDS` the field
//! list rules ([`first_refused_read`]).
//!
//! The agent never names a function module the cloud may not run: the answer of
//! `RFC_FUNCTION_SEARCH` (itself subject to the allowlist) keeps only the rows
//! whose `FUNCNAME` the allowlist lets through ([`filter_function_search`]), so the
//! relay's function pick lists show what will run. The hello says so
//! (`SystemCapabilities::function_search`).

use sapbridge_proto::{CallResult, CommitPolicy, Outcome, Unit};
use sapbridge_sap::table_read;
use serde_json::Value;

/// The parameter through which `RFC_READ_TABLE` (and its variants such as
/// `BBP_RFC_READ_TABLE` or `/BODS/RFC_READ_TABLE`) names the table it reads.
pub(crate) const TABLE_PARAMETER: &str = "QUERY_TABLE";

/// The BAPI that commits a transaction; implied by a unit with a commit policy.
pub(crate) const COMMIT_FUNCTION: &str = "BAPI_TRANSACTION_COMMIT";
/// The BAPI that rolls a transaction back; implied by a unit with a commit policy.
pub(crate) const ROLLBACK_FUNCTION: &str = "BAPI_TRANSACTION_ROLLBACK";

/// The function module that lists function modules by name pattern.
pub(crate) const SEARCH_FUNCTION: &str = "RFC_FUNCTION_SEARCH";
/// Its table of results (`RFCFUNC` rows).
const SEARCH_RESULTS: &str = "FUNCTIONS";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Exact(String),
    Prefix(String),
    Everything,
}

/// A parsed allowlist of one system.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Allowlist {
    entries: Vec<Entry>,
}

impl Allowlist {
    /// Parses the configured `allow_functions` entries.
    ///
    /// # Errors
    /// One message per malformed entry (empty, or a `*` anywhere but at the end).
    pub(crate) fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, Vec<String>> {
        Self::parse_named("allow_functions", entries)
    }

    /// Parses the entries of the setting called `label` (for the messages).
    ///
    /// # Errors
    /// As [`Allowlist::parse`].
    pub(crate) fn parse_named<S: AsRef<str>>(
        label: &str,
        entries: &[S],
    ) -> Result<Self, Vec<String>> {
        let mut parsed = Vec::with_capacity(entries.len());
        let mut problems = Vec::new();
        for raw in entries {
            let entry = raw.as_ref().trim().to_ascii_uppercase();
            if entry.is_empty() {
                problems.push(format!("{label} has an empty entry"));
            } else if entry == "*" {
                parsed.push(Entry::Everything);
            } else if let Some(prefix) = entry.strip_suffix('*') {
                if prefix.contains('*') {
                    problems.push(format!(
                        "{label} entry {:?}: '*' is allowed only at the end",
                        raw.as_ref()
                    ));
                } else {
                    parsed.push(Entry::Prefix(prefix.to_owned()));
                }
            } else if entry.contains('*') {
                problems.push(format!(
                    "{label} entry {:?}: '*' is allowed only at the end",
                    raw.as_ref()
                ));
            } else {
                parsed.push(Entry::Exact(entry));
            }
        }
        if problems.is_empty() {
            Ok(Self { entries: parsed })
        } else {
            Err(problems)
        }
    }

    /// Whether one function may run.
    pub(crate) fn allows(&self, function: &str) -> bool {
        let function = function.to_ascii_uppercase();
        self.entries.iter().any(|entry| match entry {
            Entry::Everything => true,
            Entry::Exact(name) => *name == function,
            Entry::Prefix(prefix) => function.starts_with(prefix.as_str()),
        })
    }

    /// The first function of the unit this allowlist denies, if any. A unit with a
    /// commit policy also needs the commit and rollback BAPIs.
    pub(crate) fn first_denied<'u>(&self, unit: &'u Unit) -> Option<&'u str> {
        let implied: &[&'static str] = match unit.commit {
            CommitPolicy::None => &[],
            CommitPolicy::CommitOnSuccess | CommitPolicy::Rollback => {
                &[COMMIT_FUNCTION, ROLLBACK_FUNCTION]
            }
        };
        unit.calls
            .iter()
            .map(|call| call.function.as_str())
            .chain(implied.iter().copied())
            .find(|function| !self.allows(function))
    }
}

/// Keeps, in the result of every `RFC_FUNCTION_SEARCH` call of `unit`, only the
/// `FUNCTIONS` rows whose `FUNCNAME` `allowlist` lets through (a row without a
/// string `FUNCNAME` goes too). Other results are left as they are.
pub(crate) fn filter_function_search(allowlist: &Allowlist, unit: &Unit, outcome: &mut Outcome) {
    let Outcome::Completed { results, .. } = outcome else {
        return;
    };
    for (call, result) in unit.calls.iter().zip(results.iter_mut()) {
        if !call.function.eq_ignore_ascii_case(SEARCH_FUNCTION) {
            continue;
        }
        let CallResult::Ok(output) = result else {
            continue;
        };
        if let Some(Value::Array(rows)) = output.get_mut(SEARCH_RESULTS) {
            rows.retain(|row| {
                row.get("FUNCNAME")
                    .and_then(Value::as_str)
                    .is_some_and(|name| allowlist.allows(name.trim()))
            });
        }
    }
}

/// The first table a call of the unit reads (`QUERY_TABLE`) that `tables` does not
/// allow, if any. A `QUERY_TABLE` that is not a string is reported as denied too,
/// so nothing slips past the check by its type.
pub(crate) fn first_denied_table<'u>(tables: &Allowlist, unit: &'u Unit) -> Option<&'u str> {
    unit.calls.iter().find_map(|call| {
        let table = call.parameters.get(TABLE_PARAMETER)?;
        match table.as_str() {
            Some(name) if tables.allows(name.trim()) => None,
            Some(name) => Some(name),
            None => Some("(not a table name)"),
        }
    })
}

/// The first call of the unit that reads a table (a `QUERY_TABLE` parameter, in
/// any spelling) whose `OPTIONS` or `FIELDS` the agent does not pass to SAP, with
/// the reason (`sapbridge_sap::table_read::check_call`).
pub(crate) fn first_refused_read(unit: &Unit) -> Option<(&str, String)> {
    unit.calls.iter().find_map(|call| {
        let reads = call
            .parameters
            .keys()
            .any(|name| name.eq_ignore_ascii_case(TABLE_PARAMETER));
        if !reads {
            return None;
        }
        table_read::check_call(&call.parameters)
            .err()
            .map(|refusal| (call.function.as_str(), refusal.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_units::unit;

    fn list(entries: &[&str]) -> Allowlist {
        Allowlist::parse(entries).unwrap()
    }

    #[test]
    fn exact_entries_match_whole_names_only() {
        let allow = list(&["STFC_CONNECTION"]);
        assert!(allow.allows("STFC_CONNECTION"));
        assert!(allow.allows("stfc_connection"));
        assert!(!allow.allows("STFC_CONNECTION_BACK"));
        assert!(!allow.allows("STFC"));
    }

    #[test]
    fn prefix_entries_match_by_prefix() {
        let allow = list(&["BAPI_CUSTOMER_*"]);
        assert!(allow.allows("BAPI_CUSTOMER_GETDETAIL2"));
        assert!(allow.allows("BAPI_CUSTOMER_"));
        assert!(!allow.allows("BAPI_CUSTOMERX"));
        assert!(!allow.allows("RFC_READ_TABLE"));
    }

    #[test]
    fn star_allows_everything_and_empty_denies_everything() {
        assert!(list(&["*"]).allows("ANYTHING_AT_ALL"));
        let empty = list(&[] as &[&str]);
        assert!(!empty.allows("STFC_CONNECTION"));
        assert!(!empty.allows(""));
    }

    #[test]
    fn malformed_entries_are_reported() {
        let problems = Allowlist::parse(&["", "A*B", "*X", "OK_*"]).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
    }

    #[test]
    fn function_searches_list_only_allowed_functions() {
        let allow = list(&["BAPI_CUSTOMER_*", "RFC_FUNCTION_SEARCH"]);
        let search = unit(&["rfc_function_search", "RFC_PING"], CommitPolicy::None);
        let rows = serde_json::json!([
            {"FUNCNAME": "BAPI_CUSTOMER_GETLIST"},
            {"FUNCNAME": "RFC_READ_TABLE"},
            {"FUNCNAME": 7},
            {"GROUPNAME": "SDTX"},
            {"FUNCNAME": "bapi_customer_getdetail2 "},
        ]);
        let answer = |rows: &Value| {
            let mut output = sapbridge_proto::Parameters::new();
            output.insert("FUNCTIONS".into(), rows.clone());
            CallResult::Ok(output)
        };
        let mut outcome = Outcome::Completed {
            results: vec![answer(&rows), answer(&rows)],
            transaction: None,
        };
        filter_function_search(&allow, &search, &mut outcome);
        let Outcome::Completed { results, .. } = outcome else {
            panic!("completed");
        };
        let CallResult::Ok(kept) = &results[0] else {
            panic!("ok");
        };
        assert_eq!(
            kept["FUNCTIONS"],
            serde_json::json!([
                {"FUNCNAME": "BAPI_CUSTOMER_GETLIST"},
                {"FUNCNAME": "bapi_customer_getdetail2 "},
            ])
        );
        // Another function's result is not touched.
        assert_eq!(results[1], answer(&rows));
    }

    #[test]
    fn every_call_of_a_unit_must_be_allowed() {
        let allow = list(&["BAPI_CUSTOMER_*"]);
        let plain = unit(
            &["BAPI_CUSTOMER_GETDETAIL2", "RFC_READ_TABLE"],
            CommitPolicy::None,
        );
        assert_eq!(allow.first_denied(&plain), Some("RFC_READ_TABLE"));
    }

    #[test]
    fn tables_are_checked_against_their_own_list() {
        let tables = list(&["KNA1", "T00*"]);
        let mut read = unit(&["RFC_READ_TABLE"], CommitPolicy::None);
        read.calls[0]
            .parameters
            .insert(TABLE_PARAMETER.into(), "KNA1".into());
        assert_eq!(first_denied_table(&tables, &read), None);
        read.calls[0]
            .parameters
            .insert(TABLE_PARAMETER.into(), "USR02".into());
        assert_eq!(first_denied_table(&tables, &read), Some("USR02"));
        read.calls[0]
            .parameters
            .insert(TABLE_PARAMETER.into(), "T001".into());
        assert_eq!(first_denied_table(&tables, &read), None);
        read.calls[0]
            .parameters
            .insert(TABLE_PARAMETER.into(), serde_json::json!(["KNA1"]));
        assert!(first_denied_table(&tables, &read).is_some());
        // Deny by default, and calls without a table are not affected.
        let none = list(&[] as &[&str]);
        read.calls[0]
            .parameters
            .insert(TABLE_PARAMETER.into(), "KNA1".into());
        assert_eq!(first_denied_table(&none, &read), Some("KNA1"));
        let plain = unit(&["STFC_CONNECTION"], CommitPolicy::None);
        assert_eq!(first_denied_table(&none, &plain), None);
    }

    #[test]
    fn a_transaction_implies_commit_and_rollback() {
        let tx = unit(
            &["BAPI_CUSTOMER_CREATEFROMDATA1"],
            CommitPolicy::CommitOnSuccess,
        );
        assert_eq!(
            list(&["BAPI_CUSTOMER_*"]).first_denied(&tx),
            Some(COMMIT_FUNCTION)
        );
        let with_commit = list(&["BAPI_CUSTOMER_*", "BAPI_TRANSACTION_*"]);
        assert_eq!(with_commit.first_denied(&tx), None);
        let plain = unit(&["BAPI_CUSTOMER_GETDETAIL2"], CommitPolicy::None);
        assert_eq!(list(&["BAPI_CUSTOMER_*"]).first_denied(&plain), None);
    }
}
