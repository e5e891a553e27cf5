//! Where checks run under actix-web, whose workers are single-threaded runtimes: a check
//! that blocks for 2 s must not delay another route of the same (only) worker, and checks
//! still run concurrently.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{App, HttpServer, web};
use smoketest_actix::SmoketestScope;
use smoketest_core::{Context, Detail, Outcome, Smoketest, from_fn};
use tokio::sync::Notify;

/// Serve `/ping` and the smoketest scope from an actix server with ONE worker; return its
/// base URL.
fn serve(scope: impl Fn() -> SmoketestScope + Send + Clone + 'static) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            HttpServer::new(move || {
                App::new()
                    .route("/ping", web::get().to(|| async { "pong" }))
                    .route(
                        "/thread",
                        web::get().to(|| async {
                            std::thread::current().name().unwrap_or("").to_string()
                        }),
                    )
                    .service(scope())
            })
            .workers(1)
            .listen(listener)
            .expect("listen")
            .run()
            .await
            .expect("the actix server runs")
        })
    });
    format!("http://{addr}")
}

/// A check that signals `started`, then blocks a thread for 2 s: through `spawn_blocking`
/// (the recommended way), or right on its own thread (the mistake).
fn blocking_check(started: Arc<Notify>, via_spawn_blocking: bool) -> Smoketest {
    Smoketest::builder()
        .without_discovery()
        .check(from_fn("slow::blocking", move |_ctx| {
            let started = started.clone();
            Box::pin(async move {
                started.notify_one();
                let block = || std::thread::sleep(Duration::from_secs(2));
                if via_spawn_blocking {
                    tokio::task::spawn_blocking(block).await?;
                } else {
                    block();
                }
                Ok(Outcome::Pass)
            })
        }))
        .build()
        .expect("one check")
}

/// Start `GET /smoketest`, wait until its check runs, then time `GET /ping` on the same
/// worker. Returns how long `/ping` took and the smoketest's status and total time.
async fn ping_during_check(base: &str, started: &Notify) -> (Duration, u16, Duration) {
    let client = reqwest::Client::new();
    let smoke = {
        let client = client.clone();
        let url = format!("{base}/smoketest");
        tokio::spawn(async move {
            let start = Instant::now();
            let status = client
                .get(url)
                .send()
                .await
                .expect("GET /smoketest")
                .status();
            (status.as_u16(), start.elapsed())
        })
    };
    tokio::time::timeout(Duration::from_secs(10), started.notified())
        .await
        .expect("the check started");
    let start = Instant::now();
    let pong = client
        .get(format!("{base}/ping"))
        .send()
        .await
        .expect("GET /ping")
        .text()
        .await
        .expect("body");
    let ping = start.elapsed();
    assert_eq!(pong, "pong");
    assert!(
        !smoke.is_finished(),
        "the smoketest answered before /ping; the check did not block"
    );
    let (status, total) = smoke.await.expect("the smoketest request");
    (ping, status, total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_blocking_2s_in_spawn_blocking_on_the_worker_does_not_delay_another_route() {
    let started = Arc::new(Notify::new());
    let smoke = blocking_check(started.clone(), true);
    let base = serve(move || smoketest_actix::scope(smoke.clone()).on_worker());

    let (ping, status, total) = ping_during_check(&base, &started).await;
    assert!(
        ping < Duration::from_secs(1),
        "/ping took {ping:?} while the check blocked"
    );
    assert_eq!(status, 200);
    assert!(
        total >= Duration::from_secs(2),
        "the check blocked for only {total:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_blocking_2s_in_spawn_blocking_does_not_delay_another_route_by_default() {
    let started = Arc::new(Notify::new());
    let smoke = blocking_check(started.clone(), true);
    let base = serve(move || smoketest_actix::scope(smoke.clone()));

    let (ping, status, total) = ping_during_check(&base, &started).await;
    assert!(
        ping < Duration::from_secs(1),
        "/ping took {ping:?} while the check blocked"
    );
    assert_eq!(status, 200);
    assert!(
        total >= Duration::from_secs(2),
        "the check blocked for only {total:?}"
    );
}

/// The default keeps the worker free even from a check that blocks its own thread, the
/// mistake `on_worker` cannot survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_blocking_its_own_thread_does_not_stall_the_worker_by_default() {
    let started = Arc::new(Notify::new());
    let smoke = blocking_check(started.clone(), false);
    let base = serve(move || smoketest_actix::scope(smoke.clone()));

    let (ping, status, _) = ping_during_check(&base, &started).await;
    assert!(
        ping < Duration::from_secs(1),
        "/ping took {ping:?} while the check blocked"
    );
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_run_concurrently_on_the_worker() {
    let mut builder = Smoketest::builder().without_discovery();
    for i in 0..5 {
        builder = builder.check(from_fn(format!("sleepy::{i}"), |_ctx| {
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok(Outcome::Pass)
            })
        }));
    }
    let smoke = builder.build().expect("unique names");
    let base = serve(move || smoketest_actix::scope(smoke.clone()).on_worker());

    let start = Instant::now();
    let response = reqwest::get(format!("{base}/smoketest"))
        .await
        .expect("GET");
    let took = start.elapsed();
    assert_eq!(response.status(), 200);
    // One after another would take 2.5 s.
    assert!(
        took < Duration::from_millis(1500),
        "5 checks of 500 ms took {took:?}"
    );
}

/// A check that reports the name of the thread it runs on.
fn thread_reporting() -> Smoketest {
    Smoketest::builder()
        .without_discovery()
        .anonymous_detail(Detail::Full)
        .check(from_fn("thread", |ctx: &mut Context| {
            ctx.observe("thread", std::thread::current().name().unwrap_or(""));
            Box::pin(async { Ok(Outcome::Pass) })
        }))
        .build()
        .expect("one check")
}

async fn check_thread(base: &str) -> String {
    let body = reqwest::get(format!("{base}/smoketest/thread"))
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    let report: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    report["checks"][0]["observed"]["thread"]
        .as_str()
        .unwrap_or_else(|| panic!("no observed thread in {body}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_run_where_the_scope_says() {
    let smoke = thread_reporting();
    let shared = {
        let smoke = smoke.clone();
        serve(move || smoketest_actix::scope(smoke.clone()))
    };
    assert_eq!(check_thread(&shared).await, "smoketest-checks");

    let on_worker = {
        let smoke = smoke.clone();
        serve(move || smoketest_actix::scope(smoke.clone()).on_worker())
    };
    let worker = reqwest::get(format!("{on_worker}/thread"))
        .await
        .expect("GET /thread")
        .text()
        .await
        .expect("body");
    assert_eq!(check_thread(&on_worker).await, worker);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("my-checks")
        .enable_all()
        .build()
        .expect("a runtime");
    let handle = runtime.handle().clone();
    let custom = serve(move || smoketest_actix::scope(smoke.clone()).runtime(handle.clone()));
    assert_eq!(check_thread(&custom).await, "my-checks");
    // Dropping a runtime inside an async context is refused; hand it to a plain thread.
    std::thread::spawn(move || drop(runtime));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_fall_back_to_the_worker_when_the_given_runtime_has_shut_down() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("gone")
        .enable_all()
        .build()
        .expect("a runtime");
    let handle = runtime.handle().clone();
    runtime.shutdown_background();

    let smoke = thread_reporting();
    let base = serve(move || smoketest_actix::scope(smoke.clone()).runtime(handle.clone()));
    let worker = reqwest::get(format!("{base}/thread"))
        .await
        .expect("GET /thread")
        .text()
        .await
        .expect("body");
    assert_eq!(check_thread(&base).await, worker);
}
