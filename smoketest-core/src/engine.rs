//! The engine: decides, for each request, whether to start a run, join one, or answer
//! from a recent report — so that no amount of traffic makes the checks (and the
//! database behind them) do more than a small, fixed amount of work.
//!
//! Every request [`Smoketest::handle`] serves goes through these rules, in order:
//!
//! 1. **Single-flight.** If a run of the same checks is in progress, the request waits for
//!    it and gets its report. A thousand simultaneous requests cause one run.
//! 2. **Cache** (off by default). With [`cache_ttl`](crate::SmoketestBuilder::cache_ttl),
//!    a report younger than the TTL is served as it is, marked `"cached": true` with its
//!    `age_ms`.
//! 3. **Runs in flight.** At most [`max_runs_in_flight`](crate::SmoketestBuilder::max_runs_in_flight)
//!    runs (of different selections) execute at once (default 4).
//! 4. **Rate.** New runs start at most once per
//!    [`min_interval`](crate::SmoketestBuilder::min_interval) on average (default 1 s),
//!    with bursts of up to [`burst`](crate::SmoketestBuilder::burst) after a quiet period
//!    (default 10): a token bucket. `burst(1)` makes it a strict minimum interval.
//!
//! A request that rule 3 or 4 turns away gets the latest report of the same checks,
//! marked cached with its age; if there is none yet, `503 Service Unavailable` with
//! `Retry-After`. An authorized caller's `?fresh=1` skips rules 2 and 4 (a deploy gate
//! wants this release's answer now), but still joins a run in progress and still counts
//! against rule 3, which protects the database's connection pool.
//!
//! Which checks a request selects is resolved before the engine sees it, so `?tag=nonsense`
//! and `?tag=other-nonsense` (both selecting nothing) share one entry: a caller cannot make
//! the engine remember unbounded numbers of selections.
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
//! With the defaults, anonymous callers sending any number of requests for any selections
//! for `T` seconds start at most `10 + T` runs (the burst, then one per second), and at
//! most 4 run at once. A run executes each selected check once, so the database sees at
//! most `C` transactions per second in the long run — `C` being the number of checks that
//! use it (each check gets one transaction per pool, always rolled back) — and holds at
//! most `4 × C` connections for smoke checks at any moment. Everything else is answered
//! from memory.
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

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use tokio::time::Instant;

use crate::registry::{BuildError, Entry};
use crate::report::{Report, millis};
use crate::{Selection, Smoketest, SmoketestBuilder, UnknownCheck};

/// The default [`min_interval`](crate::SmoketestBuilder::min_interval): one new run per
/// second, sustained.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The default [`burst`](crate::SmoketestBuilder::burst).
pub const DEFAULT_BURST: u32 = 10;
/// The default [`max_runs_in_flight`](crate::SmoketestBuilder::max_runs_in_flight).
pub const DEFAULT_MAX_RUNS_IN_FLIGHT: usize = 4;

/// How many selections' latest reports are remembered; the oldest idle one is forgotten.
const MAX_REMEMBERED_SELECTIONS: usize = 64;

/// Load-protection settings as the builder collects them.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    cache_ttl: Option<Duration>,
    min_interval: Duration,
    burst: u32,
    max_in_flight: usize,
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
    pub(crate) fn build(self) -> Result<Engine, BuildError> {
        if self.max_in_flight == 0 {
            return Err(BuildError::Config(
                "max_runs_in_flight must be at least 1, or no request would ever run the checks"
                    .into(),
            ));
        }
        if self.burst == 0 {
            return Err(BuildError::Config(
                "burst must be at least 1, or no request would ever run the checks".into(),
            ));
        }
        Ok(Engine {
            state: Mutex::new(State {
                slots: HashMap::new(),
                in_flight: 0,
                tokens: f64::from(self.burst),
                refilled: Instant::now(),
                runs_started: 0,
            }),
            limits: self,
        })
    }
}

