//! `sapbridge keys new`: a random API key or agent token, shown once, and the
//! `relay.toml` entry that holds only its SHA-256 (the relay never needs the
//! secret itself).

use clap::{Args, Subcommand};

use super::{CliError, generate_secret};

/// Options of `sapbridge keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

/// The `keys` tools.
#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Prints a new random API key (`--token`: agent token) once, and the
    /// `relay.toml` entry holding only its SHA-256.
    New(NewArgs),
}

/// Options of `sapbridge keys new`.
#[derive(Debug, Args)]
struct NewArgs {
    /// An agent token instead of an API key.
    #[arg(long)]
    token: bool,
    /// The entry's name (shown in logs and metrics instead of the secret).
    #[arg(long, default_value = "new")]
    name: String,
    /// A system it may reach (repeatable); all systems when none is given.
    #[arg(long = "system", value_name = "SYSTEM")]
    systems: Vec<String>,
}

/// Names and systems go into the TOML entry between quotes: letters, digits and
/// `_ - . / *` only, so nothing needs escaping.
fn plain(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./*".contains(&b))
}

/// Runs `sapbridge keys …`: the text for the terminal.
///
/// # Errors
/// [`CliError::Config`] for a name or system outside the allowed characters.
pub(crate) fn run(args: KeysArgs) -> Result<String, CliError> {
    let KeysCommand::New(args) = args.command;
    if let Some(bad) = std::iter::once(&args.name)
        .chain(&args.systems)
        .find(|t| !plain(t))
    {
        return Err(CliError::Config(format!(
            "{bad:?}: names and systems take letters, digits and _ - . / * (at most 64)"
        )));
    }
    let (prefix, table, field, who) = if args.token {
        (
            "sbt_",
            "agent_tokens",
            "token_sha256",
            "the agent (its token_file)",
        )
    } else {
        (
            "sbk_",
            "api_keys",
            "key_sha256",
            "the client (Authorization: Bearer)",
        )
    };
    let secret = generate_secret(prefix);
    let systems = if args.systems.is_empty() {
        vec!["*".to_owned()]
    } else {
        args.systems
    };
    let systems: Vec<String> = systems.iter().map(|s| format!("\"{s}\"")).collect();
    Ok(format!(
        "# The secret, shown this once: give it to {who}.\n{secret}\n\n\
         # For relay.toml (the relay keeps only the hash):\n\
         [[{table}]]\nname = \"{}\"\n{field} = \"{}\"\nsystems = [{}]\n",
        args.name,
        sapbridge_relay::secret_sha256_hex(&secret),
        systems.join(", ")
    ))
}
