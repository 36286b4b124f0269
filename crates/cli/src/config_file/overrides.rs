//! Settings given outside the configuration file: `SAPBRIDGE_*` environment
//! variables and `--set KEY=VALUE` flags, laid over the file's TOML tree before it
//! is read into the configuration type.
//!
//! A variable names a setting by its path: `SAPBRIDGE_LEASE_SECS` is `lease_secs`,
//! `SAPBRIDGE_QUEUE__PATH` is `path` in `[queue]` (a double underscore between a
//! section and its key), and `--set queue.path=…` says the same on the command line.
//! Nothing lists the settings here: the configuration type's own field names decide,
//! so a setting added to a `#[derive(Deserialize)]` struct can be overridden the day
//! it exists.
//!
//! Values are read as the setting's type asks: a number, `true`/`false`, a string
//! (never re-interpreted: `SAPBRIDGE_CUSTOMER_DEFAULTS__SALES_ORG=1000` stays the
//! string `"1000"`), an enum's name, a list as `a,b,c` or a TOML array
//! (`["10.0.0.0/8"]`, `[{ name = "ops", … }]`), a table as a TOML inline table. An
//! empty value clears an optional setting. Error messages name the variable or
//! flag and never quote its value (it may be a secret).
//!
//! A variable whose name is not a setting is an error when it looks like one (it
//! starts with a section's name and one underscore, or is a near miss of a
//! setting's name) and for any unknown key of a section; otherwise it belongs to
//! someone else (the command line's own variables such as `SAPBRIDGE_LOG`, a
//! password variable the file names in a `*_env` key, a test's variable) and is
//! left alone.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use toml::de::Error;

/// The prefix of the environment variables that name settings.
pub(crate) const ENV_PREFIX: &str = "SAPBRIDGE_";

/// The separator between a section and its key in a variable's name.
const ENV_SECTION_SEPARATOR: &str = "__";

/// How close (Jaro-Winkler) an unknown variable's name must be to a setting's to
/// count as a misspelling of it rather than someone else's variable.
const NEAR_MISS: f64 = 0.9;

/// One setting given outside the file.
#[derive(Debug, Clone)]
pub(crate) struct Override {
    /// The setting's path: `["queue", "path"]`.
    path: Vec<String>,
    /// The value as given; `None` when the variable is not valid UTF-8.
    text: Option<String>,
    /// Where it came from, as errors name it: `SAPBRIDGE_QUEUE__PATH`,
    /// `--set queue.path`.
    origin: String,
    /// An environment variable named like a top-level setting, which may instead
    /// belong to another program (see the module docs).
    loose: bool,
    /// A variable known to mean something else: dropped without a word where it
    /// names no setting.
    elsewhere: bool,
}

/// The `SAPBRIDGE_*` variables of `vars` as overrides. `others` are the names of
/// variables known to mean something else (the command line's own, the file's
/// `*_env` names): they apply where they name a setting, and are never an error.
pub(crate) fn from_env(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
    others: &HashSet<String>,
) -> Vec<Override> {
    let mut overrides: Vec<Override> = vars
        .into_iter()
        .filter_map(|(name, value)| {
            let name = name.into_string().ok()?;
            let rest = name.strip_prefix(ENV_PREFIX)?;
            if rest.is_empty() {
                return None;
            }
            let path: Vec<String> = rest
                .split(ENV_SECTION_SEPARATOR)
                .map(str::to_ascii_lowercase)
                .collect();
            Some(Override {
                loose: path.len() == 1,
                elsewhere: path.len() == 1 && others.contains(&name),
                path,
                text: value.into_string().ok(),
                origin: name,
            })
        })
        .collect();
    // The same order whatever the environment's: errors are reproducible.
    overrides.sort_by(|a, b| a.origin.cmp(&b.origin));
    overrides
}

