//! What the customer actions store with their call and how each renders its final
//! call: `201`/`200` with the friendly customer, `404` for a customer SAP does not
//! know (`RETURN` F2 502), `422` for any other `RETURN` with TYPE `E` or `A`.

use axum::Json;
use axum::response::IntoResponse;
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::fields::{from_address, from_company_data, from_list_row, from_sent};
use crate::http::ApiError;
use crate::http::actions::{
    Step, call_params, completed, ok_json, return_error_row, return_problem, text,
};
use crate::queue::{CallRecord, CallState};

/// A create: the friendly data as sent (after defaults), for the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CreateStep {
    /// Member name → value.
    pub(crate) sent: Vec<(String, String)>,
}

/// A change of one customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChangeStep {
    /// The customer (ALPHA form).
    pub(crate) customer: String,
}

/// A read of one customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GetStep {
    /// The customer (ALPHA form).
    pub(crate) customer: String,
}

/// A search: the filters applied to `GETLIST`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SearchStep {
    /// Name pattern (`*` wildcards).
    pub(crate) name: Option<String>,
    /// City pattern (`*` wildcards).
    pub(crate) city: Option<String>,
    /// Country key pattern.
    pub(crate) country: Option<String>,
    /// Most customers answered.
    pub(crate) limit: usize,
}

/// Whether a `RETURN` row says the customer does not exist (F2 502).
fn not_found(row: &Value) -> bool {
    text(row, "ID") == "F2" && text(row, "NUMBER") == "502"
}

/// The problem for a `RETURN` error row: 404 for an unknown customer, else 422.
fn return_failure(row: &Value) -> ApiError {
    if not_found(row) {
        crate::http::actions::return_problem_with(
            row,
            StatusCode::NOT_FOUND,
            "customer-not-found",
            "Customer not found",
        )
    } else {
        return_problem(row)
    }
}

/// A unit with commit: its first call's RETURN error (through `on_error`), else
/// the generic failure when it did not commit.
fn failed_commit(
    record: &CallRecord,
    on_error: fn(&Value) -> ApiError,
) -> Result<&sapbridge_proto::Parameters, ApiError> {
    let (results, _) = completed(record)?;
    let params = call_params(results, 0)?;
    if let Some(row) = return_error_row(params) {
        return Err(on_error(row));
    }
    if record.state != CallState::Succeeded {
        return Err(ApiError::Call(Box::new(crate::http::render::failure(
            record,
        ))));
    }
    Ok(params)
}

/// `201` with the new customer and its `Location`.
///
/// Any `RETURN` error is `422`, also F2 502: then the *reference* customer does
/// not exist.
pub(crate) fn create_done(step: &CreateStep, record: &CallRecord) -> Result<Step, ApiError> {
    let params = failed_commit(record, return_problem)?;
    let customer = params
        .get("CUSTOMERNO")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let sent: Map<String, Value> = step
        .sent
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let location = format!("/v1/systems/{}/customers/{customer}", record.system);
    let mut response = (StatusCode::CREATED, Json(from_sent(customer, &sent))).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(Step::Done(response))
}

/// `200` with the customer after the change.
pub(crate) fn change_done(step: &ChangeStep, record: &CallRecord) -> Result<Step, ApiError> {
    let params = failed_commit(record, return_failure)?;
    let data = params.get("PE_COMPANYDATA").cloned().unwrap_or_default();
    Ok(Step::Done(ok_json(from_company_data(
        &step.customer,
        &data,
    ))))
}

/// `200` with the customer.
pub(crate) fn get_done(_: &GetStep, record: &CallRecord) -> Result<Step, ApiError> {
    let (results, _) = completed(record)?;
    let params = call_params(results, 0)?;
    if let Some(row) = return_error_row(params) {
        return Err(return_failure(row));
    }
    let address = params.get("CUSTOMERADDRESS").cloned().unwrap_or_default();
    Ok(Step::Done(ok_json(from_address(&address))))
}

/// `200` with `{"customers": [...]}`; nothing found (F2 718) is an empty list.
pub(crate) fn search_done(step: &SearchStep, record: &CallRecord) -> Result<Step, ApiError> {
    let (results, _) = completed(record)?;
    let params = call_params(results, 0)?;
    let nothing_found = |row: &Value| text(row, "ID") == "F2" && text(row, "NUMBER") == "718";
    if let Some(row) = return_error_row(params).filter(|row| !nothing_found(row)) {
        return Err(return_problem(row));
    }
    let rows = params
        .get("ADDRESSDATA")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let matches = |filter: &Option<String>, value: &str| {
        filter
            .as_deref()
            .is_none_or(|pattern| wildcard(pattern, value))
    };
    let customers: Vec<Value> = rows
        .iter()
        .filter(|row| matches(&step.name, text(row, "NAME")))
        .filter(|row| matches(&step.city, text(row, "CITY")))
        .filter(|row| matches(&step.country, text(row, "COUNTRY")))
        .take(step.limit)
        .map(from_list_row)
        .collect();
    Ok(Step::Done(ok_json(json!({ "customers": customers }))))
}

/// Case-insensitive match of `value` against `pattern`, where `*` stands for any
/// string (a pattern without `*` must match the whole value).
pub(crate) fn wildcard(pattern: &str, value: &str) -> bool {
    let pattern: Vec<char> = pattern.to_lowercase().chars().collect();
    let value: Vec<char> = value.to_lowercase().chars().collect();
    // Classic greedy matching with backtracking to the last `*`.
    let (mut p, mut v) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while v < value.len() {
        if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, v));
            p += 1;
        } else if p < pattern.len() && pattern[p] == value[v] {
            p += 1;
            v += 1;
        } else if let Some((sp, sv)) = star {
            p = sp + 1;
            v = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_case_insensitively() {
        assert!(wildcard("beck*", "Becker Maschinenbau GmbH"));
        assert!(wildcard("*GMBH", "Becker Maschinenbau GmbH"));
        assert!(wildcard("*masch*", "Becker Maschinenbau GmbH"));
        assert!(wildcard("walldorf", "Walldorf"));
        assert!(!wildcard("wall", "Walldorf"));
        assert!(!wildcard("*x*", "Walldorf"));
        assert!(wildcard("*", ""));
        assert!(wildcard("a*b*c", "aXXbYYc"));
        assert!(!wildcard("a*b*c", "aXXbYY"));
    }
}
