//! The customer actions of the scenario "SAP Customer – Create / Update":
//!
//! | route | unit |
//! |---|---|
//! | `POST /v1/systems/{system}/customers` | `BAPI_CUSTOMER_CREATEFROMDATA1`, commit |
//! | `PATCH /v1/systems/{system}/customers/{customer}` | `BAPI_CUSTOMER_CHANGEFROMDATA1` with `…X` flags, commit |
//! | `GET /v1/systems/{system}/customers/{customer}` | `BAPI_CUSTOMER_GETDETAIL2` |
//! | `GET /v1/systems/{system}/customers?name=&city=&country=&limit=` | `BAPI_CUSTOMER_GETLIST` (all numbers), filtered by the relay |
//!
//! Each is one unit of work on one agent, with the usual `Prefer`,
//! `Idempotency-Key` and `202` + `Location` behaviour. Customer numbers in paths
//! may be given with or without leading zeros; answers give the 10-digit form.
//!
//! Each step stores what its answer needs and reads its final call: `201`/`200`
//! with the friendly customer, [`ActionError::CustomerNotFound`] for a customer SAP
//! does not know (`RETURN` F2 502), [`ActionError::Business`] for any other
//! `RETURN` with TYPE `E` or `A`.

mod fields;
pub(crate) mod request;
mod schema;

use std::collections::HashMap;

use sapbridge_proto::{CommitPolicy, FunctionCall, Parameters};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub(crate) use fields::customer_number;
pub(crate) use schema::{CustomerAnswer, CustomerCreate, CustomerListAnswer, CustomerPatch};

use super::outcome::{
    business_error, call_params, completed, return_error_row, return_rfc_error, text,
};
use super::{ActionError, ActionUnit, Answer, Next, Step};
use crate::config::CustomerDefaults;
use crate::queue::{CallRecord, CallState};
use fields::{from_address, from_company_data, from_list_row, from_sent};

const CREATE: &str = "BAPI_CUSTOMER_CREATEFROMDATA1";
const CHANGE: &str = "BAPI_CUSTOMER_CHANGEFROMDATA1";
const DETAIL: &str = "BAPI_CUSTOMER_GETDETAIL2";
const LIST: &str = "BAPI_CUSTOMER_GETLIST";

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

/// A unit of one call of `function`.
fn unit(step: Step, function: &str, parameters: Parameters, commit: CommitPolicy) -> ActionUnit {
    ActionUnit {
        step,
        calls: vec![FunctionCall {
            function: function.to_owned(),
            parameters,
        }],
        commit,
    }
}

/// The unit of `POST …/customers`: the create body with `defaults` applied.
///
/// # Errors
/// [`ActionError::BadRequest`] for unknown members, wrong types, values longer
/// than SAP allows, and a missing `name`, `city` or `country`.
pub(crate) fn create(
    body: &Map<String, Value>,
    defaults: &CustomerDefaults,
) -> Result<ActionUnit, ActionError> {
    let request = request::create(body, defaults)?;
    let sent = request
        .sent
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    Ok(unit(
        Step::CustomerCreate(CreateStep { sent }),
        CREATE,
        request.parameters,
        CommitPolicy::CommitOnSuccess,
    ))
}

/// The unit of `PATCH …/customers/{customer}` (`customer` in its ALPHA form, see
/// [`customer_number`]).
///
/// # Errors
/// [`ActionError::BadRequest`] for unknown members, wrong types, values longer
/// than SAP allows, clearing a field SAP requires, and a body that changes
/// nothing.
pub(crate) fn change(
    customer: &str,
    body: &Map<String, Value>,
    defaults: &CustomerDefaults,
) -> Result<ActionUnit, ActionError> {
    let request = request::change(customer, body, defaults)?;
    Ok(unit(
        Step::CustomerChange(ChangeStep {
            customer: customer.to_owned(),
        }),
        CHANGE,
        request.parameters,
        CommitPolicy::CommitOnSuccess,
    ))
}

