//! Every consumer gets its own format from the same endpoint: negotiation with the `Accept`
//! headers real clients send, `?format=`, 406, and what each format's response carries.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use smoketest::{Detail, Outcome, Smoketest, fail, from_fn};

const CHROME: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
const PROMETHEUS: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const CURL: &str = "*/*";
const KUBE_PROBE: &str = "*/*";

fn smoke(detail: Detail) -> Smoketest {
    Smoketest::builder()
        .service("orders-api")
        .version("1.4.2")
        .release_id("9f2c1ab")
        .without_discovery()
        .anonymous_detail(detail)
        .check(from_fn("db::ping", |_| Box::pin(async { Ok(Outcome::Pass) })).tag("db"))
        .check(from_fn("disk::free", |_| {
            Box::pin(async { Ok(Outcome::warn("only 9% free")) })
        }))
        .check(from_fn("mail::smtp", |_| {
            Box::pin(async { Ok(Outcome::skip("SMTP_HOST is not set")) })
        }))
        .check(
            from_fn("orders::db_write", |_| {
                Box::pin(async { fail!("expected 1 row, found 0 <script>alert(1)</script>") })
            })
            .tag("db"),
        )
        .check(
            from_fn("payments::api", |_| {
                Box::pin(async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Ok(Outcome::Pass)
                })
            })
            .timeout(Duration::from_millis(50)),
        )
        .build()
        .unwrap()
}

async fn get(smoke: &Smoketest, uri: &str, accept: Option<&str>) -> Response<Bytes> {
    let mut request = Request::get(uri);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let (parts, ()) = request.body(()).unwrap().into_parts();
    smoke.handle(&parts).await
}

fn content_type(response: &Response<Bytes>) -> &str {
    response.headers()["content-type"].to_str().unwrap()
}

fn body(response: &Response<Bytes>) -> &str {
    std::str::from_utf8(response.body()).unwrap()
}

#[tokio::test]
async fn a_browser_gets_an_html_page_with_the_script_escaped() {
    let smoke = smoke(Detail::Full);
    let response = get(&smoke, "/smoketest", Some(CHROME)).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(content_type(&response), "text/html; charset=utf-8");
    assert_eq!(
        response.headers()["content-security-policy"],
        "default-src 'none'; style-src 'unsafe-inline'"
    );
    let page = body(&response);
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!page.contains("<script"));
}

#[tokio::test]
async fn curl_and_kube_probe_get_json() {
    let smoke = smoke(Detail::Checks);
    for accept in [Some(CURL), Some(KUBE_PROBE), None] {
        let response = get(&smoke, "/smoketest?check=db::ping", accept).await;
        assert_eq!(response.status(), 200);
        assert_eq!(content_type(&response), "application/json");
        let report: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(report["status"], "pass");
    }
}

#[tokio::test]
async fn prometheus_gets_openmetrics_with_200_while_checks_fail() {
    let smoke = smoke(Detail::Checks);
    let response = get(&smoke, "/smoketest", Some(PROMETHEUS)).await;
    assert_eq!(response.status(), 200, "scrapers discard non-200 bodies");
    assert_eq!(
        content_type(&response),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = body(&response);
    openmetrics_parser::openmetrics::parse_openmetrics(text)
        .unwrap_or_else(|e| panic!("invalid OpenMetrics: {e:?}\n{text}"));
    assert!(text.contains("smoketest_run_success 0\n"));
    assert!(text.contains("smoketest_check_success{check=\"orders::db_write\"} 0\n"));

    let classic = get(&smoke, "/smoketest?format=prometheus", None).await;
    assert_eq!(classic.status(), 200);
    assert_eq!(
        content_type(&classic),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    openmetrics_parser::prometheus::parse_prometheus(body(&classic))
        .unwrap_or_else(|e| panic!("invalid Prometheus text: {e:?}"));
}

#[tokio::test]
async fn health_json_keeps_the_failure_status() {
    let smoke = smoke(Detail::Checks);
    for uri in [
        "/smoketest?format=health+json",
        "/smoketest?format=health%2Bjson",
    ] {
        let response = get(&smoke, uri, None).await;
        assert_eq!(response.status(), 500, "{uri}");
        assert_eq!(content_type(&response), "application/health+json");
        let doc: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(doc["status"], "fail");
        assert_eq!(doc["releaseId"], "9f2c1ab");
        assert_eq!(
            doc["checks"]["payments.api:responseTime"][0]["output"],
            "timeout"
        );
    }
    let accepted = get(&smoke, "/smoketest", Some("application/health+json")).await;
    assert_eq!(content_type(&accepted), "application/health+json");
}

#[tokio::test]
async fn junit_parses_back_with_failures_errors_and_skips() {
    let smoke = smoke(Detail::Full);
    let response = get(&smoke, "/smoketest?format=junit", None).await;
    assert_eq!(response.status(), 500);
    assert_eq!(content_type(&response), "application/xml; charset=utf-8");
    let junit = quick_junit::Report::deserialize_from_str(body(&response)).unwrap();
    let suite = &junit.test_suites[0];
    assert_eq!(
        (suite.tests, suite.failures, suite.errors, suite.skipped),
        (5, 1, 1, 1)
    );
}

#[tokio::test]
async fn text_format_and_q_values() {
    let smoke = smoke(Detail::Checks);
    let response = get(
        &smoke,
        "/smoketest",
        Some("application/json;q=0.5, text/plain"),
    )
    .await;
    assert_eq!(content_type(&response), "text/plain; charset=utf-8");
    assert!(body(&response).starts_with("FAIL\n"));
}

#[tokio::test]
async fn nothing_acceptable_is_406_and_format_overrides_accept() {
    let smoke = smoke(Detail::Checks);
    let refused = get(&smoke, "/smoketest", Some("image/png")).await;
    assert_eq!(refused.status(), StatusCode::NOT_ACCEPTABLE);
    let error: serde_json::Value = serde_json::from_slice(refused.body()).unwrap();
    assert_eq!(error["error"]["kind"], "not_acceptable");
    assert_eq!(error["error"]["parameter"], "Accept");

    let overridden = get(&smoke, "/smoketest?format=text", Some("image/png")).await;
    assert_eq!(content_type(&overridden), "text/plain; charset=utf-8");

    let unknown = get(&smoke, "/smoketest?format=yaml", None).await;
    assert_eq!(unknown.status(), 400);
    let error: serde_json::Value = serde_json::from_slice(unknown.body()).unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("health+json") && message.contains("junit"),
        "{message}"
    );
}

#[tokio::test]
async fn server_timing_only_for_full_detail() {
    let full = get(&smoke(Detail::Full), "/smoketest", None).await;
    let timing = full.headers()["server-timing"].to_str().unwrap();
    assert!(timing.starts_with("run;dur="), "{timing}");
    assert!(
        timing.contains("db__ping;desc=\"db::ping\";dur="),
        "{timing}"
    );

    let anonymous = get(&smoke(Detail::Checks), "/smoketest", None).await;
    assert!(anonymous.headers().get("server-timing").is_none());
}

#[tokio::test]
async fn head_has_the_headers_and_no_body_in_every_format() {
    let smoke = smoke(Detail::Checks);
    for format in [
        "json",
        "text",
        "html",
        "health+json",
        "prometheus",
        "openmetrics",
        "junit",
    ] {
        let (parts, ()) = Request::head(format!("/smoketest?format={format}"))
            .body(())
            .unwrap()
            .into_parts();
        let response = smoke.handle(&parts).await;
        assert!(response.body().is_empty(), "{format}");
        assert_eq!(response.headers()["cache-control"], "no-store", "{format}");
    }
}
