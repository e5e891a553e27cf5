//! Postgres for the benchmarks: a database of their own, the table the check writes to,
//! pgbench running the same transaction, and the server's transaction counters.

use std::time::Duration;

use sqlx::{Connection, PgConnection};
use tokio::process::Command;

use crate::servers::TABLE;

/// The database the benchmarks create (and drop) so that its statistics count only them.
const DATABASE: &str = "smoketest_bench";

/// The benchmark's database.
#[derive(Debug, Clone)]
pub struct Db {
    /// Where to connect (the benchmark's own database when it could be created).
    pub url: String,
    /// The database given, used to create and drop ours.
    admin_url: String,
    /// Whether we created a database of our own (and drop it at the end).
    own: bool,
    /// `SELECT version()`.
    pub version: String,
}

/// `url` with its database name replaced by `database`.
fn with_database(url: &str, database: &str) -> Option<String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://")? + 3;
    let path_start = base[after_scheme..]
        .find('/')
        .map_or(base.len(), |i| after_scheme + i);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

/// `url` pointed at `proxy` instead of its own host, without TLS (the proxy reads the
/// protocol), and the address it pointed at (host and port, default port 5432).
pub fn via_proxy(url: &str, proxy: std::net::SocketAddr) -> Option<(String, String)> {
    let after_scheme = url.find("://")? + 3;
    let rest = &url[after_scheme..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if host_port.is_empty() {
        return None;
    }
    let target = if host_port.ends_with(']') || !host_port.contains(':') {
        format!("{host_port}:5432")
    } else {
        host_port.to_string()
    };
    let mut out = url[..after_scheme].to_string();
    if let Some(u) = userinfo {
        out.push_str(u);
        out.push('@');
    }
    out.push_str(&proxy.to_string());
    let tail = &rest[authority_end..];
    out.push_str(tail);
    out.push(if tail.contains('?') { '&' } else { '?' });
    out.push_str("sslmode=disable");
    Some((out, target))
}

async fn connect(url: &str) -> Result<PgConnection, String> {
    tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(url))
        .await
        .map_err(|_| format!("connecting to Postgres at {url} timed out"))?
        .map_err(|e| format!("cannot connect to Postgres at {url}: {e}"))
}

/// Create the benchmark's database (or fall back to `url`'s own) and its table.
pub async fn prepare(url: &str) -> Result<Db, String> {
    let mut admin = connect(url).await?;
    let (version,): (String,) = sqlx::query_as("SELECT version()")
        .fetch_one(&mut admin)
        .await
        .map_err(|e| format!("SELECT version(): {e}"))?;
    let exists: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(DATABASE)
        .fetch_optional(&mut admin)
        .await
        .map_err(|e| format!("reading pg_database: {e}"))?;
    let created = match exists {
        Some(_) => true,
        None => sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {DATABASE}")))
            .execute(&mut admin)
            .await
            .is_ok(),
    };
    let _ = admin.close().await;
    let (bench_url, own) = match with_database(url, DATABASE) {
        Some(u) if created => (u, true),
        _ => (url.to_string(), false),
    };
    let mut conn = connect(&bench_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, item text NOT NULL, quantity bigint NOT NULL)"
    )))
    .execute(&mut conn)
    .await
    .map_err(|e| format!("creating {TABLE}: {e}"))?;
    let _ = conn.close().await;
    Ok(Db {
        url: bench_url,
        admin_url: url.to_string(),
        own,
        version: version.split(" on ").next().unwrap_or(&version).to_string(),
    })
}

