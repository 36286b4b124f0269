//! How the agent logs what it refuses: one `warn` event, `request refused`, for a
//! function or a table of a unit and for a pass-through path alike, with the same
//! fields — `agent_id`, `system`, what was refused (`function`, `table` or `path`),
//! the request (`call_id` or `stream_id`) and the `reason` sent back — so an
//! operator can watch one event for everything the cloud asked and was denied.
//!
//! Everything but the agent id may come from the relay, so text is logged with
//! control characters escaped (`\n`, `\t`, `\u{1b}`): a refused path cannot forge
//! log lines.

use std::fmt;

use tracing::warn;

/// What was refused, and the request it came in.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Refused<'a> {
    /// A function a unit calls.
    Function {
        /// The unit's call id.
        call_id: &'a str,
        /// The function.
        function: &'a str,
    },
    /// A table a unit reads.
    Table {
        /// The unit's call id.
        call_id: &'a str,
        /// The table.
        table: &'a str,
    },
    /// A pass-through request's path.
    Path {
        /// The pass-through stream.
        stream_id: u64,
        /// The path as the relay sent it.
        path: &'a str,
    },
}

/// One refusal, to log with [`Refusal::log`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refusal<'a> {
    /// The refusing agent's id; `None` where the refusing code does not know it (a
    /// unit for a system this agent does not serve), logged as `unknown`.
    pub(crate) agent_id: Option<&'a str>,
    /// The system the request was for.
    pub(crate) system: &'a str,
    /// What was refused.
    pub(crate) refused: Refused<'a>,
    /// Why, as told to the relay.
    pub(crate) reason: &'a str,
}

impl Refusal<'_> {
    /// Logs the refusal at `warn`.
    pub(crate) fn log(&self) {
        let agent_id = Escaped(self.agent_id.unwrap_or("unknown"));
        let system = Escaped(self.system);
        let reason = Escaped(self.reason);
        match self.refused {
            Refused::Function { call_id, function } => warn!(
                %agent_id, %system, function = %Escaped(function), call_id = %Escaped(call_id),
                %reason, "request refused"
            ),
            Refused::Table { call_id, table } => warn!(
                %agent_id, %system, table = %Escaped(table), call_id = %Escaped(call_id),
                %reason, "request refused"
            ),
            Refused::Path { stream_id, path } => warn!(
                %agent_id, %system, path = %Escaped(path), stream_id, %reason, "request refused"
            ),
        }
    }
}

/// Text with control characters (and the Unicode line separators) escaped.
struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
                write!(f, "{}", c.escape_default())?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
