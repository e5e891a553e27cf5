//! Groups: named selections of checks, each served on its own path with its own status code
//! and detail level, and optionally run in the background on a schedule.
//!
//! The mount path (`/smoketest`) answers deploy pipelines and people: it runs every selected
//! check live, for every request. Platforms want something else. Kubernetes asks two
//! questions many times a minute — *is this process alive?* and *should it get traffic?* —
//! and a monitor wants an answer that does not flap on one slow query. A [`Group`] is such a
//! question: which checks answer it (by name or tag, with exclusions), where it is served,
//! which status a failure gets, how much the caller sees, and whether it runs live or on a
//! schedule.
//!
//! # Presets
//!
//! | preset | path | members | detail | on failure | access | runs |
//! | --- | --- | --- | --- | --- | --- | --- |
//! | [`Group::live`] | `/livez` | none unless added; only in-process checks belong here | the builder's¹ | 503 | open | live |
//! | [`Group::ready`] | `/readyz` | add the dependencies traffic needs (`.tag("db")`) | the builder's¹ | 503 | open | live, or [`every`](Group::every) |
//! | [`Group::deploy`] | none until [`path`](Group::path) | every check | the builder's | the builder's (500) | the builder's | always live |
//!
//! ¹ A group's path shows anonymous callers what every path does: the builder's
//! [`anonymous_detail`](crate::SmoketestBuilder::anonymous_detail), unless the group sets
//! its own [`detail`](Group::detail). One exception: when the service
//! [requires authorization](crate::SmoketestBuilder::require_authorization), anonymous
//! callers of an *open* group (the presets) see the status alone.
//!
//! Every group path is served by the same pipeline as the mount path
//! ([`http`](crate::http)): `?format=`, `Accept`, `HEAD` and `?fresh=1` mean the same
//! there, and the group is the selection (`?tag=` and friends are 400). Each group has a
//! budget of its own in the [engine](crate::engine) ([`min_interval`](Group::min_interval),
//! [`burst`](Group::burst)), so no other path's traffic can starve it, and a group with no
//! members costs nothing. "Open" means: anonymous callers are answered even when the
//! service [requires authorization](crate::SmoketestBuilder::require_authorization),
//! because kubelet sends no token ([`open`](Group::open),
//! [`require_authorization`](Group::require_authorization) state any group's rule).
//!
//! **Liveness must not depend on external systems.** When the database is down, every
//! replica fails the same check; a liveness probe that includes it makes Kubernetes restart
//! all of them, which fixes nothing and adds a thundering herd when the database returns.
//! `live` with no members answers 200 whenever the process can serve HTTP at all, which is
//! what liveness means; add only checks of the process's own state (a deadlocked worker
//! pool, a stuck event loop). Readiness may depend on what the pod needs to serve traffic:
//! failing it takes the pod out of the Service's endpoints without a restart.
//!
//! ```yaml
//! # Kubernetes: the probes of a container serving on port 8080.
//! livenessProbe:
//!   httpGet: { path: /livez, port: 8080 }
//!   periodSeconds: 10
//!   timeoutSeconds: 2
//!   failureThreshold: 3
//! readinessProbe:
//!   httpGet: { path: /readyz, port: 8080 }
//!   periodSeconds: 5
//!   timeoutSeconds: 2        # background mode answers from memory, well inside this
//!   failureThreshold: 2
//! startupProbe:              # slow starts do not count against liveness
//!   httpGet: { path: /readyz, port: 8080 }
//!   periodSeconds: 2
//!   failureThreshold: 30
//! ```
//!
//! # Background mode
//!
//! With [`every`](Group::every) a group runs on a schedule (after an optional
//! [`initial_delay`](Group::initial_delay)), and its path answers with the latest snapshot
//! — `"cached": true` and its `age_ms` — so probes cost no database round trip and a flood
//! of requests causes no extra runs. Until the first scheduled run finishes, a plain request
//! does not run the group: it gets a *pending* report (`"reason": "pending"`, no checks) —
//! a liveness group answers it 200 (the process is up), every other group its failure
//! status with `"status": "fail"` (no verdict yet is not a pass: the pod enters rotation
//! after the first run passes). `?fresh=1` from a token holder runs it now. Schedules start when
//! [`build`](crate::SmoketestBuilder::build) is called inside a tokio runtime, else on the
//! first request ([`Smoketest::start_background`] starts them explicitly); they stop when
//! the last clone of the [`Smoketest`] is dropped. The deploy gate — the mount path and any
//! [`Group::deploy`] — always runs live.
//!
//! # Draining and probe safety
//!
//! [`Smoketest::start_draining`] (or [`Smoketest::drain_after`], which waits for a shutdown
//! signal) makes every readiness group ([`Group::ready`], [`Group::readiness`]) answer its
//! failure status (503) with `"status": "fail"` and `"reason": "draining"`, at once and
//! without running anything, while liveness keeps answering 200: a terminating pod leaves
//! the Service's endpoints before its listener closes. Liveness groups may not include
//! checks tagged `external` or `db` ([`EXTERNAL_TAGS`]): building fails with
//! [`BuildError::UnsafeProbe`] unless the group says
//! [`allow_external_dependencies`](Group::allow_external_dependencies).
//! [`Smoketest::explain`] says, per path, what it depends on and what a failure does.
//!
//! Every run of a group, live or scheduled, updates each check's [`CheckHistory`] (last
//! success, consecutive failures), reported under `history`. With
//! [`failure_threshold(n)`](Group::failure_threshold) the group reports `fail` only once a
//! check has failed `n` runs in a row: a monitor-facing group that rides out one blip.
//! [`on_status_change`](Group::on_status_change) is called whenever the group's reported
//! status differs from the previous run's — the place to page someone.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use smoketest_core::{from_fn, Group, Outcome, Smoketest};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let smoke = Smoketest::builder()
//!     .without_discovery()
//!     .check(from_fn("db::ping", |_ctx| Box::pin(async { Ok(Outcome::Pass) })).tag("db"))
//!     .check(from_fn("payments::api", |_ctx| Box::pin(async { Ok(Outcome::Pass) })).tag("http"))
//!     .group(Group::live())
//!     .group(Group::ready().tag("db").every(Duration::from_secs(10)).failure_threshold(2))
//!     .build()
//!     .unwrap();
//! assert!(smoke.serves("/livez") && smoke.serves("/readyz"));
//! let readyz = || http::Request::get("/readyz").body(()).unwrap().into_parts().0;
//!
//! // Before the first background run has finished: pending, not a pass.
//! let response = smoke.handle(&readyz()).await;
//! assert_eq!(response.status(), 503);
//! assert!(std::str::from_utf8(response.body()).unwrap().contains(r#""reason": "pending""#));
//!
//! tokio::time::sleep(Duration::from_secs(1)).await; // the first run, at start, is done
//! assert_eq!(smoke.handle(&readyz()).await.status(), 200);
//!
//! // Shutting down: readiness answers 503 `draining` at once, liveness stays 200.
//! smoke.start_draining();
//! assert_eq!(smoke.handle(&readyz()).await.status(), 503);
//! let livez = http::Request::get("/livez").body(()).unwrap().into_parts().0;
//! assert_eq!(smoke.handle(&livez).await.status(), 200);
//!
//! // A group that names a check nobody registered does not build.
//! let err = Smoketest::builder()
//!     .without_discovery()
//!     .group(Group::new("db").check("db::pign"))
//!     .build()
//!     .unwrap_err();
//! assert!(err.to_string().contains("db::pign"));
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::StatusCode;

