//! A function module's interface as the relay keeps it: built from
//! `RFC_GET_FUNCTION_INTERFACE`'s `PARAMS` (asked with `NONE_UNICODE_LENGTH = 'X'`,
//! so lengths of character-like types are in characters) and, for structure and
//! table parameters, `DDIF_FIELDINFO_GET`'s `DFIES_TAB` of their type; rendered as
//! the JSON of `GET /v1/systems/{system}/functions/{function}`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::actions::outcome::text;

/// Which way a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Direction {
    /// IMPORTING: the caller sends it.
    Importing,
    /// EXPORTING: SAP answers it.
    Exporting,
    /// CHANGING: both.
    Changing,
    /// TABLES: both, a table.
    Tables,
}

impl Direction {
    /// Whether the caller may send it.
    pub(crate) fn is_input(self) -> bool {
        !matches!(self, Self::Exporting)
    }
}

/// One component of a structure or table line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FieldInfo {
    /// Component name.
    pub(crate) name: String,
    /// ABAP type letter (`C`, `N`, `D`, ...).
    pub(crate) abap_type: String,
    /// DDIC data type (`CHAR`, `NUMC`, `LANG`, ...).
    pub(crate) data_type: String,
    /// Length in characters (digits for packed).
    pub(crate) length: u32,
    /// Decimals.
    pub(crate) decimals: u32,
    /// Short text.
    pub(crate) description: String,
}

/// One parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ParamInfo {
    /// Parameter name.
    pub(crate) name: String,
    /// Direction.
    pub(crate) direction: Direction,
    /// ABAP type letter (`u` structure, `h` table, or an elementary letter).
    pub(crate) abap_type: String,
    /// The DDIC type it refers to (`BAPIKNA103-CUSTOMER`, `BAPIRET2`).
    pub(crate) type_name: String,
    /// Length (characters for character-like types, bytes otherwise).
    pub(crate) length: u32,
    /// Decimals.
    pub(crate) decimals: u32,
    /// Whether it may be left out.
    pub(crate) optional: bool,
    /// Default value, empty when none.
    pub(crate) default: String,
    /// Short text.
    pub(crate) description: String,
    /// Components of a structure or table parameter (`None` when unknown).
    pub(crate) fields: Option<Vec<FieldInfo>>,
}

impl ParamInfo {
    /// Whether it is a table (TABLES, or a table type).
    pub(crate) fn is_table(&self) -> bool {
        self.direction == Direction::Tables || self.abap_type == "h"
    }

    /// Whether it is a structure or table (has components).
    pub(crate) fn is_composite(&self) -> bool {
        self.is_table() || matches!(self.abap_type.as_str(), "u" | "v")
    }

    /// The DDIC structure whose fields it has, if it is composite.
    pub(crate) fn structure(&self) -> Option<&str> {
        (self.is_composite() && !self.type_name.is_empty()).then_some(self.type_name.as_str())
    }
}

/// A function module's interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FunctionInterface {
    /// Function module name.
    pub(crate) function: String,
    /// Parameters in SAP's order.
    pub(crate) parameters: Vec<ParamInfo>,
    /// Classic exceptions.
    pub(crate) exceptions: Vec<String>,
}

