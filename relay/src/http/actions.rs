//! Running a high-level action for a request and answering with how far it got:
//! its [`Answer`] (`200`, or `201` with `Location`), `202` with the first call's
//! `Location` while a step runs, or the problem an [`ActionError`] is.
//!
//! The problems of the actions are written here: `RETURN` errors (`422`
//! `business-error`, `404` `customer-not-found`) carry SAP's message as
//! `rfc_error` and the row as `return`; SAP's refusals of a table read or an
//! unknown function module keep the RFC error's `rfc_error` under their own status
//! and type. A problem of a step names the action's first call.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::ApiError;
use super::error::Problem;
use super::render::{CallBody, error_problem, failure, pending_body};
use super::request::{Caller, UnitRequest, submission};
use crate::actions::{
    ActionError, ActionUnit, Answer, Chain, ChainError, Progress, TableRefusal, metadata,
};
use crate::queue::{CallKind, CallRecord};
use crate::state::RelayState;

/// Submits `unit`, the first unit of an action on `system`, and walks its chain
/// until the answer or the request's wait (`Prefer`) is over.
///
/// # Errors
/// As [`super::calls::submit`], and the action's problems.
pub(crate) async fn run(
    state: &RelayState,
    caller: &Caller,
    headers: &HeaderMap,
    system: String,
    unit: ActionUnit,
    fingerprint: Option<String>,
) -> Result<Response, ApiError> {
    run_rendered(state, caller, headers, system, unit, fingerprint, answer).await
}

/// As [`run`], rendering the action's answer with `render` (a `202` and what its
/// `Location` answers stay as they are).
///
/// # Errors
/// As [`run`].
pub(crate) async fn run_rendered(
    state: &RelayState,
    caller: &Caller,
    headers: &HeaderMap,
    system: String,
    unit: ActionUnit,
    fingerprint: Option<String>,
    render: impl FnOnce(Answer) -> Response,
) -> Result<Response, ApiError> {
    let request = UnitRequest {
        system,
        kind: CallKind::Action(unit.step.encode()),
        calls: unit.calls,
        commit: unit.commit,
        fingerprint,
    };
    let (first, wait) = submission(state, caller, headers, request)?;
    let agents = |system: &str| state.agents.versions_serving(system);
    let chain = Chain {
        calls: &state.calls,
        metadata: &state.metadata,
        agents: &agents,
    };
    Ok(match chain.run(first, wait).await? {
        Progress::Done(done) => render(done),
        running => respond(running),
    })
}

/// `GET /v1/calls/{id}` of an action's first call: walks the chain without
/// waiting.
///
/// # Errors
/// The action's problems; 500 for store failures.
pub(crate) async fn poll(state: &RelayState, root: CallRecord) -> Result<Response, ApiError> {
    let agents = |system: &str| state.agents.versions_serving(system);
    let chain = Chain {
        calls: &state.calls,
        metadata: &state.metadata,
        agents: &agents,
    };
    Ok(respond(chain.poll(root).await?))
}

fn respond(progress: Progress) -> Response {
    match progress {
        Progress::Done(done) => answer(done),
        Progress::Running { root_id, current } => {
            let mut body = CallBody::summary(&current);
            body.id = &root_id;
            pending_body(body)
        }
    }
}

