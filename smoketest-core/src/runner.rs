//! The runner: runs a selection of checks concurrently, each with its own timeout and
//! panic isolation, and turns their results into a [`Report`] whose verdicts are true when
//! it goes out.
//!
//! A run executes on a task of its own that the request does not own: a client that hangs
//! up cannot cancel a check half-way, so its context is always finished (transactions
//! rolled back, cleanups run). That task polls each check once, in place; a check that
//! completes on its first poll (one that does no I/O, or answers from memory) costs no task
//! of its own, and one that has to wait moves, as it is, onto a task of its own, where it
//! waits without holding the others up. A first poll that keeps the thread longer than a
//! few milliseconds makes the run give every later check a task of its own at once.
//! At most [`concurrency`](crate::SmoketestBuilder::concurrency) checks execute at once.
//! Each check's timeout is clipped to the run's deadline. Results come back in registration
//! order.
//!
//! # Guarantees
//!
//! - **Rollback before verdict.** A check's result is decided after its database
//!   transactions have ended: rolled back, or — when the `ROLLBACK` does not answer in time,
//!   or a cancel had to be sent to the server — their connections closed, never returned to
//!   the pool. A check that committed is reported `committed` even if it also timed out.
//! - **Bounded answer.** The run answers at the latest [`VERDICT_GRACE`] (1 s) after its
//!   deadline. The rollbacks of checks cut off at the deadline get 500 ms of that grace and
//!   closing their connections 250 ms more (see [`db`](crate::db)), so only a check that
//!   blocks its thread (or whose cleanup outlasts the grace) is reported before its
//!   transactions have ended; it is then reported as such, and counted as overrunning.
//!   Should a check block the run's own thread in its first poll, the callers stop waiting
//!   for the run's task 50 ms later and answer from what every check recorded: the
//!   blocking check as a timeout, the checks not started yet as never started, naming it.
//! - **Bounded leftovers.** Every cleanup registered with
//!   [`Context::defer`](crate::Context::defer) runs within the
//!   [`cleanup_timeout`](crate::SmoketestBuilder::cleanup_timeout) (default 5 s); one that
//!   overstays it is dropped and reported with kind `cleanup`.
//! - **No piling up.** A check instance still running when its run answered is
//!   *overrunning*. While one runs, later runs report that check with kind `overrun`
//!   instead of starting a second copy, so a check that ignores its timeout costs at most one
//!   stuck task, however often the endpoint is called. The count is in every report
//!   ([`Report::overrunning`]), in the Prometheus output (`smoketest_checks_overrunning`),
//!   through the `metrics` feature, and from [`Smoketest::checks_overrunning`].
//! - **The in-flight limit counts work, not answers.** Every task a run spawns (each check's
//!   task with its rollback and cleanups, each transaction's begin task) keeps the run's
//!   in-flight permit until that task has ended, so the engine's cap on runs in flight also
//!   caps the connections and tasks that answered runs leave behind.
//!
//! Panics: a check's panic fails only that check (kind `panic`). The first
//! [`build`](crate::SmoketestBuilder::build) installs a process-wide panic hook that prints
//! the message of a panic raised while a check is polled *redacted*, since the default
//! hook would write it, secrets and all, to stderr; every other panic goes to the hook that
//! was installed before, unchanged. (A panic in a thread the check spawned itself, such as
//! `spawn_blocking`, is outside the check as far as the hook can tell.)
//!
//! Tracing: every run is a `smoketest.run` span (fields `checks`, `status`, `duration_ms`)
//! and every check a `smoketest.check` span inside it (`check`, `status`, `duration_ms`),
//! so a subscriber sees each outcome and timing without parsing reports. A failing check is
//! logged once, at `warn`, with its kind and message; other outcomes at `debug`.
//!
//! With the `metrics` feature, every run is also recorded through the
//! [`metrics`](https://docs.rs/metrics) facade, into whatever exporter the service installed:
//! gauge `smoketest_check_success{check}`, histogram `smoketest_check_duration_seconds{check}`,
//! counters `smoketest_check_failures_total{check,kind}` and `smoketest_runs_total{status}`,
//! gauge `smoketest_checks_overrunning`.
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
//!     .cleanup_timeout(Duration::from_secs(2))
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
//! // The stuck check gave way to its timeout: nothing is left running.
//! assert_eq!(report.overrunning, 0);
//! # }
//! ```

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use futures_util::future::OptionFuture;
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout_at};
use tracing::Instrument;

use crate::registry::Entry;
use crate::report::{CheckName, CheckReport, ErrorReport, Report, Status, millis};
use crate::{CheckError, Context, ErrorKind, Outcome, Smoketest};

/// What a run's tasks keep until they end: the engine's in-flight permit.
pub(crate) type Hold = Arc<dyn Any + Send + Sync>;

