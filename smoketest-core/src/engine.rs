//! The engine: decides, for each request, whether to start a run, join one, or answer
//! from a recent report — so that no amount of traffic makes the checks (and the
//! database behind them) do more than a small, fixed amount of work, and no path's
//! traffic can starve another path.
//!
//! Every path is a *scope* with its own budget: the mount path (`/smoketest`, one check
//! `/smoketest/{name}`, any `?tag=`/`?check=`/`?exclude=` selection) is one scope, and
//! each [group](crate::group) (`/livez`, `/readyz`, …) is a scope of its own. A flood of
//! the mount path drains the mount path's budget only: the probes keep answering. Every
//! request [`Smoketest::handle`] serves, on any path, goes through these rules, in order:
//!
//! 0. **Answers without a run.** While the service
//!    [drains](Smoketest::start_draining), a readiness group answers its failure status
//!    with `"reason": "draining"`. A background group ([`Group::every`](crate::Group::every))
//!    whose first run has not finished answers a plain request with `"reason": "pending"`:
//!    200 for a liveness group, the failure status for any other. Both cost nothing.
//! 1. **Nothing to run costs nothing.** A selection with no checks (`?tag=nonsense`, an
//!    empty `Group::live()`) answers at once with a report of zero checks and never takes
//!    a place in any budget.
//! 2. **Single-flight.** If a run of the same checks is in progress in the scope, the
//!    request waits for it and gets its report. A thousand simultaneous requests cause one
//!    run.
//! 3. **Snapshots and cache.** A group with a schedule ([`Group::every`](crate::Group::every))
//!    answers from its latest scheduled run. With
//!    [`cache_ttl`](crate::SmoketestBuilder::cache_ttl), any path answers from a report
//!    younger than the TTL.
//! 4. **Runs in flight.** At most
//!    [`max_runs_in_flight`](crate::SmoketestBuilder::max_runs_in_flight) runs execute at
//!    once per scope (default 4). A run counts until the last task it started has ended —
//!    checks cut off by their timeout and cleanups included — not until it answered.
//! 5. **Rate.** New runs start at most once per
//!    [`min_interval`](crate::SmoketestBuilder::min_interval) on average (default 1 s),
//!    with bursts of up to [`burst`](crate::SmoketestBuilder::burst) (default 10): a token
//!    bucket per scope. `burst(1)` makes it a strict minimum interval.
//!
//! A request that rule 4 or 5 turns away gets the latest report of the same checks,
//! marked `"cached": true` with its `age_ms`. With none yet, the mount path answers
//! `503 Service Unavailable` with `Retry-After`; a live group path never does: its first run
//! happens (at most one such run per group, since later requests join it).
//!
//! **After each run** the engine applies the checks' latency budgets (a pass slower than
//! its [`warn_after`](crate::SmokeCheck::warn_after) becomes `warn` of kind `slow`, logged
//! once), folds the run into every check's [history](crate::history), and for a group
//! applies its failure threshold — before the report is published to anyone.
//!
//! **Freshness.** An authorized caller's `?fresh=1` gets a run that *started after the
//! request arrived*, on every path: it skips rules 3 and 5, never joins a run that started
//! earlier (it waits for that run to end, then starts its own, or joins one that started
//! after it arrived), and still counts against rule 4, which protects the database's
//! connection pool; when rule 4 refuses it, the answer is 503 with `Retry-After`, never an
//! older report. Every report says `cached` and `age_ms` (milliseconds since its run
//! finished), so no answer is stale without saying so.
//!
//! Which checks a request selects is resolved before the engine sees it, so `?tag=a` and
//! `?tag=b` selecting the same checks share one entry, and the engine remembers at most 64
//! selections: a caller cannot make it remember unbounded numbers of them.
//!
//! [`Smoketest::run`] bypasses these rules: it is for programs and tests that run the
//! checks themselves, not for requests from the network.
//!
//! Runs are spawned and owned by the engine, not by the request: a caller that hangs up
//! does not cancel a check half-way (its transaction is still rolled back, its cleanups
//! still run), and the finished report still becomes the latest.
//!
//! # What a flood costs
//!
//! With the defaults, callers sending any number of requests to one path for `T` seconds
//! start at most `10 + T` runs there (the burst, then one per second), and at most 4 run
//! at once. A run executes each selected check once, so the database sees at most `C`
//! transactions per second per path in the long run — `C` being the number of checks of
//! that path that use it (one transaction per check and pool, always rolled back) — and
//! holds at most `4 × C` connections for that path's smoke checks at any moment. With `G`
//! group paths, the worst case for the whole service is the sum over the mount path and
//! the groups: at most `(1 + G) × (10 + T)` runs. A group with a schedule costs one run per
//! interval, whatever its traffic. Everything else is answered from memory.
//!
//! # How stale an answer can be
//!
//! Never more than it says: `age_ms` is on every report. A report served instead of a run
//! (rules 3–5) is the latest of its selection: with a schedule, at most the interval plus
//! one run's duration old; under a sustained flood of one selection with the defaults, at
//! most about one second plus one run's duration (a token arrives every second). A
//! selection asked for rarely can get an older report while the budget is spent on others;
//! `?fresh=1` is the way to insist.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::time::Duration;
//! use smoketest_core::{from_fn, Outcome, Smoketest};
//!
//! # #[tokio::main]
//! # async fn main() {
//! let runs = Arc::new(AtomicUsize::new(0));
//! let counter = runs.clone();
//! let smoke = Smoketest::builder()
//!     .without_discovery()
//!     .check(from_fn("db::write", move |_ctx| {
//!         counter.fetch_add(1, Ordering::SeqCst);
//!         Box::pin(async {
//!             tokio::time::sleep(Duration::from_millis(100)).await;
//!             Ok(Outcome::Pass)
//!         })
//!     }))
//!     .cache_ttl(Duration::from_secs(5))
//!     .build()
//!     .unwrap();
//!
//! let get = || http::Request::get("/smoketest").body(()).unwrap().into_parts().0;
//! let (a, b) = (get(), get());
//! let (first, second) = tokio::join!(smoke.handle(&a), smoke.handle(&b));
//! assert_eq!(first.status(), 200);
//! assert_eq!(second.status(), 200);
//! assert_eq!(runs.load(Ordering::SeqCst), 1, "two concurrent requests, one run");
//!
//! let third = smoke.handle(&get()).await;
//! assert!(std::str::from_utf8(third.body()).unwrap().contains("\"cached\": true"));
//! assert_eq!(runs.load(Ordering::SeqCst), 1, "served from the cache");
//! # }
//! ```

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use http::StatusCode;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::group::{Probe, ResolvedGroup};
use crate::history::History;
use crate::registry::{BuildError, Entry, Inner};
use crate::report::{Report, millis};
use crate::{Detail, Selection, Smoketest, SmoketestBuilder, Status, UnknownCheck};

