//! The friendly customer JSON and its mapping onto the customer BAPIs' company
//! data (`BAPIKNA106`, the `…X` flags of `BAPIKNA106X`) and back from their
//! answers (`BAPICUSTOMER_04` of `GETDETAIL2`, `BAPICUSTOMER_ADDRESSDATA` of
//! `GETLIST`, `BAPIKNA106` of `CHANGEFROMDATA1`).
//!
//! Lengths are checked before anything is queued, against the shorter of the BAPI
//! field and the customer master column it lands in, so nothing is cut silently:
//! `name` 35 (`KNA1-NAME1`; `BAPIKNA106-NAME` takes 40), `street` 35 (`KNA1-STRAS`;
//! the BAPI takes 60), `city` 35 (`KNA1-ORT01`), `postal_code` 10, `country` 3,
//! `region` 3, `email` 241, `phone` 16 (`KNA1-TELF1`; the BAPI takes 30),
//! `currency` 5, `language` an ISO 639 code (`EN`) or SAP's one-letter key (`E`).
//! `search_term` (`KNA1-SORTL`) is derived by SAP from the name; the customer BAPIs
//! cannot set it, so it is only ever an output.

use serde_json::{Map, Value, json};

use crate::actions::ActionError;
use crate::actions::outcome::text;

/// One friendly data field and its `BAPIKNA106` component.
pub(crate) struct DataField {
    /// The JSON member.
    pub(crate) name: &'static str,
    /// The `BAPIKNA106` component.
    pub(crate) bapi: &'static str,
    /// The most characters accepted.
    pub(crate) max: usize,
    /// Whether SAP keeps the value in upper case (country, region, currency).
    pub(crate) upper: bool,
}

const fn data(name: &'static str, bapi: &'static str, max: usize, upper: bool) -> DataField {
    DataField {
        name,
        bapi,
        max,
        upper,
    }
}

/// The customer data fields, in answer order (`language` is handled apart).
pub(crate) const DATA_FIELDS: &[DataField] = &[
    data("name", "NAME", 35, false),
    data("street", "STREET", 35, false),
    data("postal_code", "POSTL_COD1", 10, false),
    data("city", "CITY", 35, false),
    data("country", "COUNTRY", 3, true),
    data("region", "REGION", 3, true),
    data("currency", "CURRENCY", 5, true),
    data("email", "E_MAIL", 241, false),
    data("phone", "TEL1_NUMBR", 16, false),
];

/// Data fields a change may not clear (SAP requires them).
pub(crate) const REQUIRED: &[&str] = &["name", "city", "country"];

/// The longest `language`: an ISO 639 code (`EN`); SAP's own key is one letter.
pub(crate) const LANGUAGE_MAX: usize = 2;

/// The sales-area and reference members (`PI_COPYREFERENCE` / `PI_SALESORG`…).
pub(crate) const AREA_FIELDS: &[(&str, usize)] = &[
    ("reference_customer", 10),
    ("sales_org", 4),
    ("distribution_channel", 2),
    ("division", 2),
];

/// The value of one member as sent: a string (numbers are taken as their text),
/// `None` for JSON `null`.
///
/// # Errors
/// 400 for any other JSON type.
pub(crate) fn member_text(name: &str, value: &Value) -> Result<Option<String>, ActionError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.trim().to_owned())),
        Value::Number(n) => Ok(Some(n.to_string())),
        _ => Err(ActionError::BadRequest(format!(
            "{name}: must be a string, got {value}"
        ))),
    }
}

/// Checks a value's length and case; returns it as SAP should get it.
///
/// # Errors
/// 400 naming the member when it is longer than `max` characters.
pub(crate) fn checked(
    name: &str,
    value: &str,
    max: usize,
    upper: bool,
) -> Result<String, ActionError> {
    let count = value.chars().count();
    if count > max {
        return Err(ActionError::BadRequest(format!(
            "{name}: {count} characters exceed the {max} SAP allows"
        )));
    }
    Ok(if upper {
        value.to_uppercase()
    } else {
        value.to_owned()
    })
}

/// The `BAPIKNA106` language members for a friendly language: an ISO code goes to
/// `LANGU_ISO`, a one-letter key to `LANGU`.
///
/// # Errors
/// 400 when it is neither.
pub(crate) fn language_component(value: &str) -> Result<(&'static str, String), ActionError> {
    let upper = value.to_uppercase();
    match upper.chars().count() {
        0 | 1 => Ok(("LANGU", upper)),
        LANGUAGE_MAX => Ok(("LANGU_ISO", upper)),
        _ => Err(ActionError::BadRequest(format!(
            "language: {value:?} is neither an ISO 639 code (EN) nor an SAP language key (E)"
        ))),
    }
}

/// A customer number from a path or a body, in SAP's internal form: the ALPHA
/// conversion pads a purely numeric value to 10 digits (`1000` → `0000001000`);
/// other values are kept (upper case).
///
/// # Errors
/// 400 when it is empty or longer than 10 characters.
pub(crate) fn customer_number(raw: &str) -> Result<String, ActionError> {
    let value = raw.trim().to_uppercase();
    let valid = !value.is_empty()
        && value.chars().count() <= 10
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(ActionError::BadRequest(format!(
            "{raw:?} is not a customer number (up to 10 letters or digits)"
        )));
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        Ok(format!("{value:0>10}"))
    } else {
        Ok(value)
    }
}

