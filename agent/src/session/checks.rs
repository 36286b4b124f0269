//! Range checks on what the relay sends: every number the agent computes with or
//! keeps, and every identifier it keeps or logs, is checked against an explicit
//! bound before it is used. A value out of range is a protocol violation: the
//! session closes with `CloseReason::ProtocolError` naming the field (the value
//! itself only where it is a number), and the supervisor reconnects.
//!
//! With these bounds the arithmetic the session does on wire values cannot
//! overflow: the heartbeat (at most [`MAX_HEARTBEAT_SECS`]) is doubled and added
//! to an `Instant`, a deadline (at most [`MAX_UNIT_DEADLINE_MS`]) is added to an
//! `Instant`.

use std::time::Duration;

use sapbridge_proto::{
    CloseReason, INITIAL_WINDOW_CHUNKS, MAX_FEATURE_BYTES, MAX_FEATURES, MAX_HEARTBEAT_SECS,
    MAX_UNIT_DEADLINE_MS, PROTOCOL_VERSION, Unit,
};

/// The longest session id or call id accepted, in bytes. The relay's are 34 and 46
/// bytes; a call id is kept per unit (journal, outcome store, credit ledger) and
/// logged on every line about the unit, so a longer one is refused rather than
/// stored.
pub(crate) const MAX_ID_BYTES: usize = 128;

/// Checks a welcome; returns the heartbeat interval to use.
///
/// # Errors
/// The reason to close with: `ProtocolMismatch` when the relay answers with
/// another protocol version than the hello's, `ProtocolError` for a heartbeat
/// outside `1..=MAX_HEARTBEAT_SECS`, a session id that is not an identifier, or
/// more than [`MAX_FEATURES`] features or one longer than [`MAX_FEATURE_BYTES`].
pub(crate) fn welcome(
    protocol: u32,
    session_id: &str,
    heartbeat_secs: u64,
    features: &[String],
) -> Result<Duration, CloseReason> {
    if protocol != PROTOCOL_VERSION {
        return Err(CloseReason::ProtocolMismatch {
            expected: PROTOCOL_VERSION,
            got: protocol,
        });
    }
    if !(1..=MAX_HEARTBEAT_SECS).contains(&heartbeat_secs) {
        return Err(violation(format!(
            "welcome heartbeat_secs {heartbeat_secs} outside 1..={MAX_HEARTBEAT_SECS}"
        )));
    }
    if !is_identifier(session_id) {
        return Err(violation(format!(
            "welcome session_id is not 1 to {MAX_ID_BYTES} printable ASCII characters"
        )));
    }
    if features.len() > MAX_FEATURES || features.iter().any(|f| f.len() > MAX_FEATURE_BYTES) {
        return Err(violation(format!(
            "welcome features: more than {MAX_FEATURES}, or one over {MAX_FEATURE_BYTES} bytes"
        )));
    }
    Ok(Duration::from_secs(heartbeat_secs))
}

/// Checks a unit's call id, attempt and deadline (its system, functions and
/// parameters are the allowlist's business: a unit the agent will not run is
/// answered, not a protocol violation).
///
/// # Errors
/// What is wrong, for a `ProtocolError`.
pub(crate) fn unit(unit: &Unit) -> Result<(), String> {
    call_id("unit", &unit.call_id)?;
    if unit.attempt == 0 {
        return Err(format!(
            "unit {} has attempt 0 (attempts count from 1)",
            unit.call_id
        ));
    }
    if let Some(ms) = unit.deadline_ms
        && ms > MAX_UNIT_DEADLINE_MS
    {
        return Err(format!(
            "unit {} has deadline_ms {ms} beyond {MAX_UNIT_DEADLINE_MS}",
            unit.call_id
        ));
    }
    Ok(())
}

/// Checks the call id of a unit or an ack (`what`): the relay's call ids are
/// identifiers, and the agent keeps and logs them.
///
/// # Errors
/// What is wrong, for a `ProtocolError` (the id itself is not repeated).
pub(crate) fn call_id(what: &str, call_id: &str) -> Result<(), String> {
    if is_identifier(call_id) {
        Ok(())
    } else {
        Err(format!(
            "{what} call_id is not 1 to {MAX_ID_BYTES} printable ASCII characters"
        ))
    }
}

