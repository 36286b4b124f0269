//! A customer master record as the simulator stores it: the `KNA1` columns plus
//! the few values SAP keeps elsewhere (e-mail in `ADR6`, currency and sales area in
//! `KNVV`, company code data in `KNB1`, the long street of `ADRC`), and the
//! mappings between the record and the BAPI structures.
//!
//! Mapping rules (documented behaviour of the simulator):
//! - `STRAS` is `STREET HOUSE_NO`, cut to 35 characters, as CAM derives it.
//! - A person's `NAME1` is `FIRSTNAME LASTNAME`; a company's is `NAME`.
//! - `SORTL` (search term) defaults to the first 10 characters of `NAME1` in upper
//!   case; `MCOD1..3` are the upper-case name 1, name 2 and city.
//! - ISO fields (`COUNTRYISO`, `LANGU_ISO`, `CURRENCY_ISO`) are used when the SAP
//!   field is empty; on output they are filled from the SAP codes.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::types::FieldDef as F;
use super::values::{field, truncate};

/// One customer: column name → value (CHAR values right-trimmed).
pub(crate) type Record = BTreeMap<String, String>;

/// Columns the simulator stores besides the `KNA1` fields.
pub(crate) static EXT_FIELDS: &[F] = &[
    F::c("SMTP_ADDR", 241, "E-Mail Address"),
    F::c("WAERS", 5, "Currency").ddic("CUKY"),
    F::c("VKORG", 4, "Sales Organization"),
    F::c("VTWEG", 2, "Distribution Channel"),
    F::c("SPART", 2, "Division"),
    F::c("BUKRS", 4, "Company Code"),
    F::c("AKONT", 10, "Reconciliation Account"),
    F::c("ZTERM", 4, "Terms of Payment Key"),
    F::c("VSBED", 2, "Shipping Conditions"),
    F::c("VWERK", 4, "Delivering Plant"),
    F::c("KZTLF", 1, "Partial delivery per item"),
    F::c("KKBER", 4, "Credit control area"),
    F::c("TXJCD", 15, "Tax Jurisdiction"),
    F::c("STREET", 60, "Street"),
    F::c("HOUSE_NUM1", 10, "House Number"),
    F::c("NAME_FIRST", 40, "First name"),
    F::c("NAME_LAST", 40, "Last name"),
    F::d("DATE_BIRTH", "Date of Birth"),
    F::c("PERSON", 1, "Customer is a person"),
    F::c("CONSUMER", 1, "Customer is a consumer"),
];

/// `BAPIKNA106` field → record column.
pub(crate) const COMPANY_MAP: &[(&str, &str)] = &[
    ("TITLE", "ANRED"),
    ("NAME", "NAME1"),
    ("NAME_2", "NAME2"),
    ("NAME_3", "NAME3"),
    ("NAME_4", "NAME4"),
    ("CITY", "ORT01"),
    ("DISTRICT", "ORT02"),
    ("POSTL_COD1", "PSTLZ"),
    ("POSTL_COD2", "PSTL2"),
    ("PO_BOX", "PFACH"),
    ("STREET", "STREET"),
    ("HOUSE_NO", "HOUSE_NUM1"),
    ("COUNTRY", "LAND1"),
    ("REGION", "REGIO"),
    ("TEL1_NUMBR", "TELF1"),
    ("FAX_NUMBER", "TELFX"),
    ("E_MAIL", "SMTP_ADDR"),
    ("LANGU", "SPRAS"),
    ("CURRENCY", "WAERS"),
];

/// `BAPIKNA101_1` field → record column.
pub(crate) const PERSONAL_MAP: &[(&str, &str)] = &[
    ("TITLE_P", "ANRED"),
    ("FIRSTNAME", "NAME_FIRST"),
    ("LASTNAME", "NAME_LAST"),
    ("DATE_BIRTH", "DATE_BIRTH"),
    ("CITY", "ORT01"),
    ("DISTRICT", "ORT02"),
    ("POSTL_COD1", "PSTLZ"),
    ("POSTL_COD2", "PSTL2"),
    ("PO_BOX", "PFACH"),
    ("STREET", "STREET"),
    ("HOUSE_NO", "HOUSE_NUM1"),
    ("COUNTRY", "LAND1"),
    ("REGION", "REGIO"),
    ("TEL1_NUMBR", "TELF1"),
    ("FAX_NUMBER", "TELFX"),
    ("E_MAIL", "SMTP_ADDR"),
    ("LANGU_P", "SPRAS"),
    ("CURRENCY", "WAERS"),
];

/// `BAPIKNA105` field → record column.
pub(crate) const OPTIONAL_MAP: &[(&str, &str)] = &[
    ("TRANSPZONE", "LZONE"),
    ("CONTROL_ACCOUNT", "AKONT"),
    ("PMNTTRMS", "ZTERM"),
    ("SHIP_COND", "VSBED"),
    ("DELYG_PLNT", "VWERK"),
    ("PART_DLV", "KZTLF"),
    ("C_CTR_AREA", "KKBER"),
    ("TAXJURCODE", "TXJCD"),
];

