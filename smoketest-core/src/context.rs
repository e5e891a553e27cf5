//! The [`Context`] a check runs with: observed values, deferred cleanups, and (with the
//! database features) transactions the runner always rolls back. Scenario checks also get
//! named steps ([`Context::step`]), a client for the service's own API ([`Context::api`])
//! and the persona they run as ([`Context::persona`]); see [`scenario`](crate::scenario).
//!
//! Each run of each check gets a fresh context. After the check returns, fails, panics or
//! times out, the runner — never the check — finishes the context, in this order:
//!
//! 1. It ends every database transaction the check opened: an explicit, awaited
//!    `ROLLBACK`, bounded in time (see [`db`](crate::db)); a connection whose rollback did
//!    not end in time, or on which a cancel was started, is closed, never returned to the
//!    pool. The check's verdict is decided only then, so a `committed` is never lost.
//! 2. It runs the deferred cleanups, newest first, **each within the cleanup time limit**
//!    ([`SmoketestBuilder::cleanup_timeout`], default 5 s). A cleanup that fails, panics or
//!    overstays the limit (it is then dropped, cancelled at its next `.await`) fails the
//!    check with kind [`ErrorKind::Cleanup`], naming the cleanup; the cleanups registered
//!    before it still run.
//!
//! So everything a context starts ends within a bound: the check's timeout, then the
//! rollback's grace, then the cleanups' limit each. What runs past the run's answer anyway
//! (a check that blocks its thread) is counted and reported; see [`runner`](crate::runner).
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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::{CheckError, ErrorKind, SmoketestBuilder};

type Cleanup = Pin<Box<dyn Future<Output = Result<(), CheckError>> + Send>>;

/// What a check gets from the runner. See the [module documentation](self).
pub struct Context {
    name: Arc<str>,
    deadline: Instant,
    /// Made on first use: most checks observe nothing.
    observed: Option<BTreeMap<String, serde_json::Value>>,
    /// Behind a lock so that a step's future, which borrows the context shared, can defer.
    deferred: Mutex<Vec<(String, Cleanup)>>,
    /// The steps of a scenario (scenario.rs), shared with its API client.
    steps: std::sync::OnceLock<crate::scenario::SharedLog>,
    /// The persona the check runs as (`#[smoketest::check(personas = [...])]`).
    persona: Option<Arc<str>>,
    databases: Arc<crate::db::Databases>,
    transactions: crate::db::Transactions,
    /// The run this context belongs to: its deadline, its in-flight hold, the service's
    /// redactor and cleanup limit. `None` for a detached context.
    run: Option<RunScope>,
}

/// What a context takes from the run it belongs to.
struct RunScope {
    smoke: crate::Smoketest,
    /// The run's deadline; `None` for a detached context given a service's pools.
    deadline: Option<Instant>,
    #[cfg_attr(
        not(any(feature = "postgres", feature = "mysql", feature = "sqlite")),
        allow(dead_code)
    )]
    hold: Option<crate::runner::Hold>,
}

impl SmoketestBuilder {
    /// The longest each cleanup registered with [`Context::defer`] may run after its check.
    /// A cleanup still running then is dropped (cancelled at its next `.await`) and the
    /// check fails with kind `cleanup`, so that no cleanup outlives its run unboundedly.
    /// Default 5 s.
    pub fn cleanup_timeout(mut self, limit: Duration) -> Self {
        self.config.cleanup_timeout = limit;
        self
    }
}

impl Context {
    pub(crate) fn new(name: Arc<str>, deadline: Instant) -> Self {
        Self::with(name, deadline, Arc::default(), None)
    }

    /// A check's context in a run of `smoke` ending at `run_deadline`: its pools, redactor
    /// and cleanup limit; `hold` is kept by every task the context spawns until that task
    /// ends.
    pub(crate) fn in_run(
        name: Arc<str>,
        deadline: Instant,
        smoke: &crate::Smoketest,
        run_deadline: Instant,
        hold: Option<crate::runner::Hold>,
    ) -> Self {
        let run = RunScope {
            smoke: smoke.clone(),
            deadline: Some(run_deadline),
            hold,
        };
        Self::with(name, deadline, smoke.inner.databases.clone(), Some(run))
    }

    fn with(
        name: Arc<str>,
        deadline: Instant,
        databases: Arc<crate::db::Databases>,
        run: Option<RunScope>,
    ) -> Self {
        Context {
            name,
            deadline,
            observed: None,
            deferred: Mutex::default(),
            steps: std::sync::OnceLock::new(),
            persona: None,
            databases,
            transactions: crate::db::Transactions::default(),
            run,
        }
    }

