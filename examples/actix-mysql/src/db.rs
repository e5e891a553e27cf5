//! The service's database: MariaDB/MySQL or SQLite (embedded, the default), chosen by
//! `DATABASE_URL`. The schema is created on start.

use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::mysql::MySqlPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{MySqlPool, SqlitePool};

/// A connection pool to whichever database `DATABASE_URL` names.
#[derive(Clone, Debug)]
pub enum Db {
    MySql(MySqlPool),
    Sqlite(SqlitePool),
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Order {
    pub id: i64,
    pub item: String,
    pub quantity: i64,
}

impl Db {
    /// Connect to `url` (`mysql://…` or `sqlite:…`) and create the schema.
    pub async fn connect(url: &str) -> Result<Db, String> {
        if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let url = url.replacen("mariadb://", "mysql://", 1);
            let pool = MySqlPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(3))
                .connect(&url)
                .await
                .map_err(|e| {
                    format!("cannot connect to MariaDB/MySQL: {e}; is the server up and the database created?")
                })?;
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS orders (
                    id BIGINT AUTO_INCREMENT PRIMARY KEY,
                    item VARCHAR(200) NOT NULL,
                    quantity BIGINT NOT NULL CHECK (quantity > 0)) ENGINE = InnoDB",
            )
            .execute(&pool)
            .await
            .map_err(|e| format!("cannot create the orders table: {e}"))?;
            Ok(Db::MySql(pool))
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| format!("DATABASE_URL is not a valid SQLite URL: {e}"))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(5));
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(3))
                .connect_with(options)
                .await
                .map_err(|e| format!("cannot open SQLite database {url}: {e}"))?;
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS orders (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    item TEXT NOT NULL,
                    quantity INTEGER NOT NULL CHECK (quantity > 0))",
            )
            .execute(&pool)
            .await
            .map_err(|e| format!("cannot create the orders table: {e}"))?;
            Ok(Db::Sqlite(pool))
        } else {
            Err(format!(
                "DATABASE_URL must start with mysql:// or sqlite:, got `{}:`",
                url.split(':').next().unwrap_or("")
            ))
        }
    }

    /// `"mysql"` or `"sqlite"`.
    pub fn backend(&self) -> &'static str {
        match self {
            Db::MySql(_) => "mysql",
            Db::Sqlite(_) => "sqlite",
        }
    }

    pub async fn list_orders(&self) -> Result<Vec<Order>, sqlx::Error> {
        const SQL: &str = "SELECT id, item, quantity FROM orders ORDER BY id DESC LIMIT 100";
        match self {
            Db::MySql(pool) => sqlx::query_as(SQL).fetch_all(pool).await,
            Db::Sqlite(pool) => sqlx::query_as(SQL).fetch_all(pool).await,
        }
    }

    pub async fn count_orders(&self) -> Result<i64, sqlx::Error> {
        const SQL: &str = "SELECT COUNT(*) FROM orders";
        match self {
            Db::MySql(pool) => sqlx::query_scalar(SQL).fetch_one(pool).await,
            Db::Sqlite(pool) => sqlx::query_scalar(SQL).fetch_one(pool).await,
        }
    }

    /// Insert an order and read it back, in a transaction committed on success.
    pub async fn create_order(&self, item: &str, quantity: i64) -> Result<Order, sqlx::Error> {
        match self {
            Db::MySql(pool) => {
                let mut tx = pool.begin().await?;
                let order = insert_mysql(&mut tx, item, quantity).await?;
                tx.commit().await?;
                Ok(order)
            }
            Db::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let order = insert_sqlite(&mut tx, item, quantity).await?;
                tx.commit().await?;
                Ok(order)
            }
        }
    }
}

/// MySQL has no `INSERT … RETURNING`: insert, then read the row by `LAST_INSERT_ID()` on
/// the same connection.
pub async fn insert_mysql(
    conn: &mut sqlx::MySqlConnection,
    item: &str,
    quantity: i64,
) -> Result<Order, sqlx::Error> {
    sqlx::query("INSERT INTO orders (item, quantity) VALUES (?, ?)")
        .bind(item)
        .bind(quantity)
        .execute(&mut *conn)
        .await?;
    sqlx::query_as("SELECT id, item, quantity FROM orders WHERE id = LAST_INSERT_ID()")
        .fetch_one(&mut *conn)
        .await
}

pub async fn insert_sqlite(
    conn: &mut sqlx::SqliteConnection,
    item: &str,
    quantity: i64,
) -> Result<Order, sqlx::Error> {
    sqlx::query_as("INSERT INTO orders (item, quantity) VALUES (?, ?) RETURNING id, item, quantity")
        .bind(item)
        .bind(quantity)
        .fetch_one(&mut *conn)
        .await
}