/// The default [`min_interval`](crate::SmoketestBuilder::min_interval): one new run per
/// second, sustained.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The default [`burst`](crate::SmoketestBuilder::burst).
pub const DEFAULT_BURST: u32 = 10;
/// The default [`max_runs_in_flight`](crate::SmoketestBuilder::max_runs_in_flight).
pub const DEFAULT_MAX_RUNS_IN_FLIGHT: usize = 4;

/// How many selections' latest reports are remembered; the oldest idle one is forgotten.
const MAX_REMEMBERED_SELECTIONS: usize = 64;

/// Load-protection settings as the builder collects them; every scope gets a copy.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) cache_ttl: Option<Duration>,
    pub(crate) min_interval: Duration,
    pub(crate) burst: u32,
    pub(crate) max_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cache_ttl: None,
            min_interval: DEFAULT_MIN_INTERVAL,
            burst: DEFAULT_BURST,
            max_in_flight: DEFAULT_MAX_RUNS_IN_FLIGHT,
        }
    }
}

impl Limits {
    fn validate(&self, whose: &str) -> Result<(), BuildError> {
        if self.max_in_flight == 0 {
            return Err(BuildError::Config(format!(
                "{whose}max_runs_in_flight must be at least 1, or no request would ever run the checks"
            )));
        }
        if self.burst == 0 {
            return Err(BuildError::Config(format!(
                "{whose}burst must be at least 1, or no request would ever run the checks"
            )));
        }
        Ok(())
    }
}

