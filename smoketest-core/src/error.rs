//! What a check returns: an [`Outcome`] when it completes, a [`CheckError`] when it fails.
//!
//! A failure carries an [`ErrorKind`] from a closed, documented set, a sentence a person
//! reads, and optionally a suggestion of what to try next. Any `std::error::Error` converts
//! into a [`CheckError`] of kind [`ErrorKind::Error`] with `?`, so checks read like ordinary
//! async code; the [`ensure!`](crate::ensure), [`ensure_eq!`](crate::ensure_eq) and
//! [`fail!`](crate::fail) macros produce [`ErrorKind::Assertion`] failures whose message shows
//! the values involved.
//!
//! # Example
//!
//! ```
//! use smoketest_core::{ensure_eq, CheckError, ErrorKind, Outcome, ResultExt};
//!
//! fn count_rows(found: u64) -> smoketest_core::Result {
//!     ensure_eq!(found, 1, "rows inserted");
//!     Ok(Outcome::Pass)
//! }
//!
//! let err = count_rows(0).unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::Assertion);
//! assert_eq!(err.message(), "rows inserted: expected 1, found 0");
//!
//! // Any std error converts with `?`; `.context()` says what was being done.
//! let parsed: Result<u32, CheckError> = "x".parse::<u32>().context("parsing the limit");
//! assert_eq!(parsed.unwrap_err().message(), "parsing the limit: invalid digit found in string");
//! ```

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The result type of a smoke check: `Ok` with an [`Outcome`], or `Err` with a [`CheckError`].
pub type Result<T = Outcome, E = CheckError> = std::result::Result<T, E>;

/// How a check that did not fail ended.
///
/// `()` converts into [`Outcome::Pass`], so a `#[smoketest::check]` fn may also return
/// `smoketest::Result<()>` and end with `Ok(())`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Everything worked.
    Pass,
    /// It works, but degraded (disk nearly full, a certificate expiring soon). Warnings do not
    /// fail the run; the message says what is degraded.
    Warn(String),
    /// The check did not apply and did not run (a feature switched off, nothing configured).
    /// The message says why.
    Skip(String),
}

impl Outcome {
    /// A warning: the check passes, degraded, with a message saying what is degraded.
    pub fn warn(message: impl Into<String>) -> Self {
        Outcome::Warn(message.into())
    }

    /// A skip: the check did not apply, with the reason.
    pub fn skip(reason: impl Into<String>) -> Self {
        Outcome::Skip(reason.into())
    }
}

impl From<()> for Outcome {
    fn from((): ()) -> Self {
        Outcome::Pass
    }
}

/// The closed set of failure kinds, as they appear in `error.kind` of the report.
///
/// Pipelines and monitors match on these strings, so a kind is never renamed; new built-in
/// checks may add kinds (the enum is `#[non_exhaustive]`). Each kind has a default
/// suggestion ([`ErrorKind::default_suggestion`]) used when the failure brings none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// A condition the check asserted was false (`ensure!`, `ensure_eq!`, `fail!`).
    Assertion,
    /// An unexpected error (anything converted with `?`).
    Error,
    /// The check did not finish within its timeout or the run's deadline.
    Timeout,
    /// The check panicked; the message is the panic message.
    Panic,
    /// A name did not resolve.
    DnsFailure,
    /// The TCP connection was refused (nothing listens on that port).
    TcpRefused,
    /// The TCP connection was not answered in time (firewall, routing, overloaded host).
    TcpTimeout,
    /// The TLS handshake failed (expired, untrusted or mismatched certificate, protocol).
    TlsError,
    /// An HTTP server answered with an unexpected status code.
    HttpStatus,
    /// An HTTP server answered, but the body was not what the check expected.
    BodyMismatch,
    /// The database could not be reached or gave no connection in time.
    DbUnavailable,
    /// A check committed its database transaction behind the runner's back.
    Committed,
    /// A deferred cleanup (`Context::defer`) failed, panicked, or did not finish within the
    /// cleanup time limit after the check ran.
    Cleanup,
    /// An earlier instance of this check was still running after its run had answered (it
    /// ignored its timeout, or its cleanup did), so this run did not start a second copy.
    Overrun,
    /// A required resource was not configured (a missing pool, a missing variable).
    Config,
    /// A system resource is exhausted or unusable (disk, memory, a directory).
    Resource,
    /// A program or server runs an older version than the check requires.
    Version,
    /// The check passed but took longer than its latency budget (`warn_after`): reported
    /// on a `warn`, never on a `fail`.
    Slow,
    /// A server rejected the credentials (user name, password, token) it was given.
    Auth,
    /// A message broker was reached and logged into, but refused or failed the round trip
    /// (an unknown virtual host or stream, a message that never came back).
    Broker,
}

