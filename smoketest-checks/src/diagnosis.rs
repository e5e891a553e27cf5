//! [`Diagnosis`]: which network layer failed, what was seen, and what to try next.
//!
//! The DNS, TCP, TLS and HTTP checks all go through the same layers (resolve the name,
//! connect, handshake, ask) and stop at the first that fails. The failure is a
//! `Diagnosis`, which converts into the [`CheckError`] the report shows, so a
//! connection problem reads "DNS resolution failed for `payments.internal`: the name does
//! not exist (NXDOMAIN)" rather than a bare `Connection refused`.
//!
//! # Example
//!
//! ```
//! use smoketest_checks::{Diagnosis, Layer};
//! use smoketest_core::{CheckError, ErrorKind};
//!
//! let diagnosis = Diagnosis::new(
//!     Layer::Tcp,
//!     ErrorKind::TcpRefused,
//!     "TCP connection to 127.0.0.1:9 was refused: nothing listens on that port",
//!     "Check that the upstream is running and listening on port 9.",
//! );
//! let error = CheckError::from(diagnosis);
//! assert_eq!(error.kind(), ErrorKind::TcpRefused);
//! assert_eq!(error.suggestion(), Some("Check that the upstream is running and listening on port 9."));
//! ```

use std::borrow::Cow;
use std::fmt;

use smoketest_core::{CheckError, ErrorKind};

/// The network layer a probe was in when it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Layer {
    /// Resolving the host name.
    Dns,
    /// Opening the TCP connection.
    Tcp,
    /// The TLS handshake, including certificate verification.
    Tls,
    /// Sending the request and reading the response.
    Http,
}

impl Layer {
    /// The layer's name: `dns`, `tcp`, `tls`, `http`.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Dns => "dns",
            Layer::Tcp => "tcp",
            Layer::Tls => "tls",
            Layer::Http => "http",
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a probe failed: the layer, the report's kind, a one-sentence diagnosis and a
/// suggestion. Converts into a [`CheckError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Diagnosis {
    /// The layer that failed.
    pub layer: Layer,
    /// The kind reported in `error.kind`.
    pub kind: ErrorKind,
    /// What was seen, as one sentence naming the host, address or URL.
    pub message: String,
    /// What to try next.
    pub suggestion: Cow<'static, str>,
}

impl Diagnosis {
    /// A diagnosis from its parts.
    pub fn new(
        layer: Layer,
        kind: ErrorKind,
        message: impl Into<String>,
        suggestion: impl Into<Cow<'static, str>>,
    ) -> Self {
        Diagnosis {
            layer,
            kind,
            message: message.into(),
            suggestion: suggestion.into(),
        }
    }
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl From<Diagnosis> for CheckError {
    fn from(d: Diagnosis) -> Self {
        CheckError::new(d.kind, d.message).with_suggestion(d.suggestion)
    }
}

/// Split `host:port`, `[v6]:port` or a bare host (then `default_port`).
pub(crate) fn split_host_port(
    target: &str,
    default_port: Option<u16>,
) -> Result<(String, u16), CheckError> {
    let bad = || {
        CheckError::new(
            ErrorKind::Config,
            format!("`{target}` is not a `host:port` address"),
        )
        .with_suggestion(
            "Write the target as `host:port`, e.g. `db.internal:5432` or `[::1]:6379`.",
        )
    };
    if let Some(rest) = target.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        return match after.strip_prefix(':') {
            Some(port) => Ok((host.to_string(), port.parse().map_err(|_| bad())?)),
            None if after.is_empty() => Ok((host.to_string(), default_port.ok_or_else(bad)?)),
            None => Err(bad()),
        };
    }
    match target.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && !host.is_empty() => {
            Ok((host.to_string(), port.parse().map_err(|_| bad())?))
        }
        _ if !target.is_empty() && !target.contains(':') => {
            Ok((target.to_string(), default_port.ok_or_else(bad)?))
        }
        // A bare IPv6 literal.
        _ if target.parse::<std::net::Ipv6Addr>().is_ok() => {
            Ok((target.to_string(), default_port.ok_or_else(bad)?))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

    #[test]
    fn targets_split_into_host_and_port() {
        let ok = |t: &str, default| split_host_port(t, default).unwrap();
        assert_eq!(ok("db.internal:5432", None), ("db.internal".into(), 5432));
        assert_eq!(ok("[::1]:6379", None), ("::1".into(), 6379));
        assert_eq!(ok("api.internal", Some(443)), ("api.internal".into(), 443));
        assert_eq!(ok("[::1]", Some(443)), ("::1".into(), 443));
        assert_eq!(ok("::1", Some(443)), ("::1".into(), 443));
        for bad in ["db.internal", ":5432", "db:port", "[::1]x", ""] {
            assert!(split_host_port(bad, None).is_err(), "{bad}");
        }
    }
}
