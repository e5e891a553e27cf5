//! MariaDB and MySQL: per-check transactions with the session's statement time limit set
//! from the check's deadline (and restored afterwards), and the built-in MySQL checks.
//!
//! Register a pool with [`SmoketestBuilder::mysql`](crate::SmoketestBuilder::mysql); in a
//! check, `ctx.mysql().await?` returns a `&mut MySqlConnection` inside a transaction the
//! runner rolls back. Before `BEGIN`, the runner saves the session's limit and sets
//! `max_statement_time` (MariaDB, seconds, every statement) or `max_execution_time` (MySQL,
//! milliseconds, `SELECT` only) to the time left; before the `ROLLBACK` it restores the
//! saved value, so the pool's connection goes back as it came.
//!
//! Around the check's own statements that is four round trips: the connection id and
//! version; the limit and `BEGIN` in one multi-statement query; the commit detection
//! (`@@in_transaction`, MariaDB) and the limit's restoring in one; `ROLLBACK`. That is as few
//! as sqlx 0.9 allows without giving up its count of the transaction: `BEGIN` and `ROLLBACK`
//! go through its transaction manager, which runs them as statements of their own and
//! discards result rows, and the connection id (for `KILL QUERY`) is not exposed, so it is
//! read in a query of its own. A `BEGIN` sqlx did not count would make a nested
//! `conn.begin()` in the check send `BEGIN`, which on MySQL commits the runner's transaction.
//! The pool's ping on acquire is not paid (the runner takes an idle connection with
//! `try_acquire`); its ping on release is, after the verdict.
//!
//! MySQL and MariaDB commit implicitly before and after DDL (`CREATE TABLE`, `ALTER`,
//! `DROP`, `TRUNCATE`, …): a check must not run DDL. On MariaDB the runner notices
//! (`@@in_transaction` is 0 when it comes to roll back) and fails the check with kind
//! `committed`; MySQL gives no such signal without the `PROCESS` privilege. Temporary tables
//! (`CREATE TEMPORARY TABLE`) do not commit, but they outlive the rollback: drop them.
//!
//! # Example
//!
//! ```no_run
//! use smoketest_core::db::{mysql, sqlx};
//! use smoketest_core::Smoketest;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = sqlx::MySqlPool::connect("mysql://smoke@db/orders").await?;
//! let smoke = Smoketest::builder()
//!     .mysql(pool)
//!     .check(mysql::ping())
//!     .check(mysql::write_probe())
//!     .build()?;
//! # let _ = smoke; Ok(()) }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::TryStreamExt;
use sqlx::mysql::MySqlTransactionManager;
use sqlx::{MySql, MySqlConnection};
use sqlx_core::transaction::TransactionManager;
use tokio::time::Instant;

use super::checks::{Backend, DbCheck, Probe};
use super::{BoxFuture, Databases, Dialect, Slot, Transactions, millis_left, rollback_all};
use crate::{Context, Outcome, ensure_eq, fail};

/// The MariaDB / MySQL dialect.
pub(crate) struct My;

/// What `begin` learned: the connection id (for `KILL QUERY`) and the server flavour.
pub(crate) struct MySession {
    id: u64,
    mariadb: bool,
    /// The session's limit was restored already, together with the commit detection.
    restored: AtomicBool,
}

impl MySession {
    fn limit_variable(&self) -> &'static str {
        if self.mariadb {
            "max_statement_time"
        } else {
            "max_execution_time"
        }
    }
}

impl Dialect for My {
    type Db = MySql;
    type Session = MySession;
    const LABEL: &'static str = "MySQL";
    const METHOD: &'static str = "mysql";

    fn pools(databases: &Databases) -> &[(Arc<str>, sqlx::MySqlPool)] {
        &databases.mysql
    }

    fn pools_mut(databases: &mut Databases) -> &mut Vec<(Arc<str>, sqlx::MySqlPool)> {
        &mut databases.mysql
    }

    fn slots(transactions: &mut Transactions) -> &mut Vec<(Arc<str>, Slot<Self>)> {
        &mut transactions.mysql
    }

