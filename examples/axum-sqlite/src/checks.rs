//! Smoke checks for the service's environment, declared beside the code they watch.

use smoketest::{Context, Outcome, ensure, ensure_eq};

use crate::db::Db;

/// The database answers a trivial query.
///
/// Slower than 1 s (half its timeout) is reported as `warn` (kind `slow`): a pool or disk
/// in trouble shows before it times out.
#[smoketest::check(name = "db::ping", tags = ["db"], timeout = "2s", warn_after = "1s")]
async fn ping(ctx: &mut Context) -> smoketest::Result {
    let one: i64 = match crate::database() {
        Db::Sqlite(pool) => sqlx::query_scalar("SELECT 1").fetch_one(pool).await?,
        Db::Postgres(pool) => {
            sqlx::query_scalar("SELECT 1::BIGINT")
                .fetch_one(pool)
                .await?
        }
    };
    ctx.observe("backend", crate::database().backend());
    ensure_eq!(one, 1, "SELECT 1");
    Ok(Outcome::Pass)
}

/// The temporary directory accepts a file: many libraries spool there.
#[smoketest::check(tags = ["disk"])]
async fn temp_dir_writable(ctx: &mut Context) -> smoketest::Result {
    // Concurrent runs each need their own file.
    static RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "smoketest-example-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    tokio::fs::write(&path, b"smoke").await?;
    let cleanup = path.clone();
    ctx.defer(async move {
        tokio::fs::remove_file(cleanup).await?;
        Ok(())
    });
    let read = tokio::fs::read(&path).await?;
    ensure!(
        read == b"smoke",
        "read back {} bytes that differ from what was written",
        read.len()
    );
    Ok(Outcome::Pass)
}
