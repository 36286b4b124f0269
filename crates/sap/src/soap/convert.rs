//! Conversion between SOAP-RFC XML and the JSON parameter model (PyRFC
//! conventions), guided by the function's interface ([`FunctionMeta`]).
//!
//! | ABAP | JSON | SOAP element text |
//! |---|---|---|
//! | CHAR, NUMC, STRING | string | the string |
//! | DATS | `"20240131"` | `2024-01-31` |
//! | TIMS | `"235959"` | `23:59:59` |
//! | INT1/2/4/8, FLTP | number | the number |
//! | packed, DECFLOAT | string | the decimal |
//! | RAW, XSTRING | base64 string | base64 |
//! | structure | object | one child element per field |
//! | table | array of objects | one `<item>` per row |
//!
//! Names containing `/` travel as `_-`. Where the interface is unknown the shape is
//! read from the data itself (children named `item` make a table).

use serde_json::{Map, Number, Value};

use super::metadata::{Field, FunctionMeta, ScalarType, Shape};
use super::xml::{self, Element};
use crate::Parameters;

/// A value that does not fit its ABAP type, or a name that cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ConvertError(pub(crate) String);

/// Reads the parameters under a function (request) or `.Response` element.
///
/// Empty top-level elements of numeric types are left out (the function's default
/// applies), as SAP does for an empty import.
///
/// # Errors
/// [`ConvertError`] when a value does not fit its type (an INT that is not a number).
pub(crate) fn params_from_xml(
    parent: &Element,
    meta: &FunctionMeta,
) -> Result<Parameters, ConvertError> {
    let mut params = Parameters::new();
    for child in &parent.children {
        let name = xml::name_from_xml(&child.name).into_owned();
        let shape = meta.shape_of(&name);
        let numeric = matches!(
            shape,
            Shape::Scalar(ScalarType::Int | ScalarType::Float | ScalarType::Packed)
        );
        if numeric && child.children.is_empty() && child.text.trim().is_empty() {
            continue;
        }
        let value =
            value_from_xml(child, shape).map_err(|e| ConvertError(format!("{name}: {}", e.0)))?;
        params.insert(name, value);
    }
    Ok(params)
}

/// Reads one element as a value of `shape`.
///
/// # Errors
/// [`ConvertError`] when a scalar does not fit its type.
pub(crate) fn value_from_xml(element: &Element, shape: &Shape) -> Result<Value, ConvertError> {
    match shape {
        Shape::Scalar(ty) if element.children.is_empty() => scalar_from_text(&element.text, *ty),
        Shape::Structure(fields) => Ok(Value::Object(fields_from_xml(element, Some(fields))?)),
        Shape::Table(fields) => element
            .children
            .iter()
            .map(|row| fields_from_xml(row, Some(fields)).map(Value::Object))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Shape::Scalar(_) | Shape::Generic => generic_from_xml(element),
    }
}

fn fields_from_xml(
    element: &Element,
    fields: Option<&[Field]>,
) -> Result<Map<String, Value>, ConvertError> {
    let mut object = Map::new();
    for child in &element.children {
        let name = xml::name_from_xml(&child.name).into_owned();
        let shape = fields
            .and_then(|fs| fs.iter().find(|f| f.name == name))
            .map_or(&Shape::Generic, |f| &f.shape);
        let value =
            value_from_xml(child, shape).map_err(|e| ConvertError(format!("{name}: {}", e.0)))?;
        object.insert(name, value);
    }
    Ok(object)
}

