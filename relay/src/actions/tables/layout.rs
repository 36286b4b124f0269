//! A table's layout for dynamic forms: `GET /v1/systems/{system}/tables/{table}/fields`
//! answers its fields (one `DDIF_FIELDINFO_GET`) and a JSON schema of its rows as
//! table reads answer them, so a flow can pick fields and use each row's fields
//! as dynamic content. `NOT_FOUND` is `404`.

use sapbridge_proto::{CallResult, CommitPolicy, FunctionCall, Parameters};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{FIELD_INFO, ddic_name, table_error};
use crate::actions::metadata::{FieldInfo, fields_from_dfies};
use crate::actions::outcome::{call_params, completed};
use crate::actions::{ActionError, ActionUnit, Answer, Next, Step};
use crate::queue::CallRecord;

/// A layout request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LayoutStep {
    /// The table (upper case).
    pub(crate) table: String,
}

/// The unit of a layout request for `table`.
///
/// # Errors
/// [`ActionError::BadRequest`] for a name that is no DDIC name.
pub(crate) fn layout(table: &str) -> Result<ActionUnit, ActionError> {
    let table = ddic_name("table", table)?;
    let mut parameters = Parameters::new();
    parameters.insert("TABNAME".into(), json!(table));
    Ok(ActionUnit {
        step: Step::TableLayout(LayoutStep { table }),
        calls: vec![FunctionCall {
            function: FIELD_INFO.into(),
            parameters,
        }],
        commit: CommitPolicy::None,
    })
}

/// The JSON schema of one field as table reads answer it: integers and
/// floating point as numbers, the rest (dates `YYYY-MM-DD`) as strings.
fn field_schema(field: &FieldInfo) -> Value {
    let summary = if field.description.is_empty() {
        &field.name
    } else {
        &field.description
    };
    let kind = match field.abap_type.as_str() {
        "I" | "b" | "s" | "8" => "integer",
        "F" => "number",
        _ => "string",
    };
    let mut schema = json!({"type": kind, "x-ms-summary": summary,
        "description": format!("{} ({} {})", field.name, field.data_type, field.length)});
    if field.abap_type == "D" {
        schema["format"] = json!("date");
    }
    schema
}

/// Reads the layout's final call: `{"table", "fields": [{"name", "type",
/// "length", "description"}], "schema"}`.
pub(crate) fn layout_done(step: &LayoutStep, record: &CallRecord) -> Result<Next, ActionError> {
    let (results, _) = completed(record)?;
    if let Some(CallResult::Error(e)) = results.first() {
        return Err(table_error(&step.table, e));
    }
    let fields = fields_from_dfies(call_params(results, 0)?);
    let properties: Map<String, Value> = fields
        .iter()
        .map(|f| (f.name.clone(), field_schema(f)))
        .collect();
    let body = LayoutBody {
        fields: fields
            .iter()
            .map(|f| LayoutFieldBody {
                description: &f.description,
                length: f.length,
                name: &f.name,
                kind: &f.abap_type,
            })
            .collect(),
        schema: json!({"type": "object", "properties": properties}),
        table: &step.table,
    };
    Ok(Next::Done(Answer::Found(
        serde_json::to_value(body).unwrap_or_default(),
    )))
}

/// The answer of `GET /v1/systems/{system}/tables/{table}/fields`. Members in
/// name order, as the answer always had them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = TableLayout)]
pub(crate) struct LayoutBody<'a> {
    #[schema(inline)]
    fields: Vec<LayoutFieldBody<'a>>,
    /// A JSON schema of a row (`type: object`, a property per field).
    #[schema(value_type = Object)]
    schema: Value,
    table: &'a str,
}

/// One field of a [`LayoutBody`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct LayoutFieldBody<'a> {
    description: &'a str,
    length: u32,
    name: &'a str,
    /// ABAP type letter.
    #[serde(rename = "type")]
    kind: &'a str,
}
