//! Real processes for tests that `kill -9` them: [`Proc`] (a child killed with
//! SIGKILL when dropped, started and waited for until it says it is ready) and
//! [`free_port`] (a loopback port to restart a server on).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// A child process, killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Proc(pub Child);

impl Proc {
    /// Spawns `command` with its stdout read by a thread, and waits up to `within`
    /// for a line of it containing `ready` (its stdout is drained after that, so the
    /// child never blocks on it). Stderr is what `command` says (inherited unless
    /// set).
    ///
    /// # Errors
    /// When it cannot spawn, or exits or stays silent before saying `ready`.
    pub fn spawn_ready(command: &mut Command, ready: &str, within: Duration) -> Result<Self> {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {command:?}"))?;
        let stdout = child.stdout.take().context("the child's stdout")?;
        let (tx, rx) = mpsc::channel();
        let ready = ready.to_owned();
        std::thread::spawn(move || {
            let mut told = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !told && line.contains(&ready) {
                    let _ = tx.send(());
                    told = true;
                }
            }
        });
        let mut proc = Self(child);
        if rx.recv_timeout(within).is_err() {
            let status = proc.exited();
            bail!("{command:?} did not say it was ready within {within:?} (exit: {status:?})");
        }
        Ok(proc)
    }

    /// Spawns `command` with stdout discarded (stderr as `command` says).
    ///
    /// # Errors
    /// When it cannot spawn.
    pub fn spawn(command: &mut Command) -> Result<Self> {
        let child = command
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("spawning {command:?}"))?;
        Ok(Self(child))
    }

    /// Its exit status, if it has exited (by itself: a crash the test did not
    /// cause, when the test did not kill it).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.0.try_wait().ok().flatten()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nobody listens on right now.
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
