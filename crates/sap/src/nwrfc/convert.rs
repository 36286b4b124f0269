//! JSON ⇄ NW RFC data containers, in the conventions of SAP's connectors (see the
//! crate docs): CHAR right-trimmed, NUMC/DATS/TIMS as strings, INT as numbers,
//! FLOAT as numbers, BCD and DECF as strings (never rounded), RAW/XSTRING as
//! base64, structures as objects, tables as arrays of objects (nested at any
//! depth). A value of the wrong JSON type is `RFC_CONVERSION_FAILURE`, an unknown
//! parameter or field `RFC_INVALID_PARAMETER` (both `EXTERNAL_RUNTIME_FAILURE`),
//! before SAP is called; `null` counts as not sent.

use base64::Engine;
use sapbridge_nwrfc::{DataRef, RFCTYPE};
use serde_json::{Map, Value};

use super::errors::from_info;
use super::metadata::{Field, FunctionMeta, Kind};
use crate::{ErrorGroup, Parameters, RfcError};

/// `RFC_INVALID_PARAMETER` for `path`.
fn unknown(path: &str) -> RfcError {
    RfcError::new(
        ErrorGroup::ExternalRuntimeFailure,
        "RFC_INVALID_PARAMETER",
        format!("field '{path}' not found"),
    )
}

/// `RFC_CONVERSION_FAILURE` for `path`.
fn conversion(path: &str, why: impl std::fmt::Display) -> RfcError {
    RfcError::new(
        ErrorGroup::ExternalRuntimeFailure,
        "RFC_CONVERSION_FAILURE",
        format!("Cannot convert value of '{path}': {why}"),
    )
}

/// Checks every parameter name against the interface (before anything is set).
pub(crate) fn check_names(meta: &FunctionMeta, params: &Parameters) -> Result<(), RfcError> {
    match params.keys().find(|name| meta.param(name).is_none()) {
        Some(name) => Err(unknown(name)),
        None => Ok(()),
    }
}

/// Sets the caller's IMPORTING, CHANGING and TABLES parameters.
pub(crate) fn set_inputs(
    data: &mut DataRef<'_>,
    meta: &FunctionMeta,
    params: &Parameters,
) -> Result<(), RfcError> {
    check_names(meta, params)?;
    for param in meta.params.iter().filter(|p| p.is_input()) {
        if let Some(value) = params.get(&param.name).filter(|v| !v.is_null()) {
            set(data, &param.name, &param.kind, value, &param.name)?;
        }
    }
    Ok(())
}

/// Reads every EXPORTING, CHANGING and TABLES parameter.
pub(crate) fn read_outputs(
    data: &mut DataRef<'_>,
    meta: &FunctionMeta,
) -> Result<Parameters, RfcError> {
    let mut out = Parameters::new();
    for param in meta.params.iter().filter(|p| p.is_output()) {
        out.insert(param.name.clone(), get(data, &param.name, &param.kind)?);
    }
    Ok(out)
}

fn set(
    data: &mut DataRef<'_>,
    name: &str,
    kind: &Kind,
    value: &Value,
    path: &str,
) -> Result<(), RfcError> {
    match kind {
        Kind::Scalar { ty, .. } => set_scalar(data, name, *ty, value, path),
        Kind::Structure(fields) => {
            let Value::Object(given) = value else {
                return Err(conversion(path, "a structure (JSON object) is required"));
            };
            let mut inner = data.structure(name).map_err(|e| from_info(&e))?;
            set_fields(&mut inner, fields, given, path)
        }
        Kind::Table(fields) => {
            let Value::Array(rows) = value else {
                return Err(conversion(
                    path,
                    "a table (JSON array of objects) is required",
                ));
            };
            let mut table = data.table(name).map_err(|e| from_info(&e))?;
            for (i, row) in rows.iter().enumerate() {
                let row_path = format!("{path}[{i}]");
                let Value::Object(given) = row else {
                    return Err(conversion(
                        &row_path,
                        "a table row (JSON object) is required",
                    ));
                };
                let mut line = table.append_row().map_err(|e| from_info(&e))?;
                set_fields(&mut line, fields, given, &row_path)?;
            }
            Ok(())
        }
    }
}

fn set_fields(
    data: &mut DataRef<'_>,
    fields: &[Field],
    given: &Map<String, Value>,
    path: &str,
) -> Result<(), RfcError> {
    for (name, value) in given {
        let field_path = format!("{path}-{name}");
        let field = fields
            .iter()
            .find(|f| &f.name == name)
            .ok_or_else(|| unknown(&field_path))?;
        if !value.is_null() {
            set(data, name, &field.kind, value, &field_path)?;
        }
    }
    Ok(())
}

