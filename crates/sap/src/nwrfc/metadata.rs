//! Function interfaces for the NW RFC backend: read once per function with
//! `RfcGetFunctionDesc` (which the SDK answers from the system's dictionary) into
//! a tree of [`Kind`]s, cached per system and dropped on request
//! ([`MetadataCache::invalidate`]) when a function's interface changed in SAP.
//!
//! Concurrency: a `std::sync::Mutex` never held across a call to SAP; two threads
//! that miss at once both read the description, and the second insert wins.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use sapbridge_nwrfc::{
    Connection, FieldDesc, FunctionDesc, RFC_DIRECTION, RFCTYPE, RfcErrorInfo, TypeDesc,
};

/// Cache entries kept before the cache is emptied (against a caller that asks
/// for endless distinct names).
const MAX_CACHED: usize = 4096;

/// Deepest nesting of structures and tables read (a cycle guard).
const MAX_DEPTH: usize = 16;

/// The shape and type of a parameter or field.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// An elementary value: its type, length (characters for CHAR-like types,
    /// bytes otherwise) and decimals.
    Scalar { ty: RFCTYPE, len: u32 },
    /// A structure with these fields (a JSON object).
    Structure(Arc<[Field]>),
    /// A table whose rows have these fields (a JSON array of objects).
    Table(Arc<[Field]>),
}

/// A field of a structure or table row.
#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub(crate) name: String,
    pub(crate) kind: Kind,
}

/// A parameter of a function module.
#[derive(Debug, Clone)]
pub(crate) struct Param {
    pub(crate) name: String,
    pub(crate) direction: RFC_DIRECTION,
    pub(crate) kind: Kind,
}

impl Param {
    /// Whether the caller may send it (IMPORTING, CHANGING, TABLES).
    pub(crate) fn is_input(&self) -> bool {
        self.direction.0 & RFC_DIRECTION::IMPORT.0 != 0
    }

    /// Whether the result carries it (EXPORTING, CHANGING, TABLES).
    pub(crate) fn is_output(&self) -> bool {
        self.direction.0 & RFC_DIRECTION::EXPORT.0 != 0
    }
}

/// A function's interface and the SDK's description to create calls from.
#[derive(Debug)]
pub(crate) struct FunctionMeta {
    pub(crate) desc: FunctionDesc,
    pub(crate) params: Vec<Param>,
}

impl FunctionMeta {
    pub(crate) fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// Per-system cache of function interfaces.
#[derive(Debug, Default)]
pub(crate) struct MetadataCache {
    functions: Mutex<HashMap<String, Arc<FunctionMeta>>>,
}

impl MetadataCache {
    /// The interface of `function` (upper case), cached or read through `conn`.
    pub(crate) fn function(
        &self,
        conn: &mut Connection,
        function: &str,
    ) -> Result<Arc<FunctionMeta>, RfcErrorInfo> {
        if let Some(found) = self.lock().get(function) {
            return Ok(Arc::clone(found));
        }
        let desc = conn.function_desc(function)?;
        let params = desc
            .parameters()?
            .into_iter()
            .map(|p| {
                Ok(Param {
                    kind: kind(p.ty, p.nuc_length, p.type_desc, 0)?,
                    name: p.name,
                    direction: p.direction,
                })
            })
            .collect::<Result<Vec<_>, RfcErrorInfo>>()?;
        let meta = Arc::new(FunctionMeta { desc, params });
        let mut cache = self.lock();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(function.to_owned(), Arc::clone(&meta));
        Ok(meta)
    }

    /// Forgets `function`'s interface (all of them with `None`): the next call
    /// reads it again.
    pub(crate) fn invalidate(&self, function: Option<&str>) {
        let mut cache = self.lock();
        match function {
            Some(name) => {
                cache.remove(&name.trim().to_ascii_uppercase());
            }
            None => cache.clear(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<FunctionMeta>>> {
        self.functions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn kind(ty: RFCTYPE, len: u32, sub: Option<TypeDesc>, depth: usize) -> Result<Kind, RfcErrorInfo> {
    let nested = |sub: Option<TypeDesc>| -> Result<Arc<[Field]>, RfcErrorInfo> {
        let Some(sub) = sub.filter(|_| depth < MAX_DEPTH) else {
            return Ok(Arc::from(Vec::new()));
        };
        let fields = sub
            .fields()?
            .into_iter()
            .map(|f: FieldDesc| {
                Ok(Field {
                    kind: kind(f.ty, f.nuc_length, f.type_desc, depth + 1)?,
                    name: f.name,
                })
            })
            .collect::<Result<Vec<_>, RfcErrorInfo>>()?;
        Ok(Arc::from(fields))
    };
    Ok(match ty {
        RFCTYPE::STRUCTURE => Kind::Structure(nested(sub)?),
        RFCTYPE::TABLE => Kind::Table(nested(sub)?),
        ty => Kind::Scalar { ty, len },
    })
}