impl ErrorKind {
    /// The kind's name as it appears in reports (`"dns_failure"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Assertion => "assertion",
            ErrorKind::Error => "error",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Panic => "panic",
            ErrorKind::DnsFailure => "dns_failure",
            ErrorKind::TcpRefused => "tcp_refused",
            ErrorKind::TcpTimeout => "tcp_timeout",
            ErrorKind::TlsError => "tls_error",
            ErrorKind::HttpStatus => "http_status",
            ErrorKind::BodyMismatch => "body_mismatch",
            ErrorKind::DbUnavailable => "db_unavailable",
            ErrorKind::Committed => "committed",
            ErrorKind::Cleanup => "cleanup",
            ErrorKind::Overrun => "overrun",
            ErrorKind::Config => "config",
            ErrorKind::Resource => "resource",
            ErrorKind::Version => "version",
            ErrorKind::Slow => "slow",
            ErrorKind::Auth => "auth",
            ErrorKind::Broker => "broker",
        }
    }

    /// A plain-English suggestion for this kind, used when the failure has no better one.
    pub fn default_suggestion(self) -> Option<&'static str> {
        Some(match self {
            ErrorKind::Assertion => return None,
            ErrorKind::Error => return None,
            ErrorKind::Timeout => {
                "The check did not finish in time: look for a slow dependency or a lock, or raise this check's timeout if the work is legitimately slow."
            }
            ErrorKind::Panic => {
                "The check's code panicked: this is a bug in the check or the code it calls; see the panic message and the service log."
            }
            ErrorKind::DnsFailure => {
                "Check the host name for typos and that this host uses the resolver that knows it (internal DNS, VPN, /etc/resolv.conf)."
            }
            ErrorKind::TcpRefused => {
                "Nothing listens on that port: check that the upstream is running and the port is right."
            }
            ErrorKind::TcpTimeout => {
                "The connection was never answered: check firewalls, security groups and routing between this host and the upstream."
            }
            ErrorKind::TlsError => {
                "Check the server's certificate (expiry, issuer, names it covers) and that this host trusts its CA."
            }
            ErrorKind::HttpStatus => "The upstream answered with an error status: see its logs.",
            ErrorKind::BodyMismatch => {
                "The upstream answered, but not with what was expected: check that the URL points at the right service and version."
            }
            ErrorKind::DbUnavailable => {
                "Check that the database is running and reachable from this host, and that the pool is not exhausted by long-running queries."
            }
            ErrorKind::Committed => {
                "Remove COMMIT and DDL (which commits implicitly on MySQL) from the check: smoke checks must leave no trace."
            }
            ErrorKind::Cleanup => {
                "A cleanup registered with ctx.defer failed or did not finish within the cleanup time limit (SmoketestBuilder::cleanup_timeout): something the check created may remain; see the message."
            }
            ErrorKind::Overrun => {
                "An earlier run of this check is still running past its timeout: the check (or its cleanup) does not give way to cancellation, usually blocking work on an async thread (move it to tokio::task::spawn_blocking) or a call without a timeout of its own. This clears when that instance ends; smoketest_checks_overrunning counts them."
            }
            ErrorKind::Config => "Configure the missing resource when building the Smoketest.",
            ErrorKind::Resource => {
                "Free up or enlarge the resource, or check the path and its permissions."
            }
            ErrorKind::Version => {
                "Upgrade the program or server to at least the required version, or check that the intended installation is the one found."
            }
            ErrorKind::Slow => {
                "The check works but is slower than its budget: look for a slow query, a cold cache or a saturated dependency before it becomes a timeout."
            }
            ErrorKind::Auth => {
                "Check the user name and password (or token) the service is configured with against the server's users and permissions; were they rotated?"
            }
            ErrorKind::Broker => {
                "The broker answered but did not complete the round trip: see the message, the broker's logs and its resource alarms (memory, disk)."
            }
        })
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a check failed: a kind, a message and an optional suggestion.
///
/// Build one with [`CheckError::assertion`], [`CheckError::new`] or `?` on any standard
/// error. Like `anyhow::Error`, `CheckError` deliberately does not implement
/// `std::error::Error`, so that every error converts into it.
#[derive(Clone, PartialEq, Eq)]
pub struct CheckError {
    kind: ErrorKind,
    message: String,
    suggestion: Option<Cow<'static, str>>,
}

