//! Function search: `GET /v1/systems/{system}/functions?search=PATTERN&limit=N`
//! lists the function modules a pick list may offer, by one `RFC_FUNCTION_SEARCH`
//! call through the agent.
//!
//! The agent is the trust anchor: it answers `RFC_FUNCTION_SEARCH` only if its
//! allowlist permits it, and keeps in the answer only the function modules its
//! allowlist lets through (agents that do so say `function_search` in their
//! hello; the HTTP layer lists functions only where every agent serving the
//! system does). The relay sorts the rows, drops duplicates and cuts them to the
//! limit. `NO_FUNCTION_FOUND` is an empty list; a system without
//! `RFC_FUNCTION_SEARCH` (`FU_NOT_FOUND`) is [`ActionError::FunctionNotFound`].

use sapbridge_proto::{CallResult, CommitPolicy, FunctionCall, Parameters};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{ActionError, ActionUnit, Answer, Next, Step};
use crate::actions::outcome::{call_params, completed, text};
use crate::queue::CallRecord;

/// The function module that searches function modules.
pub(crate) const SEARCH_FUNCTION: &str = "RFC_FUNCTION_SEARCH";
/// How many functions a search answers unless asked for fewer or more.
pub(crate) const DEFAULT_LIMIT: u32 = 100;
/// The most functions a search answers.
pub(crate) const MAX_LIMIT: u32 = 1000;
/// The longest pattern (`FUNCNAME` is `CHAR 30`).
pub(crate) const MAX_PATTERN: usize = 30;

/// A function search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SearchStep {
    /// The `FUNCNAME` pattern sent to SAP (upper case, with `*`).
    pub(crate) pattern: String,
    /// The most functions to answer.
    pub(crate) limit: u32,
}

/// The SAP pattern of a `search` text: upper case; empty is `*` (everything),
/// text without `*` is searched anywhere in the name (`*TEXT*`).
///
/// # Errors
/// [`ActionError::BadRequest`] for characters function names do not have (letters,
/// digits, `_`, `/`, and `*`), or a pattern over 30 characters.
pub(crate) fn pattern(search: &str) -> Result<String, ActionError> {
    let search = search.trim().to_ascii_uppercase();
    if let Some(bad) = search
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '/' | '*')))
    {
        return Err(ActionError::BadRequest(format!(
            "search: {bad:?} is not allowed (letters, digits, _, / and * as wildcard)"
        )));
    }
    let pattern = if search.is_empty() {
        "*".to_owned()
    } else if search.contains('*') {
        search
    } else {
        format!("*{search}*")
    };
    if pattern.len() > MAX_PATTERN {
        return Err(ActionError::BadRequest(format!(
            "search: the pattern {pattern} is longer than {MAX_PATTERN} characters"
        )));
    }
    Ok(pattern)
}

/// The unit of a search for `pattern` (from [`pattern`]) answering at most `limit`
/// functions.
pub(crate) fn search(pattern: String, limit: u32) -> ActionUnit {
    let mut parameters = Parameters::new();
    parameters.insert("FUNCNAME".into(), json!(pattern));
    ActionUnit {
        step: Step::FunctionSearch(SearchStep { pattern, limit }),
        calls: vec![FunctionCall {
            function: SEARCH_FUNCTION.into(),
            parameters,
        }],
        commit: CommitPolicy::None,
    }
}

/// Reads the search's final call: `{"search", "functions": [{"function", "group",
/// "description"}], "truncated"}`, sorted by name.
pub(crate) fn search_done(step: &SearchStep, record: &CallRecord) -> Result<Next, ActionError> {
    let (results, _) = completed(record)?;
    let rows: &[Value] = match results.first() {
        Some(CallResult::Error(e)) if e.key == "NO_FUNCTION_FOUND" => &[],
        Some(CallResult::Error(e)) if e.key == "FU_NOT_FOUND" => {
            return Err(ActionError::FunctionNotFound {
                function: SEARCH_FUNCTION.into(),
                error: Box::new(e.clone()),
            });
        }
        _ => call_params(results, 0)?
            .get("FUNCTIONS")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice),
    };
    let mut functions: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|row| {
            (
                text(row, "FUNCNAME").trim(),
                text(row, "GROUPNAME").trim(),
                text(row, "STEXT").trim(),
            )
        })
        .filter(|(name, _, _)| !name.is_empty())
        .collect();
    functions.sort_unstable();
    functions.dedup_by(|a, b| a.0 == b.0);
    let limit = usize::try_from(step.limit).unwrap_or(usize::MAX);
    let truncated = functions.len() > limit;
    functions.truncate(limit);
    let list = FunctionList {
        functions: functions
            .into_iter()
            .map(|(function, group, description)| FoundFunction {
                description,
                function,
                group,
            })
            .collect(),
        search: &step.pattern,
        truncated,
    };
    Ok(Next::Done(Answer::Found(
        serde_json::to_value(list).unwrap_or_default(),
    )))
}

/// The answer of a function search. Members in name order, as the answer always
/// had them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct FunctionList<'a> {
    #[schema(inline)]
    functions: Vec<FoundFunction<'a>>,
    /// The pattern sent to SAP (upper case, with `*`).
    #[schema(examples("*CUSTOMER*"))]
    search: &'a str,
    /// More function modules matched than `limit`.
    truncated: bool,
}

/// One function module a search found.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct FoundFunction<'a> {
    /// SAP's short text.
    description: &'a str,
    /// The function module.
    #[schema(max_length = 30)]
    function: &'a str,
    /// Its function group.
    group: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_texts_become_sap_patterns() {
        assert_eq!(pattern("").unwrap(), "*");
        assert_eq!(pattern(" bapi_customer_* ").unwrap(), "BAPI_CUSTOMER_*");
        assert_eq!(pattern("customer").unwrap(), "*CUSTOMER*");
        assert_eq!(pattern("/BODS/*").unwrap(), "/BODS/*");
        for bad in ["RFC%", "A'B", "X Y", "ä", &"A".repeat(29)] {
            assert!(
                matches!(pattern(bad), Err(ActionError::BadRequest(_))),
                "{bad}"
            );
        }
        assert!(pattern(&"A".repeat(28)).is_ok());
    }
}
