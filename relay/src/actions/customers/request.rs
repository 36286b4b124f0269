//! Turning the friendly customer requests into BAPI parameters: the create body
//! (with the configured defaults for reference customer, sales area, language and
//! currency), the change body (values plus their `…X` flags) and the search query.
//!
//! Everything here runs before a call is queued; every problem is a `400` that
//! names the member.

use std::collections::HashMap;

use sapbridge_proto::Parameters;
use serde_json::{Map, Value, json};

use super::SearchStep;
use super::fields::{
    AREA_FIELDS, DATA_FIELDS, REQUIRED, checked, customer_number, language_component, member_text,
};
use crate::actions::ActionError;
use crate::config::CustomerDefaults;

/// The default and largest page of a customer search.
pub(crate) const SEARCH_LIMIT: (usize, usize) = (100, 10_000);

/// Parameters of `BAPI_CUSTOMER_CREATEFROMDATA1` and the friendly data they hold.
#[derive(Debug)]
pub(crate) struct CreateRequest {
    /// The BAPI's parameters.
    pub(crate) parameters: Parameters,
    /// What was sent, after defaults (for the answer).
    pub(crate) sent: Map<String, Value>,
}

/// Parameters of `BAPI_CUSTOMER_CHANGEFROMDATA1`.
#[derive(Debug)]
pub(crate) struct ChangeRequest {
    /// The BAPI's parameters.
    pub(crate) parameters: Parameters,
}

fn unknown_member(name: &str, creating: bool) -> ActionError {
    match name {
        "search_term" => ActionError::BadRequest(
            "search_term: SAP derives the search term from the name; the customer BAPIs cannot set it"
                .into(),
        ),
        "reference_customer" if !creating => ActionError::BadRequest(
            "reference_customer: only used when a customer is created".into(),
        ),
        "customer" => ActionError::BadRequest(
            "customer: SAP assigns the number; it is not part of the body".into(),
        ),
        _ => ActionError::BadRequest(format!("{name}: unknown field")),
    }
}

fn data_field(name: &str) -> Option<&'static super::fields::DataField> {
    DATA_FIELDS.iter().find(|f| f.name == name)
}

fn area_max(name: &str) -> Option<usize> {
    AREA_FIELDS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, m)| *m)
}

/// The create body with defaults applied.
///
/// # Errors
/// 400 for unknown members, wrong types, values longer than SAP allows, and a
/// missing `name`, `city` or `country`.
pub(crate) fn create(
    body: &Map<String, Value>,
    defaults: &CustomerDefaults,
) -> Result<CreateRequest, ActionError> {
    let mut company = Map::new();
    let mut reference = Map::new();
    let mut sent = Map::new();
    for (name, value) in body {
        let known = data_field(name).is_some() || name == "language" || area_max(name).is_some();
        if !known {
            return Err(unknown_member(name, true));
        }
        let Some(value) = member_text(name, value)?.filter(|v| !v.is_empty()) else {
            continue;
        };
        sent.insert(name.clone(), json!(value));
    }
    let defaulted = [
        ("reference_customer", &defaults.reference_customer),
        ("sales_org", &defaults.sales_org),
        ("distribution_channel", &defaults.distribution_channel),
        ("division", &defaults.division),
        ("language", &defaults.language),
        ("currency", &defaults.currency),
    ];
    for (name, default) in defaulted {
        if let Some(value) = default.as_deref().filter(|v| !v.trim().is_empty()) {
            sent.entry(name)
                .or_insert_with(|| json!(value.trim().to_owned()));
        }
    }
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|name| !sent.contains_key(*name))
        .collect();
    if !missing.is_empty() {
        return Err(ActionError::BadRequest(format!(
            "{}: required to create a customer",
            missing.join(", ")
        )));
    }
    for (name, value) in &mut sent {
        let text = value.as_str().unwrap_or_default().to_owned();
        if let Some(field) = data_field(name) {
            let v = checked(name, &text, field.max, field.upper)?;
            company.insert(field.bapi.into(), json!(v));
            *value = json!(v);
        } else if name == "language" {
            let (component, v) = language_component(&text)?;
            company.insert(component.into(), json!(v));
            *value = json!(v);
        } else if name == "reference_customer" {
            let v = customer_number(&text).map_err(|_| {
                ActionError::BadRequest(format!(
                    "reference_customer: {text:?} is not a customer number"
                ))
            })?;
            reference.insert("REF_CUSTMR".into(), json!(v));
            *value = json!(v);
        } else if let Some(max) = area_max(name) {
            let v = checked(name, &text, max, true)?;
            reference.insert(area_component(name).into(), json!(v));
            *value = json!(v);
        }
    }
    let mut parameters = Parameters::new();
    parameters.insert("PI_COMPANYDATA".into(), Value::Object(company));
    parameters.insert("PI_COPYREFERENCE".into(), Value::Object(reference));
    Ok(CreateRequest { parameters, sent })
}

