//! A fake agent that answers units with a real SAP simulator
//! (`sapbridge_sap::sim::Simulator` in a temporary SQLite file), running each unit
//! with the real agent's executor on one simulator session: calls in order, a
//! failed call or a RETURN error stops the unit, and the commit policy commits
//! (`commit_with_tid`) or rolls back.

use std::time::Duration;

use sapbridge_proto::{AgentMessage, Outcome, RelayMessage, Unit};
use sapbridge_sap::sim::{SimOptions, Simulator};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{FakeAgent, TestRelay};

/// A running simulator-backed agent.
pub struct SimAgent {
    pub sim: Simulator,
    stop: CancellationToken,
    task: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl SimAgent {
    /// Connects an agent serving `system` with a fresh simulator.
    pub async fn start(relay: &TestRelay, agent_id: &str, system: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sim.db");
        let sim = tokio::task::spawn_blocking(move || {
            Simulator::open(&path, SimOptions::default()).expect("simulator")
        })
        .await
        .expect("open simulator");
        let agent = FakeAgent::connect(relay, agent_id, &[system], 8).await;
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(agent, sim.clone(), stop.clone()));
        Self {
            sim,
            stop,
            task,
            _dir: dir,
        }
    }

    /// Disconnects the agent.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn serve(mut agent: FakeAgent, sim: Simulator, stop: CancellationToken) {
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => break,
            message = agent.recv_within(Duration::from_secs(3600)) => message,
        };
        match message {
            Some(RelayMessage::Work { unit }) => {
                let outcome = execute(&sim, &unit).await;
                agent
                    .send(&AgentMessage::Outcome {
                        call_id: unit.call_id.clone(),
                        attempt: unit.attempt,
                        outcome,
                    })
                    .await;
            }
            Some(_) => {}
            None => break,
        }
    }
}

/// Runs a unit on one simulator session with the agent's own executor (the
/// calls in order, then the commit policy), without its allowlist and journal.
pub async fn execute(sim: &Simulator, unit: &Unit) -> Outcome {
    match sim.session().await {
        Ok(mut session) => sapbridge_agent::execute_on_session(&mut session, unit).await,
        Err(error) => Outcome::Failed { error },
    }
}
