//! Scenario checks against a real axum orders API (an in-memory store, so row counts are
//! exact): in process and over a loopback base URL, passing, failing at step 3 of 5,
//! panicking, timing out, as personas, and with a response that drifted from its contract.
//! After every run, however it ended, the store holds no order the scenario created.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use smoketest::report::CheckReport;
use smoketest::{
    Context, ErrorKind, Outcome, Persona, Selection, SmokeCheck, Smoketest, SmoketestBuilder,
    Status, ensure, ensure_eq, from_fn,
};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Order {
    id: i64,
    item: String,
    quantity: i64,
}

/// What the test makes the API do wrong.
#[derive(Default)]
struct Faults {
    list_fails: AtomicBool,
    read_panics: AtomicBool,
    list_hangs: AtomicBool,
    extra_field: AtomicBool,
    delete_fails: AtomicBool,
    /// Tokens the API no longer accepts (expired).
    revoked: Mutex<Vec<String>>,
}

#[derive(Clone, Default)]
struct Store {
    orders: Arc<Mutex<BTreeMap<i64, Order>>>,
    next: Arc<AtomicI64>,
    faults: Arc<Faults>,
}

impl Store {
    fn count(&self) -> usize {
        self.orders.lock().unwrap().len()
    }
}

/// `Bearer clerk-…` writes, `Bearer viewer-…` reads, anything else is 401.
fn role(store: &Store, headers: &HeaderMap) -> Result<&'static str, StatusCode> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(StatusCode::UNAUTHORIZED)?;
    if store
        .faults
        .revoked
        .lock()
        .unwrap()
        .iter()
        .any(|t| t == token)
    {
        return Err(StatusCode::UNAUTHORIZED);
    }
    if token.starts_with("clerk-") {
        Ok("clerk")
    } else if token.starts_with("viewer-") {
        Ok("viewer")
    } else {
        Err(StatusCode::UNAUTHORIZED)
    }
}

fn writer(store: &Store, headers: &HeaderMap) -> Result<(), StatusCode> {
    match role(store, headers)? {
        "clerk" => Ok(()),
        _ => Err(StatusCode::FORBIDDEN),
    }
}