/// The `BAPIKNA102` component (or `PI_…` parameter suffix) of a sales-area member.
fn area_component(name: &str) -> &'static str {
    match name {
        "sales_org" => "SALESORG",
        "distribution_channel" => "DISTR_CHAN",
        "division" => "DIVISION",
        _ => "REF_CUSTMR",
    }
}

/// The change body: the given fields with their flags; `null` clears a field.
///
/// # Errors
/// 400 for unknown members, wrong types, values longer than SAP allows, clearing
/// `name`, `city` or `country`, and a body that changes nothing.
pub(crate) fn change(
    customer: &str,
    body: &Map<String, Value>,
    defaults: &CustomerDefaults,
) -> Result<ChangeRequest, ActionError> {
    let mut company = Map::new();
    let mut flags = Map::new();
    let mut area: HashMap<&str, String> = HashMap::new();
    let x = || json!("X");
    for (name, value) in body {
        let value = member_text(name, value)?;
        if let Some(field) = data_field(name) {
            let text = value.unwrap_or_default();
            if text.is_empty() && REQUIRED.contains(&field.name) {
                return Err(ActionError::BadRequest(format!(
                    "{name}: cannot be cleared; SAP requires it"
                )));
            }
            let v = checked(name, &text, field.max, field.upper)?;
            company.insert(field.bapi.into(), json!(v));
            flags.insert(field.bapi.into(), x());
            if field.bapi == "STREET" {
                // The friendly street holds the house number: clear SAP's own.
                company.insert("HOUSE_NO".into(), json!(""));
                flags.insert("HOUSE_NO".into(), x());
            }
        } else if name == "language" {
            let (component, v) = language_component(&value.unwrap_or_default())?;
            company.insert(component.into(), json!(v));
            flags.insert(component.into(), x());
        } else if let Some(max) = area_max(name).filter(|_| name != "reference_customer") {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                area.insert(area_component(name), checked(name, &v, max, true)?);
            }
        } else {
            return Err(unknown_member(name, false));
        }
    }
    if flags.is_empty() {
        return Err(ActionError::BadRequest(
            "the body changes nothing: give at least one customer field".into(),
        ));
    }
    let mut parameters = Parameters::new();
    parameters.insert("CUSTOMERNO".into(), json!(customer));
    let defaulted = [
        ("SALESORG", "PI_SALESORG", &defaults.sales_org),
        (
            "DISTR_CHAN",
            "PI_DISTR_CHAN",
            &defaults.distribution_channel,
        ),
        ("DIVISION", "PI_DIVISION", &defaults.division),
    ];
    let sales_area: Vec<(&str, String)> = defaulted
        .iter()
        .filter_map(|(component, parameter, default)| {
            area.get(component)
                .cloned()
                .or_else(|| default.as_ref().map(|d| d.trim().to_uppercase()))
                .filter(|v| !v.is_empty())
                .map(|v| (*parameter, v))
        })
        .collect();
    // SAP checks the sales area only when all of it is given.
    if sales_area.len() == defaulted.len() {
        for (parameter, value) in sales_area {
            parameters.insert(parameter.into(), json!(value));
        }
    }
    parameters.insert("PI_COMPANYDATA".into(), Value::Object(company));
    parameters.insert("PI_COMPANYDATAX".into(), Value::Object(flags));
    Ok(ChangeRequest { parameters })
}

