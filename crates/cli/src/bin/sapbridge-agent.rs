//! `sapbridge-agent`: the on-premises agent alone, the same as `sapbridge agent`.
//! It holds no relay, no simulator server and no `dev` mode, so it is the smaller
//! binary to install next to SAP (less code to trust, less memory: code pages are
//! most of an idle agent's resident memory).

use std::process::ExitCode;

use clap::Parser;
use sapbridge::{AgentArgs, LogArgs};

/// The on-premises side of sapbridge: dials out to the relay and runs calls against
/// SAP under its own allowlist.
#[derive(Debug, Parser)]
#[command(name = "sapbridge-agent", version, long_about = None)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    agent: AgentArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    sapbridge::run_agent(cli.agent)
}
