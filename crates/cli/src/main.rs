//! `sapbridge`: the one binary. Parses the command line, sets up tracing, loads and
//! validates configuration, binds, and hands over to the relay and agent libraries.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod config_file;
mod shutdown;

/// Outbound-only relay between workflow engines and on-premises SAP systems.
#[derive(Debug, Parser)]
#[command(name = "sapbridge", version, about, long_about = None)]
struct Cli {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info`, `sapbridge_relay=debug`.
    #[arg(long, env = "SAPBRIDGE_LOG", default_value = "info", global = true)]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Everything in one process: a relay, an agent connected to it over a loopback
    /// WebSocket, and the embedded SAP simulator as system `SIM`.
    Dev(cmd::dev::DevArgs),
    /// The cloud side: HTTP API, agent WebSocket endpoint and queue.
    Relay(cmd::relay::RelayArgs),
    /// The on-premises side: dials out to the relay and runs calls against SAP.
    Agent(cmd::agent::AgentArgs),
    /// The SAP simulator as a network SAP system speaking SOAP-RFC, for trying the
    /// `soap` backend without an SAP system.
    Sim(cmd::sim::SimArgs),
}

/// Exit code for bad configuration or usage (BSD `EX_USAGE`).
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    // The agent's and the relay's configurations size their runtime, so they are
    // read first.
    let (command, workers) = match cli.command {
        Command::Agent(args) => match cmd::agent::load(args) {
            Ok(config) => {
                let workers = config.worker_threads;
                (Ready::Agent(Box::new(config)), workers)
            }
            Err(e) => return exit(Err(e)),
        },
        Command::Relay(args) => match cmd::relay::load(args) {
            Ok((config, listen)) => {
                let workers = config.worker_threads;
                (Ready::Relay(Box::new(config), listen), workers)
            }
            Err(e) => return exit(Err(e)),
        },
        Command::Dev(args) => (Ready::Dev(args), 0),
        Command::Sim(args) => (Ready::Sim(args), 0),
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        builder.worker_threads(workers);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sapbridge: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The command runs as a spawned task, not as `block_on`'s own future: that one
    // lives on the main thread, outside the worker pool, so every wake-up of it (the
    // agent's session loop wakes for each message) would cost a thread hand-off.
    let command = runtime.spawn(async move {
        // Each command's future boxed on its own: the task then holds only the one
        // that runs (the `dev` one is far larger than the `agent` one).
        match command {
            Ready::Dev(args) => Box::pin(cmd::dev::run(args)).await,
            Ready::Relay(config, listen) => Box::pin(cmd::relay::run(*config, listen)).await,
            Ready::Agent(config) => Box::pin(cmd::agent::run(*config)).await,
            Ready::Sim(args) => Box::pin(cmd::sim::run(args)).await,
        }
    });
    let result = match runtime.block_on(command) {
        Ok(result) => result,
        Err(e) => Err(cmd::CliError::Runtime(anyhow::anyhow!(
            "the command task failed: {e}"
        ))),
    };
    exit(result)
}

/// A command ready to run: the agent's and the relay's with their configuration
/// loaded (the relay's with the address to listen on).
enum Ready {
    Dev(cmd::dev::DevArgs),
    Relay(Box<sapbridge_relay::RelayConfig>, String),
    Agent(Box<sapbridge_agent::AgentConfig>),
    Sim(cmd::sim::SimArgs),
}

/// The process's exit code for a command's result (the error printed).
fn exit(result: Result<(), cmd::CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(cmd::CliError::Config(message)) => {
            eprintln!("sapbridge: configuration error: {message}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(cmd::CliError::Runtime(e)) => {
            eprintln!("sapbridge: {e:#}");
            ExitCode::FAILURE
        }
    }
}
