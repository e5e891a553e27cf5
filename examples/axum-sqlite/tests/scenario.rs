//! The example service on SQLite: the `orders::lifecycle` scenario passes as clerk and
//! viewer; and when a middle step fails (a trigger corrupts every new order, so "read it
//! back" finds another quantity), the later steps are skipped and the teardown still
//! deletes the order the scenario created through the API, outside any smoke
//! transaction: the table's row count is what it was before.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;

use sqlx::SqlitePool;
use sqlx::sqlite::SqliteConnectOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start the example on `database_url` and a free port; its address.
fn start(database_url: &str) -> (Service, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_smoketest-example-axum"))
        .env("DATABASE_URL", database_url)
        .env("SMOKETEST_EXAMPLE_ADDR", "127.0.0.1:0")
        .env_remove("SMOKETEST_TOKEN")
        .env_remove("ORDERS_API_TOKENS")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the example binary starts");
    let stdout = child.stdout.take().unwrap();
    let service = Service(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    // "orders-example on http://127.0.0.1:PORT (…"
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    (service, addr)
}

/// GET `path` over HTTP/1.1; the status code and the body.
async fn get(addr: &str, path: &str) -> (u16, serde_json::Value) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap())
}

async fn database(dir: &std::path::Path) -> (String, SqlitePool) {
    let url = format!("sqlite:{}", dir.join("orders.db").display());
    let options = SqliteConnectOptions::from_str(&url)
        .unwrap()
        .create_if_missing(true);
    let pool = SqlitePool::connect_with(options).await.unwrap();
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS orders (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            item TEXT NOT NULL,
            quantity INTEGER NOT NULL CHECK (quantity > 0))",
    )
    .execute(&pool)
    .await
    .unwrap();
    // Real orders, there before the smoke test.
    for item in ["tea", "coffee", "cake"] {
        sqlx::query("INSERT INTO orders (item, quantity) VALUES ($1, 1)")
            .bind(item)
            .execute(&pool)
            .await
            .unwrap();
    }
    (url, pool)
}

async fn count(pool: &SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(pool)
        .await
        .unwrap()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("smoketest-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn step_statuses(check: &serde_json::Value) -> Vec<(String, String)> {
    check["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn lifecycle_passes_as_clerk_and_viewer_and_leaves_the_table_as_it_was() {
    let dir = temp_dir("scenario-pass");
    let (url, pool) = database(&dir).await;
    let (_service, addr) = start(&url);
    let (status, report) = get(&addr, "/smoketest?tag=api").await;
    assert_eq!(status, 200, "{report:#}");
    let clerk = &report["checks"][0];
    assert_eq!(clerk["name"], "orders::lifecycle[clerk]");
    assert_eq!(clerk["steps"].as_array().unwrap().len(), 6, "{clerk:#}");
    assert_eq!(clerk["steps"][0]["status_code"], 201);
    let viewer = &report["checks"][1];
    assert_eq!(viewer["name"], "orders::lifecycle[viewer]");
    assert_eq!(viewer["steps"][1]["name"], "create order is refused");
    assert_eq!(viewer["steps"][1]["status_code"], 403);
    assert_eq!(count(&pool).await, 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_failing_middle_step_skips_the_rest_and_the_teardown_deletes_the_order() {
    let dir = temp_dir("scenario-fail");
    let (url, pool) = database(&dir).await;
    // A bug in the database: every new order's quantity is changed after it is written.
    sqlx::query(
        "CREATE TRIGGER corrupt AFTER INSERT ON orders
         BEGIN UPDATE orders SET quantity = quantity + 1 WHERE id = NEW.id; END",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(count(&pool).await, 3);
    let (_service, addr) = start(&url);
    let (status, report) = get(&addr, "/smoketest/orders::lifecycle%5Bclerk%5D").await;
    assert_eq!(status, 500, "{report:#}");
    let check = &report["checks"][0];
    let message = check["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("step 2/5 \"read it back\": order read back"),
        "{message}"
    );
    assert_eq!(
        step_statuses(check),
        [
            ("create order", "pass"),
            ("read it back", "fail"),
            ("find it in the list", "skip"),
            ("delete it", "skip"),
            ("it is gone", "skip"),
            ("teardown: DELETE /orders/4", "pass"),
        ]
        .map(|(n, s)| (n.to_string(), s.to_string()))
    );
    assert_eq!(check["steps"][5]["status_code"], 204);
    assert_eq!(
        count(&pool).await,
        3,
        "the order made through the API is gone"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
