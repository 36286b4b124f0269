//! How an action's step is stored: as a versioned [`ActionStep`] that only the
//! actions read (the queue keeps it as it is).
//!
//! A step is stored under its action's name with [`STEP_VERSION`] and its data as
//! serde writes the step's struct. Steps stored before they were versioned read
//! back from the queue as version 0 under the names in [`UNVERSIONED`], with the
//! same data. A change to a step's layout raises [`STEP_VERSION`], and
//! [`Step::decode`] keeps reading the versions before it.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Step;
use crate::queue::ActionStep;

/// The version of the step data this relay writes.
const STEP_VERSION: u32 = 1;

/// The names steps were stored under before they were versioned (version 0), with
/// the name of their action.
const UNVERSIONED: [(&str, &str); 6] = [
    ("customer_create", "customer.create"),
    ("customer_change", "customer.change"),
    ("customer_get", "customer.get"),
    ("customer_search", "customer.search"),
    ("table_read", "table.read"),
    ("function_interface", "function.interface"),
];

impl Step {
    /// The step as the queue keeps it: the action's name, [`STEP_VERSION`] and
    /// the step's own data.
    pub(crate) fn encode(&self) -> ActionStep {
        fn data(step: &impl Serialize) -> Value {
            // Serializing cannot fail: all map keys are strings.
            serde_json::to_value(step).unwrap_or_default()
        }
        let data = match self {
            Self::CustomerCreate(s) => data(s),
            Self::CustomerChange(s) => data(s),
            Self::CustomerGet(s) => data(s),
            Self::CustomerSearch(s) => data(s),
            Self::TableRead(s) => data(s),
            Self::FunctionInterface(s) => data(s),
            Self::FunctionSearch(s) => data(s),
            Self::TableLayout(s) => data(s),
        };
        ActionStep {
            action: self.name().to_owned(),
            version: STEP_VERSION,
            data,
        }
    }

    /// The step a stored call holds, written by this relay or by one before it
    /// (any version up to [`STEP_VERSION`]).
    ///
    /// # Errors
    /// A step of an action or version this relay does not know, or whose data
    /// does not fit its layout.
    pub(crate) fn decode(step: &ActionStep) -> Result<Self, String> {
        fn data<T: DeserializeOwned>(step: &ActionStep) -> Result<T, String> {
            T::deserialize(&step.data)
                .map_err(|e| format!("step {} version {}: {e}", step.action, step.version))
        }
        if step.version > STEP_VERSION {
            return Err(format!(
                "step {} has version {}; this relay reads up to {STEP_VERSION} (written by a newer sapbridge?)",
                step.action, step.version
            ));
        }
        Ok(match step_name(step) {
            "customer.create" => Self::CustomerCreate(data(step)?),
            "customer.change" => Self::CustomerChange(data(step)?),
            "customer.get" => Self::CustomerGet(data(step)?),
            "customer.search" => Self::CustomerSearch(data(step)?),
            "table.read" => Self::TableRead(data(step)?),
            "function.interface" => Self::FunctionInterface(data(step)?),
            "function.search" => Self::FunctionSearch(data(step)?),
            "table.layout" => Self::TableLayout(data(step)?),
            other => return Err(format!("unknown action {other:?}")),
        })
    }
}

