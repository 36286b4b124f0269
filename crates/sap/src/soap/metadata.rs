//! Function interfaces for the SOAP mapping: which parameters a function has, in
//! which direction, and of which ABAP type. Read from the system itself with
//! `RFC_GET_FUNCTION_INTERFACE` and `DDIF_FIELDINFO_GET` (as NW RFC SDK clients do)
//! and cached per system.
//!
//! Concurrency: the cache uses a `std::sync::Mutex` that is never held across an
//! `.await`; two tasks that miss at once both load, and the second insert wins
//! (the results are the same).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::{Parameters, RfcError, SapConnection};

/// Cache entries kept before the cache is emptied (a crude bound against a caller
/// that asks for endless distinct names).
const MAX_CACHED: usize = 4096;

/// The ABAP type of a scalar, as far as the JSON mapping cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScalarType {
    /// CHAR (`C`), also the fallback for unknown letters.
    Char,
    /// NUMC (`N`): digits as a string.
    Numc,
    /// DATS (`D`): `YYYYMMDD` in JSON, `YYYY-MM-DD` in SOAP.
    Date,
    /// TIMS (`T`): `HHMMSS` in JSON, `HH:MM:SS` in SOAP.
    Time,
    /// INT1/INT2/INT4/INT8 (`b`, `s`, `I`, `8`): a JSON number.
    Int,
    /// FLTP (`F`): a JSON number.
    Float,
    /// Packed and decimal floats (`P`, `a`, `e`): a string, never rounded.
    Packed,
    /// RAW / XSTRING (`X`, `y`): base64 in both JSON and SOAP.
    Raw,
    /// STRING (`g`).
    String,
}

impl ScalarType {
    /// Maps an ABAP type letter (EXID / INTTYPE) to the mapping type.
    pub(crate) fn from_letter(letter: &str) -> Self {
        match letter.trim() {
            "N" => Self::Numc,
            "D" => Self::Date,
            "T" => Self::Time,
            "I" | "b" | "s" | "8" => Self::Int,
            "F" => Self::Float,
            "P" | "a" | "e" => Self::Packed,
            "X" | "y" => Self::Raw,
            "g" => Self::String,
            _ => Self::Char,
        }
    }
}

/// The shape of a parameter or field value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Shape {
    /// An elementary value.
    Scalar(ScalarType),
    /// A structure with these fields (an object in JSON).
    Structure(Arc<Vec<Field>>),
    /// A table whose rows have these fields (an array of objects in JSON).
    Table(Arc<Vec<Field>>),
    /// Unknown: converted by looking at the XML/JSON itself.
    Generic,
}

/// One field of a structure or table row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Field {
    /// The ABAP field name.
    pub(crate) name: String,
    /// Its shape (nested structures and tables are [`Shape::Generic`]).
    pub(crate) shape: Shape,
}

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// IMPORTING: caller → function.
    Importing,
    /// EXPORTING: function → caller.
    Exporting,
    /// CHANGING: both ways.
    Changing,
    /// TABLES: both ways, returned when requested.
    Tables,
}

/// One parameter of a function module.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Param {
    /// The parameter name.
    pub(crate) name: String,
    /// Its direction.
    pub(crate) direction: Direction,
    /// Its shape.
    pub(crate) shape: Shape,
}

/// A function's interface: its parameters in interface order. An empty interface
/// (from [`FunctionMeta::default`]) makes every conversion generic.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FunctionMeta {
    /// Parameters in the order the system listed them.
    pub(crate) params: Vec<Param>,
}

impl FunctionMeta {
    /// The parameter with this name.
    pub(crate) fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// The shape of a parameter, [`Shape::Generic`] when unknown.
    pub(crate) fn shape_of(&self, name: &str) -> &Shape {
        self.param(name).map_or(&Shape::Generic, |p| &p.shape)
    }
}

/// Per-system cache of function interfaces and structure layouts.
#[derive(Debug, Default)]
pub(crate) struct MetadataCache {
    functions: Mutex<HashMap<String, Arc<FunctionMeta>>>,
    structures: Mutex<HashMap<String, Arc<Vec<Field>>>>,
}

impl MetadataCache {
    /// Forgets every cached interface and structure.
    pub(crate) fn clear(&self) {
        lock(&self.functions).clear();
        lock(&self.structures).clear();
    }

