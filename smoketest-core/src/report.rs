//! The [`Report`] of one run: one serde type that every output format writes.
//!
//! Its JSON form is the contract that deploy pipelines and monitors parse (DESIGN.md §3, and
//! `schema/report.schema.json` in the repository): fields are added, never renamed.
//! [`Report::restrict`] removes what a caller may not see (see [`Detail`]) before any
//! writer runs, so no format can leak more than another.
//!
//! # Example
//!
//! ```
//! use smoketest_core::{Detail, Report, Status};
//!
//! let json = r#"{"status":"fail","service":"orders-api","started_at":"2026-11-22T08:40:41.123Z",
//!   "duration_ms":12.4,"cached":false,
//!   "summary":{"total":1,"passed":0,"warned":0,"failed":1,"skipped":0},
//!   "checks":[{"name":"orders::db_write","status":"fail","duration_ms":3.2,"tags":["db"],
//!     "error":{"kind":"assertion","message":"expected 1 row, found 0"}}]}"#;
//! let report: Report = serde_json::from_str(json).unwrap();
//! assert_eq!(report.status, Status::Fail);
//!
//! // Anonymous callers see the kind of a failure, not its message.
//! let public = report.restrict(Detail::Checks);
//! let error = public.checks[0].error.as_ref().unwrap();
//! assert_eq!(error.kind, "assertion");
//! assert!(error.message.is_none());
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Status of a run or of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Worked.
    Pass,
    /// Skipped (checks only): did not apply.
    Skip,
    /// Worked, degraded. Does not fail the run.
    Warn,
    /// Did not work.
    Fail,
}

impl Status {
    /// `"pass"`, `"warn"`, `"fail"` or `"skip"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much of a report a caller may see.
///
/// Anonymous callers get the level the service opts into (default [`Detail::Checks`]);
/// authorized callers get [`Detail::Full`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Detail {
    /// Only the overall status and summary counts: no check names.
    Status,
    /// Names, statuses, durations, tags and error kinds; no messages, suggestions or
    /// observed values.
    #[default]
    Checks,
    /// Everything, messages included (secrets are redacted at every level).
    Full,
}

/// Counts of checks by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Checks in the run.
    pub total: usize,
    /// Checks that passed.
    pub passed: usize,
    /// Checks that passed with a warning.
    pub warned: usize,
    /// Checks that failed.
    pub failed: usize,
    /// Checks that were skipped.
    pub skipped: usize,
}

/// Why a check failed, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReport {
    /// One of the documented [`ErrorKind`](crate::ErrorKind) names.
    pub kind: String,
    /// The sentence a person reads (omitted below [`Detail::Full`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What to try next (omitted below [`Detail::Full`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
}

/// A check's name in a report, used like a `&str`: shared with the registry, so that a
/// report (one per check and run) costs no copy of the text.
///
/// # Example
///
/// ```
/// use smoketest_core::report::CheckName;
///
/// let name = CheckName::from("orders::db_write");
/// assert_eq!(name, "orders::db_write");
/// assert!(name.starts_with("orders::"));
/// assert_eq!(name.as_str(), "orders::db_write");
/// assert_eq!(name.to_string(), "orders::db_write");
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CheckName(Arc<str>);

impl CheckName {
    /// The name as a `&str`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for CheckName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for CheckName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for CheckName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for CheckName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::fmt::Display for CheckName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for CheckName {
    fn from(name: &str) -> Self {
        CheckName(name.into())
    }
}

impl From<String> for CheckName {
    fn from(name: String) -> Self {
        CheckName(name.into())
    }
}

impl From<Arc<str>> for CheckName {
    fn from(name: Arc<str>) -> Self {
        CheckName(name)
    }
}

impl From<CheckName> for Arc<str> {
    fn from(name: CheckName) -> Self {
        name.0
    }
}