/// The name of the action a stored step belongs to (`customer.create`, ...),
/// also for a step stored before steps were versioned.
pub(crate) fn step_name(step: &ActionStep) -> &str {
    let unversioned = UNVERSIONED
        .iter()
        .find(|(stored, _)| step.version == 0 && *stored == step.action);
    unversioned.map_or(step.action.as_str(), |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::actions::customers::{ChangeStep, CreateStep, GetStep, SearchStep};
    use crate::actions::metadata::{InterfaceStage, InterfaceStep};
    use crate::actions::tables::{ReadStage, ReadStep};
    use crate::queue::CallKind;

    fn interface_fields() -> InterfaceStep {
        let interface = json!({"function": "BAPI_X", "parameters": [{"name": "RETURN",
            "direction": "exporting", "abap_type": "u", "type_name": "BAPIRET2",
            "length": 0, "decimals": 0, "optional": false, "default": "",
            "description": "Return", "fields": null}], "exceptions": ["NOT_FOUND"]});
        InterfaceStep {
            function: "BAPI_X".into(),
            stage: InterfaceStage::Fields {
                interface: serde_json::from_value(interface).unwrap(),
                structures: vec!["BAPIRET2".into()],
            },
        }
    }

    /// The kind column of calls a relay wrote before steps were versioned (each
    /// text as that relay wrote it), and the step each holds.
    fn stored_before_versions() -> Vec<(&'static str, Step)> {
        let customer = || "0000001000".to_owned();
        vec![
            (
                r#"{"action":{"customer_create":{"sent":[["name","ACME"],["city","Berlin"]]}}}"#,
                Step::CustomerCreate(CreateStep {
                    sent: vec![
                        ("name".into(), "ACME".into()),
                        ("city".into(), "Berlin".into()),
                    ],
                }),
            ),
            (
                r#"{"action":{"customer_change":{"customer":"0000001000"}}}"#,
                Step::CustomerChange(ChangeStep {
                    customer: customer(),
                }),
            ),
            (
                r#"{"action":{"customer_get":{"customer":"0000001000"}}}"#,
                Step::CustomerGet(GetStep {
                    customer: customer(),
                }),
            ),
            (
                r#"{"action":{"customer_search":{"name":"Beck*","city":null,"country":null,"limit":100}}}"#,
                Step::CustomerSearch(SearchStep {
                    name: Some("Beck*".into()),
                    city: None,
                    country: None,
                    limit: 100,
                }),
            ),
            (
                r#"{"action":{"table_read":{"table":"KNA1","fields":["KUNNR"],"options":["LAND1 EQ 'DE'"],"offset":0,"limit":10,"stage":{"split":{"keys":["MANDT","KUNNR"]}}}}}"#,
                Step::TableRead(ReadStep {
                    table: "KNA1".into(),
                    fields: vec!["KUNNR".into()],
                    options: vec!["LAND1 EQ 'DE'".into()],
                    offset: 0,
                    limit: 10,
                    stage: ReadStage::Split {
                        keys: vec!["MANDT".into(), "KUNNR".into()],
                    },
                }),
            ),
            (
                r#"{"action":{"table_read":{"table":"KNA1","fields":[],"options":[],"offset":5,"limit":10,"stage":"layout"}}}"#,
                Step::TableRead(ReadStep {
                    table: "KNA1".into(),
                    fields: Vec::new(),
                    options: Vec::new(),
                    offset: 5,
                    limit: 10,
                    stage: ReadStage::Layout,
                }),
            ),
            (
                r#"{"action":{"function_interface":{"function":"BAPI_X","stage":"interface"}}}"#,
                Step::FunctionInterface(InterfaceStep {
                    function: "BAPI_X".into(),
                    stage: InterfaceStage::Interface,
                }),
            ),
            (
                r#"{"action":{"function_interface":{"function":"BAPI_X","stage":{"fields":{"interface":{"function":"BAPI_X","parameters":[{"name":"RETURN","direction":"exporting","abap_type":"u","type_name":"BAPIRET2","length":0,"decimals":0,"optional":false,"default":"","description":"Return","fields":null}],"exceptions":["NOT_FOUND"]},"structures":["BAPIRET2"]}}}}}"#,
                Step::FunctionInterface(interface_fields()),
            ),
        ]
    }

    #[test]
    fn steps_stored_before_versions_still_decode() {
        for (stored, expected) in stored_before_versions() {
            let CallKind::Action(step) = CallKind::from_json(stored).unwrap() else {
                panic!("{stored}: not an action");
            };
            assert_eq!(step.version, 0, "{stored}");
            assert_eq!(Step::decode(&step).as_ref(), Ok(&expected), "{stored}");
            assert_eq!(step_name(&step), expected.name(), "{stored}");
        }
    }

    #[test]
    fn steps_round_trip_through_the_store_format() {
        let search = Step::FunctionSearch(crate::actions::metadata::SearchStep {
            pattern: "BAPI_*".into(),
            limit: 100,
        });
        let layout = Step::TableLayout(crate::actions::tables::layout::LayoutStep {
            table: "KNA1".into(),
        });
        let steps = stored_before_versions().into_iter().map(|(_, s)| s);
        for action in steps.chain([search, layout]) {
            let step = action.encode();
            assert_eq!(
                (step.action.as_str(), step.version),
                (action.name(), STEP_VERSION)
            );
            let CallKind::Action(read) =
                CallKind::from_json(&CallKind::Action(step).to_json()).unwrap()
            else {
                panic!("not an action");
            };
            assert_eq!(step_name(&read), action.name());
            assert_eq!(Step::decode(&read), Ok(action));
        }
    }

    #[test]
    fn unknown_and_newer_steps_are_refused() {
        let step = |action: &str, version| ActionStep {
            action: action.into(),
            version,
            data: json!({"customer": "1"}),
        };
        assert!(Step::decode(&step("customer.get", STEP_VERSION)).is_ok());
        assert!(Step::decode(&step("customer.get", STEP_VERSION + 1)).is_err());
        assert!(Step::decode(&step("customer.delete", STEP_VERSION)).is_err());
        let bad = ActionStep {
            data: json!({"customer": 1}),
            ..step("customer.get", 1)
        };
        assert!(Step::decode(&bad).is_err());
    }
}
