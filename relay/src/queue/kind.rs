//! What kind of request a call came from, and how a store keeps it.
//!
//! A call of a high-level action carries an [`ActionStep`]: the action's name, the
//! version of its data's layout and the data. The queue stores and returns it as
//! it is and never reads the data; the action that wrote it decodes it (so renaming
//! a field of an action's step in Rust cannot corrupt calls queued before an
//! upgrade: the stored layout has a version, and the action keeps reading the
//! versions it wrote).
//!
//! As JSON (one text column of a database store): `"function"`, `"transaction"`,
//! or `{"action": {"name": …, "version": …, "data": …}}`. Calls stored before steps
//! were versioned hold `{"action": {"<step>": data}}`; they read back as version 0
//! of an action named `<step>`, which the actions decode too.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What kind of request a call came from; decides how its answer is rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallKind {
    /// `POST /v1/systems/{system}/functions/{function}`: a unit of one call.
    Function,
    /// `POST /v1/systems/{system}/transactions`: a BAPI transaction.
    Transaction,
    /// A step of a high-level action (customers, tables, function metadata).
    Action(ActionStep),
}

/// A step of a high-level action as the queue keeps it: opaque to the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ActionStep {
    /// The action's name (`customer.create`, ...), or for a step stored before
    /// steps were versioned, the name it was stored under.
    pub(crate) action: String,
    /// The version of `data`'s layout (0: stored before steps were versioned).
    pub(crate) version: u32,
    /// What the step needs to read its call's outcome, as the action encoded it.
    pub(crate) data: Value,
}

/// [`CallKind`] as stored.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Stored {
    Function,
    Transaction,
    Action(StoredStep),
}

/// [`ActionStep`] as stored: versioned, or as written before versions.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum StoredStep {
    Versioned {
        name: String,
        version: u32,
        data: Value,
    },
    Unversioned(Map<String, Value>),
}

impl CallKind {
    /// The kind as JSON text.
    pub(crate) fn to_json(&self) -> String {
        let stored = match self {
            Self::Function => Stored::Function,
            Self::Transaction => Stored::Transaction,
            Self::Action(step) => Stored::Action(StoredStep::Versioned {
                name: step.action.clone(),
                version: step.version,
                data: step.data.clone(),
            }),
        };
        // Serializing cannot fail: all map keys are strings.
        serde_json::to_string(&stored).unwrap_or_default()
    }

    /// The kind from its JSON text (as [`CallKind::to_json`] writes it, or as
    /// stored before steps were versioned).
    ///
    /// # Errors
    /// What is wrong with the text.
    pub(crate) fn from_json(json: &str) -> Result<Self, String> {
        let stored: Stored = serde_json::from_str(json).map_err(|e| e.to_string())?;
        Ok(match stored {
            Stored::Function => Self::Function,
            Stored::Transaction => Self::Transaction,
            Stored::Action(StoredStep::Versioned {
                name,
                version,
                data,
            }) => Self::Action(ActionStep {
                action: name,
                version,
                data,
            }),
            Stored::Action(StoredStep::Unversioned(map)) => {
                let mut entries = map.into_iter();
                match (entries.next(), entries.next()) {
                    (Some((action, data)), None) => Self::Action(ActionStep {
                        action,
                        version: 0,
                        data,
                    }),
                    _ => return Err("an action step names no single step".into()),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn kinds_round_trip() {
        let step = ActionStep {
            action: "table.read".into(),
            version: 3,
            data: json!({"table": "KNA1", "stage": {"split": {"keys": ["KUNNR"]}}}),
        };
        for kind in [
            CallKind::Function,
            CallKind::Transaction,
            CallKind::Action(step),
        ] {
            assert_eq!(CallKind::from_json(&kind.to_json()), Ok(kind));
        }
        assert_eq!(CallKind::Function.to_json(), r#""function""#);
        let step = ActionStep {
            action: "customer.get".into(),
            version: 1,
            data: json!({"customer": "0000001000"}),
        };
        assert_eq!(
            CallKind::Action(step).to_json(),
            r#"{"action":{"name":"customer.get","version":1,"data":{"customer":"0000001000"}}}"#
        );
    }

    /// A call a relay stored before steps were versioned (the text is what it
    /// wrote) reads back as version 0 under its step's name.
    #[test]
    fn unversioned_steps_read_back_as_version_0() {
        let stored = r#"{"action":{"table_read":{"table":"KNA1","fields":[],"options":[],"offset":5,"limit":10,"stage":"layout"}}}"#;
        let CallKind::Action(step) = CallKind::from_json(stored).unwrap() else {
            panic!("an action")
        };
        assert_eq!((step.action.as_str(), step.version), ("table_read", 0));
        assert_eq!(step.data["stage"], "layout");
        assert_eq!(
            CallKind::from_json(r#""transaction""#),
            Ok(CallKind::Transaction)
        );
        assert!(CallKind::from_json(r#"{"action":{}}"#).is_err());
        assert!(CallKind::from_json(r#"{"action":{"a":1,"b":2}}"#).is_err());
        assert!(CallKind::from_json(r#""action""#).is_err());
    }
}