impl PartialEq<str> for CheckName {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for CheckName {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<String> for CheckName {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<CheckName> for str {
    fn eq(&self, other: &CheckName) -> bool {
        *self == *other.0
    }
}

impl PartialEq<CheckName> for &str {
    fn eq(&self, other: &CheckName) -> bool {
        **self == *other.0
    }
}

impl PartialEq<CheckName> for String {
    fn eq(&self, other: &CheckName) -> bool {
        **self == *other.0
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// The check's name.
    pub name: CheckName,
    /// Its status.
    pub status: Status,
    /// How long it ran, in milliseconds.
    pub duration_ms: f64,
    /// Its tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Why it failed (status `fail` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReport>,
    /// What is degraded (`warn`) or why it was skipped (`skip`); omitted below
    /// [`Detail::Full`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Values the check recorded with `Context::observe`; omitted below [`Detail::Full`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub observed: BTreeMap<String, serde_json::Value>,
    /// The steps of a scenario check (`Context::step`), in order, then its teardowns; empty
    /// (and omitted) for a check that records none. Names, statuses, durations and HTTP
    /// exchanges at [`Detail::Checks`]; messages only at [`Detail::Full`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepReport>,
}

impl CheckReport {
    /// A copy at [`Detail::Checks`]: no message, suggestion or observed value.
    fn without_messages(&self) -> CheckReport {
        CheckReport {
            name: self.name.clone(),
            status: self.status,
            duration_ms: self.duration_ms,
            tags: self.tags.clone(),
            error: self.error.as_ref().map(ErrorReport::kind_only),
            message: None,
            observed: BTreeMap::new(),
            steps: self
                .steps
                .iter()
                .map(StepReport::without_messages)
                .collect(),
        }
    }
}

impl ErrorReport {
    fn kind_only(&self) -> ErrorReport {
        ErrorReport {
            kind: self.kind.clone(),
            message: None,
            suggestion: None,
        }
    }
}

impl StepReport {
    /// A copy at [`Detail::Checks`]: no message, the error's kind only.
    fn without_messages(&self) -> StepReport {
        StepReport {
            name: self.name.clone(),
            status: self.status,
            duration_ms: self.duration_ms,
            teardown: self.teardown,
            persona: self.persona.clone(),
            method: self.method.clone(),
            path: self.path.clone(),
            status_code: self.status_code,
            error: self.error.as_ref().map(ErrorReport::kind_only),
            message: None,
        }
    }
}

/// One step of a scenario check: what it did, how it ended, and for an HTTP step the
/// request and the status code it got. See [`scenario`](crate::scenario).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// The step's name (`create order`), or `teardown: DELETE /orders/17` for a teardown.
    pub name: String,
    /// `pass`, `fail`, or `skip` for a step that did not run because an earlier one failed.
    pub status: Status,
    /// How long it ran, in milliseconds (0 for a skipped step).
    pub duration_ms: f64,
    /// `true` for a teardown (a cleanup registered with `Context::defer`), run after the
    /// steps whatever happened to them, newest first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub teardown: bool,
    /// The persona the step's last HTTP request ran as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persona: Option<String>,
    /// The HTTP method of the step's last request to the service's API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The path (and query) of that request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The status code it answered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Why the step failed (status `fail` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReport>,
    /// Why it was skipped (status `skip`); omitted below [`Detail::Full`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The result of one run. See the [module documentation](self).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `fail` when any check failed; else `warn` when any warned (a warning still passes:
    /// HTTP 200); else `pass`.
    pub status: Status,
    /// The service's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The service's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The release (commit, image tag) the service runs; the CLI's `--require-release`
    /// compares it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_id: Option<String>,
    /// When the run started, RFC 3339 UTC with milliseconds.
    pub started_at: String,
    /// How long the whole run took, in milliseconds.
    pub duration_ms: f64,
    /// Whether this report was served from the cache or a background snapshot rather than
    /// run for this request.
    pub cached: bool,
    /// How many instances of this service's checks were still running, when this report was
    /// made, after the run that started them had answered (they ignored their timeout, or
    /// their cleanup did). While one runs, its check is reported with kind `overrun` rather
    /// than started again. Omitted when 0; exported as `smoketest_checks_overrunning`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub overrunning: usize,
    /// Age of a cached report in milliseconds (present when `cached` is true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<f64>,
    /// Counts by status.
    pub summary: Summary,
    /// Each check, in registration order.
    pub checks: Vec<CheckReport>,
    /// The group this report is of, when it was served on a group's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Each check's record across its runs, by check name (hidden at [`Detail::Status`];
    /// the per-run strip `runs` only at [`Detail::Full`]). On a group's path the failure
    /// counts are the group's own; elsewhere they span every path.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub history: BTreeMap<String, CheckHistory>,
    /// Why a report was answered without a run: `draining` (the service is shutting down and
    /// leaves rotation) or `pending` (a background group has not finished its first run).
    /// Absent for every report of a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One check's record across its runs: what a monitor needs to tell a blip from an outage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckHistory {
    /// Failed runs in a row, up to and including the latest (0 when the latest did not fail).
    pub consecutive_failures: u32,
    /// When the check last passed or warned, RFC 3339 UTC; absent if it never has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    /// When the check last failed, RFC 3339 UTC; absent if it never has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    /// The check's latest runs on any path, oldest first, at most the builder's
    /// [`history_len`](crate::SmoketestBuilder::history_len); only at [`Detail::Full`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<RunRecord>,
}

/// One past run of a check, as kept in its bounded history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// When the run finished, RFC 3339 UTC with milliseconds.
    pub at: String,
    /// The check's status in that run (before any group threshold).
    pub status: Status,
    /// How long it ran, in milliseconds.
    pub duration_ms: f64,
    /// The error kind of a failed run, or `slow` for one over its latency budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

impl Report {
    /// Build a report from check results, computing the status and summary.
    pub fn from_checks(
        started_at: std::time::SystemTime,
        duration: std::time::Duration,
        checks: Vec<CheckReport>,
    ) -> Self {
        let mut summary = Summary {
            total: checks.len(),
            ..Summary::default()
        };
        for c in &checks {
            match c.status {
                Status::Pass => summary.passed += 1,
                Status::Warn => summary.warned += 1,
                Status::Fail => summary.failed += 1,
                Status::Skip => summary.skipped += 1,
            }
        }
        Report {
            status: if summary.failed > 0 {
                Status::Fail
            } else if summary.warned > 0 {
                Status::Warn
            } else {
                Status::Pass
            },
            service: None,
            version: None,
            release_id: None,
            started_at: {
                // Sized once: `to_string` would grow it as it is written.
                use std::fmt::Write;
                let mut text = String::with_capacity(24);
                let _ = write!(text, "{}", humantime::format_rfc3339_millis(started_at));
                text
            },
            duration_ms: millis(duration),
            cached: false,
            overrunning: 0,
            age_ms: None,
            summary,
            checks,
            group: None,
            history: BTreeMap::new(),
            reason: None,
        }
    }

