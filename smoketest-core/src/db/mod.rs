//! Database transactions that the runner always rolls back, and the built-in database
//! checks (features `postgres`, `mysql`, `sqlite`; `migrate` adds the migrations check).
//!
//! A check asks its [`Context`](crate::Context) for a connection with
//! `ctx.postgres().await?` (or `ctx.mysql()`, `ctx.sqlite()`, `ctx.sqlite_write()` for a
//! SQLite check that reads and then writes, and the `…_named` variants for a service with
//! several pools of one kind). The first call acquires a connection from the pool registered
//! with the builder and begins a transaction on it; later calls in the same run return the
//! same connection. The check gets a `&mut PgConnection` (a `&mut MySqlConnection`, a
//! `&mut SqliteConnection`) **borrowed** from a transaction the runner owns, so it has no
//! `commit` to call. After the check returns, fails, panics, times out, or the client hangs
//! up, the runner sends an explicit `ROLLBACK` and waits for the answer before it reports.
//! Each check has its own transaction on each pool it touches: two checks never see each
//! other's writes, and one check's database error cannot poison another.
//!
//! Unlike django-smoketest, which wraps a whole run in one savepoint on the default
//! database, nothing here is shared between checks, and the database itself enforces the
//! deadline:
//!
//! | backend | begin | the deadline inside the database |
//! | --- | --- | --- |
//! | Postgres | `BEGIN` | `SET LOCAL statement_timeout`, `lock_timeout` (the time left), `idle_in_transaction_session_timeout` (the time left + 5 s) |
//! | MariaDB / MySQL | `BEGIN` | session `max_statement_time` (MariaDB) or `max_execution_time` (MySQL, `SELECT` only), restored afterwards |
//! | SQLite | `BEGIN DEFERRED` (a check that only reads never takes the write lock); `BEGIN IMMEDIATE` with `ctx.sqlite_write()` | `PRAGMA busy_timeout` (restored afterwards) and a progress handler that interrupts any statement running past the deadline |
//!
//! A client-side timeout alone would leave the query running on the server, holding its
//! locks. If the `ROLLBACK` of a check that ran past its deadline does not answer within
//! 50 ms, the runner also cancels the running statement from a separate connection
//! (`pg_cancel_backend`, `KILL QUERY`).
//!
//! # Rollback before verdict, within a bound
//!
//! The runner decides a check's verdict only after each of its transactions has ended:
//!
//! - **Rolled back**: the connection goes back to the pool, unless a cancel was started
//!   on it.
//! - **Or its connection closed**, never returned to the pool, so the server discards the
//!   transaction: when the `ROLLBACK` fails, or does not answer within 2 s of the check's
//!   end and at most **500 ms after the run's deadline** (closing takes at most 250 ms
//!   more), the report then says so (kind `timeout` or the rollback's error).
//! - **A connection on which a cancel was started is always closed**, even when its
//!   `ROLLBACK` then succeeds: a cancel in flight could otherwise land on the next query the
//!   connection serves for the application. The connection stays open until the cancel has
//!   ended (or was given up at the bound), so the backend the cancel names is still the
//!   check's own; MariaDB connection ids are never reused, and a Postgres cancel names the
//!   backend by a random key the check's session carries in its `application_name` only
//!   while the check runs.
//! - **A `committed` is never lost**: whether the check ended the runner's transaction is
//!   asked before the `ROLLBACK`, and kept even if the `ROLLBACK` then fails or hangs.
//!
//! So a run's report goes out at most [`VERDICT_GRACE`](crate::runner::VERDICT_GRACE)
//! (1 s) after its deadline with every transaction ended, unless the check's task cannot run
//! at all (it blocks its thread); then the report says so and the check is counted as
//! overrunning (see [`runner`](crate::runner)). A warning about a cancel that failed goes
//! through the service's redactor before it is logged.
//!
//! # Why no connection is ever left "idle in transaction"
//!
//! `pool.begin()` dropped at the wrong moment (after `BEGIN` reached the server, before the
//! `Transaction` existed) returns a connection to the pool with an open transaction, which
//! the next user then shares. Here that window cannot be hit: the connection is acquired and
//! the transaction begun inside a spawned task that the check's future does not own, so
//! cancelling the check (a timeout, a client hanging up) cannot interrupt it; the task's
//! handle stays in the context, and the runner waits for it and rolls back. The connection
//! itself is held in a guard that *closes* it, rather than returning it to the pool, on
//! every path except a completed `ROLLBACK`.
//!
//! # A check that commits behind the runner's back
//!
//! Where the database can tell, the runner detects it and fails the check with kind
//! `committed`: on Postgres a raw `COMMIT` or `ROLLBACK` (the transaction the runner began is
//! gone); on MariaDB DDL such as `CREATE TABLE`, which commits implicitly, or a raw `COMMIT`
//! (`@@in_transaction`); on SQLite a commit hook turns any `COMMIT` into a `ROLLBACK`, so
//! nothing is written, and the check still fails. MySQL (not MariaDB) offers no way to tell
//! without the `PROCESS` privilege, so there a commit goes unnoticed. Nested
//! `conn.begin()` inside a check is safe: sqlx makes it a savepoint.
//!
//! # What a rollback cannot undo
//!
//! - Sequences and `AUTO_INCREMENT` counters advance and stay advanced (`nextval`,
//!   `SERIAL`, identity columns, `AUTO_INCREMENT`): gaps in ids are normal after a smoke
//!   check. A check must not assert on the next id value.
//! - Anything outside the database: files, messages sent to a queue, HTTP calls, emails.
//!   Register their undoing with [`Context::defer`](crate::Context::defer).
//! - On MySQL/MariaDB: DDL (commits implicitly; see above), `TRUNCATE`, and writes to
//!   non-transactional (MyISAM, MEMORY) tables.
//! - On MySQL/MariaDB: `SET SESSION` variables and user variables (`@x`); temporary tables
//!   (drop them in the check).
//! - Postgres: session-level advisory locks (`pg_advisory_lock`) stay held; use
//!   `pg_advisory_xact_lock`, which the rollback releases.
//! - SQLite: `PRAGMA`s that change the connection or the file (`journal_mode`, …).
//!
//! Give the pool you register for smoke checks a **least-privilege role** of its own:
//! `SELECT`, `INSERT`, `UPDATE`, `DELETE` on the tables the checks touch (and `TEMPORARY`
//! on Postgres, `CREATE TEMPORARY TABLES` on MariaDB for the write probe), no DDL, no
//! `SUPER`, a small connection limit. Then a mistaken check cannot drop a table, DDL (which
//! MySQL would commit) is refused outright, and the checks cannot starve the service's own
//! pool.
//!
//! # A database that does not answer
//!
//! A check waits for a connection at most the builder's `database_acquire_timeout`
//! (default 3 s, and never more than three quarters of its own timeout), then tries one
//! direct connection to tell an unreachable server ("connection refused", with what to
//! check) from an exhausted pool, and fails with kind `db_unavailable`. Nothing is cached:
//! the next run succeeds as soon as the database is back.
//!
//! An idle connection is taken without the pool's ping on acquire (`Pool::try_acquire`):
//! `BEGIN` follows at once and finds out as well whether the connection works. If it finds
//! it broken (the server restarted, a firewall dropped it while idle), that connection is
//! closed and the begin retried once on one from `Pool::acquire`, before the check has run
//! anything, so a stale idle connection never fails a check. sqlx still pings every
//! connection returned to the pool; that happens in a task of its own, after the verdict.
//! `try_acquire` also skips a pool's `before_acquire` hook (sqlx runs it from `acquire`
//! only): if yours prepares each connection (a role, a `search_path`), do that in
//! `after_connect` instead, so that smoke checks see the connection your service sees.
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "sqlite")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use smoketest_core::db::sqlx::{self, sqlite::SqlitePoolOptions};
//! use smoketest_core::{ensure_eq, from_fn, Outcome, Selection, Smoketest, Status};
//!
//! let path = std::env::temp_dir().join(format!("smoketest-doc-{}.db", std::process::id()));
//! let pool = SqlitePoolOptions::new()
//!     .connect(&format!("sqlite:{}?mode=rwc", path.display()))
//!     .await
//!     .unwrap();
//! sqlx::query("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, item TEXT)")
//!     .execute(&pool)
//!     .await
//!     .unwrap();
//!
//! let smoke = Smoketest::builder()
//!     .without_discovery()
//!     .sqlite(pool.clone())
//!     .check(from_fn("orders::write", |ctx| Box::pin(async move {
//!         let conn = ctx.sqlite().await?;
//!         sqlx::query("INSERT INTO orders (item) VALUES ('smoke')").execute(&mut *conn).await?;
//!         let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders").fetch_one(&mut *conn).await?;
//!         ensure_eq!(n, 1, "orders visible inside the check's transaction");
//!         Ok(Outcome::Pass)
//!     })))
//!     .check(smoketest_core::db::sqlite::write_probe())
//!     .build()
//!     .unwrap();
//!
//! let report = smoke.run(&Selection::all()).await.unwrap();
//! assert_eq!(report.status, Status::Pass, "{report:?}");
//! // The runner rolled the insert back.
//! let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders").fetch_one(&pool).await.unwrap();
//! assert_eq!(n, 0);
//! # pool.close().await;
//! # let _ = std::fs::remove_file(&path);
//! # }
//! # #[cfg(not(feature = "sqlite"))]
//! # fn main() {}
//! ```

