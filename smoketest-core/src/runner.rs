//! The runner: runs a selection of checks concurrently, each in its own task with its own
//! timeout and panic isolation, and turns their results into a [`Report`].
//!
//! Unlike running checks with `join_all` inside the request future, every check runs in a
//! spawned task that the request does not own: a client that hangs up cannot cancel a check
//! half-way, so its context is always finished (cleanups run, transactions rolled back).
//! At most [`concurrency`](crate::SmoketestBuilder::concurrency) checks execute at once.
//! Each check's timeout is clipped to the run's deadline, and the run answers by the
//! deadline whatever the checks do; a check that blocks its thread is reported as timed out.
//! Results come back in registration order.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use smoketest_core::{from_fn, Outcome, Selection, Smoketest, Status};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let smoke = Smoketest::builder()
//!     .without_discovery()
//!     .check(from_fn("fast", |_ctx| Box::pin(async { Ok(Outcome::Pass) })))
//!     .check(
//!         from_fn("stuck", |_ctx| Box::pin(async {
//!             tokio::time::sleep(Duration::from_secs(3600)).await;
//!             Ok(Outcome::Pass)
//!         }))
//!         .timeout(Duration::from_millis(50)),
//!     )
//!     .build()
//!     .unwrap();
//!
//! let report = smoke.run(&Selection::all()).await.unwrap();
//! assert_eq!(report.status, Status::Fail);
//! assert_eq!(report.checks[1].error.as_ref().unwrap().kind, "timeout");
//! # }
//! ```

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout_at};

use crate::registry::Entry;
use crate::report::{CheckReport, ErrorReport, Report, Status, millis};
use crate::{CheckError, Context, ErrorKind, Outcome, Smoketest};

/// Which checks to run: all, or narrowed by names, tags and exclusions.
///
/// A check runs when it is named in `checks` (or `checks` is empty), carries any of `tags`
/// (or `tags` is empty), and is not in `exclude`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Selection {
    /// Only these checks (empty: no restriction).
    pub checks: Vec<String>,
    /// Only checks with any of these tags (empty: no restriction).
    pub tags: Vec<String>,
    /// Never these checks.
    pub exclude: Vec<String>,
}

impl Selection {
    /// Every check.
    pub fn all() -> Self {
        Selection::default()
    }

    /// One check by name.
    pub fn one(name: impl Into<String>) -> Self {
        Selection {
            checks: vec![name.into()],
            ..Selection::default()
        }
    }
}

/// A selection named a check that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no check is named `{name}`")]
pub struct UnknownCheck {
    /// The name asked for.
    pub name: String,
}

impl Smoketest {
    /// Run the selected checks and return the report.
    ///
    /// The run is spawned on the current tokio runtime and outlives this future: dropping
    /// it (a client hanging up) does not interrupt checks or their clean-up.
    pub async fn run(&self, selection: &Selection) -> Result<Report, UnknownCheck> {
        let entries = self.select(selection)?;
        let smoke = self.clone();
        let handle = tokio::spawn(async move { smoke.run_entries(entries).await });
        Ok(handle.await.unwrap_or_else(|e| {
            // Only a bug in the runner itself could get here: checks are isolated below.
            std::panic::resume_unwind(e.into_panic())
        }))
    }

    pub(crate) fn select(&self, selection: &Selection) -> Result<Vec<Arc<Entry>>, UnknownCheck> {
        let inner = &self.inner;
        for name in selection.checks.iter().chain(&selection.exclude) {
            if !inner.by_name.contains_key(name.as_str()) {
                return Err(UnknownCheck { name: name.clone() });
            }
        }
        Ok(inner
            .entries
            .iter()
            .filter(|e| {
                selection.checks.is_empty() || selection.checks.iter().any(|n| **n == *e.name)
            })
            .filter(|e| {
                selection.tags.is_empty() || e.tags.iter().any(|t| selection.tags.contains(t))
            })
            .filter(|e| !selection.exclude.iter().any(|n| **n == *e.name))
            .cloned()
            .collect())
    }