fn number(row: &Value, name: &str) -> u32 {
    match row.get(name) {
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// The interface from `RFC_GET_FUNCTION_INTERFACE`'s answer (fields not yet known).
pub(crate) fn from_params(function: &str, answer: &Map<String, Value>) -> FunctionInterface {
    let rows = answer
        .get("PARAMS")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut parameters = Vec::new();
    let mut exceptions = Vec::new();
    for row in rows {
        let direction = match text(row, "PARAMCLASS") {
            "I" => Direction::Importing,
            "E" => Direction::Exporting,
            "C" => Direction::Changing,
            "T" => Direction::Tables,
            "X" => {
                exceptions.push(text(row, "PARAMETER").to_owned());
                continue;
            }
            _ => continue,
        };
        let (tab, field) = (text(row, "TABNAME"), text(row, "FIELDNAME"));
        let type_name = if field.is_empty() {
            tab.to_owned()
        } else {
            format!("{tab}-{field}")
        };
        let mut abap_type = text(row, "EXID").to_owned();
        if direction == Direction::Tables && abap_type.is_empty() {
            abap_type = "h".into();
        }
        parameters.push(ParamInfo {
            name: text(row, "PARAMETER").to_owned(),
            direction,
            abap_type,
            type_name,
            length: number(row, "INTLENGTH"),
            decimals: number(row, "DECIMALS"),
            optional: text(row, "OPTIONAL") == "X",
            default: text(row, "DEFAULT").to_owned(),
            description: text(row, "PARAMTEXT").to_owned(),
            fields: None,
        });
    }
    FunctionInterface {
        function: function.to_owned(),
        parameters,
        exceptions,
    }
}

/// The components from `DDIF_FIELDINFO_GET`'s answer.
pub(crate) fn fields_from_dfies(answer: &Map<String, Value>) -> Vec<FieldInfo> {
    answer
        .get("DFIES_TAB")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|f| FieldInfo {
            name: text(f, "FIELDNAME").to_owned(),
            abap_type: text(f, "INTTYPE").to_owned(),
            data_type: text(f, "DATATYPE").to_owned(),
            length: number(f, "LENG"),
            decimals: number(f, "DECIMALS"),
            description: text(f, "FIELDTEXT").to_owned(),
        })
        .filter(|f| !f.name.is_empty())
        .collect()
}

/// The DDIC type name of an ABAP type letter.
fn type_of(letter: &str) -> &str {
    match letter {
        "C" => "CHAR",
        "N" => "NUMC",
        "D" => "DATS",
        "T" => "TIMS",
        "I" => "INT4",
        "b" => "INT1",
        "s" => "INT2",
        "8" => "INT8",
        "P" => "DEC",
        "F" => "FLTP",
        "g" => "STRING",
        "y" => "XSTRING",
        "X" => "RAW",
        "u" | "v" => "STRUCTURE",
        "h" => "TABLE",
        other => other,
    }
}

/// The JSON answer of the metadata endpoint.
pub(crate) fn to_json(interface: &FunctionInterface) -> Value {
    serde_json::to_value(InterfaceBody::of(interface)).unwrap_or_default()
}

/// A function module's interface as the API answers it. Members in name order, as
/// the answer always had them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = FunctionInterface)]
pub(crate) struct InterfaceBody<'a> {
    /// Classic exceptions.
    exceptions: &'a [String],
    /// The function module.
    function: &'a str,
    /// Parameters in SAP's order.
    parameters: Vec<ParameterBody<'a>>,
}

/// One parameter of [`InterfaceBody`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = FunctionParameter)]
struct ParameterBody<'a> {
    /// ABAP type letter (`u` structure, `h` table).
    abap_type: &'a str,
    decimals: u32,
    #[schema(required = true)]
    default: Option<&'a str>,
    description: &'a str,
    #[schema(inline)]
    direction: Direction,
    /// Structure and table parameters only (one level deep); `null` when SAP could
    /// not describe the type.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<FieldBody>>)]
    fields: Option<Option<Vec<FieldBody<'a>>>>,
    /// Characters for character-like types, bytes otherwise.
    length: u32,
    name: &'a str,
    optional: bool,
    /// `CHAR`, `NUMC`, `DATS`, `TIMS`, `INT4`, `DEC`, …, `STRUCTURE` or `TABLE`.
    #[serde(rename = "type")]
    kind: &'a str,
    /// The DDIC type it refers to (`BAPIKNA103-CUSTOMER`, `BAPIRET2`).
    type_name: &'a str,
}

/// One component of a structure or table parameter.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = FunctionField)]
struct FieldBody<'a> {
    abap_type: &'a str,
    decimals: u32,
    #[schema(required = false)]
    description: &'a str,
    length: u32,
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
}

