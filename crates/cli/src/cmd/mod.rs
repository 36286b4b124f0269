//! The subcommands, one file each, and the error type they share.

pub(crate) mod admin;
pub(crate) mod agent;
pub(crate) mod client;
pub(crate) mod dev;
pub(crate) mod health;
pub(crate) mod keys;
pub(crate) mod relay;
pub(crate) mod sim;
pub(crate) mod sync;

/// A random secret of 24 bytes, hex-encoded, with a prefix that says what it is.
pub(crate) fn generate_secret(prefix: &str) -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::Command;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[test]
    fn debug_of_the_command_line_masks_secrets() {
        for args in [
            [
                "sapbridge",
                "agent",
                "--config",
                "a.toml",
                "--token",
                "tok-visible",
            ],
            [
                "sapbridge",
                "dev",
                "--api-key",
                "key-visible",
                "--listen",
                "x",
            ],
        ] {
            let cli = Cli::try_parse_from(args).expect("parses");
            let debug = format!("{cli:?}");
            assert!(!debug.contains("visible"), "{debug}");
            assert!(debug.contains("MASKED"), "{debug}");
        }
    }
}