#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
mod checks;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
pub use checks::DbCheck;
/// The sqlx this crate was built with, so that pools and queries match its version.
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
pub use sqlx;

#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
pub(crate) use engine::*;

#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
use std::sync::Arc;
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
use std::time::Duration;

/// The name of the pool registered without a name (`.postgres(pool)`).
pub const DEFAULT_POOL: &str = "default";

/// The pools registered with the builder, shared by every run.
#[derive(Clone)]
pub(crate) struct Databases {
    #[cfg(feature = "postgres")]
    pub(crate) postgres: Vec<(Arc<str>, sqlx::PgPool)>,
    #[cfg(feature = "mysql")]
    pub(crate) mysql: Vec<(Arc<str>, sqlx::MySqlPool)>,
    #[cfg(feature = "sqlite")]
    pub(crate) sqlite: Vec<(Arc<str>, sqlx::SqlitePool)>,
    /// The longest a check waits for a connection before failing with `db_unavailable`.
    #[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
    pub(crate) acquire_timeout: Duration,
}

#[allow(clippy::derivable_impls)] // not derivable with a database feature on
impl Default for Databases {
    fn default() -> Self {
        Databases {
            #[cfg(feature = "postgres")]
            postgres: Vec::new(),
            #[cfg(feature = "mysql")]
            mysql: Vec::new(),
            #[cfg(feature = "sqlite")]
            sqlite: Vec::new(),
            #[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

impl Databases {
    /// Add a pool, refusing a second pool of one kind under one name.
    #[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
    pub(crate) fn add<D: Dialect>(
        &mut self,
        name: &str,
        pool: sqlx::Pool<D::Db>,
    ) -> Result<(), String> {
        let pools = D::pools_mut(self);
        if pools.iter().any(|(n, _)| &**n == name) {
            return Err(format!(
                "two {} pools are named `{name}`; give each its own name with `.{}_named(…)`",
                D::LABEL,
                D::METHOD
            ));
        }
        pools.push((Arc::from(name), pool));
        Ok(())
    }
}

/// The transactions one run of one check has opened, per pool.
#[derive(Default)]
pub(crate) struct Transactions {
    #[cfg(feature = "postgres")]
    pub(crate) postgres: Vec<(Arc<str>, Slot<postgres::Pg>)>,
    #[cfg(feature = "mysql")]
    pub(crate) mysql: Vec<(Arc<str>, Slot<mysql::My>)>,
    #[cfg(feature = "sqlite")]
    pub(crate) sqlite: Vec<(Arc<str>, Slot<sqlite::Lite>)>,
}

impl Transactions {
    /// How many transactions are open or being begun.
    pub(crate) fn len(&self) -> usize {
        #[allow(unused_mut)]
        let mut n = 0;
        #[cfg(feature = "postgres")]
        {
            n += self.postgres.len();
        }
        #[cfg(feature = "mysql")]
        {
            n += self.mysql.len();
        }
        #[cfg(feature = "sqlite")]
        {
            n += self.sqlite.len();
        }
        n
    }

    /// Roll back every transaction (explicit, awaited, bounded by `ending.until`) and report
    /// what went wrong: a check that committed, a rollback that failed or did not end in time.
    #[cfg_attr(
        not(any(feature = "postgres", feature = "mysql", feature = "sqlite")),
        allow(unused_variables, clippy::unused_async)
    )]
    pub(crate) async fn finish(&mut self, ending: &Ending<'_>) -> Vec<crate::CheckError> {
        #[allow(unused_mut)]
        let mut failures = Vec::new();
        #[cfg(feature = "postgres")]
        for (name, slot) in std::mem::take(&mut self.postgres) {
            failures.extend(end(ending, name, slot).await);
        }
        #[cfg(feature = "mysql")]
        for (name, slot) in std::mem::take(&mut self.mysql) {
            failures.extend(end(ending, name, slot).await);
        }
        #[cfg(feature = "sqlite")]
        for (name, slot) in std::mem::take(&mut self.sqlite) {
            failures.extend(end(ending, name, slot).await);
        }
        failures
    }
}

/// How one check's transactions end: against which pools, by when, and through which
/// redactor a warning goes.
#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql", feature = "sqlite")),
    allow(dead_code)
)]
pub(crate) struct Ending<'a> {
    pub(crate) databases: &'a Databases,
    /// The check's deadline: a transaction ended at or after it was cut off.
    pub(crate) deadline: tokio::time::Instant,
    /// When the rollbacks give up: the connection is closed instead (see [`rollback_until`]).
    pub(crate) until: tokio::time::Instant,
    pub(crate) redactor: &'a crate::redact::Redactor,
}