/// The search query: `name`, `city`, `country` (`*` wildcards, case-insensitive)
/// and `limit`.
///
/// # Errors
/// 400 for unknown members and a `limit` out of range.
pub(crate) fn search(query: &HashMap<String, String>) -> Result<SearchStep, ActionError> {
    let mut step = SearchStep {
        name: None,
        city: None,
        country: None,
        limit: SEARCH_LIMIT.0,
    };
    for (key, value) in query {
        let value = value.trim();
        let filter = (!value.is_empty()).then(|| value.to_owned());
        match key.as_str() {
            "name" => step.name = filter,
            "city" => step.city = filter,
            "country" => step.country = filter,
            "limit" => {
                step.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|l| (1..=SEARCH_LIMIT.1).contains(l))
                    .ok_or_else(|| {
                        ActionError::BadRequest(format!(
                            "limit: must be a number from 1 to {}",
                            SEARCH_LIMIT.1
                        ))
                    })?;
            }
            other => {
                return Err(ActionError::BadRequest(format!(
                    "{other}: unknown query parameter (name, city, country, limit)"
                )));
            }
        }
    }
    Ok(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    fn defaults() -> CustomerDefaults {
        CustomerDefaults {
            reference_customer: Some("1000".into()),
            sales_org: Some("1000".into()),
            distribution_channel: Some("10".into()),
            division: Some("00".into()),
            language: Some("EN".into()),
            currency: Some("EUR".into()),
        }
    }

    #[test]
    fn create_applies_defaults_and_checks() {
        let body = object(json!({"name": "ACME", "city": "Berlin", "country": "de",
            "postal_code": 10115}));
        let request = create(&body, &defaults()).unwrap();
        let company = &request.parameters["PI_COMPANYDATA"];
        assert_eq!(company["COUNTRY"], "DE");
        assert_eq!(company["LANGU_ISO"], "EN");
        assert_eq!(company["POSTL_COD1"], "10115");
        let reference = &request.parameters["PI_COPYREFERENCE"];
        assert_eq!(reference["REF_CUSTMR"], "0000001000");
        assert_eq!(reference["DISTR_CHAN"], "10");

        let long = object(json!({"name": "x".repeat(40), "city": "B", "country": "DE"}));
        let err = create(&long, &defaults()).unwrap_err();
        assert!(matches!(err, ActionError::BadRequest(d) if d.starts_with("name:")));
        let missing = object(json!({"name": "ACME"}));
        let err = create(&missing, &defaults()).unwrap_err();
        assert!(matches!(err, ActionError::BadRequest(d) if d.starts_with("city, country")));
        let unknown = object(json!({"name": "A", "city": "B", "country": "DE", "colour": "red"}));
        assert!(create(&unknown, &defaults()).is_err());
    }

    #[test]
    fn change_flags_only_given_fields() {
        let body = object(json!({"city": "Heidelberg", "email": null}));
        let request = change("0000001000", &body, &defaults()).unwrap();
        let flags = request.parameters["PI_COMPANYDATAX"].as_object().unwrap();
        assert_eq!(flags.len(), 2);
        assert_eq!(flags["CITY"], "X");
        assert_eq!(flags["E_MAIL"], "X");
        assert_eq!(request.parameters["PI_COMPANYDATA"]["E_MAIL"], "");
        assert_eq!(request.parameters["PI_SALESORG"], "1000");
        let cleared = object(json!({"name": null}));
        assert!(change("0000001000", &cleared, &defaults()).is_err());
        assert!(change("0000001000", &Map::new(), &defaults()).is_err());
        let street = object(json!({"street": "Ring 1"}));
        let request = change("1", &street, &CustomerDefaults::default()).unwrap();
        assert_eq!(request.parameters["PI_COMPANYDATAX"]["HOUSE_NO"], "X");
        assert!(request.parameters.get("PI_SALESORG").is_none());
    }

    #[test]
    fn search_queries_are_checked() {
        let mut query = HashMap::new();
        query.insert("name".to_owned(), "Beck*".to_owned());
        query.insert("limit".to_owned(), "5".to_owned());
        let step = search(&query).unwrap();
        assert_eq!((step.name.as_deref(), step.limit), (Some("Beck*"), 5));
        query.insert("limit".to_owned(), "0".to_owned());
        assert!(search(&query).is_err());
        query.remove("limit");
        query.insert("colour".to_owned(), "red".to_owned());
        assert!(search(&query).is_err());
    }
}
