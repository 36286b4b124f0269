//! `RFC_FUNCTION_SEARCH`: the remote-enabled function modules whose name (and
//! function group) match a pattern, one `RFCFUNC` row each in `FUNCTIONS`, as SAP
//! answers it from `TFDIR`/`TFTIT`. The simulator's catalogue is the function
//! modules it implements (`functions.rs`), so search and behaviour agree.

use serde_json::{Map, Value};

use super::errors::abap_exception;
use super::session::Ctx;
use super::values::Input;
use crate::{Parameters, RfcError};

/// Function group and short text of every simulated function module, by name.
static CATALOGUE: &[(&str, &str, &str)] = &[
    (
        "BAPI_CUSTOMER_CHANGEFROMDATA1",
        "V02D",
        "Customer: change data",
    ),
    (
        "BAPI_CUSTOMER_CREATEFROMDATA1",
        "V02D",
        "Customer: create with reference",
    ),
    (
        "BAPI_CUSTOMER_GETDETAIL2",
        "V02D",
        "Customer: read detailed data",
    ),
    ("BAPI_CUSTOMER_GETLIST", "V02D", "Customer: list"),
    (
        "BAPI_TRANSACTION_COMMIT",
        "BAPT",
        "Execute external Commit when using BAPIs",
    ),
    (
        "BAPI_TRANSACTION_ROLLBACK",
        "BAPT",
        "Execute external Rollback when using BAPIs",
    ),
    (
        "DDIF_FIELDINFO_GET",
        "SDIFRUNTIME",
        "Read field information of a table or structure",
    ),
    ("RFC_FUNCTION_SEARCH", "RFC1", "Search for function modules"),
    (
        "RFC_GET_FUNCTION_INTERFACE",
        "RFC1",
        "Interface of a function module",
    ),
    ("RFC_PING", "SRFC", "Connection test"),
    (
        "RFC_READ_TABLE",
        "SDTX",
        "External access to R/3 tables via RFC",
    ),
    (
        "RFC_SYSTEM_INFO",
        "SRFC",
        "Information about the remote system",
    ),
    ("STFC_CONNECTION", "STFC", "RFC test: connection"),
    (
        "Z_SAPBRIDGE_TYPES_ECHO",
        "ZSAPBRIDGE",
        "sapbridge: echo one value of every ABAP type",
    ),
];

/// Whether `name` matches `pattern`, where `*` stands for any run of characters
/// (SAP turns it into `LIKE`'s `%`); both upper case.
fn matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// `RFC_FUNCTION_SEARCH`: `FUNCNAME` and `GROUPNAME` are patterns with `*`
/// (an empty one matches everything, but not both empty); rows sorted by name.
///
/// # Errors
/// `NOTHING_SPECIFIED` when neither pattern is given, `NO_FUNCTION_FOUND` when
/// nothing matches.
pub(crate) fn search(_: &mut Ctx<'_>, input: &Input) -> Result<Parameters, RfcError> {
    let name = input.str("FUNCNAME").trim().to_ascii_uppercase();
    let group = input.str("GROUPNAME").trim().to_ascii_uppercase();
    if name.is_empty() && group.is_empty() {
        return Err(abap_exception("NOTHING_SPECIFIED", None));
    }
    let rows: Vec<Value> = CATALOGUE
        .iter()
        .filter(|(n, g, _)| {
            (name.is_empty() || matches(&name, n)) && (group.is_empty() || matches(&group, g))
        })
        .map(|(n, g, text)| {
            let mut row = Map::new();
            row.insert("FUNCNAME".into(), (*n).into());
            row.insert("GROUPNAME".into(), (*g).into());
            row.insert("APPL".into(), "".into());
            row.insert("HOST".into(), "".into());
            row.insert("STEXT".into(), (*text).into());
            Value::Object(row)
        })
        .collect();
    if rows.is_empty() {
        return Err(abap_exception("NO_FUNCTION_FOUND", None));
    }
    let mut out = Parameters::new();
    out.insert("FUNCTIONS".into(), Value::Array(rows));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::functions;
    use super::*;

    #[test]
    fn the_catalogue_lists_every_simulated_function_once() {
        let names: Vec<&str> = CATALOGUE.iter().map(|(n, _, _)| *n).collect();
        let implemented: Vec<&str> = functions::FUNCTIONS.iter().map(|f| f.name).collect();
        assert_eq!(names, implemented);
    }

    #[test]
    fn star_matches_any_run_of_characters() {
        assert!(matches("BAPI_CUSTOMER_*", "BAPI_CUSTOMER_GETLIST"));
        assert!(matches("*CUSTOMER*", "BAPI_CUSTOMER_GETLIST"));
        assert!(matches("*", "RFC_PING"));
        assert!(matches("RFC_PING", "RFC_PING"));
        assert!(matches("RFC*TABLE", "RFC_READ_TABLE"));
        assert!(!matches("RFC_PING", "RFC_PINGX"));
        assert!(!matches("*TABLE", "RFC_READ_TABLES"));
        assert!(!matches("A*A", "A"));
        assert!(!matches("BAPI*", "RFC_PING"));
    }
}
