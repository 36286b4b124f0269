//! Table reads through `RFC_READ_TABLE`:
//! `GET /v1/systems/{system}/tables/{table}?fields=A,B&where=…&limit=&offset=` and
//! `POST /v1/systems/{system}/tables/{table}/query` with
//! `{"fields": [...], "where": "…", "limit": n, "offset": n}`.
//!
//! The answer: `{"table", "fields": [{"name","type","length","description"}],
//! "rows": [{…}], "offset", "limit", "more"}` — rows typed per field (see
//! `rows.rs`), `more` true when rows beyond `limit` exist (the read asks for one
//! row more than it answers).
//!
//! The chain: one `RFC_READ_TABLE` (`ROWSKIPS` = offset, `ROWCOUNT` = limit + 1,
//! the WHERE clause as `OPTIONS` rows, see `where_lines.rs`). A field list naming a
//! field twice or more than `table_read::MAX_FIELDS` fields is a 400 here, as the
//! agent would refuse it. When SAP answers
//! `DATA_BUFFER_EXCEEDED` (the fields are wider than its 512-character line —
//! always the case for a wide table read without a field list), a second unit asks
//! `DDIF_FIELDINFO_GET` for the table's fields, and a third reads them in parts,
//! several `RFC_READ_TABLE` calls in one unit, stitched back by position and
//! checked by the key fields each part repeats. ABAP exceptions become problems:
//! `TABLE_NOT_AVAILABLE` 404, `FIELD_NOT_VALID` / `OPTION_NOT_VALID` 400,
//! `NOT_AUTHORIZED` 403 (see [`TableRefusal`]). Which tables may be read is the
//! agent's allowlist's call.

pub(crate) mod layout;
mod rows;
mod where_lines;

use sapbridge_proto::{CallResult, CommitPolicy, FunctionCall, Parameters, RfcError};
use sapbridge_sap::table_read;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::outcome::{call_params, completed};
use super::{ActionError, ActionUnit, Answer, Next, Step, TableRefusal, sap_name};
use crate::queue::CallRecord;

const READ_TABLE: &str = "RFC_READ_TABLE";
pub(crate) const FIELD_INFO: &str = "DDIF_FIELDINFO_GET";
/// Rows answered when the request names no limit.
const DEFAULT_LIMIT: u32 = 1000;
/// The largest `limit` and `offset`.
const MAX_ROWS: u32 = 1_000_000;

/// Where a table read is in its chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ReadStage {
    /// One read with the requested fields.
    Read,
    /// Asking for the table's fields after `DATA_BUFFER_EXCEEDED`.
    Layout,
    /// Reading the fields in parts; the key fields repeated in every part.
    Split {
        /// The key fields every part holds.
        keys: Vec<String>,
    },
}

/// A table read: the request and the stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReadStep {
    /// Table name (upper case).
    pub(crate) table: String,
    /// Requested fields, empty for all.
    pub(crate) fields: Vec<String>,
    /// The `OPTIONS` lines.
    pub(crate) options: Vec<String>,
    /// Rows to skip.
    pub(crate) offset: u32,
    /// Rows to answer.
    pub(crate) limit: u32,
    /// Where the chain is.
    pub(crate) stage: ReadStage,
}

/// A table read as a client asks for it: the body of
/// `POST …/tables/{table}/query`, or the query of `GET …/tables/{table}`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TableQuery)]
pub(crate) struct ReadRequest {
    /// Field names; none = all fields.
    #[serde(default)]
    #[schema(schema_with = field_names_schema)]
    pub(crate) fields: Vec<String>,
    /// Open SQL condition (`LAND1 EQ 'DE'`).
    #[serde(default, rename = "where")]
    pub(crate) clause: String,
    /// Rows to answer.
    #[schema(schema_with = limit_schema)]
    pub(crate) limit: Option<u32>,
    /// Rows to skip.
    #[schema(schema_with = offset_schema)]
    pub(crate) offset: Option<u32>,
}

/// `fields`: DDIC names of at most [`crate::actions::MAX_SAP_NAME`] characters.
fn field_names_schema() -> utoipa::openapi::Array {
    utoipa::openapi::ArrayBuilder::new()
        .items(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::Type::String)
                .max_length(Some(crate::actions::MAX_SAP_NAME)),
        )
        .description(Some("Field names; none = all fields."))
        .build()
}

/// `limit`: 1 to [`MAX_ROWS`], [`DEFAULT_LIMIT`] when left out.
pub(crate) fn limit_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Integer)
        .minimum(Some(1))
        .maximum(Some(MAX_ROWS))
        .default(Some(DEFAULT_LIMIT.into()))
        .build()
}

