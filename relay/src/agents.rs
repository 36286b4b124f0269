//! The registry of connected agent sessions, for `GET /v1/systems` and metrics.
//!
//! A session registers itself after its hello was accepted and is removed when its
//! socket ends (the [`Registration`] guard does that on drop). Credits and in-flight
//! counts are atomics the session updates as it goes; readers see a recent value.
//! Each session also carries its pass-through [`Tunnel`], where HTTP handlers open
//! streams ([`AgentRegistry::open_stream`] picks the session).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sapbridge_proto::{
    LogonStatus, MAX_STATUS_REASON_BYTES, MAX_STATUS_SINCE_BYTES, SystemCapabilities, SystemStatus,
};
use time::OffsetDateTime;

use crate::passthrough::{OpenStream, Tunnel};

/// What an agent announced in its accepted hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hello {
    /// The protocol version it speaks (this relay's or the one before).
    pub(crate) protocol: u32,
    /// The agent installation's id.
    pub(crate) agent_id: String,
    /// Its software version.
    pub(crate) agent_version: String,
    /// The systems it serves.
    pub(crate) systems: Vec<String>,
    /// What it runs for each system (empty from a protocol 1 agent: everything).
    pub(crate) capabilities: Vec<SystemCapabilities>,
    /// Its initial credits.
    pub(crate) credits: u32,
    /// The sessions it was welcomed to before this one since it started, as it
    /// counts them (0 from agents that do not).
    pub(crate) reconnects: u64,
}

impl Hello {
    /// The systems it runs function calls and units of work for.
    pub(crate) fn function_systems(&self) -> Vec<String> {
        self.systems
            .iter()
            .filter(|s| SystemCapabilities::of(&self.capabilities, s).functions)
            .cloned()
            .collect()
    }

    /// Whether its answers to `RFC_FUNCTION_SEARCH` for `system` list only what
    /// its allowlist lets through (it says so in its hello; older agents do not).
    pub(crate) fn searches_functions(&self, system: &str) -> bool {
        self.systems.iter().any(|s| s == system)
            && SystemCapabilities::of(&self.capabilities, system).function_search
    }

    /// Whether it forwards pass-through requests for `system`.
    pub(crate) fn serves_http(&self, system: &str) -> bool {
        self.systems.iter().any(|s| s == system)
            && SystemCapabilities::of(&self.capabilities, system).http
    }

    /// Checks an agent's [`SystemStatus`] report against this hello: each entry
    /// one of the hello's systems, at most once, with a bounded reason.
    ///
    /// # Errors
    /// What is wrong, for the protocol error that closes the session.
    pub(crate) fn check_status(&self, status: &[SystemStatus]) -> Result<(), String> {
        for (i, entry) in status.iter().enumerate() {
            if !self.systems.contains(&entry.system) {
                return Err(format!(
                    "system_status names {:?}, which the hello did not announce",
                    shown(&entry.system)
                ));
            }
            if status[..i].iter().any(|e| e.system == entry.system) {
                return Err(format!("system_status names {} twice", entry.system));
            }
            if let LogonStatus::Blocked { reason, since } = &entry.logon
                && (reason.len() > MAX_STATUS_REASON_BYTES || since.len() > MAX_STATUS_SINCE_BYTES)
            {
                return Err(format!(
                    "system_status for {}: reason over {MAX_STATUS_REASON_BYTES} or since over \
                     {MAX_STATUS_SINCE_BYTES} bytes",
                    entry.system
                ));
            }
        }
        Ok(())
    }
}

/// At most 64 characters of what an agent sent, for a message.
fn shown(text: &str) -> String {
    text.chars().take(64).collect()
}

/// One connected agent session.
#[derive(Debug)]
pub(crate) struct AgentSession {
    /// The relay-assigned session id.
    pub(crate) session_id: String,
    /// What the agent announced.
    pub(crate) hello: Hello,
    /// When the session was welcomed.
    pub(crate) connected_at: OffsetDateTime,
    credits: AtomicU32,
    in_flight: AtomicU32,
    tunnel: Arc<Tunnel>,
    /// What the agent last said of its systems (checked, see [`check_status`]).
    status: Mutex<Vec<SystemStatus>>,
    /// When the agent last sent a message (a heartbeat, credits, an outcome), in
    /// Unix milliseconds.
    last_heard_ms: std::sync::atomic::AtomicI64,
}

