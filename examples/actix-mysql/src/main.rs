//! An actix-web orders service with smoke checks, on MariaDB/MySQL or SQLite.
//!
//! ```text
//! cargo run -p smoketest-example-actix
//! curl -i localhost:3001/smoketest
//! DATABASE_URL=mysql://root@127.0.0.1:3306/test cargo run -p smoketest-example-actix
//! ```
//!
//! Configuration (environment):
//! - `DATABASE_URL`: `mysql://…` (MariaDB or MySQL) or `sqlite:…`; unset, an embedded
//!   SQLite file `smoketest-example-actix.db` in the working directory.
//! - `SMOKETEST_EXAMPLE_ADDR`: where to listen (default `127.0.0.1:3001`, beside the axum
//!   example's 3000).
//! - `RELEASE_ID`: the release this process runs, shown in reports.
//! - `SMOKETEST_EXAMPLE_DRAIN_SECS`: how long to keep serving after SIGTERM while `/readyz`
//!   answers 503 `draining` (default 5), so the pod leaves rotation before the listener
//!   closes.

mod checks;
mod db;
mod orders;

/// `println!` that never panics: a closed stdout (a log collector restarting, a test that
/// stopped reading) must not take the service down.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

use std::sync::OnceLock;

use actix_web::{App, HttpServer, web};
use db::Db;
use smoketest::Smoketest;

static DATABASE: OnceLock<Db> = OnceLock::new();

/// The pool, for checks. Set once in `main` before the server starts.
fn database() -> &'static Db {
    DATABASE
        .get()
        .expect("the database is connected before serving")
}

#[actix_web::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .init();
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "sqlite:smoketest-example-actix.db".to_string());
    let addr = std::env::var("SMOKETEST_EXAMPLE_ADDR").unwrap_or_else(|_| "127.0.0.1:3001".into());
    let drain = drain_delay()?;

    let db = Db::connect(&url).await?;
    DATABASE.set(db.clone()).expect("connected once");

    let mut builder = Smoketest::builder()
        .service("orders-example-actix")
        .version(env!("CARGO_PKG_VERSION"));
    if let Ok(release) = std::env::var("RELEASE_ID") {
        builder = builder.release_id(release);
    }
    // Checks write through `ctx.mysql()` / `ctx.sqlite()`: transactions the runner always
    // rolls back.
    builder = match &db {
        Db::MySql(pool) => builder.mysql(pool.clone()),
        Db::Sqlite(pool) => builder.sqlite(pool.clone()),
    };
    // The scenario orders::lifecycle calls the API in process (actix's App is !Send: it
    // gets a thread of its own).
    let api_db = web::Data::new(db.clone());
    builder = builder.api(smoketest::actix::api(move || {
        App::new().app_data(api_db).configure(orders::routes)
    }));
    let smoke = builder
        .redact_env("DATABASE_URL")
        .anonymous_detail(smoketest::Detail::Full)
        // Kubernetes probes (YAML in the README): /livez depends on nothing external, so a
        // database outage never restarts the pod; /readyz takes it out of rotation instead.
        // Readiness runs in the background every 5 s and probes read the latest snapshot.
        .group(smoketest::Group::live())
        .group(
            smoketest::Group::ready()
                .check("db::ping")
                .every(std::time::Duration::from_secs(5)),
        )
        .build()
        .map_err(|e| e.to_string())?;

    let path = smoke.path().to_string();
    let checks = smoke.check_names().count();
    let draining = smoke.drain_after(shutdown_signal(), drain);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(db.clone()))
            .configure(orders::routes)
            .service(smoketest::actix::scope(smoke.clone()))
    })
    // Our own SIGTERM handling below drains before stopping; actix's would stop at once.
    .disable_signals()
    .bind(&addr)
    .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| format!("listening on {addr} gave no address"))?;
    say!(
        "orders-example-actix on http://{local} ({} backend, {checks} smoke checks)\n  smoke checks: http://{local}{path}",
        database().backend(),
    );
    let server = server.run();
    // On SIGTERM /readyz answers 503 `draining` at once while everything else is served for
    // `drain` more; then the server stops accepting and finishes the requests in flight.
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        draining.await;
        handle.stop(true).await;
    });
    server.await.map_err(|e| e.to_string())?;
    say!("orders-example-actix stopped");
    Ok(())
}

/// `SMOKETEST_EXAMPLE_DRAIN_SECS` (default 5).
fn drain_delay() -> Result<std::time::Duration, String> {
    match std::env::var("SMOKETEST_EXAMPLE_DRAIN_SECS") {
        Err(_) => Ok(std::time::Duration::from_secs(5)),
        Ok(secs) => secs
            .parse()
            .map(std::time::Duration::from_secs)
            .map_err(|_| {
                format!("SMOKETEST_EXAMPLE_DRAIN_SECS must be whole seconds, not `{secs}`")
            }),
    }
}

/// SIGTERM (what Kubernetes sends a pod it stops) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = terminate => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C received"),
    }
}