use crate::registry::{BuildError, Entry};
use crate::report::CheckHistory;
use crate::{Detail, Report, Smoketest, Status};

type Hook = Arc<dyn Fn(&StatusChange) + Send + Sync>;

/// A named selection of checks, served on its own path. See the [module documentation](self).
#[must_use]
#[derive(Clone)]
pub struct Group {
    name: String,
    path: Option<String>,
    checks: Vec<String>,
    tags: Vec<String>,
    exclude: Vec<String>,
    exclude_tags: Vec<String>,
    failure_status: Option<StatusCode>,
    detail: Option<Detail>,
    schedule: Option<Schedule>,
    failure_threshold: u32,
    on_status_change: Option<Hook>,
    live_only: bool,
    /// `Some(false)`: open to anonymous callers even when the service requires
    /// authorization; `Some(true)`: always requires it; `None`: the service's rule.
    requires_authorization: Option<bool>,
    min_interval: Option<Duration>,
    burst: Option<u32>,
    /// Whether a group with no `check`/`tag` includes every check (`new`) or none (presets).
    all_by_default: bool,
    probe: Probe,
    allow_external: bool,
}

/// What a platform does when a group's path fails: the question the group answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Probe {
    /// Kubernetes liveness ([`Group::live`], [`Group::liveness`]): a failure restarts the
    /// pod. May not include external dependencies.
    Liveness,
    /// Kubernetes readiness ([`Group::ready`], [`Group::readiness`]): a failure takes the pod
    /// out of rotation. Answers `draining` while the service shuts down.
    Readiness,
    /// A deploy gate ([`Group::deploy`], and the mount path): a failure rolls the deploy
    /// back.
    Deploy,
    /// A group for monitors and people: a failure is reported, nothing acts on it by itself.
    #[default]
    Monitor,
}