/// The default of [`SmoketestBuilder::cleanup_timeout`](crate::SmoketestBuilder::cleanup_timeout).
pub(crate) const DEFAULT_CLEANUP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long after its deadline a run waits for its checks to end (their transactions rolled
/// back or their connections closed) before it answers anyway.
pub const VERDICT_GRACE: Duration = Duration::from_secs(1);

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
        Ok(self.run_selected(entries).await)
    }

    /// How many instances of this service's checks are still running after the run that
    /// started them answered (see the [module documentation](self)).
    pub fn checks_overrunning(&self) -> usize {
        self.inner
            .entries
            .iter()
            .map(|e| e.overrunning.load(Ordering::SeqCst))
            .sum()
    }

    /// Run exactly `entries` (already selected) in a task of their own; see [`Smoketest::run`].
    pub(crate) async fn run_selected(&self, entries: Vec<Arc<Entry>>) -> Report {
        let (run, future) = self.prepare_run(entries, None);
        let handle = tokio::spawn(future);
        run.answer(handle, |report| report)
            .await
            .unwrap_or_else(|e| {
                // Only a bug in the runner itself could get here: checks are isolated below.
                std::panic::resume_unwind(e.into_panic())
            })
    }

    pub(crate) fn select(&self, selection: &Selection) -> Result<Vec<Arc<Entry>>, UnknownCheck> {
        let inner = &self.inner;
        for name in selection.checks.iter().chain(&selection.exclude) {
            if !inner.by_name.contains_key(name.as_str()) {
                return Err(UnknownCheck { name: name.clone() });
            }
        }
        if selection.checks.is_empty() && selection.tags.is_empty() && selection.exclude.is_empty()
        {
            return Ok(inner.entries.to_vec());
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

    /// Run `entries` here, in the caller's task, and wait for them. Every task this
    /// spawns keeps a clone of `hold` until it ends, however long after the report that is.
    #[cfg(test)]
    pub(crate) async fn run_entries(&self, entries: Vec<Arc<Entry>>, hold: Option<Hold>) -> Report {
        let (run, future) = self.prepare_run(entries, hold);
        run.answer(tokio::spawn(future), |report| report)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// A run of `entries`, not started: the [`Run`] to answer from, and the future that runs
    /// the checks, to be spawned on a task of its own (it must not be polled by a request's
    /// future: the request could be dropped, and one of its checks could block the thread).
    /// Every task the run spawns keeps a clone of `hold` until it ends.
    pub(crate) fn prepare_run(
        &self,
        entries: Vec<Arc<Entry>>,
        hold: Option<Hold>,
    ) -> (Arc<Run>, impl Future<Output = Report> + Send + 'static) {
        let config = &self.inner.config;
        let start = Instant::now();
        let instances = entries
            .into_iter()
            .map(|entry| {
                let overrun_before = entry.overrunning.load(Ordering::SeqCst);
                Instance {
                    entry,
                    overrun_before,
                    state: Mutex::default(),
                }
            })
            .collect();
        let run = Arc::new(Run {
            smoke: self.clone(),
            instances,
            permits: Semaphore::new(config.concurrency),
            started_at: SystemTime::now(),
            start,
            deadline: start + config.deadline,
            polling: AtomicUsize::new(NOT_POLLING),
            rescued: AtomicBool::new(false),
            caller: Mutex::new(None),
            answered: AtomicBool::new(false),
        });
        // No span at all when no subscriber takes INFO (see the checks' spans in `sweep`).
        let span = if tracing::level_enabled!(tracing::Level::INFO) {
            tracing::info_span!(
                "smoketest.run",
                checks = run.instances.len(),
                status = tracing::field::Empty,
                duration_ms = tracing::field::Empty,
            )
        } else {
            tracing::Span::none()
        };
        let future = sweep(run.clone(), hold).instrument(span);
        (run, future)
    }
}

/// How long after the run's own limit ([`VERDICT_GRACE`] past its deadline) a caller waits
/// for the run's task before answering from what the run's checks have recorded: only a
/// check that blocks the run's thread in its first poll keeps the task from answering.
const RESCUE_MARGIN: Duration = Duration::from_millis(50);

/// A first poll that keeps the run's thread longer than this makes the run spawn every
/// later check on a task of its own instead of polling it first (the check may be blocking
/// its thread, and its neighbours should not wait for it).
const INLINE_LIMIT: std::time::Duration = std::time::Duration::from_millis(5);

/// One run of a selection, shared by the task running it and the callers waiting for it.
///
/// The run's task polls each check once, in place: a check that completes on its first
/// poll (most checks that do no I/O, and every check answered from memory) costs no task
/// of its own. A check that has to wait moves, as it is, onto a task of its own, so that it
/// waits without holding the others up and a caller hanging up cannot cancel it. The
/// callers wait for the run's task; should a check block the run's thread, they answer at
/// [`Run::answer_by`] from what the checks recorded ([`Run::rescue`]), and the checks not
/// polled by then are never started.
pub(crate) struct Run {
    smoke: Smoketest,
    instances: Vec<Instance>,
    /// At most `concurrency` checks at once.
    permits: Semaphore,
    started_at: SystemTime,
    start: Instant,
    deadline: Instant,
    /// The check the run's task is polling in place now ([`NOT_POLLING`] when none): the
    /// one that blocks the thread, should a caller have to answer without the task.
    polling: AtomicUsize,
    /// A caller answered without the run's task: checks not yet polled stay unstarted.
    rescued: AtomicBool,
    /// The caller waiting in [`Run::answer`]: when the watchdog wakes it (real time) and
    /// how.
    caller: Mutex<Option<(std::time::Instant, std::task::Waker)>>,
    /// The caller stopped waiting (answered, rescued, or its future dropped): the watchdog
    /// forgets the run.
    answered: AtomicBool,
}

/// [`Run::polling`] when the run's task polls no check in place.
const NOT_POLLING: usize = usize::MAX;

impl Run {
    /// When a caller stops waiting for the run's task and answers from the checks' records.
    pub(crate) fn answer_by(&self) -> Instant {
        self.deadline + VERDICT_GRACE + RESCUE_MARGIN
    }

    /// Whether a caller answered for this run without its task.
    pub(crate) fn was_rescued(&self) -> bool {
        self.rescued.load(Ordering::SeqCst)
    }

    /// What the run's task answers, or by [`answer_by`](Self::answer_by) the report made
    /// from what its checks recorded ([`rescue`](Self::rescue)), as `rescued` makes it.
    ///
    /// The wait needs a wake-up at `answer_by` only for a run whose task is stuck, and runs
    /// nearly always end before it: the process's [`watchdog`] thread gives that wake-up
    /// rather than a tokio timer per run, which would be armed and disarmed again on tokio's
    /// timer wheel for every run (more instructions than the rest of a run's bookkeeping).
    /// Woken, the caller reads tokio's own clock; where that is behind the watchdog's (time
    /// paused in a test), it waits the rest on a tokio timer, as it does if the watchdog
    /// thread could not be started.
    pub(crate) async fn answer<T, E>(
        self: &Arc<Self>,
        task: impl Future<Output = Result<T, E>>,
        rescued: impl FnOnce(Report) -> T,
    ) -> Result<T, E> {
        /// Marks the wait over however it ends, the caller's future dropped included.
        struct Answered<'a>(&'a Run);
        impl Drop for Answered<'_> {
            fn drop(&mut self) {
                self.0.answered.store(true, Ordering::Release);
            }
        }
        let _answered = Answered(self);
        let answer_by = self.answer_by();
        let mut task = std::pin::pin!(task);
        let mut watched = false;
        let mut timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        let answered = std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = task.as_mut().poll(cx) {
                return Poll::Ready(Some(result));
            }
            if let Some(timer) = &mut timer {
                return timer.as_mut().poll(cx).map(|()| None);
            }
            let now = Instant::now();
            if now >= answer_by {
                return Poll::Ready(None);
            }
            let real_now = std::time::Instant::now();
            if !watched {
                *lock(&self.caller) = Some((real_now + (answer_by - now), cx.waker().clone()));
                watched = watchdog::watch(self);
            } else {
                match &mut *lock(&self.caller) {
                    // The watchdog's time has come, tokio's has not: its clock is paused.
                    Some((due, _)) if *due <= real_now => watched = false,
                    Some((_, waker)) => {
                        if !waker.will_wake(cx.waker()) {
                            *waker = cx.waker().clone();
                        }
                    }
                    None => watched = false,
                }
            }
            if !watched {
                lock(&self.caller).take();
                let mut sleep = Box::pin(tokio::time::sleep_until(answer_by));
                let poll = sleep.as_mut().poll(cx);
                timer = Some(sleep);
                return poll.map(|()| None);
            }
            Poll::Pending
        })
        .await;
        match answered {
            Some(result) => result,
            None => Ok(rescued(self.rescue())),
        }
    }

    /// The report without the run's task, which is stuck in a check's first poll (the check
    /// blocks its thread): every check's own record, or why it has none.
    fn rescue(&self) -> Report {
        self.rescued.store(true, Ordering::SeqCst);
        let elapsed = self.start.elapsed();
        let blocker = self
            .instances
            .get(self.polling.load(Ordering::SeqCst))
            .map(|instance| instance.entry.name.clone());
        let checks = self
            .instances
            .iter()
            .map(|instance| {
                // A copy: the run's task, when its thread is free, makes its own report.
                if let Some(report) = lock(&instance.state).report.clone() {
                    return report;
                }
                let unstarted = {
                    let mut state = lock(&instance.state);
                    // Taken: the run's task will not start it now.
                    state.taken |= !state.polled;
                    !state.polled
                };
                let report = if unstarted {
                    let error = never_polled(blocker.as_deref(), self.smoke.inner.config.deadline);
                    failed(&instance.entry, Duration::ZERO, error)
                } else {
                    instance
                        .give_up(&self.smoke.inner.config, elapsed)
                        .or_else(|| lock(&instance.state).report.clone())
                        .unwrap_or_else(|| abnormal(&instance.entry, elapsed, "it left no report"))
                };
                self.smoke.redacted(report)
            })
            .collect();
        tracing::warn!(
            blocked_by = blocker.as_deref().unwrap_or("?"),
            "smoketest: a check blocks the run's thread; answering without it"
        );
        self.report(checks)
    }

    /// A slot under the concurrency limit for one of its checks, held while it runs; `None`
    /// when the run has no more checks than the limit (it can never reach it). Waits at most
    /// until the run's deadline, and says how long it waited if no slot came.
    async fn slot(
        &self,
        smoke: &Smoketest,
    ) -> Result<Option<tokio::sync::SemaphorePermit<'_>>, Duration> {
        if let Some(slot) = self.slot_now(smoke) {
            return Ok(slot);
        }
        let queued = Instant::now();
        // Boxed: a tokio timer is large, and most checks never wait for a slot.
        match Box::pin(timeout_at(self.deadline, self.permits.acquire())).await {
            Ok(Ok(permit)) => Ok(Some(permit)),
            _ => Err(queued.elapsed()),
        }
    }

    /// [`Run::slot`] if it needs no wait: `None` when every slot is taken.
    #[allow(clippy::option_option)]
    fn slot_now(&self, smoke: &Smoketest) -> Option<Option<tokio::sync::SemaphorePermit<'_>>> {
        if self.instances.len() <= smoke.inner.config.concurrency {
            return Some(None);
        }
        self.permits.try_acquire().ok().map(Some)
    }

    fn report(&self, checks: Vec<CheckReport>) -> Report {
        let config = &self.smoke.inner.config;
        let mut report = Report::from_checks(self.started_at, self.start.elapsed(), checks);
        report.service = config.service.clone();
        report.version = config.version.clone();
        report.release_id = config.release_id.clone();
        report.overrunning = self.smoke.checks_overrunning();
        report
    }
}

