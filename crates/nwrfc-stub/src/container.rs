//! The stub's data: type descriptions ([`TypeD`], [`FuncD`]) built from the
//! simulator's own interface functions, and data containers ([`Container`],
//! [`Table`]) holding a call's values, with their conversion to and from the JSON
//! the simulator takes and gives.
//!
//! Handles given to callers are pointers to these values: a function's container
//! is a `Box` the caller owns until `RfcDestroyFunction`; structures live inside
//! their parent's `Box`ed values and table rows are `Box`es in a `Vec`, so their
//! addresses stay put while the parent lives (rows are only ever appended).

use base64::Engine;
use sapbridge_nwrfc::ffi::{RFC_DIRECTION, RFCTYPE};
use serde_json::{Map, Value};

/// One field (or parameter) of a type: name, type, lengths, nested type.
#[derive(Debug)]
pub(crate) struct FieldD {
    pub(crate) name: String,
    pub(crate) ty: RFCTYPE,
    /// Characters for the character types, bytes otherwise.
    pub(crate) nuc: u32,
    /// Bytes in a Unicode system.
    pub(crate) uc: u32,
    pub(crate) decimals: u32,
    pub(crate) sub: Option<&'static TypeD>,
}

/// A structure or table line type.
#[derive(Debug)]
pub(crate) struct TypeD {
    pub(crate) name: String,
    pub(crate) fields: Vec<FieldD>,
}

/// What a function parameter adds to its field description.
#[derive(Debug)]
pub(crate) struct ParamMeta {
    pub(crate) direction: RFC_DIRECTION,
    pub(crate) default: String,
    pub(crate) text: String,
    pub(crate) optional: bool,
}

/// A function module's description.
#[derive(Debug)]
pub(crate) struct FuncD {
    pub(crate) name: String,
    pub(crate) fields: Vec<FieldD>,
    pub(crate) params: Vec<ParamMeta>,
}

/// One value.
#[derive(Debug)]
pub(crate) enum Val {
    Text(String),
    Int(i64),
    Float(f64),
    Bytes(Vec<u8>),
    Struct(Box<Container>),
    Table(Box<Table>),
}

/// A function's parameters, a structure or a table row.
#[derive(Debug)]
pub(crate) struct Container {
    pub(crate) layout: &'static [FieldD],
    pub(crate) values: Vec<Val>,
    /// Which values a caller set or touched (only those travel as input).
    pub(crate) set: Vec<bool>,
    /// The function this container holds the parameters of (function handles).
    pub(crate) func: Option<&'static FuncD>,
}

/// A table: its line type, rows and current row.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) line: &'static TypeD,
    /// Boxed so that a row handle stays valid while rows are appended.
    #[allow(clippy::vec_box)]
    pub(crate) rows: Vec<Box<Container>>,
    pub(crate) cursor: Option<usize>,
}

/// Whether a type holds characters (length in characters).
pub(crate) fn is_char_like(ty: RFCTYPE) -> bool {
    matches!(
        ty,
        RFCTYPE::CHAR | RFCTYPE::NUM | RFCTYPE::DATE | RFCTYPE::TIME
    )
}

/// The initial value of a field.
pub(crate) fn initial(field: &FieldD) -> Val {
    match field.ty {
        RFCTYPE::NUM => Val::Text("0".repeat(field.nuc as usize)),
        RFCTYPE::DATE => Val::Text("00000000".into()),
        RFCTYPE::TIME => Val::Text("000000".into()),
        RFCTYPE::BCD | RFCTYPE::DECF16 | RFCTYPE::DECF34 => Val::Text("0".into()),
        RFCTYPE::INT | RFCTYPE::INT1 | RFCTYPE::INT2 | RFCTYPE::INT8 => Val::Int(0),
        RFCTYPE::FLOAT => Val::Float(0.0),
        RFCTYPE::BYTE | RFCTYPE::XSTRING => Val::Bytes(Vec::new()),
        RFCTYPE::STRUCTURE => match field.sub {
            Some(sub) => Val::Struct(Box::new(Container::new(&sub.fields))),
            None => Val::Text(String::new()),
        },
        RFCTYPE::TABLE => match field.sub {
            Some(line) => Val::Table(Box::new(Table {
                line,
                rows: Vec::new(),
                cursor: None,
            })),
            None => Val::Text(String::new()),
        },
        _ => Val::Text(String::new()),
    }
}

