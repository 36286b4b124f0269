//! The customer BAPIs: `BAPI_CUSTOMER_CREATEFROMDATA1`,
//! `BAPI_CUSTOMER_CHANGEFROMDATA1`, `BAPI_CUSTOMER_GETDETAIL2` and
//! `BAPI_CUSTOMER_GETLIST`.
//!
//! Business errors never raise exceptions: like the real BAPIs they come back in
//! `RETURN` with TYPE `E` (messages listed in `errors::msg`). Changes go to the
//! session's LUW and reach the database only with `BAPI_TRANSACTION_COMMIT`.

use serde_json::{Map, Value};

use super::errors::{bapi_return, msg, storage_failure, with_return};
use super::ranges::{self, RangeError};
use super::record::{
    self, ADDRESS_OUT, COMPANY_MAP, GENERAL_OUT, LIST_OUT, OPTIONAL_MAP, PERSONAL_MAP, Record,
    alpha_in,
};
use super::session::{CLIENT, Ctx, USER};
use super::system::today;
use super::values::{Input, field};
use crate::{Parameters, RfcError};

/// Columns a new customer takes over from the reference customer.
const COPIED_FROM_REFERENCE: &[&str] = &[
    "KTOKD", "BUKRS", "AKONT", "ZTERM", "VSBED", "VWERK", "KZTLF", "KKBER", "LZONE",
];

/// The customer `kunnr` as the session sees it (committed + own pending changes).
fn visible(ctx: &Ctx<'_>, kunnr: &str) -> Result<Option<Record>, RfcError> {
    let base = ctx.store.customer(kunnr).map_err(storage_failure)?;
    Ok(ctx.luw.overlay(kunnr, base))
}

fn filled(m: &Map<String, Value>) -> bool {
    m.values().any(|v| {
        v.as_str()
            .is_some_and(|s| !s.is_empty() && s.bytes().any(|b| b != b'0'))
    })
}

fn flagged(m: &Map<String, Value>) -> bool {
    m.values().any(|v| v.as_str() == Some("X"))
}

fn error(message: (&str, &str, &str), vars: &[&str]) -> Parameters {
    with_return(bapi_return("E", message, vars))
}

/// The first mandatory field of a create that is empty, as `PARAM-FIELD`.
///
/// The postal code is not among them: SAP requires it only for countries whose
/// settings say so (T005-XPLZS, "postal code required entry"), and the simulated
/// countries keep SAP's default, off.
fn missing_field(param: &str, data: &Map<String, Value>, person: bool) -> Option<String> {
    let name = if person { "LASTNAME" } else { "NAME" };
    let (lang, lang_iso) = if person {
        ("LANGU_P", "LANGUP_ISO")
    } else {
        ("LANGU", "LANGU_ISO")
    };
    let required: [(&str, &str); 5] = [
        (name, name),
        ("CITY", "CITY"),
        ("COUNTRY", "COUNTRYISO"),
        (lang, lang_iso),
        ("CURRENCY", "CURRENCY_ISO"),
    ];
    required
        .iter()
        .find(|(sap, iso)| field(data, sap).is_empty() && field(data, iso).is_empty())
        .map(|(sap, _)| format!("{param}-{sap}"))
}

