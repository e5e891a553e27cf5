//! [`TcpCheck`]: a TCP port accepts connections, after its host name resolves.
//!
//! The check resolves the host as [`dns`](crate::dns) does, then connects to each address
//! in turn until one accepts. A port nobody listens on (`tcp_refused`) and a connection
//! never answered — a firewall dropping packets, a full accept queue, an unreachable
//! network — (`tcp_timeout`) are told apart, and neither shares a kind with a DNS failure.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use smoketest_checks::tcp::TcpCheck;
//! use smoketest_core::{Context, ErrorKind, SmokeCheck};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let port = listener.local_addr().unwrap().port();
//! let check = TcpCheck::new(format!("localhost:{port}")).connect_timeout(Duration::from_secs(2));
//! let mut ctx = Context::detached("tcp", Duration::from_secs(5));
//! check.run(&mut ctx).await.unwrap();
//!
//! drop(listener);
//! let error = check.run(&mut ctx).await.unwrap_err();
//! assert_eq!(error.kind(), ErrorKind::TcpRefused);
//! # }
//! ```

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use smoketest_core::{CheckError, Context, ErrorKind, Outcome, SmokeCheck};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::diagnosis::{Diagnosis, Layer, split_host_port};
use crate::meta::{Meta, budget, human, ms, name_part};

/// An open connection and how it was made.
#[derive(Debug)]
#[non_exhaustive]
pub struct Connection {
    /// The connected stream.
    pub stream: TcpStream,
    /// The address that accepted.
    pub remote: SocketAddr,
    /// How long the successful connect took.
    pub elapsed: Duration,
}

/// Connect to the first of `addresses` that accepts, trying them in order within
/// `timeout` in all (each gets an equal share of what is left). `host` names the target in
/// the diagnosis.
pub async fn connect(
    host: &str,
    addresses: &[SocketAddr],
    timeout: Duration,
) -> Result<Connection, Diagnosis> {
    let deadline = Instant::now() + timeout;
    let mut refused = Vec::new();
    let mut other = Vec::new();
    let mut timed_out = Vec::new();
    for (i, &address) in addresses.iter().enumerate() {
        let started = Instant::now();
        // Share what is left among the addresses still to try, so one blackholed address
        // (an IPv6 route that drops packets, say) cannot use up the time of the others.
        let share = deadline.saturating_duration_since(started) / (addresses.len() - i) as u32;
        match tokio::time::timeout(share, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                return Ok(Connection {
                    stream,
                    remote: address,
                    elapsed: started.elapsed(),
                });
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => refused.push(address),
            Ok(Err(e)) => other.push((address, e)),
            Err(_) => timed_out.push(address),
        }
    }
    let list = |addresses: &[SocketAddr]| {
        addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let port = addresses.first().map(|a| a.port()).unwrap_or_default();
    let named = if addresses.iter().any(|a| a.ip().to_string() == host) {
        String::new()
    } else {
        format!(" (for `{host}`)")
    };
    if !refused.is_empty() && timed_out.is_empty() && other.is_empty() {
        return Err(Diagnosis::new(
            Layer::Tcp,
            ErrorKind::TcpRefused,
            format!(
                "TCP connection to {}{named} was refused: nothing listens on port {port}",
                list(&refused)
            ),
            format!(
                "Check that the upstream is running and listening on port {port}, and that the port in the address is right."
            ),
        ));
    }
    if let Some((address, e)) = other.first() {
        let what = match e.kind() {
            io::ErrorKind::HostUnreachable => "the host is unreachable (no route)".to_string(),
            io::ErrorKind::NetworkUnreachable => "the network is unreachable".to_string(),
            _ => e.to_string(),
        };
        if timed_out.is_empty() {
            return Err(Diagnosis::new(
                Layer::Tcp,
                ErrorKind::TcpTimeout,
                format!("TCP connection to {address}{named} failed: {what}"),
                "Check routing and firewalls between this host and the upstream, and that the address is the one the upstream listens on.",
            ));
        }
    }
    Err(Diagnosis::new(
        Layer::Tcp,
        ErrorKind::TcpTimeout,
        format!(
            "TCP connection to {}{named} was not answered within {}",
            list(if timed_out.is_empty() {
                addresses
            } else {
                &timed_out
            }),
            human(timeout)
        ),
        "The connection was never answered: check firewalls and security groups between this host and the upstream, and whether the upstream is overloaded (full accept queue).",
    ))
}

/// Passes when a TCP connection to `host:port` opens. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct TcpCheck {
    meta: Meta,
    target: String,
    connect_timeout: Duration,
}

impl TcpCheck {
    /// Check `host:port` (`db.internal:5432`, `[::1]:6379`). Named `tcp::{target}`,
    /// tagged `tcp`.
    pub fn new(target: impl Into<String>) -> Self {
        let target = target.into();
        TcpCheck {
            meta: Meta::external(format!("tcp::{}", name_part(&target)), "tcp"),
            target,
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// How long name resolution and the connect may each take (default 5 s, and never
    /// past the check's deadline).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

meta_builders!(TcpCheck);

#[async_trait::async_trait]
impl SmokeCheck for TcpCheck {
    meta_methods!();

    async fn run(&self, ctx: &mut Context) -> smoketest_core::Result {
        let (host, port) = split_host_port(&self.target, None)?;
        let timeout = self.connect_timeout.min(budget(ctx));
        let resolution = crate::dns::resolve(&host, port, timeout).await?;
        ctx.observe("dns_ms", ms(resolution.elapsed));
        let timeout = self.connect_timeout.min(budget(ctx));
        let connection = connect(&host, &resolution.addresses, timeout)
            .await
            .map_err(CheckError::from)?;
        ctx.observe("connect_ms", ms(connection.elapsed));
        ctx.observe("remote", connection.remote.to_string());
        Ok(Outcome::Pass)
    }
}
