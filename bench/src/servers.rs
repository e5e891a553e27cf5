//! The benchmark servers: small axum apps, one per process, each configured for one
//! scenario, so that each is measured alone and its memory can be read from `/proc`.
//!
//! `smoketest-bench serve APP [--postgres URL] [--pool N] [--checks N]` binds `127.0.0.1:0`, prints
//! `listening ADDR` on its first line of output, and serves until its standard input
//! closes (the driver holds it open), so a server never outlives the benchmark.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::ServiceExt;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::ListenerExt;
use bytes::Bytes;
use serde::Serialize;
use smoketest_core::{
    Context, Detail, Outcome, Smoketest, SmoketestBuilder, Status, ensure_eq, from_fn,
};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tower::Layer;

/// The table the Postgres check (and pgbench) write to, always rolled back.
pub const TABLE: &str = "smoketest_bench_orders";
const INSERT: &str =
    "INSERT INTO smoketest_bench_orders (item, quantity) VALUES ($1, $2) RETURNING id";
const SELECT: &str = "SELECT id, item, quantity FROM smoketest_bench_orders WHERE id = $1";

/// How many check bodies have run in this process (every check counts itself).
static CHECK_RUNS: AtomicU64 = AtomicU64::new(0);

/// One benchmark server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum App {
    /// `GET /orders`: a small JSON API route, no smoketest.
    Api,
    /// The same route with the smoketest endpoint (10 no-op checks) mounted as the README
    /// shows: `Router::merge(smoketest_axum::router(smoke))`.
    ApiMerged,
    /// The same route with `SmoketestLayer` (10 no-op checks) added with `Router::layer`,
    /// as the adapter's documentation shows.
    ApiWithLayer,
    /// The same route with `SmoketestLayer` wrapped once around the whole router
    /// (`layer.layer(router).into_make_service()`), before routing.
    ApiWithOuterLayer,
    /// `/smoketest` with `--checks N` no-op checks (10 by default); every request runs them.
    Endpoint,
    /// `/smoketest` answered by a bare handler with a fixed body produced by the same
    /// `--checks N` checks at start-up: the cost of HTTP alone.
    Bare,
    /// `/smoketest` with one Postgres check; every request runs it.
    Postgres,
    /// `/smoketest` with 10 checks that each sleep 100 ms.
    Parallel,
    /// `/smoketest` with 10 no-op checks and the Postgres check, every setting at its
    /// default.
    Flood,
    /// As `Flood`, but every request runs the checks: the most allocation per request.
    Memory,
}