fn never_polled(blocker: Option<&str>, deadline: Duration) -> CheckError {
    let by = match blocker {
        Some(name) => format!("the check `{name}`, started before it on the same thread,"),
        None => "a check started before it on the same thread".to_string(),
    };
    CheckError::new(
        ErrorKind::Timeout,
        format!(
            "never started: {by} blocked the thread past the run's deadline of {} and its grace of {}",
            humantime::format_duration(deadline),
            humantime::format_duration(VERDICT_GRACE)
        ),
    )
    .with_suggestion(
        "Fix the check that blocks its thread (use tokio::task::spawn_blocking for blocking work); this check was not run.",
    )
}

fn abnormal(entry: &Entry, elapsed: Duration, why: impl std::fmt::Display) -> CheckReport {
    failed(
        entry,
        elapsed,
        CheckError::new(
            ErrorKind::Panic,
            format!("the check's task ended abnormally: {why}"),
        ),
    )
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The run's task: each check polled once in place, the ones that must wait moved onto
/// tasks of their own, then every check's report in registration order.
async fn sweep(run: Arc<Run>, hold: Option<Hold>) -> Report {
    let smoke = &run.smoke;
    let config = &smoke.inner.config;
    let mut inline = true;
    // When the previous first poll ended: the start of the next check polled in place
    // (one clock reading per check serves both).
    let mut last_poll = Instant::now();
    let mut waiting: Vec<(usize, tokio::task::JoinHandle<Option<()>>)> = Vec::new();
    // No span at all when no subscriber takes INFO: with tracing's `log` feature even a
    // disabled span checks the `log` crate when it is made, entered and dropped.
    let traced = tracing::level_enabled!(tracing::Level::INFO);
    let mut spans = Vec::with_capacity(if traced { run.instances.len() } else { 0 });

    // The checks polled in place below run on this thread: marked once for all of them.
    // (Nothing in the loop awaits, so no other task runs here under the mark.)
    let marked = Marked::new(smoke);
    // One allocation for the checks polled in place: each is written into it in turn, and
    // only a check that has to wait takes it along onto its own task (the next check
    // polled in place gets a new one then). A box per check cost an allocation and a free
    // on every check.
    let mut slot = None;
    for (i, instance) in run.instances.iter().enumerate() {
        let span = if traced {
            let span = tracing::info_span!(
                "smoketest.check",
                check = %instance.entry.name,
                status = tracing::field::Empty,
                duration_ms = tracing::field::Empty,
            );
            spans.push(span.clone());
            span
        } else {
            tracing::Span::none()
        };
        let overrunning = instance.overrun_before;
        if overrunning > 0 {
            instance.finish(failed(
                &instance.entry,
                Duration::ZERO,
                overrun_error(overrunning),
            ));
            continue;
        }
        {
            let mut state = lock(&instance.state);
            if state.taken {
                // A caller answered for the run already: this check was reported as never
                // started, so it is not.
                continue;
            }
            state.polled = true;
        }
        // Without a subscriber that wants the span, the check's future goes with none:
        // entering and leaving a disabled span (not `Span::none()`) on every poll asks the
        // `log` crate each time.
        let span = if span.is_disabled() {
            tracing::Span::none()
        } else {
            span
        };
        let check = OptionFuture::from(Some(
            run_one(run.clone(), i, hold.clone(), inline.then_some(last_poll)).instrument(span),
        ));
        if !inline {
            // The thread may be blocked by an earlier check: its own task at once.
            waiting.push((i, tokio::spawn(check)));
            continue;
        }
        let task = place(&mut slot, check);
        run.polling.store(i, Ordering::SeqCst);
        let poll = poll_once(task.as_mut());
        run.polling.store(NOT_POLLING, Ordering::SeqCst);
        let now = Instant::now();
        inline = now.duration_since(last_poll) < INLINE_LIMIT;
        last_poll = now;
        match poll {
            Ok(Poll::Ready(_)) => continue,
            Ok(Poll::Pending) => {}
            Err(panic) => {
                // Only a bug in the runner could get here: the check's own panic is caught
                // inside `run_one`.
                slot = None;
                let report = abnormal(&instance.entry, run.start.elapsed(), panic);
                instance.finish(smoke.redacted(report));
                continue;
            }
        }
        // It waits: its own task, as it is, in its box. The task's first poll registers
        // its own waker.
        if let Some(task) = slot.take() {
            waiting.push((i, tokio::spawn(task)));
        }
    }
    drop(slot);
    drop(marked);

    for (i, handle) in waiting {
        let instance = &run.instances[i];
        match timeout_at(run.deadline + VERDICT_GRACE, handle).await {
            Ok(Ok(_)) => {}
            Ok(Err(join_error)) => {
                let report = abnormal(&instance.entry, run.start.elapsed(), join_error);
                instance.finish(smoke.redacted(report));
            }
            Err(_) => {
                if let Some(report) = instance.give_up(&smoke.inner.config, run.start.elapsed()) {
                    instance.finish(smoke.redacted(report));
                }
            }
        }
    }

    let mut checks = Vec::with_capacity(run.instances.len());
    let untraced = tracing::Span::none();
    for (i, instance) in run.instances.iter().enumerate() {
        let span = spans.get(i).unwrap_or(&untraced);
        let report = instance.finished().unwrap_or_else(|| {
            // Not polled: a caller answered for the run meanwhile (see `Run::rescue`).
            failed(
                &instance.entry,
                Duration::ZERO,
                never_polled(None, config.deadline),
            )
        });
        // Logged here rather than in the check's task: a task left behind may still
        // finish later, and must not log a second time.
        log_finished(span, &report);
        checks.push(report);
    }
    let report = run.report(checks);
    let span = tracing::Span::current();
    span.record("status", report.status.as_str());
    span.record("duration_ms", report.duration_ms);
    #[cfg(feature = "metrics")]
    crate::metrics::emit(&report);
    drop(hold);
    report
}

/// `future` in `slot`'s box, made if there is none (the future in it before is dropped).
fn place<F>(slot: &mut Option<std::pin::Pin<Box<F>>>, future: F) -> &mut std::pin::Pin<Box<F>> {
    match slot {
        Some(task) => {
            task.set(future);
            task
        }
        None => slot.insert(Box::pin(future)),
    }
}

/// Poll `future` once, in place, with a waker that does nothing: if it is pending it moves
/// onto a task of its own, whose first poll registers the task's waker. A panic (a bug in
/// the runner: checks' panics are caught inside) comes back as its message.
fn poll_once<F: Future + ?Sized>(future: std::pin::Pin<&mut F>) -> Result<Poll<F::Output>, String> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    std::panic::catch_unwind(AssertUnwindSafe(|| future.poll(&mut cx)))
        .map_err(|panic| panic_message(&*panic))
}