impl Probe {
    /// What the platform does when this path fails, in words (for [`Smoketest::explain`]).
    pub fn consequence(self) -> &'static str {
        match self {
            Probe::Liveness => "restart the pod",
            Probe::Readiness => "take the pod out of rotation (no restart)",
            Probe::Deploy => "roll the deploy back",
            Probe::Monitor => "report it (alert on it); nothing restarts or rolls back",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Probe::Liveness => "liveness probe",
            Probe::Readiness => "readiness probe",
            Probe::Deploy => "deploy gate",
            Probe::Monitor => "monitor",
        }
    }
}

/// Tags that mark a check as depending on a system outside the process. The built-in
/// network, broker and database checks carry one of them.
pub const EXTERNAL_TAGS: &[&str] = &["external", "db"];

#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    pub(crate) interval: Duration,
    pub(crate) initial_delay: Duration,
}

/// What [`Group::on_status_change`] is told: the group's reported status changed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StatusChange {
    /// The group's name.
    pub group: String,
    /// The status the previous run reported; `None` for the group's first run.
    pub previous: Option<Status>,
    /// The status this run reports (after the failure threshold).
    pub current: Status,
    /// The run's full report (not restricted: handle messages with care).
    pub report: Report,
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("checks", &self.checks)
            .field("tags", &self.tags)
            .field("exclude", &self.exclude)
            .field("exclude_tags", &self.exclude_tags)
            .field("schedule", &self.schedule)
            .field("failure_threshold", &self.failure_threshold)
            .finish_non_exhaustive()
    }
}

impl Group {
    /// A group called `name`, with no path (add one with [`path`](Self::path)) and every
    /// check as a member until [`check`](Self::check) or [`tag`](Self::tag) narrows it.
    pub fn new(name: impl Into<String>) -> Self {
        Group {
            name: name.into(),
            path: None,
            checks: Vec::new(),
            tags: Vec::new(),
            exclude: Vec::new(),
            exclude_tags: Vec::new(),
            failure_status: None,
            detail: None,
            schedule: None,
            failure_threshold: 1,
            on_status_change: None,
            live_only: false,
            requires_authorization: None,
            min_interval: None,
            burst: None,
            all_by_default: true,
            probe: Probe::Monitor,
            allow_external: false,
        }
    }

