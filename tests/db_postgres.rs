//! Rolled-back transactions on a real Postgres (`SMOKETEST_TEST_POSTGRES_URL`): nothing a
//! check writes survives passing, failing, panicking, timing-out or cancelled runs, no
//! connection is left idle in transaction, the deadline stops queries on the server, and a
//! check that commits is reported.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use smoketest::db::sqlx::migrate::{Migration, MigrationType, Migrator};
use smoketest::db::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use smoketest::db::sqlx::{self, AssertSqlSafe, ConnectOptions, PgPool, SqlSafeStr};
use smoketest::db::{self as db};
use smoketest::{CheckError, Context, Outcome, Selection, Smoketest, Status, ensure_eq, from_fn};

/// A schema of its own, a pool whose connections carry a unique application name (to find
/// them in `pg_stat_activity`), and an `items` table holding three rows.
struct Db {
    admin: PgPool,
    pool: PgPool,
    schema: String,
    app: String,
}

impl Db {
    async fn drop_schema(self) {
        self.pool.close().await;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP SCHEMA {} CASCADE",
            self.schema
        )))
        .execute(&self.admin)
        .await
        .unwrap();
        self.admin.close().await;
    }

    /// Connections of this test's pool in a state matching `state` (SQL LIKE).
    async fn sessions(&self, state: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE (application_name = $1 OR application_name LIKE 'smoketest % ' || $1) AND state LIKE $2",
        )
        .bind(&self.app)
        .bind(state)
        .fetch_one(&self.admin)
        .await
        .unwrap()
    }
}

async fn database(max_connections: u32) -> Option<Db> {
    let url = service_url("SMOKETEST_TEST_POSTGRES_URL")?;
    let admin = PgPool::connect(&url).await.unwrap();
    let schema = unique("smoketest_pg");
    let app = unique("smoketest_app");
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE SCHEMA {schema}; CREATE TABLE {schema}.items (id bigint PRIMARY KEY, note text NOT NULL);
         INSERT INTO {schema}.items VALUES (1, 'before'), (2, 'before'), (3, 'before')"
    )))
    .execute(&admin)
    .await
    .unwrap();
    let options: PgConnectOptions = url.parse().unwrap();
    let options = options
        .application_name(&app)
        .options([("search_path", schema.as_str())])
        .disable_statement_logging();
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options)
        .await
        .unwrap();
    Some(Db {
        admin,
        pool,
        schema,
        app,
    })
}

/// A counting, stallable proxy in front of `db`'s server, and the pool's connect options
/// pointed at it.
async fn behind_a_proxy(db: &Db) -> (Arc<Proxy>, PgConnectOptions) {
    let options = db.pool.connect_options();
    let target = format!("{}:{}", options.get_host(), options.get_port());
    let target = tokio::net::lookup_host(target)
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = Proxy::start(target).await;
    let proxied = (*options).clone().host("127.0.0.1").port(proxy.addr.port());
    (proxy, proxied)
}