fn overrun_error(count: usize) -> CheckError {
    let instances = if count == 1 {
        "an earlier instance of this check is".to_string()
    } else {
        format!("{count} earlier instances of this check are")
    };
    CheckError::new(
        ErrorKind::Overrun,
        format!(
            "not started: {instances} still running after the run that started it answered (it ignored its timeout, or its cleanup did); a second copy would pile up behind it"
        ),
    )
}

/// One instance of a check in one run, shared by the task running it, the run's task and
/// the callers waiting for the run.
struct Instance {
    entry: Arc<Entry>,
    /// Earlier instances of the check still running when the run started: it is not started.
    overrun_before: usize,
    state: Mutex<InstanceState>,
}

#[derive(Default)]
struct InstanceState {
    phase: Phase,
    /// The run's task has polled (started) it.
    polled: bool,
    /// The check's result once its transactions ended, before its cleanups (only kept when
    /// there are cleanups to run).
    verdict: Option<CheckReport>,
    /// The check's final report, until the run takes it.
    report: Option<CheckReport>,
    /// The report was taken by the run (or a caller answering for it).
    taken: bool,
    /// The task has ended.
    ended: bool,
    /// The run answered without it: it is counted in `entry.overrunning`.
    overrun: bool,
}

#[derive(Default, Clone)]
enum Phase {
    /// The check itself: waiting for a slot, or running.
    #[default]
    Check,
    EndingTransactions,
    Cleanup(String),
}

impl Instance {
    fn set_phase(&self, phase: Phase) {
        lock(&self.state).phase = phase;
    }

    /// Record the report a check's own run made: its latency budget applied, redacted once
    /// before anything (report, format, log line) can show it. (Made where it is recorded:
    /// a report is moved as few times as possible.)
    #[inline]
    fn record(&self, smoke: &Smoketest, mut report: CheckReport) {
        if let Some(budget) = self.entry.warn_after {
            over_budget(&mut report, budget);
        }
        smoke.inner.redactor.redact_check(&mut report);
        self.finish(report);
    }

    /// Record the check's final report (unless the run answered without it already).
    #[inline]
    fn finish(&self, report: CheckReport) {
        let mut state = lock(&self.state);
        if !state.taken {
            state.report = Some(report);
        }
    }

    /// The final report, if there is one; taken once.
    #[inline]
    fn finished(&self) -> Option<CheckReport> {
        let mut state = lock(&self.state);
        let report = state.report.take();
        if report.is_some() {
            state.taken = true;
        }
        report
    }

    /// The run answers without this instance: count it as overrunning and say why it is not
    /// done. `None` if it has just ended after all.
    fn give_up(&self, config: &crate::registry::Config, elapsed: Duration) -> Option<CheckReport> {
        let mut state = lock(&self.state);
        if state.ended || state.report.is_some() {
            return None;
        }
        if !state.overrun {
            // Counted once, whether the run's task or a caller answering for it gives up.
            state.overrun = true;
            self.entry.overrunning.fetch_add(1, Ordering::SeqCst);
        }
        let deadline = humantime::format_duration(config.deadline);
        let grace = humantime::format_duration(VERDICT_GRACE);
        let counted = "It is counted as overrunning: until it ends, runs report this check with kind `overrun` instead of starting it again.";
        let blocking = "The check does not give way to its timeout: it probably blocks its thread (use tokio::task::spawn_blocking for blocking work) or awaits something that ignores cancellation.";
        let report = match (&state.phase, &state.verdict) {
            (Phase::Cleanup(label), Some(verdict)) => {
                let still = format!(
                    "{label} was still running {grace} after the run's deadline of {deadline}; it is abandoned at the latest {} after it started. {counted}",
                    humantime::format_duration(config.cleanup_timeout)
                );
                let mut report = verdict.clone();
                match &mut report.error {
                    Some(error) => {
                        let message = error.message.get_or_insert_with(String::new);
                        message.push_str("; moreover ");
                        message.push_str(&still);
                    }
                    None => {
                        let observed = std::mem::take(&mut report.observed);
                        report = failed(
                            &self.entry,
                            Duration::from_secs_f64(verdict.duration_ms / 1000.0),
                            CheckError::new(ErrorKind::Cleanup, format!("the check itself ended `{}`, but {still}", verdict.status))
                                .with_suggestion("Give the cleanup's own calls a timeout, or move its blocking work to tokio::task::spawn_blocking."),
                        );
                        report.observed = observed;
                    }
                }
                report
            }
            (Phase::EndingTransactions, _) | (Phase::Cleanup(_), None) => failed(
                &self.entry,
                elapsed,
                CheckError::new(
                    ErrorKind::Timeout,
                    format!(
                        "its database transactions had not ended {grace} after the run's deadline of {deadline} (the thread running it may be blocked); when the task ends, their connections are closed, never returned to the pool. {counted}"
                    ),
                )
                .with_suggestion(blocking),
            ),
            (Phase::Check, _) => failed(
                &self.entry,
                elapsed,
                CheckError::new(
                    ErrorKind::Timeout,
                    format!(
                        "did not finish before the run's deadline of {deadline}, and had not stopped {grace} later; its transactions are rolled back when it ends. {counted}"
                    ),
                )
                .with_suggestion(blocking),
            ),
        };
        Some(report)
    }
}