    /// Kubernetes liveness: `live` at `/livez`, no members (add only checks of the process's
    /// own state, never external systems: [`build`](crate::SmoketestBuilder::build) refuses
    /// checks tagged `external` or `db` here), 503 on failure, open to kubelet (see the
    /// [module documentation](self) for its detail level).
    pub fn live() -> Self {
        let mut group = Group::new("live")
            .path("/livez")
            .failure_status(StatusCode::SERVICE_UNAVAILABLE);
        group.all_by_default = false;
        group.requires_authorization = Some(false);
        group.probe = Probe::Liveness;
        group
    }

    /// Kubernetes readiness: `ready` at `/readyz`, 503 on failure, open to kubelet. Add the
    /// checks traffic depends on (`.tag("db")`); with none added it is empty, like `live`.
    /// Answers 503 with reason `draining` once the service
    /// [drains](Smoketest::start_draining).
    pub fn ready() -> Self {
        let mut group = Group::new("ready")
            .path("/readyz")
            .failure_status(StatusCode::SERVICE_UNAVAILABLE);
        group.all_by_default = false;
        group.requires_authorization = Some(false);
        group.probe = Probe::Readiness;
        group
    }

    /// A deploy gate: every check (narrow it with [`exclude_tag`](Self::exclude_tag) etc.),
    /// always run live — building fails if it is given a schedule. No path until
    /// [`path`](Self::path); the mount path itself is the default deploy gate.
    pub fn deploy() -> Self {
        let mut group = Group::new("deploy");
        group.live_only = true;
        group.probe = Probe::Deploy;
        group
    }

    /// Mark this group as a liveness probe (what [`live`](Self::live) is): it may not
    /// include external dependencies, and before its first background run it answers 200.
    pub fn liveness(mut self) -> Self {
        self.probe = Probe::Liveness;
        self
    }

    /// Mark this group as a readiness probe (what [`ready`](Self::ready) is): it answers its
    /// failure status with reason `draining` once the service
    /// [drains](Smoketest::start_draining), and reason `pending` before its first background
    /// run.
    pub fn readiness(mut self) -> Self {
        self.probe = Probe::Readiness;
        self
    }

    /// Let a liveness group include checks tagged `external` or `db`. Without it,
    /// [`build`](crate::SmoketestBuilder::build) refuses them: when the database is down,
    /// every replica fails the same check, and a liveness probe that includes it restarts
    /// all of them — which fixes nothing. Say so only when a restart really is the cure.
    pub fn allow_external_dependencies(mut self) -> Self {
        self.allow_external = true;
        self
    }

    /// Serve the group at `path` (absolute, outside the mount path, e.g. `/readyz`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Include the check called `name`.
    pub fn check(mut self, name: impl Into<String>) -> Self {
        self.checks.push(name.into());
        self
    }

    /// Include every check tagged `tag`.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Leave out the check called `name`, even if a tag includes it.
    pub fn exclude(mut self, name: impl Into<String>) -> Self {
        self.exclude.push(name.into());
        self
    }

    /// Leave out every check tagged `tag`.
    pub fn exclude_tag(mut self, tag: impl Into<String>) -> Self {
        self.exclude_tags.push(tag.into());
        self
    }

    /// The HTTP status when the group fails (default: the builder's
    /// [`failure_status`](crate::SmoketestBuilder::failure_status)).
    pub fn failure_status(mut self, status: StatusCode) -> Self {
        self.failure_status = Some(status);
        self
    }

    /// What callers of this group's path see (default: the builder's
    /// [`anonymous_detail`](crate::SmoketestBuilder::anonymous_detail)).
    pub fn detail(mut self, detail: Detail) -> Self {
        self.detail = Some(detail);
        self
    }

    /// Run the group in the background every `interval` and serve the latest snapshot.
    pub fn every(mut self, interval: Duration) -> Self {
        let initial_delay = self.schedule.map_or(Duration::ZERO, |s| s.initial_delay);
        self.schedule = Some(Schedule {
            interval,
            initial_delay,
        });
        self
    }