async fn count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn insert(ctx: &mut Context, ids: &AtomicI64) -> Result<(), CheckError> {
    let conn = ctx.postgres().await?;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&mut *conn)
        .await?;
    for _ in 0..2 {
        sqlx::query("INSERT INTO items (id, note) VALUES ($1, 'smoke')")
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

fn hammer_smoke(pool: &PgPool) -> Smoketest {
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
                        sqlx::query("SELECT pg_sleep(10)")
                            .execute(ctx.postgres().await?)
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
        .postgres(pool.clone())
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
async fn a_thousand_mixed_runs_leave_the_table_as_it_was_and_no_connection_idle_in_transaction() {
    let _serial = serial().await;
    let Some(db) = database(16).await else { return };
    let smoke = hammer_smoke(&db.pool);
    let before = count(&db.pool).await;

    let started = Instant::now();
    let tally = hammer(&smoke, 1_000, 32).await;
    eprintln!("postgres: 1000 runs in {:?}: {tally:?}", started.elapsed());

    // Cancelled runs go on in the background for a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&db.pool).await, before, "rows survived the rollbacks");
    assert_eq!(db.sessions("idle in transaction%").await, 0);
    assert_eq!(db.sessions("active").await, 0, "a pg_sleep still runs");

    let started = Instant::now();
    let report = smoke.run(&Selection::one(PASS)).await.unwrap();
    assert_eq!(report.status, Status::Pass, "{report:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checks_cut_off_while_their_transaction_begins_leave_nothing_open() {
    let _serial = serial().await;
    let Some(db) = database(8).await else { return };
    let ids = Arc::new(AtomicI64::new(10_000));
    let mut builder = Smoketest::builder()
        .without_discovery()
        .postgres(db.pool.clone());
    // Timeouts of 0.2 to 3 ms cut checks off inside acquire, BEGIN, SET LOCAL or INSERT.
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
    assert_eq!(db.sessions("idle in transaction%").await, 0);
    db.drop_schema().await;
}

#[tokio::test]
async fn two_checks_writing_the_same_row_do_not_see_each_other() {
    let Some(db) = database(4).await else { return };
    let first_wrote = Arc::new(tokio::sync::Notify::new());
    let (signal, wait) = (first_wrote.clone(), first_wrote.clone());
    let smoke = Smoketest::builder()
        .without_discovery()
        .postgres(db.pool.clone())
        .check(from_fn("first", move |ctx| {
            let signal = signal.clone();
            Box::pin(async move {
                let conn = ctx.postgres().await?;
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
                let conn = ctx.postgres().await?;
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
                let note: String = sqlx::query_scalar("SELECT note FROM items WHERE id = 1")
                    .fetch_one(&mut *conn)
                    .await?;
                ensure_eq!(note, "second");
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
    db.drop_schema().await;
}

#[tokio::test]
async fn a_query_sleeping_past_the_timeout_answers_in_time_and_is_gone_from_the_server() {
    let _serial = serial().await;
    let Some(db) = database(4).await else { return };
    let marker = unique("sleeper");
    let sql = format!("SELECT pg_sleep(30) /* {marker} */");
    let timeout = Duration::from_millis(300);
    let smoke = Smoketest::builder()
        .without_discovery()
        .postgres(db.pool.clone())
        .check(
            from_fn("sleeps", move |ctx| {
                let sql = sql.clone();
                Box::pin(async move {
                    sqlx::query(AssertSqlSafe(sql))
                        .execute(ctx.postgres().await?)
                        .await?;
                    Ok(Outcome::Pass)
                })
            })
            .timeout(timeout),
        )
        .build()
        .unwrap();
    let running = |marker: String| {
        let admin = db.admin.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
            )
            .bind(marker)
            .fetch_one(&admin)
            .await
            .unwrap()
        }
    };

    let started = Instant::now();
    let report = smoke.run(&Selection::all()).await.unwrap();
    let answered = started.elapsed();
    eprintln!("postgres: a {timeout:?} check sleeping in pg_sleep answered in {answered:?}");
    assert_eq!(report.checks[0].error.as_ref().unwrap().kind, "timeout");
    assert!(
        answered < timeout + Duration::from_millis(100),
        "answered in {answered:?}"
    );

    // The server-side query is gone shortly after.
    let gone = Instant::now();
    while running(marker.clone()).await > 0 {
        assert!(
            gone.elapsed() < Duration::from_secs(1),
            "pg_sleep still runs on the server"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "postgres: the server-side query was gone {:?} after the answer",
        gone.elapsed()
    );
    assert_eq!(db.sessions("idle in transaction%").await, 0);
    db.drop_schema().await;
}

#[tokio::test]
async fn a_check_overriding_the_statement_timeout_is_still_cancelled_on_the_server() {
    let _serial = serial().await;
    let Some(db) = database(4).await else { return };
    let marker = unique("stubborn");
    let sql = format!("SELECT pg_sleep(30) /* {marker} */");
    let smoke = Smoketest::builder()
        .without_discovery()
        .postgres(db.pool.clone())
        .check(
            from_fn("stubborn", move |ctx| {
                let sql = sql.clone();
                Box::pin(async move {
                    let conn = ctx.postgres().await?;
                    sqlx::query("SET LOCAL statement_timeout = 0")
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
        "postgres: with statement_timeout disabled by the check, answered in {:?}",
        started.elapsed()
    );
    assert_eq!(report.checks[0].error.as_ref().unwrap().kind, "timeout");
    assert!(started.elapsed() < Duration::from_secs(1));
    let still: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
    )
    .bind(&marker)
    .fetch_one(&db.admin)
    .await
    .unwrap();
    assert_eq!(still, 0, "the runner did not cancel the statement");
    assert_eq!(db.sessions("idle in transaction%").await, 0);
    db.drop_schema().await;
}

#[tokio::test]
async fn a_check_that_commits_is_reported_as_committed() {
    let Some(db) = database(2).await else { return };
    let smoke = Smoketest::builder()
        .without_discovery()
        .postgres(db.pool.clone())
        .check(from_fn("commits", |ctx| {
            Box::pin(async move {
                let conn = ctx.postgres().await?;
                sqlx::query("INSERT INTO items VALUES (99, 'committed')")
                    .execute(&mut *conn)
                    .await?;
                sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
                Ok(Outcome::Pass)
            })
        }))
        .check(from_fn("nested_commit_is_a_savepoint", |ctx| {
            Box::pin(async move {
                use smoketest::db::sqlx::Connection;
                let conn = ctx.postgres().await?;
                let mut nested = conn.begin().await?;
                sqlx::query("INSERT INTO items VALUES (98, 'nested')")
                    .execute(&mut *nested)
                    .await?;
                nested.commit().await?;
                Ok(Outcome::Pass)
            })
        }))
        .check(from_fn("changes_session_settings", |ctx| {
            Box::pin(async move {
                let conn = ctx.postgres().await?;
                sqlx::raw_sql(
                    "SET LOCAL TimeZone = 'Asia/Tokyo'; SET LOCAL DateStyle = 'SQL, DMY'",
                )
                .execute(&mut *conn)
                .await?;
                Ok(Outcome::Pass)
            })
        }))
        .build()
        .unwrap();
    let report = smoke.run(&Selection::all()).await.unwrap();
    assert_eq!(
        report.checks[2].status,
        Status::Pass,
        "not a commit: {report:?}"
    );
    let error = report.checks[0]
        .error
        .as_ref()
        .expect("the check must fail");
    assert_eq!(error.kind, "committed", "{error:?}");
    assert!(error.message.as_deref().unwrap().contains("COMMIT"));
    // Postgres cannot refuse the COMMIT; the report is what tells.
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM items WHERE id > 3 ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        ids,
        [99],
        "the nested commit must stay a savepoint, rolled back"
    );
    assert_eq!(report.checks[1].status, Status::Pass, "{report:?}");
    assert_eq!(db.sessions("idle in transaction%").await, 0);
    db.drop_schema().await;
}

#[tokio::test]
async fn an_unreachable_database_fails_fast_as_unavailable_and_recovers() {
    let Some(db) = database(2).await else { return };
    let (proxy, proxied_options) = behind_a_proxy(&db).await;
    let proxied = PgPoolOptions::new()
        .max_connections(2)
        .connect_lazy_with(proxied_options);
    let smoke = Smoketest::builder()
        .without_discovery()
        .postgres(proxied.clone())
        .database_acquire_timeout(Duration::from_millis(500))
        .check(db::postgres::ping())
        .build()
        .unwrap();
    let report = smoke.run(&Selection::all()).await.unwrap();
    assert_eq!(report.status, Status::Pass, "{report:?}");

    proxy.down().await;
    let started = Instant::now();
    let report = smoke.run(&Selection::all()).await.unwrap();
    let failed_in = started.elapsed();
    eprintln!("postgres: unreachable database reported in {failed_in:?}");
    let error = report.checks[0]
        .error
        .as_ref()
        .expect("must fail while down");
    assert_eq!(error.kind, "db_unavailable", "{error:?}");
    assert!(error.suggestion.is_some());
    assert!(failed_in < Duration::from_secs(2), "took {failed_in:?}");

    proxy.up().await;
    let report = smoke.run(&Selection::all()).await.unwrap();
    assert_eq!(report.status, Status::Pass, "no recovery: {report:?}");
    proxied.close().await;
    db.drop_schema().await;
}

#[tokio::test]
async fn built_in_checks_pass_including_migrations() {
    let Some(db) = database(2).await else { return };
    let migrations = || {
        vec![Migration::new(
            1,
            "create notes".into(),
            MigrationType::Simple,
            AssertSqlSafe("CREATE TABLE notes (id bigint PRIMARY KEY)").into_sql_str(),
            false,
        )]
    };
    Migrator::with_migrations(migrations())
        .run(&db.pool)
        .await
        .unwrap();
    let smoke = Smoketest::builder()
        .without_discovery()
        .postgres(db.pool.clone())
        .postgres_named("reporting", db.pool.clone())
        .check(db::postgres::ping())
        .check(db::postgres::write_probe())
        .check(db::postgres::ping().pool("reporting"))
        .check(db::postgres::migrations_applied(Migrator::with_migrations(
            migrations(),
        )))
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
        [
            "db::postgres::ping",
            "db::postgres::write",
            "db::postgres::reporting::ping",
            "db::postgres::migrations"
        ]
    );
    assert_eq!(db.sessions("idle in transaction%").await, 0);
    db.drop_schema().await;
}

/// Run application queries on `pool` (`SELECT pg_backend_pid(), pg_sleep(0.005)`) until
/// `stop` is set, recording which backend served each.
async fn app_load(pool: PgPool, stop: Arc<std::sync::atomic::AtomicBool>) -> AppLoad {
    let mut load = AppLoad::default();
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        match sqlx::query_as::<_, (i32, String)>("SELECT pg_backend_pid(), pg_sleep(0.005)::text")
            .fetch_one(&pool)
            .await
        {
            Ok((pid, _)) => load.queries.push((i64::from(pid), started)),
            Err(e) => load.errors.push(e.to_string()),
        }
    }
    load
}

/// The race the cancel could lose: a check cut off in a statement that runs on past the
/// cancel delay (sometimes ending by itself just before the cancel lands), while the
/// application keeps querying the same small pool. The connection a cancel was started on is
/// closed, so no application query ever runs on that backend again, and no cancel ever
/// reaches an application query.
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
                let conn = ctx.postgres().await?;
                let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                    .fetch_one(&mut *conn)
                    .await?;
                backends
                    .lock()
                    .unwrap()
                    .push((i64::from(pid), Instant::now()));
                // Past the deadline on the server too: only the runner's cancel stops it.
                sqlx::query("SET LOCAL statement_timeout = 0")
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(AssertSqlSafe(format!("SELECT pg_sleep({sleep})")))
                    .execute(&mut *conn)
                    .await?;
                Ok(Outcome::Pass)
            })
        })
        .timeout(Duration::from_millis(200))
    };
    let smoke = Smoketest::builder()
        .without_discovery()
        .postgres(db.pool.clone())
        // Ends by itself 70 ms after the cut-off: after the cancel was started, maybe
        // before it lands.
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
    // Long enough for any late cancel to land where it would.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let load = load.await.unwrap();
    eprintln!(
        "postgres: {} application queries beside 12 cut-off checks, on backends {:?}",
        load.queries.len(),
        load.queries
            .iter()
            .map(|(b, _)| *b)
            .collect::<std::collections::BTreeSet<_>>()
    );
    assert_no_query_hit(&load, &backends);
    assert_eq!(db.sessions("idle in transaction%").await, 0);
    db.drop_schema().await;
}

/// At the run's deadline a check that committed and then hung in a query is still reported
/// `committed`: the verdict waits for its rollback.
#[tokio::test]
async fn a_check_that_commits_and_is_cut_off_by_the_run_deadline_is_reported_committed() {
    let Some(db) = database(2).await else { return };
    let smoke = Smoketest::builder()
        .without_discovery()
        .deadline(Duration::from_millis(400))
        .postgres(db.pool.clone())
        .check(from_fn("commits_then_hangs", |ctx| {
            Box::pin(async move {
                let conn = ctx.postgres().await?;
                sqlx::query("INSERT INTO items VALUES (97, 'committed')")
                    .execute(&mut *conn)
                    .await?;
                sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
                // Outside the runner's transaction: no statement_timeout any more.
                sqlx::query("SELECT pg_sleep(30)")
                    .execute(&mut *conn)
                    .await?;
                Ok(Outcome::Pass)
            })
        }))
        .build()
        .unwrap();
    let report = smoke.run(&Selection::all()).await.unwrap();
    let error = report.checks[0].error.as_ref().unwrap();
    assert_eq!(error.kind, "committed", "{report:?}");
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM items WHERE id > 3")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(ids, [97], "the report must match what the database holds");
    let sleeping: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE (application_name = $1 OR application_name LIKE 'smoketest % ' || $1) AND state = 'active' AND query LIKE '%pg_sleep(30)%'",
    )
    .bind(&db.app)
    .fetch_one(&db.admin)
    .await
    .unwrap();
    assert_eq!(sleeping, 0, "the hung query was not cancelled");
    db.drop_schema().await;
}

