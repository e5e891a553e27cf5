//! Rolled-back transactions on a real SQLite database file: nothing a check writes survives
//! passing, failing, panicking, timing-out or cancelled runs, a check cannot commit, and the
//! built-in checks work.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use smoketest::db::sqlx::migrate::{Migration, MigrationType, Migrator};
use smoketest::db::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use smoketest::db::sqlx::{self, AssertSqlSafe, SqlSafeStr, SqlitePool};
use smoketest::db::{self as db};
use smoketest::{CheckError, Context, Outcome, Selection, Smoketest, Status, ensure_eq, from_fn};

struct Db {
    dir: std::path::PathBuf,
    pool: SqlitePool,
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn database(max_connections: u32) -> Db {
    let dir = std::env::temp_dir().join(unique("smoketest_sqlite"));
    std::fs::create_dir_all(&dir).unwrap();
    let options = SqliteConnectOptions::new()
        .filename(dir.join("test.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    let pool = SqlitePoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE items (id INTEGER PRIMARY KEY, note TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    for id in 1..=3 {
        sqlx::query("INSERT INTO items (id, note) VALUES (?, 'before')")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    }
    Db { dir, pool }
}

async fn count(pool: &SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn insert(ctx: &mut Context, ids: &AtomicI64) -> Result<(), CheckError> {
    // Reads, then writes: takes the write lock up front.
    let conn = ctx.sqlite_write().await?;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&mut *conn)
        .await?;
    for _ in 0..2 {
        sqlx::query("INSERT INTO items (id, note) VALUES (?, 'smoke')")
            .bind(ids.fetch_add(1, Ordering::Relaxed))
            .execute(&mut *conn)
            .await?;
    }
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&mut *conn)
        .await?;
    if after != before + 2 {
        return Err(CheckError::assertion(format!(
            "own writes invisible: {before} then {after}"
        )));
    }
    Ok(())
}

/// The hammer's checks on SQLite. SQLite has one writer at a time, so the time-outs are
/// short: each one holds the write lock until its deadline.
fn hammer_smoke(pool: &SqlitePool) -> Smoketest {
    let ids = Arc::new(AtomicI64::new(1_000));
    let with = |name: &'static str, timeout: Duration| {
        let ids = ids.clone();
        from_fn(name, move |ctx| {
            let ids = ids.clone();
            Box::pin(async move {
                insert(ctx, &ids).await?;
                match name {
                    FAIL => smoketest::fail!("failing on purpose"),
                    PANIC => panic!("panicking on purpose"),
                    TIMEOUT_IN_QUERY => {
                        // Never ends by itself: only the progress handler stops it.
                        sqlx::query_scalar::<_, i64>(
                            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
                        )
                        .fetch_one(ctx.sqlite().await?)
                        .await?;
                    }
                    TIMEOUT_IDLE => tokio::time::sleep(Duration::from_secs(60)).await,
                    SLOW_PASS => tokio::time::sleep(Duration::from_millis(30)).await,
                    _ => {}
                }
                Ok(Outcome::Pass)
            })
        })
        .timeout(timeout)
    };
    Smoketest::builder()
        .without_discovery()
        .sqlite(pool.clone())
        .check(with(PASS, Duration::from_secs(10)))
        .check(with(FAIL, Duration::from_secs(10)))
        .check(with(PANIC, Duration::from_secs(10)))
        .check(with(TIMEOUT_IN_QUERY, Duration::from_millis(25)))
        .check(with(TIMEOUT_IDLE, Duration::from_millis(25)))
        .check(with(SLOW_PASS, Duration::from_secs(10)))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_mixed_runs_leave_the_table_as_it_was_and_the_pool_healthy() {
    let _serial = serial().await;
    let db = database(8).await;
    let smoke = hammer_smoke(&db.pool);
    let before = count(&db.pool).await;

    let started = Instant::now();
    let tally = hammer(&smoke, 1_000, 32).await;
    eprintln!("sqlite: 1000 runs in {:?}: {tally:?}", started.elapsed());
    assert_eq!(
        tally.passed + tally.failed + tally.panicked + tally.timed_out + tally.cancelled,
        1_000
    );

    // Cancelled runs go on in the background: wait until the table is quiet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&db.pool).await, before, "rows survived the rollbacks");

    // A normal run still passes, in normal time.
    let started = Instant::now();
    let report = smoke.run(&Selection::one(PASS)).await.unwrap();
    assert_eq!(report.status, Status::Pass, "{report:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );

    // No pooled connection is left inside a transaction: BEGIN would fail on such a one.
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut conn = db.pool.acquire().await.unwrap();
        sqlx::raw_sql("BEGIN; ROLLBACK")
            .execute(&mut *conn)
            .await
            .unwrap();
        held.push(conn);
    }
    drop(held);
    assert_eq!(count(&db.pool).await, before);
}

#[tokio::test]
async fn two_checks_writing_the_same_row_do_not_see_each_other() {
    let db = database(4).await;
    let first_wrote = Arc::new(tokio::sync::Notify::new());
    let signal = first_wrote.clone();
    let wait = first_wrote.clone();
    let smoke = Smoketest::builder()
        .without_discovery()
        .sqlite(db.pool.clone())
        .check(from_fn("first", move |ctx| {
            let signal = signal.clone();
            Box::pin(async move {
                let conn = ctx.sqlite().await?;
                sqlx::query("UPDATE items SET note = 'first' WHERE id = 1")
                    .execute(&mut *conn)
                    .await?;
                let note: String = sqlx::query_scalar("SELECT note FROM items WHERE id = 1")
                    .fetch_one(&mut *conn)
                    .await?;
                ensure_eq!(note, "first");
                signal.notify_one();
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(Outcome::Pass)
            })
        }))
        .check(from_fn("second", move |ctx| {
            let wait = wait.clone();
            Box::pin(async move {
                wait.notified().await;
                // SQLite's single writer: this waits for the first check's rollback.
                let conn = ctx.sqlite_write().await?;
                let note: String = sqlx::query_scalar("SELECT note FROM items WHERE id = 1")
                    .fetch_one(&mut *conn)
                    .await?;
                ensure_eq!(note, "before", "the second check saw the first one's write");
                sqlx::query("UPDATE items SET note = 'second' WHERE id = 1")
                    .execute(&mut *conn)
                    .await?;
                Ok(Outcome::Pass)
            })
        }))
        .build()
        .unwrap();
    let report = smoke.run(&Selection::all()).await.unwrap();
    assert_eq!(report.status, Status::Pass, "{report:?}");
    let note: String = sqlx::query_scalar("SELECT note FROM items WHERE id = 1")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(note, "before");
}

#[tokio::test]
async fn a_check_that_commits_fails_as_committed_and_writes_nothing() {
    let db = database(2).await;
    let before = count(&db.pool).await;
    let smoke = Smoketest::builder()
        .without_discovery()
        .sqlite(db.pool.clone())
        .check(from_fn("commits", |ctx| {
            Box::pin(async move {
                let conn = ctx.sqlite().await?;
                sqlx::query("INSERT INTO items (id, note) VALUES (99, 'committed?')")
                    .execute(&mut *conn)
                    .await?;
                sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
                Ok(Outcome::Pass)
            })
        }))
        .build()
        .unwrap();
    let report = smoke.run(&Selection::all()).await.unwrap();
    let error = report.checks[0]
        .error
        .as_ref()
        .expect("the check must fail");
    assert_eq!(error.kind, "committed", "{error:?}");
    assert!(error.message.as_deref().unwrap().contains("COMMIT"));
    assert_eq!(count(&db.pool).await, before, "the COMMIT went through");
    // The pool is usable afterwards.
    let report = Smoketest::builder()
        .without_discovery()
        .sqlite(db.pool.clone())
        .check(db::sqlite::write_probe())
        .build()
        .unwrap()
        .run(&Selection::all())
        .await
        .unwrap();
    assert_eq!(report.status, Status::Pass, "{report:?}");
}

#[tokio::test]
async fn a_query_past_the_deadline_is_interrupted_in_the_database() {
    let _serial = serial().await;
    let db = database(2).await;
    let smoke = Smoketest::builder()
        .without_discovery()
        .sqlite(db.pool.clone())
        .check(
            from_fn("endless", |ctx| {
                Box::pin(async move {
                    sqlx::query_scalar::<_, i64>(
                        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
                    )
                    .fetch_one(ctx.sqlite().await?)
                    .await?;
                    Ok(Outcome::Pass)
                })
            })
            .timeout(Duration::from_millis(200)),
        )
        .build()
        .unwrap();
    let started = Instant::now();
    let report = smoke.run(&Selection::all()).await.unwrap();
    let answered = started.elapsed();
    eprintln!("sqlite: a 200 ms check with an endless query answered in {answered:?}");
    assert_eq!(report.checks[0].error.as_ref().unwrap().kind, "timeout");
    assert!(
        answered < Duration::from_millis(300),
        "answered in {answered:?}"
    );
    // The connection is free again: the endless query no longer runs.
    let mut conns = Vec::new();
    for _ in 0..2 {
        let mut conn = tokio::time::timeout(Duration::from_secs(1), db.pool.acquire())
            .await
            .expect("a connection is still busy with the endless query")
            .unwrap();
        sqlx::query("SELECT 1").execute(&mut *conn).await.unwrap();
        conns.push(conn);
    }
}

#[tokio::test]
async fn built_in_checks_pass_and_leave_no_table() {
    let db = database(2).await;
    let smoke = Smoketest::builder()
        .without_discovery()
        .sqlite(db.pool.clone())
        .check(db::sqlite::ping())
        .check(db::sqlite::write_probe())
        .build()
        .unwrap();
    let report = smoke.run(&Selection::all()).await.unwrap();
    assert_eq!(report.status, Status::Pass, "{report:?}");
    assert_eq!(
        report
            .checks
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["db::sqlite::ping", "db::sqlite::write"]
    );
    let probe_tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_schema WHERE name LIKE 'smoketest%'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(probe_tables, 0);
}

fn migration(version: i64, description: &'static str, sql: &'static str) -> Migration {
    Migration::new(
        version,
        description.into(),
        MigrationType::Simple,
        AssertSqlSafe(sql).into_sql_str(),
        false,
    )
}

#[tokio::test]
async fn migrations_check_names_what_is_pending_and_passes_once_applied() {
    let db = database(2).await;
    let all = || {
        vec![
            migration(
                1,
                "create notes",
                "CREATE TABLE notes (id INTEGER PRIMARY KEY)",
            ),
            migration(2, "add body", "ALTER TABLE notes ADD COLUMN body TEXT"),
        ]
    };
    let check = |pool: &SqlitePool| {
        Smoketest::builder()
            .without_discovery()
            .sqlite(pool.clone())
            .check(db::sqlite::migrations_applied(Migrator::with_migrations(
                all(),
            )))
            .build()
            .unwrap()
    };

    let report = check(&db.pool).run(&Selection::all()).await.unwrap();
    let error = report.checks[0].error.as_ref().unwrap();
    assert!(
        error
            .message
            .as_deref()
            .unwrap()
            .contains("_sqlx_migrations"),
        "{error:?}"
    );

    Migrator::with_migrations(all()[..1].to_vec())
        .run(&db.pool)
        .await
        .unwrap();
    let report = check(&db.pool).run(&Selection::all()).await.unwrap();
    let error = report.checks[0].error.as_ref().unwrap();
    assert_eq!(error.kind, "assertion");
    assert!(
        error.message.as_deref().unwrap().contains("2 (add body)"),
        "{error:?}"
    );

    Migrator::with_migrations(all())
        .run(&db.pool)
        .await
        .unwrap();
    let report = check(&db.pool).run(&Selection::all()).await.unwrap();
    assert_eq!(report.status, Status::Pass, "{report:?}");
    // A migrator recording in a table of its own.
    let other = database(2).await;
    let mut custom = Migrator::with_migrations(all());
    custom.dangerous_set_table_name("app_migrations");
    custom.run(&other.pool).await.unwrap();
    let report = Smoketest::builder()
        .without_discovery()
        .sqlite(other.pool.clone())
        .check(
            db::sqlite::migrations_applied(Migrator::with_migrations(all()))
                .migrations_table("app_migrations"),
        )
        .build()
        .unwrap()
        .run(&Selection::all())
        .await
        .unwrap();
    assert_eq!(report.status, Status::Pass, "{report:?}");
}

#[tokio::test]
async fn a_detached_context_with_the_pools_of_a_smoketest_rolls_back_on_finish() {
    let db = database(2).await;
    let smoke = Smoketest::builder()
        .without_discovery()
        .sqlite(db.pool.clone())
        .build()
        .unwrap();
    let mut ctx = Context::detached("unit", Duration::from_secs(5)).with_pools_of(&smoke);
    sqlx::query("INSERT INTO items (id, note) VALUES (50, 'unit test')")
        .execute(ctx.sqlite().await.unwrap())
        .await
        .unwrap();
    assert!(ctx.finish().await.is_empty());
    assert_eq!(count(&db.pool).await, 3);

    // Finished well after its deadline (no run waits for it): still a rollback, not a
    // closed connection.
    let mut ctx = Context::detached("late", Duration::from_millis(50)).with_pools_of(&smoke);
    sqlx::query("INSERT INTO items (id, note) VALUES (51, 'unit test')")
        .execute(ctx.sqlite().await.unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let failures = ctx.finish().await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(count(&db.pool).await, 3);
}

#[tokio::test]
async fn a_missing_database_fails_as_unavailable_and_recovers() {
    let dir = std::env::temp_dir().join(unique("smoketest_sqlite_missing"));
    let options = SqliteConnectOptions::new()
        .filename(dir.join("app.db"))
        .create_if_missing(true);
    let pool = SqlitePoolOptions::new().connect_lazy_with(options);
    let smoke = Smoketest::builder()
        .without_discovery()
        .sqlite(pool.clone())
        .database_acquire_timeout(Duration::from_millis(500))
        .check(db::sqlite::ping())
        .build()
        .unwrap();

    let started = Instant::now();
    let report = smoke.run(&Selection::all()).await.unwrap();
    let error = report.checks[0].error.as_ref().unwrap();
    assert_eq!(error.kind, "db_unavailable", "{error:?}");
    assert!(error.suggestion.is_some());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );

    std::fs::create_dir_all(&dir).unwrap();
    let report = smoke.run(&Selection::all()).await.unwrap();
    assert_eq!(report.status, Status::Pass, "{report:?}");
    pool.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_check_asking_for_an_unregistered_pool_fails_as_config() {
    let db = database(1).await;
    let smoke = Smoketest::builder()
        .without_discovery()
        .sqlite(db.pool.clone())
        .check(db::sqlite::ping().pool("reporting"))
        .build()
        .unwrap();
    let report = smoke.run(&Selection::all()).await.unwrap();
    assert_eq!(report.checks[0].name, "db::sqlite::reporting::ping");
    let error = report.checks[0].error.as_ref().unwrap();
    assert_eq!(error.kind, "config");
    assert!(
        error
            .suggestion
            .as_deref()
            .unwrap()
            .contains("sqlite_named")
    );

    let duplicate = Smoketest::builder()
        .without_discovery()
        .sqlite(db.pool.clone())
        .sqlite(db.pool.clone())
        .build()
        .unwrap_err();
    assert!(
        duplicate
            .to_string()
            .contains("two SQLite pools are named `default`")
    );
}

/// A database in `journal` mode with an `items` table, and a separate application pool.
async fn database_in(journal: SqliteJournalMode) -> Db {
    let dir = std::env::temp_dir().join(unique("smoketest_sqlite"));
    std::fs::create_dir_all(&dir).unwrap();
    let options = SqliteConnectOptions::new()
        .filename(dir.join("test.db"))
        .create_if_missing(true)
        .journal_mode(journal);
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE items (id INTEGER PRIMARY KEY, note TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    Db { dir, pool }
}

/// Runs `runs` smoke runs back to back; in each, a check reads with `statement` inside its
/// transaction and then waits, transaction open, until the application's writer has
/// committed a row. With the write lock taken at `BEGIN` (as before), the writer would wait
/// for the check and the check for the writer, until the check's timeout.
async fn application_writer_commits_while_checks_read(
    journal: SqliteJournalMode,
    statement: &'static str,
) {
    let db = database_in(journal).await;
    let (ask, mut asked) = tokio::sync::mpsc::channel::<tokio::sync::oneshot::Sender<()>>(1);
    let writer_pool = db.pool.clone();
    let writer = tokio::spawn(async move {
        let mut id = 0;
        while let Some(done) = asked.recv().await {
            id += 1;
            sqlx::query("INSERT INTO items (id, note) VALUES (?, 'app')")
                .bind(id)
                .execute(&writer_pool)
                .await
                .unwrap();
            let _ = done.send(());
        }
        id
    });
    let smoke = Smoketest::builder()
        .without_discovery()
        .sqlite(db.pool.clone())
        .check(db::sqlite::ping())
        .check(
            from_fn("reads_while_the_app_writes", move |ctx| {
                let ask = ask.clone();
                Box::pin(async move {
                    let conn = ctx.sqlite().await?;
                    sqlx::query(statement).fetch_all(&mut *conn).await?;
                    let (done, committed) = tokio::sync::oneshot::channel();
                    ask.send(done)
                        .await
                        .map_err(|_| CheckError::error("writer gone"))?;
                    // Our transaction is still open: the writer must not need us to end.
                    committed
                        .await
                        .map_err(|_| CheckError::error("the writer never committed"))?;
                    Ok(Outcome::Pass)
                })
            })
            .timeout(Duration::from_secs(4)),
        )
        .build()
        .unwrap();
    for run in 0..20 {
        let report = smoke.run(&Selection::all()).await.unwrap();
        assert_eq!(report.status, Status::Pass, "run {run}: {report:?}");
    }
    drop(smoke);
    assert_eq!(writer.await.unwrap(), 20);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 20, "the application's rows are all there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_writes_while_a_check_reads_a_table_in_wal_mode() {
    application_writer_commits_while_checks_read(
        SqliteJournalMode::Wal,
        "SELECT count(*) FROM items",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_writes_while_the_ping_statement_runs_in_rollback_journal_mode() {
    application_writer_commits_while_checks_read(SqliteJournalMode::Delete, "SELECT 1").await;
}

/// A check that reads and then writes, beside the application's writer: with
/// `ctx.sqlite_write()` it takes the lock up front and passes; with `ctx.sqlite()` the upgrade
/// is refused while the writer holds the lock, and the error says what to do.
#[tokio::test]
async fn a_check_that_reads_then_writes_takes_the_lock_up_front_or_is_told_to() {
    let db = database(4).await;
    // The application holds the write lock for a moment.
    let mut app = db.pool.acquire().await.unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE; INSERT INTO items (id, note) VALUES (50, 'app')")
        .execute(&mut *app)
        .await
        .unwrap();
    let read_then_write = |name: &'static str, up_front: bool| {
        from_fn(name, move |ctx| {
            Box::pin(async move {
                let conn = if up_front {
                    ctx.sqlite_write().await?
                } else {
                    ctx.sqlite().await?
                };
                let n: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
                    .fetch_one(&mut *conn)
                    .await?;
                sqlx::query("INSERT INTO items (id, note) VALUES (?, 'smoke')")
                    .bind(100 + n)
                    .execute(&mut *conn)
                    .await?;
                Ok(Outcome::Pass)
            })
        })
        .timeout(Duration::from_secs(5))
    };
    let smoke = Smoketest::builder()
        .without_discovery()
        .sqlite(db.pool.clone())
        .check(read_then_write("deferred", false))
        .check(read_then_write("up_front", true))
        .build()
        .unwrap();
    let run = tokio::spawn({
        let smoke = smoke.clone();
        async move { smoke.run(&Selection::one("deferred")).await.unwrap() }
    });
    let refused = run.await.unwrap();
    let error = refused.checks[0]
        .error
        .as_ref()
        .expect("the upgrade must be refused");
    assert!(
        error
            .suggestion
            .as_deref()
            .unwrap()
            .contains("ctx.sqlite_write()"),
        "{error:?}"
    );

    let run = tokio::spawn(async move { smoke.run(&Selection::one("up_front")).await.unwrap() });
    // Let the check wait for the lock, then release it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    sqlx::raw_sql("ROLLBACK").execute(&mut *app).await.unwrap();
    drop(app);
    let report = run.await.unwrap();
    assert_eq!(report.status, Status::Pass, "{report:?}");
    assert_eq!(count(&db.pool).await, 3);
}

/// At the run's deadline a check that tried to commit and then hung in a statement is still
/// reported `committed`.
#[tokio::test]
async fn a_check_that_commits_and_is_cut_off_by_the_run_deadline_is_reported_committed() {
    let db = database(2).await;
    let before = count(&db.pool).await;
    let smoke = Smoketest::builder()
        .without_discovery()
        .deadline(Duration::from_millis(300))
        .sqlite(db.pool.clone())
        .check(from_fn("commits_then_hangs", |ctx| {
            Box::pin(async move {
                let conn = ctx.sqlite().await?;
                sqlx::query("INSERT INTO items (id, note) VALUES (97, 'committed?')")
                    .execute(&mut *conn)
                    .await?;
                let _ = sqlx::raw_sql("COMMIT").execute(&mut *conn).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(Outcome::Pass)
            })
        }))
        .build()
        .unwrap();
    let report = smoke.run(&Selection::all()).await.unwrap();
    let error = report.checks[0].error.as_ref().unwrap();
    assert_eq!(error.kind, "committed", "{report:?}");
    assert_eq!(count(&db.pool).await, before);
}

#[tokio::test]
async fn server_errors_say_what_to_fix() {
    let db = database(2).await;
    let read_only = SqlitePoolOptions::new().connect_lazy_with(
        SqliteConnectOptions::new()
            .filename(db.dir.join("test.db"))
            .read_only(true),
    );
    for (pool, sql, advice) in [
        (db.pool.clone(), "SELECT * FROM no_such_table", "migrations"),
        (
            read_only,
            "INSERT INTO items (id, note) VALUES (9, 'x')",
            "accepts no writes",
        ),
    ] {
        let smoke = Smoketest::builder()
            .without_discovery()
            .anonymous_detail(smoketest::Detail::Full)
            .sqlite(pool)
            .check(from_fn("db::case", move |ctx| {
                Box::pin(async move {
                    sqlx::query(AssertSqlSafe(sql))
                        .execute(ctx.sqlite_write().await?)
                        .await?;
                    Ok(Outcome::Pass)
                })
            }))
            .build()
            .unwrap();
        let report = smoke.run(&Selection::all()).await.unwrap();
        let e = report.checks[0].error.clone().expect("the case fails");
        assert!(
            e.suggestion.clone().unwrap_or_default().contains(advice),
            "{sql}: {e:?}"
        );
    }
}
