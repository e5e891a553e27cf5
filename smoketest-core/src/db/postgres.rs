//! Postgres: per-check transactions with `SET LOCAL statement_timeout` and `lock_timeout`
//! from the check's deadline, and the built-in Postgres checks.
//!
//! Register a pool with [`SmoketestBuilder::postgres`](crate::SmoketestBuilder::postgres)
//! (or `postgres_named` for a second database); in a check, `ctx.postgres().await?` returns
//! a `&mut PgConnection` inside a transaction the runner rolls back. The transaction starts
//! with
//!
//! ```sql
//! BEGIN; SET LOCAL statement_timeout = <ms left>; SET LOCAL lock_timeout = <ms left>;
//! SET LOCAL idle_in_transaction_session_timeout = <ms left + 5000>;
//! SET LOCAL smoketest.transaction = '<key>';
//! SELECT set_config('application_name', 'smoketest <key> ' || <its name>, false)
//! ```
//!
//! so the server itself stops a query or a lock wait at the check's deadline, and kills the
//! session if the service ever stalls with the transaction open. A raw `COMMIT` or
//! `ROLLBACK` in a check is detected (the transaction-local `smoketest.transaction` is gone
//! when the runner comes to roll back) and fails the check with kind `committed`. The
//! `application_name` carrying the same random 64-bit key is how a cancel finds this
//! backend from another connection (`pg_cancel_backend` of its pid in `pg_stat_activity`,
//! where a check's session shows as `smoketest <key> <the pool's name>` while it runs). It is set for the
//! session, so it outlives a `COMMIT` in the check; the runner's `ROLLBACK` restores it, and
//! the commit detection resets it for a check that committed. It holds nothing on the
//! server that could outlive the check (no lock), behind a transaction-pooling proxy too.
//!
//! Around the check's own statements that is two round trips. The first is that string,
//! sent through sqlx's transaction manager (so that sqlx counts the transaction, and a
//! nested `conn.begin()` in the check is a savepoint). The second, for a check that ended
//! in time, is
//!
//! ```sql
//! SELECT coalesce(current_setting('smoketest.transaction', true) = '<key>', false);
//! ROLLBACK; BEGIN
//! ```
//!
//! the commit detection and the `ROLLBACK`, read to the end before the verdict. The empty
//! `BEGIN` stands for the transaction sqlx still counts (it cannot be told that a
//! `ROLLBACK` of ours ended it); sqlx's own `ROLLBACK` of it is queued and travels with the
//! ping sqlx always sends when a connection goes back to the pool, in the same write. The
//! empty transaction takes no snapshot, transaction id or lock. A check cut off at its
//! deadline, one that left its transaction aborted or a savepoint open, takes the long way:
//! the detection, then sqlx's `ROLLBACK`s. The pool's ping on acquire is not paid (the
//! runner takes an idle connection with `try_acquire`).
//!
//! # Example
//!
//! ```no_run
//! use smoketest_core::db::{postgres, sqlx};
//! use smoketest_core::{from_fn, Outcome, Smoketest};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = sqlx::PgPool::connect("postgres://smoke@db/orders").await?;
//! let smoke = Smoketest::builder()
//!     .postgres(pool)
//!     .check(postgres::ping())
//!     .check(postgres::write_probe())
//!     .check(from_fn("orders::insert", |ctx| Box::pin(async move {
//!         sqlx::query("INSERT INTO orders (item) VALUES ('smoke')")
//!             .execute(ctx.postgres().await?)
//!             .await?;
//!         Ok(Outcome::Pass)
//!     })))
//!     .build()?;
//! # let _ = smoke; Ok(()) }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::postgres::PgTransactionManager;
use sqlx::{PgConnection, Postgres};
use sqlx_core::transaction::TransactionManager;
use tokio::time::Instant;

use super::checks::{Backend, DbCheck, Probe};
use super::{BoxFuture, Databases, Dialect, Slot, Transactions, millis_left, rollback_all};
use crate::{Context, Outcome, ensure_eq, fail};

/// The transaction-local setting that marks the runner's transaction: after a `COMMIT` or
/// `ROLLBACK` in the check, the statements run in a transaction that does not have it.
const MARKER: &str = "smoketest.transaction";

/// The Postgres dialect.
pub(crate) struct Pg;

/// What `begin` set up, all on the server within its one round trip: the key that marks
/// the runner's transaction (`smoketest.transaction`) and names the session
/// (`application_name`), so that a cancel finds this backend's pid from another connection
/// (sqlx 0.9 does not expose the pid it got at connect time, and reading it would cost a
/// round trip of its own).
pub(crate) struct PgSession {
    /// The key in 16 lowercase hex digits, written once (`format!` of it cost ~1,000
    /// instructions, and every check used it three times).
    key: [u8; 16],
}

