//! The service's database: SQLite (embedded, the default) or Postgres, chosen by
//! `DATABASE_URL`. The schema is created on start.

use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};

/// A connection pool to whichever database `DATABASE_URL` names.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Order {
    pub id: i64,
    pub item: String,
    pub quantity: i64,
}

impl Db {
    /// Connect to `url` (`sqlite:…` or `postgres://…`) and create the schema.
    pub async fn connect(url: &str) -> Result<Db, String> {
        let db = if url.starts_with("sqlite:") {
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
            Db::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(3))
                .connect(url)
                .await
                .map_err(|e| format!("cannot connect to Postgres: {e}"))?;
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS orders (
                    id BIGSERIAL PRIMARY KEY,
                    item TEXT NOT NULL,
                    quantity BIGINT NOT NULL CHECK (quantity > 0))",
            )
            .execute(&pool)
            .await
            .map_err(|e| format!("cannot create the orders table: {e}"))?;
            Db::Postgres(pool)
        } else {
            return Err(format!(
                "DATABASE_URL must start with sqlite: or postgres://, got `{}`",
                url.split(':').next().unwrap_or("")
            ));
        };
        Ok(db)
    }

    pub async fn list_orders(&self) -> Result<Vec<Order>, sqlx::Error> {
        const SQL: &str = "SELECT id, item, quantity FROM orders ORDER BY id DESC LIMIT 100";
        match self {
            Db::Sqlite(pool) => sqlx::query_as(SQL).fetch_all(pool).await,
            Db::Postgres(pool) => sqlx::query_as(SQL).fetch_all(pool).await,
        }
    }

    pub async fn create_order(&self, item: &str, quantity: i64) -> Result<Order, sqlx::Error> {
        const SQL: &str =
            "INSERT INTO orders (item, quantity) VALUES ($1, $2) RETURNING id, item, quantity";
        match self {
            Db::Sqlite(pool) => {
                sqlx::query_as(SQL)
                    .bind(item)
                    .bind(quantity)
                    .fetch_one(pool)
                    .await
            }
            Db::Postgres(pool) => {
                sqlx::query_as(SQL)
                    .bind(item)
                    .bind(quantity)
                    .fetch_one(pool)
                    .await
            }
        }
    }
}