/// How long a `ROLLBACK` may take when the check ended before the run's deadline (and
/// after a detached context's `finish`).
#[allow(dead_code)]
pub(crate) const ROLLBACK_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);
/// How long after the run's deadline a `ROLLBACK` may still take.
#[allow(dead_code)]
pub(crate) const ROLLBACK_GRACE: std::time::Duration = std::time::Duration::from_millis(500);
/// How long closing a connection (and a last cancel) may take after the rollback gave up.
#[allow(dead_code)]
pub(crate) const CLOSE_LIMIT: std::time::Duration = std::time::Duration::from_millis(250);

/// When the rollbacks of a check that ends `now` give up: [`ROLLBACK_LIMIT`] later, but
/// never later than [`ROLLBACK_GRACE`] after the run's deadline. Closing the connections
/// then takes at most [`CLOSE_LIMIT`] more, so every transaction has ended (rolled back, or
/// its connection closed) by the run's deadline + 750 ms, before the run's verdict.
pub(crate) fn rollback_until(
    now: tokio::time::Instant,
    run_deadline: tokio::time::Instant,
) -> tokio::time::Instant {
    (now + ROLLBACK_LIMIT).min(run_deadline + ROLLBACK_GRACE)
}

/// The machinery shared by the backends: begin in a spawned task, hold the connection in a
/// closing guard, roll back with a bound, cancel a statement still running.
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
mod engine {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::time::Duration;

    use sqlx::pool::PoolConnection;
    use sqlx_core::transaction::TransactionManager;
    use std::panic::AssertUnwindSafe;
    use std::sync::atomic::{AtomicU8, Ordering};
    use tokio::task::JoinHandle;

    use futures_util::FutureExt;
    use tokio::time::{Instant, sleep, timeout, timeout_at};

    use super::{CLOSE_LIMIT, Databases, Ending, Transactions};
    use crate::{CheckError, ErrorKind};

    /// How long a `ROLLBACK` after a check that ran past its deadline may take before the
    /// runner cancels the statement still running on that connection.
    const CANCEL_AFTER: Duration = Duration::from_millis(50);
    /// Extra time the begin task gets beyond the check's deadline for `BEGIN` itself.
    const BEGIN_GRACE: Duration = Duration::from_millis(500);

    pub(crate) type Conn<D> = <<D as Dialect>::Db as sqlx::Database>::Connection;
    /// A cancel in flight; its error, if any, is the text to log (redacted first).
    pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>>;

    /// What differs between databases: how to begin with the deadline inside, how to tell
    /// whether the transaction is still open, how to roll back and restore the session, and
    /// how to cancel a running statement from outside.
    pub(crate) trait Dialect: Sized + Send + Sync + 'static {
        type Db: sqlx::Database;
        /// What `begin` learned and `rollback` needs (backend id, saved settings).
        type Session: Send + Sync + 'static;
        /// "Postgres".
        const LABEL: &'static str;
        /// The builder method: "postgres".
        const METHOD: &'static str;

        fn pools(databases: &Databases) -> &[(Arc<str>, sqlx::Pool<Self::Db>)];
        fn pools_mut(databases: &mut Databases) -> &mut Vec<(Arc<str>, sqlx::Pool<Self::Db>)>;
        fn slots(transactions: &mut Transactions) -> &mut Vec<(Arc<str>, Slot<Self>)>;

        /// Begin the transaction with the deadline put into the database; `lock` asks for
        /// the write lock up front where the database distinguishes (SQLite).
        fn begin(
            conn: &mut Conn<Self>,
            deadline: Instant,
            lock: Lock,
        ) -> impl Future<Output = Result<Self::Session, sqlx::Error>> + Send;

        /// Whether this transaction took the write lock up front (only SQLite can say no).
        fn locked_up_front(_session: &Self::Session) -> bool {
            true
        }

        /// `Some(false)` when the transaction the runner began is gone (the check
        /// committed); `None` when the database cannot tell.
        fn still_open(
            conn: &mut Conn<Self>,
            session: &Self::Session,
        ) -> impl Future<Output = Option<bool>> + Send;

        /// The detection and the rollback in one round trip, for a check that ended before
        /// its deadline: what `still_open` would have said (`None`: unknown) and how the
        /// rollback went; the transaction has ended when the future is ready, like after
        /// `rollback`. `None` sends the runner down the two-step path: the database has no
        /// such path, or nothing it sent got as far as ending the transaction.
        fn detect_and_roll_back(
            _conn: &mut Conn<Self>,
            _session: &Self::Session,
        ) -> impl Future<Output = Option<(Option<bool>, Result<(), sqlx::Error>)>> + Send {
            std::future::ready(None)
        }

