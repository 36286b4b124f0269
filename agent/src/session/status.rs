//! What the agent tells the relay of its systems ([`AgentMessage::SystemStatus`]):
//! whether each backend that logs on still does, or stopped after SAP refused its
//! password (see `sapbridge_sap::logon_guard`), so `GET /v1/systems` shows it.
//!
//! Sent only to a relay whose welcome names [`FEATURE_SYSTEM_STATUS`] (an older
//! relay would close the session on a message it does not know): once after the
//! welcome, then whenever it changed, looked at after outcomes and on heartbeats.

use std::collections::HashMap;
use std::sync::Arc;

use sapbridge_proto::{
    AgentMessage, FEATURE_SYSTEM_STATUS, LogonStatus, MAX_STATUS_REASON_BYTES, SystemStatus,
};
use sapbridge_sap::SapSystem;
use sapbridge_sap::logon_guard::LogonState;
use tokio::sync::Notify;

use crate::systems::ServedSystem;

/// Reads the logon state of every served system.
#[derive(Clone, Default)]
pub(crate) struct StatusProbe {
    systems: Arc<Vec<(String, Arc<dyn SapSystem>)>>,
    /// Woken when an operator lifted the blocks, so the session reports at once.
    lifted: Arc<Notify>,
}

impl std::fmt::Debug for StatusProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.systems.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("StatusProbe")
            .field("systems", &names)
            .finish()
    }
}

impl StatusProbe {
    /// A probe of the served systems.
    pub(crate) fn new(served: &HashMap<String, ServedSystem>) -> Self {
        let mut systems: Vec<(String, Arc<dyn SapSystem>)> = served
            .values()
            .map(|s| (s.name.clone(), Arc::clone(&s.sap)))
            .collect();
        systems.sort_by(|a, b| a.0.cmp(&b.0));
        Self {
            systems: Arc::new(systems),
            lifted: Arc::default(),
        }
    }

    /// Lifts every system's logon block (an operator's SIGHUP); returns the
    /// systems that had one.
    pub(crate) fn lift_logon_blocks(&self) -> Vec<String> {
        let lifted = self
            .systems
            .iter()
            .filter(|(_, sap)| matches!(sap.logon_state(), Some(LogonState::Blocked { .. })))
            .map(|(name, sap)| {
                sap.lift_logon_block();
                name.clone()
            })
            .collect();
        // One stored permit: the session's loop takes it even if busy right now.
        self.lifted.notify_one();
        lifted
    }

    /// How the systems whose backend logs on stand now.
    fn snapshot(&self) -> Vec<SystemStatus> {
        self.systems
            .iter()
            .filter_map(|(name, sap)| {
                let logon = match sap.logon_state()? {
                    LogonState::Open => LogonStatus::Open,
                    LogonState::Blocked { reason, since } => LogonStatus::Blocked {
                        reason: cut(reason, MAX_STATUS_REASON_BYTES),
                        since,
                    },
                };
                Some(SystemStatus {
                    system: name.clone(),
                    logon,
                })
            })
            .collect()
    }
}

/// Decides when a session sends [`AgentMessage::SystemStatus`].
#[derive(Debug)]
pub(crate) struct StatusReporter {
    /// `None` when the relay does not take the message.
    probe: Option<StatusProbe>,
    /// What the relay was last told.
    sent: Option<Vec<SystemStatus>>,
}

impl StatusReporter {
    /// A reporter for a session whose welcome named `features`.
    pub(crate) fn new(probe: &StatusProbe, features: &[String]) -> Self {
        let taken = features.iter().any(|f| f == FEATURE_SYSTEM_STATUS);
        Self {
            probe: taken.then(|| probe.clone()),
            sent: None,
        }
    }

    /// Resolves when an operator lifted logon blocks (never, for a relay that
    /// does not take the report).
    pub(crate) async fn lifted(&self) {
        match &self.probe {
            Some(probe) => probe.lifted.notified().await,
            None => std::future::pending().await,
        }
    }

    /// The message to send now, if the relay takes it and has not been told
    /// this yet (nothing while no system logs on).
    pub(crate) fn due(&mut self) -> Option<AgentMessage> {
        let now = self.probe.as_ref()?.snapshot();
        if self.sent.as_ref() == Some(&now) || (self.sent.is_none() && now.is_empty()) {
            return None;
        }
        self.sent = Some(now.clone());
        Some(AgentMessage::SystemStatus { systems: now })
    }
}

/// `text` cut to at most `max` bytes at a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_cut_at_a_character_boundary() {
        assert_eq!(cut("ab".into(), 5), "ab");
        assert_eq!(cut("aüb".into(), 2), "a");
        assert_eq!(cut("aüb".into(), 3), "aü");
    }

    #[test]
    fn nothing_goes_to_a_relay_without_the_feature() {
        let mut reporter = StatusReporter::new(&StatusProbe::default(), &["other".into()]);
        assert!(reporter.due().is_none());
    }
}
