//! A report is a verdict only when it proves something: checks ran (`no_checks`), the run
//! is newer than the gate (`stale`, `--max-age`, `?fresh=1` with a token), it is of the
//! right service (`--service`); and a 5xx without a report is `http_status`.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use smoketest_core::{Detail, Outcome, Smoketest, from_fn};
use support::*;

const TOKEN: &str = "gate-token-0123456789abcdef";

/// `healthy`, with its report cached for an hour, and optionally a bearer token.
fn cached_service(token: Option<&str>) -> Smoketest {
    let mut builder = Smoketest::builder()
        .service("orders-api")
        .release_id("r1")
        .anonymous_detail(Detail::Full)
        .cache_ttl(Duration::from_secs(3600))
        .without_discovery()
        .check(from_fn("orders::db_write", |_ctx| {
            Box::pin(async { Ok(Outcome::Pass) })
        }));
    if let Some(token) = token {
        builder = builder.bearer_token(token);
    }
    builder.build().unwrap()
}

/// One plain GET, as any other client (a monitor, a probe) would send before the deploy.
fn get(server: &Server, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {}\r\naccept: application/json\r\n\r\n",
        server.addr
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn a_mistyped_tag_runs_no_checks_and_exits_2_with_no_checks() {
    let server = Server::smoke(healthy("r1"));
    let url = format!("{}?tag=no-such-tag", server.url());
    let out = smoketest(&["check", &url]);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("no_checks: the endpoint ran no checks"),
        "{text}"
    );
    assert!(text.contains("a wrong `?tag=`"), "{text}");
    assert!(
        text.contains("README.md#when-the-endpoint-ran-no-checks"),
        "{text}"
    );
    assert!(text.contains("exit 2"), "{text}");

    let out = smoketest(&["check", &url, "--format", "json"]);
    let json = json(&out);
    assert_eq!(json["decision"], "error");
    let endpoint = &json["endpoints"][0];
    assert_eq!(endpoint["outcome"], "error");
    assert_eq!(endpoint["error"]["kind"], "no_checks");
    assert_eq!(endpoint["report"]["summary"]["total"], 0, "{endpoint}");

    let out = smoketest(&["check", &url, "--format", "junit"]);
    let junit = quick_junit::Report::deserialize_from_str(&stdout(&out)).unwrap();
    assert_eq!(junit.errors, 1, "{}", stdout(&out));
}

#[test]
fn fewer_checks_than_min_checks_exit_2_and_skipped_checks_do_not_count() {
    let server = Server::smoke(healthy("r1"));
    let out = smoketest(&["check", &server.url(), "--min-checks", "2"]);
    assert_eq!(code(&out), 0, "two checks ran: {}", stdout(&out));
    let out = smoketest(&["check", &server.url(), "--min-checks", "3"]);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("ran only 2 check(s), fewer than --min-checks 3"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        code(&smoketest(&["check", &server.url(), "--min-checks", "0"])),
        64
    );

    // Every check skipped: nothing about production was tried.
    let skipped = Smoketest::builder()
        .without_discovery()
        .anonymous_detail(Detail::Full)
        .check(from_fn("payments::api", |_ctx| {
            Box::pin(async { Ok(Outcome::Skip("payments disabled".into())) })
        }))
        .build()
        .unwrap();
    let server = Server::smoke(skipped);
    let out = smoketest(&["check", &server.url(), "--format", "json"]);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    let error = &json(&out)["endpoints"][0]["error"];
    assert_eq!(error["kind"], "no_checks", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("1 skipped"),
        "{error}"
    );
}

