//! The example service on Postgres (`SMOKETEST_TEST_POSTGRES_URL`): hammering `/smoketest`,
//! with some clients hanging up half-way, leaves every table's row count unchanged.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The Postgres URL, or `None` after `skipped: …` (a failure under
/// `SMOKETEST_REQUIRE_SERVICES=1`).
fn postgres_url() -> Option<String> {
    match std::env::var("SMOKETEST_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("SMOKETEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "SMOKETEST_TEST_POSTGRES_URL is not set and SMOKETEST_REQUIRE_SERVICES=1"
            );
            eprintln!("skipped: SMOKETEST_TEST_POSTGRES_URL is not set");
            None
        }
    }
}

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET `path`; the status code, or `None` when `hang_up` closes the socket after sending.
async fn get(addr: &str, path: &str, hang_up: bool) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    if hang_up {
        return None;
    }
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    let status = text.split(' ').nth(1).and_then(|code| code.parse().ok());
    if status != Some(200) {
        eprintln!("{text}");
    }
    status
}

async fn row_counts(pool: &PgPool, schema: &str) -> BTreeMap<String, i64> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .unwrap();
    let mut counts = BTreeMap::new();
    for table in tables {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {schema}.{table}"
        )))
        .fetch_one(pool)
        .await
        .unwrap();
        counts.insert(table, n);
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hammering_smoketest_on_postgres_leaves_every_table_unchanged() {
    let Some(url) = postgres_url() else { return };
    let admin = PgPool::connect(&url).await.unwrap();
    let schema = format!("smoketest_example_{}", std::process::id());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    )))
    .execute(&admin)
    .await
    .unwrap();
    let separator = if url.contains('?') { '&' } else { '?' };
    let service_url = format!("{url}{separator}options=-c%20search_path%3D{schema}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let _service = Service(
        Command::new(env!("CARGO_BIN_EXE_smoketest-example-axum"))
            .env("DATABASE_URL", &service_url)
            .env("SMOKETEST_EXAMPLE_ADDR", &addr)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while TcpStream::connect(&addr).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the example did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {schema}.orders (item, quantity) VALUES ('existing', 1), ('existing', 2)"
    )))
    .execute(&admin)
    .await
    .unwrap();
    let before = row_counts(&admin, &schema).await;
    assert_eq!(before.get("orders"), Some(&2), "{before:?}");

    let addr = Arc::new(addr);
    let started = Instant::now();
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..400 {
        let addr = addr.clone();
        requests.spawn(async move { get(&addr, "/smoketest", i % 5 == 4).await });
        if requests.len() >= 16 {
            let status = requests.join_next().await.unwrap().unwrap();
            assert!(matches!(status, None | Some(200)), "status {status:?}");
        }
    }
    while let Some(status) = requests.join_next().await {
        let status = status.unwrap();
        assert!(matches!(status, None | Some(200)), "status {status:?}");
    }
    eprintln!(
        "example: 400 requests to /smoketest on Postgres (80 hung up) in {:?}",
        started.elapsed()
    );

    // Hung-up requests finish in the background: give them a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(row_counts(&admin, &schema).await, before);
    let idle_in_transaction: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' AND datname = current_database()",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(idle_in_transaction, 0);

    // The write check ran (and passed) in every one of those requests.
    let mut stream = TcpStream::connect(addr.as_str()).await.unwrap();
    let request = format!("GET /smoketest HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap();
    let report: serde_json::Value = serde_json::from_str(body).unwrap();
    let roundtrip = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "orders::order_roundtrip")
        .expect("the write check is registered");
    assert_eq!(roundtrip["status"], "pass", "{roundtrip}");

    drop(_service);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await
        .unwrap();
}
