//! `smoketest check` against real loopback servers: every exit code, which faults are
//! retried, Retry-After, --wait, --require-release, outputs, and the token.

mod support;

use std::time::{Duration, Instant};

use support::*;

#[test]
fn a_passing_service_exits_0() {
    let server = Server::smoke(healthy("r1"));
    let out = smoketest(&["check", &server.url()]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("PASS"), "{text}");
    assert!(text.contains("orders-api 1.4.2 release r1"), "{text}");
    assert!(text.contains("2/2 checks passed"), "{text}");
    assert_eq!(server.requests(), 1);
    assert_eq!(server.seen()[0].headers["accept"], "application/json");
}

#[test]
fn a_failing_report_exits_1_at_once_without_retrying() {
    let server = Server::smoke(failing("r1"));
    let started = Instant::now();
    let out = smoketest(&["check", &server.url(), "--timeout", "20s"]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(server.requests(), 1, "a report is an answer: no retry");
    let text = stdout(&out);
    assert!(
        text.contains("[-]orders::db_write  assertion: expected 1 row, found 0"),
        "{text}"
    );
    assert!(text.contains("roll back"), "{text}");
}

#[test]
fn a_report_decides_whatever_the_http_status() {
    // A failing report that comes with 503 (a service configured so) is not retried.
    let smoke = smoketest_core::Smoketest::builder()
        .failure_status(http::StatusCode::SERVICE_UNAVAILABLE)
        .without_discovery()
        .check(smoketest_core::from_fn("db", |_| {
            Box::pin(async { Err(smoketest_core::CheckError::assertion("no rows")) })
        }))
        .build()
        .unwrap();
    let server = Server::smoke(smoke);
    let out = smoketest(&["check", &server.url()]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert_eq!(server.requests(), 1);

    // A passing report passes even with an error status.
    let body = report_json(&healthy("r1"));
    let server = Server::start(move |_| {
        Action::Status(
            503,
            vec![("content-type".into(), "application/json".into())],
            body.clone(),
        )
    });
    let out = smoketest(&["check", &server.url()]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert_eq!(server.requests(), 1);
}

#[test]
fn an_unreachable_endpoint_exits_2_and_names_the_layer() {
    let url = format!("http://{}/smoketest", free_addr());
    let mut args = vec!["check", url.as_str(), "--timeout", "500ms"];
    args.extend_from_slice(FAST);
    let out = smoketest(&args);
    assert_eq!(code(&out), 2, "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("tcp_refused (tcp layer)"), "{text}");
    assert!(text.contains("was refused"), "{text}");
    assert!(
        text.contains("→ Check that the upstream is running"),
        "{text}"
    );

    args.extend_from_slice(&["--format", "json"]);
    let out = smoketest(&args);
    let json = json(&out);
    assert_eq!(json["decision"], "error");
    assert_eq!(json["exit_code"], 2);
    let endpoint = &json["endpoints"][0];
    assert_eq!(endpoint["error"]["kind"], "tcp_refused");
    assert_eq!(endpoint["error"]["layer"], "tcp");
    assert!(
        endpoint["attempts"].as_u64().unwrap() > 1,
        "connect errors are retried: {endpoint}"
    );
}

#[test]
fn a_name_that_does_not_resolve_is_diagnosed_at_the_dns_layer() {
    // `.invalid` never resolves (RFC 6761).
    let mut args = vec![
        "check",
        "http://no-such-service.invalid/smoketest",
        "--timeout",
        "1s",
        "--format",
        "json",
    ];
    args.extend_from_slice(FAST);
    let out = smoketest(&args);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    let error = &json(&out)["endpoints"][0]["error"];
    assert_eq!(error["kind"], "dns_failure", "{error}");
    assert_eq!(error["layer"], "dns", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("no-such-service.invalid"),
        "{error}"
    );
}

#[test]
fn a_service_that_keeps_resetting_is_diagnosed_at_the_http_layer() {
    let server = Server::start(|_| Action::Reset);
    let url = server.url();
    let mut args = vec![
        "check",
        url.as_str(),
        "--timeout",
        "500ms",
        "--format",
        "json",
    ];
    args.extend_from_slice(FAST);
    let out = smoketest(&args);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    let endpoint = &json(&out)["endpoints"][0];
    assert_eq!(endpoint["error"]["layer"], "http", "{endpoint}");
    assert!(
        endpoint["error"]["phases"]["connect_ms"].is_number(),
        "{endpoint}"
    );
    assert!(
        endpoint["attempts"].as_u64().unwrap() > 1,
        "resets are retried"
    );
}

#[test]
fn answers_that_are_not_reports_exit_2_without_retrying() {
    let refusal = r#"{"error":{"kind":"bad_request","parameter":"bogus","message":"unknown parameter `bogus`"}}"#;
    let cases = [
        (404, "text/html", "<html>Not Found</html>"),
        (
            401,
            "application/json",
            r#"{"error":{"kind":"unauthorized"}}"#,
        ),
        (403, "text/plain", "forbidden"),
        (400, "application/json", refusal),
        (200, "text/html", "<html>Welcome to nginx!</html>"),
        (200, "application/json", r#"{"status":"ok"}"#),
    ];
    for (status, content_type, body) in cases {
        let server = Server::start(move |_| {
            Action::Status(
                status,
                vec![("content-type".into(), content_type.into())],
                body.into(),
            )
        });
        let mut args = vec!["check", "--format", "json", "--timeout", "5s"];
        let url = server.url();
        args.push(&url);
        args.extend_from_slice(FAST);
        let out = smoketest(&args);
        assert_eq!(code(&out), 2, "HTTP {status}: {}", stdout(&out));
        assert_eq!(server.requests(), 1, "HTTP {status} must not be retried");
        let json = json(&out);
        let error = &json["endpoints"][0]["error"];
        assert_eq!(error["kind"], "not_a_report", "HTTP {status}: {error}");
        assert_eq!(error["http_status"], status);
        assert!(error["suggestion"].is_string());
    }
}

#[test]
fn transient_faults_are_retried_until_the_report_comes() {
    type Fault = fn() -> Action;
    let faults: [(&str, Fault); 5] = [
        ("503", || status(503)),
        ("502", || status(502)),
        ("504", || status(504)),
        ("429", || status(429)),
        ("reset", || Action::Reset),
    ];
    for (name, fault) in faults {
        let smoke = healthy("r1");
        let server = Server::start(move |n| {
            if n < 3 {
                fault()
            } else {
                Action::Smoke(smoke.clone())
            }
        });
        let url = server.url();
        let mut args = vec!["check", url.as_str(), "--format", "json"];
        args.extend_from_slice(FAST);
        let out = smoketest(&args);
        assert_eq!(code(&out), 0, "{name}: {}", stdout(&out));
        assert_eq!(
            server.requests(),
            4,
            "{name}: three faults, then the report"
        );
        assert_eq!(json(&out)["endpoints"][0]["attempts"], 4, "{name}");
    }
}

#[test]
fn retry_after_in_seconds_is_honoured() {
    let smoke = healthy("r1");
    let server = Server::start(move |n| {
        if n == 0 {
            Action::Status(
                429,
                vec![("retry-after".into(), "1".into())],
                "slow down".into(),
            )
        } else {
            Action::Smoke(smoke.clone())
        }
    });
    let url = server.url();
    let mut args = vec!["check", url.as_str()];
    args.extend_from_slice(FAST);
    let out = smoketest(&args);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    let gap = seen[1].at - seen[0].at;
    // The backoff alone would be at most 50ms.
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
}

#[test]
fn retry_after_as_an_http_date_is_honoured() {
    let smoke = healthy("r1");
    let server = Server::start(move |n| {
        if n == 0 {
            let at = std::time::SystemTime::now() + Duration::from_secs(2);
            Action::Status(
                503,
                vec![("retry-after".into(), httpdate::fmt_http_date(at))],
                "maintenance".into(),
            )
        } else {
            Action::Smoke(smoke.clone())
        }
    });
    let url = server.url();
    let mut args = vec!["check", url.as_str()];
    args.extend_from_slice(FAST);
    let out = smoketest(&args);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    let seen = server.seen();
    let gap = seen[1].at - seen[0].at;
    // The date has one-second precision: the wait is between one and two seconds.
    assert!(gap >= Duration::from_millis(900), "retried after {gap:?}");
}

#[test]
fn a_retry_after_beyond_the_timeout_gives_up_at_once() {
    let server = Server::start(|_| {
        Action::Status(
            429,
            vec![("retry-after".into(), "120".into())],
            "slow down".into(),
        )
    });
    let url = server.url();
    let started = Instant::now();
    let out = smoketest(&["check", url.as_str(), "--timeout", "5s", "--format", "json"]);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "gave up at once"
    );
    assert_eq!(server.requests(), 1);
    let error = &json(&out)["endpoints"][0]["error"];
    assert_eq!(error["http_status"], 429);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("retry after 2m"),
        "{error}"
    );
}

#[test]
fn transient_faults_that_persist_exit_2_at_the_timeout() {
    let server = Server::start(|_| status(503));
    let url = server.url();
    let started = Instant::now();
    let mut args = vec!["check", url.as_str(), "--timeout", "1s", "--format", "json"];
    args.extend_from_slice(FAST);
    let out = smoketest(&args);
    let elapsed = started.elapsed();
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert!(server.requests() >= 5, "{} requests", server.requests());
    let error = &json(&out)["endpoints"][0]["error"];
    assert_eq!(error["kind"], "http_status");
    assert_eq!(error["http_status"], 503);
}

#[test]
fn an_endpoint_that_never_answers_times_out_with_exit_2() {
    let server = Server::start(|_| Action::Hang);
    let url = server.url();
    let mut args = vec![
        "check",
        url.as_str(),
        "--attempt-timeout",
        "200ms",
        "--timeout",
        "700ms",
        "--format",
        "json",
    ];
    args.extend_from_slice(FAST);
    let started = Instant::now();
    let out = smoketest(&args);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(json(&out)["endpoints"][0]["error"]["kind"], "timeout");
    assert!(server.requests() >= 2, "a timed-out attempt is retried");
}

#[test]
fn wait_passes_once_a_slow_service_comes_up() {
    // Nothing listens at first; then the service answers 503, then a failing report, then
    // it passes.
    let addr = free_addr();
    let url = format!("http://{addr}/smoketest");
    let handle = std::thread::spawn({
        let url = url.clone();
        move || {
            let mut args = vec![
                "check",
                url.as_str(),
                "--wait",
                "20s",
                "--interval",
                "50ms",
                "--timeout",
                "300ms",
                "--format",
                "json",
            ];
            args.extend_from_slice(FAST);
            smoketest(&args)
        }
    });
    std::thread::sleep(Duration::from_millis(600));
    let (up, down) = (healthy("r1"), failing("r1"));
    let server = Server::start_at(addr, move |n| match n {
        0..=2 => status(503),
        3..=5 => Action::Smoke(down.clone()),
        _ => Action::Smoke(up.clone()),
    });
    let out = handle.join().unwrap();
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    let json = json(&out);
    assert!(json["polls"].as_u64().unwrap() >= 4, "{json}");
    assert!(server.requests() >= 7);
}

#[test]
fn wait_fails_at_the_deadline_when_the_service_never_passes() {
    let server = Server::smoke(failing("r1"));
    let url = server.url();
    let started = Instant::now();
    let out = smoketest(&[
        "check",
        &url,
        "--wait",
        "1s",
        "--interval",
        "100ms",
        "--format",
        "json",
    ]);
    let elapsed = started.elapsed();
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(elapsed >= Duration::from_millis(850), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert!(json(&out)["polls"].as_u64().unwrap() >= 3);
    // In a log (no terminal), one progress line per change of state, not per poll.
    let log = stderr(&out);
    assert_eq!(log.matches("0 of 1 endpoint(s) pass").count(), 1, "{log}");
    assert!(log.contains("fail orders::db_write"), "{log}");

    // Never reachable: exit 2 at the deadline.
    let url = format!("http://{}/smoketest", free_addr());
    let mut args = vec![
        "check",
        url.as_str(),
        "--wait",
        "1s",
        "--interval",
        "100ms",
        "--timeout",
        "300ms",
    ];
    args.extend_from_slice(FAST);
    let started = Instant::now();
    let out = smoketest(&args);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    assert!(started.elapsed() >= Duration::from_millis(850));
}

#[test]
fn require_release_fails_while_any_replica_runs_another_release() {
    let new = Server::smoke(healthy("r2"));
    let old = Server::smoke(healthy("r1"));
    let (new_url, old_url) = (new.url(), old.url());

    let out = smoketest(&["check", &new_url, &old_url]);
    assert_eq!(
        code(&out),
        0,
        "without --require-release any release passes"
    );

    let out = smoketest(&[
        "check",
        &new_url,
        &old_url,
        "--require-release",
        "r2",
        "--format",
        "json",
    ]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let json = json(&out);
    assert_eq!(json["require_release"], "r2");
    // The old replica's answer decides at once; the new one may not have been awaited.
    let first = &json["endpoints"][0];
    assert!(
        (first["outcome"] == "pass" && first["release_matches"] == true)
            || first["outcome"] == "not_awaited",
        "{first}"
    );
    assert_eq!(json["endpoints"][1]["release_matches"], false);
    assert_eq!(json["endpoints"][1]["outcome"], "fail");

    let out = smoketest(&["check", &new_url, &old_url, "--require-release", "r2"]);
    assert!(
        stdout(&out).contains("runs release r1, not r2"),
        "{}",
        stdout(&out)
    );

    // During a rollout the old replica is replaced: --wait passes once it reports r2.
    let (r1, r2) = (healthy("r1"), healthy("r2"));
    old.set_script(move |n| {
        if n < 6 {
            Action::Smoke(r1.clone())
        } else {
            Action::Smoke(r2.clone())
        }
    });
    let out = smoketest(&[
        "check",
        &new_url,
        &old_url,
        "--require-release",
        "r2",
        "--wait",
        "10s",
        "--interval",
        "50ms",
    ]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
}

#[test]
fn replicas_are_decided_together() {
    let up = Server::smoke(healthy("r1"));
    let down = Server::smoke(failing("r1"));
    let gone = format!("http://{}/smoketest", free_addr());
    let mut fast = vec!["--timeout", "500ms"];
    fast.extend_from_slice(FAST);

    let (up_url, down_url) = (up.url(), down.url());
    let mut args = vec!["check", up_url.as_str(), gone.as_str()];
    args.extend_from_slice(&fast);
    assert_eq!(
        code(&smoketest(&args)),
        2,
        "one replica unreachable: no decision"
    );

    let mut args = vec!["check", up_url.as_str(), down_url.as_str(), gone.as_str()];
    args.extend_from_slice(&fast);
    assert_eq!(code(&smoketest(&args)), 1, "one replica failed: roll back");

    let both = Server::smoke(healthy("r1"));
    assert_eq!(code(&smoketest(&["check", &up.url(), &both.url()])), 0);
}

#[test]
fn with_fail_fast_a_failing_replica_decides_without_waiting_for_a_hanging_one() {
    let down = Server::smoke(failing("r1"));
    let hung = Server::start(|_| Action::Hang);
    let started = Instant::now();
    let out = smoketest(&[
        "check",
        &hung.url(),
        &down.url(),
        "--attempt-timeout",
        "20s",
        "--fail-fast",
        "--format",
        "json",
    ]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(started.elapsed() < Duration::from_secs(10));
    let json = json(&out);
    assert_eq!(json["endpoints"][0]["outcome"], "not_awaited");
    assert_eq!(json["endpoints"][1]["outcome"], "fail");
}

#[test]
fn json_output_is_one_object_with_the_reports() {
    let server = Server::smoke(failing("r7"));
    let out = smoketest(&["check", &server.url(), "--format", "json"]);
    assert_eq!(code(&out), 1);
    let json = json(&out);
    assert_eq!(json["decision"], "fail");
    assert_eq!(json["exit_code"], 1);
    let endpoint = &json["endpoints"][0];
    assert_eq!(endpoint["url"], server.url());
    assert_eq!(endpoint["http_status"], 500);
    let report: smoketest_core::Report =
        serde_json::from_value(endpoint["report"].clone()).expect("the report round-trips");
    assert_eq!(report.release_id.as_deref(), Some("r7"));
    assert_eq!(report.summary.failed, 1);
}

#[test]
fn junit_output_parses() {
    let down = Server::smoke(failing("r1"));
    let up = Server::smoke(healthy("r1"));
    let out = smoketest(&[
        "check",
        &up.url(),
        &down.url(),
        "--format",
        "junit",
        "--wait",
        "300ms",
        "--interval",
        "100ms",
    ]);
    assert_eq!(code(&out), 1);
    let report = quick_junit::Report::deserialize_from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("not JUnit ({e}): {}", stdout(&out)));
    assert_eq!(report.test_suites.len(), 2);
    assert_eq!(report.tests, 4);
    assert_eq!(report.failures, 1);
    let failing_suite = &report.test_suites[1];
    let case = failing_suite
        .test_cases
        .iter()
        .find(|c| c.name.as_str() == "orders::db_write")
        .unwrap();
    match &case.status {
        quick_junit::TestCaseStatus::NonSuccess { message, ty, .. } => {
            assert_eq!(ty.as_ref().unwrap().as_str(), "assertion");
            assert_eq!(
                message.as_ref().unwrap().as_str(),
                "expected 1 row, found 0"
            );
        }
        other => panic!("{other:?}"),
    }

    let gone = format!("http://{}/smoketest", free_addr());
    let mut args = vec![
        "check",
        gone.as_str(),
        "--format",
        "junit",
        "--timeout",
        "300ms",
    ];
    args.extend_from_slice(FAST);
    let out = smoketest(&args);
    assert_eq!(code(&out), 2);
    let report = quick_junit::Report::deserialize_from_str(&stdout(&out)).unwrap();
    assert_eq!(report.errors, 1);
}

#[test]
fn the_token_is_sent_as_bearer_and_never_printed() {
    // A server that echoes the Authorization header in its refusal.
    let server = Server::start(|_| status(401));
    let echo = Server::start(|_| {
        Action::Status(401, Vec::new(), "you sent: Bearer s3cr3t-from-flag".into())
    });
    for format in ["human", "json", "junit"] {
        let out = smoketest(&[
            "check",
            &echo.url(),
            "--token",
            "s3cr3t-from-flag",
            "--format",
            format,
        ]);
        assert_eq!(code(&out), 2);
        assert!(
            !stdout(&out).contains("s3cr3t"),
            "{format}: {}",
            stdout(&out)
        );
        assert!(!stderr(&out).contains("s3cr3t"));
    }
    let out = smoketest_with_env(
        &["check", &server.url()],
        &[("SMOKETEST_TOKEN", "s3cr3t-from-env")],
    );
    assert_eq!(
        server.seen()[0].headers["authorization"],
        "Bearer s3cr3t-from-env"
    );
    assert!(!stdout(&out).contains("s3cr3t"));
    assert!(
        stdout(&out).contains("--token"),
        "the 401 hint: {}",
        stdout(&out)
    );
    let out = smoketest(&["check", &server.url(), "--token", "wrong"]);
    assert!(
        stdout(&out).contains("refused the token"),
        "{}",
        stdout(&out)
    );
    let out = smoketest_with_env(&["check", &server.url()], &[("SMOKETEST_TOKEN", "")]);
    assert!(
        !server
            .seen()
            .last()
            .unwrap()
            .headers
            .contains_key("authorization"),
        "an empty token is no token"
    );
    assert!(stdout(&out).contains("pass --token"), "{}", stdout(&out));
    let help = smoketest_with_env(
        &["check", "--help"],
        &[("SMOKETEST_TOKEN", "s3cr3t-from-env")],
    );
    assert_eq!(code(&help), 0);
    assert!(!stdout(&help).contains("s3cr3t"));
}

#[test]
fn usage_errors_exit_64() {
    for args in [
        &[][..],
        &["check"][..],
        &["check", "--bogus", "http://127.0.0.1:1/"][..],
        &["check", "--timeout", "soon", "http://127.0.0.1:1/"][..],
        &["check", "ftp://127.0.0.1/smoketest"][..],
        &["check", "not a url"][..],
        &["check", "--format", "yaml", "http://127.0.0.1:1/"][..],
        &["watch", "http://127.0.0.1:1/", "--interval", "0s"][..],
        &[
            "watch",
            "http://127.0.0.1:1/",
            "--ca-cert",
            "/nonexistent.pem",
        ][..],
        &["check", "http://127.0.0.1:1/", "--wait", "0s"][..],
        &["check", "http://127.0.0.1:1/", "--timeout", "0ms"][..],
        &["deploy"][..],
    ] {
        let out = smoketest(args);
        assert_eq!(code(&out), 64, "{args:?}: {}", stderr(&out));
    }
    let help = smoketest(&["check", "--help"]);
    assert_eq!(code(&help), 0);
    let text = stdout(&help);
    for line in ["0   pass", "1   fail", "2   error", "64  usage error"] {
        assert!(text.contains(line), "--help documents exit codes: {text}");
    }
}

#[test]
fn colour_only_on_a_terminal_or_when_asked() {
    let server = Server::smoke(failing("r1"));
    let piped = smoketest(&["check", &server.url()]);
    assert!(!stdout(&piped).contains('\x1b'), "no colour into a pipe");
    assert!(!stderr(&piped).contains('\x1b'), "no spinner into a pipe");
    let forced = smoketest(&["check", &server.url(), "--color", "always"]);
    assert!(
        stdout(&forced).contains("\x1b[1;31mFAIL"),
        "{}",
        stdout(&forced)
    );
    let never = smoketest_with_env(
        &["check", &server.url(), "--color", "auto"],
        &[("NO_COLOR", "1")],
    );
    assert!(!stdout(&never).contains('\x1b'));
}

/// A report from a service whose own redaction missed a secret (an older version, a
/// message shape it does not know): the CLI's output never repeats it, in any format.
#[test]
fn the_gate_never_prints_a_secret_a_report_carries() {
    let report = serde_json::json!({
        "status": "fail",
        "service": "orders-api",
        "duration_ms": 3.0,
        "cached": false,
        "age_ms": 0.0,
        "summary": {"total": 1, "passed": 0, "warned": 0, "failed": 1, "skipped": 0},
        "checks": [{
            "name": "orders::db_write",
            "status": "fail",
            "duration_ms": 3.0,
            "tags": [],
            "error": {
                "kind": "db_unavailable",
                "message": "cannot connect to postgres://app:hunter2-s3cret@db.internal:5432/orders"
            }
        }]
    });
    let server = Server::start(move |_| {
        let mut report = report.clone();
        // Started now, as a run for this request would have.
        report["started_at"] = humantime::format_rfc3339_millis(std::time::SystemTime::now())
            .to_string()
            .into();
        Action::Status(
            500,
            vec![("content-type".into(), "application/json".into())],
            report.to_string(),
        )
    });
    for format in ["human", "json", "junit"] {
        let output = smoketest(&["check", &server.url(), "--format", format]);
        assert_eq!(code(&output), 1, "{format}: {}", stdout(&output));
        let printed = format!("{}{}", stdout(&output), stderr(&output));
        assert!(
            printed.contains("db.internal"),
            "{format}: the message is kept: {printed}"
        );
        assert!(!printed.contains("hunter2-s3cret"), "{format}: {printed}");
    }
}