impl CheckError {
    /// A failure of the given kind with the given message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CheckError {
            kind,
            message: message.into(),
            suggestion: None,
        }
    }

    /// A failed assertion.
    pub fn assertion(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Assertion, message)
    }

    /// An unexpected error.
    pub fn error(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Error, message)
    }

    /// Attach what to try next. Replaces the kind's default suggestion.
    pub fn with_suggestion(mut self, suggestion: impl Into<Cow<'static, str>>) -> Self {
        self.suggestion = Some(suggestion.into());
        self
    }

    /// Prefix the message with what was being done (`"inserting into orders: …"`).
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The sentence a person reads.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What to try next: the failure's own suggestion, else the kind's default.
    pub fn suggestion(&self) -> Option<&str> {
        self.suggestion
            .as_deref()
            .or_else(|| self.kind.default_suggestion())
    }
}

impl fmt::Debug for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("suggestion", &self.suggestion())
            .finish()
    }
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl<E> From<E> for CheckError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(error: E) -> Self {
        // Database errors get their own kinds (`db_unavailable`, `timeout`) and suggestions.
        #[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
        if let Some(error) = (&error as &dyn std::any::Any).downcast_ref::<sqlx::Error>() {
            return crate::db::classify(error);
        }
        CheckError::error(error_chain(&error))
    }
}

/// Render an error with its sources: `"outer: middle: inner"`, skipping a source whose text
/// the outer message already contains (many libraries repeat it).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() && !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    message
}

/// Adds [`context`](ResultExt::context) to any `Result` whose error converts into a
/// [`CheckError`].
pub trait ResultExt<T> {
    /// On error, convert it into a [`CheckError`] whose message starts with `context`.
    fn context<C: fmt::Display>(self, context: C) -> Result<T, CheckError>;

    /// Like [`context`](ResultExt::context), computing the context only on error.
    fn with_context<C: fmt::Display, F: FnOnce() -> C>(self, f: F) -> Result<T, CheckError>;
}

impl<T, E: Into<CheckError>> ResultExt<T> for std::result::Result<T, E> {
    fn context<C: fmt::Display>(self, context: C) -> Result<T, CheckError> {
        self.map_err(|e| e.into().context(context))
    }

    fn with_context<C: fmt::Display, F: FnOnce() -> C>(self, f: F) -> Result<T, CheckError> {
        self.map_err(|e| e.into().context(f()))
    }
}