    /// Wait this long after start before the first background run (default: none).
    /// Only meaningful with [`every`](Self::every).
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        if let Some(schedule) = &mut self.schedule {
            schedule.initial_delay = delay;
        } else {
            self.schedule = Some(Schedule {
                interval: Duration::ZERO,
                initial_delay: delay,
            });
        }
        self
    }

    /// Report `fail` only when some check has failed `runs` runs in a row (default 1: any
    /// failure fails the group). For monitor-facing groups that should ride out one blip.
    pub fn failure_threshold(mut self, runs: u32) -> Self {
        self.failure_threshold = runs;
        self
    }

    /// Answer anonymous callers on this path even when the service
    /// [requires authorization](crate::SmoketestBuilder::require_authorization) — at the
    /// group's own [`detail`](Self::detail) level. The [`live`](Self::live) and
    /// [`ready`](Self::ready) presets are open, because kubelet probes send no token. A
    /// wrong token is still refused with 401.
    pub fn open(mut self) -> Self {
        self.requires_authorization = Some(false);
        self
    }

    /// Refuse anonymous callers on this path with 401, whatever the service's rule.
    pub fn require_authorization(mut self) -> Self {
        self.requires_authorization = Some(true);
        self
    }

    /// This path's own [`min_interval`](crate::SmoketestBuilder::min_interval) between
    /// runs requested over HTTP (default: the builder's). Every group has a budget of its
    /// own, which requests to other paths cannot drain.
    pub fn min_interval(mut self, interval: Duration) -> Self {
        self.min_interval = Some(interval);
        self
    }

    /// This path's own [`burst`](crate::SmoketestBuilder::burst) (default: the builder's).
    pub fn burst(mut self, runs: u32) -> Self {
        self.burst = Some(runs);
        self
    }

    /// Call `hook` after every run whose reported status differs from the previous run's
    /// (and after the first run). It runs on the runtime's thread: hand slow work (sending a
    /// page) to a task. A panic in it is caught and logged.
    pub fn on_status_change<F>(mut self, hook: F) -> Self
    where
        F: Fn(&StatusChange) + Send + Sync + 'static,
    {
        self.on_status_change = Some(Arc::new(hook));
        self
    }
}

/// A group resolved against the registry: what the engine's scope for it needs.
pub(crate) struct ResolvedGroup {
    pub(crate) name: String,
    pub(crate) path: Option<String>,
    pub(crate) members: Vec<Arc<Entry>>,
    pub(crate) failure_status: StatusCode,
    pub(crate) detail: Detail,
    pub(crate) requires_authorization: Option<bool>,
    pub(crate) schedule: Option<Schedule>,
    pub(crate) min_interval: Option<Duration>,
    pub(crate) burst: Option<u32>,
    pub(crate) probe: Probe,
    failure_threshold: u32,
    on_status_change: Option<Hook>,
    history: Mutex<HistoryState>,
}

#[derive(Default)]
struct HistoryState {
    checks: BTreeMap<String, CheckHistory>,
    status: Option<Status>,
}