/// Who asks the engine for a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ask {
    /// A request from the network, under the scope's budget.
    Request {
        /// `?fresh=1`: a run that started after the request arrived.
        fresh: bool,
    },
    /// The scope's own schedule: not budgeted, the interval is the limit.
    Scheduled,
    /// The service's own call ([`Smoketest::run_group`]): a fresh run, not budgeted.
    Direct,
}

/// Why the engine gave no report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The selection names a check that does not exist.
    Unknown(UnknownCheck),
    /// Limits reached and no report the caller may be given instead.
    Throttled(Throttled),
}

/// No run may start now: too many are in flight, or the minimum interval has not passed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the checks are not run again yet ({reason} reached); retry in {retry_after:?}")]
pub struct Throttled {
    /// When a run may start again (for `Retry-After`).
    pub retry_after: Duration,
    /// Which limit: `"runs in flight"` or `"minimum interval between runs"`.
    pub reason: &'static str,
}

type RunFuture = Shared<BoxFuture<'static, Result<Arc<Report>, Arc<str>>>>;

/// The engine of one service: a scope per path (index 0 the mount path, then the groups).
pub(crate) struct Engine {
    pub(crate) scopes: Vec<Scope>,
    runs_started: AtomicU64,
    schedules_started: AtomicBool,
    /// Every check's last runs, on every path ([`history`](crate::history)).
    history: History,
    /// Set by [`Smoketest::start_draining`]; never cleared.
    draining: AtomicBool,
}

/// One path's policy, budget and runs. See the [module documentation](self).
pub(crate) struct Scope {
    /// The group this scope serves; `None` for the mount path.
    pub(crate) group: Option<ResolvedGroup>,
    /// The HTTP status of a failing report on this path.
    pub(crate) failure_status: StatusCode,
    /// What anonymous callers see on this path.
    pub(crate) detail: Detail,
    limits: Limits,
    state: Mutex<State>,
    schedule: Mutex<Option<JoinHandle<()>>>,
}

struct State {
    slots: HashMap<Vec<Arc<str>>, Slot>,
    in_flight: usize,
    /// Token bucket for new runs.
    tokens: f64,
    refilled: Instant,
}

#[derive(Default)]
struct Slot {
    running: Option<(RunFuture, Instant)>,
    latest: Option<Latest>,
}

struct Latest {
    report: Arc<Report>,
    started: Instant,
    finished: Instant,
}