        /// Roll back and restore what `begin` changed in the session.
        fn rollback(
            conn: &mut Conn<Self>,
            session: &Self::Session,
        ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

        /// A future that cancels the statement running on this session's connection, from a
        /// separate connection; `None` where the database needs none.
        fn cancel(pool: &sqlx::Pool<Self::Db>, session: &Self::Session) -> Option<BoxFuture>;

        /// The sentence for a check that committed.
        fn committed_message(pool: &str) -> String;
    }

    /// Roll back every level sqlx knows of (a savepoint the check leaked, then the
    /// transaction), leaving the connection at depth zero for the pool.
    pub(crate) async fn rollback_all<DB: sqlx::Database>(
        conn: &mut DB::Connection,
    ) -> Result<(), sqlx::Error> {
        while DB::TransactionManager::get_transaction_depth(conn) > 0 {
            DB::TransactionManager::rollback(conn).await?;
        }
        Ok(())
    }

    /// A pooled connection that is closed, not returned to the pool, unless released.
    pub(crate) struct Held<DB: sqlx::Database> {
        conn: Option<PoolConnection<DB>>,
    }

    impl<DB: sqlx::Database> Held<DB> {
        fn get(&mut self) -> Option<&mut DB::Connection> {
            self.conn.as_deref_mut()
        }

        /// Return the connection to the pool: only after a completed rollback on which no
        /// cancel was started.
        fn release(mut self) {
            drop(self.conn.take());
        }

        /// Close the connection (never back to the pool), waiting at most until `by`; past
        /// it the connection is dropped, which closes its socket all the same.
        async fn close(mut self, by: Instant) {
            if let Some(conn) = self.conn.take() {
                let _ = tokio::time::timeout_at(by, conn.close()).await;
            }
        }
    }

    impl<DB: sqlx::Database> Drop for Held<DB> {
        fn drop(&mut self) {
            if let Some(mut conn) = self.conn.take() {
                // The server discards the transaction of a closed connection.
                conn.close_on_drop();
            }
        }
    }

    /// An open transaction: its connection and what `begin` learned.
    pub(crate) struct Open<D: Dialect> {
        held: Held<D::Db>,
        session: D::Session,
    }

    /// One pool's transaction in one check run.
    pub(crate) enum Slot<D: Dialect> {
        /// Being begun in a spawned task (cancelling the check cannot interrupt it).
        Beginning(JoinHandle<Result<Open<D>, CheckError>>),
        /// Open; the check borrows its connection.
        Open(Open<D>),
    }

