//! Checking a function call's parameters against a cached interface before the
//! call is queued, with the rules SAP's RFC library applies (PyRFC conventions):
//! an unknown parameter or structure field, a value of the wrong JSON type, a CHAR
//! longer than its length, a NUMC with anything but digits, a DATS that is not a
//! date `YYYYMMDD`, a TIMS that is not `HHMMSS`, an integer out of range.
//!
//! Only what the interface says for sure is checked: EXPORTING parameters sent as
//! input are ignored (as the RFC library does), structures whose fields are not
//! known are not looked into, types without a rule here pass. A call without a
//! cached interface is not checked at all: the agent and SAP validate it as before.

use sapbridge_sap::date_time;
use serde_json::{Map, Value};

use super::interface::{FieldInfo, FunctionInterface, ParamInfo};
use crate::actions::ActionError;

fn bad(path: &str, why: impl std::fmt::Display) -> ActionError {
    ActionError::BadRequest(format!("{path}: {why}"))
}

/// Checks `params` against `interface`.
///
/// # Errors
/// 400 naming the parameter (or `PARAM-FIELD`) and what is wrong.
pub(crate) fn check(
    interface: &FunctionInterface,
    params: &Map<String, Value>,
) -> Result<(), ActionError> {
    for (name, value) in params {
        let Some(param) = interface.parameters.iter().find(|p| &p.name == name) else {
            return Err(bad(
                name,
                format!("{} has no parameter of this name", interface.function),
            ));
        };
        if value.is_null() || !param.direction.is_input() {
            continue;
        }
        check_param(param, value)?;
    }
    Ok(())
}

fn check_param(param: &ParamInfo, value: &Value) -> Result<(), ActionError> {
    let path = param.name.as_str();
    if param.is_table() {
        let Value::Array(rows) = value else {
            return Err(bad(path, "a table (JSON array of objects) is required"));
        };
        if let Some(fields) = &param.fields {
            for (i, row) in rows.iter().enumerate() {
                check_row(fields, row, &format!("{path}[{i}]"))?;
            }
        }
        return Ok(());
    }
    if param.is_composite() {
        if !value.is_object() {
            return Err(bad(path, "a structure (JSON object) is required"));
        }
        if let Some(fields) = &param.fields {
            check_row(fields, value, path)?;
        }
        return Ok(());
    }
    check_elem(&param.abap_type, param.length, value, path)
}

fn check_row(fields: &[FieldInfo], row: &Value, path: &str) -> Result<(), ActionError> {
    let Value::Object(row) = row else {
        return Err(bad(path, "a structure (JSON object) is required"));
    };
    for (name, value) in row {
        let field_path = format!("{path}-{name}");
        let Some(field) = fields.iter().find(|f| &f.name == name) else {
            return Err(bad(&field_path, "no such field in the structure"));
        };
        if !value.is_null() {
            check_elem(&field.abap_type, field.length, value, &field_path)?;
        }
    }
    Ok(())
}

fn int_in(value: &Value, path: &str, range: (i64, i64), kind: &str) -> Result<(), ActionError> {
    let n = sapbridge_sap::integer(value).ok_or_else(|| {
        bad(
            path,
            format!("an integer is required for {kind}, got {value}"),
        )
    })?;
    if n < range.0 || n > range.1 {
        return Err(bad(path, format!("{n} is out of range for {kind}")));
    }
    Ok(())
}

