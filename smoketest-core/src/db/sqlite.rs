//! SQLite: per-check transactions (`BEGIN DEFERRED`) with the busy timeout and a progress
//! handler set from the check's deadline, a commit hook that turns any `COMMIT` into a
//! `ROLLBACK`, and the built-in SQLite checks.
//!
//! Register a pool with [`SmoketestBuilder::sqlite`](crate::SmoketestBuilder::sqlite); in a
//! check, `ctx.sqlite().await?` returns a `&mut SqliteConnection` inside a transaction the
//! runner rolls back.
//!
//! SQLite allows one writer at a time, and the application's writers must not wait for a
//! smoke check that only reads. So the transaction begins `DEFERRED`: a check that only
//! reads (such as [`ping`]) never takes the write lock; a check that writes takes it at its
//! first write and holds it until the rollback, like any writer. While the check waits for
//! the lock, the connection's `busy_timeout` (set to the time left before the deadline, and
//! restored afterwards) lets it wait at most until its deadline.
//!
//! Two things to know when writing a check:
//!
//! - **A check that reads and then writes takes the lock up front** with
//!   [`Context::sqlite_write`] (`BEGIN IMMEDIATE`). A deferred transaction that has read
//!   and then writes must upgrade its read lock; when another transaction holds the write
//!   lock, SQLite refuses at once (`SQLITE_BUSY`, without waiting, since both waiting could
//!   deadlock), and the check fails saying so. A check whose first statement writes, like
//!   [`write_probe`], can use `ctx.sqlite()`: its first write waits for the lock.
//! - **Use WAL** (`journal_mode = WAL`, which most services run SQLite with). In WAL mode,
//!   readers never block writers. In the default rollback-journal mode, a transaction that
//!   has read a table keeps a shared lock until it ends, so the application's `COMMIT`s wait
//!   for a reading check to finish (`SELECT 1`, what [`ping`] runs, reads no table and
//!   takes no lock).
//!
//! While the check runs, a progress handler interrupts any statement still running at the
//! deadline, and a commit hook turns a `COMMIT` into a `ROLLBACK`: on SQLite, a check cannot
//! commit at all (and one that tries fails with kind `committed`).
//!
//! Around the check's own statements the runner sends the connection's worker six
//! commands, four of them SQL: reading `busy_timeout`; setting it and `BEGIN` in one string
//! (sqlx runs a custom begin statement with `sqlite3_exec`); installing the handler and the
//! hook; removing them; `ROLLBACK`; restoring `busy_timeout`. No ping on acquire (the runner
//! takes an idle connection with `try_acquire`).
//!
//! # Example
//!
//! ```no_run
//! use smoketest_core::db::{sqlite, sqlx};
//! use smoketest_core::Smoketest;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = sqlx::SqlitePool::connect("sqlite:orders.db").await?;
//! let smoke = Smoketest::builder()
//!     .sqlite(pool)
//!     .check(sqlite::ping())
//!     .check(sqlite::write_probe())
//!     .build()?;
//! # let _ = smoke; Ok(()) }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::sqlite::SqliteTransactionManager;
use sqlx::{Sqlite, SqliteConnection};
use sqlx_core::transaction::TransactionManager;
use tokio::time::Instant;

use super::checks::{Backend, DbCheck, Probe};
use super::{BoxFuture, Databases, Dialect, Lock, Slot, Transactions, millis_left, rollback_all};
use crate::{Context, Outcome, ensure_eq};

/// The SQLite dialect.
pub(crate) struct Lite;

/// What `begin` set up: the commit hook's flag and the busy timeout to restore.
pub(crate) struct LiteSession {
    committed: Arc<AtomicBool>,
    busy_timeout_ms: i64,
    lock: Lock,
}

impl Dialect for Lite {
    type Db = Sqlite;
    type Session = LiteSession;
    const LABEL: &'static str = "SQLite";
    const METHOD: &'static str = "sqlite";

    fn pools(databases: &Databases) -> &[(Arc<str>, sqlx::SqlitePool)] {
        &databases.sqlite
    }

    fn pools_mut(databases: &mut Databases) -> &mut Vec<(Arc<str>, sqlx::SqlitePool)> {
        &mut databases.sqlite
    }

    fn slots(transactions: &mut Transactions) -> &mut Vec<(Arc<str>, Slot<Self>)> {
        &mut transactions.sqlite
    }