/// The unit of `GET …/customers/{customer}` (`customer` in its ALPHA form).
pub(crate) fn get(customer: &str) -> ActionUnit {
    let mut parameters = Parameters::new();
    parameters.insert("CUSTOMERNO".into(), json!(customer));
    unit(
        Step::CustomerGet(GetStep {
            customer: customer.to_owned(),
        }),
        DETAIL,
        parameters,
        CommitPolicy::None,
    )
}

/// The unit of `GET …/customers?name=&city=&country=&limit=`: every customer
/// number, filtered by the relay.
///
/// # Errors
/// [`ActionError::BadRequest`] for unknown query members and a `limit` out of
/// range.
pub(crate) fn search(query: &HashMap<String, String>) -> Result<ActionUnit, ActionError> {
    let step = request::search(query)?;
    let mut parameters = Parameters::new();
    parameters.insert(
        "IDRANGE".into(),
        json!([{"SIGN": "I", "OPTION": "CP", "LOW": "*", "HIGH": ""}]),
    );
    parameters.insert("MAXROWS".into(), Value::from(0));
    Ok(unit(
        Step::CustomerSearch(step),
        LIST,
        parameters,
        CommitPolicy::None,
    ))
}

/// Whether a `RETURN` row says the customer does not exist (F2 502).
fn not_found(row: &Value) -> bool {
    text(row, "ID") == "F2" && text(row, "NUMBER") == "502"
}

/// The error for a `RETURN` error row: the customer does not exist, or a
/// business error.
fn return_failure(row: &Value) -> ActionError {
    if not_found(row) {
        ActionError::CustomerNotFound {
            error: Box::new(return_rfc_error(row)),
            row: row.clone(),
        }
    } else {
        business_error(row)
    }
}

/// A unit with commit: its first call's RETURN error (through `on_error`), else
/// the call's own failure when it did not commit.
fn failed_commit(
    record: &CallRecord,
    on_error: fn(&Value) -> ActionError,
) -> Result<&Parameters, ActionError> {
    let (results, _) = completed(record)?;
    let params = call_params(results, 0)?;
    if let Some(row) = return_error_row(params) {
        return Err(on_error(row));
    }
    if record.state != CallState::Succeeded {
        return Err(ActionError::Call(Box::new(record.clone())));
    }
    Ok(params)
}

/// The new customer and where it lives now.
///
/// Any `RETURN` error is a business error, also F2 502: then the *reference*
/// customer does not exist.
pub(crate) fn create_done(step: &CreateStep, record: &CallRecord) -> Result<Next, ActionError> {
    let params = failed_commit(record, business_error)?;
    let customer = params
        .get("CUSTOMERNO")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let sent: Map<String, Value> = step
        .sent
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    Ok(Next::Done(Answer::Created {
        location: format!("/v1/systems/{}/customers/{customer}", record.system),
        body: from_sent(customer, &sent),
    }))
}

/// The customer after the change.
pub(crate) fn change_done(step: &ChangeStep, record: &CallRecord) -> Result<Next, ActionError> {
    let params = failed_commit(record, return_failure)?;
    let data = params.get("PE_COMPANYDATA").cloned().unwrap_or_default();
    Ok(Next::Done(Answer::Found(from_company_data(
        &step.customer,
        &data,
    ))))
}

/// The customer.
pub(crate) fn get_done(_: &GetStep, record: &CallRecord) -> Result<Next, ActionError> {
    let (results, _) = completed(record)?;
    let params = call_params(results, 0)?;
    if let Some(row) = return_error_row(params) {
        return Err(return_failure(row));
    }
    let address = params.get("CUSTOMERADDRESS").cloned().unwrap_or_default();
    Ok(Next::Done(Answer::Found(from_address(&address))))
}

/// `{"customers": [...]}`; nothing found (F2 718) is an empty list.
pub(crate) fn search_done(step: &SearchStep, record: &CallRecord) -> Result<Next, ActionError> {
    let (results, _) = completed(record)?;
    let params = call_params(results, 0)?;
    let nothing_found = |row: &Value| text(row, "ID") == "F2" && text(row, "NUMBER") == "718";
    if let Some(row) = return_error_row(params).filter(|row| !nothing_found(row)) {
        return Err(business_error(row));
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
    Ok(Next::Done(Answer::Found(json!({ "customers": customers }))))
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
