//! The orders API, and the smoke check that proves an order can really be written.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use smoketest::{Context, Outcome, ensure_eq};

use crate::db::{self, Db, Order};

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(
        web::resource("/orders")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    );
}

async fn list(db: web::Data<Db>) -> HttpResponse {
    match db.list_orders().await {
        Ok(orders) => HttpResponse::Ok().json(orders),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
struct NewOrder {
    item: String,
    quantity: i64,
}

async fn create(db: web::Data<Db>, new: web::Json<NewOrder>) -> HttpResponse {
    if new.item.trim().is_empty() || new.quantity <= 0 {
        return HttpResponse::UnprocessableEntity()
            .body("an order needs a non-empty item and a positive quantity");
    }
    match db.create_order(&new.item, new.quantity).await {
        Ok(order) => HttpResponse::Created().json(order),
        Err(e) => internal(e),
    }
}

fn internal(e: sqlx::Error) -> HttpResponse {
    tracing::error!("database error: {e}");
    HttpResponse::InternalServerError().body("database error")
}

/// Insert an order and read it back, inside a transaction that is rolled back: proves the
/// table is writable (not read-only, not locked, constraints as expected) without leaving
/// a row behind.
#[smoketest::check(tags = ["db", "write"], timeout = "3s")]
async fn order_roundtrip(ctx: &mut Context) -> smoketest::Result {
    // The connections belong to transactions the runner always rolls back.
    let order: Order = match crate::database() {
        Db::MySql(_) => db::insert_mysql(ctx.mysql().await?, "smoketest", 1).await?,
        Db::Sqlite(_) => db::insert_sqlite(ctx.sqlite().await?, "smoketest", 1).await?,
    };
    ctx.observe("order_id", order.id);
    ensure_eq!(order.item.as_str(), "smoketest", "item read back");
    ensure_eq!(order.quantity, 1, "quantity read back");
    Ok(Outcome::Pass)
}