impl Latest {
    /// The report as served now: `cached` when it was not run for this request.
    /// A copy of what `detail` may see (copying a report no caller sees whole would cost
    /// every probe served from memory the whole report).
    fn serve(&self, cached: bool, detail: Detail) -> Report {
        let mut report = self.report.restrict(detail);
        report.cached = cached;
        report.age_ms = Some(millis(self.finished.elapsed()));
        report
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.schedule).take() {
            task.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Never held across an await or user code; a poisoned one still holds consistent state.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Engine {
    /// The engine for the mount path (`mount`: its failure status and anonymous detail) and
    /// `groups`, each group with its own budget.
    pub(crate) fn new(
        limits: Limits,
        history: History,
        mount: (StatusCode, Detail),
        groups: Vec<ResolvedGroup>,
    ) -> Result<Engine, BuildError> {
        limits.validate("")?;
        let scope = |group: Option<ResolvedGroup>, failure_status, detail| {
            let mut limits = limits.clone();
            if let Some(g) = &group {
                limits.min_interval = g.min_interval.unwrap_or(limits.min_interval);
                limits.burst = g.burst.unwrap_or(limits.burst);
                limits.validate(&format!("group `{}`: ", g.name))?;
            }
            Ok(Scope {
                group,
                failure_status,
                detail,
                state: Mutex::new(State {
                    slots: HashMap::new(),
                    in_flight: 0,
                    tokens: f64::from(limits.burst),
                    refilled: Instant::now(),
                }),
                limits,
                schedule: Mutex::new(None),
            })
        };
        let mut scopes = vec![scope(None, mount.0, mount.1)?];
        for group in groups {
            let (status, detail) = (group.failure_status, group.detail);
            scopes.push(scope(Some(group), status, detail)?);
        }
        Ok(Engine {
            scopes,
            runs_started: AtomicU64::new(0),
            schedules_started: AtomicBool::new(false),
            history,
            draining: AtomicBool::new(false),
        })
    }

    /// The scope serving `name`'s group.
    pub(crate) fn group_scope(&self, name: &str) -> Option<usize> {
        self.scopes
            .iter()
            .position(|s| s.group.as_ref().is_some_and(|g| g.name == name))
    }
}

impl Scope {
    /// What the platform does when this path fails; `None` for the mount path.
    fn probe(&self) -> Option<Probe> {
        self.group.as_ref().map(|g| g.probe)
    }

    /// Admit one more run under the limits (the rate only when not `fresh`), counting it.
    fn admit(&self, state: &mut State, now: Instant, fresh: bool) -> Result<(), Throttled> {
        if state.in_flight >= self.limits.max_in_flight {
            return Err(Throttled {
                retry_after: Duration::from_secs(1),
                reason: "runs in flight",
            });
        }
        if !fresh {
            self.take_token(state, now)
                .map_err(|retry_after| Throttled {
                    retry_after,
                    reason: "minimum interval between runs",
                })?;
        }
        state.in_flight += 1;
        Ok(())
    }

    /// Take a token from the bucket, or say how long until one is there.
    fn take_token(&self, state: &mut State, now: Instant) -> Result<(), Duration> {
        let interval = self.limits.min_interval;
        if interval.is_zero() {
            return Ok(());
        }
        let elapsed = now.saturating_duration_since(state.refilled);
        state.tokens = (state.tokens + elapsed.as_secs_f64() / interval.as_secs_f64())
            .min(f64::from(self.limits.burst));
        state.refilled = now;
        if state.tokens >= 1.0 {
            state.tokens -= 1.0;
            Ok(())
        } else {
            Err(interval.mul_f64(1.0 - state.tokens))
        }
    }
}

/// A place in a scope's budget, held by every task of the run it admitted until the last
/// one ends: [`max_runs_in_flight`](crate::SmoketestBuilder::max_runs_in_flight) counts
/// tasks still running, not runs that answered. From [`Smoketest::admit_run`] for runs
/// outside the endpoint.
#[must_use = "the place in the budget is given back when the permit is dropped"]
pub struct RunPermit {
    smoke: Smoketest,
    scope: usize,
}

impl std::fmt::Debug for RunPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunPermit").finish_non_exhaustive()
    }
}

impl Drop for RunPermit {
    fn drop(&mut self) {
        lock(&self.smoke.inner.engine.scopes[self.scope].state).in_flight -= 1;
    }
}

enum Decision {
    Join(RunFuture),
    /// A run that started before a fresh request arrived: wait for it, then decide again.
    Wait(RunFuture),
    Serve(Box<Report>),
    Refuse(Refusal),
}

