//! Input validation and output formatting of function parameters, driven by the
//! metadata model, following PyRFC's conventions.
//!
//! Input: an unknown parameter or structure field is `RFC_INVALID_PARAMETER`; a
//! value of the wrong JSON type, a CHAR longer than its length, a NUMC with
//! non-digits, a DATS that is not a valid `YYYYMMDD`, a TIMS that is not `HHMMSS`
//! is `RFC_CONVERSION_FAILURE` (both `EXTERNAL_RUNTIME_FAILURE`, raised before the
//! call reaches the function). A missing IMPORTING parameter is *not* an error: as
//! on a real system, RFC passes it initial (or its default) and the function deals
//! with it. JSON `null` counts as "not sent". EXPORTING parameters sent as input
//! are ignored, as the RFC library does.
//!
//! Output: every EXPORTING, CHANGING and TABLES parameter is present; structures
//! carry all their fields; CHAR is right-trimmed, NUMC zero-padded, DATS/TIMS are
//! strings (`00000000` when initial), INT4 is a number, PACKED a string.

use base64::Engine;
use serde_json::{Map, Value};

use super::errors::{conversion_failure, invalid_parameter};
use super::types::{FieldDef, FunctionDef, Kind, ParamType};
use crate::{Parameters, RfcError, date_time};

/// The validated, normalised input of one call: every IMPORTING, CHANGING and
/// TABLES parameter is present (initial or default when not sent).
#[derive(Debug, Clone)]
pub(crate) struct Input {
    values: Parameters,
}

impl Input {
    /// An elementary parameter as a string (`""` when absent or not a string).
    pub(crate) fn str(&self, name: &str) -> &str {
        self.values.get(name).and_then(Value::as_str).unwrap_or("")
    }

    /// An INT4 parameter (0 when absent).
    pub(crate) fn int(&self, name: &str) -> i64 {
        self.values.get(name).and_then(Value::as_i64).unwrap_or(0)
    }

    /// A structure parameter (empty when absent).
    pub(crate) fn structure(&self, name: &str) -> Map<String, Value> {
        self.values
            .get(name)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    }

    /// A table parameter's rows (empty when absent).
    pub(crate) fn table(&self, name: &str) -> Vec<Map<String, Value>> {
        self.values
            .get(name)
            .and_then(Value::as_array)
            .map(|rows| rows.iter().filter_map(|r| r.as_object().cloned()).collect())
            .unwrap_or_default()
    }

    /// The raw normalised value of a parameter.
    pub(crate) fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }
}

/// A field of a structure row as a string (`""` when absent).
pub(crate) fn field<'a>(row: &'a Map<String, Value>, name: &str) -> &'a str {
    row.get(name).and_then(Value::as_str).unwrap_or("")
}

/// Validates `params` against `def` and returns the normalised input.
///
/// # Errors
/// `RFC_INVALID_PARAMETER` or `RFC_CONVERSION_FAILURE` (group
/// `EXTERNAL_RUNTIME_FAILURE`) naming the parameter or field.
pub(crate) fn validate(def: &FunctionDef, params: &Parameters) -> Result<Input, RfcError> {
    for name in params.keys() {
        if def.param(name).is_none() {
            return Err(invalid_parameter(name));
        }
    }
    let mut values = Parameters::new();
    for p in def.params.iter().filter(|p| p.class.is_input()) {
        let sent = params.get(p.name).filter(|v| !v.is_null());
        let value = match (p.ty, sent) {
            (ParamType::Elem { field, .. }, Some(v)) => elem_in(&field, v, p.name)?,
            (ParamType::Elem { field, .. }, None) => default_value(&field, p.default),
            (ParamType::Struct(s), Some(v)) => struct_in(s.fields, v, p.name)?,
            (ParamType::Struct(s), None) => initial_struct(s.fields),
            (ParamType::Table(s), Some(v)) => table_in(s.fields, v, p.name)?,
            (ParamType::Table(_), None) => Value::Array(Vec::new()),
        };
        values.insert(p.name.to_owned(), value);
    }
    Ok(Input { values })
}

