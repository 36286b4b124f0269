//! The subcommands, one file each, and the error type they share.

pub(crate) mod agent;
pub(crate) mod dev;
pub(crate) mod relay;
pub(crate) mod sim;

/// How a subcommand failed: bad configuration (exit code 64) or at run time.
#[derive(Debug)]
pub(crate) enum CliError {
    /// The configuration or the command line is invalid; one line says why.
    Config(String),
    /// The service failed while running.
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        Self::Runtime(e)
    }
}