impl Smoketest {
    /// A report for `selection` on scope `index` under the engine's rules: joined, served
    /// from memory or run, as much of it as `detail` may see (the caller restricts again
    /// in place, for reports made here whole). Group scopes ignore `selection` (the group is
    /// the selection).
    pub(crate) async fn serve(
        &self,
        index: usize,
        selection: &Selection,
        ask: Ask,
        arrived: Instant,
        detail: Detail,
    ) -> Result<Report, Refusal> {
        let scope = &self.inner.engine.scopes[index];
        if matches!(ask, Ask::Request { .. })
            && scope.probe() == Some(Probe::Readiness)
            && self.is_draining()
        {
            // Costs nothing: the pod is leaving rotation whatever the checks would say.
            return Ok(self.reason_report(scope, Status::Fail, "draining"));
        }
        let entries = match &scope.group {
            Some(group) => group.members.clone(),
            None => self.select(selection).map_err(Refusal::Unknown)?,
        };
        if entries.is_empty() {
            return Ok(self.empty_report(scope));
        }
        let key: Vec<Arc<str>> = entries.iter().map(|e| e.name.clone()).collect();
        loop {
            let decision = self.decide(index, &key, &entries, ask, arrived, detail);
            match decision {
                Decision::Serve(report) => return Ok(*report),
                Decision::Refuse(refusal) => return Err(refusal),
                Decision::Wait(run) => {
                    let _ = run.await;
                }
                Decision::Join(run) => {
                    let report = run.await.unwrap_or_else(|message| {
                        // Only a bug in the runner gets here: checks are isolated in tasks.
                        panic!("the smoketest runner failed: {message}")
                    });
                    let mut report = report.restrict(detail);
                    report.age_ms = Some(0.0);
                    return Ok(report);
                }
            }
        }
    }

    fn decide(
        &self,
        index: usize,
        key: &[Arc<str>],
        entries: &[Arc<Entry>],
        ask: Ask,
        arrived: Instant,
        detail: Detail,
    ) -> Decision {
        let fresh = !matches!(ask, Ask::Request { fresh: false });
        let scope = &self.inner.engine.scopes[index];
        let mut state = lock(&scope.state);
        let state = &mut *state;
        let now = Instant::now();
        let slot = state.slots.get(key);
        let scheduled = scope.group.as_ref().is_some_and(|g| g.schedule.is_some());
        if !fresh && scheduled && slot.is_none_or(|s| s.latest.is_none()) {
            // A background group's first run has not finished: say so at once rather than
            // run it inline (and hold the probe) or join the schedule's run.
            let status = if scope.probe() == Some(Probe::Liveness) {
                Status::Pass
            } else {
                Status::Fail
            };
            return Decision::Serve(Box::new(self.reason_report(scope, status, "pending")));
        }
        if let Some((run, started)) = slot.and_then(|s| s.running.as_ref()) {
            return if !fresh || *started >= arrived || ask == Ask::Scheduled {
                Decision::Join(run.clone())
            } else {
                Decision::Wait(run.clone())
            };
        }
        let latest = slot.and_then(|s| s.latest.as_ref());
        if let Some(latest) = latest {
            if fresh && latest.started >= arrived {
                // Another fresh caller's run, started after this request arrived.
                return Decision::Serve(Box::new(latest.serve(false, detail)));
            }
            let young = scope
                .limits
                .cache_ttl
                .is_some_and(|ttl| now.saturating_duration_since(latest.finished) < ttl);
            if !fresh && (scheduled || young) {
                return Decision::Serve(Box::new(latest.serve(true, detail)));
            }
        }
        // What a refused request gets instead of a run: never an older report for `fresh`.
        let fallback = latest
            .filter(|_| !fresh)
            .map(|l| Box::new(l.serve(true, detail)));
        let mut permit = None;
        if let Ask::Request { fresh } = ask {
            match scope.admit(state, now, fresh) {
                Ok(()) => {
                    permit = Some(RunPermit {
                        smoke: self.clone(),
                        scope: index,
                    });
                }
                Err(throttled) => match fallback {
                    Some(report) => return Decision::Serve(report),
                    // A group's first run happens whatever the budget: at most one such
                    // run per group, since every later request joins it.
                    None if !fresh && scope.group.is_some() => {}
                    None => return Decision::Refuse(Refusal::Throttled(throttled)),
                },
            }
        }
        self.inner
            .engine
            .runs_started
            .fetch_add(1, Ordering::Relaxed);
        let run = self.start(index, key.to_vec(), entries.to_vec(), permit, now);
        if scope.group.is_none() {
            forget_idle_slots(&mut state.slots, key);
        }
        state.slots.entry(key.to_vec()).or_default().running = Some((run.clone(), now));
        Decision::Join(run)
    }

