//! The example service, run as its binary: its smoke checks pass on SQLite and on MariaDB,
//! and the write check leaves no row behind.

use std::process::Stdio;
use std::time::Duration;

use sqlx::Connection;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Start the example on a free port with `database_url`; return the process and the
/// smoketest URL it prints.
async fn start(database_url: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_smoketest-example-actix"))
        .env("DATABASE_URL", database_url)
        .env("SMOKETEST_EXAMPLE_ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the example binary");
    // Keep reading stdout (the log goes there too) for as long as the example runs.
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (found, url) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut found = Some(found);
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(url) = line.trim().strip_prefix("smoke checks: ")
                && let Some(found) = found.take()
            {
                let _ = found.send(url.to_string());
            }
        }
    });
    let url = tokio::time::timeout(Duration::from_secs(30), url)
        .await
        .expect("the example printed its URL in time")
        .expect("the example exited without printing its smoketest URL");
    (child, url)
}

/// The smoke checks pass, and `GET /orders` shows that the write check left nothing.
async fn smoke_checks_pass_and_leave_no_row(database_url: &str, backend: &str) {
    let (mut child, url) = start(database_url).await;
    for _ in 0..2 {
        let response = reqwest::get(&url).await.expect("GET /smoketest");
        assert_eq!(response.status(), 200);
        let report: serde_json::Value =
            serde_json::from_str(&response.text().await.expect("body")).expect("JSON report");
        assert_eq!(report["status"], "pass", "{report:#}");
        let names: Vec<&str> = report["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .map(|c| c["name"].as_str().expect("name"))
            .collect();
        assert_eq!(
            names,
            [
                "checks::temp_dir_writable",
                "db::ping",
                "orders::lifecycle",
                "orders::order_roundtrip"
            ]
        );
        assert_eq!(report["checks"][1]["observed"]["backend"], backend);
    }
    let orders = reqwest::get(url.replace("/smoketest", "/orders"))
        .await
        .expect("GET /orders")
        .text()
        .await
        .expect("body");
    assert_eq!(orders, "[]", "the write check left rows behind");
    child.kill().await.expect("stop the example");
}

#[tokio::test]
async fn smoke_checks_pass_on_sqlite_and_leave_no_row() {
    let dir = std::env::temp_dir().join(format!(
        "smoketest-example-actix-test-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let url = format!("sqlite:{}", dir.join("orders.db").display());
    smoke_checks_pass_and_leave_no_row(&url, "sqlite").await;
    std::fs::remove_dir_all(&dir).expect("remove the temp dir");
}

#[tokio::test]
async fn smoke_checks_pass_on_mariadb_and_leave_no_row() {
    let Ok(server) = std::env::var("SMOKETEST_TEST_MYSQL_URL") else {
        assert!(
            std::env::var("SMOKETEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "SMOKETEST_TEST_MYSQL_URL is unset but SMOKETEST_REQUIRE_SERVICES=1"
        );
        eprintln!("skipped: SMOKETEST_TEST_MYSQL_URL is not set");
        return;
    };
    // A database of its own, dropped afterwards.
    let name = format!("smoketest_example_actix_{}", std::process::id());
    let mut admin = sqlx::MySqlConnection::connect(&server)
        .await
        .expect("connect to SMOKETEST_TEST_MYSQL_URL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}"
    )))
    .execute(&mut admin)
    .await
    .expect("create the test database");
    let base = server
        .rsplit_once('/')
        .map(|(base, _)| base)
        .expect("a mysql://…/database URL");
    smoke_checks_pass_and_leave_no_row(&format!("{base}/{name}"), "mysql").await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("drop the test database");
}