/// Kept by a check's task: marks the instance ended, and uncounts it if it was overrunning.
struct Live {
    run: Arc<Run>,
    index: usize,
}

impl Drop for Live {
    fn drop(&mut self) {
        let instance = &self.run.instances[self.index];
        let mut state = lock(&instance.state);
        state.ended = true;
        if state.overrun {
            instance.entry.overrunning.fetch_sub(1, Ordering::SeqCst);
            #[cfg(feature = "metrics")]
            crate::metrics::overrunning(self.run.smoke.checks_overrunning());
        }
    }
}

/// Check `index` of `run`, its context finished, its report recorded.
/// `now`: the time, when the caller has just read the clock (the run's task, about to poll
/// this check in place); the check's start if it gets its slot without waiting.
async fn run_one(run: Arc<Run>, index: usize, hold: Option<Hold>, now: Option<Instant>) {
    // Kept until this task ends, whatever the run did meanwhile.
    let _hold = hold.clone();
    let _live = Live {
        run: run.clone(),
        index,
    };
    let instance = &run.instances[index];
    let smoke = &run.smoke;
    check_report(instance, &run, smoke, hold, now).await;
}

impl Smoketest {
    /// `report` redacted, as every check report is once before anything (a report, a
    /// format, a log line) can show it.
    fn redacted(&self, mut report: CheckReport) -> CheckReport {
        self.inner.redactor.redact_check(&mut report);
        report
    }
}

/// A check that passed slower than its latency budget warns with kind `slow`.
fn over_budget(report: &mut CheckReport, budget: Duration) {
    if report.status != Status::Pass || report.duration_ms <= millis(budget) {
        return;
    }
    let message = format!(
        "took {} ms, over its latency budget of {}",
        report.duration_ms,
        humantime::format_duration(budget)
    );
    tracing::warn!(
        check = %report.name,
        duration_ms = report.duration_ms,
        budget_ms = millis(budget),
        "smoke check slower than its latency budget"
    );
    report.status = Status::Warn;
    report.error = Some(ErrorReport {
        kind: ErrorKind::Slow.as_str().to_string(),
        message: Some(message),
        suggestion: ErrorKind::Slow.default_suggestion().map(str::to_string),
    });
}

/// Run one check in its context, finish the context, and record the check's report.
async fn check_report(
    instance: &Instance,
    run: &Run,
    smoke: &Smoketest,
    hold: Option<Hold>,
    now: Option<Instant>,
) {
    let entry = &instance.entry;
    let run_deadline = run.deadline;
    let default_timeout = smoke.inner.config.default_timeout;
    let (_slot, start) = match run.slot_now(smoke) {
        Some(slot) => (slot, now.unwrap_or_else(Instant::now)),
        None => match run.slot(smoke).await {
            Ok(slot) => (slot, Instant::now()),
            Err(waited) => {
                return instance.record(smoke, failed(entry, Duration::ZERO, no_slot(waited)));
            }
        },
    };

    let limit = entry.timeout.unwrap_or(default_timeout);
    let check_deadline = (start + limit).min(run_deadline);
    let mut ctx = Context::in_run(
        entry.name.clone(),
        check_deadline,
        smoke,
        run_deadline,
        hold,
    );

    let result = LazyTimeout::new(
        check_deadline,
        AssertUnwindSafe(InCheck {
            future: entry.check.run(&mut ctx),
            smoke,
        })
        .catch_unwind(),
    )
    .await;
    let duration = start.elapsed();
    let result: crate::Result = match result {
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

    // A scenario's step cut off above fails with the check's error; steps never reached are
    // skipped; a failed step fails the check even if the check went on.
    let result = ctx.settle_steps(result);

    // The runner, not the check, finishes the context, whatever happened above: first the
    // transactions (the verdict waits for them), then the cleanups.
    // (Both are boxed: their futures are large, and most checks have neither, so the
    // check's own future stays small to move onto a task.)
    let transaction_failures = if ctx.has_transactions() {
        instance.set_phase(Phase::EndingTransactions);
        Box::pin(ctx.end_transactions()).await
    } else {
        Vec::new()
    };
    let observed = ctx.take_observed();
    let cleanups = ctx.has_cleanups();
    // A check with cleanups gets its steps after them (the teardowns are steps too).
    let steps = if cleanups {
        Vec::new()
    } else {
        ctx.take_steps()
    };
    let report = verdict(
        entry,
        duration,
        result,
        transaction_failures,
        observed,
        steps,
    );
    if !cleanups {
        return instance.record(smoke, report);
    }
    // Boxed, with the context and the report moved in: the check's own future then holds
    // neither across this await, and stays small enough for the allocator's fast path.
    let report = Box::pin(with_cleanups(instance, smoke, ctx, report, duration)).await;
    instance.record(smoke, report);
}

/// The cleanups of a check that registered any, and its report after them.
async fn with_cleanups(
    instance: &Instance,
    smoke: &Smoketest,
    mut ctx: Context,
    mut report: CheckReport,
    duration: Duration,
) -> CheckReport {
    let entry = &instance.entry;
    // A snapshot for the report made if the cleanups overstay the run (`give_up`).
    report.steps = ctx.steps_snapshot();
    smoke.inner.redactor.redact_check(&mut report);
    lock(&instance.state).verdict = Some(report.clone());

    let cleanup_failures = ctx
        .run_cleanups(|label| instance.set_phase(Phase::Cleanup(label.to_string())))
        .await;
    // The teardown steps (a check with steps reports each cleanup as one).
    report.steps = ctx.take_steps();
    if report.status != Status::Fail {
        if let Some(e) = cleanup_failures.into_iter().next() {
            let observed = std::mem::take(&mut report.observed);
            let steps = std::mem::take(&mut report.steps);
            report = failed(entry, duration, e);
            report.observed = observed;
            report.steps = steps;
        }
    } else if !cleanup_failures.is_empty() && !report.steps.iter().any(|s| s.teardown) {
        // The check's own failure stays the error; its failed cleanups are reported beside
        // it (a check with steps shows them as failed teardown steps instead).
        let messages: Vec<&str> = cleanup_failures.iter().map(|e| e.message()).collect();
        report
            .observed
            .insert("cleanup_failures".into(), serde_json::json!(messages));
    }
    report
}

/// Why a check never started: no slot under the concurrency limit came before the deadline.
fn no_slot(waited: Duration) -> CheckError {
    CheckError::new(
        ErrorKind::Timeout,
        format!(
            "never started: waited {} for a free slot before the run's deadline",
            humantime::format_duration(round_ms(waited))
        ),
    )
    .with_suggestion("Raise the concurrency limit or the deadline, or shorten the slow checks.")
}

/// The check's report from its result and what ending its transactions found; a check that
/// committed says so even if it also failed otherwise. Built whole, with what the check
/// observed and its steps: no field is made twice.
fn verdict(
    entry: &Entry,
    duration: Duration,
    result: crate::Result,
    mut transaction_failures: Vec<CheckError>,
    observed: BTreeMap<String, serde_json::Value>,
    steps: Vec<crate::report::StepReport>,
) -> CheckReport {
    let result = match transaction_failures
        .iter()
        .position(|e| e.kind() == ErrorKind::Committed)
    {
        Some(i) => Err(transaction_failures.swap_remove(i)),
        None => result,
    };
    match (result, transaction_failures.into_iter().next()) {
        (Err(e), _) | (Ok(_), Some(e)) => {
            let mut report = failed(entry, duration, e);
            report.observed = observed;
            report.steps = steps;
            report
        }
        (Ok(outcome), None) => {
            let (status, message) = match outcome {
                Outcome::Pass => (Status::Pass, None),
                Outcome::Warn(m) => (Status::Warn, Some(m)),
                Outcome::Skip(m) => (Status::Skip, Some(m)),
            };
            CheckReport {
                name: CheckName::from(entry.name.clone()),
                status,
                duration_ms: millis(duration),
                tags: entry.tags.clone(),
                error: None,
                message,
                observed,
                steps,
            }
        }
    }
}

/// Record a check's status and duration on its (`smoketest.check`) span, and log it in
/// that span: a failure at `warn` with its message, anything else at `debug`.
fn log_finished(span: &tracing::Span, report: &CheckReport) {
    // (A disabled span is skipped altogether: with tracing's `log` feature even a disabled
    // span's enter, exit and records cost a check of the `log` crate each.)
    let _entered = (!span.is_disabled()).then(|| {
        span.record("status", report.status.as_str());
        span.record("duration_ms", report.duration_ms);
        span.enter()
    });
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
}

fn failed(entry: &Entry, duration: Duration, error: CheckError) -> CheckReport {
    CheckReport {
        name: CheckName::from(entry.name.clone()),
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
        steps: Vec::new(),
    }
}

/// `tokio::time::timeout_at` that makes its timer only when the future is pending: a check
/// that completes on its first poll costs no timer at all.
struct LazyTimeout<F> {
    future: F,
    deadline: Instant,
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

/// The deadline passed first.
struct Elapsed;

impl<F: Future + Unpin> LazyTimeout<F> {
    fn new(deadline: Instant, future: F) -> Self {
        LazyTimeout {
            future,
            deadline,
            sleep: None,
        }
    }
}

impl<F: Future + Unpin> Future for LazyTimeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Self::Output> {
        if let Poll::Ready(output) = std::pin::Pin::new(&mut self.future).poll(cx) {
            return Poll::Ready(Ok(output));
        }
        let deadline = self.deadline;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// A check's future, polled with the service marked as this thread's current check, so
/// that the panic hook redacts what a panicking check prints to stderr.
struct InCheck<'a, F> {
    future: F,
    smoke: &'a Smoketest,
}

thread_local! {
    /// The service whose check this thread is polling, if any.
    static IN_CHECK: std::cell::RefCell<Option<Smoketest>> = const { std::cell::RefCell::new(None) };
}

/// Marks this thread as polling `smoke`'s checks (for the panic hook) until dropped, then
/// restores the mark that was there, also when a panic unwinds through. Nothing to do (and
/// no clone of the service) when the thread is marked for `smoke` already: the run's task
/// marks itself once for all the checks it polls in place.
struct Marked(Option<Smoketest>);

impl Marked {
    fn new(smoke: &Smoketest) -> Option<Marked> {
        IN_CHECK.with(|c| {
            let mut current = c.borrow_mut();
            if current
                .as_ref()
                .is_some_and(|s| Arc::ptr_eq(&s.inner, &smoke.inner))
            {
                return None;
            }
            Some(Marked(current.replace(smoke.clone())))
        })
    }
}

impl Drop for Marked {
    fn drop(&mut self) {
        let previous = self.0.take();
        IN_CHECK.with(|c| *c.borrow_mut() = previous);
    }
}

impl<F: std::future::Future + Unpin> std::future::Future for InCheck<'_, F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let _marked = Marked::new(self.smoke);
        std::pin::Pin::new(&mut self.future).poll(cx)
    }
}

