//! [`CutProxy`]: a TCP proxy on loopback whose connections the test can cut at
//! once, and which can refuse new ones, to break an agent's WebSocket to the relay
//! while the agent itself stays up. In front of several relay replicas it is a
//! load balancer too: each new connection goes to the next replica that accepts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Result;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// A TCP proxy to one target, or balancing over several.
#[derive(Debug)]
pub struct CutProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    accept: JoinHandle<()>,
}

impl CutProxy {
    /// Listens on a free loopback port and forwards every connection to `target`.
    ///
    /// # Errors
    /// When the listener cannot bind.
    pub async fn start(target: SocketAddr) -> Result<Self> {
        Self::balance(vec![target]).await
    }

    /// Listens on a free loopback port and forwards each connection to one of
    /// `targets`, in turn, skipping those that refuse it (a replica that is down),
    /// as a load balancer with health checks does. A connection no target accepts
    /// is closed.
    ///
    /// # Errors
    /// When the listener cannot bind.
    pub async fn balance(targets: Vec<SocketAddr>) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let open = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (gate, registry) = (Arc::clone(&open), Arc::clone(&connections));
        let targets = Arc::new(targets);
        let turn = Arc::new(AtomicUsize::new(0));
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !gate.load(Ordering::SeqCst) {
                    // Closed: the client sees its connection drop before a byte.
                    drop(inbound);
                    continue;
                }
                let (targets, first) = (Arc::clone(&targets), turn.fetch_add(1, Ordering::Relaxed));
                let task = tokio::spawn(async move {
                    for i in 0..targets.len() {
                        let target = targets[(first + i) % targets.len()];
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            return;
                        }
                    }
                });
                let mut all = registry.lock().unwrap_or_else(PoisonError::into_inner);
                all.retain(|h| !h.is_finished());
                all.push(task.abort_handle());
            }
        });
        Ok(Self {
            addr,
            open,
            connections,
            accept,
        })
    }

    /// The agent WebSocket URL of a relay reached through this proxy.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/agent/connect", self.addr)
    }

    /// Drops every proxied connection mid-stream (both sockets close); returns
    /// how many there were.
    pub fn cut(&self) -> usize {
        let mut all = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let live = all.iter().filter(|h| !h.is_finished()).count();
        for handle in all.drain(..) {
            handle.abort();
        }
        live
    }

    /// Refuses new connections from now on (they are closed at once); existing
    /// ones are left alone (see [`CutProxy::cut`]).
    pub fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
