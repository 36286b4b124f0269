//! A fake agent that answers units with a real SAP simulator
//! (`sapbridge_sap::sim::Simulator` in a temporary SQLite file): calls run in one
//! session in order, a failed call stops the unit, and the commit policy commits
//! (`commit_with_tid`) or rolls back as the real agent's executor does.

use std::time::Duration;

use sapbridge_proto::{
    AgentMessage, CallResult, CommitPolicy, Outcome, RelayMessage, TransactionOutcome, Unit,
};
use sapbridge_sap::SapConnection;
use sapbridge_sap::sim::{SimOptions, Simulator};
use serde_json::Value;
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

/// The first `RETURN` row with TYPE E or A, as the agent checks it.
fn return_error(params: &serde_json::Map<String, Value>) -> Option<String> {
    let rows: Vec<&Value> = match params.get("RETURN") {
        Some(Value::Array(rows)) => rows.iter().collect(),
        Some(row @ Value::Object(_)) => vec![row],
        _ => Vec::new(),
    };
    rows.into_iter()
        .find(|r| matches!(r.get("TYPE").and_then(Value::as_str), Some("E" | "A")))
        .map(|r| {
            r.get("MESSAGE")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        })
}

/// Runs a unit on one simulator session.
pub async fn execute(sim: &Simulator, unit: &Unit) -> Outcome {
    let mut session = match sim.session().await {
        Ok(session) => session,
        Err(error) => return Outcome::Failed { error },
    };
    let transactional = unit.commit != CommitPolicy::None;
    let mut results = Vec::new();
    let mut stop = None;
    for (index, call) in unit.calls.iter().enumerate() {
        match session.call(&call.function, &call.parameters).await {
            Ok(out) => {
                let failed = transactional.then(|| return_error(&out)).flatten();
                results.push(CallResult::Ok(out));
                if let Some(reason) = failed {
                    stop = Some((index, reason));
                    break;
                }
            }
            Err(error) => {
                let reason = error.message.clone();
                results.push(CallResult::Error(error));
                stop = Some((index, reason));
                break;
            }
        }
    }
    let transaction = match (unit.commit, stop) {
        (CommitPolicy::None, _) => None,
        (CommitPolicy::CommitOnSuccess, None) => {
            let result = session.commit_with_tid(&unit.call_id).await;
            Some(TransactionOutcome {
                committed: result.is_ok(),
                failed_call: None,
                reason: None,
                result: Some(match result {
                    Ok(p) => CallResult::Ok(p),
                    Err(e) => CallResult::Error(e),
                }),
            })
        }
        (_, stop) => {
            let rollback = session
                .call("BAPI_TRANSACTION_ROLLBACK", &Default::default())
                .await;
            Some(TransactionOutcome {
                committed: false,
                failed_call: stop.as_ref().map(|(i, _)| *i),
                reason: stop.map(|(_, r)| r),
                result: Some(match rollback {
                    Ok(p) => CallResult::Ok(p),
                    Err(e) => CallResult::Error(e),
                }),
            })
        }
    };
    Outcome::Completed {
        results,
        transaction,
    }
}