/// `BAPI_CUSTOMER_CREATEFROMDATA1`: creates a customer from personal *or* company
/// data, copying account group, company code and sales data from the reference
/// customer of `PI_COPYREFERENCE`, which must exist in that sales area. The number
/// is drawn at once; the customer itself waits in the LUW for the commit.
///
/// # Errors
/// `ABAP_RUNTIME_FAILURE` when the state file fails; business errors are in RETURN.
pub(crate) fn create(ctx: &mut Ctx<'_>, input: &Input) -> Result<Parameters, RfcError> {
    let personal = input.structure("PI_PERSONALDATA");
    let company = input.structure("PI_COMPANYDATA");
    let person = match (filled(&personal), filled(&company)) {
        (true, false) => true,
        (false, true) => false,
        _ => return Ok(error(msg::PERSON_OR_COMPANY, &[])),
    };
    let (param, data) = if person {
        ("PI_PERSONALDATA", &personal)
    } else {
        ("PI_COMPANYDATA", &company)
    };
    if let Some(missing) = missing_field(param, data, person) {
        return Ok(error(msg::REQUIRED_FIELD, &[&missing]));
    }
    let copy = input.structure("PI_COPYREFERENCE");
    let (vkorg, vtweg, spart) = (
        field(&copy, "SALESORG"),
        field(&copy, "DISTR_CHAN"),
        field(&copy, "DIVISION"),
    );
    if vkorg.is_empty() || vtweg.is_empty() || spart.is_empty() {
        return Ok(error(msg::SALES_AREA_INCOMPLETE, &[]));
    }
    let ref_kunnr = alpha_in(field(&copy, "REF_CUSTMR"), 10);
    let Some(reference) = visible(ctx, &ref_kunnr)? else {
        return Ok(error(msg::CUSTOMER_NOT_FOUND, &[&ref_kunnr]));
    };
    let in_area = |col: &str, v: &str| reference.get(col).is_some_and(|x| x == v);
    if !(in_area("VKORG", vkorg) && in_area("VTWEG", vtweg) && in_area("SPART", spart)) {
        return Ok(error(
            msg::NOT_IN_SALES_AREA,
            &[&ref_kunnr, vkorg, vtweg, spart],
        ));
    }

    let mut rec = Record::new();
    for col in COPIED_FROM_REFERENCE {
        rec.insert(
            (*col).to_owned(),
            reference.get(*col).cloned().unwrap_or_default(),
        );
    }
    rec.insert("VKORG".into(), vkorg.to_owned());
    rec.insert("VTWEG".into(), vtweg.to_owned());
    rec.insert("SPART".into(), spart.to_owned());
    if person {
        record::apply(&mut rec, PERSONAL_MAP, data, None);
        record::apply_iso(&mut rec, data, "LANGU_P", "LANGUP_ISO", None);
        record::apply(
            &mut rec,
            OPTIONAL_MAP,
            &input.structure("PI_OPT_PERSONALDATA"),
            None,
        );
        rec.insert("PERSON".into(), "X".into());
    } else {
        record::apply(&mut rec, COMPANY_MAP, data, None);
        record::apply_iso(&mut rec, data, "LANGU", "LANGU_ISO", None);
        record::apply(
            &mut rec,
            OPTIONAL_MAP,
            &input.structure("PI_OPT_COMPANYDATA"),
            None,
        );
    }
    rec.insert("CONSUMER".into(), input.str("PI_CONSUMEREN").to_owned());
    let (kunnr, adrnr) = ctx.store.next_numbers().map_err(storage_failure)?;
    rec.insert("MANDT".into(), CLIENT.into());
    rec.insert("KUNNR".into(), kunnr.clone());
    rec.insert("ADRNR".into(), adrnr);
    rec.insert("ERDAT".into(), today());
    rec.insert("ERNAM".into(), USER.into());
    record::derive(&mut rec);
    ctx.luw.create(rec);

    let mut out = Parameters::new();
    out.insert("CUSTOMERNO".into(), kunnr.into());
    Ok(out)
}