    /// A copy holding only what a caller with `detail` may see.
    pub fn restrict(&self, detail: Detail) -> Report {
        match detail {
            Detail::Full => self.clone(),
            // Copies only what the caller may see (a report served from memory to every
            // probe is restricted on every request).
            Detail::Checks | Detail::Status => Report {
                status: self.status,
                service: self.service.clone(),
                version: self.version.clone(),
                release_id: self.release_id.clone(),
                started_at: self.started_at.clone(),
                duration_ms: self.duration_ms,
                cached: self.cached,
                overrunning: self.overrunning,
                age_ms: self.age_ms,
                summary: self.summary,
                checks: if detail == Detail::Checks {
                    self.checks
                        .iter()
                        .map(CheckReport::without_messages)
                        .collect()
                } else {
                    Vec::new()
                },
                group: self.group.clone(),
                history: if detail == Detail::Checks {
                    self.history
                        .iter()
                        .map(|(name, h)| {
                            let history = CheckHistory {
                                consecutive_failures: h.consecutive_failures,
                                last_success: h.last_success.clone(),
                                last_failure: h.last_failure.clone(),
                                runs: Vec::new(),
                            };
                            (name.clone(), history)
                        })
                        .collect()
                } else {
                    BTreeMap::new()
                },
                reason: self.reason.clone(),
            },
        }
    }

    /// [`restrict`](Self::restrict) a report you own, in place: nothing is copied.
    ///
    /// ```
    /// # use std::time::{Duration, SystemTime};
    /// use smoketest_core::{Detail, Report};
    ///
    /// let report = Report::from_checks(SystemTime::UNIX_EPOCH, Duration::ZERO, vec![]);
    /// let public = report.into_restricted(Detail::Status);
    /// assert!(public.checks.is_empty());
    /// ```
    pub fn into_restricted(self, detail: Detail) -> Report {
        let mut report = self;
        match detail {
            Detail::Full => {}
            Detail::Checks => {
                for h in report.history.values_mut() {
                    h.runs.clear();
                }
                for c in &mut report.checks {
                    c.message = None;
                    // (Clearing an empty map still walks its drop.)
                    if !c.observed.is_empty() {
                        c.observed.clear();
                    }
                    if let Some(e) = &mut c.error {
                        e.message = None;
                        e.suggestion = None;
                    }
                    for step in &mut c.steps {
                        step.message = None;
                        if let Some(e) = &mut step.error {
                            e.message = None;
                            e.suggestion = None;
                        }
                    }
                }
            }
            Detail::Status => {
                report.checks.clear();
                report.history.clear();
            }
        }
        report
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A duration in milliseconds with microsecond precision, as reports show it.
pub fn millis(d: std::time::Duration) -> f64 {
    // Through u64 where it fits: the same value, without the slow u128 conversion.
    let micros = d.as_micros();
    u64::try_from(micros).map_or_else(|_| micros as f64, |m| m as f64) / 1000.0
}
