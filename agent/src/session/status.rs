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

    /// An operator's SIGHUP: lifts every system's logon block and forgets the
    /// cached function interfaces; returns the systems that had a block.
    pub(crate) fn reload(&self) -> Vec<String> {
        let mut lifted = Vec::new();
        for (name, sap) in self.systems.iter() {
            if matches!(sap.logon_state(), Some(LogonState::Blocked { .. })) {
                lifted.push(name.clone());
            }
            sap.lift_logon_block();
            sap.forget_metadata();
        }
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

    /// A backend whose logon is blocked until lifted, counting what it is told.
    #[derive(Default)]
    struct Guarded {
        blocked: std::sync::Mutex<bool>,
        forgotten: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl SapSystem for Guarded {
        async fn connect(
            &self,
        ) -> Result<Box<dyn sapbridge_sap::SapConnection>, sapbridge_proto::RfcError> {
            unreachable!("never connected")
        }
        fn logon_state(&self) -> Option<LogonState> {
            Some(if *self.blocked.lock().unwrap() {
                LogonState::Blocked {
                    reason: "Name or password is incorrect".into(),
                    since: "2026-12-07T04:00:00Z".into(),
                }
            } else {
                LogonState::Open
            })
        }
        fn lift_logon_block(&self) {
            *self.blocked.lock().unwrap() = false;
        }
        fn forget_metadata(&self) {
            self.forgotten
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_reload_lifts_blocks_forgets_interfaces_and_reports_at_once() {
        let backend = Arc::new(Guarded::default());
        *backend.blocked.lock().unwrap() = true;
        let probe = StatusProbe {
            systems: Arc::new(vec![(
                "PRD".to_owned(),
                backend.clone() as Arc<dyn SapSystem>,
            )]),
            lifted: Arc::default(),
        };
        let mut reporter = StatusReporter::new(&probe, &[FEATURE_SYSTEM_STATUS.to_owned()]);
        let Some(AgentMessage::SystemStatus { systems }) = reporter.due() else {
            panic!("a first report");
        };
        assert!(matches!(systems[0].logon, LogonStatus::Blocked { .. }));
        assert!(reporter.due().is_none(), "nothing new");

        assert_eq!(probe.reload(), vec!["PRD".to_owned()]);
        assert_eq!(
            backend.forgotten.load(std::sync::atomic::Ordering::SeqCst),
            1
        );
        tokio::time::timeout(std::time::Duration::from_secs(5), reporter.lifted())
            .await
            .expect("the session is woken");
        let Some(AgentMessage::SystemStatus { systems }) = reporter.due() else {
            panic!("a report of the lifted block");
        };
        assert_eq!(systems[0].logon, LogonStatus::Open);
    }

    #[test]
    fn nothing_goes_to_a_relay_without_the_feature() {
        let mut reporter = StatusReporter::new(&StatusProbe::default(), &["other".into()]);
        assert!(reporter.due().is_none());
    }
}
