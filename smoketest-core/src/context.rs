//! The [`Context`] a check runs with: observed values, deferred cleanups, and (with the
//! database features) transactions the runner always rolls back.
//!
//! Each run of each check gets a fresh context. After the check returns, fails, panics or
//! times out, the runner — never the check — finishes the context: it runs the deferred
//! cleanups, newest first, and reports any that fail as a failure of kind
//! [`ErrorKind::Cleanup`](crate::ErrorKind::Cleanup).
//!
//! # Example
//!
//! ```
//! use smoketest_core::{Context, Outcome};
//!
//! async fn writes_scratch_file(ctx: &mut Context) -> smoketest_core::Result {
//!     let path = std::env::temp_dir().join(format!("smoke-{}", std::process::id()));
//!     std::fs::write(&path, b"ok")?;
//!     // Removed after the check, even if what follows fails or panics.
//!     let cleanup_path = path.clone();
//!     ctx.defer(async move {
//!         std::fs::remove_file(cleanup_path)?;
//!         Ok(())
//!     });
//!     let read = std::fs::read(&path)?;
//!     ctx.observe("bytes", read.len());
//!     smoketest_core::ensure_eq!(read, b"ok".to_vec(), "read back");
//!     Ok(Outcome::Pass)
//! }
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::{CheckError, ErrorKind};

type Cleanup = Pin<Box<dyn Future<Output = Result<(), CheckError>> + Send>>;

/// What a check gets from the runner. See the [module documentation](self).
pub struct Context {
    name: Arc<str>,
    deadline: Instant,
    observed: BTreeMap<String, serde_json::Value>,
    deferred: Vec<(String, Cleanup)>,
}

impl Context {
    pub(crate) fn new(name: Arc<str>, deadline: Instant) -> Self {
        Context {
            name,
            deadline,
            observed: BTreeMap::new(),
            deferred: Vec::new(),
        }
    }

    /// A context for calling a check directly, outside the runner (unit tests of a check).
    /// Deferred cleanups run when [`Context::finish`] is awaited.
    pub fn detached(name: impl Into<Arc<str>>, timeout: Duration) -> Self {
        Self::new(name.into(), Instant::now() + timeout)
    }

    /// The name of the check this context belongs to.
    pub fn check_name(&self) -> &str {
        &self.name
    }

    /// When this check's time is up. Pass it on to clients that take a deadline.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Time left before the check's deadline (zero once past it).
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Record a value the check observed (a row count, a latency, a version). Observed values
    /// appear under `observed` in the report for authorized callers.
    pub fn observe(&mut self, key: impl Into<String>, value: impl serde::Serialize) {
        let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        self.observed.insert(key.into(), value);
    }

    /// Values recorded with [`Context::observe`].
    pub fn observed(&self) -> &BTreeMap<String, serde_json::Value> {
        &self.observed
    }

    /// Run `cleanup` after the check, whatever happens to it (pass, failure, panic, timeout).
    /// For what a transaction cannot undo: a temporary file, an object put in a bucket.
    /// Cleanups run newest first; a failing cleanup fails the check with kind `cleanup`.
    pub fn defer<F>(&mut self, cleanup: F)
    where
        F: Future<Output = Result<(), CheckError>> + Send + 'static,
    {
        let label = format!("cleanup #{}", self.deferred.len() + 1);
        self.deferred.push((label, Box::pin(cleanup)));
    }

    /// Run the deferred cleanups, newest first, and return the failures. The runner calls
    /// this after every check; call it yourself only on a [`Context::detached`] context.
    pub async fn finish(&mut self) -> Vec<CheckError> {
        let mut failures = Vec::new();
        while let Some((label, cleanup)) = self.deferred.pop() {
            // A panicking cleanup must not skip the ones registered before it.
            match futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(cleanup)).await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(CheckError::new(
                    ErrorKind::Cleanup,
                    format!("{label} failed: {}", e.message()),
                )),
                Err(panic) => failures.push(CheckError::new(
                    ErrorKind::Cleanup,
                    format!(
                        "{label} panicked: {}",
                        crate::runner::panic_message(&*panic)
                    ),
                )),
            }
        }
        failures
    }

    pub(crate) fn take_observed(&mut self) -> BTreeMap<String, serde_json::Value> {
        std::mem::take(&mut self.observed)
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("check", &self.name)
            .field("remaining", &self.remaining())
            .field("deferred", &self.deferred.len())
            .finish_non_exhaustive()
    }
}
