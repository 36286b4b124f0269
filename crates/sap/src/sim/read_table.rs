//! `RFC_READ_TABLE` on `KNA1`, faithful to SAP's implementation: fixed-width
//! fields laid out in a 512-character line, joined by `DELIMITER`, with the field
//! catalogue (`FIELDS`: offset, length, type, text) filled in the answer.
//!
//! Like the real function it reads the database: rows created or changed in the
//! caller's uncommitted LUW are not visible. Exceptions: `TABLE_NOT_AVAILABLE`
//! (any table but `KNA1`; names are case-sensitive as in the DDIC),
//! `FIELD_NOT_VALID` (a `FIELDS` entry the table does not have),
//! `OPTION_NOT_VALID` (a WHERE clause outside [`crate::where_clause`]'s grammar —
//! the one the agent enforces — or naming an unknown field), `DATA_BUFFER_EXCEEDED` (selected fields plus delimiters wider than 512
//! characters — which is what reading `KNA1` without a field list gives).

use serde_json::{Map, Value};

use super::errors::{Msg, abap_exception, storage_failure};
use super::session::Ctx;
use super::tables::KNA1;
use super::types::{FieldDef, Kind};
use super::values::{Input, field, pad_numc, truncate};
use crate::where_clause;
use crate::{Parameters, RfcError};

/// Width of one `DATA` line (`TAB512-WA`).
const LINE_LENGTH: u32 = 512;

/// One selected field and where it sits in the line.
struct Column {
    def: &'static FieldDef,
    offset: u32,
}

/// `RFC_READ_TABLE`.
///
/// # Errors
/// The ABAP exceptions above (`ABAP_APPLICATION_FAILURE`); `ABAP_RUNTIME_FAILURE`
/// when the state file fails.
pub(crate) fn read_table(ctx: &mut Ctx<'_>, input: &Input) -> Result<Parameters, RfcError> {
    let table = input.str("QUERY_TABLE");
    if table != KNA1.name {
        let msg = Msg {
            class: "SV",
            number: "029",
            v1: table,
            v2: "",
        };
        return Err(abap_exception("TABLE_NOT_AVAILABLE", Some(msg)));
    }
    let delimiter = input.str("DELIMITER");
    let columns = select_columns(&input.table("FIELDS"), delimiter)?;

    let where_rows: Vec<String> = input
        .table("OPTIONS")
        .iter()
        .map(|r| field(r, "TEXT").to_owned())
        .collect();
    let known = |name: &str| KNA1.field(name).is_some();
    let cond = where_clause::parse_rows(&where_rows, &known).map_err(|e| {
        tracing::debug!(error = %e, "RFC_READ_TABLE: invalid WHERE clause");
        abap_exception("OPTION_NOT_VALID", None)
    })?;

    let mut data = Vec::new();
    if input.str("NO_DATA").is_empty() {
        let skip = usize::try_from(input.int("ROWSKIPS")).unwrap_or(0);
        let count = usize::try_from(input.int("ROWCOUNT")).unwrap_or(0);
        let rows = ctx.store.customers().map_err(storage_failure)?;
        let selected = rows
            .iter()
            .filter(|rec| cond.eval(&|f: &str| rec.get(f).map_or("", String::as_str)))
            .skip(skip)
            .take(if count == 0 { usize::MAX } else { count });
        for rec in selected {
            let values: Vec<String> = columns
                .iter()
                .map(|c| cell(c.def, rec.get(c.def.name).map_or("", String::as_str)))
                .collect();
            let mut wa = Map::new();
            wa.insert("WA".into(), Value::String(values.join(delimiter)));
            data.push(Value::Object(wa));
        }
    }

    let fields: Vec<Value> = columns
        .iter()
        .map(|c| {
            let mut m = Map::new();
            m.insert("FIELDNAME".into(), c.def.name.into());
            m.insert("OFFSET".into(), pad_numc(&c.offset.to_string(), 6).into());
            m.insert(
                "LENGTH".into(),
                pad_numc(&c.def.width().to_string(), 6).into(),
            );
            m.insert("TYPE".into(), c.def.kind.inttype().into());
            m.insert("FIELDTEXT".into(), c.def.text.into());
            Value::Object(m)
        })
        .collect();
    let mut out = Parameters::new();
    out.insert("FIELDS".into(), Value::Array(fields));
    out.insert("DATA".into(), Value::Array(data));
    Ok(out)
}

/// Resolves the requested fields (all of the table when none) and lays them out.
fn select_columns(
    requested: &[Map<String, Value>],
    delimiter: &str,
) -> Result<Vec<Column>, RfcError> {
    let defs: Vec<&'static FieldDef> = if requested.is_empty() {
        KNA1.fields.iter().collect()
    } else {
        requested
            .iter()
            .map(|r| {
                let name = field(r, "FIELDNAME");
                KNA1.field(name)
                    .ok_or_else(|| abap_exception("FIELD_NOT_VALID", None))
            })
            .collect::<Result<_, _>>()?
    };
    let delimiter_len = u32::try_from(delimiter.chars().count()).unwrap_or(1);
    let mut cursor = 0;
    let mut columns = Vec::with_capacity(defs.len());
    for (i, def) in defs.into_iter().enumerate() {
        if i > 0 {
            cursor += delimiter_len;
        }
        columns.push(Column {
            def,
            offset: cursor,
        });
        cursor += def.width();
        if cursor > LINE_LENGTH {
            return Err(abap_exception("DATA_BUFFER_EXCEEDED", None));
        }
    }
    Ok(columns)
}

/// A value as it stands in the fixed-width line.
fn cell(def: &FieldDef, value: &str) -> String {
    let width = def.width() as usize;
    match def.kind {
        Kind::Numc => pad_numc(value, def.len),
        Kind::Dats | Kind::Tims if value.is_empty() => "0".repeat(width),
        Kind::Int4 | Kind::Packed => format!("{value:>width$}"),
        _ => format!("{:<width$}", truncate(value, def.len)),
    }
}
