//! The gate against a real axum service mounting the endpoint with `smoketest-axum`.

mod support;

use smoketest_core::{CheckError, Outcome, Smoketest, from_fn};
use support::*;

/// Serve `smoke` merged into an axum app on a loopback port; returns the base URL.
fn serve(smoke: Smoketest) -> (String, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/orders", axum::routing::get(|| async { "[]" }))
        .merge(smoketest_axum::router(smoke));
    runtime.spawn(async move { axum::serve(listener, app).await });
    (base, runtime)
}

#[test]
fn the_gate_decides_on_an_axum_service() {
    let smoke = Smoketest::builder()
        .service("orders-api")
        .release_id("9f2c1ab")
        .without_discovery()
        .check(from_fn("orders::db_write", |_| {
            Box::pin(async { Ok(Outcome::Pass) })
        }))
        .check(from_fn("payments::api", |_| {
            Box::pin(async { Err(CheckError::assertion("503 from payments")) })
        }))
        .build()
        .unwrap();
    let (base, _runtime) = serve(smoke);

    // The whole endpoint fails: roll back.
    let out = smoketest(&["check", &format!("{base}/smoketest"), "--format", "json"]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let json = json(&out);
    assert_eq!(json["endpoints"][0]["http_status"], 500);
    assert_eq!(json["endpoints"][0]["report"]["release_id"], "9f2c1ab");

    // One passing check of it passes, with the release required.
    let one = format!("{base}/smoketest/orders::db_write");
    let out = smoketest(&["check", &one, "--require-release", "9f2c1ab"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));

    // A selection the endpoint refuses (400) and a page of the app (not a report): exit 2.
    let out = smoketest(&["check", &format!("{base}/smoketest?bogus=1")]);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    assert!(stdout(&out).contains("bad_request"), "{}", stdout(&out));
    let out = smoketest(&["check", &format!("{base}/orders")]);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    assert!(stdout(&out).contains("not_a_report"), "{}", stdout(&out));
}