    /// When a transaction takes the write lock (SQLite; the others lock row by row).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Lock {
        /// At its first write (`BEGIN DEFERRED`): reading checks never block writers.
        AtFirstWrite,
        /// At `BEGIN` (`BEGIN IMMEDIATE`): a check that reads, then writes, cannot be
        /// refused the upgrade.
        UpFront,
    }

    /// The connection of this check's transaction on pool `name`, begun on first use.
    pub(crate) async fn connection<'t, D: Dialect>(
        databases: &Databases,
        transactions: &'t mut Transactions,
        name: &str,
        deadline: Instant,
        hold: Option<crate::runner::Hold>,
        lock: Lock,
    ) -> Result<&'t mut Conn<D>, CheckError> {
        let slots = D::slots(transactions);
        let index = match slots.iter().position(|(n, _)| &**n == name) {
            Some(index) => index,
            None => {
                let Some((pool_name, pool)) =
                    D::pools(databases).iter().find(|(n, _)| &**n == name)
                else {
                    return Err(missing_pool::<D>(databases, name));
                };
                let task = begin::<D>(
                    pool.clone(),
                    pool_name.clone(),
                    deadline,
                    databases.acquire_timeout,
                    lock,
                );
                // The begin task counts as the run's work until it ends (runner.rs).
                let task = async move {
                    let _hold = hold;
                    task.await
                };
                slots.push((pool_name.clone(), Slot::Beginning(tokio::spawn(task))));
                slots.len() - 1
            }
        };
        if let Slot::Beginning(handle) = &mut slots[index].1 {
            // Awaiting `&mut handle` leaves the task running if this future is dropped;
            // the runner then finds the handle in the context and rolls back.
            let begun = handle.await;
            match begun {
                Ok(Ok(open)) => slots[index].1 = Slot::Open(open),
                Ok(Err(error)) => {
                    slots.remove(index);
                    return Err(error);
                }
                Err(join_error) => {
                    slots.remove(index);
                    return Err(CheckError::error(format!(
                        "beginning the {} transaction on pool `{name}` failed: {join_error}",
                        D::LABEL
                    )));
                }
            }
        }
        match &mut slots[index].1 {
            Slot::Open(open) if lock == Lock::UpFront && !D::locked_up_front(&open.session) => {
                Err(CheckError::new(
                    ErrorKind::Config,
                    format!(
                        "the check asked for the {} write lock up front on pool `{name}` after its transaction had begun without it",
                        D::LABEL
                    ),
                )
                .with_suggestion(format!(
                    "Call ctx.{}_write() before any other use of that pool in the check.",
                    D::METHOD
                )))
            }
            Slot::Open(open) => open.held.get().ok_or_else(|| {
                CheckError::error(format!(
                    "the {} connection of pool `{name}` was already closed",
                    D::LABEL
                ))
            }),
            Slot::Beginning(_) => Err(CheckError::error(format!(
                "the {} transaction on pool `{name}` is still being begun",
                D::LABEL
            ))),
        }
    }

    fn missing_pool<D: Dialect>(databases: &Databases, name: &str) -> CheckError {
        let known: Vec<&str> = D::pools(databases).iter().map(|(n, _)| &**n).collect();
        let how = if name == super::DEFAULT_POOL {
            format!("`.{}(pool)`", D::METHOD)
        } else {
            format!("`.{}_named(\"{name}\", pool)`", D::METHOD)
        };
        let message = if known.is_empty() {
            format!("no {} pool is registered", D::LABEL)
        } else {
            format!(
                "no {} pool is named `{name}` (registered: {})",
                D::LABEL,
                known.join(", ")
            )
        };
        CheckError::new(ErrorKind::Config, message).with_suggestion(format!(
            "Register the pool with {how} on the Smoketest builder."
        ))
    }

    /// Acquire (bounded) and begin. Runs in its own task.
    ///
    /// An idle connection is taken with `try_acquire`, which skips the pool's ping on acquire
    /// (`test_before_acquire`): `BEGIN` follows at once and tells as well whether the
    /// connection still works. If that connection turns out dead before the check has run
    /// anything on it (the server restarted, a firewall dropped it), it is closed and the
    /// begin retried once on a connection from `acquire`, which the pool tests or opens
    /// afresh, so a stale idle connection never turns into a false `db_unavailable`.
    async fn begin<D: Dialect>(
        pool: sqlx::Pool<D::Db>,
        name: Arc<str>,
        deadline: Instant,
        acquire_timeout: Duration,
        lock: Lock,
    ) -> Result<Open<D>, CheckError> {
        if let Some(conn) = pool.try_acquire() {
            match begin_on::<D>(Held { conn: Some(conn) }, &name, deadline, lock).await {
                Err(Begun::Broken(_)) => {}
                done => return done.map_err(Begun::into_error),
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        // Leave a quarter of the check's time to say why no connection came.
        let wait = acquire_timeout.min(remaining * 3 / 4);
        let conn = match timeout(wait, pool.acquire()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(error)) => return Err(unavailable::<D>(&pool, &name, wait, error).await),
            Err(_) => {
                return Err(unavailable::<D>(&pool, &name, wait, sqlx::Error::PoolTimedOut).await);
            }
        };
        begin_on::<D>(Held { conn: Some(conn) }, &name, deadline, lock)
            .await
            .map_err(Begun::into_error)
    }

    /// Why a begin failed: the connection itself broke (worth one more try on another
    /// connection), or anything else.
    enum Begun {
        Broken(CheckError),
        Failed(CheckError),
    }

    impl Begun {
        fn into_error(self) -> CheckError {
            match self {
                Begun::Broken(error) | Begun::Failed(error) => error,
            }
        }
    }

    /// Whether `error` says the connection is gone rather than the server refused something.
    fn broken(error: &sqlx::Error) -> bool {
        match error {
            sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
            // Postgres: the server closed this session (admin shutdown, crash recovery);
            // class 08 is a connection exception on both servers.
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57P0")),
            _ => false,
        }
    }

    /// Begin on `held`'s connection. On every error `held` is dropped, which closes the
    /// connection: it never goes back to the pool with something begun.
    async fn begin_on<D: Dialect>(
        mut held: Held<D::Db>,
        name: &str,
        deadline: Instant,
        lock: Lock,
    ) -> Result<Open<D>, Begun> {
        let Some(conn) = held.get() else {
            return Err(Begun::Failed(CheckError::error(
                "the pooled connection vanished",
            )));
        };
        // If `BEGIN` hangs, dropping `held` closes the connection: it never goes back open.
        match tokio::time::timeout_at(deadline + BEGIN_GRACE, D::begin(conn, deadline, lock)).await
        {
            Ok(Ok(session)) => Ok(Open { held, session }),
            Ok(Err(error)) => {
                let failure = crate::db::classify(&error).context(format!(
                    "beginning the {} transaction on pool `{name}`",
                    D::LABEL
                ));
                Err(if broken(&error) {
                    Begun::Broken(failure)
                } else {
                    Begun::Failed(failure)
                })
            }
            Err(_) => Err(Begun::Failed(CheckError::new(
                ErrorKind::DbUnavailable,
                format!(
                    "the {} server of pool `{name}` did not answer BEGIN before the check's deadline",
                    D::LABEL
                ),
            ))),
        }
    }

    /// Explain why no connection came: an unreachable server, or an exhausted pool.
    async fn unavailable<D: Dialect>(
        pool: &sqlx::Pool<D::Db>,
        name: &str,
        waited: Duration,
        error: sqlx::Error,
    ) -> CheckError {
        use sqlx::{ConnectOptions, Connection};
        if !matches!(error, sqlx::Error::PoolTimedOut) {
            return crate::db::classify(&error).context(format!(
                "getting a connection from the {} pool `{name}`",
                D::LABEL
            ));
        }
        let waited = humantime::format_duration(Duration::from_millis(waited.as_millis() as u64));
        let options = pool.connect_options();
        let probe = timeout(Duration::from_millis(500), options.connect()).await;
        let (why, suggestion) = match probe {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                (
                    format!(
                        "the pool is exhausted: all {} connections are in use",
                        pool.options().get_max_connections()
                    ),
                    "The database answers, but the pool has no free connection: look for slow queries or leaked connections, or raise max_connections.",
                )
            }
            Ok(Err(e)) => (
                format!(
                    "connecting directly failed: {}",
                    crate::error::error_chain(&e)
                ),
                "Check that the database is running and reachable from this host (address, port, firewall) and that the credentials are valid.",
            ),
            Err(_) => (
                "a direct connection attempt did not answer within 500 ms".to_string(),
                "The database does not answer: check that it is running, and the network between this host and it.",
            ),
        };
        CheckError::new(
            ErrorKind::DbUnavailable,
            format!(
                "no connection from the {} pool `{name}` within {waited}: {why}",
                D::LABEL
            ),
        )
        .with_suggestion(suggestion)
    }

    /// End one transaction: explicit, awaited `ROLLBACK`, bounded by `ending.until`; close
    /// the connection rather than return it to the pool if anything about it is uncertain,
    /// or if a cancel was started on it.
    pub(crate) async fn end<D: Dialect>(
        ending: &Ending<'_>,
        name: Arc<str>,
        slot: Slot<D>,
    ) -> Option<CheckError> {
        let until = ending.until;
        let mut open = match slot {
            Slot::Open(open) => open,
            // The check was cut off while its transaction was being begun: wait for the begin
            // task (bounded by the deadline) and roll back what it began.
            Slot::Beginning(mut handle) => match timeout_at(until, &mut handle).await {
                Ok(Ok(Ok(open))) => open,
                // Nothing was begun.
                Ok(_) => return None,
                Err(_) => {
                    // Dropping the task's `Held` closes the connection: nothing stays open.
                    handle.abort();
                    return None;
                }
            },
        };
        let cut_off = Instant::now() >= ending.deadline;
        // Made only when it is needed (a check cut off, a ROLLBACK that failed): most
        // checks end in time and never cancel anything.
        let databases = ending.databases;
        let make_cancel = |session: &D::Session| {
            D::pools(databases)
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, pool)| D::cancel(pool, session))
        };
        let mut cancel_started = false;
        // What the check left: 0 unknown, 1 the runner's transaction is still open, 2 the
        // check ended it (committed). Kept apart from the rollback, so that a rollback that
        // fails or hangs afterwards cannot lose a `committed`.
        let seen = AtomicU8::new(0);

        let outcome = {
            let Open { held, session } = &mut open;
            let conn = held.get()?;
            let record = |still_open: Option<bool>| {
                let seen_now = match still_open {
                    None => 0,
                    Some(true) => 1,
                    Some(false) => 2,
                };
                seen.store(seen_now, Ordering::SeqCst);
            };
            let work = async {
                // A check that ended in time: one round trip where the database allows.
                // Not after a cut-off, where the error of a cancelled statement can surface
                // on the query and leave unknown whether its rollback ran.
                if !cut_off
                    && let Some((still_open, rolled_back)) =
                        D::detect_and_roll_back(conn, session).await
                {
                    record(still_open);
                    return rolled_back;
                }
                let mut still_open = D::still_open(conn, session).await;
                if still_open.is_none() {
                    // The error of the statement the cancel stopped can surface on this
                    // query; ask once more rather than lose a `committed`.
                    still_open = D::still_open(conn, session).await;
                }
                record(still_open);
                D::rollback(conn, session).await
            };
            // A driver can panic on a connection whose query future was dropped half-way;
            // that must end as a closed connection, not a lost report.
            let work = async {
                AssertUnwindSafe(work)
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|panic| {
                        let message = crate::runner::panic_message(&*panic);
                        Err(sqlx::Error::Protocol(format!(
                            "the driver panicked: {message}"
                        )))
                    })
            };
            tokio::pin!(work);
            let quick = if cut_off {
                // A statement may still run on the server: give the ROLLBACK a moment, then
                // cancel that statement from outside.
                tokio::select! {
                    done = &mut work => Some(done),
                    () = sleep(CANCEL_AFTER) => None,
                }
            } else {
                None
            };
            match (quick, cut_off.then(|| make_cancel(session)).flatten()) {
                (Some(done), _) => Some(done),
                (None, Some(cancel)) => {
                    // From here on this connection is closed, never pooled: the cancel could
                    // otherwise land on the next query it serves. It stays open until the
                    // cancel has ended, so that the backend it names is still ours.
                    cancel_started = true;
                    let cancel = run_cancel::<D>(cancel, until, ending.redactor, &name);
                    let (done, ()) = tokio::join!(timeout_at(until, work), cancel);
                    done.ok()
                }
                (None, None) => timeout_at(until, work).await.ok(),
            }
        };
        let committed_seen = seen.load(Ordering::SeqCst) == 2;
        let close_by = until.max(Instant::now()) + CLOSE_LIMIT;

        if matches!(outcome, Some(Ok(()))) && !cancel_started {
            open.held.release();
        } else {
            if !matches!(outcome, Some(Ok(()))) {
                // The connection is closed below; first stop whatever it still runs on the
                // server (a closed socket alone does not stop a running statement).
                if let Some(cancel) = (!cancel_started)
                    .then(|| make_cancel(&open.session))
                    .flatten()
                {
                    run_cancel::<D>(cancel, close_by, ending.redactor, &name).await;
                }
            }
            open.held.close(close_by).await;
        }

        if committed_seen {
            return Some(committed::<D>(&name));
        }
        match outcome {
            Some(Ok(())) => None,
            Some(Err(error)) => Some(crate::db::classify(&error).context(format!(
                "rolling back the {} transaction on pool `{name}` failed (the connection was closed instead, so the server discards the transaction)",
                D::LABEL
            ))),
            None => Some(
                CheckError::new(
                    ErrorKind::Timeout,
                    format!(
                        "the {} ROLLBACK on pool `{name}` did not finish in time (it may take {} after the check, and at most {} past the run's deadline); the connection was closed instead, never returned to the pool, so the server discards the transaction",
                        D::LABEL,
                        humantime::format_duration(super::ROLLBACK_LIMIT),
                        humantime::format_duration(super::ROLLBACK_GRACE),
                    ),
                )
                .with_suggestion(
                    "The database did not answer the ROLLBACK: look for an overloaded or unreachable server, or a statement of the check that ignores cancellation.",
                ),
            ),
        }
    }

    /// Run a cancel until `until`, logging (redacted) why it failed or that it was abandoned.
    pub(crate) async fn run_cancel<D: Dialect>(
        cancel: BoxFuture,
        until: Instant,
        redactor: &crate::redact::Redactor,
        pool: &str,
    ) {
        let why = match timeout_at(until, cancel).await {
            Ok(Ok(())) => return,
            Ok(Err(error)) => error,
            Err(_) => "it did not answer in time and was abandoned".to_string(),
        };
        let why = redactor.redact(&why);
        tracing::warn!(
            pool,
            "smoketest could not cancel, on the {} server, a statement that ran past its check's deadline: {why}. The connection was closed instead of returned to the pool; the server stops the statement when it notices.",
            D::LABEL
        );
    }

    fn committed<D: Dialect>(name: &str) -> CheckError {
        CheckError::new(ErrorKind::Committed, D::committed_message(name))
    }

    /// Milliseconds left before `deadline`, at least 1 (0 means "no limit" to databases).
    pub(crate) fn millis_left(deadline: Instant) -> u64 {
        (deadline
            .saturating_duration_since(Instant::now())
            .as_millis() as u64)
            .max(1)
    }

    /// A cancel future that connects with the pool's options and runs `sql`; its error is
    /// the text to log.
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    pub(crate) fn cancel_with<DB: sqlx::Database>(pool: &sqlx::Pool<DB>, sql: String) -> BoxFuture
    where
        for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    {
        use sqlx::{ConnectOptions, Connection};
        let options = pool.connect_options();
        Box::pin(async move {
            let attempt = async {
                let mut conn = options.connect().await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            };
            attempt
                .await
                .map_err(|error| crate::error::error_chain(&error))
        })
    }
}