/// Fail the check with an [`ErrorKind::Assertion`] unless the condition holds.
///
/// Without a message, the failure quotes the condition.
///
/// ```
/// # use smoketest_core::{ensure, Outcome};
/// fn check(free_mib: u64) -> smoketest_core::Result {
///     ensure!(free_mib > 100, "only {free_mib} MiB free, want more than 100");
///     ensure!(free_mib < 1_000_000);
///     Ok(Outcome::Pass)
/// }
/// assert_eq!(check(5).unwrap_err().message(), "only 5 MiB free, want more than 100");
/// assert_eq!(check(2_000_000).unwrap_err().message(), "condition failed: `free_mib < 1_000_000`");
/// ```
#[macro_export]
macro_rules! ensure {
    ($cond:expr $(,)?) => {
        if !$cond {
            return ::core::result::Result::Err($crate::CheckError::assertion(
                ::core::concat!("condition failed: `", ::core::stringify!($cond), "`"),
            ));
        }
    };
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return ::core::result::Result::Err($crate::CheckError::assertion(
                ::std::format!($($arg)+),
            ));
        }
    };
}

/// Fail the check unless `found == expected`, with a message showing both values.
///
/// ```
/// # use smoketest_core::{ensure_eq, Outcome};
/// fn check(rows: u64) -> smoketest_core::Result {
///     ensure_eq!(rows, 1, "rows inserted");
///     Ok(Outcome::Pass)
/// }
/// assert_eq!(check(0).unwrap_err().message(), "rows inserted: expected 1, found 0");
///
/// fn bare(status: u16) -> smoketest_core::Result {
///     ensure_eq!(status, 200);
///     Ok(Outcome::Pass)
/// }
/// assert_eq!(bare(503).unwrap_err().message(), "`status`: expected 200, found 503");
/// ```
#[macro_export]
macro_rules! ensure_eq {
    ($found:expr, $expected:expr $(,)?) => {
        match (&$found, &$expected) {
            (found, expected) => {
                if !(*found == *expected) {
                    return ::core::result::Result::Err($crate::CheckError::assertion(
                        ::std::format!(
                            "`{}`: expected {:?}, found {:?}",
                            ::core::stringify!($found),
                            expected,
                            found
                        ),
                    ));
                }
            }
        }
    };
    ($found:expr, $expected:expr, $($arg:tt)+) => {
        match (&$found, &$expected) {
            (found, expected) => {
                if !(*found == *expected) {
                    return ::core::result::Result::Err($crate::CheckError::assertion(
                        ::std::format!(
                            "{}: expected {:?}, found {:?}",
                            ::std::format_args!($($arg)+),
                            expected,
                            found
                        ),
                    ));
                }
            }
        }
    };
}

/// Fail the check unless `found != unexpected`, with a message showing the value.
///
/// ```
/// # use smoketest_core::{ensure_ne, Outcome};
/// fn check(id: i64) -> smoketest_core::Result {
///     ensure_ne!(id, 0, "order id");
///     Ok(Outcome::Pass)
/// }
/// assert_eq!(check(0).unwrap_err().message(), "order id: expected anything but 0");
/// ```
#[macro_export]
macro_rules! ensure_ne {
    ($found:expr, $unexpected:expr $(,)?) => {
        $crate::ensure_ne!($found, $unexpected, "`{}`", ::core::stringify!($found))
    };
    ($found:expr, $unexpected:expr, $($arg:tt)+) => {
        match (&$found, &$unexpected) {
            (found, unexpected) => {
                if *found == *unexpected {
                    return ::core::result::Result::Err($crate::CheckError::assertion(
                        ::std::format!(
                            "{}: expected anything but {:?}",
                            ::std::format_args!($($arg)+),
                            unexpected
                        ),
                    ));
                }
            }
        }
    };
}

/// Fail the check at once with an [`ErrorKind::Assertion`] and a formatted message.
///
/// ```
/// # use smoketest_core::{fail, Outcome};
/// fn check(mode: &str) -> smoketest_core::Result {
///     if mode != "primary" {
///         fail!("connected to a {mode}, writes would fail");
///     }
///     Ok(Outcome::Pass)
/// }
/// assert_eq!(check("replica").unwrap_err().message(), "connected to a replica, writes would fail");
/// ```
#[macro_export]
macro_rules! fail {
    ($($arg:tt)+) => {
        return ::core::result::Result::Err($crate::CheckError::assertion(::std::format!($($arg)+)))
    };
}
