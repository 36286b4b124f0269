//! Reading `RFC_READ_TABLE` answers: each `DATA` line is cut at the `OFFSET` and
//! `LENGTH` its `FIELDS` catalogue gives (so no delimiter can collide with the
//! data), and each value is typed by the field's ABAP type:
//!
//! | `TYPE` | JSON |
//! |---|---|
//! | `I` `b` `s` `8` (integers) | number |
//! | `F` (float) | number |
//! | `P` (packed) | string, no rounding (architecture rule); `12.50-` becomes `-12.50` |
//! | `N` (NUMC) | string with its leading zeros |
//! | `C` and others | string, trailing blanks removed |
//! | `D` | `YYYY-MM-DD`; initial (`00000000`, blank) → `null` |
//! | `T` | `HH:MM:SS`; blank → `null` |
//!
//! Also the split of a field list that does not fit one 512-character line into
//! several reads ([`plan_split`]), and stitching their rows back by position
//! ([`stitch`]), checking the table's key fields agree row by row.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::actions::ActionError;
use crate::actions::outcome::text;

/// Width of one `RFC_READ_TABLE` data line.
pub(crate) const LINE_WIDTH: usize = 512;

/// One column of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    /// Field name.
    pub(crate) name: String,
    /// ABAP type letter.
    pub(crate) kind: String,
    /// Characters in the line.
    pub(crate) length: usize,
    /// Offset in the line.
    offset: usize,
    /// Short description.
    pub(crate) description: String,
}

impl Column {
    /// The column as the answer's `fields` lists it.
    pub(crate) fn body(&self) -> ColumnBody<'_> {
        ColumnBody {
            description: &self.description,
            length: self.length,
            name: &self.name,
            kind: &self.kind,
        }
    }
}

/// A column as a table read's answer lists it. Members in name order, as the
/// answer always had them.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = TableField)]
pub(crate) struct ColumnBody<'a> {
    #[schema(required = false)]
    description: &'a str,
    length: usize,
    name: &'a str,
    /// ABAP type letter (`C`, `N`, `D`, `T`, `P`, `I`, `F`, …).
    #[serde(rename = "type")]
    kind: &'a str,
}

/// The columns and rows of one `RFC_READ_TABLE` answer.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    /// The field catalogue.
    pub(crate) columns: Vec<Column>,
    /// Rows, typed, by field name.
    pub(crate) rows: Vec<Map<String, Value>>,
}

/// A NUMC or INT member as a number (`"000035"` or `35`).
fn number(row: &Value, name: &str) -> usize {
    match row.get(name) {
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// Parses one answer (its `FIELDS` and `DATA`).
pub(crate) fn parse(params: &Map<String, Value>) -> Answer {
    let columns: Vec<Column> = params
        .get("FIELDS")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|f| Column {
            name: text(f, "FIELDNAME").to_owned(),
            kind: text(f, "TYPE").to_owned(),
            length: number(f, "LENGTH"),
            offset: number(f, "OFFSET"),
            description: text(f, "FIELDTEXT").to_owned(),
        })
        .collect();
    let rows = params
        .get("DATA")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|line| {
            let chars: Vec<char> = text(line, "WA").chars().collect();
            columns
                .iter()
                .map(|c| {
                    let end = (c.offset + c.length).min(chars.len());
                    let start = c.offset.min(end);
                    let raw: String = chars[start..end].iter().collect();
                    (c.name.clone(), typed(&c.kind, &raw))
                })
                .collect()
        })
        .collect();
    Answer { columns, rows }
}

/// One value typed by its ABAP type letter (see the module docs).
pub(crate) fn typed(kind: &str, raw: &str) -> Value {
    let t = raw.trim();
    match kind {
        "I" | "b" | "s" | "8" => match t {
            "" => json!(0),
            _ => t.parse::<i64>().map_or_else(|_| json!(t), Value::from),
        },
        "F" => t
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| json!(t), Value::Number),
        "P" => match t.strip_suffix('-') {
            Some(digits) => json!(format!("-{}", digits.trim())),
            None if t.is_empty() => json!("0"),
            None => json!(t),
        },
        "D" => match t {
            "" | "00000000" => Value::Null,
            d if d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()) => {
                json!(format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..]))
            }
            other => json!(other),
        },
        "T" => match t {
            "" => Value::Null,
            d if d.len() == 6 && d.bytes().all(|b| b.is_ascii_digit()) => {
                json!(format!("{}:{}:{}", &d[..2], &d[2..4], &d[4..]))
            }
            other => json!(other),
        },
        "N" => json!(t),
        _ => json!(raw.trim_end()),
    }
}