/// Builds the result of a call: every output parameter of `def`, taken from `raw`
/// (what the function produced) or, for CHANGING and TABLES, from the input, and
/// formatted per PyRFC.
pub(crate) fn format_output(def: &FunctionDef, input: &Input, mut raw: Parameters) -> Parameters {
    let mut out = Parameters::new();
    for p in def.params.iter().filter(|p| p.class.is_output()) {
        let v = raw.remove(p.name).or_else(|| input.get(p.name).cloned());
        let formatted = match p.ty {
            ParamType::Elem { field, .. } => elem_out(&field, v.as_ref()),
            ParamType::Struct(s) => struct_out(s.fields, v.as_ref()),
            ParamType::Table(s) => match v {
                Some(Value::Array(rows)) => {
                    Value::Array(rows.iter().map(|r| struct_out(s.fields, Some(r))).collect())
                }
                _ => Value::Array(Vec::new()),
            },
        };
        out.insert(p.name.to_owned(), formatted);
    }
    out
}

/// Formats one structure row for output (all fields, PyRFC conventions).
pub(crate) fn struct_out(fields: &[FieldDef], v: Option<&Value>) -> Value {
    let row = v.and_then(Value::as_object);
    let mut m = Map::new();
    for f in fields {
        m.insert(
            f.name.to_owned(),
            elem_out(f, row.and_then(|r| r.get(f.name))),
        );
    }
    Value::Object(m)
}

/// Formats one elementary value for output.
pub(crate) fn elem_out(f: &FieldDef, v: Option<&Value>) -> Value {
    let text = match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => if *b { "X" } else { "" }.to_owned(),
        _ => String::new(),
    };
    match f.kind {
        Kind::Char => Value::String(truncate(&text, f.len).trim_end().to_owned()),
        Kind::Numc => Value::String(pad_numc(text.trim(), f.len)),
        Kind::Dats | Kind::Tims => {
            let t = text.trim();
            if t.is_empty() {
                Value::String("0".repeat(f.len as usize))
            } else {
                t.into()
            }
        }
        Kind::Int4 | Kind::Int1 | Kind::Int2 | Kind::Int8 => Value::from(
            v.and_then(Value::as_i64)
                .unwrap_or_else(|| text.trim().parse::<i64>().unwrap_or(0)),
        ),
        Kind::Float => {
            let x = v
                .and_then(Value::as_f64)
                .unwrap_or_else(|| text.trim().parse::<f64>().unwrap_or(0.0));
            serde_json::Number::from_f64(x).map_or(Value::from(0.0), Value::Number)
        }
        Kind::Packed | Kind::Decf16 | Kind::Decf34 => Value::String(if text.trim().is_empty() {
            "0".into()
        } else {
            text
        }),
        Kind::Raw => {
            let mut bytes = BASE64.decode(text.trim()).unwrap_or_default();
            bytes.resize(f.len as usize, 0);
            Value::String(BASE64.encode(bytes))
        }
        Kind::Str | Kind::XStr => Value::String(text),
    }
}

/// Standard base64, as the JSON model carries RAW and XSTRING.
const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The first `len` characters of `s`.
pub(crate) fn truncate(s: &str, len: u32) -> &str {
    match s.char_indices().nth(len as usize) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Left-pads digits with zeros to `len` (keeps the last `len` digits if longer).
pub(crate) fn pad_numc(s: &str, len: u32) -> String {
    let len = len as usize;
    if s.len() >= len {
        s[s.len() - len..].to_owned()
    } else {
        format!("{}{s}", "0".repeat(len - s.len()))
    }
}

fn default_value(f: &FieldDef, default: &str) -> Value {
    match default {
        "" | "SPACE" | "SY-LANGU" => initial(f),
        d => match f.kind {
            k if k.is_number() => Value::from(d.parse::<i64>().unwrap_or(0)),
            _ => Value::String(d.trim_matches('\'').to_owned()),
        },
    }
}

fn initial(f: &FieldDef) -> Value {
    match f.kind {
        Kind::Int4 | Kind::Int1 | Kind::Int2 | Kind::Int8 => Value::from(0),
        Kind::Float => Value::from(0.0),
        Kind::Numc | Kind::Dats | Kind::Tims => Value::String("0".repeat(f.len as usize)),
        Kind::Packed | Kind::Decf16 | Kind::Decf34 => Value::String("0".into()),
        Kind::Raw => Value::String(BASE64.encode(vec![0u8; f.len as usize])),
        Kind::Char | Kind::Str | Kind::XStr => Value::String(String::new()),
    }
}

fn initial_struct(fields: &[FieldDef]) -> Value {
    Value::Object(
        fields
            .iter()
            .map(|f| (f.name.to_owned(), initial(f)))
            .collect(),
    )
}

fn struct_in(fields: &[FieldDef], v: &Value, path: &str) -> Result<Value, RfcError> {
    let Value::Object(given) = v else {
        return Err(conversion_failure(
            path,
            "a structure (JSON object) is required",
        ));
    };
    for name in given.keys() {
        if !fields.iter().any(|f| f.name == name) {
            return Err(invalid_parameter(&format!("{path}-{name}")));
        }
    }
    let mut m = Map::new();
    for f in fields {
        let value = match given.get(f.name).filter(|v| !v.is_null()) {
            Some(v) => elem_in(f, v, &format!("{path}-{}", f.name))?,
            None => initial(f),
        };
        m.insert(f.name.to_owned(), value);
    }
    Ok(Value::Object(m))
}

fn table_in(fields: &[FieldDef], v: &Value, path: &str) -> Result<Value, RfcError> {
    let Value::Array(rows) = v else {
        return Err(conversion_failure(
            path,
            "a table (JSON array of objects) is required",
        ));
    };
    let mut out = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        out.push(struct_in(fields, row, &format!("{path}[{i}]"))?);
    }
    Ok(Value::Array(out))
}