/// `offset`: 0 to [`MAX_ROWS`].
pub(crate) fn offset_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Integer)
        .minimum(Some(0))
        .maximum(Some(MAX_ROWS))
        .default(Some(0.into()))
        .build()
}

/// A DDIC name (table or field): upper case, `A-Z 0-9 _ /`, 1 to 30 characters.
pub(crate) fn ddic_name(what: &str, raw: &str) -> Result<String, ActionError> {
    sap_name(raw)
        .ok_or_else(|| ActionError::BadRequest(format!("{what}: {raw:?} is not a valid name")))
}

/// The first step of a read of `table`: names checked, the WHERE clause as
/// `OPTIONS` lines, paging within bounds.
///
/// # Errors
/// [`ActionError::BadRequest`] naming what is wrong.
pub(crate) fn read_step(table: &str, body: ReadRequest) -> Result<ReadStep, ActionError> {
    let limit = body.limit.unwrap_or(DEFAULT_LIMIT);
    let offset = body.offset.unwrap_or(0);
    if limit == 0 || limit > MAX_ROWS || offset > MAX_ROWS {
        return Err(ActionError::BadRequest(format!(
            "limit must be 1 to {MAX_ROWS} and offset 0 to {MAX_ROWS}"
        )));
    }
    let fields = body
        .fields
        .iter()
        .filter(|f| !f.trim().is_empty())
        .map(|f| ddic_name("fields", f))
        .collect::<Result<Vec<_>, _>>()?;
    table_read::check_field_list(&fields)
        .map_err(|e| ActionError::BadRequest(format!("fields: {e}")))?;
    Ok(ReadStep {
        table: ddic_name("table", table)?,
        fields,
        options: where_lines::option_lines(&body.clause)?,
        offset,
        limit,
        stage: ReadStage::Read,
    })
}

/// The first unit of a read: one `RFC_READ_TABLE` of the requested fields.
pub(crate) fn read(step: ReadStep) -> ActionUnit {
    let call = read_call(&step, &step.fields);
    ActionUnit {
        step: Step::TableRead(step),
        calls: vec![call],
        commit: CommitPolicy::None,
    }
}

/// One `RFC_READ_TABLE` call of `fields` with the step's clause and paging.
fn read_call(step: &ReadStep, fields: &[String]) -> FunctionCall {
    let mut parameters = Parameters::new();
    parameters.insert("QUERY_TABLE".into(), json!(step.table));
    parameters.insert("ROWSKIPS".into(), json!(step.offset));
    parameters.insert("ROWCOUNT".into(), json!(step.limit + 1));
    let options: Vec<Value> = step.options.iter().map(|t| json!({"TEXT": t})).collect();
    parameters.insert("OPTIONS".into(), Value::Array(options));
    let fields: Vec<Value> = fields.iter().map(|f| json!({"FIELDNAME": f})).collect();
    parameters.insert("FIELDS".into(), Value::Array(fields));
    FunctionCall {
        function: READ_TABLE.into(),
        parameters,
    }
}

/// The error for an ABAP exception of `RFC_READ_TABLE` / `DDIF_FIELDINFO_GET`:
/// a [`TableRefusal`] where the request can fix it, else the RFC error.
pub(crate) fn table_error(table: &str, error: &RfcError) -> ActionError {
    match TableRefusal::of(&error.key) {
        Some(refusal) => ActionError::Table {
            table: table.to_owned(),
            refusal,
            error: Box::new(error.clone()),
        },
        None => ActionError::Rfc(Box::new(error.clone())),
    }
}