impl App {
    /// Every app, for parsing.
    pub const ALL: [App; 10] = [
        App::Api,
        App::ApiMerged,
        App::ApiWithLayer,
        App::ApiWithOuterLayer,
        App::Endpoint,
        App::Bare,
        App::Postgres,
        App::Parallel,
        App::Flood,
        App::Memory,
    ];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            App::Api => "api",
            App::ApiMerged => "api-merged",
            App::ApiWithLayer => "api-with-layer",
            App::ApiWithOuterLayer => "api-with-outer-layer",
            App::Endpoint => "endpoint",
            App::Bare => "bare",
            App::Postgres => "postgres",
            App::Parallel => "parallel",
            App::Flood => "flood",
            App::Memory => "memory",
        }
    }

    fn parse(name: &str) -> Option<App> {
        App::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// `/smoketest` where every request runs the checks: no cache, no rate limit, no
/// single-flight, for the scenarios that measure the cost of a run rather than the cost of
/// not running. It takes the steps `Smoketest::handle` takes — parse the request, run the
/// selection, restrict the report to the anonymous detail level, write it — without the
/// engine in between, which decides whether a request runs at all.
fn every_request(smoke: Smoketest) -> Router {
    let answer = move |request: axum::extract::Request| {
        let smoke = smoke.clone();
        async move {
            let (parts, _body) = request.into_parts();
            let parsed = match smoke.parse_request(&parts) {
                Ok(parsed) => parsed,
                Err(e) => return e.into_response().map(axum::body::Body::from),
            };
            let report = match smoke.run(&parsed.selection).await {
                Ok(report) => report.into_restricted(Detail::default()),
                Err(unknown) => {
                    return (http::StatusCode::NOT_FOUND, unknown.to_string()).into_response();
                }
            };
            let status = if report.status == Status::Fail {
                http::StatusCode::INTERNAL_SERVER_ERROR
            } else {
                http::StatusCode::OK
            };
            let body = if parsed.head {
                Vec::new()
            } else {
                parsed.format.write(&report)
            };
            (
                status,
                [
                    (header::CONTENT_TYPE, parsed.format.content_type()),
                    (header::CACHE_CONTROL, "no-store"),
                    (header::VARY, "Accept"),
                ],
                body,
            )
                .into_response()
        }
    };
    Router::new()
        .route("/smoketest", get(answer))
        .route("/bench/stats", get(stats))
}

fn noop_checks(mut builder: SmoketestBuilder, count: usize) -> SmoketestBuilder {
    for i in 0..count {
        builder = builder.check(from_fn(format!("noop::{i:02}"), |_ctx| {
            CHECK_RUNS.fetch_add(1, Ordering::Relaxed);
            Box::pin(async { Ok(Outcome::Pass) })
        }));
    }
    builder
}

fn postgres_check(builder: SmoketestBuilder, pool: PgPool) -> SmoketestBuilder {
    builder.postgres(pool).check(
        from_fn("db::order_roundtrip", |ctx| {
            CHECK_RUNS.fetch_add(1, Ordering::Relaxed);
            Box::pin(order_roundtrip(ctx))
        })
        .tag("db"),
    )
}

/// INSERT and SELECT inside the transaction `ctx.postgres()` begins and the runner rolls
/// back: on the wire BEGIN (with the deadline set inside the database), INSERT, SELECT,
/// ROLLBACK — the transaction pgbench runs too (see `pg.rs`).
async fn order_roundtrip(ctx: &mut Context) -> smoketest_core::Result {
    let conn = ctx.postgres().await?;
    let (id,): (i64,) = sqlx::query_as(INSERT)
        .bind("smoketest")
        .bind(1_i64)
        .fetch_one(&mut *conn)
        .await?;
    let (read_id, item, quantity): (i64, String, i64) = sqlx::query_as(SELECT)
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    ensure_eq!(read_id, id, "id read back");
    ensure_eq!(item.as_str(), "smoketest", "item read back");
    ensure_eq!(quantity, 1, "quantity read back");
    Ok(Outcome::Pass)
}

#[derive(Serialize)]
struct Order {
    id: i64,
    item: &'static str,
    quantity: i64,
}

/// The API route of the pass-through scenario: a small JSON list, serialized per request.
async fn orders() -> axum::Json<Vec<Order>> {
    axum::Json(vec![
        Order {
            id: 1,
            item: "espresso beans",
            quantity: 2,
        },
        Order {
            id: 2,
            item: "milk frother",
            quantity: 1,
        },
        Order {
            id: 3,
            item: "paper filters",
            quantity: 100,
        },
    ])
}

async fn stats() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "check_runs": CHECK_RUNS.load(Ordering::Relaxed) }))
}

fn with_stats(smoke: Smoketest) -> Router {
    smoketest_axum::router(smoke).route("/bench/stats", get(stats))
}

fn base() -> SmoketestBuilder {
    Smoketest::builder()
        .service("smoketest-bench")
        .version(env!("CARGO_PKG_VERSION"))
        .without_discovery()
}

fn build(builder: SmoketestBuilder) -> Result<Smoketest, String> {
    builder
        .build()
        .map_err(|e| format!("building the smoketest: {e}"))
}

async fn pool(url: Option<&str>, size: u32) -> Result<PgPool, String> {
    let url = url.ok_or("this app needs --postgres URL")?;
    PgPoolOptions::new()
        .max_connections(size)
        .min_connections(size)
        // One connection per worker, as pgbench holds one per client: a liveness ping
        // on every acquire would be one more round trip than the transaction pgbench runs.
        .test_before_acquire(false)
        .connect(url)
        .await
        .map_err(|e| format!("cannot connect to Postgres at {url}: {e}"))
}

/// What `serve` was asked for besides the app.
struct Settings<'a> {
    postgres: Option<&'a str>,
    pool: u32,
    checks: usize,
}

