//! High-level actions — customers, table reads, function metadata — built on the
//! same queue, wait, `Prefer`, `Idempotency-Key` and 202-polling machinery as plain
//! calls.
//!
//! An action runs as a *chain* of units: most need one, some need a follow-up that
//! depends on the first answer (a table read that hit `DATA_BUFFER_EXCEEDED` is split
//! after the table's layout is known; a function interface is followed by the
//! fields of the structures it references). Every unit is an ordinary stored call
//! whose [`CallKind::Action`] carries an [`Action`], encoded as a versioned
//! [`ActionStep`]: what the step needs to turn the unit's results into either the
//! answer or the next unit.
//!
//! The chain is walked from its first call, by the request that started it and by
//! every `GET /v1/calls/{id}` poll of that id. A follow-up is enqueued under an
//! internal idempotency key derived from the previous call's id, so however many
//! walkers meet a step, the follow-up exists once. A step not final in time
//! answers `202` with `Location` of the *first* call, so clients poll one id.

mod outcome;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use sapbridge_proto::{CommitPolicy, FunctionCall};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::time::Instant;

pub(crate) use outcome::{
    call_params, completed, return_error_row, return_problem, return_problem_with, rfc_problem,
    text, with_call_id,
};

use super::ApiError;
use super::calls::{UnitRequest, submission};
use super::render::{CallBody, pending_body};
use super::request::Caller;
use super::{customers, functions_meta, tables};
use crate::calls::{CallError, Stored, Submission};
use crate::queue::{ActionStep, CallKind, CallRecord, IdempotencyKey};
use crate::state::RelayState;

/// The idempotency scope of follow-up units (no API key is named like this: key
/// names cannot hold control characters).
const FOLLOW_UP_SCOPE: &str = "\0follow-up";

/// The version of the step data this relay writes. Version 0 is the layout of
/// steps stored before they were versioned, under the names in [`UNVERSIONED`]:
/// the same data.
const STEP_VERSION: u32 = 1;

/// The names steps were stored under before they were versioned, with the name
/// of their action.
const UNVERSIONED: [(&str, &str); 6] = [
    ("customer_create", "customer.create"),
    ("customer_change", "customer.change"),
    ("customer_get", "customer.get"),
    ("customer_search", "customer.search"),
    ("table_read", "table.read"),
    ("function_interface", "function.interface"),
];

/// What a stored call of a high-level action needs to render its step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// `POST /v1/systems/{system}/customers`.
    CustomerCreate(customers::CreateStep),
    /// `PATCH /v1/systems/{system}/customers/{customer}`.
    CustomerChange(customers::ChangeStep),
    /// `GET /v1/systems/{system}/customers/{customer}`.
    CustomerGet(customers::GetStep),
    /// `GET /v1/systems/{system}/customers?…`.
    CustomerSearch(customers::SearchStep),
    /// `GET …/tables/{table}` and `POST …/tables/{table}/query`.
    TableRead(tables::ReadStep),
    /// `GET /v1/systems/{system}/functions/{function}`.
    FunctionInterface(functions_meta::InterfaceStep),
}

impl Action {
    /// The action's name in call bodies (`customer.create`, `table.read`, ...).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::CustomerCreate(_) => "customer.create",
            Self::CustomerChange(_) => "customer.change",
            Self::CustomerGet(_) => "customer.get",
            Self::CustomerSearch(_) => "customer.search",
            Self::TableRead(_) => "table.read",
            Self::FunctionInterface(_) => "function.interface",
        }
    }

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

/// What a step makes of its final call.
pub(crate) enum Step {
    /// The action's answer.
    Done(Response),
    /// The action needs another unit.
    Next(FollowUp),
}

/// A unit that continues an action.
pub(crate) struct FollowUp {
    /// The step it is.
    pub(crate) action: Action,
    /// Its calls.
    pub(crate) calls: Vec<FunctionCall>,
    /// What happens after them.
    pub(crate) commit: CommitPolicy,
}

/// Renders one final step of an action.
fn step(state: &RelayState, action: &Action, record: &CallRecord) -> Result<Step, ApiError> {
    match action {
        Action::CustomerCreate(s) => customers::create_done(s, record),
        Action::CustomerChange(s) => customers::change_done(s, record),
        Action::CustomerGet(s) => customers::get_done(s, record),
        Action::CustomerSearch(s) => customers::search_done(s, record),
        Action::TableRead(s) => tables::read_done(s, record),
        Action::FunctionInterface(s) => functions_meta::interface_done(state, s, record),
    }
}

/// Submits the first unit of an action and walks its chain until the answer or
/// the request's wait (`Prefer`) is over.
///
/// # Errors
/// As [`super::calls::submit`], and the action's problems.
pub(crate) async fn run(
    state: &RelayState,
    caller: &Caller,
    headers: &HeaderMap,
    unit: UnitRequest,
) -> Result<Response, ApiError> {
    let (submission, wait) = submission(state, caller, headers, unit)?;
    let deadline = Instant::now() + wait;
    let record = state.calls.submit(submission, wait).await?;
    drive(state, record, deadline).await
}

/// `GET /v1/calls/{id}` of an action's call: walks the chain without waiting.
///
/// # Errors
/// The action's problems; 500 for store failures.
pub(crate) async fn poll(state: &RelayState, record: CallRecord) -> Result<Response, ApiError> {
    drive(state, record, Instant::now()).await
}