fn set_scalar(
    data: &mut DataRef<'_>,
    name: &str,
    ty: RFCTYPE,
    value: &Value,
    path: &str,
) -> Result<(), RfcError> {
    let sdk = |r: Result<(), sapbridge_nwrfc::RfcErrorInfo>| r.map_err(|e| from_info(&e));
    match ty {
        RFCTYPE::INT | RFCTYPE::INT1 | RFCTYPE::INT2 | RFCTYPE::INT8 => {
            let n = crate::integer(value)
                .ok_or_else(|| conversion(path, format!("an integer is required, got {value}")))?;
            let range = |ok: bool| {
                if ok {
                    Ok(())
                } else {
                    Err(conversion(path, format!("{n} is out of range")))
                }
            };
            match ty {
                RFCTYPE::INT => {
                    range(i32::try_from(n).is_ok())?;
                    sdk(data.set_int(name, n as i32))
                }
                RFCTYPE::INT1 => {
                    range(u8::try_from(n).is_ok())?;
                    sdk(data.set_int1(name, n as u8))
                }
                RFCTYPE::INT2 => {
                    range(i16::try_from(n).is_ok())?;
                    sdk(data.set_int2(name, n as i16))
                }
                _ => sdk(data.set_int8(name, n)),
            }
        }
        RFCTYPE::FLOAT => {
            let x = value
                .as_f64()
                .ok_or_else(|| conversion(path, format!("a number is required, got {value}")))?;
            sdk(data.set_float(name, x))
        }
        RFCTYPE::BCD | RFCTYPE::DECF16 | RFCTYPE::DECF34 => {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(conversion(
                        path,
                        format!("a number or decimal string is required, got {other}"),
                    ));
                }
            };
            sdk(data.set_string(name, &text))
        }
        RFCTYPE::BYTE | RFCTYPE::XSTRING => {
            let text = value
                .as_str()
                .ok_or_else(|| conversion(path, "a base64 string is required"))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| conversion(path, format!("not base64: {e}")))?;
            sdk(data.set_bytes(name, &bytes, ty == RFCTYPE::XSTRING))
        }
        _ => {
            let text = value
                .as_str()
                .ok_or_else(|| conversion(path, format!("a string is required, got {value}")))?;
            match ty {
                RFCTYPE::NUM => sdk(data.set_num(name, text)),
                RFCTYPE::STRING => sdk(data.set_string(name, text)),
                _ => sdk(data.set_chars(name, text)),
            }
        }
    }
}

fn get(data: &mut DataRef<'_>, name: &str, kind: &Kind) -> Result<Value, RfcError> {
    let sdk = |e: sapbridge_nwrfc::RfcErrorInfo| from_info(&e);
    Ok(match kind {
        Kind::Scalar { ty, len } => get_scalar(data, name, *ty, *len as usize).map_err(sdk)?,
        Kind::Structure(fields) => {
            let mut inner = data.structure(name).map_err(sdk)?;
            get_fields(&mut inner, fields)?
        }
        Kind::Table(fields) => {
            let mut table = data.table(name).map_err(sdk)?;
            let count = table.row_count().map_err(sdk)?;
            let mut rows = Vec::with_capacity(count);
            for i in 0..count {
                let mut row = table.row(i).map_err(sdk)?;
                rows.push(get_fields(&mut row, fields)?);
            }
            Value::Array(rows)
        }
    })
}

fn get_fields(data: &mut DataRef<'_>, fields: &[Field]) -> Result<Value, RfcError> {
    let mut out = Map::new();
    for field in fields {
        out.insert(field.name.clone(), get(data, &field.name, &field.kind)?);
    }
    Ok(Value::Object(out))
}

fn get_scalar(
    data: &mut DataRef<'_>,
    name: &str,
    ty: RFCTYPE,
    len: usize,
) -> Result<Value, sapbridge_nwrfc::RfcErrorInfo> {
    let b64 =
        |bytes: Vec<u8>| Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    Ok(match ty {
        RFCTYPE::CHAR => Value::String(data.get_chars(name, len, false)?.trim_end().to_owned()),
        RFCTYPE::NUM => Value::String(data.get_chars(name, len, true)?),
        RFCTYPE::DATE => Value::String(data.get_date_or_time(name, false)?),
        RFCTYPE::TIME => Value::String(data.get_date_or_time(name, true)?),
        RFCTYPE::INT => Value::from(data.get_int(name)?),
        RFCTYPE::INT1 => Value::from(data.get_int1(name)?),
        RFCTYPE::INT2 => Value::from(data.get_int2(name)?),
        RFCTYPE::INT8 => Value::from(data.get_int8(name)?),
        RFCTYPE::FLOAT => {
            serde_json::Number::from_f64(data.get_float(name)?).map_or(Value::Null, Value::Number)
        }
        RFCTYPE::BCD | RFCTYPE::DECF16 | RFCTYPE::DECF34 => {
            Value::String(data.get_string(name, 48)?.trim().to_owned())
        }
        RFCTYPE::BYTE => b64(data.get_bytes(name, len, false)?),
        RFCTYPE::XSTRING => b64(data.get_bytes(name, 0, true)?),
        _ => Value::String(data.get_string(name, 256)?),
    })
}