    async fn begin(
        conn: &mut SqliteConnection,
        deadline: Instant,
        lock: Lock,
    ) -> Result<LiteSession, sqlx::Error> {
        let busy_timeout_ms: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&mut *conn)
            .await?;
        // The busy timeout travels with `BEGIN` (sqlx runs a custom begin statement with
        // `sqlite3_exec`, which takes several): one command to the connection's worker.
        // DEFERRED unless asked: a check that only reads must not hold the write lock.
        let begin = format!(
            "PRAGMA busy_timeout = {}; {}",
            millis_left(deadline),
            match lock {
                Lock::AtFirstWrite => "BEGIN DEFERRED",
                Lock::UpFront => "BEGIN IMMEDIATE",
            }
        );
        SqliteTransactionManager::begin(
            conn,
            Some(sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(begin))),
        )
        .await?;

        let committed = Arc::new(AtomicBool::new(false));
        let mut handle = conn.lock_handle().await?;
        let deadline = deadline.into_std();
        handle.set_progress_handler(1_000, move || std::time::Instant::now() < deadline);
        let flag = committed.clone();
        handle.set_commit_hook(move || {
            flag.store(true, Ordering::SeqCst);
            false // turn the COMMIT into a ROLLBACK
        });
        Ok(LiteSession {
            committed,
            busy_timeout_ms,
            lock,
        })
    }

    fn locked_up_front(session: &LiteSession) -> bool {
        session.lock == Lock::UpFront
    }

    async fn still_open(_conn: &mut SqliteConnection, session: &LiteSession) -> Option<bool> {
        Some(!session.committed.load(Ordering::SeqCst))
    }

    async fn rollback(
        conn: &mut SqliteConnection,
        session: &LiteSession,
    ) -> Result<(), sqlx::Error> {
        {
            // Waits until the worker is idle: an interrupted statement has ended.
            let mut handle = conn.lock_handle().await?;
            handle.remove_progress_handler();
            handle.remove_commit_hook();
        }
        rollback_all::<Sqlite>(conn).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "PRAGMA busy_timeout = {}",
            session.busy_timeout_ms
        )))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    fn cancel(_pool: &sqlx::SqlitePool, _session: &LiteSession) -> Option<BoxFuture> {
        // The progress handler already interrupts a statement at the deadline.
        None
    }

    fn committed_message(pool: &str) -> String {
        format!(
            "the check tried to COMMIT its SQLite transaction on pool `{pool}`: smoketest turned the COMMIT into a ROLLBACK, so nothing was written, but a smoke check must never commit"
        )
    }
}

/// A check that the SQLite pool gives a connection and answers `SELECT 1`, named
/// `db::sqlite::ping`.
pub fn ping() -> DbCheck {
    DbCheck::new(Backend::Sqlite, Probe::Ping)
}

/// A check that the SQLite database file accepts writes, needing no application table: it
/// creates a table in the main database, inserts a row and reads it back, all rolled back
/// (SQLite's DDL is transactional). Named `db::sqlite::write`.
pub fn write_probe() -> DbCheck {
    DbCheck::new(Backend::Sqlite, Probe::Write)
}

/// A check that every migration of `migrator` (e.g. `sqlx::migrate!()`) is applied, none is
/// dirty and none was changed after it was applied. Named `db::sqlite::migrations`.
#[cfg(feature = "migrate")]
pub fn migrations_applied(migrator: sqlx::migrate::Migrator) -> DbCheck {
    DbCheck::new(Backend::Sqlite, Probe::Migrations(Arc::new(migrator)))
}

pub(crate) async fn ping_check(ctx: &mut Context, pool: &str) -> crate::Result {
    let one: i64 = sqlx::query_scalar("SELECT 1")
        .fetch_one(ctx.sqlite_named(pool).await?)
        .await?;
    ensure_eq!(one, 1, "SELECT 1");
    Ok(Outcome::Pass)
}

pub(crate) async fn write_check(ctx: &mut Context, pool: &str) -> crate::Result {
    let conn = ctx.sqlite_named(pool).await?;
    sqlx::query("CREATE TABLE smoketest_write_probe (id INTEGER PRIMARY KEY, note TEXT NOT NULL)")
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO smoketest_write_probe (id, note) VALUES (1, 'smoketest')")
        .execute(&mut *conn)
        .await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM smoketest_write_probe")
        .fetch_one(&mut *conn)
        .await?;
    ensure_eq!(rows, 1, "rows read back from the probe table");
    Ok(Outcome::Pass)
}