type RunFuture = Shared<BoxFuture<'static, Result<Arc<Report>, Arc<str>>>>;

/// The engine's state for one service. See the [module documentation](self).
pub(crate) struct Engine {
    limits: Limits,
    state: Mutex<State>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

struct State {
    slots: HashMap<Vec<Arc<str>>, Slot>,
    in_flight: usize,
    /// Token bucket for new runs.
    tokens: f64,
    refilled: Instant,
    runs_started: u64,
}

#[derive(Default)]
struct Slot {
    running: Option<RunFuture>,
    latest: Option<(Arc<Report>, Instant)>,
}

/// Why the engine gave no report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The selection names a check that does not exist.
    Unknown(UnknownCheck),
    /// Limits reached and no earlier report to fall back on.
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

/// A place in the engine's budget for one run, from [`Smoketest::admit_run`]: it counts
/// against [`max_runs_in_flight`](crate::SmoketestBuilder::max_runs_in_flight) until it
/// is dropped.
#[must_use = "the place in the budget is given back when the permit is dropped"]
pub struct RunPermit {
    smoke: Smoketest,
}

impl std::fmt::Debug for RunPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunPermit").finish_non_exhaustive()
    }
}

impl Drop for RunPermit {
    fn drop(&mut self) {
        self.smoke.inner.engine.lock().in_flight -= 1;
    }
}

enum Decision {
    Join(RunFuture),
    Serve(Box<Report>),
    Refuse(Refusal),
}

impl Engine {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The lock is never held across an await or user code; a poisoned one still
        // holds consistent counters.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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
        state.runs_started += 1;
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

fn cached(report: &Report, finished: Instant, now: Instant) -> Report {
    let mut report = report.clone();
    report.cached = true;
    report.age_ms = Some(millis(now.saturating_duration_since(finished)));
    report
}

impl Smoketest {
    /// A report for `selection` under the engine's rules: joined, cached or fresh.
    /// `fresh` (authorized callers only) skips the cache and the rate limit.
    pub(crate) async fn serve(
        &self,
        selection: &Selection,
        fresh: bool,
    ) -> Result<Report, Refusal> {
        let entries = self.select(selection).map_err(Refusal::Unknown)?;
        if entries.is_empty() {
            // Nothing to run costs nothing: not worth a place in the budget, and a caller
            // selecting nothing (`?tag=nonsense`) must not use up other callers' runs.
            return Ok(self.run_entries(entries, None).await);
        }
        let key: Vec<Arc<str>> = entries.iter().map(|e| e.name.clone()).collect();
        let engine = &self.inner.engine;
        let decision = {
            let mut state = engine.lock();
            let now = Instant::now();
            let state = &mut *state;
            let slot = state.slots.get(&key);
            if let Some(running) = slot.and_then(|s| s.running.clone()) {
                Decision::Join(running)
            } else if let Some((report, finished)) =
                slot.and_then(|s| s.latest.as_ref())
                    .filter(|(_, finished)| {
                        !fresh
                            && engine
                                .limits
                                .cache_ttl
                                .is_some_and(|ttl| now.saturating_duration_since(*finished) < ttl)
                    })
            {
                Decision::Serve(Box::new(cached(report, *finished, now)))
            } else {
                match engine.admit(state, now, fresh) {
                    Err(throttled) => match state.slots.get(&key).and_then(|s| s.latest.as_ref()) {
                        Some((report, finished)) => {
                            Decision::Serve(Box::new(cached(report, *finished, now)))
                        }
                        None => Decision::Refuse(Refusal::Throttled(throttled)),
                    },
                    Ok(()) => {
                        let permit = RunPermit {
                            smoke: self.clone(),
                        };
                        let run = self.start(key.clone(), entries, permit);
                        forget_idle_slots(&mut state.slots, &key);
                        state.slots.entry(key).or_default().running = Some(run.clone());
                        Decision::Join(run)
                    }
                }
            }
        };
        match decision {
            Decision::Serve(report) => Ok(*report),
            Decision::Refuse(refusal) => Err(refusal),
            Decision::Join(run) => match run.await {
                Ok(report) => Ok((*report).clone()),
                // Only a bug in the runner gets here: checks are isolated in their tasks.
                Err(message) => panic!("the smoketest runner failed: {message}"),
            },
        }
    }

