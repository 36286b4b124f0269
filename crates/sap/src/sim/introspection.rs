//! The metadata functions clients use to discover interfaces:
//! `RFC_GET_FUNCTION_INTERFACE` (parameters of a function module) and
//! `DDIF_FIELDINFO_GET` (components of a structure or table). Both answer from
//! the same model that validates calls, so discovery and behaviour agree.

use serde_json::{Map, Value};

use super::errors::{abap_exception, function_not_found};
use super::functions;
use super::session::Ctx;
use super::tables;
use super::types::{FieldDef, Kind, ParamDef, ParamType, StructDef, StructKind};
use super::values::{Input, pad_numc, truncate};
use crate::{Parameters, RfcError};

/// `RFC_GET_FUNCTION_INTERFACE`: one `PARAMS` row per parameter (class `I`, `E`,
/// `C`, `T`) and per exception (class `X`). Structures have `EXID` `u`, tables
/// `h`; `INTLENGTH` is in bytes of a Unicode system unless
/// `NONE_UNICODE_LENGTH = 'X'`.
///
/// # Errors
/// `FU_NOT_FOUND` (message FL 046) for a function the system does not have.
pub(crate) fn get_function_interface(
    _: &mut Ctx<'_>,
    input: &Input,
) -> Result<Parameters, RfcError> {
    let name = input.str("FUNCNAME").trim().to_ascii_uppercase();
    let def = functions::lookup(&name).ok_or_else(|| function_not_found(&name))?;
    let unicode = input.str("NONE_UNICODE_LENGTH") != "X";
    let mut rows: Vec<Value> = def.params.iter().map(|p| param_row(p, unicode)).collect();
    for exception in def.exceptions {
        let mut m = Map::new();
        m.insert("PARAMCLASS".into(), "X".into());
        m.insert("PARAMETER".into(), (*exception).into());
        rows.push(Value::Object(m));
    }
    let mut out = Parameters::new();
    out.insert("PARAMS".into(), Value::Array(rows));
    out.insert("REMOTE_CALL".into(), "R".into());
    Ok(out)
}

fn param_row(p: &ParamDef, unicode: bool) -> Value {
    let len = |f: &FieldDef| {
        if unicode {
            f.intlen_unicode()
        } else {
            f.intlen_single()
        }
    };
    let row_len = |s: &StructDef| s.fields.iter().map(len).sum::<u32>();
    let (tab, fieldname, exid, intlength, decimals) = match p.ty {
        ParamType::Elem { tab, field } => (
            tab,
            field.name,
            field.kind.inttype(),
            len(&field),
            field.decimals,
        ),
        ParamType::Struct(s) => (s.name, "", "u", row_len(s), 0),
        ParamType::Table(s) => (s.name, "", "h", row_len(s), 0),
    };
    let mut m = Map::new();
    m.insert("PARAMCLASS".into(), p.class.letter().into());
    m.insert("PARAMETER".into(), p.name.into());
    m.insert("TABNAME".into(), tab.into());
    m.insert("FIELDNAME".into(), fieldname.into());
    m.insert("EXID".into(), exid.into());
    m.insert("POSITION".into(), 0.into());
    m.insert("OFFSET".into(), 0.into());
    m.insert("INTLENGTH".into(), intlength.into());
    m.insert("DECIMALS".into(), decimals.into());
    m.insert("DEFAULT".into(), p.default.into());
    m.insert("PARAMTEXT".into(), p.text.into());
    m.insert("OPTIONAL".into(), if p.optional { "X" } else { "" }.into());
    Value::Object(m)
}

/// `DDIF_FIELDINFO_GET`: the components of a structure or table as `DFIES` rows
/// (`DFIES_TAB`); with `FIELDNAME`, that one component (also in `DFIES_WA`).
/// `DDOBJTYPE` is `TRANSP` for a table, `INTTAB` for a structure.
///
/// # Errors
/// `NOT_FOUND` for an unknown structure or field.
pub(crate) fn fieldinfo_get(_: &mut Ctx<'_>, input: &Input) -> Result<Parameters, RfcError> {
    let name = input.str("TABNAME");
    let def = tables::lookup(name).ok_or_else(|| abap_exception("NOT_FOUND", None))?;
    let langu = match input.str("LANGU") {
        "" => "E",
        l => l,
    };
    let rows = dfies_rows(def, langu);
    let wanted = input.str("FIELDNAME");
    let mut out = Parameters::new();
    if wanted.is_empty() {
        out.insert("DFIES_TAB".into(), Value::Array(rows));
    } else {
        let row = rows
            .into_iter()
            .find(|r| r.get("FIELDNAME").and_then(Value::as_str) == Some(wanted))
            .ok_or_else(|| abap_exception("NOT_FOUND", None))?;
        out.insert("DFIES_WA".into(), row.clone());
        out.insert("DFIES_TAB".into(), Value::Array(vec![row]));
    }
    let objtype = match def.kind {
        StructKind::Table => "TRANSP",
        StructKind::Structure => "INTTAB",
    };
    out.insert("DDOBJTYPE".into(), objtype.into());
    Ok(out)
}

/// The `DFIES` rows of a structure: positions from 1, byte offsets of a Unicode
/// system (INT4 aligned to 4).
fn dfies_rows(def: &StructDef, langu: &str) -> Vec<Value> {
    let mut offset = 0u32;
    def.fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if f.kind == Kind::Int4 {
                offset = offset.div_ceil(4) * 4;
            }
            let mut m = Map::new();
            let num = |n: u32, w: u32| Value::String(pad_numc(&n.to_string(), w));
            m.insert("TABNAME".into(), def.name.into());
            m.insert("FIELDNAME".into(), f.name.into());
            m.insert("LANGU".into(), langu.into());
            m.insert("POSITION".into(), num(u32::try_from(i + 1).unwrap_or(0), 4));
            m.insert("OFFSET".into(), num(offset, 6));
            m.insert("LENG".into(), num(f.len, 6));
            m.insert("INTLEN".into(), num(f.intlen_unicode(), 6));
            m.insert("OUTPUTLEN".into(), num(output_len(f), 6));
            m.insert("DECIMALS".into(), num(f.decimals, 6));
            m.insert("DATATYPE".into(), f.datatype().into());
            m.insert("INTTYPE".into(), f.kind.inttype().into());
            m.insert("CONVEXIT".into(), f.convexit.into());
            m.insert("FIELDTEXT".into(), f.text.into());
            m.insert("REPTEXT".into(), truncate(f.text, 55).into());
            m.insert("SCRTEXT_S".into(), truncate(f.text, 10).into());
            m.insert("SCRTEXT_M".into(), truncate(f.text, 20).into());
            m.insert("SCRTEXT_L".into(), truncate(f.text, 40).into());
            m.insert("KEYFLAG".into(), if f.key { "X" } else { "" }.into());
            m.insert("COMPTYPE".into(), "E".into());
            m.insert("LFIELDNAME".into(), f.name.into());
            offset += f.intlen_unicode();
            Value::Object(m)
        })
        .collect()
}

fn output_len(f: &FieldDef) -> u32 {
    match f.kind {
        Kind::Dats => 10,
        Kind::Tims => 8,
        _ => f.width(),
    }
}