/// `BAPICUSTOMER_04` field → record column.
pub(crate) const ADDRESS_OUT: &[(&str, &str)] = &[
    ("CUSTOMER", "KUNNR"),
    ("FORM_OF_AD", "ANRED"),
    ("NAME", "NAME1"),
    ("NAME_2", "NAME2"),
    ("NAME_3", "NAME3"),
    ("NAME_4", "NAME4"),
    ("STREET", "STRAS"),
    ("PO_BOX", "PFACH"),
    ("CITY", "ORT01"),
    ("DISTRICT", "ORT02"),
    ("POSTL_CODE", "PSTLZ"),
    ("PO_BOX_PCD", "PSTL2"),
    ("REGION", "REGIO"),
    ("COUNTRY", "LAND1"),
    ("LANGU", "SPRAS"),
    ("TELEPHONE", "TELF1"),
    ("TELEPHONE2", "TELF2"),
    ("FAX_NUMBER", "TELFX"),
    ("TELEX_NO", "TELX1"),
    ("INTERNET", "SMTP_ADDR"),
    ("CURRENCY", "WAERS"),
    ("ADDRESS", "ADRNR"),
];

/// `BAPICUSTOMER_KNA1` field → record column.
pub(crate) const GENERAL_OUT: &[(&str, &str)] = &[
    ("ACC_1_TIME", "XCPDK"),
    ("ORDR_BLK_G", "AUFSD"),
    ("EXPR_STAT", "BAHNE"),
    ("TRAIN_STAT", "BAHNS"),
    ("LOC_NO_1", "BBBNR"),
    ("LOC_NO_2", "BBSNR"),
    ("AUTH_GROUP", "BEGRU"),
    ("INDUSTRY", "BRSCH"),
    ("CHK_DIGIT", "BUBKZ"),
    ("DATA_LINE", "DATLT"),
    ("CREAT_DATE", "ERDAT"),
    ("ENTERED_BY", "ERNAM"),
    ("UNLOAD_PT", "EXABL"),
    ("BILL_BLK_G", "FAKSD"),
    ("FISK_ADDR", "FISKN"),
    ("WORK_TIME", "KNAZK"),
    ("ALT_PAYER", "KNRZA"),
    ("GROUPKEY", "KONZS"),
    ("ACCNT_GRP", "KTOKD"),
    ("CLASSIFIC", "KUKLA"),
    ("VENDOR_NO", "LIFNR"),
    ("DELI_BLK_G", "LIFSD"),
    ("LOC_CODE", "LOCCO"),
    ("DEL_FLAG_G", "LOEVM"),
    ("NIELSEN_ID", "NIELS"),
    ("COUNTY_CDE", "COUNC"),
    ("REG_MARKET", "RPMKR"),
    ("PSTG_BLK_G", "SPERR"),
    ("TAX_NO_1", "STCD1"),
    ("TAX_NO_2", "STCD2"),
    ("EQUAL_TAX", "STKZA"),
    ("SLS_PUR_TX", "STKZU"),
    ("TELEBOX", "TELBX"),
    ("TRANSPZONE", "LZONE"),
    ("VAT_REG_NO", "STCEG"),
];

/// `BAPICUSTOMER_ADDRESSDATA` field → record column.
pub(crate) const LIST_OUT: &[(&str, &str)] = &[
    ("CUSTOMER", "KUNNR"),
    ("COUNTRY", "LAND1"),
    ("NAME", "NAME1"),
    ("NAME_2", "NAME2"),
    ("CITY", "ORT01"),
    ("POSTL_CODE", "PSTLZ"),
    ("REGION", "REGIO"),
    ("STREET", "STRAS"),
    ("PO_BOX", "PFACH"),
    ("TEL1_NUMBR", "TELF1"),
    ("FAX_NUMBER", "TELFX"),
    ("LANGU", "SPRAS"),
    ("SORT1", "SORTL"),
    ("ADDRESS", "ADRNR"),
];

/// The ALPHA conversion exit on input: a purely numeric value is right-aligned and
/// zero-padded to `len` (`1000` → `0000001000`); anything else stays as it is.
pub(crate) fn alpha_in(value: &str, len: u32) -> String {
    let t = value.trim();
    if !t.is_empty() && t.len() <= len as usize && t.bytes().all(|b| b.is_ascii_digit()) {
        format!("{t:0>width$}", width = len as usize)
    } else {
        t.to_owned()
    }
}

/// SAP's one-letter language key for an ISO 639 code (and back, see [`lang_iso`]).
const LANGUAGES: &[(&str, &str)] = &[
    ("D", "DE"),
    ("E", "EN"),
    ("F", "FR"),
    ("I", "IT"),
    ("S", "ES"),
    ("N", "NL"),
    ("P", "PT"),
];

