//! The OpenAPI schemas of the customer bodies (`CustomerCreate`, `CustomerPatch`),
//! built from the tables the validation uses ([`DATA_FIELDS`], [`AREA_FIELDS`],
//! [`REQUIRED`], [`LANGUAGE_MAX`]): the bodies are read member by member out of a
//! JSON object (`request.rs`), so there is no struct to derive them from, and a
//! limit changed there changes the document.

use utoipa::openapi::schema::{AdditionalProperties, Schema, SchemaType, Type};
use utoipa::openapi::{ObjectBuilder, RefOr};
use utoipa::{PartialSchema, ToSchema};

use super::fields::{AREA_FIELDS, DATA_FIELDS, LANGUAGE_MAX, REQUIRED};

/// What each member is, in the order the document lists them.
const DESCRIPTIONS: &[(&str, &str)] = &[
    ("name", "Name (`KNA1-NAME1`)."),
    ("street", "Street and house number (`KNA1-STRAS`)."),
    ("postal_code", "Postal code (`POSTL_COD1`)."),
    ("city", "City (`KNA1-ORT01`)."),
    ("country", "Country key (`DE`); upper-cased."),
    ("region", "Region key; upper-cased."),
    (
        "language",
        "ISO 639 code (`EN`) or SAP's one-letter key (`E`).",
    ),
    ("currency", "Currency key (`EUR`); upper-cased."),
    ("email", "E-mail address."),
    ("phone", "Telephone (`KNA1-TELF1`)."),
    (
        "reference_customer",
        "Reference customer copied from (`REF_CUSTMR`); default from `[customer_defaults]`.",
    ),
    ("sales_org", "Sales organization."),
    ("distribution_channel", "Distribution channel."),
    ("division", "Division."),
];

/// The most characters a member takes, from the validation's tables.
fn max_length(name: &str) -> Option<usize> {
    if name == "language" {
        return Some(LANGUAGE_MAX);
    }
    DATA_FIELDS
        .iter()
        .find(|f| f.name == name)
        .map(|f| f.max)
        .or_else(|| {
            AREA_FIELDS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, m)| *m)
        })
}

/// Whether a member is a sales-area member (not reference_customer).
fn sales_area(name: &str) -> bool {
    name != "reference_customer" && AREA_FIELDS.iter().any(|(n, _)| *n == name)
}

/// One member: text or a number (taken as its text), `null` where it may be left
/// out, at most its field's length.
fn member(name: &str, description: String, required: bool, min_length: Option<usize>) -> Schema {
    let mut types = vec![Type::String, Type::Number];
    if !required {
        types.push(Type::Null);
    }
    ObjectBuilder::new()
        .schema_type(SchemaType::Array(types))
        .max_length(max_length(name))
        .min_length(min_length)
        .description(Some(description))
        .into()
}

/// The body of `POST /v1/systems/{system}/customers`.
pub(crate) struct CustomerCreate;

impl PartialSchema for CustomerCreate {
    fn schema() -> RefOr<Schema> {
        let mut object = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "Friendly customer fields (numbers are accepted as their text; `null` or \
                 `\"\"` is the same as leaving a field out). Limits are the shorter of the \
                 BAPI field and the customer-master column; longer values are `400` naming \
                 the field. `search_term` cannot be set (SAP derives it) and `customer` is \
                 assigned by SAP: both are `400`.",
            ))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        for name in REQUIRED {
            object = object.required(*name);
        }
        for (name, text) in DESCRIPTIONS {
            let required = REQUIRED.contains(name);
            let description = if sales_area(name) {
                format!("{text} Copy reference; default from `[customer_defaults]`.")
            } else {
                (*text).to_owned()
            };
            object = object.property(*name, member(name, description, required, None));
        }
        Schema::from(object).into()
    }
}

impl ToSchema for CustomerCreate {}

/// The body of `PATCH /v1/systems/{system}/customers/{customer}`.
pub(crate) struct CustomerPatch;

impl PartialSchema for CustomerPatch {
    fn schema() -> RefOr<Schema> {
        let mut object = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "The fields to change (at least one customer field; sales area members \
                 alone change nothing). `reference_customer`, `search_term` and `customer` \
                 are `400`.",
            ))
            .min_properties(Some(1))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        for (name, text) in DESCRIPTIONS {
            if *name == "reference_customer" {
                continue;
            }
            let required = REQUIRED.contains(name);
            let (description, min_length) = if required {
                (format!("{text} Cannot be cleared."), Some(1))
            } else if sales_area(name) {
                (
                    format!("{text} Sales area of the change; default from `[customer_defaults]`."),
                    None,
                )
            } else {
                (format!("{text} `null` or `\"\"` clears it."), None)
            };
            object = object.property(*name, member(name, description, required, min_length));
        }
        Schema::from(object).into()
    }
}

impl ToSchema for CustomerPatch {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every member the validation knows is described, and nothing else.
    #[test]
    fn every_member_is_described() {
        let mut known: Vec<&str> = DATA_FIELDS.iter().map(|f| f.name).collect();
        known.extend(AREA_FIELDS.iter().map(|(n, _)| *n));
        known.push("language");
        known.sort_unstable();
        let mut described: Vec<&str> = DESCRIPTIONS.iter().map(|(n, _)| *n).collect();
        described.sort_unstable();
        assert_eq!(known, described);
    }
}