fn unix_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

impl AgentSession {
    /// Notes that the agent just sent a message.
    pub(crate) fn heard(&self) {
        self.last_heard_ms
            .store(unix_ms(OffsetDateTime::now_utc()), Ordering::Relaxed);
    }

    /// When the agent last sent a message (its welcome at first).
    pub(crate) fn last_heard(&self) -> OffsetDateTime {
        let ms = self.last_heard_ms.load(Ordering::Relaxed);
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .unwrap_or(self.connected_at)
    }

    /// Unused credits right now.
    pub(crate) fn credits(&self) -> u32 {
        self.credits.load(Ordering::Relaxed)
    }

    /// Units sent and not yet answered.
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The session's pass-through streams.
    pub(crate) fn tunnel(&self) -> &Arc<Tunnel> {
        &self.tunnel
    }

    /// How the agent last said `system` stands (`None`: never said, or its
    /// backend does not log on).
    pub(crate) fn logon(&self, system: &str) -> Option<LogonStatus> {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|s| s.system == system)
            .map(|s| s.logon.clone())
    }

    /// Keeps what the agent said of its systems, once [`check_status`] passed it.
    pub(crate) fn set_status(&self, status: Vec<SystemStatus>) {
        *self.status.lock().unwrap_or_else(PoisonError::into_inner) = status;
    }

    /// Publishes the session's current counts.
    pub(crate) fn set_counts(&self, credits: u32, in_flight: u32) {
        self.credits.store(credits, Ordering::Relaxed);
        self.in_flight.store(in_flight, Ordering::Relaxed);
    }
}

/// Why no pass-through stream could be opened for a system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoStream {
    /// Agents serving the system are connected, and none of them offers HTTP
    /// pass-through for it (their configuration says no, as their allowlist
    /// would).
    NotOffered,
    /// No agent serving the system is connected.
    NoAgent,
    /// Every agent serving the system carries its most open streams.
    Busy,
}

/// All connected agent sessions of this relay process.
#[derive(Debug, Default)]
pub(crate) struct AgentRegistry {
    sessions: Mutex<HashMap<String, Arc<AgentSession>>>,
}

impl AgentRegistry {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<AgentSession>>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a session; it stays listed until the returned guard is dropped.
    pub(crate) fn register(self: &Arc<Self>, session_id: &str, hello: &Hello) -> Registration {
        let now = OffsetDateTime::now_utc();
        let session = Arc::new(AgentSession {
            session_id: session_id.to_owned(),
            hello: hello.clone(),
            connected_at: now,
            last_heard_ms: std::sync::atomic::AtomicI64::new(unix_ms(now)),
            credits: AtomicU32::new(hello.credits),
            in_flight: AtomicU32::new(0),
            tunnel: Arc::default(),
            status: Mutex::default(),
        });
        self.lock()
            .insert(session_id.to_owned(), Arc::clone(&session));
        Registration {
            registry: Arc::clone(self),
            session,
        }
    }

    /// The sessions serving `system`, oldest first.
    pub(crate) fn serving(&self, system: &str) -> Vec<Arc<AgentSession>> {
        let mut sessions: Vec<_> = self
            .lock()
            .values()
            .filter(|s| s.hello.systems.iter().any(|x| x == system))
            .cloned()
            .collect();
        sessions
            .sort_by(|a, b| (a.connected_at, &a.session_id).cmp(&(b.connected_at, &b.session_id)));
        sessions
    }

    /// The agent installations serving `system`, as `id@version`, sorted and each
    /// once: a change of this list may mean another SAP system behind the name.
    pub(crate) fn versions_serving(&self, system: &str) -> Vec<String> {
        let mut agents: Vec<String> = self
            .serving(system)
            .iter()
            .map(|a| format!("{}@{}", a.hello.agent_id, a.hello.agent_version))
            .collect();
        agents.sort();
        agents.dedup();
        agents
    }