    /// Spawn a run owned by the engine; its report becomes the selection's latest whether
    /// or not anybody still waits for it.
    fn start(&self, key: Vec<Arc<str>>, entries: Vec<Arc<Entry>>, permit: RunPermit) -> RunFuture {
        let smoke = self.clone();
        let task = tokio::spawn(async move {
            let mut finish = FinishRun {
                smoke: smoke.clone(),
                key,
                report: None,
                _permit: permit,
            };
            let report = Arc::new(smoke.run_entries(entries, None).await);
            finish.report = Some(report.clone());
            report
        });
        async move {
            task.await
                .map_err(|e| Arc::<str>::from(format!("the run's task ended abnormally: {e}")))
        }
        .boxed()
        .shared()
    }

    /// Take a place in the engine's budget for a run that does not go through the endpoint
    /// (a scheduler of your own, a group of checks served elsewhere), so that it shares the
    /// limits of the [`engine`](crate::engine) module: at most `max_runs_in_flight` at
    /// once and, unless `fresh`, one per `min_interval` on average. Hold the permit while
    /// the run lasts.
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
        let engine = &self.inner.engine;
        engine.admit(&mut engine.lock(), Instant::now(), fresh)?;
        Ok(RunPermit {
            smoke: self.clone(),
        })
    }

    /// How many runs the engine has started since the service began (for tests and load
    /// measurements).
    pub fn runs_started(&self) -> u64 {
        self.inner.engine.lock().runs_started
    }
}

/// Releases a run's slot (and, by dropping its permit, its place in the budget) when its
/// task ends, even if the runner itself panicked.
struct FinishRun {
    smoke: Smoketest,
    key: Vec<Arc<str>>,
    report: Option<Arc<Report>>,
    _permit: RunPermit,
}

impl Drop for FinishRun {
    fn drop(&mut self) {
        let mut state = self.smoke.inner.engine.lock();
        let slot = state
            .slots
            .entry(std::mem::take(&mut self.key))
            .or_default();
        slot.running = None;
        if let Some(report) = self.report.take() {
            slot.latest = Some((report, Instant::now()));
        }
    }
}

/// Keep the map of selections bounded: forget the oldest idle ones beyond the limit.
fn forget_idle_slots(slots: &mut HashMap<Vec<Arc<str>>, Slot>, keep: &[Arc<str>]) {
    while slots.len() >= MAX_REMEMBERED_SELECTIONS {
        let oldest = slots
            .iter()
            .filter(|(k, s)| s.running.is_none() && k.as_slice() != keep)
            .min_by_key(|(_, s)| s.latest.as_ref().map(|(_, at)| *at))
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
    /// `"cached": true`, with `age_ms`). Default: off, every request that the rate allows
    /// runs the checks. Authorized callers bypass it with `?fresh=1`.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.limits.cache_ttl = (!ttl.is_zero()).then_some(ttl);
        self
    }

    /// On average at most one new run per `interval` (default 1 s); see
    /// [`burst`](Self::burst). Requests beyond it get the latest report, or 503 with
    /// `Retry-After` when there is none. `Duration::ZERO` removes the limit.
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
    /// may execute at the same time (default 4). Beyond it, requests get the latest report
    /// or 503. Applies to authorized callers too: it protects the connection pool.
    pub fn max_runs_in_flight(mut self, runs: usize) -> Self {
        self.limits.max_in_flight = runs;
        self
    }
}