/// The HTTP answer of an action's answer.
pub(crate) fn answer(answer: Answer) -> Response {
    match answer {
        Answer::Found(body) => (StatusCode::OK, Json(body)).into_response(),
        Answer::Interface(interface) => {
            (StatusCode::OK, Json(metadata::to_json(&interface))).into_response()
        }
        Answer::Created { location, body } => {
            let mut response = (StatusCode::CREATED, Json(body)).into_response();
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
    }
}

/// The problem of an action's error before any of its calls exists (a request
/// the action refuses).
pub(crate) fn step_error(error: ActionError) -> ApiError {
    action_problem(error, None)
}

impl From<ChainError> for ApiError {
    fn from(error: ChainError) -> Self {
        match error {
            ChainError::Step { call_id, error } => action_problem(error, Some(&call_id)),
            ChainError::Call(error) => error.into(),
            ChainError::Broken(cause) => Self::Internal(cause),
        }
    }
}

/// The problem of an action's error; a problem about a call names `call_id`.
fn action_problem(error: ActionError, call_id: Option<&str>) -> ApiError {
    use StatusCode as S;
    let mut problem = match error {
        ActionError::BadRequest(detail) => return ApiError::BadRequest(detail),
        ActionError::Call(record) => failure(&record),
        ActionError::Rfc(error) => error_problem(&error),
        ActionError::MissingResult(index) => Problem::new(
            S::BAD_GATEWAY,
            "invalid-outcome",
            "Invalid agent outcome",
            format!("the agent reported no result for call {index} of the unit"),
        ),
        ActionError::Business { row, error } => return_problem(
            row,
            &error,
            (
                S::UNPROCESSABLE_ENTITY,
                "business-error",
                "SAP business error",
            ),
        ),
        ActionError::CustomerNotFound { row, error } => return_problem(
            row,
            &error,
            (S::NOT_FOUND, "customer-not-found", "Customer not found"),
        ),
        ActionError::Table {
            table,
            refusal,
            error,
        } => {
            let (status, slug, title, detail) = match refusal {
                TableRefusal::NotFound => (
                    S::NOT_FOUND,
                    "table-not-found",
                    "Table not found",
                    format!("SAP has no readable table {table}"),
                ),
                TableRefusal::InvalidField => (
                    S::BAD_REQUEST,
                    "invalid-field",
                    "Invalid field",
                    format!("a requested field is not a field of {table}"),
                ),
                TableRefusal::InvalidWhere => (
                    S::BAD_REQUEST,
                    "invalid-where",
                    "Invalid where clause",
                    "SAP could not parse the where clause (Open SQL syntax, quoted literals)"
                        .into(),
                ),
                TableRefusal::NotAuthorized => (
                    S::FORBIDDEN,
                    "not-authorized",
                    "Not authorized in SAP",
                    format!("the SAP user may not read {table}"),
                ),
            };
            restated(error_problem(&error), status, slug, title, detail)
        }
        ActionError::FunctionNotFound { function, error } => restated(
            error_problem(&error),
            S::NOT_FOUND,
            "function-not-found",
            "Function not found",
            format!("SAP has no function module {function}"),
        ),
        ActionError::InconsistentRead(why) => Problem::new(
            S::BAD_GATEWAY,
            "inconsistent-read",
            "Inconsistent table read",
            format!(
                "the field list was too wide for one RFC_READ_TABLE call and was read in \
                 parts, but {why}; retry, or ask for fewer fields"
            ),
        ),
    };
    if let Some(call_id) = call_id {
        problem.call_id = Some(call_id.to_owned());
    }
    ApiError::Call(Box::new(problem))
}

/// `problem` (an RFC error's, with its `rfc_error`) under another status and type.
fn restated(
    mut problem: Problem,
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: String,
) -> Problem {
    problem.status = status;
    problem.slug = slug;
    problem.title = title;
    problem.detail = detail;
    problem
}

/// The problem of a `RETURN` row that says the BAPI failed: SAP's message as
/// detail (or its class and number when it has no text), the row's RFC error as
/// `rfc_error` and the row itself as `return`.
fn return_problem(
    row: Value,
    error: &sapbridge_proto::RfcError,
    (status, slug, title): (StatusCode, &'static str, &'static str),
) -> Problem {
    let detail = if error.message.is_empty() {
        format!("SAP message {} {}", error.msg_class, error.msg_number)
    } else {
        error.message.clone()
    };
    let mut problem = Problem::new(status, slug, title, detail);
    problem.extra.insert("rfc_error".into(), json!(error));
    problem.extra.insert("return".into(), row);
    problem
}

#[cfg(test)]
mod tests {
    use sapbridge_proto::{ErrorGroup, RfcError};

    use super::*;

    fn call_problem(error: ApiError) -> Problem {
        match error {
            ApiError::Call(problem) => *problem,
            other => panic!("a call problem, not {other:?}"),
        }
    }

    #[test]
    fn return_rows_become_business_problems() {
        let row = json!({"TYPE": "E", "ID": "F2", "NUMBER": "502", "MESSAGE": ""});
        let error = RfcError::new(ErrorGroup::AbapApplicationFailure, "RETURN", "")
            .with_message("F2", "E", "502");
        let business = ActionError::Business {
            row: row.clone(),
            error: Box::new(error.clone()),
        };
        let problem = call_problem(action_problem(business, Some("c_root")));
        assert_eq!(problem.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem.extra["rfc_error"]["msg_number"], "502");
        assert_eq!(problem.extra["rfc_error"]["key"], "RETURN");
        assert_eq!(problem.extra["return"], row);
        assert_eq!(problem.detail, "SAP message F2 502");
        assert_eq!(problem.call_id.as_deref(), Some("c_root"));
        let missing = ActionError::CustomerNotFound {
            row,
            error: Box::new(error),
        };
        let problem = call_problem(action_problem(missing, None));
        assert_eq!(
            (problem.status, problem.slug),
            (StatusCode::NOT_FOUND, "customer-not-found")
        );
    }

    #[test]
    fn refusals_keep_the_rfc_error_under_their_own_status() {
        let error = RfcError::new(ErrorGroup::AbapApplicationFailure, "NOT_AUTHORIZED", "no");
        let refused = ActionError::Table {
            table: "KNA1".into(),
            refusal: TableRefusal::NotAuthorized,
            error: Box::new(error),
        };
        let problem = call_problem(action_problem(refused, Some("c_1")));
        assert_eq!(problem.status, StatusCode::FORBIDDEN);
        assert_eq!(problem.detail, "the SAP user may not read KNA1");
        assert_eq!(problem.extra["rfc_error"]["key"], "NOT_AUTHORIZED");
        assert!(matches!(
            step_error(ActionError::BadRequest("x".into())),
            ApiError::BadRequest(d) if d == "x"
        ));
    }
}