    /// The steps of a scenario, made on first use (most checks have none).
    pub(crate) fn step_log(&self) -> &crate::scenario::SharedLog {
        self.steps.get_or_init(Default::default)
    }

    /// Whether cleanups were registered ([`Context::defer`]).
    pub(crate) fn has_cleanups(&self) -> bool {
        !self
            .deferred
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Give a [`Context::detached`] context the database pools registered with `smoke`, to
    /// unit-test a check that uses them. Its transactions are rolled back by
    /// [`Context::finish`]; a context dropped without it closes their connections instead
    /// (the server discards the transactions), never returning one to the pool open.
    pub fn with_pools_of(mut self, smoke: &crate::Smoketest) -> Self {
        self.databases = smoke.inner.databases.clone();
        self.run = Some(RunScope {
            smoke: smoke.clone(),
            deadline: None,
            hold: None,
        });
        self
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
        self.observed
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value);
    }

    /// Values recorded with [`Context::observe`].
    pub fn observed(&self) -> &BTreeMap<String, serde_json::Value> {
        static NOTHING: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        self.observed.as_ref().unwrap_or(&NOTHING)
    }

    /// Run `cleanup` after the check, whatever happens to it (pass, failure, panic, timeout).
    /// For what a transaction cannot undo: a temporary file, an object put in a bucket.
    /// Cleanups run newest first; a failing cleanup fails the check with kind `cleanup`
    /// (a check that failed already keeps its own error; the cleanup's failure is reported
    /// beside it). Takes `&self`, so a [`step`](Context::step) can register the teardown of
    /// what it just created.
    pub fn defer<F>(&self, cleanup: F)
    where
        F: Future<Output = Result<(), CheckError>> + Send + 'static,
    {
        let mut deferred = self.deferred.lock().unwrap_or_else(|e| e.into_inner());
        let label = format!("cleanup #{}", deferred.len() + 1);
        deferred.push((label, Box::pin(cleanup)));
    }

    /// Like [`Context::defer`], with a label naming what the cleanup undoes (`delete order
    /// 17`), shown in failures and, in a check with steps, as the step `teardown: {label}`.
    pub fn defer_as<F>(&self, label: impl Into<String>, cleanup: F)
    where
        F: Future<Output = Result<(), CheckError>> + Send + 'static,
    {
        self.deferred
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((label.into(), Box::pin(cleanup)));
    }

    /// The persona this check runs as: set for each check made by
    /// `#[smoketest::check(personas = [...])]` or [`as_persona`](crate::scenario::as_persona),
    /// and the default of [`Context::api`]'s requests.
    pub fn persona(&self) -> Option<&str> {
        self.persona.as_deref()
    }

    pub(crate) fn persona_arc(&self) -> Option<Arc<str>> {
        self.persona.clone()
    }

    pub(crate) fn set_persona(&mut self, persona: Option<Arc<str>>) {
        self.persona = persona;
    }

    /// The API and personas of the service this context runs for, if it has one.
    pub(crate) fn scenarios(&self) -> Option<Arc<crate::scenario::ScenarioOptions>> {
        self.run.as_ref().map(|r| r.smoke.inner.scenarios.clone())
    }

    /// After the check: settle its steps against its result (see `StepLog::settle`).
    pub(crate) fn settle_steps(&self, result: crate::Result) -> crate::Result {
        match self.steps.get() {
            Some(log) => crate::scenario::lock(log).settle(result),
            None => result,
        }
    }

    /// The steps recorded so far.
    pub(crate) fn steps_snapshot(&self) -> Vec<crate::report::StepReport> {
        self.steps
            .get()
            .map(|log| crate::scenario::lock(log).snapshot())
            .unwrap_or_default()
    }

    /// The steps recorded, teardowns included.
    pub(crate) fn take_steps(&self) -> Vec<crate::report::StepReport> {
        self.steps
            .get()
            .map(|log| crate::scenario::lock(log).take())
            .unwrap_or_default()
    }

