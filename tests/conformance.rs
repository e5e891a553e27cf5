//! One HTTP conformance suite, written once and run against every adapter (axum's router
//! and layer, actix-web's scope, `configure` and on-worker mode) on real loopback sockets:
//! each row of the HTTP contract (DESIGN.md §3) must get the expected answer, and the same
//! answer, byte for byte once timings are normalised, from all of them.
//!
//! Adding a contract row is adding one line to [`cases`]. The machinery is in
//! `conformance/harness.rs`. Run with `cargo test --features axum,actix --test conformance`.

#[path = "conformance/harness.rs"]
mod harness;

use harness::{
    ActixMount, Case, Failure, Fixture, every_adapter_and_fixture, get, request, run, serve_actix,
};

/// Every row of the contract, one line each. `.json()` / `.text()` also assert
/// `Cache-Control: no-store` and the `Content-Type`; every GET to the endpoint is repeated
/// as HEAD, which must answer the same status and headers without a body.
#[rustfmt::skip]
fn cases() -> Vec<Case> {
    vec![
        // Paths.
        get("/smoketest", 500).json().at("/status", "fail").at("/summary/total", 5).at("/summary/passed", 2).at("/summary/warned", 1).at("/summary/failed", 1).at("/summary/skipped", 1),
        get("/smoketest", 500).json().at("/service", "conformance").at("/cached", false).at("/checks/2/name", "db::fail").at("/checks/2/error/kind", "assertion").at("/checks/0/tags/0", "fast"),
        get("/smoketest/", 500).json().at("/summary/total", 5),
        get("/smoketest/fast::ok", 200).json().at("/status", "pass").at("/summary/total", 1).at("/checks/0/name", "fast::ok"),
        get("/smoketest/fast%3A%3Aok", 200).json().at("/checks/0/name", "fast::ok"),
        get("/smoketest/odd:n%C3%A4me", 200).json().at("/checks/0/name", "odd:näme"),
        get("/smoketest/db::fail", 500).json().at("/checks/0/status", "fail"),
        get("/smoketest/nope", 404).json().at("/error/kind", "not_found"),
        get("/smoketest/%FF", 404).json().at("/error/kind", "not_found"),
        get("/smoketest/fast::ok/more", 404).json().at("/error/kind", "not_found"),
        // Parameters.
        get("/smoketest?tag=fast", 200).json().at("/status", "warn").at("/summary/total", 2).at("/summary/warned", 1),
        get("/smoketest?tag=fast&tag=db", 500).json().at("/summary/total", 4),
        get("/smoketest?tag=none", 200).json().at("/summary/total", 0),
        get("/smoketest?tag=odd&", 200).json().at("/summary/total", 1),
        get("/smoketest?check=fast::ok&check=odd%3An%C3%A4me", 200).json().at("/summary/total", 2),
        get("/smoketest?check=nope", 404).json().at("/error/kind", "not_found"),
        get("/smoketest?exclude=db::fail", 200).json().at("/summary/total", 4),
        get("/smoketest?exclude=db%3A%3Afail&exclude=fast::warn", 200).json().at("/summary/total", 3),
        get("/smoketest?exclude=nope", 404).json().at("/error/kind", "not_found"),
        get("/smoketest/fast::ok?tag=db", 200).json().at("/summary/total", 0),
        get("/smoketest?bogus=1", 400).json().at("/error/kind", "bad_request").at("/error/parameter", "bogus"),
        get("/smoketest?Tag=fast", 400).json().at("/error/parameter", "Tag"),
        get("/smoketest?tag=", 400).json().at("/error/parameter", "tag"),
        get("/smoketest?tag=%FF", 400).json().at("/error/parameter", "tag"),
        get("/smoketest?%FF=1", 400).json().at("/error/kind", "bad_request"),
        get("/smoketest?format=xml", 400).json().at("/error/parameter", "format"),
        get("/smoketest?format=text&format=json", 400).json().at("/error/parameter", "format"),
        get("/smoketest?format=text", 500).text().starts("FAIL\n"),
        get("/smoketest?tag=fast&format=text", 200).text().starts("PASS\n[+]fast::ok ok "),
        get("/smoketest?tag=fast&format=json", 200).with("accept", "text/plain").json(),
        // Methods.
        request("HEAD", "/smoketest?tag=fast", 200).json().body(""),
        request("HEAD", "/smoketest/nope", 404).json().body(""),
        request("POST", "/smoketest", 405).json().header("allow", "GET, HEAD").at("/error/kind", "method_not_allowed"),
        request("PUT", "/smoketest", 405).json().header("allow", "GET, HEAD"),
        request("DELETE", "/smoketest", 405).json().header("allow", "GET, HEAD"),
        request("PATCH", "/smoketest/fast::ok", 405).json().header("allow", "GET, HEAD"),
        request("OPTIONS", "/smoketest", 405).json().header("allow", "GET, HEAD"),
        request("POST", "/smoketest/nope?bogus=1", 405).json().header("allow", "GET, HEAD"),
        // Content negotiation.
        get("/smoketest?tag=fast", 200).with("accept", "application/json").json(),
        get("/smoketest?tag=fast", 200).with("accept", "*/*").json(),
        get("/smoketest?tag=fast", 200).with("accept", "text/plain").text().starts("PASS\n"),
        get("/smoketest?tag=fast", 200).with("accept", "text/*").text(),
        get("/smoketest?tag=fast", 200).with("accept", "text/plain;q=0.5, application/json").json(),
        get("/smoketest?tag=fast", 200).with("accept", "application/json;q=0.1, text/plain;q=0.9").text(),
        get("/smoketest?tag=fast", 200).with("accept", "image/png, text/plain;q=0.8").text(),
        get("/smoketest?tag=fast", 200).with("accept", "text/plain").with("accept", "application/json").text(),
        get("/smoketest?tag=fast", 406).with("accept", "image/png").json().at("/error/kind", "not_acceptable").at("/error/parameter", "Accept"),
        get("/smoketest?tag=fast", 406).with("accept", "application/json;q=0").json(),
        get("/smoketest?tag=fast&format=text", 200).with("accept", "image/png").text(),
        get("/smoketest?tag=fast", 200).raw().json().at("/summary/total", 2),
        get("/smoketest?tag=fast", 200).raw().with("accept", "").json(),
        get("/smoketest?tag=fast", 200).raw().with("Accept", "TEXT/PLAIN").text(),
        // HTTP versions and the absolute-form target proxies send.
        get("/smoketest?tag=fast", 200).http10().json().at("/status", "warn"),
        get("/smoketest", 500).http10().with("accept", "text/plain").text().starts("FAIL\n"),
        request("DELETE", "/smoketest", 405).http10().json().header("allow", "GET, HEAD"),
        get("http://smoke.test/smoketest/fast::ok?format=text", 200).raw().text().starts("PASS\n"),
        get("http://smoke.test/other", 200).raw().body("other route"),
        // Status codes.
        get("/smoketest/fast::warn", 200).json().at("/status", "warn").at("/checks/0/status", "warn"),
        get("/smoketest/db::skip", 200).json().at("/checks/0/status", "skip"),
        get("/ops/smoke", 503).custom().json().at("/status", "fail"),
        get("/ops/smoke?format=text", 503).custom().text().starts("FAIL\n"),
        get("/ops/smoke/ok", 200).custom().json(),
        // Groups mounted on their own paths answer alike on every adapter.
        get("/livez", 200).custom().json().at("/status", "pass"),
        get("/livez?format=text", 200).custom().text().starts("PASS\n"),
        get("/readyz", 503).custom().json().at("/status", "fail"),
        request("POST", "/readyz", 405).custom().json().header("allow", "GET, HEAD"),
        request("POST", "/ops/smoke", 405).custom().json().header("allow", "GET, HEAD"),
        // Access control (the core's auth module): the same 401s, 403 and detail on every adapter.
        get("/ops/smoke", 503).custom().with("authorization", "Bearer conformance-token-0123456789").json().at("/checks/1/error/message", "boom"),
        get("/ops/smoke", 401).custom().with("authorization", "Bearer wrong-token-000000000000").json().header("www-authenticate", "Bearer realm=\"smoketest\", error=\"invalid_token\"").at("/error/kind", "invalid_token"),
        get("/ops/smoke?fresh=1", 403).custom().json().at("/error/kind", "forbidden").at("/error/parameter", "fresh"),
        // Every path kind (mount, one check, group) through the one pipeline: fresh, format,
        // HEAD (repeated for every GET), 405, 406, 400 and detail levels alike.
        get("/ops/smoke/ok?fresh=1", 403).custom().json().at("/error/kind", "forbidden").at("/error/parameter", "fresh"),
        get("/readyz?fresh=1", 403).custom().json().at("/error/kind", "forbidden").at("/error/parameter", "fresh"),
        get("/livez?fresh=1", 403).custom().json().at("/error/parameter", "fresh"),
        get("/ops/smoke?fresh=1", 503).custom().with("authorization", "Bearer conformance-token-0123456789").json().at("/cached", false).at("/age_ms", 0.0),
        get("/ops/smoke/ok?fresh=1", 200).custom().with("authorization", "Bearer conformance-token-0123456789").json().at("/cached", false).at("/summary/total", 1),
        get("/readyz?fresh=1", 503).custom().with("authorization", "Bearer conformance-token-0123456789").json().at("/cached", false).at("/group", "ready").at("/checks/1/error/message", "boom"),
        get("/livez?fresh=true", 200).custom().with("authorization", "Bearer conformance-token-0123456789").json().at("/summary/total", 0),
        get("/readyz?fresh=maybe", 400).custom().json().at("/error/parameter", "fresh"),
        get("/readyz?fresh=1&fresh=1", 400).custom().json().at("/error/parameter", "fresh"),
        get("/ops/smoke/ok?format=text", 200).custom().text().starts("PASS\n[+]ok ok "),
        get("/readyz?format=text", 503).custom().text().starts("FAIL\n"),
        get("/readyz", 503).custom().with("accept", "text/plain").text().starts("FAIL\n"),
        get("/readyz?format=xml", 400).custom().json().at("/error/parameter", "format"),
        get("/readyz?tag=db", 400).custom().json().at("/error/parameter", "tag"),
        get("/livez?check=ok", 400).custom().json().at("/error/parameter", "check"),
        get("/livez?bogus=1", 400).custom().json().at("/error/parameter", "bogus"),
        get("/ops/smoke/ok?bogus=1", 400).custom().json().at("/error/parameter", "bogus"),
        get("/readyz", 406).custom().with("accept", "image/png").json().at("/error/kind", "not_acceptable"),
        get("/livez", 406).custom().with("accept", "image/png").json().at("/error/parameter", "Accept"),
        get("/ops/smoke/ok", 406).custom().with("accept", "image/png").json().at("/error/kind", "not_acceptable"),
        request("DELETE", "/livez", 405).custom().json().header("allow", "GET, HEAD"),
        request("PATCH", "/ops/smoke/ok", 405).custom().json().header("allow", "GET, HEAD"),
        get("/readyz", 503).custom().json().at("/summary/total", 2).at("/checks/1/name", "broken").at("/checks/1/error/kind", "error").absent("/checks/1/error/message"),
        get("/readyz", 503).custom().with("authorization", "Bearer conformance-token-0123456789").json().at("/checks/1/error/message", "boom"),
        get("/ops/smoke/broken", 503).custom().json().at("/checks/0/error/kind", "error").absent("/checks/0/error/message"),
        // No probing: when names are hidden, selecting by name is 403 for existing and
        // unknown names alike; a token holder gets the real answer.
        get("/quiet", 500).on(Fixture::Quiet).json().at("/summary/total", 2).absent("/checks/0"),
        get("/quiet?tag=fast", 200).on(Fixture::Quiet).json().at("/summary/total", 1),
        get("/quiet/ok", 403).on(Fixture::Quiet).json().at("/error/kind", "forbidden").at("/error/parameter", "check"),
        get("/quiet/nope", 403).on(Fixture::Quiet).json().at("/error/kind", "forbidden").at("/error/parameter", "check"),
        get("/quiet?check=ok", 403).on(Fixture::Quiet).json().at("/error/parameter", "check"),
        get("/quiet?check=nope", 403).on(Fixture::Quiet).json().at("/error/parameter", "check"),
        get("/quiet?exclude=broken", 403).on(Fixture::Quiet).json().at("/error/parameter", "exclude"),
        get("/quiet?exclude=nope", 403).on(Fixture::Quiet).json().at("/error/parameter", "exclude"),
        get("/quiet/ok", 200).on(Fixture::Quiet).with("authorization", "Bearer conformance-token-0123456789").json().at("/checks/0/name", "ok"),
        get("/quiet/nope", 404).on(Fixture::Quiet).with("authorization", "Bearer conformance-token-0123456789").json().at("/error/kind", "not_found"),
        // A wrong token is 401 whatever else is configured (here an authorizer too).
        get("/quiet", 401).on(Fixture::Quiet).with("authorization", "Bearer wrong-token-000000000000").json().at("/error/kind", "invalid_token"),
        get("/quiet/ok", 200).on(Fixture::Quiet).with("x-internal", "yes").json().at("/checks/0/name", "ok"),
        get("/quiet", 401).on(Fixture::Quiet).with("x-internal", "yes").with("authorization", "Bearer wrong-token-000000000000").json().at("/error/kind", "invalid_token"),
        // require_authorization() leaves the probe presets open, not the rest.
        get("/guarded", 401).on(Fixture::Guarded).json().at("/error/kind", "unauthorized"),
        get("/guarded/ok", 401).on(Fixture::Guarded).json().at("/error/kind", "unauthorized"),
        get("/deployz", 401).on(Fixture::Guarded).json().at("/error/kind", "unauthorized"),
        get("/livez", 200).on(Fixture::Guarded).json().at("/status", "pass"),
        get("/readyz", 200).on(Fixture::Guarded).json().at("/summary/total", 1).absent("/checks/0"),
        get("/readyz", 401).on(Fixture::Guarded).with("authorization", "Bearer wrong-token-000000000000").json().at("/error/kind", "invalid_token"),
        get("/deployz?fresh=1", 200).on(Fixture::Guarded).with("authorization", "Bearer conformance-token-0123456789").json().at("/group", "deploy").at("/checks/0/name", "ok"),
        get("/guarded", 200).on(Fixture::Guarded).with("authorization", "Bearer conformance-token-0123456789").json().at("/summary/total", 1),
        // Headers and bodies: anonymous callers see error kinds, not messages.
        get("/smoketest?tag=db", 500).json().header("vary", "Accept").at("/checks/0/error/kind", "assertion").absent("/checks/0/error/message").absent("/checks/0/error/suggestion"),
        get("/smoketest?tag=db&format=text", 500).text().body("FAIL\n[-]db::fail failed: assertion #ms\n[~]db::skip skipped #ms\n2 checks: 0 passed, 0 warned, 1 failed, 1 skipped in #ms\n"),
        // Routes outside the mount path pass through to the app untouched.
        get("/other", 200).body("other route").header("content-type", "text/plain; charset=utf-8"),
        get("/other?tag=fast", 200).body("other route"),
        get("/smoketestx", 404).body("app fallback"),
        get("/smoke%74est", 404).body("app fallback"),
        get("/nowhere", 404).body("app fallback"),
        get("/smoketest", 404).custom().body("app fallback"),
        get("/ops", 404).custom().body("app fallback"),
        get("/ops/smokes", 404).custom().body("app fallback"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_adapter_answers_every_contract_row_alike() {
    let failures = run(&cases(), &every_adapter_and_fixture().await).await;
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}",
        failures.len(),
        failures
            .iter()
            .map(|f| format!("{f:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The suite itself: an actix adapter that adds one header no case names, and one that
/// changes a status, must both be caught by the comparison between adapters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_catches_an_adapter_that_alters_a_header_or_status() {
    // Per fixture: the axum router, and actix with `tamper` around the adapter.
    let against_tampered = async |tamper: harness::Tamper| {
        let mut adapters = Vec::new();
        for &fixture in Fixture::ALL {
            let reference = harness::Server {
                name: "axum router",
                base: harness::serve_axum(fixture, false).await,
            };
            let tampered = harness::Server {
                name: "tampered actix",
                base: serve_actix(fixture, ActixMount::Scope, Some(tamper)),
            };
            adapters.push((fixture, vec![reference, tampered]));
        }
        run(&cases(), &adapters).await
    };

    // No case names `X-Content-Type-Options`: only the comparison can notice it.
    let added: harness::Tamper = |response| {
        response.headers_mut().insert(
            actix_web::http::header::X_CONTENT_TYPE_OPTIONS,
            actix_web::http::header::HeaderValue::from_static("nosniff"),
        );
    };
    let failures = against_tampered(added).await;
    assert!(
        failures.iter().all(|f| matches!(f, Failure::Divergence(_))),
        "{failures:#?}"
    );
    assert!(
        failures
            .iter()
            .any(|f| matches!(f, Failure::Divergence(d) if d.contains("x-content-type-options"))),
        "the added header went unnoticed: {failures:#?}"
    );

    // A 503 answered as 500: caught by the expectation and the comparison alike.
    let status: harness::Tamper = |response| {
        if response.status() == actix_web::http::StatusCode::SERVICE_UNAVAILABLE {
            *response.response_mut().status_mut() =
                actix_web::http::StatusCode::INTERNAL_SERVER_ERROR;
        }
    };
    let failures = against_tampered(status).await;
    assert!(
        failures.iter().any(|f| matches!(f, Failure::Divergence(d) if d.starts_with("GET /ops/smoke (Custom fixture)"))),
        "the altered status went unnoticed by the comparison: {failures:#?}"
    );
    assert!(
        failures.iter().any(
            |f| matches!(f, Failure::Expectation(e) if e.contains("status 500 instead of 503"))
        ),
        "{failures:#?}"
    );
}

/// The comparison forgives timings and nothing else: a count or a name that differs still
/// makes two answers differ.
#[test]
fn normalising_replaces_timings_only() {
    use harness::normalize_text as n;
    let json =
        "{\"duration_ms\": 1.25, \"started_at\": \"2026-11-22T16:54:31.938Z\", \"total\": 3}";
    assert_eq!(
        n(json),
        "{\"duration_ms\": #, \"started_at\": #, \"total\": 3}"
    );
    assert_eq!(
        n(json),
        n(&json.replace("1.25", "7").replace("31.938", "32.001"))
    );
    assert_ne!(n(json), n(&json.replace("\"total\": 3", "\"total\": 4")));
    assert_eq!(
        n("[+]db::ping ok 3.1ms\n2 checks: 2 passed in 4ms"),
        "[+]db::ping ok #ms\n2 checks: 2 passed in #ms"
    );
    assert_eq!(n("<span>3.25 ms</span>"), "<span># ms</span>");
    assert_eq!(
        n("<testcase name=\"a\" time=\"0.003\"/><testcase name=\"b\" time=\"0.1\"/>"),
        "<testcase name=\"a\" time=\"#\"/><testcase name=\"b\" time=\"#\"/>"
    );
    assert_eq!(n("db;dur=3.1, app;dur=4"), "db;dur=#, app;dur=#");
    assert_eq!(
        n(
            "smoketest_check_duration_seconds{check=\"a\"} 0.0031\nsmoketest_check_up{check=\"a\"} 1"
        ),
        "smoketest_check_duration_seconds{check=\"a\"} #\nsmoketest_check_up{check=\"a\"} 1"
    );
}