/// The ISO language of a structure, or its SAP key when it has none.
fn language(row: &Value, iso: &str, key: &str) -> String {
    match text(row, iso) {
        "" => text(row, key).to_owned(),
        code => code.to_owned(),
    }
}

/// The friendly customer from `GETDETAIL2`'s `CUSTOMERADDRESS` (`BAPICUSTOMER_04`).
pub(crate) fn from_address(address: &Value) -> Value {
    json!({
        "customer": text(address, "CUSTOMER"),
        "name": text(address, "NAME"),
        "street": text(address, "STREET"),
        "postal_code": text(address, "POSTL_CODE"),
        "city": text(address, "CITY"),
        "country": text(address, "COUNTRY"),
        "region": text(address, "REGION"),
        "language": language(address, "LANGU_ISO", "LANGU"),
        "currency": text(address, "CURRENCY"),
        "email": text(address, "INTERNET"),
        "phone": text(address, "TELEPHONE"),
    })
}

/// The friendly customer from `GETLIST`'s `ADDRESSDATA` (`BAPICUSTOMER_ADDRESSDATA`).
pub(crate) fn from_list_row(row: &Value) -> Value {
    json!({
        "customer": text(row, "CUSTOMER"),
        "name": text(row, "NAME"),
        "street": text(row, "STREET"),
        "postal_code": text(row, "POSTL_CODE"),
        "city": text(row, "CITY"),
        "country": text(row, "COUNTRY"),
        "region": text(row, "REGION"),
        "language": language(row, "LANGU_ISO", "LANGU"),
        "phone": text(row, "TEL1_NUMBR"),
        "search_term": text(row, "SORT1"),
    })
}

/// The friendly customer from `CHANGEFROMDATA1`'s `PE_COMPANYDATA` (`BAPIKNA106`):
/// street and house number are one `street`, as SAP shows them.
pub(crate) fn from_company_data(customer: &str, data: &Value) -> Value {
    let street = format!("{} {}", text(data, "STREET"), text(data, "HOUSE_NO"));
    json!({
        "customer": customer,
        "name": text(data, "NAME"),
        "street": street.trim(),
        "postal_code": text(data, "POSTL_COD1"),
        "city": text(data, "CITY"),
        "country": text(data, "COUNTRY"),
        "region": text(data, "REGION"),
        "language": language(data, "LANGU_ISO", "LANGU"),
        "currency": text(data, "CURRENCY"),
        "email": text(data, "E_MAIL"),
        "phone": text(data, "TEL1_NUMBR"),
    })
}

/// The friendly customer a create echoes: what was sent (after defaults), `""`
/// for the rest.
pub(crate) fn from_sent(customer: &str, sent: &Map<String, Value>) -> Value {
    let mut body = Map::new();
    body.insert("customer".into(), json!(customer));
    for name in DATA_FIELDS
        .iter()
        .map(|f| f.name)
        .chain(["language"])
        .chain(AREA_FIELDS.iter().map(|(n, _)| *n))
    {
        let value = sent.get(name).cloned().unwrap_or_else(|| json!(""));
        body.insert(name.to_owned(), value);
    }
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_numbers_take_the_alpha_form() {
        assert_eq!(customer_number("1000").unwrap(), "0000001000");
        assert_eq!(customer_number(" 0000001000 ").unwrap(), "0000001000");
        assert_eq!(customer_number("cpd-01").unwrap(), "CPD-01");
        assert!(customer_number("").is_err());
        assert!(customer_number("12345678901").is_err());
        assert!(customer_number("a b").is_err());
    }

    #[test]
    fn lengths_and_languages_are_checked() {
        assert!(checked("name", &"x".repeat(35), 35, false).is_ok());
        let err = checked("name", &"x".repeat(40), 35, false).unwrap_err();
        assert!(matches!(err, ActionError::BadRequest(d) if d.starts_with("name:")));
        assert_eq!(checked("country", "de", 3, true).unwrap(), "DE");
        assert_eq!(
            language_component("en").unwrap(),
            ("LANGU_ISO", "EN".into())
        );
        assert_eq!(language_component("E").unwrap(), ("LANGU", "E".into()));
        assert!(language_component("english").is_err());
        assert!(member_text("name", &json!(["x"])).is_err());
        assert_eq!(
            member_text("postal_code", &json!(69190)).unwrap().unwrap(),
            "69190"
        );
    }

    #[test]
    fn answers_are_friendly() {
        let address = json!({"CUSTOMER": "0000001000", "NAME": "Ref", "LANGU": "D",
            "LANGU_ISO": "DE", "INTERNET": "a@b.c", "TELEPHONE": "1"});
        let friendly = from_address(&address);
        assert_eq!(friendly["language"], "DE");
        assert_eq!(friendly["email"], "a@b.c");
        let data = json!({"STREET": "Allee", "HOUSE_NO": "16", "LANGU": "E"});
        let friendly = from_company_data("0000000001", &data);
        assert_eq!(friendly["street"], "Allee 16");
        assert_eq!(friendly["language"], "E");
    }
}
