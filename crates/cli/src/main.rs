//! `sapbridge`: every command in one binary. Parses the command line, sets up
//! tracing and hands over to the command (see the library half of this crate).

use std::process::ExitCode;

use clap::Parser;
use sapbridge::{Command, LogArgs};

/// Outbound-only relay between workflow engines and on-premises SAP systems.
#[derive(Debug, Parser)]
#[command(name = "sapbridge", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    sapbridge::run(cli.command)
}