/// Validates and normalises one elementary input value.
fn elem_in(f: &FieldDef, v: &Value, path: &str) -> Result<Value, RfcError> {
    match f.kind {
        Kind::Int4 | Kind::Int1 | Kind::Int2 | Kind::Int8 => {
            let name = f.kind.datatype();
            let n = crate::integer(v).ok_or_else(|| {
                conversion_failure(path, format!("an integer is required for {name}, got {v}"))
            })?;
            let fits = match f.kind {
                Kind::Int1 => u8::try_from(n).is_ok(),
                Kind::Int2 => i16::try_from(n).is_ok(),
                Kind::Int4 => i32::try_from(n).is_ok(),
                _ => true,
            };
            if !fits {
                return Err(conversion_failure(
                    path,
                    format!("{n} is out of range for {name}"),
                ));
            }
            Ok(Value::from(n))
        }
        Kind::Float => {
            let x = v.as_f64().ok_or_else(|| {
                conversion_failure(path, format!("a number is required for FLTP, got {v}"))
            })?;
            Ok(serde_json::Number::from_f64(x).map_or(Value::from(0.0), Value::Number))
        }
        Kind::Raw | Kind::XStr => {
            let bytes = v
                .as_str()
                .and_then(|s| BASE64.decode(s.trim()).ok())
                .ok_or_else(|| {
                    conversion_failure(path, format!("a base64 string is required, got {v}"))
                })?;
            if f.kind == Kind::Raw && bytes.len() > f.len as usize {
                return Err(conversion_failure(
                    path,
                    format!("{} bytes exceed the length of RAW{}", bytes.len(), f.len),
                ));
            }
            Ok(Value::String(BASE64.encode(bytes)))
        }
        Kind::Decf16 | Kind::Decf34 => decfloat_in(v, path),
        Kind::Packed => packed_in(f, v, path),
        _ => {
            let Value::String(s) = v else {
                return Err(conversion_failure(
                    path,
                    format!(
                        "a string is required for {}{}, got {v}",
                        f.datatype(),
                        f.len
                    ),
                ));
            };
            char_like_in(f, s, path)
        }
    }
}

fn char_like_in(f: &FieldDef, s: &str, path: &str) -> Result<Value, RfcError> {
    let chars = s.chars().count();
    match f.kind {
        Kind::Str => Ok(Value::String(s.to_owned())),
        Kind::Char => {
            let trimmed = s.trim_end();
            if trimmed.chars().count() > f.len as usize {
                return Err(conversion_failure(
                    path,
                    format!("{chars} characters exceed the length of CHAR{}", f.len),
                ));
            }
            Ok(Value::String(trimmed.to_owned()))
        }
        Kind::Numc => {
            let t = s.trim();
            if !t.chars().all(|c| c.is_ascii_digit()) {
                return Err(conversion_failure(
                    path,
                    format!("'{s}' is not numeric (NUMC{})", f.len),
                ));
            }
            if t.len() > f.len as usize {
                return Err(conversion_failure(
                    path,
                    format!("{} digits exceed the length of NUMC{}", t.len(), f.len),
                ));
            }
            Ok(Value::String(pad_numc(t, f.len)))
        }
        Kind::Dats => {
            if !date_time::dats_accepts(s) {
                return Err(conversion_failure(
                    path,
                    format!("'{s}' is not a valid date YYYYMMDD"),
                ));
            }
            let t = s.trim();
            let date = if t.is_empty() {
                date_time::INITIAL_DATE
            } else {
                t
            };
            Ok(Value::String(date.to_owned()))
        }
        Kind::Tims => {
            if !date_time::tims_accepts(s) {
                return Err(conversion_failure(
                    path,
                    format!("'{s}' is not a valid time HHMMSS"),
                ));
            }
            let t = s.trim();
            Ok(Value::String(
                if t.is_empty() { "000000" } else { t }.to_owned(),
            ))
        }
        _ => Err(conversion_failure(path, "not a character type")),
    }
}