async fn drive(
    state: &RelayState,
    root: CallRecord,
    deadline: Instant,
) -> Result<Response, ApiError> {
    let root_id = root.id.clone();
    let ttl = root.expires_at - root.submitted_at;
    let mut record = root;
    loop {
        if !record.state.is_final() {
            return Ok(pending(&root_id, &record));
        }
        let CallKind::Action(stored) = &record.kind else {
            return Ok(super::render::answer(&record));
        };
        let action = Action::decode(stored)
            .map_err(|e| ApiError::Internal(format!("call {}: {e}", record.id)))?;
        match step(state, &action, &record).map_err(|e| with_call_id(e, &root_id))? {
            Step::Done(response) => return Ok(response),
            Step::Next(next) => {
                let id = follow_up(state, &record, next, ttl).await?;
                let wait = deadline.saturating_duration_since(Instant::now());
                record = state.calls.wait_final(&id, wait).await?;
            }
        }
    }
}

/// Stores (once) the unit that follows `previous`; returns its call id.
async fn follow_up(
    state: &RelayState,
    previous: &CallRecord,
    next: FollowUp,
    ttl: time::Duration,
) -> Result<String, ApiError> {
    let key = IdempotencyKey {
        scope: FOLLOW_UP_SCOPE.into(),
        key: previous.id.clone(),
    };
    let submission = Submission {
        system: previous.system.clone(),
        kind: CallKind::Action(next.action.encode()),
        calls: next.calls,
        commit: next.commit,
        ttl: ttl.max(time::Duration::SECOND).unsigned_abs(),
        idempotency: Some((key, "follow-up".into())),
        owner: previous.owner.clone(),
    };
    match state.calls.store(submission).await {
        Ok(Stored::Created(record)) => {
            tracing::info!(call_id = %record.id, after = %previous.id, "follow-up queued");
            Ok(record.id)
        }
        Ok(Stored::Existing(record)) => Ok(record.id),
        Err(CallError::KeyMismatch) => Err(ApiError::Internal(format!(
            "follow-up of {} stored with another fingerprint",
            previous.id
        ))),
        Err(error) => Err(error.into()),
    }
}

/// `202` for a chain still running: the current step's state, under the first
/// call's id and `Location`.
fn pending(root_id: &str, record: &CallRecord) -> Response {
    let mut body = CallBody::summary(record);
    body.id = root_id;
    pending_body(body)
}

/// A `200` JSON answer.
pub(crate) fn ok_json(body: Value) -> Response {
    (StatusCode::OK, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::http::customers::{ChangeStep, CreateStep, GetStep, SearchStep};
    use crate::http::functions_meta::{InterfaceStage, InterfaceStep};
    use crate::http::tables::{ReadStage, ReadStep};

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
    fn stored_before_versions() -> Vec<(&'static str, Action)> {
        let customer = || "0000001000".to_owned();
        vec![
            (
                r#"{"action":{"customer_create":{"sent":[["name","ACME"],["city","Berlin"]]}}}"#,
                Action::CustomerCreate(CreateStep {
                    sent: vec![
                        ("name".into(), "ACME".into()),
                        ("city".into(), "Berlin".into()),
                    ],
                }),
            ),
            (
                r#"{"action":{"customer_change":{"customer":"0000001000"}}}"#,
                Action::CustomerChange(ChangeStep {
                    customer: customer(),
                }),
            ),
            (
                r#"{"action":{"customer_get":{"customer":"0000001000"}}}"#,
                Action::CustomerGet(GetStep {
                    customer: customer(),
                }),
            ),
            (
                r#"{"action":{"customer_search":{"name":"Beck*","city":null,"country":null,"limit":100}}}"#,
                Action::CustomerSearch(SearchStep {
                    name: Some("Beck*".into()),
                    city: None,
                    country: None,
                    limit: 100,
                }),
            ),
            (
                r#"{"action":{"table_read":{"table":"KNA1","fields":["KUNNR"],"options":["LAND1 EQ 'DE'"],"offset":0,"limit":10,"stage":{"split":{"keys":["MANDT","KUNNR"]}}}}}"#,
                Action::TableRead(ReadStep {
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
                Action::TableRead(ReadStep {
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
                Action::FunctionInterface(InterfaceStep {
                    function: "BAPI_X".into(),
                    stage: InterfaceStage::Interface,
                }),
            ),
            (
                r#"{"action":{"function_interface":{"function":"BAPI_X","stage":{"fields":{"interface":{"function":"BAPI_X","parameters":[{"name":"RETURN","direction":"exporting","abap_type":"u","type_name":"BAPIRET2","length":0,"decimals":0,"optional":false,"default":"","description":"Return","fields":null}],"exceptions":["NOT_FOUND"]},"structures":["BAPIRET2"]}}}}}"#,
                Action::FunctionInterface(interface_fields()),
            ),
        ]
    }

    #[test]
    fn steps_stored_before_versions_still_decode() {
        for (stored, action) in stored_before_versions() {
            let CallKind::Action(step) = CallKind::from_json(stored).unwrap() else {
                panic!("{stored}: not an action");
            };
            assert_eq!(step.version, 0, "{stored}");
            assert_eq!(Action::decode(&step).as_ref(), Ok(&action), "{stored}");
            assert_eq!(step_name(&step), action.name(), "{stored}");
        }
    }

    #[test]
    fn steps_round_trip_through_the_store_format() {
        for (_, action) in stored_before_versions() {
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
            assert_eq!(Action::decode(&read), Ok(action));
        }
    }

    #[test]
    fn unknown_and_newer_steps_are_refused() {
        let step = |action: &str, version| ActionStep {
            action: action.into(),
            version,
            data: json!({"customer": "1"}),
        };
        assert!(Action::decode(&step("customer.get", STEP_VERSION)).is_ok());
        assert!(Action::decode(&step("customer.get", STEP_VERSION + 1)).is_err());
        assert!(Action::decode(&step("customer.delete", STEP_VERSION)).is_err());
        let bad = ActionStep {
            data: json!({"customer": 1}),
            ..step("customer.get", 1)
        };
        assert!(Action::decode(&bad).is_err());
    }
}
