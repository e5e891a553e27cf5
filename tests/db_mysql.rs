//! Rolled-back transactions on a real MariaDB / MySQL (`SMOKETEST_TEST_MYSQL_URL`): nothing
//! a check writes survives passing, failing, panicking, timing-out or cancelled runs, no
//! connection keeps a transaction open, the deadline stops queries on the server, and a
//! check whose DDL commits implicitly is reported.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use smoketest::db::sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use smoketest::db::sqlx::{self, AssertSqlSafe, ConnectOptions, MySqlPool};
use smoketest::db::{self as db};
use smoketest::{CheckError, Context, Outcome, Selection, Smoketest, Status, ensure_eq, from_fn};

/// A database of its own with an `items` table holding three rows.
struct Db {
    admin: MySqlPool,
    pool: MySqlPool,
    name: String,
}

impl Db {
    async fn drop_database(self) {
        self.pool.close().await;
        sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE {}", self.name)))
            .execute(&self.admin)
            .await
            .unwrap();
        self.admin.close().await;
    }

    /// Open InnoDB transactions on this test's connections (idle or not).
    async fn open_transactions(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.innodb_trx t
             JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id
             WHERE p.db = ?",
        )
        .bind(&self.name)
        .fetch_one(&self.admin)
        .await
        .unwrap()
    }

    /// Statements of this test's connections still running whose text contains `marker`.
    async fn running(&self, marker: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.processlist
             WHERE db = ? AND command = 'Query' AND info LIKE CONCAT('%', ?, '%') AND id <> CONNECTION_ID()",
        )
        .bind(&self.name)
        .bind(marker)
        .fetch_one(&self.admin)
        .await
        .unwrap()
    }
}

async fn database(max_connections: u32) -> Option<Db> {
    let url = service_url("SMOKETEST_TEST_MYSQL_URL")?;
    let admin = MySqlPool::connect(&url).await.unwrap();
    let name = unique("smoketest_my");
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE DATABASE {name}; CREATE TABLE {name}.items (id BIGINT PRIMARY KEY, note VARCHAR(32) NOT NULL) ENGINE=InnoDB;
         INSERT INTO {name}.items VALUES (1, 'before'), (2, 'before'), (3, 'before')"
    )))
    .execute(&admin)
    .await
    .unwrap();
    let options: MySqlConnectOptions = url.parse().unwrap();
    let options = options.database(&name).disable_statement_logging();
    let pool = MySqlPoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options)
        .await
        .unwrap();
    Some(Db { admin, pool, name })
}

async fn count(pool: &MySqlPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn insert(ctx: &mut Context, ids: &AtomicI64) -> Result<(), CheckError> {
    let conn = ctx.mysql().await?;
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

fn hammer_smoke(pool: &MySqlPool) -> Smoketest {
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
                        sqlx::query("SELECT SLEEP(10)")
                            .execute(ctx.mysql().await?)
                            .await?;
                    }
                    TIMEOUT_IDLE => tokio::time::sleep(Duration::from_secs(60)).await,
                    SLOW_PASS => tokio::time::sleep(Duration::from_millis(40)).await,
                    _ => {}
                }
                Ok(Outcome::Pass)
            })
        })
        .timeout(timeout)
    };
    Smoketest::builder()
        .without_discovery()
        .mysql(pool.clone())
        .check(with(PASS, Duration::from_secs(10)))
        .check(with(FAIL, Duration::from_secs(10)))
        .check(with(PANIC, Duration::from_secs(10)))
        .check(with(TIMEOUT_IN_QUERY, Duration::from_millis(150)))
        .check(with(TIMEOUT_IDLE, Duration::from_millis(150)))
        .check(with(SLOW_PASS, Duration::from_secs(10)))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_mixed_runs_leave_the_table_as_it_was_and_no_transaction_open() {
    let _serial = serial().await;
    let Some(db) = database(16).await else { return };
    let smoke = hammer_smoke(&db.pool);
    let before = count(&db.pool).await;

    let started = Instant::now();
    let tally = hammer(&smoke, 1_000, 32).await;
    eprintln!("mysql: 1000 runs in {:?}: {tally:?}", started.elapsed());

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&db.pool).await, before, "rows survived the rollbacks");
    assert_eq!(db.open_transactions().await, 0);
    assert_eq!(db.running("SLEEP").await, 0, "a SLEEP still runs");

    let started = Instant::now();
    let report = smoke.run(&Selection::one(PASS)).await.unwrap();
    assert_eq!(report.status, Status::Pass, "{report:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checks_cut_off_while_their_transaction_begins_leave_nothing_open() {
    let _serial = serial().await;
    let Some(db) = database(8).await else { return };
    let ids = Arc::new(AtomicI64::new(10_000));
    let mut builder = Smoketest::builder()
        .without_discovery()
        .mysql(db.pool.clone());
    for micros in (200..3_000).step_by(200) {
        let ids = ids.clone();
        builder = builder.check(
            from_fn(format!("cut_{micros}"), move |ctx| {
                let ids = ids.clone();
                Box::pin(async move {
                    insert(ctx, &ids).await?;
                    Ok(Outcome::Pass)
                })
            })
            .timeout(Duration::from_micros(micros)),
        );
    }
    let smoke = builder.concurrency(32).build().unwrap();
    let before = count(&db.pool).await;
    for _ in 0..25 {
        smoke.run(&Selection::all()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&db.pool).await, before);
    assert_eq!(db.open_transactions().await, 0);
    db.drop_database().await;
}

