//! Reading a TOML configuration file into a library's config type: relative file
//! paths taken from the file's folder, then the environment's and the command
//! line's overrides laid over it (see [`overrides`]).
//!
//! A setting names a file when its key is `path`, `db_path` or `library` (with a
//! `/` or `\` in it: a bare library name is left to the system's loader) or ends in
//! `_file` or `_dir` (`token_file`, `ca_file`, `data_dir`, …, and any setting named
//! so later). A relative path written in the file is taken from the file's folder,
//! so a configuration means the same from any working directory; a relative path
//! given by a variable or flag is taken from the working directory, as a shell
//! would.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::cmd::CliError;

pub(crate) mod overrides;

/// Where a configuration's overrides come from: the process's `SAPBRIDGE_*`
/// variables and the command line's `--set KEY=VALUE` flags.
#[derive(Debug, Default, Clone)]
pub(crate) struct Sources {
    /// The environment (`SAPBRIDGE_*` variables are read from it).
    pub(crate) env: Vec<(OsString, OsString)>,
    /// `--set` flags, in order.
    pub(crate) sets: Vec<String>,
    /// Variables the command reads itself that clap does not declare
    /// (`SAPBRIDGE_CLUSTER_SECRET`): not settings, never an error.
    pub(crate) others: Vec<&'static str>,
}

impl Sources {
    /// The process's environment and these `--set` flags.
    pub(crate) fn process(sets: &[String]) -> Self {
        Self {
            env: std::env::vars_os().collect(),
            sets: sets.to_vec(),
            others: Vec::new(),
        }
    }
}

/// Reads `path` as TOML with no overrides. Errors name the file and the problem in
/// one line.
#[cfg(test)]
pub(crate) fn load<T: DeserializeOwned>(path: &Path) -> Result<T, CliError> {
    load_with(path, &Sources::default())
}

/// Reads `path` as TOML, resolves its relative file paths against its folder and
/// lays `sources`' overrides over it. Errors name the file, or the variable or
/// flag, and the problem in one line (never a value).
pub(crate) fn load_with<T: DeserializeOwned>(
    path: &Path,
    sources: &Sources,
) -> Result<T, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Config(format!("cannot read {}: {e}", path.display())))?;
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| file_error(path, &text, &e))?;
    let folder = std::path::absolute(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    resolve_paths(&mut table, &folder);

    let mut others = crate::declared_env_names();
    password_variables(&table, &mut others);
    others.extend(sources.others.iter().map(|name| (*name).to_owned()));
    let mut list = overrides::from_env(sources.env.iter().cloned(), &others);
    list.extend(overrides::from_flags(&sources.sets).map_err(CliError::Config)?);
    let tree = overrides::apply(table, list).map_err(CliError::Config)?;
    T::deserialize(tree).map_err(|e| {
        if overrides::is_override_error(e.message()) {
            return CliError::Config(e.message().to_owned());
        }
        // A problem of the file itself: read it alone again for the line number.
        match toml::from_str::<T>(&text) {
            Err(file) => file_error(path, &text, &file),
            Ok(_) => CliError::Config(format!("{}: {}", path.display(), e.message())),
        }
    })
}

/// One line naming the file, the line and the problem.
fn file_error(path: &Path, text: &str, error: &toml::de::Error) -> CliError {
    let place = error
        .span()
        .map(|span| {
            let line = text[..span.start.min(text.len())].lines().count().max(1);
            format!(" (line {line})")
        })
        .unwrap_or_default();
    CliError::Config(format!("{}{place}: {}", path.display(), error.message()))
}

/// Whether a setting called `key` with value `value` names a file.
fn names_a_file(key: &str, value: &str) -> bool {
    match key {
        "path" | "db_path" => true,
        "library" => value.contains(['/', '\\']),
        _ => key.ends_with("_file") || key.ends_with("_dir"),
    }
}

/// Makes every relative file path of `table` (and of the tables and arrays of
/// tables in it) absolute under `folder`.
fn resolve_paths(table: &mut toml::Table, folder: &Path) {
    for (key, value) in table.iter_mut() {
        match value {
            toml::Value::String(text) if names_a_file(key, text) => {
                let path = Path::new(text.as_str());
                if path.is_relative() && !text.is_empty() {
                    *text = folder.join(path).to_string_lossy().into_owned();
                }
            }
            toml::Value::Table(inner) => resolve_paths(inner, folder),
            toml::Value::Array(items) => {
                for item in items {
                    if let toml::Value::Table(inner) = item {
                        resolve_paths(inner, folder);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Adds the names of the variables the file's `*_env` settings name (passwords
/// such as `SAPBRIDGE_PRD_PASSWORD`): they are not settings.
fn password_variables(table: &toml::Table, names: &mut HashSet<String>) {
    for (key, value) in table {
        match value {
            toml::Value::String(name) if key.ends_with("_env") => {
                names.insert(name.clone());
            }
            toml::Value::Table(inner) => password_variables(inner, names),
            toml::Value::Array(items) => {
                for item in items {
                    if let toml::Value::Table(inner) = item {
                        password_variables(inner, names);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