/// One thread for the process that wakes the callers of runs still unanswered at their
/// answer time (see [`Run::answer`]). It ticks every [`watchdog::TICK`] while it watches
/// some run and sleeps otherwise: at most a few dozen wake-ups a second under any load,
/// none when no run is waiting.
mod watchdog {
    use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
    use std::time::Duration;

    use super::{Run, lock};

    /// How often the thread looks at the runs it watches: a rescue comes at most this late.
    pub(super) const TICK: Duration = Duration::from_millis(25);

    /// The runs watched (a run's memory is freed when its last `Arc` goes; the entry
    /// goes at the next tick).
    static RUNS: Mutex<Vec<Weak<Run>>> = Mutex::new(Vec::new());
    /// Wakes the thread when the first run comes to an empty list.
    static TICKER: Condvar = Condvar::new();
    /// Whether the thread runs.
    static STARTED: OnceLock<bool> = OnceLock::new();

    /// Watch `run` until its caller stopped waiting: wake the caller's waker once the time
    /// it stored in `run.caller` has come, and every tick after that. `false` when the
    /// thread could not be started: the caller must set a timer of its own.
    pub(super) fn watch(run: &Arc<Run>) -> bool {
        let started = *STARTED.get_or_init(|| {
            std::thread::Builder::new()
                .name("smoketest-watchdog".to_string())
                .spawn(watch_runs)
                .is_ok()
        });
        if started {
            let mut runs = lock(&RUNS);
            runs.push(Arc::downgrade(run));
            if runs.len() == 1 {
                TICKER.notify_one();
            }
        }
        started
    }

    fn watch_runs() {
        let mut runs = lock(&RUNS);
        loop {
            let now = std::time::Instant::now();
            runs.retain(|run| {
                let Some(run) = run.upgrade() else {
                    return false;
                };
                if run.answered.load(std::sync::atomic::Ordering::Acquire) {
                    return false;
                }
                if let Some((at, waker)) = &*lock(&run.caller)
                    && *at <= now
                {
                    waker.wake_by_ref();
                }
                true
            });
            runs = if runs.is_empty() {
                TICKER.wait(runs).unwrap_or_else(|e| e.into_inner())
            } else {
                TICKER
                    .wait_timeout(runs, TICK)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            };
        }
    }
}