fn app(store: Store) -> Router {
    async fn list(
        State(store): State<Store>,
        headers: HeaderMap,
    ) -> Result<Json<Vec<Order>>, StatusCode> {
        role(&store, &headers)?;
        if store.faults.list_hangs.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        if store.faults.list_fails.load(Ordering::SeqCst) {
            return Err(StatusCode::INTERNAL_SERVER_ERROR);
        }
        Ok(Json(
            store.orders.lock().unwrap().values().cloned().collect(),
        ))
    }
    async fn create(
        State(store): State<Store>,
        headers: HeaderMap,
        Json(new): Json<serde_json::Value>,
    ) -> Result<(StatusCode, Json<Order>), StatusCode> {
        writer(&store, &headers)?;
        let order = Order {
            id: store.next.fetch_add(1, Ordering::SeqCst) + 1,
            item: new["item"].as_str().unwrap_or_default().to_string(),
            quantity: new["quantity"].as_i64().unwrap_or(1),
        };
        store.orders.lock().unwrap().insert(order.id, order.clone());
        Ok((StatusCode::CREATED, Json(order)))
    }
    async fn read(
        State(store): State<Store>,
        headers: HeaderMap,
        Path(id): Path<i64>,
    ) -> Result<Json<serde_json::Value>, StatusCode> {
        role(&store, &headers)?;
        if store.faults.read_panics.load(Ordering::SeqCst) {
            panic!("the read handler has a bug");
        }
        let order = store
            .orders
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .ok_or(StatusCode::NOT_FOUND)?;
        let mut body = serde_json::to_value(order).unwrap();
        if store.faults.extra_field.load(Ordering::SeqCst) {
            body["discount"] = serde_json::json!(5);
        }
        Ok(Json(body))
    }
    async fn remove(
        State(store): State<Store>,
        headers: HeaderMap,
        Path(id): Path<i64>,
    ) -> StatusCode {
        if let Err(status) = writer(&store, &headers) {
            return status;
        }
        if store.faults.delete_fails.load(Ordering::SeqCst) {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        match store.orders.lock().unwrap().remove(&id) {
            Some(_) => StatusCode::NO_CONTENT,
            None => StatusCode::NOT_FOUND,
        }
    }
    Router::new()
        .route("/orders", get(list).post(create))
        .route("/orders/{id}", get(read).delete(remove))
        .with_state(store)
}

/// The steps of the lifecycle scenario, declared up front.
const STEPS: [&str; 5] = [
    "create order",
    "read it back",
    "find it in the list",
    "delete it",
    "it is gone",
];

async fn lifecycle(ctx: &mut Context) -> smoketest::Result {
    ctx.declare_steps(STEPS);
    let api = ctx.api();
    let order: Order = ctx
        .step("create order", async {
            let body = serde_json::json!({"item": "smoke", "quantity": 2});
            let order: Order = api
                .post("/orders")
                .json(&body)
                .expect_status(201)
                .await?
                .json()?;
            ctx.defer_request(
                api.delete(format!("/orders/{}", order.id))
                    .expect_status_in([204, 404]),
            );
            Ok(order)
        })
        .await?;
    let path = format!("/orders/{}", order.id);
    ctx.step("read it back", async {
        let read: Order = api.get(&path).await?.json()?;
        ensure_eq!(read, order, "order read back");
        Ok(())
    })
    .await?;
    ctx.step("find it in the list", async {
        let all: Vec<Order> = api.get("/orders").await?.json()?;
        ensure!(all.iter().any(|o| o.id == order.id), "not listed");
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

fn lifecycle_check() -> impl SmokeCheck {
    from_fn("orders::lifecycle", |ctx| Box::pin(lifecycle(ctx))).timeout(Duration::from_secs(5))
}

fn builder(store: &Store) -> SmoketestBuilder {
    Smoketest::builder()
        .without_discovery()
        .api(smoketest::axum::api(app(store.clone())))
        .persona("clerk", Persona::bearer("clerk-static-token"))
        .persona("viewer", Persona::bearer("viewer-static-token"))
}

/// Run the lifecycle scenario as `clerk` and return its report.
async fn run_lifecycle(smoke_builder: SmoketestBuilder) -> CheckReport {
    let smoke = smoke_builder
        .check(smoketest::scenario::as_persona("clerk", lifecycle_check()))
        .build()
        .unwrap();
    let report = smoke.run(&Selection::all()).await.unwrap();
    report.checks.into_iter().next().unwrap()
}

fn statuses(check: &CheckReport) -> Vec<(&str, Status)> {
    check
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.status))
        .collect()
}

#[tokio::test]
async fn scenario_passes_in_process_with_every_step_recorded() {
    let store = Store::default();
    let check = run_lifecycle(builder(&store)).await;
    assert_eq!(check.name, "orders::lifecycle[clerk]");
    assert_eq!(check.status, Status::Pass, "{check:#?}");
    assert_eq!(
        statuses(&check),
        [
            ("create order", Status::Pass),
            ("read it back", Status::Pass),
            ("find it in the list", Status::Pass),
            ("delete it", Status::Pass),
            ("it is gone", Status::Pass),
            ("teardown: DELETE /orders/1", Status::Pass),
        ]
    );
    let create = &check.steps[0];
    assert_eq!(create.method.as_deref(), Some("POST"));
    assert_eq!(create.path.as_deref(), Some("/orders"));
    assert_eq!(create.status_code, Some(201));
    assert_eq!(create.persona.as_deref(), Some("clerk"));
    assert_eq!(check.steps[4].status_code, Some(404), "an expected 404");
    assert!(check.steps[5].teardown);
    assert_eq!(check.steps[5].status_code, Some(404), "already deleted");
    assert_eq!(store.count(), 0);
}

#[tokio::test]
async fn failing_step_3_of_5_skips_4_and_5_and_teardown_leaves_nothing() {
    let store = Store::default();
    store.faults.list_fails.store(true, Ordering::SeqCst);
    assert_eq!(store.count(), 0);
    let check = run_lifecycle(builder(&store)).await;
    assert_eq!(check.status, Status::Fail);
    let error = check.error.as_ref().unwrap();
    assert_eq!(error.kind, "http_status");
    let message = error.message.as_deref().unwrap();
    assert!(
        message.starts_with(
            "step 3/5 \"find it in the list\": GET /orders as clerk: expected a 2xx status, got 500"
        ),
        "{message}"
    );
    assert_eq!(
        statuses(&check),
        [
            ("create order", Status::Pass),
            ("read it back", Status::Pass),
            ("find it in the list", Status::Fail),
            ("delete it", Status::Skip),
            ("it is gone", Status::Skip),
            ("teardown: DELETE /orders/1", Status::Pass),
        ]
    );
    assert_eq!(check.steps[2].status_code, Some(500));
    assert_eq!(
        check.steps[3].message.as_deref(),
        Some("not run: step 3 \"find it in the list\" failed")
    );
    assert_eq!(
        check.steps[5].status_code,
        Some(204),
        "the teardown deleted it"
    );
    assert_eq!(store.count(), 0, "the order created in step 1 is gone");
}

#[tokio::test]
async fn steps_appear_in_every_format_and_messages_only_at_full_detail() {
    let store = Store::default();
    store.faults.list_fails.store(true, Ordering::SeqCst);
    let smoke = builder(&store)
        .check(smoketest::scenario::as_persona("clerk", lifecycle_check()))
        .build()
        .unwrap();
    let report = smoke.run(&Selection::all()).await.unwrap();

    // JSON: the `steps` array, valid against the published schema.
    let json: serde_json::Value =
        serde_json::from_slice(&smoketest::format::json::write(&report)).unwrap();
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../schema/report.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&json)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(json["checks"][0]["steps"][2]["status"], "fail");
    assert_eq!(json["checks"][0]["steps"][3]["status"], "skip");

    // Text: indented under the check.
    let text = String::from_utf8(smoketest::format::text::write(&report)).unwrap();
    assert!(
        text.contains("\n    [-]step 3/5 find it in the list failed: http_status: "),
        "{text}"
    );
    assert!(text.contains("\n    [~]step 4/5 delete it skipped: not run: step 3"));
    assert!(text.contains("\n    [~]step 5/5 it is gone skipped"));
    assert!(text.contains("\n    [+]teardown: DELETE /orders/1 ok → 204 as clerk "));

    // HTML: a list inside the check's card.
    let html = String::from_utf8(smoketest::format::html::write(&report)).unwrap();
    assert!(html.contains("<ol class=\"steps\">"), "{html}");
    assert!(html.contains("3. find it in the list"));
    assert!(
        html.contains("<li class=\"skip\"><span class=\"badge s-skip\">skipped</span>4. delete it")
    );

    // JUnit: one test case per step.
    let xml = String::from_utf8(smoketest::format::junit::write(&report)).unwrap();
    let junit = quick_junit::Report::deserialize_from_str(&xml).unwrap();
    let suite = &junit.test_suites[0];
    assert_eq!(suite.tests, 1 + 5 + 1, "{xml}");
    assert_eq!((suite.failures, suite.skipped), (2, 2), "{xml}");
    let step3 = suite
        .test_cases
        .iter()
        .find(|c| c.name.as_str() == "orders::lifecycle[clerk] / 3. find it in the list")
        .unwrap();
    assert!(matches!(
        step3.status,
        quick_junit::TestCaseStatus::NonSuccess { .. }
    ));

    // health+json: observed values.
    let health: serde_json::Value =
        serde_json::from_slice(&smoketest::format::health::write(&report)).unwrap();
    let step3 = &health["checks"]["orders.lifecycle[clerk]:step3"][0];
    assert_eq!(step3["status"], "fail");
    assert_eq!(step3["observedUnit"], "ms");
    assert!(
        step3["output"]
            .as_str()
            .unwrap()
            .starts_with("find it in the list: GET /orders → 500; http_status: ")
    );
    assert_eq!(
        health["checks"]["orders.lifecycle[clerk]:teardown1"][0]["status"],
        "pass"
    );

    // Anonymous detail: names, statuses, requests; no messages.
    let public = report.restrict(smoketest::Detail::Checks);
    let steps = &public.checks[0].steps;
    assert_eq!(steps[2].status_code, Some(500));
    assert!(steps[2].error.as_ref().unwrap().message.is_none());
    assert!(steps[3].message.is_none());
    let text = String::from_utf8(smoketest::format::text::write(&public)).unwrap();
    assert!(
        text.contains(
            "\n    [-]step 3/5 find it in the list failed: http_status GET /orders → 500"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn step_messages_and_paths_are_redacted() {
    let store = Store::default();
    let smoke = builder(&store)
        .check(from_fn("auth::login", |ctx| {
            Box::pin(async move {
                let api = ctx.api().as_("clerk");
                ctx.step("login", async {
                    api.get("/orders?access_token=eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.c2ln")
                        .await?;
                    Err::<(), _>(smoketest::CheckError::error(
                        "login refused: password=Hunter2Secret!",
                    ))
                })
                .await?;
                Ok(Outcome::Pass)
            })
        }))
        .build()
        .unwrap();
    let report = smoke.run(&Selection::all()).await.unwrap();
    let json = report.to_json();
    assert!(!json.contains("Hunter2Secret"), "{json}");
    assert!(!json.contains("c2VjcmV0LXBheWxvYWQ"), "{json}");
    let step = &report.checks[0].steps[0];
    assert!(
        step.path
            .as_deref()
            .unwrap()
            .starts_with("/orders?access_token=")
    );
    assert!(
        step.error
            .as_ref()
            .unwrap()
            .message
            .as_deref()
            .unwrap()
            .starts_with("login refused: password=")
    );
}

#[tokio::test]
async fn a_panic_mid_scenario_fails_the_step_skips_the_rest_and_tears_down() {
    let store = Store::default();
    store.faults.read_panics.store(true, Ordering::SeqCst);
    let check = run_lifecycle(builder(&store)).await;
    assert_eq!(check.status, Status::Fail);
    let error = check.error.as_ref().unwrap();
    assert_eq!(error.kind, "panic");
    let message = error.message.as_deref().unwrap();
    assert!(
        message
            .starts_with("during step 2/5 \"read it back\": panicked: the read handler has a bug"),
        "{message}"
    );
    assert_eq!(
        statuses(&check),
        [
            ("create order", Status::Pass),
            ("read it back", Status::Fail),
            ("find it in the list", Status::Skip),
            ("delete it", Status::Skip),
            ("it is gone", Status::Skip),
            ("teardown: DELETE /orders/1", Status::Pass),
        ]
    );
    assert_eq!(check.steps[1].error.as_ref().unwrap().kind, "panic");
    assert_eq!(store.count(), 0);
}

#[tokio::test]
async fn a_timeout_mid_scenario_fails_the_step_skips_the_rest_and_tears_down() {
    let store = Store::default();
    store.faults.list_hangs.store(true, Ordering::SeqCst);
    let smoke = builder(&store)
        .check(smoketest::scenario::as_persona(
            "clerk",
            from_fn("orders::lifecycle", |ctx| Box::pin(lifecycle(ctx)))
                .timeout(Duration::from_millis(300)),
        ))
        .build()
        .unwrap();
    let report = smoke.run(&Selection::all()).await.unwrap();
    let check = &report.checks[0];
    assert_eq!(check.status, Status::Fail);
    let error = check.error.as_ref().unwrap();
    assert_eq!(error.kind, "timeout");
    assert!(
        error
            .message
            .as_deref()
            .unwrap()
            .starts_with("during step 3/5 \"find it in the list\": did not finish within 300ms"),
        "{error:?}"
    );
    assert_eq!(
        statuses(check)[2..],
        [
            ("find it in the list", Status::Fail),
            ("delete it", Status::Skip),
            ("it is gone", Status::Skip),
            ("teardown: DELETE /orders/1", Status::Pass),
        ]
    );
    assert_eq!(check.steps[2].error.as_ref().unwrap().kind, "timeout");
    assert_eq!(store.count(), 0);
}

#[tokio::test]
async fn a_failing_teardown_is_reported_beside_the_original_failure() {
    let store = Store::default();
    store.faults.list_fails.store(true, Ordering::SeqCst);
    store.faults.delete_fails.store(true, Ordering::SeqCst);
    let check = run_lifecycle(builder(&store)).await;
    // The check's own failure stays its error...
    let error = check.error.as_ref().unwrap();
    assert_eq!(error.kind, "http_status");
    assert!(error.message.as_deref().unwrap().starts_with("step 3/5"));
    // ...and the teardown's failure is a failed step of its own.
    let teardown = check.steps.last().unwrap();
    assert!(teardown.teardown);
    assert_eq!(teardown.status, Status::Fail);
    assert_eq!(teardown.status_code, Some(503));
    let teardown_error = teardown.error.as_ref().unwrap();
    assert_eq!(teardown_error.kind, "cleanup");
    assert!(
        teardown_error
            .message
            .as_deref()
            .unwrap()
            .contains("DELETE /orders/1 as clerk: expected status 204 or 404, got 503"),
        "{teardown_error:?}"
    );
}

#[tokio::test]
async fn a_failing_cleanup_of_a_failed_check_without_steps_is_kept_as_observed() {
    let smoke = Smoketest::builder()
        .without_discovery()
        .check(from_fn("files::scratch", |ctx| {
            Box::pin(async move {
                ctx.defer(async { Err(smoketest::CheckError::error("disk gone")) });
                smoketest::fail!("the check itself failed")
            })
        }))
        .build()
        .unwrap();
    let report = smoke.run(&Selection::all()).await.unwrap();
    let check = &report.checks[0];
    assert_eq!(check.error.as_ref().unwrap().kind, "assertion");
    assert_eq!(
        check.observed["cleanup_failures"],
        serde_json::json!(["cleanup #1 failed: disk gone"])
    );
    assert!(check.steps.is_empty());
}

#[tokio::test]
async fn an_expected_denial_passes_and_an_unexpected_one_fails() {
    let store = Store::default();
    let smoke = builder(&store)
        .check(from_fn("orders::viewer", |ctx| {
            Box::pin(async move {
                let api = ctx.api().as_("viewer");
                ctx.step("create is refused", async {
                    api.post("/orders")
                        .json(&serde_json::json!({"item": "x"}))
                        .expect_status(403)
                        .await
                })
                .await?;
                ctx.step("create as viewer", async {
                    api.post("/orders")
                        .json(&serde_json::json!({"item": "x"}))
                        .await
                })
                .await?;
                Ok(Outcome::Pass)
            })
        }))
        .build()
        .unwrap();
    let report = smoke.run(&Selection::all()).await.unwrap();
    let check = &report.checks[0];
    assert_eq!(
        statuses(check),
        [
            ("create is refused", Status::Pass),
            ("create as viewer", Status::Fail)
        ]
    );
    assert_eq!(check.steps[0].status_code, Some(403));
    assert_eq!(check.steps[0].persona.as_deref(), Some("viewer"));
    assert!(
        check
            .error
            .as_ref()
            .unwrap()
            .message
            .as_deref()
            .unwrap()
            .contains("POST /orders as viewer: expected a 2xx status, got 403")
    );
    assert_eq!(store.count(), 0);
}

#[tokio::test]
async fn a_persona_whose_token_minting_fails_is_named() {
    let store = Store::default();
    let smoke = builder(&store)
        .persona(
            "auditor",
            Persona::bearer_from(|| async {
                Err::<String, _>(std::io::Error::other("identity provider unreachable"))
            }),
        )
        .check(smoketest::scenario::as_persona(
            "auditor",
            lifecycle_check(),
        ))
        .build()
        .unwrap();
    let report = smoke.run(&Selection::all()).await.unwrap();
    let check = &report.checks[0];
    assert_eq!(check.name, "orders::lifecycle[auditor]");
    let message = check.error.as_ref().unwrap().message.as_deref().unwrap();
    assert!(
        message.starts_with("step 1/5 \"create order\": POST /orders as auditor: could not get a token for persona `auditor`: identity provider unreachable"),
        "{message}"
    );
    assert_eq!(check.steps[0].status, Status::Fail);
    assert_eq!(check.steps[0].status_code, None, "no request went out");
    assert_eq!(check.steps[1].status, Status::Skip);
}

#[tokio::test]
async fn a_minted_token_is_cached_and_minted_again_once_on_401() {
    let store = Store::default();
    let minted = Arc::new(AtomicUsize::new(0));
    let counter = minted.clone();
    let smoke = builder(&store)
        .persona(
            "temp",
            Persona::bearer_from(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                async move { Ok::<_, std::io::Error>(format!("clerk-minted-{n}")) }
            }),
        )
        .check(smoketest::scenario::as_persona("temp", lifecycle_check()))
        .build()
        .unwrap();
    let report = smoke.run(&Selection::all()).await.unwrap();
    assert_eq!(report.status, Status::Pass);
    assert_eq!(
        minted.load(Ordering::SeqCst),
        1,
        "one token for the whole run"
    );
    // The token expires: the next run gets a 401, mints again once, and passes.
    store
        .faults
        .revoked
        .lock()
        .unwrap()
        .push("clerk-minted-0".into());
    let report = smoke.run(&Selection::all()).await.unwrap();
    assert_eq!(report.status, Status::Pass, "{:#?}", report.checks[0]);
    assert_eq!(minted.load(Ordering::SeqCst), 2);
    assert_eq!(store.count(), 0);
}

mod orders {
    use super::*;

    /// Declared once, run per persona: `orders::per_persona[admin]` and `[clerk]`.
    #[smoketest::check(personas = ["admin", "clerk"], tags = ["api"])]
    async fn per_persona(ctx: &mut Context) -> smoketest::Result {
        let persona = ctx.persona().unwrap_or("none").to_string();
        let status = ctx
            .step("list", async { ctx.api().get("/orders").await })
            .await?
            .status();
        ctx.observe("persona", persona);
        ensure_eq!(status, StatusCode::OK);
        Ok(Outcome::Pass)
    }
}

#[tokio::test]
async fn the_personas_attribute_makes_one_check_per_persona_served_by_name() {
    let store = Store::default();
    let smoke = Smoketest::builder()
        .api(smoketest::axum::api(app(store.clone())))
        .persona("admin", Persona::bearer("clerk-admin"))
        .persona("clerk", Persona::bearer("clerk-clerk"))
        .anonymous_detail(smoketest::Detail::Full)
        .build()
        .unwrap();
    let names: Vec<&str> = smoke.check_names().collect();
    assert_eq!(
        names,
        ["orders::per_persona[admin]", "orders::per_persona[clerk]"]
    );
    // Served at /smoketest/{name}: `[` and `]` percent-encoded, as clients send them.
    let router = smoketest::axum::router::<()>(smoke);
    let request = http::Request::get("/smoketest/orders::per_persona%5Bclerk%5D")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(router, request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(report["checks"][0]["name"], "orders::per_persona[clerk]");
    assert_eq!(report["checks"][0]["observed"]["persona"], "clerk");
    assert_eq!(report["checks"][0]["steps"][0]["persona"], "clerk");

    // A persona the attribute names but nobody registered: the build says which.
    let error = Smoketest::builder()
        .api(smoketest::axum::api(app(store.clone())))
        .persona("clerk", Persona::bearer("clerk-clerk"))
        .build()
        .unwrap_err();
    assert!(
        error.to_string().contains(
            "the check `orders::per_persona` runs as persona `admin`, but no persona of that name is registered (registered: clerk)"
        ),
        "{error}"
    );
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct StrictOrder {
    id: i64,
    item: String,
    quantity: i64,
}

#[tokio::test]
async fn a_response_with_an_extra_field_fails_typed_strict_and_schema_validation() {
    let store = Store::default();
    store.faults.extra_field.store(true, Ordering::SeqCst);
    let smoke = builder(&store).build().unwrap();
    let ctx = Context::detached("orders::drift", Duration::from_secs(5)).with_pools_of(&smoke);
    let api = ctx.api().as_("clerk");
    let order: Order = api
        .post("/orders")
        .json(&serde_json::json!({"item": "tea", "quantity": 1}))
        .await
        .unwrap()
        .json()
        .unwrap();
    let response = api.get(format!("/orders/{}", order.id)).await.unwrap();

    // Lenient typing passes: this is what drift looks like without strictness.
    assert_eq!(response.json::<Order>().unwrap(), order);

    let error = response.json::<StrictOrder>().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BodyMismatch);
    assert!(
        error
            .message()
            .starts_with("GET /orders/1 as clerk: the body does not match `StrictOrder`")
            && error.message().contains("unknown field `discount`"),
        "{}",
        error.message()
    );

    let error = response.json_strict::<Order>().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BodyMismatch);
    assert!(
        error
            .message()
            .contains("unknown field `discount` in the body: `Order` does not know it"),
        "{}",
        error.message()
    );

    let schema = serde_json::json!({
        "type": "object",
        "required": ["id", "item", "quantity"],
        "properties": {
            "id": {"type": "integer"},
            "item": {"type": "string"},
            "quantity": {"type": "integer", "minimum": 1}
        },
        "additionalProperties": false
    });
    let error = response.json_schema(&schema).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BodyMismatch);
    assert!(error.message().contains("discount"), "{}", error.message());

    // A wrong type names the path of the field.
    #[derive(Debug, Deserialize)]
    struct IdAsText {
        #[allow(dead_code)]
        id: String,
    }
    let error = response.json::<IdAsText>().unwrap_err();
    assert!(
        error
            .message()
            .contains("the body does not match `IdAsText` at \"id\": invalid type: integer `1`, expected a string"),
        "{}",
        error.message()
    );

    store.faults.extra_field.store(false, Ordering::SeqCst);
    let clean = api.get(format!("/orders/{}", order.id)).await.unwrap();
    clean.json::<StrictOrder>().unwrap();
    clean.json_strict::<Order>().unwrap();
    clean.json_schema(&schema).unwrap();
    api.delete(format!("/orders/{}", order.id)).await.unwrap();
    assert_eq!(store.count(), 0);
}

#[tokio::test]
async fn without_an_api_a_request_fails_with_kind_config() {
    let smoke = Smoketest::builder().without_discovery().build().unwrap();
    let ctx = Context::detached("x", Duration::from_secs(1)).with_pools_of(&smoke);
    let error = ctx.api().get("/orders").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.message().contains("no API is registered"));
}

/// Serve `store`'s API on a loopback port; its address.
async fn serve(store: &Store) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app(store.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn loopback_builder(addr: std::net::SocketAddr) -> SmoketestBuilder {
    Smoketest::builder()
        .without_discovery()
        .api_base_url(format!("http://{addr}"))
        .persona("clerk", Persona::bearer("clerk-static-token"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_passes_over_a_loopback_base_url() {
    let store = Store::default();
    let addr = serve(&store).await;
    let check = run_lifecycle(loopback_builder(addr)).await;
    assert_eq!(check.status, Status::Pass, "{check:#?}");
    assert_eq!(check.steps.len(), 6);
    assert_eq!(check.steps[0].status_code, Some(201));
    assert_eq!(store.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_step_over_a_loopback_base_url_still_tears_down() {
    let store = Store::default();
    store.faults.list_fails.store(true, Ordering::SeqCst);
    let addr = serve(&store).await;
    let check = run_lifecycle(loopback_builder(addr)).await;
    assert_eq!(check.status, Status::Fail);
    assert_eq!(
        statuses(&check)[2..],
        [
            ("find it in the list", Status::Fail),
            ("delete it", Status::Skip),
            ("it is gone", Status::Skip),
            ("teardown: DELETE /orders/1", Status::Pass),
        ]
    );
    assert_eq!(store.count(), 0);
}

#[tokio::test]
async fn an_unreachable_base_url_says_so() {
    // A port nothing listens on: bind one, then free it.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let smoke = loopback_builder(addr).build().unwrap();
    let ctx = Context::detached("x", Duration::from_secs(5)).with_pools_of(&smoke);
    let error = ctx.api().get("/orders").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::TcpRefused, "{error:?}");
    assert!(
        error.message().contains(&format!(
            "the service's API at http://{addr} did not answer"
        )),
        "{}",
        error.message()
    );
}

/// The orders API on actix-web, over the same store.
mod actix_orders {
    use actix_web::{HttpRequest, HttpResponse, web};

    use super::*;

    fn actix_role(store: &Store, request: &HttpRequest) -> Result<&'static str, HttpResponse> {
        let mut headers = HeaderMap::new();
        if let Some(value) = request.headers().get("authorization") {
            headers.insert("authorization", value.as_bytes().try_into().unwrap());
        }
        role(store, &headers).map_err(|s| {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(s.as_u16()).unwrap()).finish()
        })
    }

    fn actix_writer(store: &Store, request: &HttpRequest) -> Result<(), HttpResponse> {
        match actix_role(store, request)? {
            "clerk" => Ok(()),
            _ => Err(HttpResponse::Forbidden().finish()),
        }
    }

    async fn list(store: web::Data<Store>, request: HttpRequest) -> HttpResponse {
        if let Err(denied) = actix_role(&store, &request) {
            return denied;
        }
        let all: Vec<Order> = store.orders.lock().unwrap().values().cloned().collect();
        HttpResponse::Ok().json(all)
    }

    async fn create(
        store: web::Data<Store>,
        request: HttpRequest,
        new: web::Json<serde_json::Value>,
    ) -> HttpResponse {
        if let Err(denied) = actix_writer(&store, &request) {
            return denied;
        }
        let order = Order {
            id: store.next.fetch_add(1, Ordering::SeqCst) + 1,
            item: new["item"].as_str().unwrap_or_default().to_string(),
            quantity: new["quantity"].as_i64().unwrap_or(1),
        };
        store.orders.lock().unwrap().insert(order.id, order.clone());
        HttpResponse::Created().json(order)
    }

    async fn read(
        store: web::Data<Store>,
        request: HttpRequest,
        id: web::Path<i64>,
    ) -> HttpResponse {
        if let Err(denied) = actix_role(&store, &request) {
            return denied;
        }
        if store.faults.list_fails.load(Ordering::SeqCst) {
            return HttpResponse::InternalServerError().finish();
        }
        match store.orders.lock().unwrap().get(&id) {
            Some(order) => HttpResponse::Ok().json(order),
            None => HttpResponse::NotFound().finish(),
        }
    }

    async fn remove(
        store: web::Data<Store>,
        request: HttpRequest,
        id: web::Path<i64>,
    ) -> HttpResponse {
        if let Err(denied) = actix_writer(&store, &request) {
            return denied;
        }
        match store.orders.lock().unwrap().remove(&id) {
            Some(_) => HttpResponse::NoContent().finish(),
            None => HttpResponse::NotFound().finish(),
        }
    }

    pub fn routes(config: &mut web::ServiceConfig) {
        config
            .route("/orders", web::get().to(list))
            .route("/orders", web::post().to(create))
            .route("/orders/{id}", web::get().to(read))
            .route("/orders/{id}", web::delete().to(remove));
    }
}

/// actix-web's `App` is `!Send`; `smoketest::actix::api` builds it on a thread of its own
/// and the scenario's requests travel there, no socket involved.
#[tokio::test]
async fn an_actix_app_is_called_in_process() {
    let store = Store::default();
    let data = actix_web::web::Data::new(store.clone());
    let passing = Smoketest::builder()
        .without_discovery()
        .api(smoketest::actix::api(move || {
            actix_web::App::new()
                .app_data(data)
                .configure(actix_orders::routes)
        }))
        .persona("clerk", Persona::bearer("clerk-static-token"));
    let check = run_lifecycle(passing).await;
    assert_eq!(check.status, Status::Pass, "{check:#?}");
    assert_eq!(check.steps[0].status_code, Some(201));
    assert_eq!(check.steps[5].status_code, Some(404));
    assert_eq!(store.count(), 0);

    // Failing at step 2 (the actix read handler answers 500): the teardown still runs.
    store.faults.list_fails.store(true, Ordering::SeqCst);
    let data = actix_web::web::Data::new(store.clone());
    let failing = Smoketest::builder()
        .without_discovery()
        .api(smoketest::actix::api(move || {
            actix_web::App::new()
                .app_data(data)
                .configure(actix_orders::routes)
        }))
        .persona("clerk", Persona::bearer("clerk-static-token"));
    let check = run_lifecycle(failing).await;
    assert_eq!(check.status, Status::Fail);
    assert_eq!(check.steps[1].status_code, Some(500));
    assert_eq!(check.steps[5].status_code, Some(204));
    assert_eq!(store.count(), 0);
}

/// The real listener: an actix service gives its own loopback address, and the endpoint's
/// scenario calls back into the same server while that server answers `/smoketest`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actix_service_runs_its_scenario_over_its_own_loopback_listener() {
    use actix_web::{App, HttpServer, web};

    let store = Store::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let smoke = loopback_builder(addr)
        .check(smoketest::scenario::as_persona("clerk", lifecycle_check()))
        .build()
        .unwrap();
    let data = web::Data::new(store.clone());
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            HttpServer::new(move || {
                App::new()
                    .app_data(data.clone())
                    .configure(actix_orders::routes)
                    .service(smoketest::actix::scope(smoke.clone()))
            })
            .workers(1)
            .listen(listener)
            .unwrap()
            .run()
            .await
            .unwrap()
        })
    });
    let report: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{addr}/smoketest"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["status"], "pass", "{report:#}");
    let steps = report["checks"][0]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 6);
    assert_eq!(steps[0]["status_code"], 201);
    assert_eq!(steps[5]["name"], "teardown: DELETE /orders/1");
    assert_eq!(store.count(), 0);
}