impl<'a> InterfaceBody<'a> {
    /// The answer for `interface`.
    pub(crate) fn of(interface: &'a FunctionInterface) -> Self {
        let parameters = interface
            .parameters
            .iter()
            .map(|p| ParameterBody {
                abap_type: &p.abap_type,
                decimals: p.decimals,
                default: (!p.default.is_empty()).then_some(p.default.as_str()),
                description: &p.description,
                direction: p.direction,
                fields: p.is_composite().then(|| {
                    p.fields.as_ref().map(|fields| {
                        fields
                            .iter()
                            .map(|f| FieldBody {
                                abap_type: &f.abap_type,
                                decimals: f.decimals,
                                description: &f.description,
                                length: f.length,
                                name: &f.name,
                                kind: if f.data_type.is_empty() {
                                    type_of(&f.abap_type)
                                } else {
                                    &f.data_type
                                },
                            })
                            .collect()
                    })
                }),
                length: p.length,
                name: &p.name,
                optional: p.optional,
                kind: if p.is_table() {
                    "TABLE"
                } else {
                    type_of(&p.abap_type)
                },
                type_name: &p.type_name,
            })
            .collect();
        Self {
            exceptions: &interface.exceptions,
            function: &interface.function,
            parameters,
        }
    }
}

/// Which side of a function a JSON schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SchemaSide {
    /// What the caller sends: importing, changing and tables parameters.
    Parameters,
    /// What SAP answers: exporting, changing and tables parameters.
    Result,
}

/// The JSON schema of an elementary value of ABAP type `letter` (`length` in
/// characters for character-like types), with `summary` as `x-ms-summary`.
fn elementary_schema(letter: &str, data_type: &str, length: u32, summary: &str) -> Value {
    let mut schema = match letter {
        "I" | "b" | "s" | "8" => json!({"type": "integer"}),
        "P" | "F" | "a" | "e" => json!({"type": "number"}),
        "C" | "N" if length > 0 => json!({"type": "string", "maxLength": length}),
        _ => json!({"type": "string"}),
    };
    let kind = if data_type.is_empty() {
        type_of(letter)
    } else {
        data_type
    };
    schema["x-ms-summary"] = json!(summary);
    schema["description"] = json!(match length {
        0 => kind.to_owned(),
        n => format!("{kind} {n}"),
    });
    schema
}

/// The schema of a structure's or table line's components (an object).
fn fields_schema(fields: Option<&Vec<FieldInfo>>) -> Value {
    let properties: Map<String, Value> = fields
        .into_iter()
        .flatten()
        .map(|f| {
            let summary = if f.description.is_empty() {
                &f.name
            } else {
                &f.description
            };
            let schema = elementary_schema(&f.abap_type, &f.data_type, f.length, summary);
            (f.name.clone(), schema)
        })
        .collect();
    json!({"type": "object", "properties": properties})
}