/// `BAPI_CUSTOMER_CHANGEFROMDATA1`: changes exactly the fields whose flag in the
/// matching `...X` structure is `X` (personal *or* company data, plus optional
/// data) and returns the customer's data after the change in `PE_*`.
///
/// # Errors
/// `ABAP_RUNTIME_FAILURE` when the state file fails; business errors are in RETURN.
pub(crate) fn change(ctx: &mut Ctx<'_>, input: &Input) -> Result<Parameters, RfcError> {
    let kunnr = alpha_in(input.str("CUSTOMERNO"), 10);
    let Some(before) = visible(ctx, &kunnr)? else {
        return Ok(error(msg::CUSTOMER_NOT_FOUND, &[&kunnr]));
    };
    let (vkorg, vtweg, spart) = (
        input.str("PI_SALESORG"),
        input.str("PI_DISTR_CHAN"),
        input.str("PI_DIVISION"),
    );
    if !vkorg.is_empty() && !vtweg.is_empty() && !spart.is_empty() {
        let in_area = |col: &str, v: &str| before.get(col).is_some_and(|x| x == v);
        if !(in_area("VKORG", vkorg) && in_area("VTWEG", vtweg) && in_area("SPART", spart)) {
            return Ok(error(
                msg::NOT_IN_SALES_AREA,
                &[&kunnr, vkorg, vtweg, spart],
            ));
        }
    }
    let personal_x = input.structure("PI_PERSONALDATAX");
    let company_x = input.structure("PI_COMPANYDATAX");
    if flagged(&personal_x) && flagged(&company_x) {
        return Ok(error(msg::PERSON_OR_COMPANY, &[]));
    }
    let mut after = before.clone();
    if flagged(&personal_x) {
        let data = input.structure("PI_PERSONALDATA");
        record::apply(&mut after, PERSONAL_MAP, &data, Some(&personal_x));
        record::apply_iso(
            &mut after,
            &data,
            "LANGU_P",
            "LANGUP_ISO",
            Some(&personal_x),
        );
    }
    if flagged(&company_x) {
        let data = input.structure("PI_COMPANYDATA");
        record::apply(&mut after, COMPANY_MAP, &data, Some(&company_x));
        record::apply_iso(&mut after, &data, "LANGU", "LANGU_ISO", Some(&company_x));
    }
    for (data, flags) in [
        ("PI_OPT_PERSONALDATA", "PI_OPT_PERSONALDATAX"),
        ("PI_OPT_COMPANYDATA", "PI_OPT_COMPANYDATAX"),
    ] {
        let x = input.structure(flags);
        record::apply(&mut after, OPTIONAL_MAP, &input.structure(data), Some(&x));
    }
    record::derive(&mut after);
    for (col, label) in [("NAME1", "NAME"), ("ORT01", "CITY"), ("LAND1", "COUNTRY")] {
        if after.get(col).is_none_or(String::is_empty) {
            let param = if flagged(&personal_x) {
                "PI_PERSONALDATA"
            } else {
                "PI_COMPANYDATA"
            };
            return Ok(error(msg::REQUIRED_FIELD, &[&format!("{param}-{label}")]));
        }
    }
    ctx.luw.change(&kunnr, &before, after.clone());

    let mut out = Parameters::new();
    out.insert(
        "PE_PERSONALDATA".into(),
        record::to_struct(&after, PERSONAL_MAP),
    );
    out.insert(
        "PE_OPT_PERSONALDATA".into(),
        record::to_struct(&after, OPTIONAL_MAP),
    );
    out.insert(
        "PE_COMPANYDATA".into(),
        record::to_struct(&after, COMPANY_MAP),
    );
    out.insert(
        "PE_OPT_COMPANYDATA".into(),
        record::to_struct(&after, OPTIONAL_MAP),
    );
    Ok(out)
}