    async fn begin(
        conn: &mut MySqlConnection,
        deadline: Instant,
        _lock: super::Lock,
    ) -> Result<MySession, sqlx::Error> {
        let (id, version): (u64, String) = sqlx::query_as("SELECT CONNECTION_ID(), VERSION()")
            .fetch_one(&mut *conn)
            .await?;
        let session = MySession {
            id,
            mariadb: version.contains("MariaDB"),
            restored: AtomicBool::new(false),
        };
        let ms = millis_left(deadline);
        let limit = if session.mariadb {
            format!("{}.{:03}", ms / 1000, ms % 1000)
        } else {
            ms.to_string()
        };
        let variable = session.limit_variable();
        // The saved value stays on the server, exact, until the rollback restores it. One
        // round trip: sqlx sends a custom begin statement as a text query, which may hold
        // several statements, and counts the transaction only if the server then says one
        // is open (so a nested `conn.begin()` in the check is still a savepoint).
        let begin = format!(
            "SET @smoketest_saved_limit = @@session.{variable}, SESSION {variable} = {limit}; BEGIN"
        );
        MySqlTransactionManager::begin(
            conn,
            Some(sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(begin))),
        )
        .await?;
        Ok(session)
    }

    async fn still_open(conn: &mut MySqlConnection, session: &MySession) -> Option<bool> {
        if !session.mariadb {
            return None;
        }
        // The detection and the limit's restoring in one round trip. The detection's row is
        // read before the rest of the answer, so an error restoring (or the statement stopped
        // by a cancel surfacing here) cannot lose a `committed`; `rollback` then restores.
        let variable = session.limit_variable();
        let sql = format!(
            "SELECT CAST(@@in_transaction AS SIGNED); SET SESSION {variable} = @smoketest_saved_limit"
        );
        let mut rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).fetch(&mut *conn);
        let open = match rows.try_next().await {
            Ok(Some(row)) => sqlx::Row::try_get::<i64, _>(&row, 0).ok().map(|n| n == 1),
            Ok(None) | Err(_) => None,
        };
        if open.is_some() && matches!(rows.try_next().await, Ok(None)) {
            session.restored.store(true, Ordering::SeqCst);
        }
        open
    }

    async fn rollback(conn: &mut MySqlConnection, session: &MySession) -> Result<(), sqlx::Error> {
        // Restore first (unless `still_open` did): the deadline's limit could otherwise stop
        // the ROLLBACK itself.
        if !session.restored.load(Ordering::SeqCst) {
            let variable = session.limit_variable();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "SET SESSION {variable} = @smoketest_saved_limit"
            )))
            .execute(&mut *conn)
            .await?;
        }
        rollback_all::<MySql>(conn).await
    }

    fn cancel(pool: &sqlx::MySqlPool, session: &MySession) -> Option<BoxFuture> {
        Some(super::cancel_with(
            pool,
            format!("KILL QUERY {}", session.id),
        ))
    }

    fn committed_message(pool: &str) -> String {
        format!(
            "the check's MySQL transaction on pool `{pool}` was committed behind the runner's back: DDL (CREATE, ALTER, DROP, TRUNCATE, RENAME) commits implicitly on MySQL and MariaDB, as does a raw COMMIT; what the check wrote up to that statement stays in the database"
        )
    }
}

/// A check that the MySQL pool gives a connection and answers `SELECT 1`, named
/// `db::mysql::ping`.
pub fn ping() -> DbCheck {
    DbCheck::new(Backend::MySql, Probe::Ping)
}

/// A check that MariaDB / MySQL accepts writes, needing no application table: it fails on a
/// server in `read_only` mode, then creates a temporary InnoDB table, inserts a row, reads it
/// back and drops the table (temporary tables outlive a rollback). Named `db::mysql::write`.
/// Needs the `CREATE TEMPORARY TABLES` privilege.
pub fn write_probe() -> DbCheck {
    DbCheck::new(Backend::MySql, Probe::Write)
}

/// A check that every migration of `migrator` (e.g. `sqlx::migrate!()`) is applied, none is
/// dirty and none was changed after it was applied. Named `db::mysql::migrations`.
#[cfg(feature = "migrate")]
pub fn migrations_applied(migrator: sqlx::migrate::Migrator) -> DbCheck {
    DbCheck::new(Backend::MySql, Probe::Migrations(Arc::new(migrator)))
}

pub(crate) async fn ping_check(ctx: &mut Context, pool: &str) -> crate::Result {
    let one: i64 = sqlx::query_scalar("SELECT 1")
        .fetch_one(ctx.mysql_named(pool).await?)
        .await?;
    ensure_eq!(one, 1, "SELECT 1");
    Ok(Outcome::Pass)
}

pub(crate) async fn write_check(ctx: &mut Context, pool: &str) -> crate::Result {
    let conn = ctx.mysql_named(pool).await?;
    let read_only: i64 = sqlx::query_scalar("SELECT CAST(@@read_only AS SIGNED)")
        .fetch_one(&mut *conn)
        .await?;
    if read_only != 0 {
        fail!(
            "pool `{pool}` is connected to a server in read_only mode (a replica?): writes would fail"
        );
    }
    sqlx::query("DROP TEMPORARY TABLE IF EXISTS smoketest_write_probe")
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "CREATE TEMPORARY TABLE smoketest_write_probe (id INT PRIMARY KEY, note VARCHAR(32) NOT NULL) ENGINE=InnoDB",
    )
    .execute(&mut *conn)
    .await?;
    let written = async {
        sqlx::query("INSERT INTO smoketest_write_probe (id, note) VALUES (1, 'smoketest')")
            .execute(&mut *conn)
            .await?;
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM smoketest_write_probe")
            .fetch_one(&mut *conn)
            .await
    }
    .await;
    // A temporary table survives the rollback: drop it whatever happened.
    sqlx::query("DROP TEMPORARY TABLE IF EXISTS smoketest_write_probe")
        .execute(&mut *conn)
        .await?;
    ensure_eq!(written?, 1, "rows read back from the probe table");
    Ok(Outcome::Pass)
}