    /// Opens a pass-through stream on the connected session of `system` with the
    /// fewest open streams, among those that offer pass-through for it and carry
    /// fewer than `limit` streams.
    ///
    /// # Errors
    /// [`NoStream`] saying why there is none.
    pub(crate) fn open_stream(
        &self,
        system: &str,
        limit: u32,
    ) -> Result<(Arc<Tunnel>, OpenStream), NoStream> {
        let serving = self.serving(system);
        let mut tunnels: Vec<Arc<Tunnel>> = serving
            .iter()
            .filter(|session| session.hello.serves_http(system))
            .map(|session| Arc::clone(session.tunnel()))
            .filter(|tunnel| !tunnel.is_closed())
            .collect();
        if tunnels.is_empty() {
            return Err(match serving.is_empty() {
                true => NoStream::NoAgent,
                false => NoStream::NotOffered,
            });
        }
        tunnels.sort_by_key(|tunnel| tunnel.in_flight());
        for tunnel in tunnels {
            if let Some(stream) = tunnel.open(limit as usize) {
                return Ok((tunnel, stream));
            }
        }
        Err(NoStream::Busy)
    }

    /// Every connected session, oldest first.
    pub(crate) fn all(&self) -> Vec<Arc<AgentSession>> {
        let mut sessions: Vec<_> = self.lock().values().cloned().collect();
        sessions
            .sort_by(|a, b| (a.connected_at, &a.session_id).cmp(&(b.connected_at, &b.session_id)));
        sessions
    }

    /// How many sessions are connected.
    pub(crate) fn count(&self) -> usize {
        self.lock().len()
    }
}

/// Keeps a session listed; removes it when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    registry: Arc<AgentRegistry>,
    session: Arc<AgentSession>,
}

impl Registration {
    /// The registered session.
    pub(crate) fn session(&self) -> &AgentSession {
        &self.session
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.session.session_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(systems: &[&str], capabilities: Vec<SystemCapabilities>) -> Hello {
        Hello {
            reconnects: 0,
            protocol: sapbridge_proto::PROTOCOL_VERSION,
            agent_id: "a1".into(),
            agent_version: "0.1".into(),
            systems: systems.iter().map(|s| (*s).to_owned()).collect(),
            capabilities,
            credits: 4,
        }
    }

    #[test]
    fn capabilities_say_what_goes_where() {
        let caps = |system: &str, functions, http| SystemCapabilities {
            system: system.into(),
            functions,
            http,
            function_search: functions,
        };
        let v2 = hello(
            &["PRD", "QAS"],
            vec![caps("PRD", true, false), caps("QAS", false, true)],
        );
        assert_eq!(v2.function_systems(), vec!["PRD".to_owned()]);
        assert!(!v2.serves_http("PRD") && v2.serves_http("QAS") && !v2.serves_http("DEV"));
        assert!(v2.searches_functions("PRD") && !v2.searches_functions("QAS"));
        // Protocol 1 agents announce nothing: they take everything for their
        // systems, but do not filter function searches.
        let v1 = hello(&["PRD"], Vec::new());
        assert_eq!(v1.function_systems(), vec!["PRD".to_owned()]);
        assert!(!v1.searches_functions("PRD"));
        assert!(v1.serves_http("PRD") && !v1.serves_http("QAS"));
    }

    #[test]
    fn registration_lists_until_dropped() {
        let registry = Arc::new(AgentRegistry::default());
        let reg = registry.register("s1", &hello(&["PRD"], Vec::new()));
        reg.session().set_counts(3, 1);
        let serving = registry.serving("PRD");
        assert_eq!(serving.len(), 1);
        assert_eq!((serving[0].credits(), serving[0].in_flight()), (3, 1));
        assert!(registry.serving("QAS").is_empty());
        drop(reg);
        assert_eq!(registry.count(), 0);
    }
}
