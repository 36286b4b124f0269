//! Protocol version 1, as far as a relay of version 2 still speaks it.
//!
//! Agents live at customers' sites and upgrade late, so a relay serves agents one
//! protocol version behind ([`crate::OLDEST_AGENT_PROTOCOL`]). Version 2 changed
//! only what the relay sends in a unit, so the agent's messages of version 1 decode
//! with the current types (a version 1 hello has no `capabilities`), and only the
//! work frame is encoded differently:
//!
//! | field | version 1 | version 2 |
//! |---|---|---|
//! | deadline | `deadline_unix_ms`: absolute Unix time in ms, `0` none (breaks under clock skew) | `deadline_ms`: ms remaining when the agent receives the unit |
//! | in doubt | absent: the agent cannot be told | `in_doubt` |
//!
//! A version 1 agent therefore must never receive a unit that may have started
//! on another agent: the relay holds such units for version 2 agents (or the agent
//! that ran them before).

use serde::Serialize;

use crate::{CommitPolicy, FunctionCall, UnitRef, WorkFrame};

/// A unit as version 1 encodes it.
#[derive(Serialize)]
struct UnitV1<'a> {
    call_id: &'a str,
    attempt: u32,
    system: &'a str,
    deadline_unix_ms: u64,
    calls: &'a [FunctionCall],
    commit: CommitPolicy,
}

/// `{"type":"work","unit":…}` of version 1.
#[derive(Serialize)]
#[serde(tag = "type", rename = "work")]
struct WorkV1<'a> {
    unit: UnitV1<'a>,
}

/// Encodes a unit as a version 1 work frame: the deadline becomes absolute on the
/// relay's clock `now_unix_ms` (version 1's only way to say it).
pub(crate) fn encode_work(unit: UnitRef<'_>, now_unix_ms: u64) -> WorkFrame {
    let deadline_unix_ms = match unit.deadline_ms {
        None => 0,
        // A deadline of 0 means "none" in version 1: one already passed is sent
        // as the oldest real one instead.
        Some(remaining) => now_unix_ms.saturating_add(remaining).max(1),
    };
    let work = WorkV1 {
        unit: UnitV1 {
            call_id: unit.call_id,
            attempt: unit.attempt,
            system: unit.system,
            deadline_unix_ms,
            calls: unit.calls,
            commit: unit.commit,
        },
    };
    WorkFrame {
        call_id: unit.call_id.to_owned(),
        attempt: unit.attempt,
        // Serializing cannot fail: all map keys are strings.
        text: serde_json::to_string(&work).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(deadline_ms: Option<u64>) -> UnitRef<'static> {
        UnitRef {
            call_id: "c_1",
            attempt: 2,
            system: "SIM",
            deadline_ms,
            in_doubt: false,
            calls: &[],
            commit: CommitPolicy::CommitOnSuccess,
            // Not part of version 1's layout: never sent to such agents.
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        }
    }

    /// The exact layout a version 1 agent decodes (taken from a recorded session).
    #[test]
    fn work_frames_keep_the_version_1_layout() {
        let frame = encode_work(unit(Some(1_500)), 1_000_000);
        assert_eq!(
            frame.text,
            r#"{"type":"work","unit":{"call_id":"c_1","attempt":2,"system":"SIM","deadline_unix_ms":1001500,"calls":[],"commit":"commit_on_success"}}"#
        );
        assert_eq!(
            encode_work(unit(None), 1_000_000).text,
            r#"{"type":"work","unit":{"call_id":"c_1","attempt":2,"system":"SIM","deadline_unix_ms":0,"calls":[],"commit":"commit_on_success"}}"#
        );
        // A deadline already passed stays a deadline (not "none").
        assert!(
            encode_work(unit(Some(0)), 0)
                .text
                .contains(r#""deadline_unix_ms":1,"#)
        );
    }
}