/// `--set KEY=VALUE` flags as overrides (`queue.path=/var/lib/x.db`).
///
/// # Errors
/// A flag without `=` or with an empty key segment, named in one line.
pub(crate) fn from_flags(sets: &[String]) -> Result<Vec<Override>, String> {
    sets.iter()
        .map(|set| {
            let Some((key, value)) = set.split_once('=') else {
                return Err(format!(
                    "--set {set}: expected KEY=VALUE (a setting's path, such as queue.path)"
                ));
            };
            let path: Vec<String> = key.trim().split('.').map(str::to_owned).collect();
            if path.iter().any(String::is_empty) {
                return Err(format!("--set {key}: a setting's path such as queue.path"));
            }
            Ok(Override {
                path,
                text: Some(value.to_owned()),
                origin: format!("--set {}", key.trim()),
                loose: false,
                elsewhere: false,
            })
        })
        .collect()
}

/// Whether an error message was written by this module (it names its variable or
/// flag), rather than by the file's contents.
pub(crate) fn is_override_error(message: &str) -> bool {
    message.starts_with(ENV_PREFIX) || message.starts_with("--set ")
}

/// The file's tree with `overrides` laid over it, in order (a later one wins).
///
/// # Errors
/// An override that would go through a value of the file that is not a table.
pub(crate) fn apply(file: toml::Table, overrides: Vec<Override>) -> Result<Node, String> {
    let mut root = Node::table(Vec::new(), file);
    for o in overrides {
        root.set(&o.path, o.clone())?;
    }
    Ok(root)
}

/// A key a table gained from an override (it was not in the file).
#[derive(Debug)]
pub(crate) struct Added {
    origin: String,
    loose: bool,
    elsewhere: bool,
}

/// The tree that is read into the configuration type: the file's values as they
/// are, overridden values as text read by the type that receives them.
#[derive(Debug)]
pub(crate) enum Node {
    /// A value of the file.
    File(toml::Value),
    /// A value given by an override.
    Set {
        /// The text; `None` if the variable was not valid UTF-8.
        text: Option<String>,
        /// The variable or flag, for errors.
        origin: String,
    },
    /// A table with at least one overridden key somewhere below it.
    Table {
        /// Its path, for errors (empty at the top).
        section: Vec<String>,
        /// Its entries.
        entries: BTreeMap<String, Node>,
        /// The keys overrides added.
        added: BTreeMap<String, Added>,
    },
}

impl Node {
    fn table(section: Vec<String>, table: toml::Table) -> Self {
        Node::Table {
            section,
            entries: table.into_iter().map(|(k, v)| (k, Node::File(v))).collect(),
            added: BTreeMap::new(),
        }
    }

    /// Sets `path` (relative to this table) to the override's value.
    fn set(&mut self, path: &[String], o: Override) -> Result<(), String> {
        let Node::Table {
            section,
            entries,
            added,
        } = self
        else {
            unreachable!("set is only called on tables");
        };
        let (key, rest) = path.split_first().expect("paths are not empty");
        if !entries.contains_key(key) {
            added.insert(
                key.clone(),
                Added {
                    origin: o.origin.clone(),
                    loose: o.loose,
                    elsewhere: o.elsewhere,
                },
            );
        }
        if rest.is_empty() {
            entries.insert(
                key.clone(),
                Node::Set {
                    text: o.text,
                    origin: o.origin,
                },
            );
            return Ok(());
        }
        let mut below = section.clone();
        below.push(key.clone());
        let entry = entries
            .remove(key)
            .unwrap_or_else(|| Node::table(below.clone(), toml::Table::new()));
        let mut entry = match entry {
            Node::File(toml::Value::Table(t)) => Node::table(below.clone(), t),
            table @ Node::Table { .. } => table,
            _ => {
                return Err(format!("{}: {} is not a table", o.origin, below.join(".")));
            }
        };
        let result = entry.set(rest, o);
        entries.insert(key.clone(), entry);
        result
    }
}

/// Prefixes an error with the override it came from (once).
fn blame(origin: &str, error: Error) -> Error {
    if error.message().starts_with(origin) {
        error
    } else {
        de::Error::custom(format!("{origin}: {}", error.message()))
    }
}