/// `BAPI_CUSTOMER_GETDETAIL2`: address, general data and — when `COMPANYCODE` is
/// given — company code data of one customer. An unknown customer is RETURN
/// TYPE `E` F2 502 with empty structures, not an exception.
///
/// # Errors
/// `ABAP_RUNTIME_FAILURE` when the state file fails.
pub(crate) fn get_detail(ctx: &mut Ctx<'_>, input: &Input) -> Result<Parameters, RfcError> {
    let kunnr = alpha_in(input.str("CUSTOMERNO"), 10);
    let Some(rec) = visible(ctx, &kunnr)? else {
        return Ok(error(msg::CUSTOMER_NOT_FOUND, &[&kunnr]));
    };
    let mut out = Parameters::new();
    out.insert(
        "CUSTOMERADDRESS".into(),
        record::to_struct(&rec, ADDRESS_OUT),
    );
    out.insert(
        "CUSTOMERGENERALDETAIL".into(),
        record::to_struct(&rec, GENERAL_OUT),
    );
    let bukrs = input.str("COMPANYCODE");
    if !bukrs.is_empty() {
        if rec.get("BUKRS").is_some_and(|b| b == bukrs) {
            let mut company = Map::new();
            let mut set = |k: &str, v: &str| {
                company.insert(k.to_owned(), v.into());
            };
            let get = |k: &str| rec.get(k).map_or("", String::as_str);
            set("CUSTOMER", &kunnr);
            set("COMP_CODE", bukrs);
            set("CREAT_DATE", get("ERDAT"));
            set("ENTERED_BY", get("ERNAM"));
            set("RECON_ACCT", get("AKONT"));
            set("PMNTTRMS", get("ZTERM"));
            set("SORT_KEY", "001");
            out.insert("CUSTOMERCOMPANYDETAIL".into(), Value::Object(company));
        } else {
            out.insert(
                "RETURN".into(),
                bapi_return("E", msg::NOT_IN_COMPANY_CODE, &[&kunnr, bukrs]),
            );
        }
    }
    Ok(out)
}

/// `BAPI_CUSTOMER_GETLIST`: the customers selected by the `IDRANGE` range table
/// (`CPDONLY = 'X'`: one-time customers only), at most `MAXROWS` (0 = all), with
/// their address data. Nothing found is RETURN TYPE `E` F2 718.
///
/// # Errors
/// `ABAP_RUNTIME_FAILURE` when the state file fails.
pub(crate) fn get_list(ctx: &mut Ctx<'_>, input: &Input) -> Result<Parameters, RfcError> {
    let rows = match ranges::parse(&input.table("IDRANGE"), |s| alpha_in(s, 10)) {
        Ok(rows) => rows,
        Err(RangeError::Sign(v)) => return Ok(error(msg::RANGE_SIGN, &[&v])),
        Err(RangeError::Option(v)) => return Ok(error(msg::RANGE_OPTION, &[&v])),
    };
    let committed = ctx.store.customers().map_err(storage_failure)?;
    let cpd_only = input.str("CPDONLY") == "X";
    let max = usize::try_from(input.int("MAXROWS")).unwrap_or(0);
    let selected: Vec<Record> = ctx
        .luw
        .overlay_all(committed)
        .into_iter()
        .filter(|r| ranges::selects(&rows, r.get("KUNNR").map_or("", String::as_str)))
        .filter(|r| !cpd_only || r.get("XCPDK").is_some_and(|x| x == "X"))
        .take(if max == 0 { usize::MAX } else { max })
        .collect();
    let mut out = Parameters::new();
    if selected.is_empty() {
        out.insert(
            "RETURN".into(),
            bapi_return("E", msg::NO_CUSTOMERS_FOUND, &[]),
        );
    }
    let address: Vec<Value> = selected
        .iter()
        .map(|r| record::to_struct(r, LIST_OUT))
        .collect();
    let special: Vec<Value> = selected
        .iter()
        .map(|r| {
            let mut m = Map::new();
            m.insert(
                "CUSTOMER".into(),
                r.get("KUNNR").cloned().unwrap_or_default().into(),
            );
            m.insert(
                "ACC_1_TIME".into(),
                r.get("XCPDK").cloned().unwrap_or_default().into(),
            );
            Value::Object(m)
        })
        .collect();
    out.insert("ADDRESSDATA".into(), Value::Array(address));
    out.insert("SPECIALDATA".into(), Value::Array(special));
    Ok(out)
}
