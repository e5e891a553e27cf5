//! An orders service with smoke checks: the example to copy.
//!
//! ```text
//! cargo run -p smoketest-example-axum
//! curl -i localhost:3000/smoketest
//! ```
//!
//! Configuration (environment):
//! - `DATABASE_URL`: `sqlite:…` or `postgres://…`; unset, an embedded SQLite file
//!   `smoketest-example.db` in the working directory.
//! - `SMOKETEST_EXAMPLE_ADDR`: where to listen (default `127.0.0.1:3000`).
//! - `RELEASE_ID`: the release this process runs, shown in reports.
//! - `SMOKETEST_EXAMPLE_GRPC_ADDR`: when set (e.g. `127.0.0.1:50051`), also serve gRPC
//!   health checking (`grpc.health.v1.Health`) there: service `""` is every check, `live`
//!   and `ready` the groups.
//! - `ORDERS_API_TOKENS`: fixed bearer tokens for the orders API, `clerk:…,viewer:…`.
//! - `SMOKETEST_TOKEN`: a bearer token; when set, anonymous callers see statuses and error
//!   kinds only, token holders everything. Unset, everybody sees everything (development).
//! - `SMOKETEST_EXAMPLE_DRAIN_SECS`: how long to keep serving after SIGTERM while `/readyz`
//!   answers 503 `draining` (default 5), so the pod leaves rotation before the listener
//!   closes.

mod auth;
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

use db::Db;
use smoketest::Smoketest;

static DATABASE: OnceLock<Db> = OnceLock::new();

/// The pool, for checks. Set once in `main` before the server starts.
fn database() -> &'static Db {
    DATABASE
        .get()
        .expect("the database is connected before serving")
}

impl Db {
    fn backend(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }
}

#[tokio::main]
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
    let url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite:smoketest-example.db".to_string());
    let addr = std::env::var("SMOKETEST_EXAMPLE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let drain = drain_delay()?;

    let db = Db::connect(&url).await?;
    DATABASE.set(db.clone()).expect("connected once");
    let tokens = auth::Tokens::from_env()?;
    let api = orders::routes(db.clone(), tokens.clone());

    let mut builder = Smoketest::builder()
        .service("orders-example")
        .version(env!("CARGO_PKG_VERSION"));
    if let Ok(release) = std::env::var("RELEASE_ID") {
        builder = builder.release_id(release);
    }
    // Checks write through `ctx.sqlite()` / `ctx.postgres()`: transactions the runner
    // always rolls back.
    builder = match &db {
        Db::Sqlite(pool) => builder.sqlite(pool.clone()),
        Db::Postgres(pool) => builder.postgres(pool.clone()),
    };
    // Safe to expose: DATABASE_URL's value never appears in a report or log line. With
    // SMOKETEST_TOKEN set, only callers presenting it see error messages; without it (local
    // development) everybody does.
    builder = builder.redact_env("DATABASE_URL");
    // Scenario checks (orders::lifecycle) call the API in process, as a clerk and a viewer.
    builder = auth::personas(builder.api(smoketest::axum::api(api.clone())), &tokens);
    builder = match std::env::var("SMOKETEST_TOKEN") {
        Ok(token) if !token.is_empty() => builder.bearer_token(token),
        _ => builder.anonymous_detail(smoketest::Detail::Full),
    };
    let smoke = builder
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

    let app = api.merge(smoketest::axum::router(smoke.clone()));

    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    say!(
        "orders-example on http://{local} ({} backend, {} smoke checks)\n  smoke checks: http://{local}{}",
        database().backend(),
        smoke.check_names().count(),
        smoke.path()
    );
    // gRPC health checking (grpc.health.v1.Health) from the same checks, on a second port:
    // `grpc_health_probe -addr=… -service=ready`, or a Kubernetes `grpc` probe.
    if let Ok(grpc_addr) = std::env::var("SMOKETEST_EXAMPLE_GRPC_ADDR") {
        let grpc_listener = tokio::net::TcpListener::bind(&grpc_addr)
            .await
            .map_err(|e| {
                format!("cannot listen on {grpc_addr} (SMOKETEST_EXAMPLE_GRPC_ADDR): {e}")
            })?;
        let grpc_local = grpc_listener.local_addr().map_err(|e| e.to_string())?;
        say!("  gRPC health: {grpc_local} (services \"\", \"live\", \"ready\")");
        let health = smoketest::tonic::health_server(smoke.clone());
        let incoming = tonic::transport::server::TcpIncoming::from(grpc_listener);
        tokio::spawn(async move {
            let serving = tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming(incoming);
            if let Err(e) = serving.await {
                eprintln!("error: the gRPC health server on {grpc_local} stopped: {e}");
            }
        });
    }
    // On SIGTERM /readyz answers 503 `draining` at once while everything else is served for
    // `drain` more; then the server stops accepting and finishes the requests in flight.
    axum::serve(listener, app)
        .with_graceful_shutdown(smoke.drain_after(shutdown_signal(), drain))
        .await
        .map_err(|e| e.to_string())?;
    say!("orders-example stopped");
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