/// A JSON schema (draft 4 subset, as Power Automate's `x-ms-dynamic-schema`
/// takes it) of one side of `interface`: an object with a property per
/// parameter, structures as objects, tables as arrays of objects, each with
/// `x-ms-summary` from SAP's texts; required are the importing parameters that
/// are not optional.
pub(crate) fn to_schema(interface: &FunctionInterface, side: SchemaSide) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for p in &interface.parameters {
        let wanted = match side {
            SchemaSide::Parameters => p.direction.is_input(),
            SchemaSide::Result => p.direction != Direction::Importing,
        };
        if !wanted {
            continue;
        }
        let summary = if p.description.is_empty() {
            &p.name
        } else {
            &p.description
        };
        let mut schema = if p.is_table() {
            json!({"type": "array", "items": fields_schema(p.fields.as_ref())})
        } else if p.is_composite() {
            fields_schema(p.fields.as_ref())
        } else {
            elementary_schema(&p.abap_type, "", p.length, summary)
        };
        schema["x-ms-summary"] = json!(summary);
        if p.is_composite() {
            schema["description"] = json!(format!("{} ({})", p.name, p.type_name));
        }
        if side == SchemaSide::Parameters && p.direction == Direction::Importing && !p.optional {
            required.push(p.name.clone());
        }
        properties.insert(p.name.clone(), schema);
    }
    let mut schema = json!({"type": "object", "properties": properties});
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_become_json_schemas_for_dynamic_forms() {
        let answer = json!({"PARAMS": [
            {"PARAMCLASS": "I", "PARAMETER": "CUSTOMERNO", "TABNAME": "BAPIKNA103",
             "FIELDNAME": "CUSTOMER", "EXID": "C", "INTLENGTH": 10, "DECIMALS": 0,
             "DEFAULT": "", "PARAMTEXT": "Customer", "OPTIONAL": ""},
            {"PARAMCLASS": "I", "PARAMETER": "MAXROWS", "EXID": "I", "OPTIONAL": "X"},
            {"PARAMCLASS": "E", "PARAMETER": "RETURN", "TABNAME": "BAPIRET1",
             "EXID": "u", "PARAMTEXT": "Return"},
            {"PARAMCLASS": "T", "PARAMETER": "IDRANGE", "TABNAME": "BAPICUSTOMER_IDRANGE",
             "EXID": "h", "OPTIONAL": "X"},
        ]});
        let mut interface = from_params("F", answer.as_object().unwrap());
        interface.parameters[3].fields = Some(vec![FieldInfo {
            name: "SIGN".into(),
            abap_type: "C".into(),
            data_type: "CHAR".into(),
            length: 1,
            decimals: 0,
            description: "Sign".into(),
        }]);
        let input = to_schema(&interface, SchemaSide::Parameters);
        assert_eq!(input["required"], json!(["CUSTOMERNO"]));
        assert_eq!(input["properties"]["CUSTOMERNO"]["maxLength"], 10);
        assert_eq!(
            input["properties"]["CUSTOMERNO"]["x-ms-summary"],
            "Customer"
        );
        assert_eq!(input["properties"]["MAXROWS"]["type"], "integer");
        assert_eq!(input["properties"]["MAXROWS"]["x-ms-summary"], "MAXROWS");
        let table = &input["properties"]["IDRANGE"];
        assert_eq!(table["type"], "array");
        assert_eq!(table["items"]["properties"]["SIGN"]["x-ms-summary"], "Sign");
        assert!(input["properties"].get("RETURN").is_none());
        let output = to_schema(&interface, SchemaSide::Result);
        assert_eq!(output["properties"]["RETURN"]["type"], "object");
        assert!(output["properties"].get("IDRANGE").is_some());
        assert!(output["properties"].get("CUSTOMERNO").is_none());
        assert!(output.get("required").is_none());
    }

    #[test]
    fn params_become_an_interface() {
        let answer = json!({"PARAMS": [
            {"PARAMCLASS": "I", "PARAMETER": "CUSTOMERNO", "TABNAME": "BAPIKNA103",
             "FIELDNAME": "CUSTOMER", "EXID": "C", "INTLENGTH": 10, "DECIMALS": 0,
             "DEFAULT": "", "PARAMTEXT": "Customer", "OPTIONAL": ""},
            {"PARAMCLASS": "E", "PARAMETER": "RETURN", "TABNAME": "BAPIRET1",
             "FIELDNAME": "", "EXID": "u", "INTLENGTH": 100, "OPTIONAL": ""},
            {"PARAMCLASS": "T", "PARAMETER": "IDRANGE", "TABNAME": "BAPICUSTOMER_IDRANGE",
             "EXID": "h", "OPTIONAL": "X"},
            {"PARAMCLASS": "X", "PARAMETER": "FU_NOT_FOUND"},
        ]});
        let interface = from_params("F", answer.as_object().unwrap());
        assert_eq!(interface.parameters.len(), 3);
        assert_eq!(interface.exceptions, vec!["FU_NOT_FOUND"]);
        assert_eq!(interface.parameters[0].type_name, "BAPIKNA103-CUSTOMER");
        assert_eq!(interface.parameters[1].structure(), Some("BAPIRET1"));
        assert!(interface.parameters[2].is_table());
        let body = to_json(&interface);
        assert_eq!(body["parameters"][0]["direction"], "importing");
        assert_eq!(body["parameters"][0]["type"], "CHAR");
        assert_eq!(body["parameters"][2]["type"], "TABLE");
        assert_eq!(body["parameters"][1]["fields"], Value::Null);
        assert!(body["parameters"][0].get("fields").is_none());
    }
}