/// Install, once per process, a panic hook that redacts the message of a panic raised
/// while a smoke check is polled (the default hook would print it to stderr, the container
/// log, unredacted). Every other panic goes to the hook that was there before, unchanged.
pub(crate) fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let smoke = IN_CHECK.with(|c| c.try_borrow().ok().and_then(|c| c.clone()));
            let Some(smoke) = smoke else {
                return previous(info);
            };
            let message = smoke.inner.redactor.redact(&panic_message(info.payload())).into_owned();
            let location = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let thread = std::thread::current();
            eprintln!(
                "thread '{}' panicked{location} in a smoke check:\n{message}\n(the message is redacted by smoketest; the check's report has it too)",
                thread.name().unwrap_or("<unnamed>")
            );
        }));
    });
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Level, Subscriber};
    use tracing_subscriber::layer::{Context as LayerContext, Layer, SubscriberExt};
    use tracing_subscriber::registry::LookupSpan;

    use crate::{CheckError, Outcome, Selection, Smoketest, Status, from_fn};

    #[derive(Debug, Clone, Default)]
    struct SpanRecord {
        name: String,
        parent: Option<String>,
        fields: BTreeMap<String, String>,
    }

    /// A warning's message and fields.
    type Warning = (String, BTreeMap<String, String>);

    /// Every span with its final fields, and every warning with the span it was in.
    #[derive(Clone, Default)]
    struct Capture {
        open: Arc<Mutex<BTreeMap<u64, SpanRecord>>>,
        closed: Arc<Mutex<Vec<SpanRecord>>>,
        warnings: Arc<Mutex<Vec<Warning>>>,
    }

    struct Fields<'a>(&'a mut BTreeMap<String, String>);

    impl Visit for Fields<'_> {
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.insert(field.name().to_string(), value.to_string());
        }
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0
                .insert(field.name().to_string(), format!("{value:?}"));
        }
    }

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
            let mut record = SpanRecord {
                name: attrs.metadata().name().to_string(),
                parent: ctx
                    .span(id)
                    .and_then(|s| s.parent())
                    .map(|p| p.name().to_string()),
                fields: BTreeMap::new(),
            };
            attrs.record(&mut Fields(&mut record.fields));
            self.open.lock().unwrap().insert(id.into_u64(), record);
        }

        fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: LayerContext<'_, S>) {
            if let Some(record) = self.open.lock().unwrap().get_mut(&id.into_u64()) {
                values.record(&mut Fields(&mut record.fields));
            }
        }

        fn on_event(&self, event: &Event<'_>, ctx: LayerContext<'_, S>) {
            if *event.metadata().level() != Level::WARN {
                return;
            }
            let mut fields = BTreeMap::new();
            event.record(&mut Fields(&mut fields));
            if let Some(span) = ctx.event_span(event) {
                fields.insert("in_span".into(), span.name().to_string());
            }
            let message = fields.remove("message").unwrap_or_default();
            self.warnings.lock().unwrap().push((message, fields));
        }

        fn on_close(&self, id: Id, _ctx: LayerContext<'_, S>) {
            if let Some(record) = self.open.lock().unwrap().remove(&id.into_u64()) {
                self.closed.lock().unwrap().push(record);
            }
        }
    }

    #[test]
    fn one_span_per_run_and_per_check_and_each_failure_warned_once() {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::registry().with(capture.clone());
        let smoke = Smoketest::builder()
            .without_discovery()
            .deadline(Duration::from_millis(200))
            .check(from_fn("ok", |_| Box::pin(async { Ok(Outcome::Pass) })))
            .check(from_fn("broken", |_| {
                Box::pin(async { Err(CheckError::assertion("expected 1 row, found 0")) })
            }))
            .check(from_fn("slow_cleanup", |ctx| {
                // The cleanup outlives the run's deadline: the run reports the check itself.
                ctx.defer(async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(())
                });
                Box::pin(async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(Outcome::Pass)
                })
            }))
            .build()
            .unwrap();

        let report = tracing::subscriber::with_default(subscriber, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            let report = runtime.block_on(smoke.run(&Selection::all())).unwrap();
            // Let the cut-off check's task finish: it must not log again.
            runtime.block_on(async { tokio::time::sleep(Duration::from_secs(7200)).await });
            report
        });
        assert_eq!(report.status, Status::Fail);
        drop(smoke);

        let closed = capture.closed.lock().unwrap().clone();
        let runs: Vec<_> = closed
            .iter()
            .filter(|s| s.name == "smoketest.run")
            .collect();
        assert_eq!(runs.len(), 1, "{closed:?}");
        assert_eq!(runs[0].fields["status"], "fail");
        assert_eq!(runs[0].fields["checks"], "3");
        assert!(runs[0].fields.contains_key("duration_ms"));

        let checks: BTreeMap<&str, &SpanRecord> = closed
            .iter()
            .filter(|s| s.name == "smoketest.check")
            .map(|s| (s.fields["check"].as_str(), s))
            .collect();
        assert_eq!(checks.len(), 3, "{closed:?}");
        for (name, status) in [("ok", "pass"), ("broken", "fail"), ("slow_cleanup", "fail")] {
            let span = checks[name];
            assert_eq!(span.fields["status"], status, "{name}");
            assert_eq!(span.parent.as_deref(), Some("smoketest.run"), "{name}");
            assert!(span.fields.contains_key("duration_ms"), "{name}");
        }

        let warnings = capture.warnings.lock().unwrap().clone();
        let warned: Vec<&str> = warnings.iter().map(|(_, f)| f["check"].as_str()).collect();
        assert_eq!(warned, ["broken", "slow_cleanup"], "{warnings:?}");
        let (message, fields) = &warnings[0];
        assert_eq!(message, "smoke check failed: expected 1 row, found 0");
        assert_eq!(fields["kind"], "assertion");
        assert_eq!(fields["in_span"], "smoketest.check");
    }

    /// Two worker threads: one a blocked check holds, one for everything else.
    fn two_workers() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    fn paused_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    }

    #[test]
    fn a_cleanup_overstaying_its_limit_is_abandoned_and_reported_and_earlier_ones_still_run() {
        let earlier_ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = earlier_ran.clone();
        let smoke = Smoketest::builder()
            .without_discovery()
            .cleanup_timeout(Duration::from_secs(2))
            .check(from_fn("hangs_in_cleanup", move |ctx| {
                let flag = flag.clone();
                ctx.defer(async move {
                    flag.store(true, std::sync::atomic::Ordering::SeqCst);
                    Ok(())
                });
                ctx.defer(async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(())
                });
                Box::pin(async { Ok(Outcome::Pass) })
            }))
            .build()
            .unwrap();
        let runtime = paused_runtime();
        let report = runtime.block_on(smoke.run(&Selection::all())).unwrap();
        let check = &report.checks[0];
        assert_eq!(check.status, Status::Fail, "{report:?}");
        let error = check.error.as_ref().unwrap();
        assert_eq!(error.kind, "cleanup");
        assert_eq!(
            error.message.as_deref().unwrap(),
            "cleanup #2 did not finish within the cleanup time limit of 2s and was abandoned (dropped): what it was undoing may remain"
        );
        assert!(
            error
                .suggestion
                .as_deref()
                .unwrap()
                .contains("cleanup_timeout")
        );
        assert!(earlier_ran.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(
            report.overrunning, 0,
            "the cleanup was abandoned within the run"
        );
    }

    /// A check whose cleanup outlives the run's answer: counted, reported `overrun` instead of
    /// started again while it runs, and the run's hold kept until it ends.
    #[test]
    fn a_check_left_running_is_counted_not_restarted_and_keeps_the_hold() {
        let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = started.clone();
        let smoke = Smoketest::builder()
            .without_discovery()
            .deadline(Duration::from_secs(1))
            .cleanup_timeout(Duration::from_secs(60))
            .check(from_fn("slow_cleanup", move |ctx| {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                ctx.defer(async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Ok(())
                });
                Box::pin(async { Ok(Outcome::Pass) })
            }))
            .check(from_fn("ok", |_| Box::pin(async { Ok(Outcome::Pass) })))
            .build()
            .unwrap();
        let runtime = paused_runtime();
        let hold: super::Hold = Arc::new(());
        let entries = smoke.select(&Selection::all()).unwrap();

        let first = runtime.block_on(smoke.run_entries(entries.clone(), Some(hold.clone())));
        let error = first.checks[0].error.as_ref().unwrap();
        assert_eq!(error.kind, "cleanup", "{first:?}");
        let message = error.message.as_deref().unwrap();
        assert!(
            message.starts_with("the check itself ended `pass`, but cleanup #1 was still running 1s after the run's deadline of 1s"),
            "{message}"
        );
        assert_eq!(first.checks[1].status, Status::Pass);
        assert_eq!(first.overrunning, 1);
        assert_eq!(smoke.checks_overrunning(), 1);
        // The run answered; its check task has not ended and still holds the permit.
        assert!(Arc::strong_count(&hold) > 1);

        let second = runtime.block_on(smoke.run_entries(entries.clone(), None));
        let error = second.checks[0].error.as_ref().unwrap();
        assert_eq!(error.kind, "overrun", "{second:?}");
        assert!(
            error.message.as_deref().unwrap().starts_with(
                "not started: an earlier instance of this check is still running after the run that started it answered"
            ),
            "{error:?}"
        );
        assert!(
            error
                .suggestion
                .as_deref()
                .unwrap()
                .contains("spawn_blocking")
        );
        assert_eq!(
            second.checks[1].status,
            Status::Pass,
            "other checks still run"
        );
        assert_eq!(
            started.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "no second copy"
        );

        // Once the cleanup is done, the hold is released and the check runs again.
        runtime.block_on(async { tokio::time::sleep(Duration::from_secs(60)).await });
        assert_eq!(
            Arc::strong_count(&hold),
            1,
            "a task still holds the run's permit"
        );
        assert_eq!(smoke.checks_overrunning(), 0);
        let third = runtime.block_on(smoke.run_entries(entries, None));
        assert_eq!(
            third.overrunning, 1,
            "the third run's own cleanup overruns again"
        );
        assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    /// A check that blocks its thread cannot be cut off: the run answers anyway, one grace
    /// after its deadline, and the check is not started again until its thread is released.
    #[test]
    fn a_check_blocking_its_thread_is_answered_for_and_never_piles_up() {
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let blocked = Arc::new(Mutex::new(blocked));
        let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = started.clone();
        let smoke = Smoketest::builder()
            .without_discovery()
            .deadline(Duration::from_millis(200))
            .check(from_fn("blocks", move |_| {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let blocked = blocked.clone();
                Box::pin(async move {
                    // Blocks this worker thread until the test releases it.
                    let _ = blocked.lock().unwrap().recv();
                    Ok(Outcome::Pass)
                })
            }))
            .build()
            .unwrap();
        let runtime = two_workers();
        let hold: super::Hold = Arc::new(());
        let entries = smoke.select(&Selection::all()).unwrap();
        let first = runtime.block_on(smoke.run_entries(entries.clone(), Some(hold.clone())));
        let error = first.checks[0].error.as_ref().unwrap();
        assert_eq!(error.kind, "timeout", "{first:?}");
        assert!(
            error.message.as_deref().unwrap().starts_with(
                "did not finish before the run's deadline of 200ms, and had not stopped 1s later"
            ),
            "{error:?}"
        );
        assert_eq!(first.overrunning, 1);

        for _ in 0..3 {
            let again = runtime.block_on(smoke.run_entries(entries.clone(), None));
            assert_eq!(again.checks[0].error.as_ref().unwrap().kind, "overrun");
        }
        assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(Arc::strong_count(&hold) > 1);

        release.send(()).unwrap();
        // Ends as soon as its thread is free (generous bound: a busy machine is slow).
        let waited = std::time::Instant::now();
        while smoke.checks_overrunning() > 0 || Arc::strong_count(&hold) > 1 {
            assert!(
                waited.elapsed() < Duration::from_secs(30),
                "the check never ended"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(release);
        let after = runtime.block_on(smoke.run_entries(entries, None));
        assert_eq!(
            started.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "{after:?}"
        );
    }

    /// A check that blocks the run's own thread in its first poll: the run still answers
    /// (one grace and the rescue margin after its deadline), the checks polled before it
    /// keep their verdicts, and the ones after it are reported as never started, naming it,
    /// and are not started later either.
    #[test]
    fn a_check_blocking_the_runs_thread_does_not_hold_the_answer_and_names_itself() {
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let blocked = Arc::new(Mutex::new(blocked));
        let later_ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = later_ran.clone();
        let smoke = Smoketest::builder()
            .without_discovery()
            .deadline(Duration::from_millis(200))
            .check(from_fn("before", |_| Box::pin(async { Ok(Outcome::Pass) })))
            .check(from_fn("blocks", move |_| {
                let blocked = blocked.clone();
                Box::pin(async move {
                    let _ = blocked.lock().unwrap().recv();
                    Ok(Outcome::Pass)
                })
            }))
            .check(from_fn("after", move |_| {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                Box::pin(async { Ok(Outcome::Pass) })
            }))
            .build()
            .unwrap();
        let runtime = two_workers();
        // Without the rescue the run would answer only once the check is released: release
        // it after 20 s, so that a run that waited for it fails below instead of hanging.
        let watchdog = release.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(20));
            let _ = watchdog.send(());
        });
        let asked = std::time::Instant::now();
        let report = runtime.block_on(smoke.run(&Selection::all())).unwrap();
        assert!(
            asked.elapsed() < Duration::from_secs(15),
            "the answer waited for the blocked thread: {:?}",
            asked.elapsed()
        );
        assert_eq!(report.checks[0].status, Status::Pass, "{report:?}");
        assert_eq!(report.checks[1].error.as_ref().unwrap().kind, "timeout");
        let after = report.checks[2].error.as_ref().unwrap();
        assert_eq!(after.kind, "timeout", "{report:?}");
        assert!(
            after
                .message
                .as_deref()
                .unwrap()
                .starts_with("never started: the check `blocks`"),
            "{after:?}"
        );
        assert_eq!(report.overrunning, 1);

        release.send(()).unwrap();
        let waited = std::time::Instant::now();
        while smoke.checks_overrunning() > 0 {
            assert!(waited.elapsed() < Duration::from_secs(30), "never ended");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !later_ran.load(std::sync::atomic::Ordering::SeqCst),
            "a check reported as never started ran after all"
        );
    }
}