fn check_elem(kind: &str, length: u32, value: &Value, path: &str) -> Result<(), ActionError> {
    match kind {
        "I" => return int_in(value, path, (i32::MIN.into(), i32::MAX.into()), "INT4"),
        "b" => return int_in(value, path, (0, 255), "INT1"),
        "s" => return int_in(value, path, (i16::MIN.into(), i16::MAX.into()), "INT2"),
        "8" => return int_in(value, path, (i64::MIN, i64::MAX), "INT8"),
        "C" | "N" | "D" | "T" | "g" | "y" | "X" => {}
        _ => return Ok(()),
    }
    let Value::String(s) = value else {
        return Err(bad(path, format!("a string is required, got {value}")));
    };
    match kind {
        "C" => {
            let chars = s.trim_end().chars().count();
            if length > 0 && chars > length as usize {
                return Err(bad(
                    path,
                    format!("{chars} characters exceed the length of CHAR{length}"),
                ));
            }
        }
        "N" => {
            let t = s.trim();
            if !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(path, format!("{s:?} is not numeric (NUMC{length})")));
            }
            if length > 0 && t.len() > length as usize {
                return Err(bad(
                    path,
                    format!("{} digits exceed the length of NUMC{length}", t.len()),
                ));
            }
        }
        "D" if !date_time::dats_accepts(s) => {
            return Err(bad(path, format!("{s:?} is not a valid date YYYYMMDD")));
        }
        "T" if !date_time::tims_accepts(s) => {
            return Err(bad(path, format!("{s:?} is not a valid time HHMMSS")));
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::interface::Direction;
    use super::*;
    use serde_json::json;

    fn param(name: &str, abap_type: &str, length: u32, direction: Direction) -> ParamInfo {
        ParamInfo {
            name: name.into(),
            direction,
            abap_type: abap_type.into(),
            type_name: String::new(),
            length,
            decimals: 0,
            optional: true,
            default: String::new(),
            description: String::new(),
            fields: None,
        }
    }

    fn interface() -> FunctionInterface {
        let field = |name: &str, abap_type: &str, length| FieldInfo {
            name: name.into(),
            abap_type: abap_type.into(),
            data_type: String::new(),
            length,
            decimals: 0,
            description: String::new(),
        };
        let mut data = param("DATA", "u", 0, Direction::Importing);
        data.fields = Some(vec![field("NAME", "C", 5), field("BIRTH", "D", 8)]);
        let mut rows = param("ROWS", "h", 0, Direction::Tables);
        rows.fields = Some(vec![field("NUM", "N", 4)]);
        FunctionInterface {
            function: "Z_TEST".into(),
            parameters: vec![
                param("TEXT", "C", 3, Direction::Importing),
                param("COUNT", "I", 4, Direction::Importing),
                param("WHEN", "T", 6, Direction::Importing),
                param("OUT", "C", 1, Direction::Exporting),
                data,
                rows,
                param("LOOSE", "u", 0, Direction::Importing),
            ],
            exceptions: Vec::new(),
        }
    }

    fn verdict(params: Value) -> Result<(), String> {
        let params = params.as_object().cloned().unwrap_or_default();
        check(&interface(), &params).map_err(|e| match e {
            ActionError::BadRequest(detail) => detail,
            other => format!("{other:?}"),
        })
    }

    #[test]
    fn good_calls_pass() {
        verdict(
            json!({"TEXT": "abc  ", "COUNT": 5, "WHEN": "235959", "OUT": 42,
            "DATA": {"NAME": "x", "BIRTH": "20240229"}, "ROWS": [{"NUM": "0012"}],
            "LOOSE": {"ANY": 1}}),
        )
        .unwrap();
    }

    #[test]
    fn bad_calls_name_the_problem() {
        let unknown = verdict(json!({"NO_SUCH_PARAM": "1"})).unwrap_err();
        assert!(unknown.starts_with("NO_SUCH_PARAM:"), "{unknown}");
        assert!(
            verdict(json!({"TEXT": "abcd"}))
                .unwrap_err()
                .contains("CHAR3")
        );
        assert!(verdict(json!({"COUNT": "5"})).is_err());
        assert!(verdict(json!({"WHEN": "246000"})).is_err());
        let numc = verdict(json!({"ROWS": [{"NUM": "12a"}]})).unwrap_err();
        assert!(numc.starts_with("ROWS[0]-NUM:"), "{numc}");
        assert!(verdict(json!({"DATA": {"BIRTH": "20230229"}})).is_err());
        assert!(verdict(json!({"DATA": {"COLOUR": "red"}})).is_err());
        assert!(verdict(json!({"DATA": "flat"})).is_err());
        assert!(verdict(json!({"ROWS": {}})).is_err());
    }
}