impl Db {
    /// Transactions committed plus rolled back in the benchmark's database so far, as the
    /// statistics system last heard of them (backends report within about a second).
    pub async fn transactions(&self) -> Result<i64, String> {
        let mut conn = connect(&self.url).await?;
        let (n,): (i64,) = sqlx::query_as(
            "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&mut conn)
        .await
        .map_err(|e| format!("reading pg_stat_database: {e}"))?;
        let _ = conn.close().await;
        Ok(n)
    }

    /// Drop what [`prepare`] made.
    pub async fn teardown(&self) {
        if self.own {
            if let Ok(mut admin) = connect(&self.admin_url).await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await;
                let _ = admin.close().await;
            }
        } else if let Ok(mut conn) = connect(&self.url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {TABLE}")))
                .execute(&mut conn)
                .await;
            let _ = conn.close().await;
        }
    }

    /// Run pgbench for `seconds` with `clients` connections on the check's transaction;
    /// returns its transactions per second (without connection time).
    pub async fn pgbench(&self, clients: usize, seconds: u64) -> Result<f64, String> {
        let script = std::env::temp_dir().join(format!(
            "smoketest-bench-{}-roundtrip.sql",
            std::process::id()
        ));
        std::fs::write(&script, pgbench_script())
            .map_err(|e| format!("writing {}: {e}", script.display()))?;
        let output = Command::new("pgbench")
            .args(["--no-vacuum", "--protocol=prepared"])
            .arg(format!("--client={clients}"))
            .arg(format!("--jobs={}", clients.min(2)))
            .arg(format!("--time={seconds}"))
            .arg(format!("--file={}", script.display()))
            .arg(&self.url)
            .kill_on_drop(true)
            .output()
            .await;
        let _ = std::fs::remove_file(&script);
        let output = output.map_err(|e| {
            format!("cannot run pgbench ({e}); scripts/bench.sh installs it (Debian package postgresql-client)")
        })?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(format!(
                "pgbench failed ({}): {}{}",
                output.status,
                stdout.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        parse_tps(&stdout)
            .ok_or_else(|| format!("no `tps = …` line in pgbench's output:\n{stdout}"))
    }
}

/// The check's transaction for pgbench: the same statements, the same round trips.
pub fn pgbench_script() -> String {
    format!(
        "BEGIN;\n\
         INSERT INTO {TABLE} (item, quantity) VALUES ('smoketest', 1) RETURNING id \\gset\n\
         SELECT id, item, quantity FROM {TABLE} WHERE id = :id;\n\
         ROLLBACK;\n"
    )
}

fn parse_tps(output: &str) -> Option<f64> {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_in_a_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "b").as_deref(),
            Some("postgres://postgres@127.0.0.1:5432/b")
        );
        assert_eq!(
            with_database("postgres://u:p@h/test?sslmode=disable", "b").as_deref(),
            Some("postgres://u:p@h/b?sslmode=disable")
        );
        assert_eq!(
            with_database("postgres://h:5432", "b").as_deref(),
            Some("postgres://h:5432/b")
        );
        assert_eq!(with_database("not a url", "b"), None);
    }

    #[test]
    fn points_a_url_at_the_proxy_without_tls() {
        let proxy: std::net::SocketAddr = "127.0.0.1:6000".parse().unwrap();
        assert_eq!(
            via_proxy("postgres://postgres@db.internal:5433/bench", proxy),
            Some((
                "postgres://postgres@127.0.0.1:6000/bench?sslmode=disable".into(),
                "db.internal:5433".into()
            ))
        );
        assert_eq!(
            via_proxy("postgres://u:p@h/b?application_name=x", proxy),
            Some((
                "postgres://u:p@127.0.0.1:6000/b?application_name=x&sslmode=disable".into(),
                "h:5432".into()
            ))
        );
        assert_eq!(via_proxy("not a url", proxy), None);
    }

    #[test]
    fn reads_tps_from_pgbench_output() {
        let out = "number of failed transactions: 0 (0.000%)\nlatency average = 0.388 ms\ninitial connection time = 23.882 ms\ntps = 5159.827046 (without initial connection time)\n";
        assert_eq!(parse_tps(out), Some(5159.827046));
        assert_eq!(parse_tps("nothing"), None);
    }
}