/// Turn a sqlx error into a failure with the right kind and a suggestion.
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
pub(crate) fn classify(error: &sqlx::Error) -> crate::CheckError {
    use crate::{CheckError, ErrorKind};
    let text = crate::error::error_chain(error);
    match error {
        sqlx::Error::PoolTimedOut => CheckError::new(
            ErrorKind::DbUnavailable,
            format!("no database connection became available in time ({text})"),
        ),
        sqlx::Error::PoolClosed => CheckError::new(
            ErrorKind::DbUnavailable,
            "the database pool was closed (the service is shutting down?)",
        ),
        sqlx::Error::Io(io) => {
            let what = match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "the database refused the connection",
                std::io::ErrorKind::TimedOut => "the database did not answer in time",
                _ => "the connection to the database failed",
            };
            CheckError::new(ErrorKind::DbUnavailable, format!("{what}: {text}"))
        }
        sqlx::Error::Tls(_) => CheckError::new(
            ErrorKind::TlsError,
            format!("TLS with the database failed: {text}"),
        ),
        sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => CheckError::new(
            ErrorKind::DbUnavailable,
            format!("the database connection broke: {text}"),
        ),
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            let message = db.message();
            // Statement timeouts the runner put into the database, and lock waits.
            let deadline = matches!(code, "57014" | "55P03" | "70100")
                || message.contains("max_statement_time")
                || message.contains("maximum statement execution time")
                || message == "interrupted";
            if deadline {
                return CheckError::new(
                    ErrorKind::Timeout,
                    format!("the database stopped the statement at the check's deadline: {text}"),
                )
                .with_suggestion(
                    "A query or a lock wait took longer than the check's timeout: look for long-running transactions holding locks, or a missing index.",
                );
            }
            // SQLITE_CANTOPEN: the file or its directory is missing or not accessible.
            if code == "14" {
                return CheckError::new(
                    ErrorKind::DbUnavailable,
                    format!("SQLite cannot open the database file: {text}"),
                )
                .with_suggestion("Check that the database file's directory exists and that the service may read and write it.");
            }
            // SQLITE_BUSY_SNAPSHOT (WAL) or a plain SQLITE_BUSY returned without waiting: a
            // deferred transaction that had read could not upgrade to a write.
            if code == "517" {
                return CheckError::new(
                    ErrorKind::Error,
                    format!(
                        "SQLite refused to let the check's transaction write after it had read: another connection wrote in between ({text})"
                    ),
                )
                .with_suggestion(
                    "ctx.sqlite() begins DEFERRED so that reading checks never block the application's writers; a check that reads and then writes should use ctx.sqlite_write(), which takes the write lock up front (waiting for it up to the check's deadline).",
                );
            }
            if message.contains("database is locked") {
                return CheckError::new(
                    ErrorKind::Timeout,
                    format!(
                        "SQLite's database was locked by another connection: either it held the write lock until the check's deadline, or the check had read and then tried to write while another transaction held the lock, an upgrade SQLite refuses at once to avoid a deadlock ({text})"
                    ),
                )
                .with_suggestion(
                    "Look for long write transactions in the service. A check that reads and then writes should take the write lock up front with ctx.sqlite_write().",
                );
            }
            server_error(&**db, code, message)
        }
        _ => CheckError::new(ErrorKind::Error, format!("database error: {text}")),
    }
}