    /// A connection inside this check's transaction on the Postgres pool registered with
    /// [`SmoketestBuilder::postgres`](crate::SmoketestBuilder::postgres). The first call
    /// acquires a connection and begins the transaction (with the check's deadline as
    /// `statement_timeout` and `lock_timeout`); the runner rolls it back after the check.
    /// Fails with kind `db_unavailable` when no connection comes in time, `config` when no
    /// pool is registered.
    ///
    /// ```no_run
    /// # async fn check(ctx: &mut smoketest_core::Context) -> smoketest_core::Result {
    /// use smoketest_core::db::sqlx;
    /// let conn = ctx.postgres().await?;
    /// sqlx::query("INSERT INTO orders (item) VALUES ('smoke')").execute(&mut *conn).await?;
    /// let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders").fetch_one(&mut *conn).await?;
    /// smoketest_core::ensure!(n > 0);
    /// # Ok(smoketest_core::Outcome::Pass) }
    /// ```
    #[cfg(feature = "postgres")]
    pub async fn postgres(&mut self) -> Result<&mut sqlx::PgConnection, CheckError> {
        self.postgres_named(crate::db::DEFAULT_POOL).await
    }

    /// Like [`Context::postgres`], on the pool registered with
    /// [`postgres_named`](crate::SmoketestBuilder::postgres_named).
    #[cfg(feature = "postgres")]
    pub async fn postgres_named(
        &mut self,
        pool: &str,
    ) -> Result<&mut sqlx::PgConnection, CheckError> {
        self.connection::<crate::db::postgres::Pg>(pool, crate::db::Lock::AtFirstWrite)
            .await
    }

    /// A connection inside this check's transaction on the MySQL / MariaDB pool registered
    /// with [`SmoketestBuilder::mysql`](crate::SmoketestBuilder::mysql); see
    /// [`Context::postgres`]. The session's statement time limit is the check's deadline.
    #[cfg(feature = "mysql")]
    pub async fn mysql(&mut self) -> Result<&mut sqlx::MySqlConnection, CheckError> {
        self.mysql_named(crate::db::DEFAULT_POOL).await
    }

    /// Like [`Context::mysql`], on the pool registered with
    /// [`mysql_named`](crate::SmoketestBuilder::mysql_named).
    #[cfg(feature = "mysql")]
    pub async fn mysql_named(
        &mut self,
        pool: &str,
    ) -> Result<&mut sqlx::MySqlConnection, CheckError> {
        self.connection::<crate::db::mysql::My>(pool, crate::db::Lock::AtFirstWrite)
            .await
    }

    /// A connection inside this check's transaction (`BEGIN DEFERRED`: reading takes no write lock) on the SQLite pool
    /// registered with [`SmoketestBuilder::sqlite`](crate::SmoketestBuilder::sqlite); see
    /// [`Context::postgres`].
    #[cfg(feature = "sqlite")]
    pub async fn sqlite(&mut self) -> Result<&mut sqlx::SqliteConnection, CheckError> {
        self.sqlite_named(crate::db::DEFAULT_POOL).await
    }

    /// Like [`Context::sqlite`], on the pool registered with
    /// [`sqlite_named`](crate::SmoketestBuilder::sqlite_named).
    #[cfg(feature = "sqlite")]
    pub async fn sqlite_named(
        &mut self,
        pool: &str,
    ) -> Result<&mut sqlx::SqliteConnection, CheckError> {
        self.connection::<crate::db::sqlite::Lite>(pool, crate::db::Lock::AtFirstWrite)
            .await
    }

    /// Like [`Context::sqlite`], but the transaction takes the database's write lock when it
    /// begins (`BEGIN IMMEDIATE`), waiting for it at most until the check's deadline. For a
    /// check that reads and then writes: in a transaction begun without the lock, SQLite
    /// refuses that upgrade at once when another connection holds the lock. Call it before
    /// any other use of the pool in the check.
    #[cfg(feature = "sqlite")]
    pub async fn sqlite_write(&mut self) -> Result<&mut sqlx::SqliteConnection, CheckError> {
        self.sqlite_write_named(crate::db::DEFAULT_POOL).await
    }

    /// Like [`Context::sqlite_write`], on the pool registered with
    /// [`sqlite_named`](crate::SmoketestBuilder::sqlite_named).
    #[cfg(feature = "sqlite")]
    pub async fn sqlite_write_named(
        &mut self,
        pool: &str,
    ) -> Result<&mut sqlx::SqliteConnection, CheckError> {
        self.connection::<crate::db::sqlite::Lite>(pool, crate::db::Lock::UpFront)
            .await
    }

    /// This check's connection on `pool` for dialect `D`, in its transaction (begun on first
    /// use); the one body behind `postgres_named`, `mysql_named`, `sqlite_named` and
    /// `sqlite_write_named`.
    #[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
    async fn connection<D: crate::db::Dialect>(
        &mut self,
        pool: &str,
        lock: crate::db::Lock,
    ) -> Result<&mut crate::db::Conn<D>, CheckError> {
        let hold = self.run.as_ref().and_then(|r| r.hold.clone());
        crate::db::connection::<D>(
            &self.databases,
            &mut self.transactions,
            pool,
            self.deadline,
            hold,
            lock,
        )
        .await
    }

