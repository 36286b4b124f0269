//! What an agent session needs besides its socket: [`SessionContext`].

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::agents::Hello;
use crate::auth::Hold;
use crate::metrics::Metrics;
use crate::queue::{Claimant, Queue};

/// What a session needs besides its socket.
pub(crate) struct SessionContext {
    /// The session id.
    pub(crate) session_id: String,
    /// What the agent announced (its id is stored with the outcomes it reports).
    pub(crate) hello: Hello,
    /// The systems it runs function calls for: the ones it is sent units of.
    pub(crate) function_systems: Vec<String>,
    /// The queue.
    pub(crate) queue: Arc<dyn Queue>,
    /// Heartbeat interval.
    pub(crate) heartbeat: Duration,
    /// Lease length: how long the agent has for a unit.
    pub(crate) lease: Duration,
    /// How long the leases of this session, when it ends, wait for its agent.
    pub(crate) owner_hold: Duration,
    /// Cancelled on relay shutdown.
    pub(crate) shutdown: CancellationToken,
    /// The relay's metrics.
    pub(crate) metrics: Arc<Metrics>,
    /// The session's hold on its agent token: revoked when the relay's keys no
    /// longer let the token serve one of the session's systems.
    pub(crate) hold: Hold,
    /// Where the ends of the calls this session reports are recorded (none in
    /// tests of the session alone).
    pub(crate) audit: Option<Arc<crate::audit::AuditLog>>,
}

impl SessionContext {
    /// Who this session is when it claims work.
    pub(super) fn claimant(&self) -> Claimant<'_> {
        Claimant {
            session: &self.session_id,
            agent: &self.hello.agent_id,
            takes_in_doubt: self.hello.protocol >= 2,
        }
    }
}