/// A setting named like `key` in `fields`, if `key` looks like a misspelling of
/// one: a section's name joined to its key by one underscore (then the key is
/// `section.rest`), or a near miss.
fn suggestion(key: &str, fields: &[&str]) -> Option<Vec<String>> {
    for field in fields {
        if let Some(rest) = key.strip_prefix(field).and_then(|r| r.strip_prefix('_'))
            && !rest.is_empty()
        {
            return Some(vec![(*field).to_owned(), rest.to_owned()]);
        }
    }
    fields
        .iter()
        .map(|field| (strsim::jaro_winkler(key, field), field))
        .filter(|(score, _)| *score >= NEAR_MISS)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, field)| vec![(*field).to_owned()])
}

/// Checks the keys overrides added to a struct against its fields: unknown keys
/// are errors, except loose variables that do not look like settings (dropped).
fn check_added(
    section: &[String],
    entries: &mut BTreeMap<String, Node>,
    added: &BTreeMap<String, Added>,
    fields: &[&str],
) -> Result<(), Error> {
    for (key, how) in added {
        if fields.contains(&key.as_str()) {
            continue;
        }
        let origin = &how.origin;
        let hint = suggestion(key, fields);
        if how.elsewhere || (how.loose && hint.is_none()) {
            entries.remove(key);
            continue;
        }
        let place = if section.is_empty() {
            "there is no such setting".to_owned()
        } else {
            format!("[{}] has no setting `{key}`", section.join("."))
        };
        let hint = match hint {
            Some(key) if origin.starts_with(ENV_PREFIX) => {
                let name: Vec<String> = section.iter().chain(&key).cloned().collect();
                let name = name.join(ENV_SECTION_SEPARATOR).to_ascii_uppercase();
                let why = if key.len() > 1 {
                    ": a double underscore separates a section from its key"
                } else {
                    ""
                };
                format!(" (did you mean {ENV_PREFIX}{name}?{why})")
            }
            Some(key) => format!(" (did you mean `{}`?)", key.join(".")),
            None => format!(" (known: {})", fields.join(", ")),
        };
        return Err(de::Error::custom(format!("{origin}: {place}{hint}")));
    }
    Ok(())
}

/// Reads a TOML value written as the text of an override (`["a", "b"]`, `{ x = 1 }`,
/// `42`); `None` if it is not one.
fn literal(text: &str) -> Option<toml::Value> {
    let mut table: toml::Table = toml::from_str(&format!("v = {text}")).ok()?;
    let value = table.remove("v")?;
    table.is_empty().then_some(value)
}

/// A list given as `a,b,c`: its items, each read as its type asks.
struct Items {
    items: std::vec::IntoIter<String>,
    origin: String,
}

impl<'de> SeqAccess<'de> for Items {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.items.next() {
            None => Ok(None),
            Some(text) => seed
                .deserialize(Node::Set {
                    text: Some(text),
                    origin: self.origin.clone(),
                })
                .map(Some),
        }
    }
}

/// The entries of a table with overrides below it.
struct Entries {
    entries: std::collections::btree_map::IntoIter<String, Node>,
    value: Option<Node>,
}

impl<'de> MapAccess<'de> for Entries {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.entries.next() {
            None => Ok(None),
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(key.into_deserializer()).map(Some)
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let value = self
            .value
            .take()
            .ok_or_else(|| <Error as de::Error>::custom("a value without its key"))?;
        seed.deserialize(value)
    }
}

/// Reads an override's number, as the type asks.
macro_rules! number {
    ($($method:ident => $visit:ident: $ty:ty, $what:literal;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self {
                Node::File(value) => value.$method(visitor),
                Node::Set { text, origin } => {
                    let text = utf8(text, &origin)?;
                    let number: $ty = text.trim().parse().map_err(|_| {
                        de::Error::custom(format!(
                            "{origin}: expected {} ({})",
                            $what,
                            stringify!($ty)
                        ))
                    })?;
                    visitor.$visit(number).map_err(|e| blame(&origin, e))
                }
                table => table.deserialize_any(visitor),
            }
        }
    )*};
}

/// An override's text, or the error for a variable that is not UTF-8.
fn utf8(text: Option<String>, origin: &str) -> Result<String, Error> {
    text.ok_or_else(|| de::Error::custom(format!("{origin}: not valid UTF-8")))
}

