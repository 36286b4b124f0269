//! `sapbridge keys list|create|revoke` and `sapbridge keys tokens
//! list|create|revoke`: API keys and agent tokens kept in a relay's store, managed
//! through its admin API (`/v1/admin/keys`, `/v1/admin/agent-tokens`) with an
//! operator key. The relay and key are found as `sapbridge call` finds them
//! (`--url`, `--key-file`, `SAPBRIDGE_URL`, `SAPBRIDGE_API_KEY`, the client file).
//!
//! `create` prints the new secret alone on standard output (so that
//! `KEY=$(sapbridge keys create …)` holds just it) and what it is on standard
//! error; `list` prints a table. A refusal is one line on standard error, with
//! exit code 3 (unknown key, not an operator, no such key), 1 (bad request, name
//! taken), 5 (relay unreachable) or 64 (no relay URL or key).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{
    Answer, ClientArgs, EXIT_FAILED, EXIT_REFUSED, EXIT_UNREACHABLE, Request, exchange,
    http_client, problem_line, resolve, usage,
};

/// What is managed: API keys or agent tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `/v1/admin/keys`.
    Keys,
    /// `/v1/admin/agent-tokens`.
    Tokens,
}

impl Kind {
    fn segment(self) -> &'static str {
        match self {
            Self::Keys => "keys",
            Self::Tokens => "agent-tokens",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Self::Keys => "API key",
            Self::Tokens => "agent token",
        }
    }
}

/// `list`: every key (or token) of the relay.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    client: ClientArgs,
}

/// `create NAME --system …`.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Its name (1 to 64 letters, digits, `.`, `_` or `-`; unique).
    name: String,
    /// A system it may reach (repeatable; for API keys `*` is every system).
    #[arg(long = "system", value_name = "SYSTEM", required = true)]
    systems: Vec<String>,
    /// The operator scope (API keys only): the audit log, every key's calls,
    /// managing keys and tokens, the console.
    #[arg(long)]
    operator: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// `revoke NAME`.
#[derive(Debug, Args)]
pub(crate) struct RevokeArgs {
    /// The name of the key (or token) created through the API.
    name: String,
    #[command(flatten)]
    client: ClientArgs,
}

/// `sapbridge keys tokens …`.
#[derive(Debug, Args)]
pub(crate) struct TokensArgs {
    #[command(subcommand)]
    pub(crate) command: TokensCommand,
}

/// The agent token commands.
#[derive(Debug, Subcommand)]
pub(crate) enum TokensCommand {
    /// Lists the relay's agent tokens (never a secret), with when each was last used.
    List(ListArgs),
    /// Creates an agent token in the relay's store and prints it, once.
    Create(CreateArgs),
    /// Revokes an agent token created through the API: its agents are disconnected.
    Revoke(RevokeArgs),
}

/// One request to the admin API.
#[derive(Debug)]
pub(crate) enum AdminCommand {
    /// `list`.
    List(Kind, ListArgs),
    /// `create`.
    Create(Kind, CreateArgs),
    /// `revoke`.
    Revoke(Kind, RevokeArgs),
}

impl From<TokensCommand> for AdminCommand {
    fn from(command: TokensCommand) -> Self {
        match command {
            TokensCommand::List(args) => Self::List(Kind::Tokens, args),
            TokensCommand::Create(args) => Self::Create(Kind::Tokens, args),
            TokensCommand::Revoke(args) => Self::Revoke(Kind::Tokens, args),
        }
    }
}

/// Runs one admin command against the relay; the process's exit code.
pub(crate) async fn run(command: AdminCommand) -> ExitCode {
    let (kind, client, request) = match request_of(&command) {
        Ok(found) => found,
        Err(message) => return usage(&message),
    };
    let answer = match send(client, &request).await {
        Ok(answer) => answer,
        Err(code) => return code,
    };
    if !answer.status.is_success() {
        eprintln!(
            "sapbridge: {} {}",
            answer.status.as_u16(),
            problem_line(&answer.body)
        );
        return ExitCode::from(match answer.status.as_u16() {
            401 | 403 | 404 => EXIT_REFUSED,
            _ => EXIT_FAILED,
        });
    }
    if client.json_output() {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer.body).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    match &command {
        AdminCommand::List(..) => {
            let items = answer.body["items"].as_array().cloned().unwrap_or_default();
            print!("{}", table(kind, &items));
        }
        AdminCommand::Create(_, args) => {
            let field = if kind == Kind::Keys { "key" } else { "token" };
            let systems = args.systems.join(", ");
            eprintln!(
                "Created {} {:?} for {systems}. The secret below is shown this once \
                 (the relay keeps only its SHA-256):",
                kind.noun(),
                args.name
            );
            println!("{}", answer.body[field].as_str().unwrap_or_default());
        }
        AdminCommand::Revoke(_, args) => {
            let after = if kind == Kind::Keys {
                "refused from now on"
            } else {
                "its agents are disconnected and refused from now on"
            };
            println!("Revoked {} {:?}: {after}.", kind.noun(), args.name);
        }
    }
    ExitCode::SUCCESS
}