    pub(crate) async fn run_entries(&self, entries: Vec<Arc<Entry>>) -> Report {
        let config = &self.inner.config;
        let started_at = SystemTime::now();
        let start = Instant::now();
        let deadline = start + config.deadline;
        let permits = Arc::new(Semaphore::new(config.concurrency));

        let handles: Vec<_> = entries
            .iter()
            .map(|entry| {
                let entry = entry.clone();
                let permits = permits.clone();
                let default_timeout = config.default_timeout;
                let smoke = self.clone();
                tokio::spawn(run_one(entry, permits, default_timeout, deadline, smoke))
            })
            .collect();

        let mut checks = Vec::with_capacity(entries.len());
        for (entry, handle) in entries.iter().zip(handles) {
            let mut report = match timeout_at(deadline, handle).await {
                Ok(Ok(report)) => report,
                Ok(Err(join_error)) => failed(
                    entry,
                    start.elapsed(),
                    CheckError::new(
                        ErrorKind::Panic,
                        format!("the check's task ended abnormally: {join_error}"),
                    ),
                ),
                Err(_) => failed(
                    entry,
                    start.elapsed(),
                    CheckError::new(
                        ErrorKind::Timeout,
                        format!(
                            "did not finish before the run's deadline of {}",
                            humantime::format_duration(config.deadline)
                        ),
                    )
                    .with_suggestion(
                        "The check may block its thread (use tokio::task::spawn_blocking for blocking work) or its clean-up is slow.",
                    ),
                ),
            };
            // Covers the fallbacks above and run_one's early return (redacting is idempotent).
            self.inner.redactor.redact_check(&mut report);
            checks.push(report);
        }

        let mut report = Report::from_checks(started_at, start.elapsed(), checks);
        report.service = config.service.clone();
        report.version = config.version.clone();
        report.release_id = config.release_id.clone();
        report
    }
}

async fn run_one(
    entry: Arc<Entry>,
    permits: Arc<Semaphore>,
    default_timeout: Duration,
    deadline: Instant,
    smoke: Smoketest,
) -> CheckReport {
    let queued = Instant::now();
    let Ok(Ok(_permit)) = timeout_at(deadline, permits.acquire_owned()).await else {
        return failed(
            &entry,
            Duration::ZERO,
            CheckError::new(
                ErrorKind::Timeout,
                format!(
                    "never started: waited {} for a free slot before the run's deadline",
                    humantime::format_duration(Duration::from_millis(
                        queued.elapsed().as_millis() as u64
                    ))
                ),
            )
            .with_suggestion(
                "Raise the concurrency limit or the deadline, or shorten the slow checks.",
            ),
        );
    };

    let start = Instant::now();
    let limit = entry.timeout.unwrap_or(default_timeout);
    let check_deadline = (start + limit).min(deadline);
    let mut ctx = Context::new(entry.name.clone(), check_deadline);

    let result = timeout_at(
        check_deadline,
        AssertUnwindSafe(entry.check.run(&mut ctx)).catch_unwind(),
    )
    .await;
    let duration = start.elapsed();
    let result = match result {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => Err(CheckError::new(
            ErrorKind::Panic,
            format!("panicked: {}", panic_message(&*panic)),
        )),
        Err(_) => Err(CheckError::new(
            ErrorKind::Timeout,
            if check_deadline < start + limit {
                format!(
                    "cut off after {} by the run's deadline",
                    humantime::format_duration(round_ms(check_deadline - start))
                )
            } else {
                format!(
                    "did not finish within {}",
                    humantime::format_duration(limit)
                )
            },
        )),
    };

    // The runner, not the check, finishes the context, whatever happened above.
    let cleanup_failures = ctx.finish().await;
    let observed = ctx.take_observed();

    let mut report = match (result, cleanup_failures.into_iter().next()) {
        (Err(e), _) | (Ok(_), Some(e)) => failed(&entry, duration, e),
        (Ok(outcome), None) => {
            let (status, message) = match outcome {
                Outcome::Pass => (Status::Pass, None),
                Outcome::Warn(m) => (Status::Warn, Some(m)),
                Outcome::Skip(m) => (Status::Skip, Some(m)),
            };
            CheckReport {
                name: entry.name.to_string(),
                status,
                duration_ms: millis(duration),
                tags: entry.tags.clone(),
                error: None,
                message,
                observed: Default::default(),
            }
        }
    };
    report.observed = observed;
    // Once, before anything (report, format, log line) can show it.
    smoke.inner.redactor.redact_check(&mut report);
    match report.status {
        Status::Fail => {
            let e = report.error.as_ref().expect("failed checks carry an error");
            tracing::warn!(
                check = %report.name,
                kind = %e.kind,
                duration_ms = report.duration_ms,
                "smoke check failed: {}",
                e.message.as_deref().unwrap_or("")
            );
        }
        status => {
            tracing::debug!(check = %report.name, %status, duration_ms = report.duration_ms, "smoke check finished")
        }
    }
    report
}

fn failed(entry: &Entry, duration: Duration, error: CheckError) -> CheckReport {
    CheckReport {
        name: entry.name.to_string(),
        status: Status::Fail,
        duration_ms: millis(duration),
        tags: entry.tags.clone(),
        error: Some(ErrorReport {
            kind: error.kind().as_str().to_string(),
            message: Some(error.message().to_string()),
            suggestion: error.suggestion().map(str::to_string),
        }),
        message: None,
        observed: Default::default(),
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic payload that is not a string)".to_string()
    }
}