/// Checks a response window grant. A stream's window is [`INITIAL_WINDOW_CHUNKS`]
/// chunks and the relay grants only what it has handed on, so one grant is never
/// larger.
///
/// # Errors
/// What is wrong, for a `ProtocolError`.
pub(crate) fn window(stream_id: u64, chunks: u32) -> Result<(), String> {
    if chunks > INITIAL_WINDOW_CHUNKS {
        return Err(format!(
            "window grant of {chunks} chunks on stream {stream_id} exceeds the window of {INITIAL_WINDOW_CHUNKS}"
        ));
    }
    Ok(())
}

fn violation(detail: String) -> CloseReason {
    CloseReason::ProtocolError { detail }
}

/// 1 to [`MAX_ID_BYTES`] bytes of printable ASCII (no space, no control character):
/// safe to keep, to use as a key and to log.
fn is_identifier(id: &str) -> bool {
    (1..=MAX_ID_BYTES).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use sapbridge_proto::CommitPolicy;

    use super::*;

    fn unit_with(call_id: &str, attempt: u32, deadline_ms: Option<u64>) -> Unit {
        Unit {
            call_id: call_id.into(),
            attempt,
            system: "SIM".into(),
            deadline_ms,
            in_doubt: false,
            calls: Vec::new(),
            commit: CommitPolicy::None,
            traceparent: None,
        }
    }

    #[test]
    fn welcome_heartbeats_outside_the_bounds_are_refused() {
        assert_eq!(welcome(2, "s_1", 15, &[]), Ok(Duration::from_secs(15)));
        assert_eq!(
            welcome(2, "s_1", MAX_HEARTBEAT_SECS, &[]),
            Ok(Duration::from_secs(MAX_HEARTBEAT_SECS))
        );
        for secs in [0, MAX_HEARTBEAT_SECS + 1, 1 << 62, u64::MAX] {
            let Err(CloseReason::ProtocolError { detail }) = welcome(2, "s_1", secs, &[]) else {
                panic!("{secs} accepted");
            };
            assert!(detail.contains("heartbeat_secs"), "{detail}");
        }
    }

    #[test]
    fn welcome_of_another_version_or_with_a_bad_session_id_is_refused() {
        assert_eq!(
            welcome(7, "s_1", 15, &[]),
            Err(CloseReason::ProtocolMismatch {
                expected: PROTOCOL_VERSION,
                got: 7
            })
        );
        let long = "s".repeat(MAX_ID_BYTES + 1);
        for id in ["", "s 1", "s\n1", "s\u{1b}[2J", "sé", long.as_str()] {
            assert!(
                matches!(
                    welcome(2, id, 15, &[]),
                    Err(CloseReason::ProtocolError { .. })
                ),
                "{id:?} accepted"
            );
        }
        assert!(welcome(2, &"s".repeat(MAX_ID_BYTES), 15, &[]).is_ok());
        let known = [
            sapbridge_proto::FEATURE_SYSTEM_STATUS.to_owned(),
            "x".repeat(64),
        ];
        assert!(welcome(2, "s_1", 15, &known).is_ok());
        for features in [vec!["x".repeat(65)], vec!["f".to_owned(); 33]] {
            assert!(
                matches!(
                    welcome(2, "s_1", 15, &features),
                    Err(CloseReason::ProtocolError { .. })
                ),
                "{features:?}"
            );
        }
    }

    #[test]
    fn units_with_bad_ids_attempts_or_deadlines_are_refused() {
        assert!(unit(&unit_with("c_1", 1, None)).is_ok());
        assert!(unit(&unit_with("c_1", u32::MAX, Some(MAX_UNIT_DEADLINE_MS))).is_ok());
        assert!(unit(&unit_with("c_1", 1, Some(0))).is_ok());
        let long = "c".repeat(MAX_ID_BYTES + 1);
        for bad in [
            unit_with("", 1, None),
            unit_with("c\t1", 1, None),
            unit_with(&long, 1, None),
            unit_with("c_1", 0, None),
            unit_with("c_1", 1, Some(MAX_UNIT_DEADLINE_MS + 1)),
            unit_with("c_1", 1, Some(u64::MAX)),
        ] {
            assert!(unit(&bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn acks_name_call_ids() {
        assert!(call_id("ack", "c_01a24e06e204f5d1").is_ok());
        let refused = call_id("ack", "c_1\r\nforged").unwrap_err();
        assert!(refused.starts_with("ack call_id"), "{refused}");
    }

    #[test]
    fn window_grants_beyond_the_window_are_refused() {
        assert!(window(1, 0).is_ok());
        assert!(window(1, INITIAL_WINDOW_CHUNKS).is_ok());
        assert!(window(1, INITIAL_WINDOW_CHUNKS + 1).is_err());
        assert!(window(1, u32::MAX).is_err());
    }
}