#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
/// An error the database server answered with: its own message (never sqlx's `Display`,
/// which appends Postgres's *C source* line, "at line 1392", read by people as theirs),
/// its SQLSTATE (and MySQL error number), Postgres's detail and hint, and advice for the
/// errors smoke checks meet in production — the table in `docs/errors.md`.
fn server_error(
    db: &dyn sqlx::error::DatabaseError,
    code: &str,
    message: &str,
) -> crate::CheckError {
    use crate::{CheckError, ErrorKind};
    #[allow(unused_mut)]
    let mut number: Option<u16> = None;
    #[allow(unused_mut)]
    let mut more = String::new();
    #[cfg(feature = "mysql")]
    if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        number = Some(my.number());
    }
    #[cfg(feature = "postgres")]
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        for (label, value) in [("detail", pg.detail()), ("hint", pg.hint())] {
            if let Some(value) = value {
                more.push_str(&format!("; {label}: {value}"));
            }
        }
    }
    let _ = db;
    let lower = message.to_ascii_lowercase();
    let n = number.unwrap_or(0);
    let (kind, advice): (ErrorKind, Option<&str>) =
        if matches!(code, "42P01" | "42S02" | "42703" | "42S22" | "42883")
            || lower.starts_with("no such table")
            || lower.starts_with("no such column")
        {
            (ErrorKind::Error, Some(MIGRATIONS))
        } else if code == "42501" || matches!(n, 1044 | 1142 | 1143 | 1227) || code == "23" {
            (ErrorKind::Error, Some(PRIVILEGE))
        } else if code == "25006" || matches!(n, 1290 | 1792 | 1836) || matches!(code, "8" | "1032")
        {
            (ErrorKind::Error, Some(READ_ONLY))
        } else if code == "53300" || n == 1040 {
            (ErrorKind::DbUnavailable, Some(TOO_MANY))
        } else if matches!(code, "28P01" | "28000") || n == 1045 {
            (ErrorKind::DbUnavailable, Some(AUTH))
        } else if code == "3D000" || n == 1049 {
            (ErrorKind::DbUnavailable, Some(NO_DATABASE))
        } else if matches!(code, "40001" | "40P01") || matches!(n, 1205 | 1213) {
            (ErrorKind::Error, Some(CONFLICT))
        } else if matches!(code, "57P01" | "57P02" | "57P03" | "08006")
            || matches!(n, 1053 | 2006 | 2013)
        {
            (ErrorKind::DbUnavailable, Some(RESTARTING))
        } else {
            (ErrorKind::Error, None)
        };
    let code = match (code, number) {
        ("", None) => String::new(),
        ("", Some(n)) => format!(" [{n}]"),
        (code, None) => format!(" [{code}]"),
        (code, Some(n)) => format!(" [{code}/{n}]"),
    };
    let error = CheckError::new(kind, format!("database error{code}: {message}{more}"));
    match advice {
        Some(advice) => error.with_suggestion(advice),
        None => error,
    }
}