async fn app(app: App, settings: &Settings<'_>) -> Result<Router, String> {
    let (postgres, pool_size) = (settings.postgres, settings.pool);
    Ok(match app {
        App::Api | App::ApiWithOuterLayer => Router::new().route("/orders", get(orders)),
        App::ApiMerged => {
            let smoke = build(noop_checks(base(), 10))?;
            Router::new()
                .route("/orders", get(orders))
                .merge(smoketest_axum::router(smoke))
        }
        App::ApiWithLayer => {
            let smoke = build(noop_checks(base(), 10))?;
            Router::new()
                .route("/orders", get(orders))
                .layer(smoketest_axum::SmoketestLayer::new(smoke))
        }
        App::Endpoint => every_request(build(noop_checks(base(), settings.checks))?),
        App::Bare => {
            let smoke = build(noop_checks(base(), settings.checks))?;
            let (parts, ()) = http::Request::get("/smoketest")
                .body(())
                .expect("a valid request")
                .into_parts();
            let model = smoke.handle(&parts).await;
            let content_type = model.headers()[header::CONTENT_TYPE].clone();
            let body: Bytes = model.into_body();
            Router::new().route(
                "/smoketest",
                get(move || {
                    let body = body.clone();
                    let content_type = content_type.clone();
                    async move {
                        (
                            [
                                (header::CONTENT_TYPE, content_type),
                                (header::CACHE_CONTROL, "no-store".parse().expect("valid")),
                                (header::VARY, "Accept".parse().expect("valid")),
                            ],
                            body,
                        )
                            .into_response()
                    }
                }),
            )
        }
        App::Postgres => {
            let pool = pool(postgres, pool_size).await?;
            every_request(build(postgres_check(base(), pool))?)
        }
        App::Parallel => {
            let mut builder = base();
            for i in 0..10 {
                builder = builder.check(from_fn(format!("sleep::{i:02}"), |_ctx| {
                    CHECK_RUNS.fetch_add(1, Ordering::Relaxed);
                    Box::pin(async {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok(Outcome::Pass)
                    })
                }));
            }
            every_request(build(builder)?)
        }
        App::Flood => {
            let mut builder = noop_checks(base(), 10);
            if postgres.is_some() {
                builder = postgres_check(builder, pool(postgres, pool_size).await?);
            }
            with_stats(build(builder)?)
        }
        App::Memory => {
            let mut builder = noop_checks(base(), 10);
            if postgres.is_some() {
                builder = postgres_check(builder, pool(postgres, pool_size).await?);
            }
            every_request(build(builder)?)
        }
    })
}

/// `smoketest-bench serve APP [--postgres URL] [--pool N] [--checks N]`.
pub fn main(args: &[String]) -> Result<(), String> {
    let mut args = args.iter();
    let name = args.next().ok_or("serve: which app?")?;
    let which = App::parse(name).ok_or_else(|| {
        format!(
            "serve: unknown app `{name}`; one of: {}",
            App::ALL.map(App::name).join(", ")
        )
    })?;
    let mut postgres = None;
    let mut pool_size = 10;
    let mut checks = 10;
    let mut workers = None;
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--postgres" => postgres = Some(value.clone()),
            "--pool" => pool_size = value.parse().map_err(|_| "--pool takes a number")?,
            "--checks" => checks = value.parse().map_err(|_| "--checks takes a number")?,
            "--workers" => {
                workers = Some(value.parse().map_err(|_| "--workers takes a number")?);
            }
            _ => return Err(format!("serve: unknown option {flag}")),
        }
    }
    let settings = Settings {
        postgres: postgres.as_deref(),
        pool: pool_size,
        checks,
    };

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = workers {
        runtime.worker_threads(workers);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let router = app(which, &settings).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot listen on loopback: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        println!("listening {addr}");
        // Exit when the driver closes our standard input (or dies).
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            std::process::exit(0);
        });
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let served = if which == App::ApiWithOuterLayer {
            let smoke = build(noop_checks(base(), 10))?;
            let service = smoketest_axum::SmoketestLayer::new(smoke).layer(router);
            axum::serve(
                listener,
                ServiceExt::<axum::extract::Request>::into_make_service(service),
            )
            .await
        } else {
            axum::serve(listener, router).await
        };
        served.map_err(|e| format!("serving: {e}"))
    })
}
