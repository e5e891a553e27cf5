//! Built-in checks registered in a `Smoketest` and run by the runner: what a deploy
//! pipeline reads in the JSON report.
#![cfg(all(feature = "http", feature = "system"))]

mod support;

use std::time::Duration;

use smoketest_checks::env::EnvCheck;
use smoketest_checks::http::HttpCheck;
use smoketest_checks::system::WritableDirCheck;
use smoketest_checks::tcp::TcpCheck;
use smoketest_core::{Selection, Smoketest, Status};
use support::respond;

#[tokio::test]
async fn report_carries_kinds_suggestions_and_phase_durations() {
    let healthy = support::http_server(respond(200, "pong")).await;
    let limited = support::http_server(respond(429, "")).await;
    let closed = support::closed_port();
    let smoke = Smoketest::builder()
        .service("orders-api")
        .without_discovery()
        .check(
            HttpCheck::new(format!("http://localhost:{}/v1/ping", healthy.port()))
                .body_contains("pong"),
        )
        .check(HttpCheck::new(format!("http://{limited}/")).name("upstream::limited"))
        .check(TcpCheck::new(closed.to_string()).name("upstream::closed"))
        .check(EnvCheck::new(["SMOKETEST_REPORT_TEST_UNSET_VAR"]))
        .check(WritableDirCheck::new(std::env::temp_dir()).timeout(Duration::from_secs(2)))
        .build()
        .unwrap();
    let report = smoke.run(&Selection::all()).await.unwrap();
    assert_eq!(report.status, Status::Fail);
    assert_eq!(report.summary.passed, 2);
    assert_eq!(report.summary.failed, 3);

    let check = |name: &str| report.checks.iter().find(|c| c.name == name).unwrap();
    // Default names are usable as `/smoketest/{name}`: no `/` from URLs or paths.
    let ok = check("http::localhost::v1.ping");
    assert_eq!(ok.status, Status::Pass);
    assert!(
        ok.observed.contains_key("dns_ms") && ok.observed.contains_key("first_byte_ms"),
        "{:?}",
        ok.observed
    );
    assert_eq!(ok.tags, ["http", "external"]);

    let error = |name: &str| check(name).error.clone().unwrap();
    assert_eq!(error("upstream::limited").kind, "http_status");
    assert!(
        error("upstream::limited")
            .suggestion
            .unwrap()
            .contains("rate limit")
    );
    assert_eq!(error("upstream::closed").kind, "tcp_refused");
    assert_eq!(error("env::required").kind, "config");
    let writable = report
        .checks
        .iter()
        .find(|c| c.name.starts_with("system::writable::"))
        .unwrap();
    assert_eq!(writable.status, Status::Pass, "{writable:?}");
    assert_eq!(writable.tags, ["system"]);
}