/// A field of the table as `DDIF_FIELDINFO_GET` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LayoutField {
    /// Field name.
    pub(crate) name: String,
    /// Characters it takes in a data line (estimated from type and length).
    pub(crate) width: usize,
    /// Part of the key.
    pub(crate) key: bool,
}

/// The table's fields from `DFIES_TAB`, in table order.
pub(crate) fn layout(params: &Map<String, Value>) -> Vec<LayoutField> {
    params
        .get("DFIES_TAB")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|f| {
            let leng = number(f, "LENG");
            let width = match text(f, "INTTYPE") {
                "I" => 11,
                "b" => 3,
                "s" => 6,
                "8" => 20,
                "F" => 24,
                "P" => leng + 2,
                _ => leng,
            }
            .max(1);
            LayoutField {
                name: text(f, "FIELDNAME").to_owned(),
                width,
                key: text(f, "KEYFLAG") == "X",
            }
        })
        .filter(|f| !f.name.is_empty() && !f.name.starts_with('.'))
        .collect()
}

/// Key fields narrower than this together are repeated in every part of a split.
const KEY_BUDGET: usize = 200;

/// Splits `wanted` (or every field when empty) into field lists that each fit one
/// line; the key fields (when narrow enough) go into every list so the parts can
/// be checked against each other. Returns the lists and the repeated keys.
///
/// # Errors
/// [`ActionError::BadRequest`] when a wanted field is not in the table or is
/// wider than a line.
pub(crate) fn plan_split(
    fields: &[LayoutField],
    wanted: &[String],
) -> Result<(Vec<Vec<String>>, Vec<String>), ActionError> {
    let wanted: Vec<&LayoutField> = if wanted.is_empty() {
        fields.iter().collect()
    } else {
        wanted
            .iter()
            .map(|name| {
                fields.iter().find(|f| &f.name == name).ok_or_else(|| {
                    ActionError::BadRequest(format!("fields: the table has no field {name}"))
                })
            })
            .collect::<Result<_, _>>()?
    };
    let keys: Vec<&LayoutField> = fields.iter().filter(|f| f.key).collect();
    let key_width: usize = keys.iter().map(|k| k.width).sum();
    let keys: Vec<&LayoutField> = if key_width <= KEY_BUDGET {
        keys
    } else {
        Vec::new()
    };
    let key_width: usize = keys.iter().map(|k| k.width).sum();
    let key_names: Vec<String> = keys.iter().map(|k| k.name.clone()).collect();

    let mut chunks: Vec<Vec<String>> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut width = 0;
    for field in wanted.into_iter().filter(|f| !key_names.contains(&f.name)) {
        if field.width > LINE_WIDTH {
            return Err(ActionError::BadRequest(format!(
                "fields: {} is {} characters wide, more than RFC_READ_TABLE's line of {LINE_WIDTH}",
                field.name, field.width
            )));
        }
        if !current.is_empty() && width + field.width > LINE_WIDTH {
            chunks.push(std::mem::take(&mut current));
        }
        if current.is_empty() {
            // Keys lead each part, unless this field only fits alone.
            let with_keys = key_width + field.width <= LINE_WIDTH;
            current = if with_keys {
                key_names.clone()
            } else {
                Vec::new()
            };
            width = if with_keys { key_width } else { 0 };
        }
        current.push(field.name.clone());
        width += field.width;
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    if chunks.is_empty() {
        chunks.push(key_names.clone());
    }
    Ok((chunks, key_names))
}

/// Joins the answers of a split read row by row.
///
/// # Errors
/// [`ActionError::InconsistentRead`] when the parts disagree (row counts or key values differ: the table changed
/// between the reads or SAP returned rows in another order).
pub(crate) fn stitch(parts: Vec<Answer>, keys: &[String]) -> Result<Answer, ActionError> {
    let mut parts = parts.into_iter();
    let Some(mut whole) = parts.next() else {
        return Ok(Answer {
            columns: Vec::new(),
            rows: Vec::new(),
        });
    };
    for part in parts {
        if part.rows.len() != whole.rows.len() {
            return Err(ActionError::InconsistentRead(
                "the parts returned different row counts",
            ));
        }
        for (row, extra) in whole.rows.iter_mut().zip(part.rows) {
            for (name, value) in extra {
                if keys.contains(&name) {
                    if row.get(&name).is_some_and(|v| *v != value) {
                        return Err(ActionError::InconsistentRead(
                            "the parts' key fields disagree",
                        ));
                    }
                } else {
                    row.insert(name, value);
                }
            }
        }
        for column in part.columns {
            if !whole.columns.iter().any(|c| c.name == column.name) {
                whole.columns.push(column);
            }
        }
    }
    Ok(whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_typed() {
        assert_eq!(typed("I", "        42 "), json!(42));
        assert_eq!(typed("I", ""), json!(0));
        assert_eq!(typed("P", "   12.50-"), json!("-12.50"));
        assert_eq!(typed("P", " 3.10"), json!("3.10"));
        assert_eq!(typed("D", "20240102"), json!("2024-01-02"));
        assert_eq!(typed("D", "00000000"), Value::Null);
        assert_eq!(typed("T", "235959"), json!("23:59:59"));
        assert_eq!(typed("N", "0007"), json!("0007"));
        assert_eq!(typed("C", "Walldorf   "), json!("Walldorf"));
        assert_eq!(typed("F", "1.5E+01"), json!(15.0));
    }

    #[test]
    fn lines_are_cut_at_offsets() {
        let params = json!({
            "FIELDS": [
                {"FIELDNAME": "KUNNR", "OFFSET": "000000", "LENGTH": "000010", "TYPE": "C", "FIELDTEXT": "Customer"},
                {"FIELDNAME": "ERDAT", "OFFSET": "000010", "LENGTH": "000008", "TYPE": "D", "FIELDTEXT": "Created"},
                {"FIELDNAME": "NAME1", "OFFSET": "000018", "LENGTH": "000035", "TYPE": "C", "FIELDTEXT": "Name"},
            ],
            "DATA": [{"WA": "000000100020240102A|B;C"}, {"WA": "0000001001"}],
        });
        let answer = parse(params.as_object().unwrap());
        assert_eq!(answer.rows[0]["NAME1"], "A|B;C");
        assert_eq!(answer.rows[0]["ERDAT"], "2024-01-02");
        assert_eq!(answer.rows[1]["ERDAT"], Value::Null);
        assert_eq!(answer.rows[1]["NAME1"], "");
    }

    #[test]
    fn wide_field_lists_split_with_keys() {
        let field = |name: &str, width, key| LayoutField {
            name: name.into(),
            width,
            key,
        };
        let fields = vec![
            field("MANDT", 3, true),
            field("KUNNR", 10, true),
            field("A", 300, false),
            field("B", 300, false),
            field("C", 100, false),
        ];
        let (chunks, keys) = plan_split(&fields, &[]).unwrap();
        assert_eq!(keys, vec!["MANDT", "KUNNR"]);
        assert_eq!(
            chunks,
            vec![
                vec!["MANDT", "KUNNR", "A"],
                vec!["MANDT", "KUNNR", "B", "C"]
            ]
        );
        assert!(plan_split(&fields, &["Z".into()]).is_err());
        let too_wide = vec![field("X", 600, false)];
        assert!(plan_split(&too_wide, &[]).is_err());
    }

    #[test]
    fn parts_are_stitched_and_checked() {
        let part = |pairs: &[(&str, &str)]| Answer {
            columns: Vec::new(),
            rows: vec![
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), json!(v)))
                    .collect(),
            ],
        };
        let whole = stitch(
            vec![
                part(&[("K", "1"), ("A", "a")]),
                part(&[("K", "1"), ("B", "b")]),
            ],
            &["K".into()],
        )
        .unwrap();
        assert_eq!(whole.rows[0]["B"], "b");
        let bad = stitch(
            vec![part(&[("K", "1")]), part(&[("K", "2")])],
            &["K".into()],
        );
        assert!(bad.is_err());
    }
}