#[tokio::test]
async fn two_checks_writing_the_same_row_do_not_see_each_other() {
    let Some(db) = database(4).await else { return };
    let first_wrote = Arc::new(tokio::sync::Notify::new());
    let (signal, wait) = (first_wrote.clone(), first_wrote.clone());
    let smoke = Smoketest::builder()
        .without_discovery()
        .mysql(db.pool.clone())
        .check(from_fn("first", move |ctx| {
            let signal = signal.clone();
            Box::pin(async move {
                let conn = ctx.mysql().await?;
                sqlx::query("UPDATE items SET note = 'first' WHERE id = 1")
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("INSERT INTO items VALUES (100, 'first')")
                    .execute(&mut *conn)
                    .await?;
                signal.notify_one();
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok(Outcome::Pass)
            })
        }))
        .check(from_fn("second", move |ctx| {
            let wait = wait.clone();
            Box::pin(async move {
                wait.notified().await;
                let conn = ctx.mysql().await?;
                let note: String = sqlx::query_scalar("SELECT note FROM items WHERE id = 1")
                    .fetch_one(&mut *conn)
                    .await?;
                ensure_eq!(
                    note,
                    "before",
                    "the second check saw the first one's update"
                );
                let inserted: i64 = sqlx::query_scalar("SELECT count(*) FROM items WHERE id = 100")
                    .fetch_one(&mut *conn)
                    .await?;
                ensure_eq!(inserted, 0, "the second check saw the first one's insert");
                // Waits for the first check's row lock, released by its rollback.
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
    assert_eq!(count(&db.pool).await, 3);
    db.drop_database().await;
}

#[tokio::test]
async fn a_query_sleeping_past_the_timeout_answers_in_time_and_is_gone_from_the_server() {
    let _serial = serial().await;
    let Some(db) = database(4).await else { return };
    let marker = unique("sleeper");
    let sql = format!("SELECT SLEEP(30) /* {marker} */");
    let timeout = Duration::from_millis(300);
    let smoke = Smoketest::builder()
        .without_discovery()
        .mysql(db.pool.clone())
        .check(
            from_fn("sleeps", move |ctx| {
                let sql = sql.clone();
                Box::pin(async move {
                    sqlx::query(AssertSqlSafe(sql))
                        .execute(ctx.mysql().await?)
                        .await?;
                    Ok(Outcome::Pass)
                })
            })
            .timeout(timeout),
        )
        .build()
        .unwrap();

    let started = Instant::now();
    let report = smoke.run(&Selection::all()).await.unwrap();
    let answered = started.elapsed();
    eprintln!("mysql: a {timeout:?} check sleeping in SLEEP() answered in {answered:?}");
    assert_eq!(report.checks[0].error.as_ref().unwrap().kind, "timeout");
    assert!(
        answered < timeout + Duration::from_millis(100),
        "answered in {answered:?}"
    );

    let gone = Instant::now();
    while db.running(&marker).await > 0 {
        assert!(
            gone.elapsed() < Duration::from_secs(1),
            "SLEEP still runs on the server"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "mysql: the server-side query was gone {:?} after the answer",
        gone.elapsed()
    );
    assert_eq!(db.open_transactions().await, 0);

    // The session's own limit was restored on the pooled connection.
    let limit: String = sqlx::query_scalar("SELECT CAST(@@session.max_statement_time AS CHAR)")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let global: String = sqlx::query_scalar("SELECT CAST(@@global.max_statement_time AS CHAR)")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(limit, global);
    db.drop_database().await;
}

#[tokio::test]
async fn a_check_lifting_the_statement_limit_is_still_killed_on_the_server() {
    let _serial = serial().await;
    let Some(db) = database(4).await else { return };
    let marker = unique("stubborn");
    let sql = format!("SELECT SLEEP(30) /* {marker} */");
    let smoke = Smoketest::builder()
        .without_discovery()
        .mysql(db.pool.clone())
        .check(
            from_fn("stubborn", move |ctx| {
                let sql = sql.clone();
                Box::pin(async move {
                    let conn = ctx.mysql().await?;
                    sqlx::raw_sql("SET SESSION max_statement_time = 0")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query(AssertSqlSafe(sql)).execute(&mut *conn).await?;
                    Ok(Outcome::Pass)
                })
            })
            .timeout(Duration::from_millis(200)),
        )
        .build()
        .unwrap();
    let started = Instant::now();
    let report = smoke.run(&Selection::all()).await.unwrap();
    eprintln!(
        "mysql: with max_statement_time lifted by the check, answered in {:?}",
        started.elapsed()
    );
    assert_eq!(report.checks[0].error.as_ref().unwrap().kind, "timeout");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        db.running(&marker).await,
        0,
        "the runner did not kill the statement"
    );
    assert_eq!(db.open_transactions().await, 0);
    db.drop_database().await;
}

#[tokio::test]
async fn ddl_in_a_check_is_reported_as_committed() {
    let Some(db) = database(2).await else { return };
    let smoke = Smoketest::builder()
        .without_discovery()
        .mysql(db.pool.clone())
        .check(from_fn("ddl", |ctx| {
            Box::pin(async move {
                let conn = ctx.mysql().await?;
                sqlx::query("INSERT INTO items VALUES (99, 'committed')")
                    .execute(&mut *conn)
                    .await?;
                // Commits the INSERT implicitly.
                sqlx::query("CREATE TABLE created_by_a_check (id INT)")
                    .execute(&mut *conn)
                    .await?;
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
    assert!(error.message.as_deref().unwrap().contains("DDL"));
    assert_eq!(
        count(&db.pool).await,
        4,
        "MariaDB committed the insert; the report says so"
    );
    db.drop_database().await;
}

#[tokio::test]
async fn an_unreachable_database_fails_fast_as_unavailable_and_recovers() {
    let Some(db) = database(2).await else { return };
    let options = db.pool.connect_options();
    let target = format!("{}:{}", options.get_host(), options.get_port());
    let target = tokio::net::lookup_host(target)
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = Proxy::start(target).await;
    let proxied = MySqlPoolOptions::new()
        .max_connections(2)
        .connect_lazy_with((*options).clone().host("127.0.0.1").port(proxy.addr.port()));
    let smoke = Smoketest::builder()
        .without_discovery()
        .mysql(proxied.clone())
        .database_acquire_timeout(Duration::from_millis(500))
        .check(db::mysql::ping())
        .build()
        .unwrap();
    let report = smoke.run(&Selection::all()).await.unwrap();
    assert_eq!(report.status, Status::Pass, "{report:?}");

    proxy.down().await;
    let started = Instant::now();
    let report = smoke.run(&Selection::all()).await.unwrap();
    let failed_in = started.elapsed();
    eprintln!("mysql: unreachable database reported in {failed_in:?}");
    let error = report.checks[0]
        .error
        .as_ref()
        .expect("must fail while down");
    assert_eq!(error.kind, "db_unavailable", "{error:?}");
    assert!(failed_in < Duration::from_secs(2), "took {failed_in:?}");

    proxy.up().await;
    let report = smoke.run(&Selection::all()).await.unwrap();
    assert_eq!(report.status, Status::Pass, "no recovery: {report:?}");
    proxied.close().await;
    db.drop_database().await;
}

#[tokio::test]
async fn built_in_checks_pass_and_leave_no_temporary_table() {
    let Some(db) = database(1).await else { return };
    let smoke = Smoketest::builder()
        .without_discovery()
        .mysql(db.pool.clone())
        .check(db::mysql::ping())
        .check(db::mysql::write_probe())
        .build()
        .unwrap();
    for _ in 0..2 {
        let report = smoke.run(&Selection::all()).await.unwrap();
        assert_eq!(report.status, Status::Pass, "{report:?}");
    }
    // The single pooled connection has no probe table left over.
    let left: Result<i64, _> = sqlx::query_scalar("SELECT count(*) FROM smoketest_write_probe")
        .fetch_one(&db.pool)
        .await;
    assert!(
        left.is_err(),
        "the temporary probe table outlived the check"
    );
    assert_eq!(db.open_transactions().await, 0);
    db.drop_database().await;
}

/// Run application queries on `pool` (`SELECT CONNECTION_ID(), SLEEP(0.005)`) until `stop`
/// is set. A `KILL QUERY` that hit one would make its `SLEEP` return 1.
async fn app_load(pool: MySqlPool, stop: Arc<std::sync::atomic::AtomicBool>) -> AppLoad {
    let mut load = AppLoad::default();
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        match sqlx::query_as::<_, (u64, i64)>("SELECT CONNECTION_ID(), SLEEP(0.005)")
            .fetch_one(&pool)
            .await
        {
            Ok((id, slept)) => {
                load.queries.push((id as i64, started));
                if slept != 0 {
                    load.interrupted += 1;
                }
            }
            Err(e) => load.errors.push(e.to_string()),
        }
    }
    load
}

/// See the Postgres test of the same name: the connection a `KILL QUERY` was started on is
/// closed, so the kill never reaches an application query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_a_cancel_was_started_on_never_serves_another_query() {
    let _serial = serial().await;
    let Some(db) = database(2).await else { return };
    let backends: CheckBackends = Arc::default();
    let check = |name: &'static str, sleep: &'static str| {
        let backends = backends.clone();
        from_fn(name, move |ctx| {
            let backends = backends.clone();
            Box::pin(async move {
                let conn = ctx.mysql().await?;
                let id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
                    .fetch_one(&mut *conn)
                    .await?;
                backends.lock().unwrap().push((id as i64, Instant::now()));
                // Past the deadline on the server too: only the runner's KILL QUERY stops it.
                sqlx::query("SET SESSION max_statement_time = 0")
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(AssertSqlSafe(format!("SELECT SLEEP({sleep})")))
                    .execute(&mut *conn)
                    .await?;
                Ok(Outcome::Pass)
            })
        })
        .timeout(Duration::from_millis(200))
    };
    let smoke = Smoketest::builder()
        .without_discovery()
        .mysql(db.pool.clone())
        .check(check("ends_near_the_cancel", "0.27"))
        .check(check("never_ends", "30"))
        .build()
        .unwrap();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(app_load(db.pool.clone(), stop.clone()));
    for _ in 0..6 {
        for name in ["ends_near_the_cancel", "never_ends"] {
            let report = smoke.run(&Selection::one(name)).await.unwrap();
            assert_eq!(
                report.checks[0].error.as_ref().unwrap().kind,
                "timeout",
                "{report:?}"
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let load = load.await.unwrap();
    eprintln!(
        "mysql: {} application queries beside 12 cut-off checks",
        load.queries.len()
    );
    assert_no_query_hit(&load, &backends);
    assert_eq!(db.running("SLEEP(30)").await, 0);
    assert_eq!(db.open_transactions().await, 0);
    db.drop_database().await;
}

/// At the run's deadline a check whose transaction was committed (a raw `COMMIT`) and that
/// then hung in a query is still reported `committed`: the verdict waits for its rollback.
#[tokio::test]
async fn a_check_that_commits_and_is_cut_off_by_the_run_deadline_is_reported_committed() {
    let Some(db) = database(2).await else { return };
    let smoke = Smoketest::builder()
        .without_discovery()
        .deadline(Duration::from_millis(400))
        .mysql(db.pool.clone())
        .check(from_fn("commits_then_hangs", |ctx| {
            Box::pin(async move {
                let conn = ctx.mysql().await?;
                sqlx::query("INSERT INTO items VALUES (97, 'committed')")
                    .execute(&mut *conn)
                    .await?;
                sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
                sqlx::query("SET SESSION max_statement_time = 0")
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("SELECT SLEEP(30)").execute(&mut *conn).await?;
                Ok(Outcome::Pass)
            })
        }))
        .build()
        .unwrap();
    let report = smoke.run(&Selection::all()).await.unwrap();
    let error = report.checks[0].error.as_ref().unwrap();
    // MariaDB (as the other tests here): `@@in_transaction` tells.
    assert_eq!(error.kind, "committed", "{report:?}");
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM items WHERE id > 3")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(ids, [97], "the report must match what the database holds");
    assert_eq!(
        db.running("SLEEP(30)").await,
        0,
        "the hung query was not killed"
    );
    db.drop_database().await;
}

/// A server that stops answering during the ROLLBACK: the run still answers, the report
/// says the connection was closed instead, it never returns to the pool, and the server
/// drops the session (and its transaction) once it sees the connection close.
#[tokio::test]
async fn a_rollback_that_gets_no_answer_closes_the_connection_and_says_so() {
    let _serial = serial().await;
    let Some(db) = database(1).await else { return };
    let url = service_url("SMOKETEST_TEST_MYSQL_URL").unwrap();
    let options: MySqlConnectOptions = url.parse().unwrap();
    let target = tokio::net::lookup_host((options.get_host(), options.get_port()))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = Proxy::start(target).await;
    let proxied = MySqlPoolOptions::new()
        .max_connections(1)
        .connect_with(
            options
                .host("127.0.0.1")
                .port(proxy.addr.port())
                .database(&db.name),
        )
        .await
        .unwrap();
    let stall = proxy.clone();
    let session = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = session.clone();
    let smoke = Smoketest::builder()
        .without_discovery()
        .deadline(Duration::from_secs(1))
        .mysql(proxied.clone())
        .check(from_fn("server_goes_silent", move |ctx| {
            let stall = stall.clone();
            let seen = seen.clone();
            Box::pin(async move {
                let conn = ctx.mysql().await?;
                let id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
                    .fetch_one(&mut *conn)
                    .await?;
                seen.store(id, Ordering::SeqCst);
                sqlx::query("INSERT INTO items VALUES (96, 'smoke')")
                    .execute(&mut *conn)
                    .await?;
                stall.stall();
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
    assert_eq!(error.kind, "timeout", "{report:?}");
    let message = error.message.as_deref().unwrap();
    assert!(
        message.starts_with("the MySQL ROLLBACK on pool `default` did not finish in time")
            && message.contains("the connection was closed instead, never returned to the pool"),
        "{message}"
    );
    assert_eq!(proxied.size(), 0, "the connection went back to the pool");
    proxy.resume();

    let id = session.load(Ordering::SeqCst);
    let waited = Instant::now();
    loop {
        let alive: i64 =
            sqlx::query_scalar("SELECT count(*) FROM information_schema.processlist WHERE id = ?")
                .bind(id)
                .fetch_one(&db.admin)
                .await
                .unwrap();
        if alive == 0 {
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "the server kept the session"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count(&db.pool).await, 3, "the insert survived");
    proxied.close().await;
    db.drop_database().await;
}

/// The error a check running `sql` (one statement) on `pool` reports.
async fn server_error_of(pool: MySqlPool, sql: &'static str) -> smoketest::report::ErrorReport {
    let smoke = Smoketest::builder()
        .without_discovery()
        .anonymous_detail(smoketest::Detail::Full)
        .database_acquire_timeout(Duration::from_secs(2))
        .mysql(pool)
        .check(from_fn("db::case", move |ctx| {
            Box::pin(async move {
                sqlx::query(AssertSqlSafe(sql))
                    .execute(ctx.mysql().await?)
                    .await?;
                Ok(Outcome::Pass)
            })
        }))
        .build()
        .unwrap();
    let report = smoke.run(&Selection::all()).await.unwrap();
    report.checks[0].error.clone().expect("the case fails")
}

#[tokio::test]
async fn server_errors_carry_their_sqlstate_and_number_and_say_what_to_fix() {
    let Some(db) = database(2).await else {
        return;
    };
    for (sql, code, advice) in [
        ("SELECT * FROM no_such_table", "42S02/1146", "migrations"),
        (
            "SELECT no_such_column FROM items",
            "42S22/1054",
            "migrations",
        ),
    ] {
        let e = server_error_of(db.pool.clone(), sql).await;
        let message = e.message.unwrap_or_default();
        assert_eq!(e.kind, "error", "{sql}: {message}");
        assert!(message.contains(&format!("[{code}]")), "{sql}: {message}");
        assert!(e.suggestion.unwrap_or_default().contains(advice), "{sql}");
    }

    let url = service_url("SMOKETEST_TEST_MYSQL_URL").unwrap();
    let options: MySqlConnectOptions = url.parse().unwrap();
    for (options, number, advice) in [
        (
            options.clone().database("smoketest_no_such_database"),
            "1049",
            "does not exist",
        ),
        (
            options.clone().password("smoketest-wrong-password"),
            "1045",
            "Authentication failed",
        ),
    ] {
        let pool = MySqlPoolOptions::new().connect_lazy_with(options);
        let e = server_error_of(pool, "SELECT 1").await;
        let message = e.message.unwrap_or_default();
        assert_eq!(e.kind, "db_unavailable", "{message}");
        assert!(message.contains(number), "{message}");
        assert!(!message.contains("smoketest-wrong-password"), "{message}");
        assert!(
            e.suggestion.unwrap_or_default().contains(advice),
            "{message}"
        );
    }
    db.drop_database().await;
}

/// Round trips the runner adds around a check's own statements on MariaDB. If this number
/// grows, a change added a round trip to every database check: make sure it is worth it.
/// Before issue 19's round 2: `SELECT CONNECTION_ID(), VERSION()` (1), saving and setting
/// the session's statement time limit (1), `BEGIN` (1), the check's `SELECT 1` (1),
/// `@@in_transaction` (1), restoring the limit (1), `ROLLBACK` (1) — six around the check.
/// Now four: setting the limit travels with `BEGIN`, restoring it with `@@in_transaction`.
/// Since round 2 the pool's ping on acquire is skipped as well (`try_acquire`).
const MY_ROUND_TRIPS_AROUND_A_CHECK: u64 = 4;

/// The round trips one run of a `SELECT 1` check pays through a counting proxy, on a warm
/// connection (statements already prepared), with the pool set to test connections on
/// acquire and not: the runner never pays that ping. The pool's own ping on release (sqlx
/// always sends it) is counted too, and subtracted.
#[tokio::test]
async fn a_minimal_check_pays_a_known_number_of_round_trips() {
    let Some(db) = database(1).await else { return };
    let options = db.pool.connect_options();
    let target = format!("{}:{}", options.get_host(), options.get_port());
    let target = tokio::net::lookup_host(target)
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = Proxy::start(target).await;
    let proxied_options = (*options).clone().host("127.0.0.1").port(proxy.addr.port());
    for ping_on_acquire in [false, true] {
        let proxied = MySqlPoolOptions::new()
            .max_connections(1)
            .test_before_acquire(ping_on_acquire)
            .connect_with(proxied_options.clone())
            .await
            .unwrap();
        let smoke = Smoketest::builder()
            .without_discovery()
            .mysql(proxied.clone())
            // The built-in `SELECT 1` check.
            .check(smoketest::db::mysql::ping())
            .build()
            .unwrap();
        // Warm: the connection is open and its statements are prepared.
        for _ in 0..2 {
            let report = smoke.run(&Selection::all()).await.unwrap();
            assert_eq!(report.status, Status::Pass, "{report:?}");
        }
        let settled = || async {
            // sqlx pings a connection returned to the pool from a task of its own.
            let mut last = proxy.round_trips();
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let now = proxy.round_trips();
                if now == last {
                    return now;
                }
                last = now;
            }
        };
        let before = settled().await;
        let report = smoke.run(&Selection::all()).await.unwrap();
        assert_eq!(report.status, Status::Pass, "{report:?}");
        let paid = settled().await - before;
        let own = 1;
        // The ping on release only: the runner takes an idle connection with
        // `try_acquire`, which skips the ping on acquire even when the pool asks for it.
        let pool_pings = 1;
        assert_eq!(
            paid - own - pool_pings,
            MY_ROUND_TRIPS_AROUND_A_CHECK,
            "round trips of one run (ping on acquire: {ping_on_acquire}): {paid} in all, \
             of which the check's own statement {own} and the pool's pings {pool_pings}"
        );
        proxied.close().await;
    }
    proxy.down().await;
    db.drop_database().await;
}
