//! Safe to expose, over real loopback HTTP through the axum adapter: access control and
//! detail levels, redaction, and load protection as a client on the network sees them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use smoketest::{CheckError, Detail, ErrorKind, Outcome, Smoketest, SmoketestBuilder, from_fn};

const TOKEN: &str = "safety-test-token-a1b2c3d4";

async fn serve(smoke: Smoketest) -> SocketAddr {
    let app = axum::Router::new()
        .route("/orders", axum::routing::get(|| async { "[]" }))
        .merge(smoketest_axum::router(smoke));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Like [`serve`], counting each request as it reaches the server, before the adapter.
async fn serve_counting(smoke: Smoketest, arrived: Arc<AtomicUsize>) -> SocketAddr {
    let app = smoketest_axum::router(smoke).layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            arrived.fetch_add(1, Ordering::SeqCst);
            next.run(request)
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A check that counts its executions in `runs` and lasts until `target` requests have
/// arrived (however slow the machine), plus a moment for the last to join the run.
fn lasting_until(
    runs: &Arc<AtomicUsize>,
    arrived: &Arc<AtomicUsize>,
    target: usize,
) -> impl smoketest::SmokeCheck {
    let (runs, arrived) = (runs.clone(), arrived.clone());
    from_fn("db::write", move |_ctx| {
        runs.fetch_add(1, Ordering::SeqCst);
        let arrived = arrived.clone();
        Box::pin(async move {
            let give_up = tokio::time::Instant::now() + Duration::from_secs(50);
            while arrived.load(Ordering::SeqCst) < target && tokio::time::Instant::now() < give_up {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(Outcome::Pass)
        })
    })
}

fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
}

fn client() -> reqwest::Client {
    client_builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn failing_db_check() -> impl smoketest::SmokeCheck {
    from_fn("orders::db_write", |_ctx| {
        Box::pin(async {
            Err(CheckError::new(
                ErrorKind::DbUnavailable,
                "connecting to postgres://orders:hunter2@127.0.0.1:5432/orders: Connection refused (os error 111)",
            ))
        })
    })
}

fn builder() -> SmoketestBuilder {
    Smoketest::builder()
        .without_discovery()
        .check(failing_db_check())
        .bearer_token(TOKEN)
        .min_interval(Duration::ZERO)
}

#[tokio::test]
async fn anonymous_and_authorized_callers_see_their_level_over_http() {
    let addr = serve(builder().anonymous_detail(Detail::Checks).build().unwrap()).await;
    let client = client();
    for format in ["json", "text"] {
        let url = format!("http://{addr}/smoketest?format={format}");
        let anonymous = client.get(&url).send().await.unwrap();
        assert_eq!(anonymous.status(), 500);
        let body = anonymous.text().await.unwrap();
        assert!(
            body.contains("orders::db_write") && body.contains("db_unavailable"),
            "{body}"
        );
        assert!(
            !body.contains("Connection refused"),
            "{format}: no messages: {body}"
        );

        let authorized = client.get(&url).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(authorized.status(), 500);
        let body = authorized.text().await.unwrap();
        assert!(body.contains("Connection refused"), "{format}: {body}");
        assert!(
            body.contains("postgres://orders:***@127.0.0.1:5432/orders"),
            "{body}"
        );
        assert!(!body.contains("hunter2"), "{format}: {body}");
    }
}

#[tokio::test]
async fn wrong_and_missing_tokens_get_401_with_www_authenticate_over_http() {
    let addr = serve(builder().require_authorization().build().unwrap()).await;
    let client = client();
    let url = format!("http://{addr}/smoketest");

    let missing = client.get(&url).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(
        missing.headers()["www-authenticate"],
        r#"Bearer realm="smoketest""#
    );

    let wrong = client
        .get(&url)
        .bearer_auth("not-the-token-000000")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        wrong.headers()["www-authenticate"],
        r#"Bearer realm="smoketest", error="invalid_token""#
    );
    let body: serde_json::Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["kind"], "invalid_token");

    // HEAD answers the same, without a body.
    let head = client.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 401);

    let right = client.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(right.status(), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_http_requests_run_the_check_once() {
    let (runs, arrived) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let smoke = Smoketest::builder()
        .without_discovery()
        .check(lasting_until(&runs, &arrived, 1000))
        .build()
        .unwrap();
    let addr = serve_counting(smoke.clone(), arrived.clone()).await;
    let client = client_builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = format!("http://{addr}/smoketest");
    let requests: Vec<_> = (0..1000)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { client.get(&url).send().await })
        })
        .collect();
    let mut ok = 0;
    for request in requests {
        let response = request.await.unwrap().expect("a response over loopback");
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["status"], "pass");
        ok += 1;
    }
    assert_eq!(ok, 1000);
    assert_eq!(arrived.load(Ordering::SeqCst), 1000);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "one execution, counted by the check"
    );
    assert_eq!(smoke.runs_started(), 1);
}

/// actix-web with two workers, each its own single-threaded runtime, and the checks run on
/// the worker that received the request: requests arriving on both workers still share
/// one run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_on_different_actix_workers_share_one_run() {
    use actix_web::dev::Service as _;

    let (runs, arrived) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let smoke = Smoketest::builder()
        .without_discovery()
        .check(lasting_until(&runs, &arrived, 300))
        .build()
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (served, counter) = (smoke.clone(), arrived.clone());
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            actix_web::HttpServer::new(move || {
                let counter = counter.clone();
                actix_web::App::new()
                    .wrap_fn(move |request, service| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        service.call(request)
                    })
                    .service(smoketest_actix::scope(served.clone()).on_worker())
            })
            .workers(2)
            .listen(listener)
            .unwrap()
            .run()
            .await
            .unwrap()
        })
    });
    let client = client_builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = format!("http://{addr}/smoketest");
    let requests: Vec<_> = (0..300)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { client.get(&url).send().await })
        })
        .collect();
    for request in requests {
        let response = request.await.unwrap().expect("a response over loopback");
        assert_eq!(response.status(), 200);
    }
    assert_eq!(arrived.load(Ordering::SeqCst), 300);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "one execution, counted by the check"
    );
}

#[tokio::test]
async fn the_default_limits_hold_an_anonymous_flood_to_the_burst() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    // Default limits: burst 10, then one run per second.
    let smoke = Smoketest::builder()
        .without_discovery()
        .check(from_fn("db::write", move |_ctx| {
            counter.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(Outcome::Pass) })
        }))
        .build()
        .unwrap();
    let addr = serve(smoke).await;
    let client = client();
    let url = format!("http://{addr}/smoketest");
    let mut cached = 0;
    let started = std::time::Instant::now();
    // 100 sequential requests: far more than the burst allows, so most must come from the
    // latest report.
    for _ in 0..100 {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        if body["cached"] == true {
            cached += 1;
            assert!(body["age_ms"].as_f64().is_some());
        }
    }
    let ran = runs.load(Ordering::SeqCst);
    // The bucket refills one run per second of however long this took.
    let allowed = 10 + started.elapsed().as_secs() as usize + 1;
    assert!(ran >= 10, "the burst runs: {ran}");
    assert!(ran <= allowed, "{ran} runs, at most {allowed} allowed");
    assert_eq!(cached, 100 - ran);

    // ?fresh is for authorized callers only (this service has no token at all).
    let fresh = client.get(format!("{url}?fresh=1")).send().await.unwrap();
    assert_eq!(fresh.status(), 403);
}
