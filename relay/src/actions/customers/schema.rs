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

/// A customer as the relay answers it. Read and change answer the address, language, currency, e-mail and phone; a create also echoes the reference customer and sales area; search rows have `search_term` and no currency or e-mail.
// For the document only: the answers are maps (`fields::from_*`), whose members a
// unit test holds to these.
#[derive(utoipa::ToSchema)]
#[schema(as = Customer)]
#[allow(dead_code, reason = "the schema of what fields::from_* write")]
pub(crate) struct CustomerAnswer {
    /// The 10-digit customer number (`KUNNR`).
    #[schema(example = "0000100001")]
    customer: String,
    /// Name (`KNA1-NAME1`).
    #[schema(nullable = false)]
    name: Option<String>,
    /// Street and house number (`KNA1-STRAS`).
    #[schema(nullable = false)]
    street: Option<String>,
    /// Postal code (`POSTL_COD1`).
    #[schema(nullable = false)]
    postal_code: Option<String>,
    /// City (`KNA1-ORT01`).
    #[schema(nullable = false)]
    city: Option<String>,
    /// Country key (`DE`); upper-cased.
    #[schema(nullable = false)]
    country: Option<String>,
    /// Region key; upper-cased.
    #[schema(nullable = false)]
    region: Option<String>,
    /// ISO 639 code (`EN`) or SAP's one-letter key (`E`).
    #[schema(nullable = false)]
    language: Option<String>,
    /// Currency key (`EUR`); upper-cased.
    #[schema(nullable = false)]
    currency: Option<String>,
    /// E-mail address.
    #[schema(nullable = false)]
    email: Option<String>,
    /// Telephone (`KNA1-TELF1`).
    #[schema(nullable = false)]
    phone: Option<String>,
    /// `KNA1-SORTL`, derived by SAP (search results only).
    #[schema(nullable = false)]
    search_term: Option<String>,
    /// Create only.
    #[schema(nullable = false)]
    reference_customer: Option<String>,
    /// Sales organization. Create only.
    #[schema(nullable = false)]
    sales_org: Option<String>,
    /// Distribution channel. Create only.
    #[schema(nullable = false)]
    distribution_channel: Option<String>,
    /// Division. Create only.
    #[schema(nullable = false)]
    division: Option<String>,
}

// The answer of a customer search (`{"customers": [...]}`), for the document.
#[derive(utoipa::ToSchema)]
#[schema(as = CustomerList)]
#[allow(dead_code, reason = "the schema of what the search writes")]
pub(crate) struct CustomerListAnswer {
    customers: Vec<CustomerAnswer>,
}

#[cfg(test)]
mod tests {
    /// Every member the customer answers have is a property of `Customer`,
    /// with `customer` in each.
    #[test]
    fn the_customer_schema_is_what_the_answers_have() {
        use super::super::fields;
        let schema = serde_json::to_value(CustomerAnswer::schema()).expect("schema");
        let row = serde_json::json!({"CUSTOMER": "1", "NAME": "N"});
        let mut sent = serde_json::Map::new();
        sent.insert("name".into(), serde_json::json!("N"));
        let answers = [
            fields::from_address(&row),
            fields::from_list_row(&row),
            fields::from_company_data("1", &row),
            fields::from_sent("1", &sent),
        ];
        for answer in answers {
            let members = answer.as_object().expect("an object");
            assert!(members.contains_key("customer"), "{answer}");
            for member in members.keys() {
                assert!(
                    schema["properties"].get(member).is_some(),
                    "Customer lacks {member}"
                );
            }
        }
    }

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
