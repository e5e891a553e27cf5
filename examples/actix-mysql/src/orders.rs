//! The orders API, the smoke check that proves an order can really be written, and the
//! scenario that proves the API works end to end.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use smoketest::{Context, Outcome, ensure, ensure_eq};

use crate::db::{self, Db, Order};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(
            web::resource("/orders")
                .route(web::get().to(list))
                .route(web::post().to(create)),
        )
        .service(
            web::resource("/orders/{id}")
                .route(web::get().to(read))
                .route(web::delete().to(remove)),
        );
}

async fn read(db: web::Data<Db>, id: web::Path<i64>) -> HttpResponse {
    const SQL: &str = "SELECT id, item, quantity FROM orders WHERE id = ?";
    let id = id.into_inner();
    let order: Result<Option<Order>, sqlx::Error> = match db.get_ref() {
        Db::MySql(pool) => sqlx::query_as(SQL).bind(id).fetch_optional(pool).await,
        Db::Sqlite(pool) => sqlx::query_as(SQL).bind(id).fetch_optional(pool).await,
    };
    match order {
        Ok(Some(order)) => HttpResponse::Ok().json(order),
        Ok(None) => HttpResponse::NotFound().body(format!("no order {id}")),
        Err(e) => internal(e),
    }
}

async fn remove(db: web::Data<Db>, id: web::Path<i64>) -> HttpResponse {
    const SQL: &str = "DELETE FROM orders WHERE id = ?";
    let id = id.into_inner();
    let deleted = match db.get_ref() {
        Db::MySql(pool) => sqlx::query(SQL)
            .bind(id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
        Db::Sqlite(pool) => sqlx::query(SQL)
            .bind(id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
    };
    match deleted {
        Ok(0) => HttpResponse::NotFound().body(format!("no order {id}")),
        Ok(_) => HttpResponse::NoContent().finish(),
        Err(e) => internal(e),
    }
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

/// An order as the API promises it; a field it grows unannounced fails the scenario.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct ApiOrder {
    id: i64,
    item: String,
    quantity: i64,
}

/// The orders API end to end, in process (`smoketest::actix::api` in `main.rs`): create,
/// read back, list, delete. Its writes reach the real database, outside any smoke
/// transaction, so the order is deleted by a teardown registered the moment it exists.
#[smoketest::check(tags = ["api"], timeout = "5s")]
async fn lifecycle(ctx: &mut Context) -> smoketest::Result {
    let api = ctx.api();
    ctx.declare_steps([
        "create order",
        "read it back",
        "find it in the list",
        "delete it",
        "it is gone",
    ]);
    let order: ApiOrder = ctx
        .step("create order", async {
            let body = serde_json::json!({ "item": "smoketest", "quantity": 1 });
            let order: ApiOrder = api
                .post("/orders")
                .json(&body)
                .expect_status(201)
                .await?
                .json()?;
            // 404: the scenario's own "delete it" step got there first.
            ctx.defer_request(
                api.delete(format!("/orders/{}", order.id))
                    .expect_status_in([204, 404]),
            );
            Ok(order)
        })
        .await?;
    let path = format!("/orders/{}", order.id);
    ctx.step("read it back", async {
        ensure_eq!(
            api.get(&path).await?.json::<ApiOrder>()?,
            order,
            "order read back"
        );
        Ok(())
    })
    .await?;
    ctx.step("find it in the list", async {
        let all: Vec<ApiOrder> = api.get("/orders").await?.json()?;
        ensure!(
            all.iter().any(|o| o.id == order.id),
            "order {} is not in the list",
            order.id
        );
        Ok(())
    })
    .await?;
    ctx.step("delete it", async {
        api.delete(&path).expect_status(204).await
    })
    .await?;
    ctx.step("it is gone", async {
        api.get(&path).expect_status(404).await
    })
    .await?;
    Ok(Outcome::Pass)
}