/// Renders a final step of a table read.
pub(crate) fn read_done(step: &ReadStep, record: &CallRecord) -> Result<Next, ActionError> {
    let (results, _) = completed(record)?;
    match &step.stage {
        ReadStage::Read => match results.first() {
            Some(CallResult::Error(e)) if e.key == "DATA_BUFFER_EXCEEDED" => {
                let mut parameters = Parameters::new();
                parameters.insert("TABNAME".into(), json!(step.table));
                Ok(Next::Then(ActionUnit {
                    step: Step::TableRead(ReadStep {
                        stage: ReadStage::Layout,
                        ..step.clone()
                    }),
                    calls: vec![FunctionCall {
                        function: FIELD_INFO.into(),
                        parameters,
                    }],
                    commit: CommitPolicy::None,
                }))
            }
            Some(CallResult::Error(e)) => Err(table_error(&step.table, e)),
            _ => {
                let answer = rows::parse(call_params(results, 0)?);
                Ok(Next::Done(answer_json(step, answer)))
            }
        },
        ReadStage::Layout => {
            let params = match results.first() {
                Some(CallResult::Error(e)) => {
                    return Err(table_error(&step.table, e));
                }
                _ => call_params(results, 0)?,
            };
            let layout = rows::layout(params);
            let (chunks, keys) = rows::plan_split(&layout, &step.fields)?;
            tracing::info!(table = %step.table, parts = chunks.len(), "table read split");
            let calls = chunks.iter().map(|c| read_call(step, c)).collect();
            Ok(Next::Then(ActionUnit {
                step: Step::TableRead(ReadStep {
                    stage: ReadStage::Split { keys },
                    ..step.clone()
                }),
                calls,
                commit: CommitPolicy::None,
            }))
        }
        ReadStage::Split { keys } => {
            let mut parts = Vec::with_capacity(record.calls.len());
            for index in 0..record.calls.len() {
                if let Some(CallResult::Error(e)) = results.get(index) {
                    return Err(table_error(&step.table, e));
                }
                parts.push(rows::parse(call_params(results, index)?));
            }
            let mut whole = rows::stitch(parts, keys)?;
            // Keys repeated only for checking are not part of the answer.
            let order: Vec<String> = if step.fields.is_empty() {
                whole.columns.iter().map(|c| c.name.clone()).collect()
            } else {
                step.fields.clone()
            };
            whole.columns = order
                .iter()
                .filter_map(|n| whole.columns.iter().find(|c| &c.name == n).cloned())
                .collect();
            for row in &mut whole.rows {
                row.retain(|name, _| order.contains(name));
            }
            Ok(Next::Done(answer_json(step, whole)))
        }
    }
}

/// The answer: the table, its fields, the rows of the page and whether more
/// follow.
fn answer_json(step: &ReadStep, mut answer: rows::Answer) -> Answer {
    let limit = step.limit as usize;
    let more = answer.rows.len() > limit;
    answer.rows.truncate(limit);
    let body = ReadAnswer {
        fields: answer.columns.iter().map(rows::Column::body).collect(),
        limit: step.limit,
        more,
        offset: step.offset,
        rows: &answer.rows,
        table: &step.table,
    };
    Answer::Found(serde_json::to_value(body).unwrap_or_default())
}

/// The answer of a table read. Members in name order, as the answer always had
/// them.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = TableAnswer)]
pub(crate) struct ReadAnswer<'a> {
    fields: Vec<rows::ColumnBody<'a>>,
    #[schema(minimum = 1)]
    limit: u32,
    /// Rows beyond `limit` exist.
    more: bool,
    offset: u32,
    #[schema(schema_with = rows_schema)]
    rows: &'a [serde_json::Map<String, Value>],
    table: &'a str,
}

/// The rows of a [`ReadAnswer`]: objects of typed values by field name.
fn rows_schema() -> utoipa::openapi::Array {
    use utoipa::openapi::schema::{AdditionalProperties, SchemaType, Type};
    let value = utoipa::openapi::ObjectBuilder::new().schema_type(SchemaType::Array(vec![
        Type::String,
        Type::Number,
        Type::Null,
    ]));
    utoipa::openapi::ArrayBuilder::new()
        .items(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(Type::Object)
                .additional_properties(Some(AdditionalProperties::RefOr(
                    utoipa::openapi::RefOr::T(value.into()),
                ))),
        )
        .description(Some(
            "Rows by field name: integers and floats are numbers; packed stays a string; \
             `D` is `YYYY-MM-DD` and `T` `HH:MM:SS` (initial → `null`).",
        ))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked() {
        let body = ReadRequest {
            fields: vec!["kunnr".into(), " ".into()],
            clause: "LAND1 EQ 'DE'".into(),
            limit: None,
            offset: Some(5),
        };
        let step = read_step("kna1", body).unwrap();
        assert_eq!(step.table, "KNA1");
        assert_eq!(step.fields, vec!["KUNNR"]);
        assert_eq!((step.limit, step.offset), (DEFAULT_LIMIT, 5));
        let call = read_call(&step, &step.fields);
        assert_eq!(call.parameters["ROWCOUNT"], json!(DEFAULT_LIMIT + 1));
        assert_eq!(call.parameters["OPTIONS"][0]["TEXT"], "LAND1 EQ 'DE'");
        let bad = ReadRequest {
            limit: Some(0),
            ..ReadRequest::default()
        };
        assert!(read_step("KNA1", bad).is_err());
        assert!(read_step("KNA1; DROP", ReadRequest::default()).is_err());
        let twice = ReadRequest {
            fields: vec!["KUNNR".into(), "kunnr".into()],
            ..ReadRequest::default()
        };
        assert!(read_step("KNA1", twice).is_err());
    }
}