fn request_of(command: &AdminCommand) -> Result<(Kind, &ClientArgs, Request), String> {
    Ok(match command {
        AdminCommand::List(kind, args) => (
            *kind,
            &args.client,
            Request::to(Method::GET, &["admin", kind.segment()])?,
        ),
        AdminCommand::Create(kind, args) => {
            let mut request = Request::to(Method::POST, &["admin", kind.segment()])?;
            let mut body = json!({"name": args.name, "systems": args.systems});
            match kind {
                Kind::Keys => body["operator"] = json!(args.operator),
                Kind::Tokens if args.operator => {
                    return Err("--operator is for API keys, not agent tokens".into());
                }
                Kind::Tokens => {}
            }
            request.body = Some(body);
            (*kind, &args.client, request)
        }
        AdminCommand::Revoke(kind, args) => (
            *kind,
            &args.client,
            Request::to(Method::DELETE, &["admin", kind.segment(), &args.name])?,
        ),
    })
}

/// The relay's answer to `request`, or the exit code of why there is none.
async fn send(client: &ClientArgs, request: &Request) -> Result<Answer, ExitCode> {
    let (base, key) = resolve(client).map_err(|message| usage(&message))?;
    let http = http_client().map_err(|error| {
        eprintln!("sapbridge: {error:#}");
        ExitCode::from(EXIT_UNREACHABLE)
    })?;
    let deadline = Instant::now() + Duration::from_secs(client.timeout.max(1));
    exchange(&http, &base, &key, request, deadline)
        .await
        .map_err(|error| {
            eprintln!("sapbridge: {error:#}");
            ExitCode::from(EXIT_UNREACHABLE)
        })
}

/// The listed keys or tokens as a table, one per line.
fn table(kind: Kind, items: &[Value]) -> String {
    let mut header = vec!["NAME", "SOURCE", "SYSTEMS"];
    if kind == Kind::Keys {
        header.push("OPERATOR");
    }
    header.extend(["CREATED", "BY", "REVOKED", "LAST USED"]);
    let text = |item: &Value, field: &str| match item.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => if *b { "yes" } else { "no" }.to_owned(),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        _ => "-".to_owned(),
    };
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for item in items {
        let mut row = vec![
            text(item, "name"),
            text(item, "source"),
            text(item, "systems"),
        ];
        if kind == Kind::Keys {
            row.push(text(item, "operator"));
        }
        for field in ["created_at", "created_by", "revoked_at", "last_used_at"] {
            row.push(text(item, field));
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_print_as_aligned_tables() {
        let items = vec![
            json!({"name": "ops", "source": "configuration", "systems": ["*"], "operator": true,
                   "created_at": null, "created_by": null, "revoked_at": null,
                   "last_used_at": "2026-12-07T17:00:00Z"}),
            json!({"name": "flow-2", "source": "store", "systems": ["PRD", "QAS"],
                   "operator": false, "created_at": "2026-12-07T16:00:00Z",
                   "created_by": "ops", "revoked_at": null, "last_used_at": null}),
        ];
        let text = table(Kind::Keys, &items);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with("NAME    SOURCE         SYSTEMS  OPERATOR"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("ops     configuration  *        yes"),
            "{text}"
        );
        assert!(
            lines[2].contains("PRD,QAS") && lines[2].contains("ops"),
            "{text}"
        );
        let tokens = table(Kind::Tokens, &items[1..]);
        assert!(!tokens.contains("OPERATOR"), "{tokens}");
    }
}
