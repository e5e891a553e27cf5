//! The orders API, and the smoke check that proves an order can really be written.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use smoketest::{Context, Outcome, ensure_eq};

use crate::db::{Db, Order};

pub fn routes(db: Db) -> Router {
    Router::new()
        .route("/orders", get(list).post(create))
        .with_state(db)
}

async fn list(State(db): State<Db>) -> Result<Json<Vec<Order>>, (StatusCode, String)> {
    db.list_orders().await.map(Json).map_err(internal)
}

#[derive(Deserialize)]
struct NewOrder {
    item: String,
    quantity: i64,
}

async fn create(
    State(db): State<Db>,
    Json(new): Json<NewOrder>,
) -> Result<(StatusCode, Json<Order>), (StatusCode, String)> {
    if new.item.trim().is_empty() || new.quantity <= 0 {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            "an order needs a non-empty item and a positive quantity".into(),
        ));
    }
    let order = db
        .create_order(&new.item, new.quantity)
        .await
        .map_err(internal)?;
    Ok((StatusCode::CREATED, Json(order)))
}

fn internal(e: sqlx::Error) -> (StatusCode, String) {
    tracing::error!("database error: {e}");
    (StatusCode::INTERNAL_SERVER_ERROR, "database error".into())
}

/// Insert an order and read it back, inside a transaction the smoketest runner rolls back
/// (after a pass, a failure, a panic, a timeout or a client hanging up; the check cannot
/// commit): proves the table is writable (not read-only, not locked, constraints as
/// expected) without leaving a row behind.
#[smoketest::check(tags = ["db", "write"], timeout = "3s")]
async fn order_roundtrip(ctx: &mut Context) -> smoketest::Result {
    const INSERT: &str =
        "INSERT INTO orders (item, quantity) VALUES ($1, $2) RETURNING id, item, quantity";
    let order: Order = match crate::database() {
        Db::Sqlite(_) => {
            sqlx::query_as(INSERT)
                .bind("smoketest")
                .bind(1_i64)
                .fetch_one(ctx.sqlite().await?)
                .await?
        }
        Db::Postgres(_) => {
            sqlx::query_as(INSERT)
                .bind("smoketest")
                .bind(1_i64)
                .fetch_one(ctx.postgres().await?)
                .await?
        }
    };
    ctx.observe("order_id", order.id);
    ensure_eq!(order.item.as_str(), "smoketest", "item read back");
    Ok(Outcome::Pass)
}