impl ResolvedGroup {
    /// Fold a finished run into the history, apply the threshold and call the hook if the
    /// reported status changed. The engine calls it once per run, before the run's report
    /// is published.
    pub(crate) fn record(&self, mut report: Report) -> Report {
        let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let mut state = self.history.lock().unwrap_or_else(|e| e.into_inner());
        for check in &report.checks {
            let history = state.checks.entry(check.name.to_string()).or_default();
            match check.status {
                Status::Fail => {
                    history.consecutive_failures = history.consecutive_failures.saturating_add(1);
                    history.last_failure = Some(now.clone());
                }
                Status::Pass | Status::Warn => {
                    history.consecutive_failures = 0;
                    history.last_success = Some(now.clone());
                }
                Status::Skip => {}
            }
        }
        if report.status == Status::Fail {
            let over_threshold = report.checks.iter().any(|c| {
                c.status == Status::Fail
                    && state.checks[c.name.as_str()].consecutive_failures >= self.failure_threshold
            });
            if !over_threshold {
                report.status = Status::Pass;
            }
        }
        report.group = Some(self.name.clone());
        report.history = report
            .checks
            .iter()
            .map(|c| (c.name.to_string(), state.checks[c.name.as_str()].clone()))
            .collect();
        let previous = state.status.replace(report.status);
        drop(state);

        if previous != Some(report.status) {
            if report.status == Status::Fail || previous.is_some() {
                tracing::warn!(
                    group = %self.name,
                    previous = previous.map_or("none", Status::as_str),
                    current = %report.status,
                    "smoke check group changed status"
                );
            }
            if let Some(hook) = &self.on_status_change {
                let change = StatusChange {
                    group: self.name.clone(),
                    previous,
                    current: report.status,
                    report: report.clone(),
                };
                if std::panic::catch_unwind(AssertUnwindSafe(|| hook(&change))).is_err() {
                    tracing::error!(group = %self.name, "the status-change hook panicked");
                }
            }
        }
        report
    }
}

/// Resolve `groups` against the registered checks, refusing unknown members, duplicate
/// names and unusable paths or schedules.
pub(crate) fn resolve(
    groups: Vec<Group>,
    entries: &[Arc<Entry>],
    mount: &str,
    failure_status: StatusCode,
    detail: Detail,
    service_requires_authorization: bool,
) -> Result<Vec<ResolvedGroup>, BuildError> {
    let names: BTreeSet<&str> = entries.iter().map(|e| &*e.name).collect();
    let tags: BTreeSet<&str> = entries
        .iter()
        .flat_map(|e| e.tags.iter().map(String::as_str))
        .collect();
    let mut seen_names = BTreeSet::new();
    let mut seen_paths = BTreeSet::new();
    let mut list = Vec::with_capacity(groups.len());
    for group in groups {
        let config_error =
            |message: String| BuildError::Config(format!("group `{}`: {message}", group.name));
        if group.name.is_empty() {
            return Err(BuildError::Config("a group needs a name".into()));
        }
        if !seen_names.insert(group.name.clone()) {
            return Err(config_error("two groups have this name".into()));
        }
        for name in group.checks.iter().chain(&group.exclude) {
            if !names.contains(name.as_str()) {
                return Err(BuildError::UnknownGroupMember {
                    group: group.name.clone(),
                    member: format!("the check `{name}`"),
                    known: format!("checks: {}", list_or_none(&names)),
                });
            }
        }
        for tag in group.tags.iter().chain(&group.exclude_tags) {
            if !tags.contains(tag.as_str()) {
                return Err(BuildError::UnknownGroupMember {
                    group: group.name.clone(),
                    member: format!("the tag `{tag}`"),
                    known: format!("tags in use: {}", list_or_none(&tags)),
                });
            }
        }
        if let Some(path) = &group.path {
            validate_path(path, mount).map_err(config_error)?;
            if !seen_paths.insert(path.clone()) {
                return Err(config_error(format!(
                    "another group is already served at `{path}`"
                )));
            }
        }
        if let Some(schedule) = group.schedule {
            if group.live_only {
                return Err(config_error(
                    "a deploy gate always runs live; remove `every`/`initial_delay`".into(),
                ));
            }
            if schedule.interval.is_zero() {
                return Err(config_error(
                    "`initial_delay` needs `every(interval)` with an interval above zero".into(),
                ));
            }
        }
        if group.failure_threshold == 0 {
            return Err(config_error(
                "`failure_threshold` must be at least 1".into(),
            ));
        }

        let includes_all = group.all_by_default && group.checks.is_empty() && group.tags.is_empty();
        let members = entries
            .iter()
            .filter(|e| {
                includes_all
                    || group.checks.iter().any(|n| **n == *e.name)
                    || e.tags.iter().any(|t| group.tags.contains(t))
            })
            .filter(|e| !group.exclude.iter().any(|n| **n == *e.name))
            .filter(|e| !e.tags.iter().any(|t| group.exclude_tags.contains(t)))
            .cloned()
            .collect::<Vec<Arc<Entry>>>();
        if group.probe == Probe::Liveness && !group.allow_external {
            for entry in &members {
                if let Some(tag) = entry
                    .tags
                    .iter()
                    .find(|t| EXTERNAL_TAGS.contains(&t.as_str()))
                {
                    return Err(BuildError::UnsafeProbe {
                        group: group.name.clone(),
                        check: entry.name.to_string(),
                        tag: tag.clone(),
                    });
                }
            }
        }
        list.push(ResolvedGroup {
            name: group.name,
            path: group.path,
            members,
            failure_status: group.failure_status.unwrap_or(failure_status),
            // Like every path, the service's anonymous level — except a group opened to
            // anonymous callers of a service that otherwise requires authorization: those
            // callers were meant to see nothing, so they get the status alone.
            detail: group.detail.unwrap_or(
                if service_requires_authorization && group.requires_authorization == Some(false) {
                    Detail::Status
                } else {
                    detail
                },
            ),
            requires_authorization: group.requires_authorization,
            schedule: group.schedule,
            min_interval: group.min_interval,
            burst: group.burst,
            probe: group.probe,
            failure_threshold: group.failure_threshold,
            on_status_change: group.on_status_change,
            history: Mutex::new(HistoryState::default()),
        });
    }
    Ok(list)
}