impl PgSession {
    fn new(key: u64) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut digits = [0u8; 16];
        for (i, digit) in digits.iter_mut().enumerate() {
            *digit = HEX[(key >> (60 - 4 * i)) as usize & 0xf];
        }
        PgSession { key: digits }
    }

    fn marker(&self) -> &str {
        std::str::from_utf8(&self.key).expect("hex digits are ASCII")
    }

    /// How the session's `application_name` starts while the check runs (the name it had
    /// follows, cut to Postgres' 63 bytes).
    fn name_prefix(&self) -> String {
        format!("smoketest {}", self.marker())
    }
}

/// A key no other transaction of this or another process uses at the same time: 64 bits
/// from the standard library's per-process random hash keys, over a counter and the clock.
fn unique_key() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    hasher.finish()
}

impl Dialect for Pg {
    type Db = Postgres;
    type Session = PgSession;
    const LABEL: &'static str = "Postgres";
    const METHOD: &'static str = "postgres";

    fn pools(databases: &Databases) -> &[(Arc<str>, sqlx::PgPool)] {
        &databases.postgres
    }

    fn pools_mut(databases: &mut Databases) -> &mut Vec<(Arc<str>, sqlx::PgPool)> {
        &mut databases.postgres
    }

    fn slots(transactions: &mut Transactions) -> &mut Vec<(Arc<str>, Slot<Self>)> {
        &mut transactions.postgres
    }

    async fn begin(
        conn: &mut PgConnection,
        deadline: Instant,
        _lock: super::Lock,
    ) -> Result<PgSession, sqlx::Error> {
        let session = PgSession::new(unique_key());
        let ms = millis_left(deadline);
        // One round trip, through sqlx's transaction manager so that sqlx counts the
        // transaction (a nested `conn.begin()` in the check is then a savepoint, never a
        // `COMMIT` of the runner's transaction); it discards rows, so nothing is read back.
        // `application_name` is set for the session (not LOCAL): it outlives a `COMMIT` in
        // the check, so a statement the check runs after committing can still be cancelled.
        let begin = format!(
            "BEGIN; SET LOCAL statement_timeout = {ms}; SET LOCAL lock_timeout = {ms}; \
             SET LOCAL idle_in_transaction_session_timeout = {}; \
             SET LOCAL {MARKER} = '{}'; \
             SELECT set_config('application_name', \
                 left('smoketest {} ' || current_setting('application_name'), 63), false)",
            ms + 5_000,
            session.marker(),
            session.marker(),
        );
        PgTransactionManager::begin(
            conn,
            Some(sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(begin))),
        )
        .await?;
        Ok(session)
    }

    async fn still_open(conn: &mut PgConnection, session: &PgSession) -> Option<bool> {
        // One round trip: the marker is gone in any transaction but the one the runner
        // began. The RESET matters only after a `COMMIT` in the check (the SET was committed
        // with it); inside the runner's transaction the ROLLBACK undoes the SET anyway, and
        // in an aborted transaction the string stops at the SELECT and the ROLLBACK does.
        let sql = format!(
            "SELECT coalesce(current_setting('{MARKER}', true) = '{}', false); RESET application_name",
            session.marker(),
        );
        // The simple protocol: the text differs for every transaction, and a prepared
        // statement would cost a round trip of its own and a slot in sqlx's statement cache.
        match sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut *conn)
            .await
        {
            Ok(row) => sqlx::Row::try_get::<bool, _>(&row, 0).ok(),
            // "current transaction is aborted": still the runner's transaction.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("25P02") => Some(true),
            Err(_) => None,
        }
    }

    async fn detect_and_roll_back(
        conn: &mut PgConnection,
        session: &PgSession,
    ) -> Option<(Option<bool>, Result<(), sqlx::Error>)> {
        // Only at the runner's own level: a savepoint the check leaked takes the long way.
        if PgTransactionManager::get_transaction_depth(conn) != 1 {
            return None;
        }
        // One round trip: the detection, the ROLLBACK that ends the check's transaction
        // (its writes and locks are gone when the answer is read), and an empty `BEGIN`
        // for the transaction sqlx still counts. sqlx's own ROLLBACK of that one is queued,
        // not awaited: it travels with the ping sqlx sends when the connection goes back to
        // the pool (one write, one answer). An empty transaction takes no snapshot, no
        // transaction id and no lock until a statement runs in it, and none does.
        let sql = format!(
            "SELECT coalesce(current_setting('{MARKER}', true) = '{}', false); ROLLBACK; BEGIN",
            session.marker(),
        );
        // Every answer is read (`fetch_all`), up to the server's ReadyForQuery: the
        // ROLLBACK has run when this returns.
        let open = match sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *conn)
            .await
        {
            Ok(rows) => rows
                .first()
                .and_then(|row| sqlx::Row::try_get::<bool, _>(row, 0).ok()),
            // The string stops at its first error, and every error it can meet comes before
            // its ROLLBACK: the SELECT's own (a transaction the check left aborted), or one
            // left by a statement the check dropped half-way, which surfaces before the
            // string is even sent. The runner's transaction is still there: the two-step
            // path asks again.
            Err(_) => return None,
        };
        if open == Some(false) {
            // The check committed: the session's name was committed with it. End the empty
            // transaction, then restore the name outside any transaction.
            let restored = async {
                rollback_all::<Postgres>(conn).await?;
                sqlx::raw_sql("RESET application_name")
                    .execute(&mut *conn)
                    .await
                    .map(drop)
            };
            return Some((open, restored.await));
        }
        PgTransactionManager::start_rollback(conn);
        Some((open, Ok(())))
    }

    async fn rollback(conn: &mut PgConnection, _session: &PgSession) -> Result<(), sqlx::Error> {
        rollback_all::<Postgres>(conn).await
    }

    fn cancel(pool: &sqlx::PgPool, session: &PgSession) -> Option<BoxFuture> {
        let prefix = session.name_prefix();
        // The backend named after the session's key: this check's connection, until the
        // ROLLBACK or the detection restores its name (the runner keeps the connection open
        // until the cancel ended).
        Some(super::cancel_with(
            pool,
            format!(
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity \
                 WHERE left(application_name, {}) = '{prefix}' AND pid <> pg_backend_pid()",
                prefix.len(),
            ),
        ))
    }

    fn committed_message(pool: &str) -> String {
        format!(
            "the check ended its Postgres transaction on pool `{pool}` itself (a raw COMMIT, ROLLBACK or END): what it wrote may have been committed, and smoketest could not roll it back"
        )
    }
}