#[test]
fn a_failing_report_still_fails_whatever_min_checks_says() {
    let server = Server::smoke(failing("r1"));
    let out = smoketest(&["check", &server.url(), "--min-checks", "5"]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
}

#[test]
fn a_cached_report_from_before_the_gate_is_stale_and_max_age_accepts_it() {
    let server = Server::smoke(cached_service(None));
    // Someone asked before the deploy gate ran: the report is cached from then.
    assert!(get(&server, "/smoketest").starts_with("HTTP/1.1 200"));
    std::thread::sleep(Duration::from_millis(300));

    let mut args = vec!["check", "--timeout", "1s", "--format", "json"];
    let url = server.url();
    args.push(&url);
    args.extend_from_slice(FAST);
    let started = Instant::now();
    let out = smoketest(&args);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "polled until the timeout"
    );
    let endpoint = &json(&out)["endpoints"][0];
    assert_eq!(endpoint["error"]["kind"], "stale", "{endpoint}");
    assert!(
        endpoint["attempts"].as_u64().unwrap() > 1,
        "stale reports are asked again: {endpoint}"
    );
    let age = endpoint["error"]["age_ms"].as_f64().unwrap();
    assert!(age >= 300.0, "the age is named: {endpoint}");
    let message = endpoint["error"]["message"].as_str().unwrap();
    assert!(message.contains("cached report"), "{message}");
    assert!(message.contains("age_ms"), "{message}");
    assert!(
        endpoint["error"]["suggestion"]
            .as_str()
            .unwrap()
            .contains("--max-age"),
        "{endpoint}"
    );

    let mut human = vec!["check", url.as_str(), "--timeout", "300ms"];
    human.extend_from_slice(FAST);
    let text = stdout(&smoketest(&human));
    assert!(
        text.contains("stale: only reports older than this gate came"),
        "{text}"
    );

    // Accepted explicitly.
    let out = smoketest(&["check", &url, "--max-age", "1h", "--format", "json"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert_eq!(json(&out)["endpoints"][0]["report"]["cached"], true);
    // Too old for the limit given.
    let mut args = vec![
        "check",
        url.as_str(),
        "--max-age",
        "1ms",
        "--timeout",
        "300ms",
    ];
    args.extend_from_slice(FAST);
    assert_eq!(code(&smoketest(&args)), 2);
}

#[test]
fn the_gate_polls_again_until_a_report_newer_than_itself_comes() {
    // The first answers are a report cached a minute ago; then the cache expires.
    let cached = {
        let mut report: serde_json::Value =
            serde_json::from_str(&report_json(&healthy("r1"))).unwrap();
        report["cached"] = true.into();
        report["age_ms"] = 60_000.0.into();
        report.to_string()
    };
    let fresh = healthy("r1");
    let server = Server::start(move |n| {
        if n < 3 {
            Action::Status(
                200,
                vec![("content-type".into(), "application/json".into())],
                cached.clone(),
            )
        } else {
            Action::Smoke(fresh.clone())
        }
    });
    let mut args = vec!["check", "--format", "json"];
    let url = server.url();
    args.push(&url);
    args.extend_from_slice(FAST);
    let out = smoketest(&args);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert_eq!(server.requests(), 4);
    let endpoint = &json(&out)["endpoints"][0];
    assert_eq!(endpoint["report"]["cached"], false, "{endpoint}");
    assert_eq!(endpoint["attempts"], 4);
}

#[test]
fn a_report_run_long_before_the_gate_but_marked_uncached_is_stale() {
    // A proxy that cached the response despite `no-store`: `cached` is false, but the
    // run started an hour ago, far beyond any clock skew.
    let mut report: serde_json::Value = serde_json::from_str(&report_json(&healthy("r1"))).unwrap();
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    report["started_at"] = humantime::format_rfc3339_millis(hour_ago)
        .to_string()
        .into();
    let body = report.to_string();
    let server = Server::start(move |_| {
        Action::Status(
            200,
            vec![("content-type".into(), "application/json".into())],
            body.clone(),
        )
    });
    let mut args = vec!["check", "--timeout", "300ms", "--format", "json"];
    let url = server.url();
    args.push(&url);
    args.extend_from_slice(FAST);
    let out = smoketest(&args);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    let error = &json(&out)["endpoints"][0]["error"];
    assert_eq!(error["kind"], "stale", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("proxy or CDN"),
        "{error}"
    );
    let out = smoketest(&["check", &url, "--max-age", "2h"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
}

#[test]
fn with_a_token_the_gate_asks_for_a_fresh_run() {
    let server = Server::smoke(cached_service(Some(TOKEN)));
    assert!(get(&server, "/smoketest").starts_with("HTTP/1.1 200"));
    let url = format!("{}?check=orders::db_write", server.url());
    let out = smoketest_with_env(
        &["check", &url, "--timeout", "2s", "--format", "json"],
        &[("SMOKETEST_TOKEN", TOKEN)],
    );
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    let seen = server.seen();
    let path = &seen.last().unwrap().path;
    assert!(path.contains("fresh=1"), "{path}");
    assert!(
        path.contains("check=orders"),
        "other parameters kept: {path}"
    );
    assert_eq!(server.requests(), 2, "one fresh run, no polling");
    let report = &json(&out)["endpoints"][0]["report"];
    assert_eq!(report["cached"], false, "{report}");

    // Without the token nothing asks for ?fresh=1 (anonymous callers would get 403).
    let mut args = vec!["check", url.as_str(), "--timeout", "300ms"];
    args.extend_from_slice(FAST);
    let out = smoketest(&args);
    assert_eq!(
        code(&out),
        2,
        "the cached report is stale: {}",
        stdout(&out)
    );
    assert!(
        server
            .seen()
            .iter()
            .skip(2)
            .all(|s| !s.path.contains("fresh")),
        "no fresh=1 without a token"
    );
}

#[test]
fn another_service_fails_with_both_names() {
    let server = Server::smoke(healthy("r1"));
    let out = smoketest(&["check", &server.url(), "--service", "orders-api"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));

    let out = smoketest(&["check", &server.url(), "--service", "payments-api"]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("is service orders-api, not payments-api"),
        "{text}"
    );

    let out = smoketest(&[
        "check",
        &server.url(),
        "--service",
        "payments-api",
        "--format",
        "json",
    ]);
    let json = json(&out);
    assert_eq!(json["service"], "payments-api");
    assert_eq!(json["endpoints"][0]["service_matches"], false);
    assert_eq!(json["endpoints"][0]["outcome"], "fail");

    let out = smoketest(&[
        "check",
        &server.url(),
        "--service",
        "payments-api",
        "--format",
        "junit",
    ]);
    let junit = quick_junit::Report::deserialize_from_str(&stdout(&out)).unwrap();
    assert_eq!(junit.failures, 1, "{}", stdout(&out));
}

#[test]
fn a_maintenance_page_503_is_http_status_and_still_retried() {
    let server = Server::start(|_| {
        Action::Status(
            503,
            vec![
                ("content-type".into(), "text/html".into()),
                ("server".into(), "nginx/1.25.3".into()),
            ],
            "<html><body><h1>Down for maintenance</h1></body></html>".into(),
        )
    });
    let mut args = vec!["check", "--timeout", "500ms", "--format", "json"];
    let url = server.url();
    args.push(&url);
    args.extend_from_slice(FAST);
    let out = smoketest(&args);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    let endpoint = &json(&out)["endpoints"][0];
    let error = &endpoint["error"];
    assert_eq!(error["kind"], "http_status", "{error}");
    assert_eq!(error["http_status"], 503);
    assert_eq!(error["layer"], "http");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("503 Service Unavailable"), "{message}");
    assert!(message.contains("nginx/1.25.3"), "{message}");
    assert!(message.contains("Down for maintenance"), "{message}");
    assert!(endpoint["attempts"].as_u64().unwrap() > 1, "503 is retried");

    // A 500 error page is final: not retried, and also http_status.
    let server = Server::start(|_| status(500));
    let out = smoketest(&["check", &server.url(), "--format", "json"]);
    assert_eq!(code(&out), 2);
    assert_eq!(server.requests(), 1);
    assert_eq!(json(&out)["endpoints"][0]["error"]["kind"], "http_status");
}

#[test]
fn without_fail_fast_every_endpoint_is_awaited_within_the_timeout() {
    let down = Server::smoke(failing("r1"));
    let hung = Server::start(|_| Action::Hang);
    let out = smoketest(&[
        "check",
        &hung.url(),
        &down.url(),
        "--attempt-timeout",
        "300ms",
        "--timeout",
        "1s",
        "--format",
        "json",
    ]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let json = json(&out);
    assert_eq!(json["endpoints"][0]["outcome"], "error", "{json}");
    assert_eq!(json["endpoints"][0]["error"]["kind"], "timeout");
    assert_eq!(json["endpoints"][1]["outcome"], "fail");
}