    /// The interface of `function`, from the cache or loaded through `conn`.
    ///
    /// # Errors
    /// The [`RfcError`] of `RFC_GET_FUNCTION_INTERFACE` (for example `FU_NOT_FOUND`
    /// when the function does not exist, or when the system offers no metadata).
    pub(crate) async fn function(
        &self,
        conn: &mut dyn SapConnection,
        function: &str,
    ) -> Result<Arc<FunctionMeta>, RfcError> {
        if let Some(found) = lock(&self.functions).get(function) {
            return Ok(found.clone());
        }
        let mut request = Parameters::new();
        request.insert("FUNCNAME".into(), Value::String(function.to_owned()));
        request.insert("PARAMS".into(), Value::Array(Vec::new()));
        let answer = conn.call("RFC_GET_FUNCTION_INTERFACE", &request).await?;
        let rows = answer
            .get("PARAMS")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut params = Vec::new();
        for row in &rows {
            let direction = match text(row, "PARAMCLASS").as_str() {
                "I" => Direction::Importing,
                "E" => Direction::Exporting,
                "C" => Direction::Changing,
                "T" => Direction::Tables,
                _ => continue, // exceptions (X) and anything else carry no data
            };
            let name = text(row, "PARAMETER");
            let tabname = text(row, "TABNAME");
            let exid = text(row, "EXID");
            let shape = match (direction, exid.as_str()) {
                (Direction::Tables, _) | (_, "h") => match self.fields(conn, &tabname).await {
                    Some(fields) => Shape::Table(fields),
                    None => Shape::Generic,
                },
                (_, "u" | "v") => match self.fields(conn, &tabname).await {
                    Some(fields) => Shape::Structure(fields),
                    None => Shape::Generic,
                },
                _ => Shape::Scalar(ScalarType::from_letter(&exid)),
            };
            params.push(Param {
                name,
                direction,
                shape,
            });
        }
        let meta = Arc::new(FunctionMeta { params });
        let mut cache = lock(&self.functions);
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(function.to_owned(), meta.clone());
        Ok(meta)
    }

    /// The fields of a structure or table line type, `None` when the system cannot
    /// describe it (the parameter is then converted generically).
    async fn fields(&self, conn: &mut dyn SapConnection, tabname: &str) -> Option<Arc<Vec<Field>>> {
        if tabname.is_empty() {
            return None;
        }
        if let Some(found) = lock(&self.structures).get(tabname) {
            return Some(found.clone());
        }
        let mut request = Parameters::new();
        request.insert("TABNAME".into(), Value::String(tabname.to_owned()));
        request.insert("DFIES_TAB".into(), Value::Array(Vec::new()));
        let answer = match conn.call("DDIF_FIELDINFO_GET", &request).await {
            Ok(answer) => answer,
            Err(error) => {
                tracing::debug!(tabname, key = %error.key, "no field info; converting generically");
                return None;
            }
        };
        let rows = answer
            .get("DFIES_TAB")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut numbered: Vec<(i64, Field)> = rows
            .iter()
            .enumerate()
            .map(|(index, row)| {
                let position = text(row, "POSITION").trim().parse().unwrap_or(index as i64);
                let shape = match text(row, "INTTYPE").as_str() {
                    "u" | "v" | "h" => Shape::Generic,
                    letter => Shape::Scalar(ScalarType::from_letter(letter)),
                };
                (
                    position,
                    Field {
                        name: text(row, "FIELDNAME"),
                        shape,
                    },
                )
            })
            .collect();
        numbered.sort_by_key(|(position, _)| *position);
        let fields = Arc::new(numbered.into_iter().map(|(_, f)| f).collect::<Vec<_>>());
        let mut cache = lock(&self.structures);
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(tabname.to_owned(), fields.clone());
        Some(fields)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A row field as text whether the system gave a string or a number.
fn text(row: &Value, field: &str) -> String {
    match row.get(field) {
        Some(Value::String(s)) => s.trim_end().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_abap_type_letters() {
        assert_eq!(ScalarType::from_letter("I"), ScalarType::Int);
        assert_eq!(ScalarType::from_letter("8"), ScalarType::Int);
        assert_eq!(ScalarType::from_letter("P"), ScalarType::Packed);
        assert_eq!(ScalarType::from_letter("D"), ScalarType::Date);
        assert_eq!(ScalarType::from_letter("g"), ScalarType::String);
        assert_eq!(ScalarType::from_letter("?"), ScalarType::Char);
    }
}