    /// Roll back the check's database transactions, then run the deferred cleanups, newest
    /// first, each within the cleanup time limit, and return the failures (a check that
    /// committed, a rollback that failed or did not end in time, a cleanup that failed or
    /// overstayed). The runner calls this after every check; call it yourself only on a
    /// [`Context::detached`] context.
    pub async fn finish(&mut self) -> Vec<CheckError> {
        let mut failures = self.end_transactions().await;
        failures.extend(self.run_cleanups(|_| {}).await);
        failures
    }

    /// Whether the check opened (or is opening) a database transaction.
    pub(crate) fn has_transactions(&self) -> bool {
        self.transactions.len() > 0
    }

    /// Step 1 of [`Context::finish`]: end every transaction, by the rollback bound.
    pub(crate) async fn end_transactions(&mut self) -> Vec<CheckError> {
        let now = Instant::now();
        let until = match self.run.as_ref().and_then(|r| r.deadline) {
            Some(run_deadline) => crate::db::rollback_until(now, run_deadline),
            // No run waits for a detached context: finishing it late must still roll back.
            None => now + crate::db::ROLLBACK_LIMIT,
        };
        let fallback;
        let redactor = match &self.run {
            Some(run) => &run.smoke.inner.redactor,
            None => {
                fallback = crate::redact::Redactor::default();
                &fallback
            }
        };
        let ending = crate::db::Ending {
            databases: &self.databases,
            deadline: self.deadline,
            until,
            redactor,
        };
        self.transactions.finish(&ending).await
    }

    /// Step 2 of [`Context::finish`]: the cleanups, newest first, each bounded; `starting`
    /// is told the label of each before it runs.
    pub(crate) async fn run_cleanups(&mut self, mut starting: impl FnMut(&str)) -> Vec<CheckError> {
        let limit = self
            .run
            .as_ref()
            .map_or(crate::runner::DEFAULT_CLEANUP_TIMEOUT, |r| {
                r.smoke.inner.config.cleanup_timeout
            });
        let mut failures = Vec::new();
        // A check with steps reports each teardown as a step of its own.
        let as_steps = self
            .steps
            .get()
            .is_some_and(|log| crate::scenario::lock(log).has_steps());
        let deferred = std::mem::take(self.deferred.get_mut().unwrap_or_else(|e| e.into_inner()));
        let mut deferred = deferred;
        while let Some((label, cleanup)) = deferred.pop() {
            starting(&label);
            let step =
                as_steps.then(|| crate::scenario::lock(self.step_log()).start_teardown(&label));
            let failed_before = failures.len();
            // A panicking cleanup must not skip the ones registered before it.
            let cleanup =
                futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(cleanup));
            match tokio::time::timeout(limit, cleanup).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => failures.push(CheckError::new(
                    ErrorKind::Cleanup,
                    format!("{label} failed: {}", e.message()),
                )),
                Ok(Err(panic)) => failures.push(CheckError::new(
                    ErrorKind::Cleanup,
                    format!(
                        "{label} panicked: {}",
                        crate::runner::panic_message(&*panic)
                    ),
                )),
                Err(_) => failures.push(
                    CheckError::new(
                        ErrorKind::Cleanup,
                        format!(
                            "{label} did not finish within the cleanup time limit of {} and was abandoned (dropped): what it was undoing may remain",
                            humantime::format_duration(limit)
                        ),
                    )
                    .with_suggestion(
                        "Give the cleanup's own calls a timeout shorter than the limit, move blocking work to tokio::task::spawn_blocking, or raise SmoketestBuilder::cleanup_timeout if the cleanup is legitimately slow.",
                    ),
                ),
            }
            if let Some(index) = step {
                crate::scenario::lock(self.step_log())
                    .end_teardown(index, failures[failed_before..].first());
            }
        }
        failures
    }

    pub(crate) fn take_observed(&mut self) -> BTreeMap<String, serde_json::Value> {
        self.observed.take().unwrap_or_default()
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("check", &self.name)
            .field("remaining", &self.remaining())
            .field("deferred", &self.deferred.lock().map_or(0, |d| d.len()))
            .field("transactions", &self.transactions.len())
            .finish_non_exhaustive()
    }
}
