//! The log both binaries write to stderr: the operator's filter (`--log` /
//! `SAPBRIDGE_LOG`), under a floor that no filter lifts for the dependencies that
//! would write secrets.
//!
//! Our own code logs no secret at any level (keys, tokens and passwords are
//! [`sapbridge_proto::Secret`]s, the relay logs request paths without their query).
//! Some dependencies do, at their most verbose levels, so the floor holds them
//! below those levels even under `SAPBRIDGE_LOG=trace` or a filter naming them.

use clap::Args;
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
}

impl LogArgs {
    /// Logs to stderr through this filter (`info` if it does not parse) and the
    /// floor.
    pub fn init(&self) {
        let filter = EnvFilter::try_new(&self.log).unwrap_or_else(|_| EnvFilter::new("info"));
        // One filter of both, on the layer: the `log` records of dependencies pass
        // it too, and its level hint is the lower of the two, so a quiet filter
        // keeps verbose call sites cheap.
        let layer = fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter.and(floor()));
        tracing_subscriber::registry().with(layer).init();
    }
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