/// A check that the Postgres pool gives a connection and answers `SELECT 1`, named
/// `db::postgres::ping`.
pub fn ping() -> DbCheck {
    DbCheck::new(Backend::Postgres, Probe::Ping)
}

/// A check that Postgres accepts writes, needing no application table: it creates a
/// temporary table, inserts a row and reads it back, all rolled back. Fails on a read-only
/// replica or a read-only session. Named `db::postgres::write`. Needs the `TEMPORARY`
/// privilege (granted to everyone by default).
pub fn write_probe() -> DbCheck {
    DbCheck::new(Backend::Postgres, Probe::Write)
}

/// A check that every migration of `migrator` (e.g. `sqlx::migrate!()`) is applied, none is
/// dirty and none was changed after it was applied. Named `db::postgres::migrations`.
#[cfg(feature = "migrate")]
pub fn migrations_applied(migrator: sqlx::migrate::Migrator) -> DbCheck {
    DbCheck::new(Backend::Postgres, Probe::Migrations(Arc::new(migrator)))
}

pub(crate) async fn ping_check(ctx: &mut Context, pool: &str) -> crate::Result {
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(ctx.postgres_named(pool).await?)
        .await?;
    ensure_eq!(one, 1, "SELECT 1");
    Ok(Outcome::Pass)
}

pub(crate) async fn write_check(ctx: &mut Context, pool: &str) -> crate::Result {
    let conn = ctx.postgres_named(pool).await?;
    let (recovery, read_only): (bool, String) =
        sqlx::query_as("SELECT pg_is_in_recovery(), current_setting('transaction_read_only')")
            .fetch_one(&mut *conn)
            .await?;
    if recovery {
        fail!(
            "pool `{pool}` is connected to a read-only replica (pg_is_in_recovery() is true): writes would fail"
        );
    }
    if read_only == "on" {
        fail!(
            "pool `{pool}` opens read-only transactions (default_transaction_read_only = on): writes would fail"
        );
    }
    sqlx::query(
        "CREATE TEMPORARY TABLE smoketest_write_probe (id integer PRIMARY KEY, note text NOT NULL) ON COMMIT DROP",
    )
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_sessions_key_is_written_as_sixteen_hex_digits() {
        for key in [0, 1, 0xabc, u64::MAX, 0x0123_4567_89ab_cdef] {
            let session = super::PgSession::new(key);
            assert_eq!(session.marker(), format!("{key:016x}"));
            assert_eq!(session.name_prefix(), format!("smoketest {key:016x}"));
        }
    }
}
