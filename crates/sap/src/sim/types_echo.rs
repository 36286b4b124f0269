//! `Z_SAPBRIDGE_TYPES_ECHO`: a customer-style test function (like the ones SAP's
//! connectors test their type mappings with) that echoes one value of every ABAP
//! type the RFC model knows — CHAR, NUMC, DATS, TIMS, INT1/2/4/8, FLOAT, packed,
//! DECF16/34, RAW, XSTRING, STRING — as a structure, a table and an elementary
//! STRING, so every backend's conversions can be compared with the simulator's.

use super::session::Ctx;
use super::structures as s;
use super::types::{FieldDef as F, FunctionDef, Kind, ParamDef as P, StructDef, StructKind};
use super::values::Input;
use crate::{Parameters, RfcError};

/// One field of every type.
pub(crate) static ZSAPBRIDGE_TYPES: StructDef = StructDef {
    name: "ZSAPBRIDGE_TYPES",
    kind: StructKind::Structure,
    text: "sapbridge: one field of every ABAP type",
    fields: &[
        F::c("CHAR10", 10, "Characters"),
        F::n("NUMC5", 5, "Digits"),
        F::d("DATE", "Date"),
        F::t("TIME", "Time"),
        F::of(Kind::Int1, "INT1", 3, "1-byte integer"),
        F::of(Kind::Int2, "INT2", 5, "2-byte integer"),
        F::i("INT4", "4-byte integer"),
        F::of(Kind::Int8, "INT8", 19, "8-byte integer"),
        F::of(Kind::Float, "FLOAT", 16, "Binary float"),
        F::p("PACKED", 7, 2, "Packed number"),
        F::of(Kind::Decf16, "DECF16", 16, "Decimal float, 16 digits"),
        F::of(Kind::Decf34, "DECF34", 34, "Decimal float, 34 digits"),
        F::of(Kind::Raw, "RAW4", 4, "Bytes"),
        F::of(Kind::XStr, "XSTRING", 0, "Byte string"),
        F::s("STRING", "Character string"),
    ],
};

/// The interface.
pub(crate) static Z_SAPBRIDGE_TYPES_ECHO: FunctionDef = FunctionDef {
    name: "Z_SAPBRIDGE_TYPES_ECHO",
    params: &[
        P::imp_struct("IS_TYPES", &ZSAPBRIDGE_TYPES).opt(),
        P::imp(
            "IV_STRING",
            "ZSAPBRIDGE_TYPES",
            F::s("STRING", "Character string"),
        )
        .opt(),
        P::exp_struct("ES_TYPES", &ZSAPBRIDGE_TYPES).text("The structure given"),
        P::exp(
            "EV_STRING",
            "ZSAPBRIDGE_TYPES",
            F::s("STRING", "Character string"),
        )
        .text("The string given"),
        P::table("IT_TYPES", &ZSAPBRIDGE_TYPES)
            .opt()
            .text("Rows, returned as given"),
        P::exp_struct("RETURN", &s::BAPIRET2),
    ],
    exceptions: &[],
};

/// Echoes `IS_TYPES` as `ES_TYPES` and `IV_STRING` as `EV_STRING`; `IT_TYPES`
/// comes back as given.
///
/// # Errors
/// None.
pub(crate) fn echo(_: &mut Ctx<'_>, input: &Input) -> Result<Parameters, RfcError> {
    let mut out = Parameters::new();
    if let Some(types) = input.get("IS_TYPES") {
        out.insert("ES_TYPES".into(), types.clone());
    }
    out.insert("EV_STRING".into(), input.str("IV_STRING").into());
    Ok(out)
}