/// The SAP language key for an ISO 639 code (`DE` → `D`).
pub(crate) fn lang_from_iso(iso: &str) -> Option<&'static str> {
    LANGUAGES
        .iter()
        .find(|(_, i)| i.eq_ignore_ascii_case(iso))
        .map(|(k, _)| *k)
}

/// The ISO 639 code of an SAP language key (`D` → `DE`).
pub(crate) fn lang_iso(key: &str) -> &'static str {
    LANGUAGES
        .iter()
        .find(|(k, _)| *k == key)
        .map_or("", |(_, i)| *i)
}

/// Copies the non-empty fields of a BAPI structure into the record (create), or —
/// with change flags — exactly the fields whose flag is `X` (change; an empty value
/// then clears the column).
pub(crate) fn apply(
    rec: &mut Record,
    map: &[(&str, &str)],
    data: &Map<String, Value>,
    flags: Option<&Map<String, Value>>,
) {
    for (bapi, col) in map {
        let value = field(data, bapi);
        let take = match flags {
            None => !value.is_empty() && value != "00000000",
            Some(x) => field(x, bapi) == "X",
        };
        if take {
            rec.insert((*col).to_owned(), value.to_owned());
        }
    }
}

/// Applies the ISO fields of an address structure where the SAP field is empty
/// (or, with flags, where the ISO field's flag is set).
pub(crate) fn apply_iso(
    rec: &mut Record,
    data: &Map<String, Value>,
    lang_field: &str,
    lang_iso_field: &str,
    flags: Option<&Map<String, Value>>,
) {
    let wanted = |sap: &str, iso: &str| match flags {
        None => field(data, sap).is_empty() && !field(data, iso).is_empty(),
        Some(x) => field(x, iso) == "X" && field(x, sap) != "X",
    };
    if wanted("COUNTRY", "COUNTRYISO") {
        rec.insert("LAND1".into(), field(data, "COUNTRYISO").to_uppercase());
    }
    if wanted("CURRENCY", "CURRENCY_ISO") {
        rec.insert("WAERS".into(), field(data, "CURRENCY_ISO").to_uppercase());
    }
    let lang = if wanted(lang_field, lang_iso_field) {
        lang_from_iso(field(data, lang_iso_field))
    } else {
        None
    };
    if let Some(k) = lang {
        rec.insert("SPRAS".into(), k.to_owned());
    }
}

/// Recomputes the derived columns (`NAME1` of a person, `STRAS`, `SORTL`,
/// `MCOD1..3`).
pub(crate) fn derive(rec: &mut Record) {
    let get = |rec: &Record, k: &str| rec.get(k).cloned().unwrap_or_default();
    if get(rec, "PERSON") == "X" {
        let name = format!("{} {}", get(rec, "NAME_FIRST"), get(rec, "NAME_LAST"));
        rec.insert("NAME1".into(), truncate(name.trim(), 35).to_owned());
    }
    let street = format!("{} {}", get(rec, "STREET"), get(rec, "HOUSE_NUM1"));
    rec.insert(
        "STRAS".into(),
        truncate(street.trim(), 35).trim_end().to_owned(),
    );
    let name1 = get(rec, "NAME1");
    if get(rec, "SORTL").is_empty() {
        rec.insert(
            "SORTL".into(),
            truncate(&name1.to_uppercase(), 10).trim_end().to_owned(),
        );
    }
    rec.insert(
        "MCOD1".into(),
        truncate(&name1.to_uppercase(), 25).trim_end().to_owned(),
    );
    let name2 = get(rec, "NAME2").to_uppercase();
    rec.insert("MCOD2".into(), truncate(&name2, 25).trim_end().to_owned());
    let city = get(rec, "ORT01").to_uppercase();
    rec.insert("MCOD3".into(), truncate(&city, 25).trim_end().to_owned());
}

/// Builds a BAPI structure from the record through a field map, adding the ISO
/// fields the structure has.
pub(crate) fn to_struct(rec: &Record, map: &[(&str, &str)]) -> Value {
    let mut m = Map::new();
    for (bapi, col) in map {
        m.insert(
            (*bapi).to_owned(),
            rec.get(*col).cloned().unwrap_or_default().into(),
        );
    }
    let land = rec.get("LAND1").cloned().unwrap_or_default();
    let spras = rec.get("SPRAS").cloned().unwrap_or_default();
    let waers = rec.get("WAERS").cloned().unwrap_or_default();
    m.insert("COUNTRYISO".into(), land.into());
    m.insert("LANGU_ISO".into(), lang_iso(&spras).into());
    m.insert("LANGUP_ISO".into(), lang_iso(&spras).into());
    m.insert("CURRENCY_ISO".into(), waers.into());
    Value::Object(m)
}
