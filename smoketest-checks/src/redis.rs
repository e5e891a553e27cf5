//! [`RedisCheck`]: a Redis server answers `PING` with `PONG`.
//!
//! The check opens a connection with the [redis](https://docs.rs/redis) crate from a
//! `redis://` URL (password and database included, as the service's own client would),
//! sends `PING` and expects `PONG`. Failures say which step failed: `tcp_refused` (nothing
//! listens), `tcp_timeout` (no connection in time), `dns_failure` (the host does not
//! resolve), `config` (the URL is malformed, or authentication failed or is required),
//! `timeout` (connected, but no answer to `PING`), `error` (anything else). The URL's
//! password never appears in messages.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use smoketest_checks::redis::RedisCheck;
//! use smoketest_core::Smoketest;
//!
//! let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
//! let smoke = Smoketest::builder()
//!     .check(RedisCheck::new(url).name("cache::redis").timeout(Duration::from_secs(2)))
//!     .build()
//!     .unwrap();
//! # let _ = smoke;
//! ```

use std::time::Duration;

use smoketest_core::{CheckError, Context, ErrorKind, Outcome, SmokeCheck};
use tokio::time::Instant;

use crate::meta::{Meta, budget, human, ms};

/// Passes when Redis answers `PING`. See the [module documentation](self).
#[derive(Clone)]
pub struct RedisCheck {
    meta: Meta,
    url: String,
    connect_timeout: Duration,
}

impl std::fmt::Debug for RedisCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCheck")
            .field("meta", &self.meta)
            .field("url", &redact(&self.url))
            .finish()
    }
}

/// The URL with its user information (the password) replaced by `***`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

impl RedisCheck {
    /// Ping the server at `url` (`redis://[:password@]host[:port][/db]`). Named
    /// `redis::ping`, tagged `redis`.
    pub fn new(url: impl Into<String>) -> Self {
        RedisCheck {
            meta: Meta::external("redis::ping", "redis"),
            url: url.into(),
            connect_timeout: Duration::from_secs(3),
        }
    }

    /// How long connecting may take (default 3 s, never past the check's deadline).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

meta_builders!(RedisCheck);

/// Resolve and connect before speaking Redis, so DNS, refused and unanswered connections
/// get their own kinds.
async fn reach(shown: &str, host: &str, port: u16, timeout: Duration) -> Result<(), CheckError> {
    let lookup = tokio::net::lookup_host((host, port));
    let addresses: Vec<_> = match tokio::time::timeout(timeout, lookup).await {
        Ok(Ok(addresses)) => addresses.collect(),
        Ok(Err(e)) => {
            return Err(CheckError::new(
                ErrorKind::DnsFailure,
                format!("Redis host `{host}` of {shown} does not resolve: {e}"),
            ));
        }
        Err(_) => {
            return Err(CheckError::new(
                ErrorKind::DnsFailure,
                format!(
                    "Redis host `{host}` of {shown} did not resolve within {}",
                    human(timeout)
                ),
            ));
        }
    };
    let mut refused = false;
    for address in &addresses {
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => refused = true,
            Ok(Err(_)) => {}
            Err(_) => break,
        }
    }
    if refused {
        return Err(CheckError::new(
            ErrorKind::TcpRefused,
            format!("Redis at {shown} refused the connection: nothing listens there"),
        )
        .with_suggestion(
            "Check that Redis is running and that the URL's host and port are right.",
        ));
    }
    Err(CheckError::new(
        ErrorKind::TcpTimeout,
        format!(
            "Redis at {shown} did not accept a TCP connection within {}",
            human(timeout)
        ),
    ))
}

const TIMEOUT_SUGGESTION: &str = "Redis is blocked or overloaded: check for slow commands (SLOWLOG), memory and persistence (fork) pauses.";

fn diagnose(shown: &str, error: &redis::RedisError) -> CheckError {
    if error.is_connection_refusal() {
        return CheckError::new(
            ErrorKind::TcpRefused,
            format!("Redis at {shown} refused the connection: nothing listens there"),
        )
        .with_suggestion(
            "Check that Redis is running and that the URL's host and port are right.",
        );
    }
    if matches!(error.code(), Some("NOAUTH" | "WRONGPASS"))
        || error.kind() == redis::ErrorKind::AuthenticationFailed
    {
        return CheckError::new(
            ErrorKind::Config,
            format!("Redis at {shown} rejected the connection's authentication: {}", error.detail().unwrap_or(error.code().unwrap_or("authentication failed"))),
        )
        .with_suggestion("Check the password (and user) in the Redis URL against the server's requirepass or ACL.");
    }
    if error.is_timeout() {
        return CheckError::new(
            ErrorKind::Timeout,
            format!("Redis at {shown} did not answer in time: {error}"),
        )
        .with_suggestion(TIMEOUT_SUGGESTION);
    }
    let text = error.to_string();
    CheckError::error(format!("Redis at {shown} failed: {text}"))
}

#[async_trait::async_trait]
impl SmokeCheck for RedisCheck {
    meta_methods!();

    async fn run(&self, ctx: &mut Context) -> smoketest_core::Result {
        let shown = redact(&self.url);
        let client = redis::Client::open(self.url.as_str()).map_err(|e| {
            CheckError::new(
                ErrorKind::Config,
                format!(
                    "`{shown}` is not a usable Redis URL: {}",
                    e.detail().unwrap_or("malformed")
                ),
            )
            .with_suggestion("Write the URL as redis://[:password@]host[:port][/db].")
        })?;
        let timeout = self.connect_timeout.min(budget(ctx));
        let started = Instant::now();
        if let redis::ConnectionAddr::Tcp(host, port)
        | redis::ConnectionAddr::TcpTls { host, port, .. } = client.get_connection_info().addr()
        {
            reach(&shown, host, *port, timeout).await?;
        }
        let timeout = self.connect_timeout.min(budget(ctx));
        let connecting = client.get_multiplexed_async_connection();
        let mut connection = match tokio::time::timeout(timeout, connecting).await {
            Err(_) => {
                return Err(CheckError::new(
                    ErrorKind::Timeout,
                    format!(
                        "Redis at {shown} accepted the TCP connection but did not complete the Redis handshake within {}",
                        human(timeout)
                    ),
                )
                .with_suggestion(TIMEOUT_SUGGESTION));
            }
            Ok(Err(e)) => return Err(diagnose(&shown, &e)),
            Ok(Ok(connection)) => connection,
        };
        ctx.observe("connect_ms", ms(started.elapsed()));
        let timeout = budget(ctx);
        let started = Instant::now();
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(&mut connection);
        let reply = match tokio::time::timeout(timeout, ping).await {
            Err(_) => {
                return Err(CheckError::new(
                    ErrorKind::Timeout,
                    format!("Redis at {shown} accepted the connection but did not answer PING within {}", human(timeout)),
                )
                .with_suggestion(TIMEOUT_SUGGESTION));
            }
            Ok(Err(e)) => return Err(diagnose(&shown, &e)),
            Ok(Ok(reply)) => reply,
        };
        ctx.observe("ping_ms", ms(started.elapsed()));
        if reply != "PONG" {
            return Err(CheckError::error(format!(
                "Redis at {shown} answered PING with `{reply}`, expected `PONG`"
            )));
        }
        Ok(Outcome::Pass)
    }
}
