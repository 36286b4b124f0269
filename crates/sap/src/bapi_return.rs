//! A BAPI's `RETURN` parameter: how a BAPI reports business errors.
//!
//! BAPIs do not raise exceptions for business errors; they answer with messages in
//! `RETURN`, a structure (`BAPIRET1`, `BAPIRETURN1`, `BAPIRET2`) or a table of
//! them. A message's `TYPE` is `S` (success), `W` (warning), `I` (information),
//! `E` (error) or `A` (abort); `E` and `A` mean the BAPI failed and its changes
//! must not be committed. `TYPE` is `CHAR1`, so a value padded with blanks (as
//! fixed-length fields arrive from some connectors) is read trimmed.
//!
//! This is the one definition of that rule: the agent decides between commit and
//! rollback with it, the relay's high-level actions turn such a message into an
//! error.

use serde_json::Value;

use crate::Parameters;

/// The messages of `params`' `RETURN`: the structure, or each row of the table,
/// each a JSON object. Anything that is not an object (and a missing `RETURN`)
/// holds none.
pub fn messages(params: &Parameters) -> impl Iterator<Item = &Value> {
    let rows: &[Value] = match params.get("RETURN") {
        Some(Value::Array(rows)) => rows,
        Some(row @ Value::Object(_)) => std::slice::from_ref(row),
        _ => &[],
    };
    rows.iter().filter(|row| row.is_object())
}

/// Whether a `RETURN` message says the BAPI failed: its `TYPE`, trimmed, is `E`
/// or `A`.
pub fn is_error(message: &Value) -> bool {
    let kind = message.get("TYPE").and_then(Value::as_str).unwrap_or("");
    matches!(kind.trim(), "E" | "A")
}

/// The messages of `params`' `RETURN` that say the BAPI failed, in order.
pub fn errors(params: &Parameters) -> impl Iterator<Item = &Value> {
    messages(params).filter(|message| is_error(message))
}

/// The first message of `params`' `RETURN` that says the BAPI failed, if any.
pub fn first_error(params: &Parameters) -> Option<&Value> {
    errors(params).next()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn params(value: Value) -> Parameters {
        value.as_object().cloned().unwrap_or_default()
    }

    fn kinds(value: Value) -> Vec<String> {
        errors(&params(value))
            .map(|m| m["TYPE"].as_str().unwrap_or("?").to_owned())
            .collect()
    }

    #[test]
    fn e_and_a_are_errors_trimmed_and_nothing_else_is() {
        for kind in ["E", "A", " E", "A ", " A  ", "E\t"] {
            assert_eq!(kinds(json!({"RETURN": {"TYPE": kind}})), [kind], "{kind:?}");
        }
        for kind in ["S", "W", "I", "", " ", "e", "a", "EA", "X"] {
            assert!(
                kinds(json!({"RETURN": {"TYPE": kind}})).is_empty(),
                "{kind:?}"
            );
        }
        // A TYPE that is not text, or none at all, is no error.
        assert!(kinds(json!({"RETURN": {"TYPE": 1}})).is_empty());
        assert!(kinds(json!({"RETURN": {"MESSAGE": "no type"}})).is_empty());
    }

    #[test]
    fn structures_and_tables_are_read_and_anything_else_ignored() {
        let table = json!({"RETURN": [
            {"TYPE": "S", "MESSAGE": "fine"},
            "not a message",
            {"TYPE": "W"},
            {"TYPE": "E ", "MESSAGE": "first"},
            {"TYPE": "A", "MESSAGE": "second"},
        ]});
        assert_eq!(kinds(table.clone()), ["E ", "A"]);
        let table = params(table);
        assert_eq!(messages(&table).count(), 4);
        let first = first_error(&table).expect("an error");
        assert_eq!(first["MESSAGE"], "first");
        assert!(first_error(&params(json!({"RETURN": []}))).is_none());
        assert!(first_error(&params(json!({"RETURN": "E"}))).is_none());
        assert!(first_error(&params(json!({"OTHER": {"TYPE": "E"}}))).is_none());
        assert!(first_error(&Parameters::new()).is_none());
    }
}
