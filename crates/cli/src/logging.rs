//! The log both binaries write to stderr: the operator's filter (`--log` /
//! `SAPBRIDGE_LOG`), under a floor that no filter lifts for the dependencies that
//! would write secrets; as text (coloured only on a terminal, and never with
//! `NO_COLOR` set) or as one JSON object per line (`--log-format json`), with the
//! fields of the spans it was written in (`call_id`, `system`, `agent_id`, …).
//!
//! Our own code logs no secret at any level (keys, tokens and passwords are
//! [`sapbridge_proto::Secret`]s, the relay logs request paths without their query).
//! Some dependencies do, at their most verbose levels, so the floor holds them
//! below those levels even under `SAPBRIDGE_LOG=trace` or a filter naming them.

use std::io::IsTerminal;

use clap::{Args, ValueEnum};
use tracing_subscriber::filter::{EnvFilter, FilterExt, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// Dependencies' log targets that write credentials or raw wire bytes, each with
/// the most verbose level it may log at whatever the filter says.
const FLOOR: [(&str, LevelFilter); 2] = [
    // At trace: the agent's WebSocket handshake request as sent, `authorization:
    // Bearer <agent token>` included, and every frame's payload (call parameters,
    // results, pass-through request heads with the client's query string).
    ("tungstenite", LevelFilter::DEBUG),
    // With reqwest's `connection_verbose`: every byte the SOAP-RFC client writes
    // and reads (basic auth, session cookies).
    ("reqwest::connect::verbose", LevelFilter::OFF),
];

/// The log option both binaries take.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info`, `sapbridge_relay=debug`.
    /// Secrets are never logged, at any level.
    #[arg(long, env = "SAPBRIDGE_LOG", default_value = "info", global = true)]
    log: String,
    /// `text` for people, `json` (one object per line) for log collectors.
    #[arg(
        long,
        env = "SAPBRIDGE_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text,
        global = true
    )]
    log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`
    /// (`message` and the event's fields), `span` and `spans` (their fields).
    Json,
}

impl LogArgs {
    /// Logs to stderr through this filter (`info` if it does not parse) and the
    /// floor.
    pub fn init(&self) {
        let filter = EnvFilter::try_new(&self.log).unwrap_or_else(|_| EnvFilter::new("info"));
        // One filter of both, on the layer: the `log` records of dependencies pass
        // it too, and its level hint is the lower of the two, so a quiet filter
        // keeps verbose call sites cheap.
        let filter = filter.and(floor());
        let layer = match self.log_format {
            LogFormat::Json => fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .with_writer(std::io::stderr)
                .with_filter(filter)
                .boxed(),
            LogFormat::Text => fmt::layer()
                .with_ansi(colours())
                .with_writer(std::io::stderr)
                .with_filter(filter)
                .boxed(),
        };
        tracing_subscriber::registry().with(layer).init();
    }
}

/// Colour codes only where a person reads them: stderr is a terminal and
/// `NO_COLOR` is not set (<https://no-color.org>).
fn colours() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Everything at any level, except what [`FLOOR`] holds back.
fn floor() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(FLOOR)
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    #[test]
    fn the_floor_holds_back_only_the_targets_that_write_secrets() {
        let floor = floor();
        for target in [
            "tungstenite::handshake::client",
            "tungstenite::protocol",
            "tungstenite::protocol::frame::frame",
        ] {
            assert!(!floor.would_enable(target, &Level::TRACE), "{target}");
            assert!(floor.would_enable(target, &Level::DEBUG), "{target}");
        }
        assert!(!floor.would_enable("reqwest::connect::verbose", &Level::ERROR));
        for target in [
            "sapbridge_relay::session",
            "sapbridge_agent::session",
            "tokio_tungstenite::compat",
            "tower_http::trace::on_request",
            "reqwest::connect",
            "hyper_util::client::legacy::pool",
        ] {
            assert!(floor.would_enable(target, &Level::TRACE), "{target}");
        }
    }
}
