//! What a call of the `RFC_READ_TABLE` family (any call with a `QUERY_TABLE`
//! parameter: `RFC_READ_TABLE`, `BBP_RFC_READ_TABLE`, `/BODS/RFC_READ_TABLE`, …)
//! may carry in the parameters SAP turns into code or a field list — one rule,
//! checked by the agent before SAP sees the call and by the relay before it queues
//! a table read.
//!
//! - `OPTIONS` (the dynamic WHERE clause): a table of rows `{"TEXT": "…"}` whose
//!   clause passes [`crate::where_clause`]'s grammar, fields by name only (the agent
//!   does not know the table's catalogue; SAP refuses unknown fields).
//! - `FIELDS`: a table of rows `{"FIELDNAME": "…"}` (other `RFC_DB_FLD` members
//!   allowed), each a DDIC field name, none twice, at most [`MAX_FIELDS`].
//! - The three parameter names exactly as SAP spells them: a backend that matched
//!   names without regard to case would otherwise run an unchecked `options`.

use serde_json::{Map, Value};

use crate::Parameters;
use crate::where_clause::{self, WhereError, is_field_name};

/// The parameter naming the table read.
pub const QUERY_TABLE: &str = "QUERY_TABLE";
/// The parameter holding the WHERE clause rows.
pub const OPTIONS: &str = "OPTIONS";
/// The parameter holding the fields to read.
pub const FIELDS: &str = "FIELDS";

/// The most fields one read may name. A field is named at most once, so no read of
/// a real table needs more than the table has, and no ABAP Dictionary table has
/// more than 1,500 (749 in SAP_BASIS, 1,000 in a row-store and 1,500 in a
/// column-store table of other components; KNA1 has about 200). Within that, the
/// 512-character line of `RFC_READ_TABLE` is SAP's own limit.
pub const MAX_FIELDS: usize = 1500;

/// What is wrong with a field list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldListError {
    /// Not a DDIC field name.
    #[error("{0:?} is not a field name")]
    NotAFieldName(String),
    /// The same field twice.
    #[error("{0} is named more than once")]
    Repeated(String),
    /// More than [`MAX_FIELDS`].
    #[error("{0} fields named; at most {MAX_FIELDS}, each once")]
    TooMany(usize),
}