fn packed_in(f: &FieldDef, v: &Value, path: &str) -> Result<Value, RfcError> {
    let text = match v {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        other => {
            return Err(conversion_failure(
                path,
                format!("a number or decimal string is required, got {other}"),
            ));
        }
    };
    let unsigned = text.strip_prefix('-').unwrap_or(&text);
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits_ok = !int.is_empty()
        && int.chars().all(|c| c.is_ascii_digit())
        && frac.chars().all(|c| c.is_ascii_digit());
    let max_int = f.len.saturating_sub(f.decimals) as usize;
    if !digits_ok || int.trim_start_matches('0').len() > max_int || frac.len() > f.decimals as usize
    {
        return Err(conversion_failure(
            path,
            format!(
                "'{text}' does not fit DEC{} with {} decimals",
                f.len, f.decimals
            ),
        ));
    }
    Ok(Value::String(text))
}

/// A decimal float: a number or a decimal string (with an optional exponent),
/// kept as the caller wrote it.
fn decfloat_in(v: &Value, path: &str) -> Result<Value, RfcError> {
    let text = match v {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        other => {
            return Err(conversion_failure(
                path,
                format!("a number or decimal string is required, got {other}"),
            ));
        }
    };
    if text.parse::<f64>().is_err() || text.contains(['n', 'N', 'i', 'I']) {
        return Err(conversion_failure(
            path,
            format!("'{text}' is not a decimal number"),
        ));
    }
    Ok(Value::String(text))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(f: &FieldDef, v: Value) -> Result<Value, RfcError> {
        elem_in(f, &v, "P")
    }

    #[test]
    fn every_kind_validates_and_formats() {
        let tims = FieldDef::t("T", "time");
        assert_eq!(check(&tims, json!("235959")).ok(), Some(json!("235959")));
        assert!(check(&tims, json!("240000")).is_err());
        assert!(check(&tims, json!("12345")).is_err());
        let dats = FieldDef::d("D", "date");
        assert!(check(&dats, json!("20240229")).is_ok());
        assert!(check(&dats, json!("20230229")).is_err());
        assert_eq!(check(&dats, json!("")).ok(), Some(json!("00000000")));
        let dec = FieldDef::p("P", 7, 2, "amount");
        assert_eq!(
            check(&dec, json!("-12345.67")).ok(),
            Some(json!("-12345.67"))
        );
        assert_eq!(check(&dec, json!(1.5)).ok(), Some(json!("1.5")));
        assert!(check(&dec, json!("123456.7")).is_err());
        assert!(check(&dec, json!("1.234")).is_err());
        assert!(check(&dec, json!("abc")).is_err());
        let s = FieldDef::s("S", "string");
        assert_eq!(
            check(&s, json!("x".repeat(1000))).ok(),
            Some(json!("x".repeat(1000)))
        );
        let n = FieldDef::n("N", 4, "numc");
        assert_eq!(check(&n, json!("12")).ok(), Some(json!("0012")));
        assert!(check(&n, json!("12a")).is_err());
        assert!(check(&n, json!(12)).is_err());
        let i = FieldDef::i("I", "int");
        assert!(check(&i, json!(3_000_000_000_i64)).is_err());
        assert!(check(&i, json!("3")).is_err());
        let c = FieldDef::c("C", 3, "char");
        assert_eq!(check(&c, json!("ab  ")).ok(), Some(json!("ab")));
        assert!(check(&c, json!("abcd")).is_err());
    }

    #[test]
    fn output_follows_pyrfc_conventions() {
        assert_eq!(
            elem_out(&FieldDef::c("C", 3, ""), Some(&json!("abcdef"))),
            json!("abc")
        );
        assert_eq!(
            elem_out(&FieldDef::n("N", 3, ""), Some(&json!("7"))),
            json!("007")
        );
        assert_eq!(elem_out(&FieldDef::t("T", ""), None), json!("000000"));
        assert_eq!(
            elem_out(&FieldDef::i("I", ""), Some(&json!("42"))),
            json!(42)
        );
        assert_eq!(elem_out(&FieldDef::p("P", 5, 2, ""), None), json!("0"));
    }
}
