//! What the message-broker checks ([`amqp`](crate::amqp), [`nats`](crate::nats),
//! [`mqtt`](crate::mqtt)) share: reaching the broker through the DNS and TCP layers of
//! [`diagnosis`](crate::diagnosis) before speaking its protocol, URLs shown without their
//! password, and names no other run uses.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use smoketest_core::CheckError;
use tokio::time::Instant;

/// Resolve `host` and open (then close) a TCP connection to it, so that a name that does
/// not resolve, a refused port and an unanswered one get their own kinds
/// (`dns_failure`, `tcp_refused`, `tcp_timeout`) before the client library hides them
/// behind its own error. `system` (`RabbitMQ`) and `shown` (the redacted URL) prefix the
/// message. Returns the time the connect took.
pub(crate) async fn reach(
    system: &str,
    shown: &str,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<Duration, CheckError> {
    let deadline = Instant::now() + timeout;
    let prefix = |d: crate::Diagnosis| {
        let suggestion = d.suggestion.clone();
        CheckError::new(d.kind, format!("{system} at {shown}: {}", d.message))
            .with_suggestion(suggestion)
    };
    let resolution = crate::dns::resolve(host, port, timeout)
        .await
        .map_err(prefix)?;
    let left = deadline.saturating_duration_since(Instant::now());
    let connection = crate::tcp::connect(host, &resolution.addresses, left)
        .await
        .map_err(prefix)?;
    Ok(connection.elapsed)
}

/// A step's time limit: the instant it ends, and the duration it was given (for messages:
/// "did not finish the login within 500ms", not the few microseconds less left at the end).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limit {
    pub(crate) deadline: Instant,
    pub(crate) allowed: Duration,
}

impl Limit {
    /// `allowed` from now.
    pub(crate) fn new(allowed: Duration) -> Self {
        Limit {
            deadline: Instant::now() + allowed,
            allowed,
        }
    }
}

/// `url` with the password of its user information replaced by `***` (the user name stays:
/// it helps tell which account was refused).
pub(crate) fn redact(url: &str) -> String {
    let Some(scheme) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let user = &rest[..at];
    let user = match user.split_once(':') {
        Some((name, _)) => format!("{name}:***"),
        None => user.to_string(),
    };
    format!("{}{user}{}", &url[..scheme + 3], &rest[at..])
}

/// A name no other run (in this process or another) uses: `{prefix}-{pid}-{nanos}-{n}`.
pub(crate) fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_show_in_broker_urls() {
        assert_eq!(
            redact("amqp://guest:s3cret@mq.internal:5672/%2f"),
            "amqp://guest:***@mq.internal:5672/%2f"
        );
        assert_eq!(
            redact("nats://user@nats.internal:4222"),
            "nats://user@nats.internal:4222"
        );
        assert_eq!(redact("mqtt://127.0.0.1:1883"), "mqtt://127.0.0.1:1883");
        assert_eq!(redact("mqtt://a:b@h/x@y"), "mqtt://a:***@h/x@y");
    }
}