/// Why the agent does not pass a table read on to SAP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadRefusal {
    /// A parameter spelt otherwise than SAP spells it.
    #[error("parameter {given} must be spelt {expected}")]
    ParameterName {
        /// As sent.
        given: String,
        /// As SAP spells it.
        expected: &'static str,
    },
    /// `OPTIONS` is not a table of `TEXT` rows.
    #[error("OPTIONS must be a table of rows {{\"TEXT\": \"…\"}}: {0}")]
    OptionsShape(String),
    /// The WHERE clause lies outside the grammar.
    #[error("where clause (OPTIONS) refused: {0}")]
    Where(#[from] WhereError),
    /// `FIELDS` is not a table of `FIELDNAME` rows.
    #[error("FIELDS must be a table of rows {{\"FIELDNAME\": \"…\"}}: {0}")]
    FieldsShape(String),
    /// The field list breaks a rule.
    #[error("FIELDS: {0}")]
    Fields(#[from] FieldListError),
}

/// Checks a field list: DDIC names (compared without regard to case and
/// surrounding blanks, as SAP reads a CHAR 30), none twice, at most [`MAX_FIELDS`].
///
/// # Errors
/// The first problem found.
pub fn check_field_list<S: AsRef<str>>(names: &[S]) -> Result<(), FieldListError> {
    if names.len() > MAX_FIELDS {
        return Err(FieldListError::TooMany(names.len()));
    }
    let mut seen = std::collections::HashSet::with_capacity(names.len());
    for name in names {
        let upper = name.as_ref().trim().to_ascii_uppercase();
        if !is_field_name(&upper) {
            return Err(FieldListError::NotAFieldName(name.as_ref().to_owned()));
        }
        if !seen.insert(upper.clone()) {
            return Err(FieldListError::Repeated(upper));
        }
    }
    Ok(())
}

/// Checks the `OPTIONS` and `FIELDS` of a table-reading call (module docs).
///
/// # Errors
/// The first reason to refuse the call.
pub fn check_call(parameters: &Parameters) -> Result<(), ReadRefusal> {
    for given in parameters.keys() {
        for expected in [QUERY_TABLE, OPTIONS, FIELDS] {
            if given != expected && given.eq_ignore_ascii_case(expected) {
                return Err(ReadRefusal::ParameterName {
                    given: given.clone(),
                    expected,
                });
            }
        }
    }
    if let Some(options) = parameters.get(OPTIONS).filter(|v| !v.is_null()) {
        let rows = column(options, "TEXT", &["TEXT"]).map_err(ReadRefusal::OptionsShape)?;
        where_clause::parse_rows(&rows, &|_: &str| true)?;
    }
    if let Some(fields) = parameters.get(FIELDS).filter(|v| !v.is_null()) {
        const MEMBERS: [&str; 5] = ["FIELDNAME", "OFFSET", "LENGTH", "TYPE", "FIELDTEXT"];
        let names = column(fields, "FIELDNAME", &MEMBERS).map_err(ReadRefusal::FieldsShape)?;
        check_field_list(&names)?;
    }
    Ok(())
}

/// The string member `name` of every row of a table parameter; rows may hold only
/// `members`.
fn column<'v>(table: &'v Value, name: &str, members: &[&str]) -> Result<Vec<&'v str>, String> {
    let Value::Array(rows) = table else {
        return Err("not a table (JSON array)".into());
    };
    rows.iter()
        .enumerate()
        .map(|(index, row)| {
            let row: &Map<String, Value> = row
                .as_object()
                .ok_or_else(|| format!("row {} is not an object", index + 1))?;
            if let Some(other) = row.keys().find(|k| !members.contains(&k.as_str())) {
                return Err(format!("row {} has a member {other:?}", index + 1));
            }
            row.get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("row {} has no {name} string", index + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn call(value: Value) -> Result<(), ReadRefusal> {
        check_call(value.as_object().expect("an object"))
    }

    #[test]
    fn field_lists() {
        assert_eq!(check_field_list(&["KUNNR", "NAME1"]), Ok(()));
        assert_eq!(
            check_field_list(&["KUNNR", " kunnr "]),
            Err(FieldListError::Repeated("KUNNR".into()))
        );
        let many: Vec<String> = (0..=MAX_FIELDS).map(|i| format!("F{i}")).collect();
        assert_eq!(
            check_field_list(&many),
            Err(FieldListError::TooMany(MAX_FIELDS + 1))
        );
        assert_eq!(check_field_list(&many[..MAX_FIELDS]), Ok(()));
        assert!(check_field_list(&["KUNNR, ( SELECT"]).is_err());
    }

    #[test]
    fn shapes_and_names() {
        assert_eq!(call(json!({"QUERY_TABLE": "KNA1"})), Ok(()));
        assert_eq!(
            call(json!({"QUERY_TABLE": "KNA1", "OPTIONS": null, "FIELDS": []})),
            Ok(())
        );
        assert!(matches!(
            call(json!({"QUERY_TABLE": "KNA1", "options": []})),
            Err(ReadRefusal::ParameterName { .. })
        ));
        for options in [
            json!("LAND1 = 'DE'"),
            json!(["LAND1 = 'DE'"]),
            json!([{"text": "LAND1 = 'DE'"}]),
            json!([{"TEXT": "LAND1 = 'DE'", "X": 1}]),
            json!([{"TEXT": 1}]),
            json!([{}]),
        ] {
            assert!(
                matches!(
                    call(json!({"QUERY_TABLE": "KNA1", "OPTIONS": options})),
                    Err(ReadRefusal::OptionsShape(_))
                ),
                "{options}"
            );
        }
        assert!(matches!(
            call(json!({"QUERY_TABLE": "KNA1", "FIELDS": [{"FIELDNAME": "A"}, {"NAME": "B"}]})),
            Err(ReadRefusal::FieldsShape(_))
        ));
        assert_eq!(
            call(
                json!({"QUERY_TABLE": "KNA1", "FIELDS": [{"FIELDNAME": "KUNNR", "OFFSET": "000000"}],
                "OPTIONS": [{"TEXT": "LAND1 EQ 'DE'"}]})
            ),
            Ok(())
        );
    }
}
