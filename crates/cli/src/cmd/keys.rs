//! `sapbridge keys new`: a random API key or agent token, shown once, and the
//! `relay.toml` entry that holds only its SHA-256 (the relay never needs the
//! secret itself). `sapbridge keys pin CERT.pem`: the public key pins of a
//! certificate file, for the agent's `relay_spki_sha256`. `sapbridge keys
//! list|create|revoke` and `keys tokens list|create|revoke`: keys and agent
//! tokens in a running relay's store, through its admin API (see `admin`).

use clap::{Args, Subcommand};

use super::admin::{AdminCommand, CreateArgs, Kind, ListArgs, RevokeArgs, TokensArgs};
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
    /// Prints the public key pin (SHA-256 of the SubjectPublicKeyInfo) of each
    /// certificate in a PEM file, for the agent's `relay_spki_sha256`.
    Pin(PinArgs),
    /// Lists a relay's API keys (never a secret), with when each was last used
    /// (an operator key; relay and key as for `sapbridge call`).
    List(ListArgs),
    /// Creates an API key in a relay's store and prints it, once.
    Create(CreateArgs),
    /// Revokes an API key created through the API: refused from then on.
    Revoke(RevokeArgs),
    /// Agent tokens in a relay's store: `tokens list|create|revoke`.
    Tokens(TokensArgs),
}

/// What `sapbridge keys …` does: print text made here, or ask a relay.
#[derive(Debug)]
pub(crate) enum KeysTask {
    /// `new` and `pin`: the text for the terminal.
    Print(Result<String, CliError>),
    /// `list`, `create`, `revoke`, `tokens …`: a request to the admin API.
    Admin(AdminCommand),
}

/// What `sapbridge keys …` is to do.
pub(crate) fn task(args: KeysArgs) -> KeysTask {
    match args.command {
        KeysCommand::List(args) => KeysTask::Admin(AdminCommand::List(Kind::Keys, args)),
        KeysCommand::Create(args) => KeysTask::Admin(AdminCommand::Create(Kind::Keys, args)),
        KeysCommand::Revoke(args) => KeysTask::Admin(AdminCommand::Revoke(Kind::Keys, args)),
        KeysCommand::Tokens(tokens) => KeysTask::Admin(tokens.command.into()),
        command => KeysTask::Print(run(KeysArgs { command })),
    }
}

/// Options of `sapbridge keys pin`.
#[derive(Debug, Args)]
struct PinArgs {
    /// The PEM file: the relay's certificate, optionally followed by its
    /// intermediates (pinning an intermediate's key survives renewing the leaf).
    cert: std::path::PathBuf,
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
    /// Also a webhook secret for the API key (`webhook_secret`, Standard
    /// Webhooks' `whsec_…`): receivers of its calls' webhooks verify with it.
    #[arg(long, conflicts_with = "token")]
    webhook_secret: bool,
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
    let args = match args.command {
        KeysCommand::New(args) => args,
        KeysCommand::Pin(args) => return pin(&args),
        _ => {
            return Err(CliError::Config(
                "this keys command asks a relay (see sapbridge keys --help)".into(),
            ));
        }
    };
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
    let mut text = format!(
        "# The secret, shown this once: give it to {who}.\n{secret}\n\n\
         # For relay.toml (the relay keeps only the hash):\n\
         [[{table}]]\nname = \"{}\"\n{field} = \"{}\"\nsystems = [{}]\n",
        args.name,
        sapbridge_relay::secret_sha256_hex(&secret),
        systems.join(", ")
    );
    if args.webhook_secret {
        // Signing needs the secret itself: it goes into the entry as it is.
        let webhook = sapbridge_relay::new_webhook_secret();
        text.push_str(&format!(
            "# Signs this key's webhooks; give it to whoever receives them (they verify with it).\n\
             webhook_secret = \"{webhook}\"\n"
        ));
    }
    Ok(text)
}

/// The pins of every certificate in the file, the first (the relay's own) first.
fn pin(args: &PinArgs) -> Result<String, CliError> {
    let shown = args.cert.display();
    let pem = std::fs::read(&args.cert).map_err(|e| CliError::Config(format!("{shown}: {e}")))?;
    let pins = sapbridge_agent::pins_of_pem(&pem)
        .map_err(|e| CliError::Config(format!("{shown}: {e}")))?;
    let mut text = format!("# Public key pins of {shown}:\n");
    for (i, (base64, hex)) in pins.iter().enumerate() {
        let which = if i == 0 {
            "certificate"
        } else {
            "intermediate"
        };
        text.push_str(&format!("# {which} {}: {base64} (hex {hex})\n", i + 1));
    }
    let quoted: Vec<String> = pins.iter().map(|(b, _)| format!("\"{b}\"")).collect();
    text.push_str(&format!(
        "# For agent.toml (keep the one you mean to pin; add the next key's before a renewal):\n\
         relay_spki_sha256 = [{}]\n",
        quoted.join(", ")
    ));
    Ok(text)
}
