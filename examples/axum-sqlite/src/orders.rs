//! The orders API, the smoke check that proves an order can really be written, and the
//! scenario that proves the API works end to end for each kind of user.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use smoketest::api::Api;
use smoketest::{Context, Outcome, ensure, ensure_eq};

use crate::auth::Tokens;
use crate::db::{Db, Order};

/// The orders API, behind bearer tokens (`auth.rs`): clerks read and write, viewers read.
pub fn routes(db: Db, tokens: Tokens) -> Router {
    Router::new()
        .route("/orders", get(list).post(create))
        .route("/orders/{id}", get(read).delete(remove))
        .layer(axum::middleware::from_fn_with_state(
            tokens,
            crate::auth::require,
        ))
        .with_state(db)
}

async fn list(State(db): State<Db>) -> Result<Json<Vec<Order>>, (StatusCode, String)> {
    db.list_orders().await.map(Json).map_err(internal)
}

async fn read(
    State(db): State<Db>,
    Path(id): Path<i64>,
) -> Result<Json<Order>, (StatusCode, String)> {
    const SQL: &str = "SELECT id, item, quantity FROM orders WHERE id = $1";
    let order: Option<Order> = match &db {
        Db::Sqlite(pool) => sqlx::query_as(SQL).bind(id).fetch_optional(pool).await,
        Db::Postgres(pool) => sqlx::query_as(SQL).bind(id).fetch_optional(pool).await,
    }
    .map_err(internal)?;
    order
        .map(Json)
        .ok_or((StatusCode::NOT_FOUND, format!("no order {id}")))
}

async fn remove(
    State(db): State<Db>,
    Path(id): Path<i64>,
) -> Result<StatusCode, (StatusCode, String)> {
    const SQL: &str = "DELETE FROM orders WHERE id = $1";
    let deleted = match &db {
        Db::Sqlite(pool) => sqlx::query(SQL)
            .bind(id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
        Db::Postgres(pool) => sqlx::query(SQL)
            .bind(id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
    }
    .map_err(internal)?;
    if deleted == 0 {
        return Err((StatusCode::NOT_FOUND, format!("no order {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
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

/// An order as the API promises it to its clients. `deny_unknown_fields`: a field the API
/// grows without telling its clients fails the scenario (contract drift), naming the field.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct ApiOrder {
    id: i64,
    item: String,
    quantity: i64,
}

/// The orders API end to end, through its routes and its authentication, as each persona
/// (`orders::lifecycle[clerk]`, `orders::lifecycle[viewer]`). The API writes to the real
/// database, outside any smoke transaction: the order is deleted by a teardown registered
/// the moment it exists, which runs whatever happens next (failure, panic, timeout).
#[smoketest::check(personas = ["clerk", "viewer"], tags = ["api"], timeout = "5s")]
async fn lifecycle(ctx: &mut Context) -> smoketest::Result {
    let api = ctx.api(); // makes requests as the check's persona
    if ctx.persona() == Some("viewer") {
        return viewer_reads_but_cannot_write(ctx, &api).await;
    }
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
        let read: ApiOrder = api.get(&path).await?.json()?;
        ensure_eq!(read, order, "order read back");
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
    ctx.observe("order_id", order.id);
    Ok(Outcome::Pass)
}

/// A viewer lists orders, and creating one is refused: an expected denial passes its step.
async fn viewer_reads_but_cannot_write(ctx: &mut Context, api: &Api) -> smoketest::Result {
    ctx.declare_steps(["list orders", "create order is refused"]);
    ctx.step("list orders", async {
        api.get("/orders").await?.json::<Vec<ApiOrder>>()
    })
    .await?;
    ctx.step("create order is refused", async {
        let body = serde_json::json!({ "item": "smoketest", "quantity": 1 });
        api.post("/orders").json(&body).expect_status(403).await
    })
    .await?;
    Ok(Outcome::Pass)
}