fn generic_from_xml(element: &Element) -> Result<Value, ConvertError> {
    if element.children.is_empty() {
        return Ok(Value::String(element.text.clone()));
    }
    if element.children.iter().all(|c| c.name == "item") {
        return element
            .children
            .iter()
            .map(|row| match row.children.is_empty() {
                true => Ok(Value::String(row.text.clone())),
                false => fields_from_xml(row, None).map(Value::Object),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    fields_from_xml(element, None).map(Value::Object)
}

/// Converts element text to the JSON value of an ABAP scalar type.
///
/// # Errors
/// [`ConvertError`] for an INT or FLTP that is not a number.
pub(crate) fn scalar_from_text(text: &str, ty: ScalarType) -> Result<Value, ConvertError> {
    let trimmed = text.trim();
    Ok(match ty {
        ScalarType::Int => {
            if trimmed.is_empty() {
                Value::from(0)
            } else {
                let n: i64 = trimmed
                    .parse()
                    .map_err(|_| ConvertError(format!("'{}' is not an integer", clip(trimmed))))?;
                Value::from(n)
            }
        }
        ScalarType::Float => {
            let f: f64 = if trimmed.is_empty() {
                0.0
            } else {
                trimmed
                    .parse()
                    .map_err(|_| ConvertError(format!("'{}' is not a number", clip(trimmed))))?
            };
            Value::Number(
                Number::from_f64(f).ok_or_else(|| ConvertError("not a finite number".into()))?,
            )
        }
        ScalarType::Date => Value::String(strip_separators(trimmed, '-', &[4, 7], 10)),
        ScalarType::Time => Value::String(strip_separators(trimmed, ':', &[2, 5], 8)),
        ScalarType::Packed | ScalarType::Raw => Value::String(trimmed.to_owned()),
        ScalarType::Char | ScalarType::Numc | ScalarType::String => Value::String(text.to_owned()),
    })
}

/// `2024-01-31` → `20240131` when the separators sit where they should; other
/// text is left for the system to judge.
fn strip_separators(text: &str, sep: char, at: &[usize], len: usize) -> String {
    let bytes = text.as_bytes();
    if bytes.len() == len && at.iter().all(|&i| bytes[i] == sep as u8) {
        text.chars().filter(|&c| c != sep).collect()
    } else {
        text.to_owned()
    }
}

fn clip(text: &str) -> &str {
    match text.char_indices().nth(40) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

/// Writes one parameter (or field) as an element: scalars as text, objects as
/// nested elements, arrays as `<item>` rows.
///
/// # Errors
/// [`ConvertError`] when a name cannot be an XML element name.
pub(crate) fn push_value(
    out: &mut String,
    name: &str,
    value: &Value,
    shape: &Shape,
) -> Result<(), ConvertError> {
    if !xml::is_safe_name(name) {
        return Err(ConvertError(format!(
            "'{}' is not a valid ABAP name",
            clip(name)
        )));
    }
    let tag = xml::name_to_xml(name);
    match value {
        Value::Array(rows) => {
            let row_fields = match shape {
                Shape::Table(fields) | Shape::Structure(fields) => Some(fields.as_slice()),
                _ => None,
            };
            if rows.is_empty() {
                xml::push_leaf(out, &tag, "");
                return Ok(());
            }
            open(out, &tag);
            for row in rows {
                match row {
                    Value::Object(object) => {
                        open(out, "item");
                        push_fields(out, object, row_fields)?;
                        close(out, "item");
                    }
                    scalar => {
                        xml::push_leaf(out, "item", &scalar_to_text(scalar, ScalarType::Char))
                    }
                }
            }
            close(out, &tag);
        }
        Value::Object(object) => {
            let fields = match shape {
                Shape::Structure(fields) | Shape::Table(fields) => Some(fields.as_slice()),
                _ => None,
            };
            open(out, &tag);
            push_fields(out, object, fields)?;
            close(out, &tag);
        }
        scalar => {
            let ty = match shape {
                Shape::Scalar(ty) => *ty,
                _ => ScalarType::Char,
            };
            xml::push_leaf(out, &tag, &scalar_to_text(scalar, ty));
        }
    }
    Ok(())
}

/// Writes an object's fields, in interface order first, then any others.
fn push_fields(
    out: &mut String,
    object: &Map<String, Value>,
    fields: Option<&[Field]>,
) -> Result<(), ConvertError> {
    let known = fields.unwrap_or(&[]);
    for field in known {
        if let Some(value) = object.get(&field.name) {
            push_value(out, &field.name, value, &field.shape)?;
        }
    }
    for (name, value) in object {
        if !known.iter().any(|f| &f.name == name) {
            push_value(out, name, value, &Shape::Generic)?;
        }
    }
    Ok(())
}

/// The element text of a JSON scalar of ABAP type `ty`.
pub(crate) fn scalar_to_text(value: &Value, ty: ScalarType) -> String {
    match value {
        Value::String(s) => {
            let digits = s.bytes().all(|b| b.is_ascii_digit());
            match ty {
                ScalarType::Date if s.len() == 8 && digits => {
                    format!("{}-{}-{}", &s[..4], &s[4..6], &s[6..])
                }
                ScalarType::Time if s.len() == 6 && digits => {
                    format!("{}:{}:{}", &s[..2], &s[2..4], &s[4..])
                }
                _ => s.clone(),
            }
        }
        // A whole number written `10.0` goes to SAP as `10` (an INT field refuses
        // the fraction); others as written.
        Value::Number(n) => crate::integer(value).map_or_else(|| n.to_string(), |i| i.to_string()),
        Value::Bool(true) => "X".to_owned(),
        Value::Bool(false) | Value::Null => String::new(),
        Value::Array(_) | Value::Object(_) => String::new(),
    }
}

fn open(out: &mut String, tag: &str) {
    out.push('<');
    out.push_str(tag);
    out.push('>');
}

fn close(out: &mut String, tag: &str) {
    out.push_str("</");
    out.push_str(tag);
    out.push('>');
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::soap::metadata::{Direction, Param};

    fn meta() -> FunctionMeta {
        let fields = Arc::new(vec![
            Field {
                name: "KUNNR".into(),
                shape: Shape::Scalar(ScalarType::Char),
            },
            Field {
                name: "ERDAT".into(),
                shape: Shape::Scalar(ScalarType::Date),
            },
            Field {
                name: "COUNT".into(),
                shape: Shape::Scalar(ScalarType::Int),
            },
        ]);
        FunctionMeta {
            params: vec![
                Param {
                    name: "ROWS".into(),
                    direction: Direction::Tables,
                    shape: Shape::Table(fields.clone()),
                },
                Param {
                    name: "HEAD".into(),
                    direction: Direction::Exporting,
                    shape: Shape::Structure(fields),
                },
                Param {
                    name: "MAX".into(),
                    direction: Direction::Importing,
                    shape: Shape::Scalar(ScalarType::Int),
                },
                Param {
                    name: "/BI0/T".into(),
                    direction: Direction::Importing,
                    shape: Shape::Scalar(ScalarType::Time),
                },
            ],
        }
    }

    #[test]
    fn round_trips_typed_values() {
        let params = json!({
            "ROWS": [{"KUNNR": "0000001000", "ERDAT": "20240131", "COUNT": 3}],
            "HEAD": {"KUNNR": " A&B<", "ERDAT": "00000000", "COUNT": -1},
            "MAX": 7, "/BI0/T": "235959", "EXTRA": "x"
        });
        let meta = meta();
        let mut out = String::from("<F>");
        for (name, value) in params.as_object().unwrap() {
            push_value(&mut out, name, value, meta.shape_of(name)).unwrap();
        }
        out.push_str("</F>");
        assert!(out.contains("<ERDAT>2024-01-31</ERDAT>"), "{out}");
        assert!(out.contains("<_-BI0_-T>23:59:59</_-BI0_-T>"), "{out}");
        let parsed = params_from_xml(&xml::parse(out.as_bytes()).unwrap(), &meta).unwrap();
        assert_eq!(Value::Object(parsed), params);
    }

    #[test]
    fn rejects_bad_numbers_and_names() {
        let element = xml::parse(b"<F><MAX>seven</MAX></F>").unwrap();
        assert!(params_from_xml(&element, &meta()).is_err());
        let mut out = String::new();
        assert!(push_value(&mut out, "A><B", &json!("x"), &Shape::Generic).is_err());
    }

    #[test]
    fn generic_shapes_follow_the_data() {
        let element =
            xml::parse(b"<F><T><item><A>1</A></item></T><S><A>2</A></S><E/></F>").unwrap();
        let parsed = params_from_xml(&element, &FunctionMeta::default()).unwrap();
        assert_eq!(
            Value::Object(parsed),
            json!({"T": [{"A": "1"}], "S": {"A": "2"}, "E": ""})
        );
    }
}
