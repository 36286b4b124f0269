//! Reading a TOML configuration file into a library's config type.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::cmd::CliError;

/// Reads and parses `path` as TOML. Errors name the file and the problem in one line.
pub(crate) fn load<T: DeserializeOwned>(path: &Path) -> Result<T, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Config(format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        let message = e.message().to_owned();
        let place = e
            .span()
            .map(|span| {
                let line = text[..span.start.min(text.len())].lines().count().max(1);
                format!(" (line {line})")
            })
            .unwrap_or_default();
        CliError::Config(format!("{}{place}: {message}", path.display()))
    })
}