fn list_or_none(items: &BTreeSet<&str>) -> String {
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items.iter().copied().collect::<Vec<_>>().join(", ")
    }
}

fn validate_path(path: &str, mount: &str) -> Result<(), String> {
    if !path.starts_with('/') || (path.len() > 1 && path.ends_with('/')) {
        return Err(format!(
            "path `{path}` must start with `/` and not end with one"
        ));
    }
    if path.contains(['?', '#']) {
        return Err(format!("path `{path}` cannot contain `?` or `#`"));
    }
    let under_mount = mount == "/"
        || path == mount
        || path
            .strip_prefix(mount)
            .is_some_and(|rest| rest.starts_with('/'));
    if under_mount {
        return Err(format!(
            "path `{path}` is inside the mount path `{mount}`, where it would shadow a check; serve groups beside it (`/readyz`)"
        ));
    }
    Ok(())
}

impl Smoketest {
    /// A human-readable account of every path: which checks (and tags) it depends on, and
    /// what the platform does when each fails — liveness: restart; readiness: out of
    /// rotation; deploy gate: rollback. For a code review or the pod's start-up log.
    ///
    /// ```
    /// use smoketest_core::{from_fn, Group, Outcome, Smoketest};
    ///
    /// let smoke = Smoketest::builder()
    ///     .without_discovery()
    ///     .check(from_fn("db::ping", |_ctx| Box::pin(async { Ok(Outcome::Pass) })).tag("db"))
    ///     .group(Group::live())
    ///     .group(Group::ready().tag("db"))
    ///     .build()
    ///     .unwrap();
    /// let text = smoke.explain();
    /// assert!(text.contains("/readyz — readiness probe (group `ready`)"));
    /// assert!(text.contains("db::ping [db, external] — if it fails: take the pod out of rotation"));
    /// ```
    pub fn explain(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let line = |out: &mut String, entry: &Entry, probe: Probe| {
            let external = entry
                .tags
                .iter()
                .any(|t| EXTERNAL_TAGS.contains(&t.as_str()));
            let mut tags = entry.tags.join(", ");
            if external && !entry.tags.iter().any(|t| t == "external") {
                tags.push_str(if tags.is_empty() {
                    "external"
                } else {
                    ", external"
                });
            }
            let tags = if tags.is_empty() {
                String::new()
            } else {
                format!(" [{tags}]")
            };
            let _ = writeln!(
                out,
                "  {}{tags} — if it fails: {}",
                entry.name,
                probe.consequence()
            );
        };
        let _ = writeln!(
            out,
            "{} — deploy gate (the mount path; also /{{name}} per check): a failure should {}",
            self.path(),
            Probe::Deploy.consequence()
        );
        for entry in &self.inner.entries {
            line(&mut out, entry, Probe::Deploy);
        }
        for group in self.groups() {
            let path = group.path.as_deref().unwrap_or("(no path: run_group only)");
            let schedule = group.schedule.map_or(String::new(), |s| {
                format!(", every {}", humantime::format_duration(s.interval))
            });
            let _ = writeln!(
                out,
                "{path} — {} (group `{}`{schedule}): a failure answers {} and should {}",
                group.probe.noun(),
                group.name,
                group.failure_status.as_u16(),
                group.probe.consequence()
            );
            if group.members.is_empty() {
                let _ = writeln!(
                    out,
                    "  (no checks: answers 200 whenever the process serves HTTP)"
                );
            }
            for entry in &group.members {
                line(&mut out, entry, group.probe);
            }
            match group.probe {
                Probe::Readiness => {
                    let _ = writeln!(
                        out,
                        "  while draining: {} with reason `draining`, without running anything",
                        group.failure_status.as_u16()
                    );
                }
                Probe::Liveness
                    if group
                        .members
                        .iter()
                        .any(|e| e.tags.iter().any(|t| EXTERNAL_TAGS.contains(&t.as_str()))) =>
                {
                    let _ = writeln!(
                        out,
                        "  warning: depends on external systems (allowed explicitly): their outage restarts every pod"
                    );
                }
                _ => {}
            }
        }
        out
    }

