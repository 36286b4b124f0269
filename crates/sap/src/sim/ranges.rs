//! ABAP range tables (`SIGN`/`OPTION`/`LOW`/`HIGH`), as `SELECT-OPTIONS` and
//! BAPI range parameters use them.
//!
//! A value is selected when it matches at least one `I` row (or there is no `I`
//! row) and no `E` row. `CP`/`NP` patterns use `*` (any string) and `+` (any one
//! character).

use serde_json::{Map, Value};

use super::values::field;

/// One row of a range table.
#[derive(Debug, Clone)]
pub(crate) struct RangeRow {
    include: bool,
    option: Option_,
    low: String,
    high: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Option_ {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Bt,
    Nb,
    Cp,
    Np,
}

/// Why a range row is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RangeError {
    /// `SIGN` is not `I` or `E`; holds the value.
    Sign(String),
    /// `OPTION` is not one of EQ NE GT GE LT LE BT NB CP NP; holds the value.
    Option(String),
}

/// Parses range rows; `convert` is applied to `LOW`/`HIGH` of non-pattern rows
/// (the ALPHA conversion for customer numbers).
pub(crate) fn parse(
    rows: &[Map<String, Value>],
    convert: impl Fn(&str) -> String,
) -> Result<Vec<RangeRow>, RangeError> {
    rows.iter()
        .map(|r| {
            let include = match field(r, "SIGN") {
                "I" => true,
                "E" => false,
                other => return Err(RangeError::Sign(other.to_owned())),
            };
            let option = match field(r, "OPTION") {
                "EQ" => Option_::Eq,
                "NE" => Option_::Ne,
                "GT" => Option_::Gt,
                "GE" => Option_::Ge,
                "LT" => Option_::Lt,
                "LE" => Option_::Le,
                "BT" => Option_::Bt,
                "NB" => Option_::Nb,
                "CP" => Option_::Cp,
                "NP" => Option_::Np,
                other => return Err(RangeError::Option(other.to_owned())),
            };
            let pattern = matches!(option, Option_::Cp | Option_::Np);
            let conv = |s: &str| if pattern { s.to_owned() } else { convert(s) };
            Ok(RangeRow {
                include,
                option,
                low: conv(field(r, "LOW")),
                high: conv(field(r, "HIGH")),
            })
        })
        .collect()
}

/// Whether `value` is selected by `rows`.
pub(crate) fn selects(rows: &[RangeRow], value: &str) -> bool {
    let any_include = rows.iter().any(|r| r.include);
    let included = !any_include || rows.iter().filter(|r| r.include).any(|r| r.matches(value));
    included && !rows.iter().filter(|r| !r.include).any(|r| r.matches(value))
}

impl RangeRow {
    fn matches(&self, v: &str) -> bool {
        let (low, high) = (self.low.as_str(), self.high.as_str());
        match self.option {
            Option_::Eq => v == low,
            Option_::Ne => v != low,
            Option_::Gt => v > low,
            Option_::Ge => v >= low,
            Option_::Lt => v < low,
            Option_::Le => v <= low,
            Option_::Bt => v >= low && v <= high,
            Option_::Nb => !(v >= low && v <= high),
            Option_::Cp => pattern_match(low, v),
            Option_::Np => !pattern_match(low, v),
        }
    }
}

/// ABAP `CP`: `*` matches any string, `+` any one character, `#` escapes.
fn pattern_match(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    glob(&p, &v)
}

fn glob(p: &[char], v: &[char]) -> bool {
    match p.split_first() {
        None => v.is_empty(),
        Some(('*', rest)) => (0..=v.len()).any(|i| glob(rest, &v[i..])),
        Some(('+', rest)) => !v.is_empty() && glob(rest, &v[1..]),
        Some(('#', rest)) => match rest.split_first() {
            Some((c, rest2)) => v.first() == Some(c) && glob(rest2, &v[1..]),
            None => v.is_empty(),
        },
        Some((c, rest)) => {
            v.first().is_some_and(|x| x.eq_ignore_ascii_case(c)) && glob(rest, &v[1..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sign: &str, option: &str, low: &str, high: &str) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("SIGN".into(), sign.into());
        m.insert("OPTION".into(), option.into());
        m.insert("LOW".into(), low.into());
        m.insert("HIGH".into(), high.into());
        m
    }

    #[test]
    fn include_exclude_and_patterns() {
        let rows = parse(
            &[row("I", "BT", "1000", "1005"), row("E", "EQ", "1003", "")],
            |s| format!("{s:0>10}"),
        )
        .unwrap_or_default();
        assert!(selects(&rows, "0000001000"));
        assert!(!selects(&rows, "0000001003"));
        assert!(!selects(&rows, "0000001006"));
        let rows = parse(&[row("I", "CP", "*100+", "")], str::to_owned).unwrap_or_default();
        assert!(selects(&rows, "0000001004"));
        assert!(!selects(&rows, "0000001010"));
        assert!(selects(&[], "anything"));
    }

    #[test]
    fn invalid_sign_and_option() {
        assert_eq!(
            parse(&[row("X", "EQ", "", "")], str::to_owned).err(),
            Some(RangeError::Sign("X".into()))
        );
        assert_eq!(
            parse(&[row("I", "ZZ", "", "")], str::to_owned).err(),
            Some(RangeError::Option("ZZ".into()))
        );
    }
}