impl Container {
    pub(crate) fn new(layout: &'static [FieldD]) -> Self {
        Self {
            layout,
            values: layout.iter().map(initial).collect(),
            set: vec![false; layout.len()],
            func: None,
        }
    }

    /// The index of field `name`.
    pub(crate) fn index(&self, name: &str) -> Option<usize> {
        self.layout.iter().position(|f| f.name == name)
    }

    /// The JSON of every value (a structure or row).
    pub(crate) fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (field, value) in self.layout.iter().zip(&self.values) {
            m.insert(field.name.clone(), val_to_json(value));
        }
        Value::Object(m)
    }

    /// Fills values from JSON (fields the JSON lacks keep their value).
    pub(crate) fn fill(&mut self, json: &Map<String, Value>) {
        for (i, field) in self.layout.iter().enumerate() {
            if let Some(v) = json.get(&field.name) {
                json_into(field, &mut self.values[i], v);
            }
        }
    }
}

/// A value as JSON, as the simulator takes it.
pub(crate) fn val_to_json(value: &Val) -> Value {
    match value {
        Val::Text(t) => Value::String(t.clone()),
        Val::Int(n) => Value::from(*n),
        Val::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Val::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Val::Struct(c) => c.to_json(),
        Val::Table(t) => Value::Array(t.rows.iter().map(|r| r.to_json()).collect()),
    }
}

/// Stores a JSON value the simulator gave into a field's value.
pub(crate) fn json_into(field: &FieldD, slot: &mut Val, json: &Value) {
    match (field.ty, json) {
        (RFCTYPE::STRUCTURE, Value::Object(m)) => {
            if let Val::Struct(c) = slot {
                c.fill(m);
            }
        }
        (RFCTYPE::TABLE, Value::Array(rows)) => {
            if let (Val::Table(t), Some(line)) = (slot, field.sub) {
                t.rows = rows
                    .iter()
                    .map(|r| {
                        let mut row = Container::new(&line.fields);
                        if let Value::Object(m) = r {
                            row.fill(m);
                        }
                        Box::new(row)
                    })
                    .collect();
                t.cursor = None;
            }
        }
        (RFCTYPE::INT | RFCTYPE::INT1 | RFCTYPE::INT2 | RFCTYPE::INT8, v) => {
            *slot = Val::Int(
                v.as_i64()
                    .or_else(|| v.as_str()?.trim().parse().ok())
                    .unwrap_or(0),
            );
        }
        (RFCTYPE::FLOAT, v) => {
            *slot = Val::Float(
                v.as_f64()
                    .or_else(|| v.as_str()?.trim().parse().ok())
                    .unwrap_or(0.0),
            );
        }
        (RFCTYPE::BYTE | RFCTYPE::XSTRING, Value::String(s)) => {
            *slot = Val::Bytes(
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .unwrap_or_default(),
            );
        }
        (_, Value::String(s)) => *slot = Val::Text(s.clone()),
        (_, Value::Number(n)) => *slot = Val::Text(n.to_string()),
        _ => {}
    }
}

/// The text of a value as `RfcGetString` gives it.
pub(crate) fn text_of(field: &FieldD, value: &Val) -> String {
    match value {
        Val::Text(t) if field.ty == RFCTYPE::CHAR => t.trim_end().to_owned(),
        Val::Text(t) => t.clone(),
        Val::Int(n) => n.to_string(),
        Val::Float(f) => f.to_string(),
        Val::Bytes(b) => b.iter().map(|x| format!("{x:02X}")).collect(),
        Val::Struct(_) | Val::Table(_) => String::new(),
    }
}

/// The fixed-length form of a character field: blank-padded, NUMC zero-padded
/// on the left.
pub(crate) fn padded(field: &FieldD, value: &Val) -> Vec<u16> {
    let text = text_of(field, value);
    let len = field.nuc as usize;
    let mut units: Vec<u16> = text.encode_utf16().collect();
    if field.ty == RFCTYPE::NUM && units.len() < len {
        let mut out = vec![u16::from(b'0'); len - units.len()];
        out.append(&mut units);
        return out;
    }
    units.resize(len.max(units.len()), u16::from(b' '));
    units
}