    fn groups(&self) -> impl Iterator<Item = &ResolvedGroup> {
        self.inner
            .engine
            .scopes
            .iter()
            .filter_map(|s| s.group.as_ref())
    }

    /// The names of the groups, in the order they were added.
    pub fn group_names(&self) -> impl Iterator<Item = &str> {
        self.groups().map(|g| g.name.as_str())
    }

    /// The paths the groups are served at (`/livez`, `/readyz`), for adapters that route
    /// by path rather than asking [`Smoketest::serves`]. They always lie outside the mount
    /// path ([`build`](crate::SmoketestBuilder::build) refuses one inside it), so an adapter
    /// routes each of them beside the mount path.
    pub fn group_paths(&self) -> impl Iterator<Item = &str> {
        self.groups().filter_map(|g| g.path.as_deref())
    }

    /// The path group `name` is served at (`/readyz`), or `None` if it has no path or there
    /// is no such group. For adapters that serve a group by name (gRPC health).
    pub fn group_path(&self, name: &str) -> Option<&str> {
        self.groups()
            .find(|g| g.name == name)
            .and_then(|g| g.path.as_deref())
    }

    /// The names of the checks in group `name`, or `None` if there is no such group.
    pub fn group_members(&self, name: &str) -> Option<Vec<&str>> {
        self.groups()
            .find(|g| g.name == name)
            .map(|g| g.members.iter().map(|e| &*e.name).collect())
    }

    /// Run group `name` now, live (also for a background group), updating its history and
    /// calling its status-change hook like any of its runs. Not limited by the group's
    /// budget: this is the service's own call, not a request. `None` if there is no such
    /// group.
    pub async fn run_group(&self, name: &str) -> Option<Report> {
        let index = self.inner.engine.group_scope(name)?;
        let ask = crate::engine::Ask::Direct;
        let now = tokio::time::Instant::now();
        self.serve(
            index,
            &crate::Selection::all(),
            ask,
            now,
            crate::Detail::Full,
        )
        .await
        .ok()
    }
}