    /// Spawn a run owned by the engine; its report becomes the selection's latest whether
    /// or not anybody still waits for it.
    fn start(
        &self,
        index: usize,
        key: Vec<Arc<str>>,
        entries: Vec<Arc<Entry>>,
        permit: Option<RunPermit>,
        started: Instant,
    ) -> RunFuture {
        let smoke = self.clone();
        let hold: Option<Arc<dyn Any + Send + Sync>> = permit.map(|p| Arc::new(p) as _);
        let (run, checks) = self.prepare_run(entries, hold);
        let rescue = run.clone();
        let task = tokio::spawn(async move {
            let mut finish = FinishRun {
                smoke: smoke.clone(),
                index,
                key,
                started,
                report: None,
            };
            let mut report = checks.await;
            if !run.was_rescued() {
                // (A rescued run's callers had their report recorded already.)
                report = smoke.record_run(index, report);
            }
            let report = Arc::new(report);
            finish.report = Some(report.clone());
            report
        });
        let smoke = self.clone();
        async move {
            let task = async {
                task.await
                    .map_err(|e| Arc::<str>::from(format!("the run's task ended abnormally: {e}")))
            };
            // Should a check block the run's thread, the report made from what the checks
            // recorded is recorded like the run's own.
            rescue
                .answer(task, |report| Arc::new(smoke.record_run(index, report)))
                .await
        }
        .boxed()
        .shared()
    }

    /// Record a finished run in the history and its group's state: the report callers get.
    fn record_run(&self, index: usize, mut report: Report) -> Report {
        let engine = &self.inner.engine;
        engine.history.record(&report, SystemTime::now());
        if let Some(group) = &engine.scopes[index].group {
            report = group.record(report);
        }
        engine.history.attach(&mut report);
        report
    }

    /// The answer without a run for a reason (`draining`, `pending`): no checks, `status`.
    fn reason_report(&self, scope: &Scope, status: Status, reason: &str) -> Report {
        let mut report = self.empty_report(scope);
        report.status = status;
        report.reason = Some(reason.to_string());
        report
    }

    /// Whether [`start_draining`](Self::start_draining) was called.
    pub fn is_draining(&self) -> bool {
        self.inner.engine.draining.load(Ordering::Relaxed)
    }

    /// Start draining: from now on every readiness group ([`Group::ready`](crate::Group::ready),
    /// [`Group::readiness`](crate::Group::readiness)) answers its failure status (503) with
    /// `"status": "fail"` and `"reason": "draining"`, at once and without running anything,
    /// while liveness and the mount path answer as before. Call it when the process is told
    /// to stop (SIGTERM), then keep serving for a few seconds so that the platform takes the
    /// pod out of rotation before the listener closes. Irreversible; idempotent.
    pub fn start_draining(&self) {
        if !self.inner.engine.draining.swap(true, Ordering::Relaxed) {
            tracing::info!("smoketest: draining, readiness now answers 503 (reason `draining`)");
        }
    }