#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
const MIGRATIONS: &str = "The table or column does not exist here: are the migrations applied to this database, and does the service connect to the database (and schema or search_path) you think? `db::<backend>::migrations_applied(…)` checks the migrations.";
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
const PRIVILEGE: &str = "The database role the check runs as lacks a privilege on this object: grant it what the check needs (the `smoketest::db` docs describe a least-privilege role for smoke checks).";
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
const READ_ONLY: &str = "The database accepts no writes: the pool points at a read replica or hot standby, a failover left the server read-only, or the session is read-only. Point writes at the primary.";
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
const TOO_MANY: &str = "The server's connection limit is reached: lower the pools' sizes across all replicas, or put a pooler (PgBouncer, ProxySQL) in front.";
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
const AUTH: &str = "Authentication failed: check the user and password in the connection URL (a rotated secret?) and that the server lets this user in from this host (pg_hba.conf, the user's host in MySQL).";
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
const NO_DATABASE: &str = "The database named in the connection URL does not exist on this server: check the URL's database name, or create the database.";
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
const CONFLICT: &str = "A concurrent transaction conflicted with the check's (serialization failure, deadlock or lock wait timeout). Usually transient; if it repeats, look for long transactions touching the same rows.";
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
const RESTARTING: &str = "The database server is starting, shutting down or failing over, or it dropped the connection: retry shortly; if it persists, check the server's health and logs.";

#[cfg(all(test, any(feature = "postgres", feature = "mysql", feature = "sqlite")))]
mod tests {
    use crate::{CheckError, ErrorKind};

    fn converted(error: sqlx::Error) -> CheckError {
        // The path a check's `?` takes.
        CheckError::from(error)
    }

    #[test]
    fn an_exhausted_or_closed_pool_is_db_unavailable_with_a_suggestion() {
        for error in [sqlx::Error::PoolTimedOut, sqlx::Error::PoolClosed] {
            let e = converted(error);
            assert_eq!(e.kind(), ErrorKind::DbUnavailable, "{e:?}");
            assert!(e.suggestion().is_some());
        }
    }

    #[test]
    fn a_refused_connection_is_db_unavailable_and_says_so() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = converted(sqlx::Error::Io(io));
        assert_eq!(e.kind(), ErrorKind::DbUnavailable);
        assert!(
            e.message()
                .starts_with("the database refused the connection"),
            "{e:?}"
        );
    }

    #[test]
    fn other_sqlx_errors_stay_errors() {
        let e = converted(sqlx::Error::RowNotFound);
        assert_eq!(e.kind(), ErrorKind::Error);
        assert!(e.message().contains("no rows"), "{e:?}");
    }
}

#[cfg(all(test, feature = "postgres"))]
mod cancel_tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_cancel_is_logged_through_the_services_redactor() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let redactor = crate::redact::Redactor::new().with_value("s3cr3t-literal", None);
        tracing::subscriber::with_default(subscriber, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            runtime.block_on(async {
                let cancel: super::BoxFuture = Box::pin(async {
                    Err("connecting to postgres://smoke:hunter2@db/orders failed: s3cr3t-literal rejected".to_string())
                });
                super::run_cancel::<super::postgres::Pg>(
                    cancel,
                    tokio::time::Instant::now() + std::time::Duration::from_secs(1),
                    &redactor,
                    "default",
                )
                .await;
            });
        });
        let logged = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert!(logged.contains("could not cancel"), "{logged}");
        assert!(!logged.contains("hunter2"), "{logged}");
        assert!(!logged.contains("s3cr3t-literal"), "{logged}");
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod run_tests {
    use std::sync::Arc;
    use std::time::Duration;

    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    use crate::{Outcome, Selection, Smoketest, from_fn};

    /// Against a real SQLite file: when the report of a check cut off inside its transaction
    /// comes back, the transaction has ended (an application writer that will not wait gets
    /// the lock at once) and no task of the run still holds the run's permit.
    #[test]
    fn a_cut_off_check_has_rolled_back_and_let_go_of_the_hold_when_reported() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let path = std::env::temp_dir().join(format!(
            "smoketest-run-{}-{}.db",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        runtime.block_on(async {
            let options = SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await
                .unwrap();
            sqlx::query("CREATE TABLE items (id INTEGER PRIMARY KEY)")
                .execute(&pool)
                .await
                .unwrap();
            let smoke = Smoketest::builder()
                .without_discovery()
                .sqlite(pool.clone())
                .check(
                    from_fn("writes_then_hangs", |ctx| {
                        Box::pin(async move {
                            sqlx::query("INSERT INTO items (id) VALUES (1)")
                                .execute(ctx.sqlite_write().await?)
                                .await?;
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            Ok(Outcome::Pass)
                        })
                    })
                    .timeout(Duration::from_millis(100)),
                )
                .build()
                .unwrap();
            let hold: crate::runner::Hold = Arc::new(());
            let entries = smoke.select(&Selection::all()).unwrap();
            let report = smoke.run_entries(entries, Some(hold.clone())).await;
            assert_eq!(report.checks[0].error.as_ref().unwrap().kind, "timeout");
            assert_eq!(Arc::strong_count(&hold), 1, "a task of the run still runs");

            let mut app = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(
                &options.busy_timeout(Duration::ZERO),
            )
            .await
            .unwrap();
            sqlx::query("INSERT INTO items (id) VALUES (2)")
                .execute(&mut app)
                .await
                .expect("the check's transaction still held the write lock");
            let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM items")
                .fetch_all(&mut app)
                .await
                .unwrap();
            assert_eq!(ids, [2]);
            sqlx::Connection::close(app).await.unwrap();
            pool.close().await;
        });
        let _ = std::fs::remove_file(&path);
    }
}
