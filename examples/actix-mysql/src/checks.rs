//! Smoke checks for the service's environment, declared beside the code they watch.

use smoketest::{Context, Outcome, ensure, ensure_eq};

use crate::db::Db;

/// The database answers a trivial query.
///
/// Slower than 1 s (half its timeout) is reported as `warn` (kind `slow`): a pool or disk
/// in trouble shows before it times out.
#[smoketest::check(name = "db::ping", tags = ["db"], timeout = "2s", warn_after = "1s")]
async fn ping(ctx: &mut Context) -> smoketest::Result {
    let db = crate::database();
    let one: i64 = match db {
        Db::MySql(pool) => {
            sqlx::query_scalar("SELECT CAST(1 AS SIGNED)")
                .fetch_one(pool)
                .await?
        }
        Db::Sqlite(pool) => sqlx::query_scalar("SELECT 1").fetch_one(pool).await?,
    };
    ctx.observe("backend", db.backend());
    ctx.observe("orders", db.count_orders().await?);
    ensure_eq!(one, 1, "SELECT 1");
    Ok(Outcome::Pass)
}

/// The temporary directory accepts a file: many libraries spool there. The file system
/// calls block, so they go to `spawn_blocking` and leave the actix worker free.
#[smoketest::check(tags = ["disk"])]
async fn temp_dir_writable(ctx: &mut Context) -> smoketest::Result {
    let path = std::env::temp_dir().join(format!(
        "smoketest-example-actix-{}-{}",
        std::process::id(),
        ctx.remaining().as_nanos()
    ));
    let cleanup = path.clone();
    ctx.defer(async move {
        tokio::task::spawn_blocking(move || match std::fs::remove_file(&cleanup) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await??;
        Ok(())
    });
    let read = tokio::task::spawn_blocking(move || {
        std::fs::write(&path, b"smoke")?;
        std::fs::read(&path)
    })
    .await??;
    ensure!(
        read == b"smoke",
        "read back {} bytes that differ from what was written",
        read.len()
    );
    Ok(Outcome::Pass)
}