    /// A future for graceful shutdown: waits for `signal`, then
    /// [starts draining](Self::start_draining), then waits `delay` (while readiness answers
    /// 503 and everything else is still served) and completes — hand it to your server's
    /// graceful shutdown, which then stops accepting and finishes the requests in flight.
    /// Kubernetes keeps sending traffic for a few seconds after SIGTERM while endpoints
    /// update; `delay` covers that (5 s suits the default probe periods).
    ///
    /// ```
    /// use std::time::Duration;
    /// use smoketest_core::{Group, Smoketest};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let smoke = Smoketest::builder().without_discovery().group(Group::ready()).build().unwrap();
    /// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    /// let shutdown = tokio::spawn(smoke.drain_after(async { let _ = stopped.await; }, Duration::ZERO));
    /// stop.send(()).unwrap(); // in a service: tokio::signal's SIGTERM
    /// shutdown.await.unwrap();
    /// let (parts, ()) = http::Request::get("/readyz").body(()).unwrap().into_parts();
    /// assert_eq!(smoke.handle(&parts).await.status(), 503);
    /// # }
    /// ```
    pub fn drain_after<S>(
        &self,
        signal: S,
        delay: Duration,
    ) -> impl std::future::Future<Output = ()> + Send + 'static
    where
        S: std::future::Future + Send + 'static,
    {
        let smoke = self.clone();
        async move {
            signal.await;
            smoke.start_draining();
            tracing::info!(
                delay_ms = millis(delay),
                "smoketest: shutdown signal received; serving on while the pod leaves rotation"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// The answer to a selection of no checks: nothing ran, nothing is remembered.
    fn empty_report(&self, scope: &Scope) -> Report {
        let config = &self.inner.config;
        let mut report = Report::from_checks(SystemTime::now(), Duration::ZERO, Vec::new());
        report.service = config.service.clone();
        report.version = config.version.clone();
        report.release_id = config.release_id.clone();
        report.age_ms = Some(0.0);
        report.group = scope.group.as_ref().map(|g| g.name.clone());
        report
    }

    /// Take a place in the mount path's budget for a run that does not go through the
    /// endpoint (a scheduler of your own), so that it shares the limits of the
    /// [`engine`](crate::engine) module: at most `max_runs_in_flight` at once and, unless
    /// `fresh`, one per `min_interval` on average. Hold the permit while the run lasts.
    ///
    /// ```
    /// # use smoketest_core::{Selection, Smoketest};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let smoke = Smoketest::builder().without_discovery().burst(1).build().unwrap();
    /// let permit = smoke.admit_run(false).expect("the burst allows one run");
    /// let report = smoke.run(&Selection::all()).await.unwrap();
    /// drop(permit);
    /// # let _ = report;
    /// let refused = smoke.admit_run(false).unwrap_err();
    /// assert_eq!(refused.reason, "minimum interval between runs");
    /// # }
    /// ```
    pub fn admit_run(&self, fresh: bool) -> Result<RunPermit, Throttled> {
        let scope = &self.inner.engine.scopes[0];
        scope.admit(&mut lock(&scope.state), Instant::now(), fresh)?;
        self.inner
            .engine
            .runs_started
            .fetch_add(1, Ordering::Relaxed);
        Ok(RunPermit {
            smoke: self.clone(),
            scope: 0,
        })
    }

    /// How many runs the engine has started since the service began, on every path (for
    /// tests and load measurements).
    pub fn runs_started(&self) -> u64 {
        self.inner.engine.runs_started.load(Ordering::Relaxed)
    }

    /// Start the schedules of background groups, if they are not running. Idempotent.
    /// [`build`](crate::SmoketestBuilder::build) calls it when inside a tokio runtime, and
    /// every request does otherwise; call it yourself to start the schedules before the
    /// first request when you build outside a runtime. Does nothing outside a runtime.
    pub fn start_background(&self) {
        let engine = &self.inner.engine;
        if engine.schedules_started.load(Ordering::Acquire)
            || tokio::runtime::Handle::try_current().is_err()
        {
            return;
        }
        for (index, scope) in engine.scopes.iter().enumerate() {
            let Some(schedule) = scope.group.as_ref().and_then(|g| g.schedule) else {
                continue;
            };
            let mut task = lock(&scope.schedule);
            if task.as_ref().is_some_and(|t| !t.is_finished()) {
                continue;
            }
            let weak = Arc::downgrade(&self.inner);
            *task = Some(tokio::spawn(run_on_schedule(
                weak,
                index,
                schedule.interval,
                schedule.initial_delay,
            )));
        }
        engine.schedules_started.store(true, Ordering::Release);
    }
}

/// The background loop of one group. Holds the registry only weakly between runs, so it
/// ends when the last `Smoketest` is dropped.
async fn run_on_schedule(weak: Weak<Inner>, index: usize, every: Duration, delay: Duration) {
    tokio::time::sleep(delay).await;
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let smoke = Smoketest { inner };
        let _ = smoke
            .serve(
                index,
                &Selection::all(),
                Ask::Scheduled,
                Instant::now(),
                Detail::Status,
            )
            .await;
    }
}

/// Releases a run's slot when its task ends, even if the runner itself panicked, and
/// publishes its report as the selection's latest.
struct FinishRun {
    smoke: Smoketest,
    index: usize,
    key: Vec<Arc<str>>,
    started: Instant,
    report: Option<Arc<Report>>,
}

impl Drop for FinishRun {
    fn drop(&mut self) {
        let scope = &self.smoke.inner.engine.scopes[self.index];
        let mut state = lock(&scope.state);
        let slot = state
            .slots
            .entry(std::mem::take(&mut self.key))
            .or_default();
        slot.running = None;
        if let Some(report) = self.report.take() {
            slot.latest = Some(Latest {
                report,
                started: self.started,
                finished: Instant::now(),
            });
        }
    }
}

/// Keep the map of selections bounded: forget the oldest idle ones beyond the limit.
fn forget_idle_slots(slots: &mut HashMap<Vec<Arc<str>>, Slot>, keep: &[Arc<str>]) {
    while slots.len() >= MAX_REMEMBERED_SELECTIONS {
        let oldest = slots
            .iter()
            .filter(|(k, s)| s.running.is_none() && k.as_slice() != keep)
            .min_by_key(|(_, s)| s.latest.as_ref().map(|l| l.finished))
            .map(|(k, _)| k.clone());
        match oldest {
            Some(k) => {
                slots.remove(&k);
            }
            None => break,
        }
    }
}

/// Load protection. See the [`engine`](crate::engine) module for the rules and defaults.
impl SmoketestBuilder {
    /// Serve a report younger than `ttl` instead of running the checks again (marked
    /// `"cached": true`, with `age_ms`), on every path. Default: off, every request that
    /// the rate allows runs the checks. Authorized callers bypass it with `?fresh=1`.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.limits.cache_ttl = (!ttl.is_zero()).then_some(ttl);
        self
    }

    /// On average at most one new run per `interval` per path (default 1 s); see
    /// [`burst`](Self::burst). Requests beyond it get the latest report, or 503 with
    /// `Retry-After` when there is none. `Duration::ZERO` removes the limit. A group can
    /// set its own ([`Group::min_interval`](crate::Group::min_interval)).
    pub fn min_interval(mut self, interval: Duration) -> Self {
        self.limits.min_interval = interval;
        self
    }

    /// How many runs may start back to back after a quiet period before
    /// [`min_interval`](Self::min_interval) applies (default 10). `1` makes the interval a
    /// strict minimum.
    pub fn burst(mut self, runs: u32) -> Self {
        self.limits.burst = runs;
        self
    }

    /// How many runs (of different selections; one selection never runs twice at once)
    /// may execute at the same time per path (default 4), counting a run until every task
    /// it started has ended. Beyond it, requests get the latest report or 503. Applies to
    /// authorized callers too: it protects the connection pool.
    pub fn max_runs_in_flight(mut self, runs: usize) -> Self {
        self.limits.max_in_flight = runs;
        self
    }
}
