//! `sapbridge health`: one `GET /readyz` of a relay, for container health checks
//! (the image holds no curl). Exit code 0 when the relay answers 200, 1 otherwise.
//!
//! Without `--url` it asks the relay this environment configures: the address of
//! `SAPBRIDGE_LISTEN` (a wildcard address becomes loopback), as the image's
//! `HEALTHCHECK` runs it beside the relay.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use clap::Args;

use super::CliError;

/// How long the check waits for the connection and for the answer.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Options of `sapbridge health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The address the relay listens on (its `--listen`); a wildcard address
    /// (`0.0.0.0`, `[::]`) is asked on loopback.
    #[arg(long, env = "SAPBRIDGE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// The path asked.
    #[arg(long, default_value = "/readyz")]
    path: String,
}

/// Asks the relay once; `Ok` when it answered 200.
///
/// # Errors
/// [`CliError::Runtime`] naming the address and what it answered (or why not).
pub(crate) fn run(args: &HealthArgs) -> Result<(), CliError> {
    let addr = target(&args.listen)?;
    let fail = |why: String| CliError::Runtime(anyhow::anyhow!("{addr}{}: {why}", args.path));
    let mut socket = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| fail(e.to_string()))?;
    socket
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| socket.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| fail(e.to_string()))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
        args.path
    );
    socket
        .write_all(request.as_bytes())
        .map_err(|e| fail(e.to_string()))?;
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        match socket.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => return Err(fail(e.to_string())),
        }
    }
    let status = String::from_utf8_lossy(&head[..read]);
    let status = status.lines().next().unwrap_or_default();
    if status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200") {
        println!("{addr}{}: {status}", args.path);
        Ok(())
    } else {
        Err(fail(format!("answered {status:?}")))
    }
}

/// The address to ask for a listen address: wildcards become loopback.
fn target(listen: &str) -> Result<SocketAddr, CliError> {
    let mut addr = listen
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| CliError::Config(format!("--listen {listen}: not an address")))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_addresses_are_asked_on_loopback() {
        assert_eq!(
            target("0.0.0.0:8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(target("[::]:9").unwrap(), "[::1]:9".parse().unwrap());
        assert_eq!(
            target("10.0.0.5:80").unwrap(),
            "10.0.0.5:80".parse().unwrap()
        );
        assert!(target("nonsense").is_err());
    }
}