/// A server that stops answering during the ROLLBACK: the run still answers, the report
/// says the connection was closed instead, the connection never returns to the pool, and
/// the server discards the transaction once it notices.
#[tokio::test]
async fn a_rollback_that_gets_no_answer_closes_the_connection_and_says_so() {
    let _serial = serial().await;
    let Some(db) = database(1).await else { return };
    let url = service_url("SMOKETEST_TEST_POSTGRES_URL").unwrap();
    let options: PgConnectOptions = url.parse().unwrap();
    let target = tokio::net::lookup_host((options.get_host(), options.get_port()))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = Proxy::start(target).await;
    let app = unique("smoketest_proxied");
    let proxied = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(
            options
                .host("127.0.0.1")
                .port(proxy.addr.port())
                .application_name(&app)
                .options([("search_path", db.schema.as_str())]),
        )
        .await
        .unwrap();
    let stall = proxy.clone();
    let smoke = Smoketest::builder()
        .without_discovery()
        .deadline(Duration::from_secs(1))
        .postgres(proxied.clone())
        .check(from_fn("server_goes_silent", move |ctx| {
            let stall = stall.clone();
            Box::pin(async move {
                sqlx::query("INSERT INTO items VALUES (96, 'smoke')")
                    .execute(ctx.postgres().await?)
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
        message.starts_with("the Postgres ROLLBACK on pool `default` did not finish in time")
            && message.contains("the connection was closed instead, never returned to the pool"),
        "{message}"
    );
    assert_eq!(proxied.size(), 0, "the connection went back to the pool");
    proxy.resume();

    // The server discards the transaction when it sees the connection close.
    let waited = Instant::now();
    let sessions = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE (application_name = $1 OR application_name LIKE 'smoketest % ' || $1)",
        )
        .bind(&app)
        .fetch_one(&db.admin)
        .await
        .unwrap()
    };
    while sessions().await > 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "the server kept the session"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count(&db.pool).await, 3, "the insert survived");
    proxied.close().await;
    db.drop_schema().await;
}

/// The error a check running `sql` (several statements allowed) on `pool` reports.
async fn server_error_of(pool: PgPool, sql: &'static str) -> smoketest::report::ErrorReport {
    let smoke = Smoketest::builder()
        .without_discovery()
        .anonymous_detail(smoketest::Detail::Full)
        .database_acquire_timeout(Duration::from_secs(2))
        .postgres(pool)
        .check(from_fn("db::case", move |ctx| {
            Box::pin(async move {
                sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(ctx.postgres().await?)
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
async fn server_errors_carry_their_sqlstate_and_say_what_to_fix() {
    let Some(db) = database(2).await else {
        return;
    };
    sqlx::raw_sql(
        "DO $$ BEGIN CREATE ROLE smoketest_no_privileges NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    )
    .execute(&db.admin)
    .await
    .unwrap();
    // The role may use the schema but not its tables.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "GRANT USAGE ON SCHEMA {} TO smoketest_no_privileges",
        db.schema
    )))
    .execute(&db.admin)
    .await
    .unwrap();
    let cases: [(&str, &str, &str, &str); 4] = [
        (
            "SELECT * FROM no_such_table",
            "42P01",
            "error",
            "migrations",
        ),
        (
            "SELECT no_such_column FROM items",
            "42703",
            "error",
            "migrations",
        ),
        (
            "SET TRANSACTION READ ONLY; INSERT INTO items VALUES (9, 'x')",
            "25006",
            "error",
            "read replica",
        ),
        (
            "SET LOCAL ROLE smoketest_no_privileges; SELECT * FROM items",
            "42501",
            "error",
            "privilege",
        ),
    ];
    for (sql, code, kind, advice) in cases {
        let e = server_error_of(db.pool.clone(), sql).await;
        let message = e.message.unwrap_or_default();
        assert_eq!(e.kind, kind, "{sql}: {message}");
        assert!(message.contains(&format!("[{code}]")), "{sql}: {message}");
        // sqlx's Display appends Postgres's own C source line; the report must not.
        assert!(!message.contains(" at line "), "{sql}: {message}");
        let suggestion = e.suggestion.unwrap_or_default();
        assert!(suggestion.contains(advice), "{sql}: {suggestion}");
    }

    // A database that does not exist: unavailable, and said so.
    let url = service_url("SMOKETEST_TEST_POSTGRES_URL").unwrap();
    let options: PgConnectOptions = url.parse().unwrap();
    let missing =
        PgPoolOptions::new().connect_lazy_with(options.database("smoketest_no_such_database"));
    let e = server_error_of(missing, "SELECT 1").await;
    assert_eq!(e.kind, "db_unavailable", "{e:?}");
    assert!(e.message.unwrap().contains("3D000"));
    assert!(e.suggestion.unwrap().contains("does not exist"));
    db.drop_schema().await;
}

/// Round trips the runner adds around a check's own statements on Postgres. If this number
/// grows, a change added a round trip to every database check: make sure it is worth it.
/// Before issue 19's round 2: `BEGIN; SET LOCAL …` (1), the start marker (pid and
/// transaction start, 1), the check's `SELECT 1` (1), the commit detection (1), `ROLLBACK`
/// (1) — four around the check, plus the pool's ping on acquire when it tests connections.
/// Then three and no ping on acquire: `BEGIN`, the `SET LOCAL`s, the marker and the
/// session's name (which stands in for the pid, for a cancel) travel in one string; the
/// detection; sqlx's `ROLLBACK`. Now two: the detection, the `ROLLBACK` and an empty
/// `BEGIN` in one string, and sqlx's `ROLLBACK` of that empty transaction queued for the
/// pool's ping on release (the same round trip as before).
const PG_ROUND_TRIPS_AROUND_A_CHECK: u64 = 2;

/// The round trips one run of a `SELECT 1` check pays through a counting proxy, on a warm
/// connection (statements already prepared), with the pool set to test connections on
/// acquire and not: the runner never pays that ping. The pool's own ping on release (sqlx
/// always sends it) is counted too, and subtracted.
#[tokio::test]
async fn a_minimal_check_pays_a_known_number_of_round_trips() {
    let Some(db) = database(1).await else { return };
    let (proxy, proxied_options) = behind_a_proxy(&db).await;
    for ping_on_acquire in [false, true] {
        let proxied = PgPoolOptions::new()
            .max_connections(1)
            .test_before_acquire(ping_on_acquire)
            .connect_with(proxied_options.clone())
            .await
            .unwrap();
        let smoke = Smoketest::builder()
            .without_discovery()
            .postgres(proxied.clone())
            // The built-in `SELECT 1` check.
            .check(smoketest::db::postgres::ping())
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
            PG_ROUND_TRIPS_AROUND_A_CHECK,
            "round trips of one run (ping on acquire: {ping_on_acquire}): {paid} in all, \
             of which the check's own statement {own} and the pool's pings {pool_pings}"
        );
        proxied.close().await;
    }
    proxy.down().await;
    db.drop_schema().await;
}

/// The `application_name` that lets a cancel find a check's backend is set for the session,
/// so it must be restored before the connection goes back to the pool, on every path that
/// returns it: a pass, a check that left its transaction aborted (the detection is refused
/// there), a check that committed, a check that leaked a savepoint. The pool's connection
/// stays open and usable outside any transaction, under its own name.
#[tokio::test]
async fn no_transaction_or_check_name_stays_on_a_pooled_connection() {
    let Some(db) = database(1).await else { return };
    let smoke = Smoketest::builder()
        .without_discovery()
        .postgres(db.pool.clone())
        .check(from_fn("passes", |ctx| {
            Box::pin(async move {
                sqlx::query("INSERT INTO items VALUES (50, 'smoke')")
                    .execute(ctx.postgres().await?)
                    .await?;
                Ok(Outcome::Pass)
            })
        }))
        .check(from_fn("leaves_its_transaction_aborted", |ctx| {
            Box::pin(async move {
                let conn = ctx.postgres().await?;
                sqlx::query("INSERT INTO items VALUES (51, 'smoke')")
                    .execute(&mut *conn)
                    .await?;
                let refused = sqlx::query("SELECT 1 / 0").execute(&mut *conn).await;
                ensure_eq!(refused.is_err(), true, "division by zero fails");
                Ok(Outcome::Pass)
            })
        }))
        .check(from_fn("commits", |ctx| {
            Box::pin(async move {
                sqlx::raw_sql("COMMIT")
                    .execute(ctx.postgres().await?)
                    .await?;
                Ok(Outcome::Pass)
            })
        }))
        .check(from_fn("commits_and_begins_again", |ctx| {
            Box::pin(async move {
                sqlx::raw_sql("COMMIT; BEGIN")
                    .execute(ctx.postgres().await?)
                    .await?;
                Ok(Outcome::Pass)
            })
        }))
        .check(from_fn("leaks_a_savepoint", |ctx| {
            Box::pin(async move {
                use smoketest::db::sqlx::Connection;
                let conn = ctx.postgres().await?;
                let nested = conn.begin().await?;
                std::mem::forget(nested);
                Ok(Outcome::Pass)
            })
        }))
        .build()
        .unwrap();
    for name in [
        "passes",
        "leaves_its_transaction_aborted",
        "commits",
        "commits_and_begins_again",
        "leaks_a_savepoint",
    ] {
        let report = smoke.run(&Selection::one(name)).await.unwrap();
        let expected = if name.starts_with("commits") {
            Status::Fail
        } else {
            Status::Pass
        };
        assert_eq!(report.checks[0].status, expected, "{report:?}");
        // The connection went back to the pool (the one-connection pool serves the query),
        // outside a transaction on the server and in sqlx's count.
        let mut conn = db.pool.acquire().await.unwrap();
        assert!(
            !sqlx::Connection::is_in_transaction(&*conn),
            "{name}: sqlx's depth"
        );
        let savepoint = sqlx::raw_sql("SAVEPOINT probe").execute(&mut *conn).await;
        let code = match &savepoint {
            Err(sqlx::Error::Database(e)) => e.code().map(|c| c.to_string()),
            _ => None,
        };
        assert_eq!(
            code.as_deref(),
            Some("25P01"),
            "{name}: the pooled connection is in a transaction: {savepoint:?}"
        );
        let application_name: String =
            sqlx::query_scalar("SELECT current_setting('application_name')")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        drop(conn);
        assert_eq!(
            application_name, db.app,
            "{name}: the check's application_name stayed on the pooled connection"
        );
    }
    assert_eq!(db.sessions("idle in transaction%").await, 0);
    assert_eq!(count(&db.pool).await, 3, "a write survived");
    db.drop_schema().await;
}

/// Inserts row 60 and updates row 1 (a row lock) in the check's transaction.
async fn writes(ctx: &mut Context) -> Result<&mut sqlx::PgConnection, CheckError> {
    let conn = ctx.postgres().await?;
    sqlx::query("INSERT INTO items VALUES (60, 'smoke')")
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE items SET note = 'smoke' WHERE id = 1")
        .execute(&mut *conn)
        .await?;
    Ok(conn)
}

/// DESIGN §4, "rollback before verdict": when `run` answers, the check's transaction has
/// ended on the server — its row locks are free and its insert gone — on the one-round-trip
/// path (a passing check) and the long one (a check that left a savepoint open). The check's
/// pool reaches Postgres through a proxy that is stalled the moment `run` answers, so
/// nothing sent after the answer (sqlx's ping on release, anything queued for it) reaches
/// the server; then another session that may not wait for a lock at all
/// (`lock_timeout = 1ms`) writes the same rows.
#[tokio::test]
async fn a_checks_locks_are_free_when_its_verdict_is_given() {
    let Some(db) = database(1).await else { return };
    let (proxy, proxied_options) = behind_a_proxy(&db).await;
    let proxied = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(proxied_options)
        .await
        .unwrap();
    let smoke = Smoketest::builder()
        .without_discovery()
        .postgres(proxied.clone())
        .check(from_fn("writes", |ctx| {
            Box::pin(async move {
                writes(ctx).await?;
                Ok(Outcome::Pass)
            })
        }))
        .check(from_fn("writes_and_leaks_a_savepoint", |ctx| {
            Box::pin(async move {
                use smoketest::db::sqlx::Connection;
                let conn = writes(ctx).await?;
                std::mem::forget(conn.begin().await?);
                Ok(Outcome::Pass)
            })
        }))
        .build()
        .unwrap();
    for name in ["writes", "writes_and_leaks_a_savepoint"] {
        for _ in 0..5 {
            let report = smoke.run(&Selection::one(name)).await.unwrap();
            proxy.stall();
            assert_eq!(report.status, Status::Pass, "{report:?}");
            sqlx::raw_sql(AssertSqlSafe(format!(
                "BEGIN; SET LOCAL search_path = {}; SET LOCAL lock_timeout = '1ms';
                 INSERT INTO items VALUES (60, 'app'); UPDATE items SET note = 'app' WHERE id = 1;
                 ROLLBACK",
                db.schema
            )))
            .execute(&db.admin)
            .await
            .unwrap_or_else(|e| panic!("{name}: the check's transaction was still open: {e}"));
            proxy.resume();
        }
    }
    proxied.close().await;
    proxy.down().await;
    db.drop_schema().await;
}

/// The runner takes an idle connection without the pool's ping on acquire. One that died
/// while idle (the server restarted, a firewall dropped it) must not fail the check: its
/// `BEGIN` fails on the broken connection, which is closed, and the begin is retried on a
/// fresh connection — whether or not the pool tests connections on acquire.
#[tokio::test]
async fn an_idle_connection_that_died_does_not_fail_the_check() {
    let _serial = serial().await;
    let Some(db) = database(1).await else { return };
    for test_before_acquire in [true, false] {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .test_before_acquire(test_before_acquire)
            .connect_with((*db.pool.connect_options()).clone())
            .await
            .unwrap();
        let smoke = Smoketest::builder()
            .without_discovery()
            .postgres(pool.clone())
            // The built-in `SELECT 1` check.
            .check(smoketest::db::postgres::ping())
            .build()
            .unwrap();
        let report = smoke.run(&Selection::all()).await.unwrap();
        assert_eq!(report.status, Status::Pass, "{report:?}");
        // Wait for the release, then kill the idle connection's backend behind the pool.
        while pool.num_idle() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let killed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE (application_name = $1 OR application_name LIKE 'smoketest % ' || $1) AND pid <> pg_backend_pid()) AS t",
        )
        .bind(&db.app)
        .fetch_one(&db.admin)
        .await
        .unwrap();
        assert!(killed >= 1, "no backend to kill");
        while db.sessions("%").await > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let report = smoke.run(&Selection::all()).await.unwrap();
        assert_eq!(
            report.status,
            Status::Pass,
            "test_before_acquire({test_before_acquire}): {report:?}"
        );
        pool.close().await;
    }
    db.drop_schema().await;
}