impl<'de> de::Deserializer<'de> for Node {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::File(value) => value.deserialize_any(visitor),
            Node::Set { text, origin } => {
                let text = utf8(text, &origin)?;
                match literal(&text) {
                    Some(value) => value.deserialize_any(visitor),
                    None => visitor.visit_string(text),
                }
                .map_err(|e| blame(&origin, e))
            }
            Node::Table { entries, .. } => visitor.visit_map(Entries {
                entries: entries.into_iter(),
                value: None,
            }),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::Set { text, origin } => {
                let text = utf8(text, &origin)?;
                let value = match text.trim().to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(de::Error::custom(format!(
                            "{}: expected true or false",
                            origin
                        )));
                    }
                };
                visitor.visit_bool(value).map_err(|e| blame(&origin, e))
            }
            other => other.deserialize_any(visitor),
        }
    }

    number! {
        deserialize_i8 => visit_i8: i8, "a whole number";
        deserialize_i16 => visit_i16: i16, "a whole number";
        deserialize_i32 => visit_i32: i32, "a whole number";
        deserialize_i64 => visit_i64: i64, "a whole number";
        deserialize_u8 => visit_u8: u8, "a whole number, 0 or more";
        deserialize_u16 => visit_u16: u16, "a whole number, 0 or more";
        deserialize_u32 => visit_u32: u32, "a whole number, 0 or more";
        deserialize_u64 => visit_u64: u64, "a whole number, 0 or more";
        deserialize_f32 => visit_f32: f32, "a number";
        deserialize_f64 => visit_f64: f64, "a number";
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::File(value) => value.deserialize_string(visitor),
            Node::Set { text, origin } => {
                let text = utf8(text, &origin)?;
                visitor.visit_string(text).map_err(|e| blame(&origin, e))
            }
            table => table.deserialize_any(visitor),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::Set { text: Some(t), .. } if t.is_empty() => visitor.visit_none(),
            other => visitor.visit_some(other),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::File(value) => value.deserialize_unit(visitor),
            _ => visitor.visit_unit(),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            Node::File(value) => value.deserialize_newtype_struct(name, visitor),
            other => visitor.visit_newtype_struct(other),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::File(value) => value.deserialize_seq(visitor),
            Node::Set { text, origin } => {
                let text = utf8(text, &origin)?;
                if text.trim_start().starts_with('[') {
                    let value = literal(&text).ok_or_else(|| {
                        de::Error::custom(format!(
                            "{}: not a TOML array (write a,b,c or [\"a\", \"b\"])",
                            origin
                        ))
                    })?;
                    return value
                        .deserialize_seq(visitor)
                        .map_err(|e| blame(&origin, e));
                }
                let items: Vec<String> = if text.trim().is_empty() {
                    Vec::new()
                } else {
                    text.split(',').map(|item| item.trim().to_owned()).collect()
                };
                visitor
                    .visit_seq(Items {
                        items: items.into_iter(),
                        origin: origin.clone(),
                    })
                    .map_err(|e| blame(&origin, e))
            }
            table => table.deserialize_any(visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::Set { text, origin } => {
                let text = utf8(text, &origin)?;
                match literal(&text) {
                    Some(value @ toml::Value::Table(_)) => value
                        .deserialize_map(visitor)
                        .map_err(|e| blame(&origin, e)),
                    _ => Err(de::Error::custom(format!(
                        "{}: a table: write it as a TOML inline table {{ key = value }}, or set \
                         its keys one by one",
                        origin
                    ))),
                }
            }
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            Node::File(value) => value.deserialize_struct(name, fields, visitor),
            set @ Node::Set { .. } => set.deserialize_map(visitor),
            Node::Table {
                section,
                mut entries,
                added,
            } => {
                check_added(&section, &mut entries, &added, fields)?;
                visitor.visit_map(Entries {
                    entries: entries.into_iter(),
                    value: None,
                })
            }
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            Node::File(value) => value.deserialize_enum(name, variants, visitor),
            Node::Set { text, origin } => {
                let text = utf8(text, &origin)?;
                let variant: de::value::StringDeserializer<Error> = text.into_deserializer();
                visitor.visit_enum(variant).map_err(|e| blame(&origin, e))
            }
            table => table.deserialize_any(visitor),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }
}
