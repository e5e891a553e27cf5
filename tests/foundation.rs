//! The foundation as a user meets it: checks declared in modules, a real axum server on a
//! loopback port, and the HTTP contract of DESIGN.md §3 asked over a real socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use smoketest::{CheckFuture, Context, Outcome, Selection, Smoketest, Status, from_fn};

mod orders {
    use smoketest::{Context, Outcome, ensure_eq};

    #[smoketest::check(tags = ["db", "write"])]
    async fn discovered_write(ctx: &mut Context) -> smoketest::Result {
        let inserted = ctx.remaining().is_zero() as u32 + 1;
        ctx.observe("rows", inserted);
        ensure_eq!(inserted, 1, "rows inserted");
        Ok(Outcome::Pass)
    }
}

mod payments {
    pub mod api {
        use smoketest::Context;

        #[smoketest::check(name = "payments::custom_name", tag = "http", timeout = "1500ms")]
        async fn renamed(_ctx: &mut Context) -> smoketest::Result<()> {
            Ok(())
        }
    }
}

/// Serve `smoke` on a fresh loopback port, with one ordinary route beside it.
async fn serve(smoke: Smoketest) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/hello", axum::routing::get(|| async { "hello" }))
        .merge(smoketest_axum::router(smoke));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn check<F>(name: &str, f: F) -> smoketest::FnCheck<F>
where
    F: for<'a> Fn(&'a mut Context) -> CheckFuture<'a> + Send + Sync + 'static,
{
    from_fn(name, f)
}

fn sleeper(
    name: &str,
    ms: u64,
) -> smoketest::FnCheck<impl for<'a> Fn(&'a mut Context) -> CheckFuture<'a> + Send + Sync + 'static>
{
    check(name, move |_ctx| {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(Outcome::Pass)
        })
    })
}

fn explicit() -> smoketest::SmoketestBuilder {
    Smoketest::builder().without_discovery()
}

async fn get_json(url: String) -> (u16, serde_json::Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_sleeping_checks_finish_together() {
    let mut builder = explicit();
    for i in 0..10 {
        builder = builder.check(sleeper(&format!("sleep::{i}"), 200));
    }
    let addr = serve(builder.build().unwrap()).await;
    let started = Instant::now();
    let (status, body) = get_json(format!("http://{addr}/smoketest")).await;
    let elapsed = started.elapsed();
    assert_eq!(status, 200);
    assert_eq!(body["summary"]["passed"], 10);
    // Run one after another they would take 2 s.
    assert!(elapsed < Duration::from_millis(900), "took {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_bounds_checks_in_flight() {
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut builder = explicit().concurrency(3);
    for i in 0..12 {
        let (running, peak) = (running.clone(), peak.clone());
        builder = builder.check(check(&format!("limited::{i}"), move |_ctx| {
            let (running, peak) = (running.clone(), peak.clone());
            Box::pin(async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(30)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(Outcome::Pass)
            })
        }));
    }
    let report = builder
        .build()
        .unwrap()
        .run(&Selection::all())
        .await
        .unwrap();
    assert_eq!(report.summary.passed, 12);
    assert_eq!(peak.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_check_timeout_fails_only_that_check() {
    let smoke = explicit()
        .check(sleeper("slow", 10_000).timeout(Duration::from_millis(100)))
        .check(sleeper("quick", 1))
        .build()
        .unwrap();
    let addr = serve(smoke).await;
    let started = Instant::now();
    let (status, body) = get_json(format!("http://{addr}/smoketest")).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(status, 500);
    assert_eq!(body["checks"][0]["name"], "slow");
    assert_eq!(body["checks"][0]["error"]["kind"], "timeout");
    assert_eq!(body["checks"][1]["status"], "pass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_timeout_applies_to_checks_without_their_own() {
    let report = explicit()
        .default_timeout(Duration::from_millis(80))
        .check(sleeper("slow", 10_000))
        .build()
        .unwrap()
        .run(&Selection::all())
        .await
        .unwrap();
    let error = report.checks[0].error.as_ref().unwrap();
    assert_eq!(error.kind, "timeout");
    assert_eq!(error.message.as_deref(), Some("did not finish within 80ms"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overall_deadline_answers_even_when_a_check_blocks_its_thread() {
    let smoke = explicit()
        .deadline(Duration::from_millis(300))
        // A check that blocks its thread cannot be interrupted by a timer …
        .check(check("blocks", |_ctx| {
            Box::pin(async {
                std::thread::sleep(Duration::from_secs(2));
                Ok(Outcome::Pass)
            })
        }))
        // … and one that merely waits longer than the deadline.
        .check(sleeper("waits", 10_000))
        .build()
        .unwrap();
    let addr = serve(smoke).await;
    let started = Instant::now();
    let (status, body) = get_json(format!("http://{addr}/smoketest")).await;
    let elapsed = started.elapsed();
    assert_eq!(status, 500);
    assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
    assert_eq!(body["checks"][0]["error"]["kind"], "timeout");
    assert_eq!(body["checks"][1]["error"]["kind"], "timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_check_is_reported_and_the_server_keeps_serving() {
    let smoke = explicit()
        .check(check("boom", |_ctx| {
            Box::pin(async {
                let rows: Vec<u32> = Vec::new();
                if rows.is_empty() {
                    panic!("index out of range: no rows");
                }
                Ok(Outcome::Pass)
            })
        }))
        .anonymous_detail(smoketest::Detail::Full)
        .build()
        .unwrap();
    let addr = serve(smoke).await;
    for _ in 0..3 {
        let (status, body) = get_json(format!("http://{addr}/smoketest")).await;
        assert_eq!(status, 500);
        assert_eq!(body["checks"][0]["error"]["kind"], "panic");
        assert_eq!(
            body["checks"][0]["error"]["message"],
            "panicked: index out of range: no rows"
        );
    }
    let hello = reqwest::get(format!("http://{addr}/hello")).await.unwrap();
    assert_eq!(hello.text().await.unwrap(), "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_keep_registration_order_whatever_finishes_first() {
    let report = explicit()
        .check(sleeper("c", 60))
        .check(sleeper("a", 1))
        .check(sleeper("b", 30))
        .build()
        .unwrap()
        .run(&Selection::all())
        .await
        .unwrap();
    let names: Vec<_> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["c", "a", "b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_declared_in_modules_are_discovered_with_their_attributes() {
    let smoke = Smoketest::builder().build().unwrap();
    let names: Vec<_> = smoke.check_names().collect();
    assert_eq!(names, ["orders::discovered_write", "payments::custom_name"]);
    assert_eq!(
        smoke.check_tags("orders::discovered_write"),
        Some(&["db".to_string(), "write".to_string()][..])
    );
    let report = smoke.run(&Selection::all()).await.unwrap();
    assert_eq!(report.status, Status::Pass);
    assert_eq!(report.checks[0].observed["rows"], 1);
}

#[test]
fn duplicate_names_are_rejected_naming_both_places() {
    let err = Smoketest::builder()
        .check(sleeper("orders::discovered_write", 1))
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("two checks are named `orders::discovered_write`"),
        "{err}"
    );
    assert!(
        err.contains("#[smoketest::check] at tests/foundation.rs:"),
        "{err}"
    );
    assert!(
        err.contains("builder.check(…) at tests/foundation.rs:"),
        "{err}"
    );
}

#[test]
fn unusable_names_and_settings_are_rejected() {
    let err = explicit()
        .check(sleeper("has space", 1))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("white space"), "{err}");
    let err = explicit().check(sleeper("a/b", 1)).build().unwrap_err();
    assert!(err.to_string().contains("`/`"), "{err}");
    assert!(explicit().concurrency(0).build().is_err());
    assert!(explicit().path("smoke").build().is_err());
}

/// `main() -> Result<(), Box<dyn Error>>` prints an error's `Debug`: it must be the advice,
/// not a struct dump.
#[test]
fn a_build_error_printed_by_main_reads_as_its_sentence() {
    let err = explicit().bearer_token("short").build().unwrap_err();
    let boxed: Box<dyn std::error::Error> = Box::new(err.clone());
    assert_eq!(format!("{boxed:?}"), err.to_string());
    assert!(
        format!("{boxed:?}").contains("use at least 16 random characters"),
        "{boxed:?}"
    );
    assert!(!format!("{err:?}").contains("Config("), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_pass_and_skips_are_reported() {
    let smoke = explicit()
        .check(check("disk", |_ctx| {
            Box::pin(async { Ok(Outcome::warn("91% used")) })
        }))
        .check(check("redis", |_ctx| {
            Box::pin(async { Ok(Outcome::skip("no REDIS_URL")) })
        }))
        .anonymous_detail(smoketest::Detail::Full)
        .build()
        .unwrap();
    let addr = serve(smoke).await;
    let (status, body) = get_json(format!("http://{addr}/smoketest")).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "warn");
    assert_eq!(body["checks"][0]["status"], "warn");
    assert_eq!(body["checks"][0]["message"], "91% used");
    assert_eq!(body["checks"][1]["status"], "skip");
    assert_eq!(body["summary"]["skipped"], 1);
    let text = reqwest::get(format!("http://{addr}/smoketest?format=text"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.starts_with("PASS\n[!]disk warn: 91% used "), "{text}");
}

fn failing_and_passing() -> Smoketest {
    explicit()
        .check(
            check("db::write", |_ctx| {
                Box::pin(async {
                    smoketest::ensure_eq!(0, 1, "rows inserted");
                    Ok(Outcome::Pass)
                })
            })
            .tag("db"),
        )
        .check(check("cache::ping", |_ctx| Box::pin(async { Ok(Outcome::Pass) })).tag("cache"))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_run_is_500_and_failure_status_is_configurable() {
    let addr = serve(failing_and_passing()).await;
    let (status, body) = get_json(format!("http://{addr}/smoketest")).await;
    assert_eq!(status, 500);
    assert_eq!(body["status"], "fail");
    assert_eq!(body["checks"][0]["error"]["kind"], "assertion");
    // Anonymous callers see the kind, not the message (the default detail level).
    assert!(body["checks"][0]["error"].get("message").is_none());

    let smoke = explicit()
        .failure_status(http::StatusCode::SERVICE_UNAVAILABLE)
        .check(check("down", |_ctx| {
            Box::pin(async { smoketest::fail!("down") })
        }))
        .build()
        .unwrap();
    let addr = serve(smoke).await;
    assert_eq!(get_json(format!("http://{addr}/smoketest")).await.0, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selection_by_path_tag_check_and_exclude() {
    let addr = serve(failing_and_passing()).await;
    let names = |body: &serde_json::Value| -> Vec<String> {
        body["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, body) = get_json(format!("http://{addr}/smoketest/cache::ping")).await;
    assert_eq!(
        (status, names(&body)),
        (200, vec!["cache::ping".to_string()])
    );
    let (status, body) = get_json(format!("http://{addr}/smoketest/cache%3A%3Aping")).await;
    assert_eq!(
        (status, names(&body)),
        (200, vec!["cache::ping".to_string()])
    );
    let (status, body) = get_json(format!("http://{addr}/smoketest?tag=cache")).await;
    assert_eq!(
        (status, names(&body)),
        (200, vec!["cache::ping".to_string()])
    );
    let (status, body) = get_json(format!("http://{addr}/smoketest?tag=db&tag=cache")).await;
    assert_eq!((status, body["summary"]["total"].clone()), (500, 2.into()));
    let (status, body) = get_json(format!("http://{addr}/smoketest?check=db::write")).await;
    assert_eq!((status, names(&body)), (500, vec!["db::write".to_string()]));
    let (status, body) = get_json(format!("http://{addr}/smoketest?exclude=db::write")).await;
    assert_eq!(
        (status, names(&body)),
        (200, vec!["cache::ping".to_string()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_error_path() {
    let addr = serve(failing_and_passing()).await;
    let client = reqwest::Client::new();
    let base = format!("http://{addr}/smoketest");

    let cases: &[(&str, u16, &str, Option<&str>)] = &[
        ("/no-such-check", 404, "not_found", None),
        ("?check=nope", 404, "not_found", None),
        ("?exclude=nope", 404, "not_found", None),
        ("?bogus=1", 400, "bad_request", Some("bogus")),
        ("?tag=", 400, "bad_request", Some("tag")),
        ("?tag", 400, "bad_request", Some("tag")),
        ("?check=%FF", 400, "bad_request", Some("check")),
        ("?format=yaml", 400, "bad_request", Some("format")),
        (
            "?format=json&format=text",
            400,
            "bad_request",
            Some("format"),
        ),
    ];
    for (suffix, status, kind, parameter) in cases {
        let response = client.get(format!("{base}{suffix}")).send().await.unwrap();
        assert_eq!(response.status().as_u16(), *status, "{suffix}");
        assert_eq!(response.headers()["cache-control"], "no-store", "{suffix}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["kind"], *kind, "{suffix}");
        if let Some(p) = parameter {
            assert_eq!(body["error"]["parameter"], *p, "{suffix}");
            assert!(
                body["error"]["message"].as_str().unwrap().contains(p),
                "{suffix}: {body}"
            );
        }
    }

    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let response = client.request(method.clone(), &base).send().await.unwrap();
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(response.headers()["allow"], "GET, HEAD");
    }

    let response = client
        .get(&base)
        .header("accept", "image/png")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 406);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["kind"], "not_acceptable");

    let response = client.head(&base).send().await.unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(response.bytes().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_negotiation_and_headers() {
    let addr = serve(failing_and_passing()).await;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/smoketest?tag=cache");
    for (accept, content_type) in [
        (None, "application/json"),
        (Some("*/*"), "application/json"),
        (Some("text/plain"), "text/plain; charset=utf-8"),
        (
            Some("text/plain;q=0.4, application/json"),
            "application/json",
        ),
    ] {
        let mut request = client.get(&url);
        if let Some(a) = accept {
            request = request.header("accept", a);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            content_type,
            "{accept:?}"
        );
        assert_eq!(response.headers()["cache-control"], "no-store");
    }
    let text = client
        .get(format!("{url}&format=text"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.starts_with("PASS\n[+]cache::ping ok "), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_validate_against_the_committed_schema() {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../schema/report.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let smoke = explicit()
        .service("orders-api")
        .version("1.4.2")
        .release_id("9f2c1ab")
        .check(check("pass", |ctx| {
            Box::pin(async move {
                ctx.observe("rows", 3);
                Ok(Outcome::Pass)
            })
        }))
        .check(check("warn", |_ctx| {
            Box::pin(async { Ok(Outcome::warn("slow")) })
        }))
        .check(check("skip", |_ctx| {
            Box::pin(async { Ok(Outcome::skip("n/a")) })
        }))
        .check(check("fail", |_ctx| {
            Box::pin(async { smoketest::fail!("no") })
        }))
        .check(check("panic", |_ctx| Box::pin(async { panic!("boom") })))
        .build()
        .unwrap();
    let report = smoke.run(&Selection::all()).await.unwrap();
    for detail in [
        smoketest::Detail::Full,
        smoketest::Detail::Checks,
        smoketest::Detail::Status,
    ] {
        let value = serde_json::to_value(report.restrict(detail)).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{detail:?}: {errors:?}\n{value:#}");
    }
    // The schema is not vacuous: a report missing its status is rejected.
    let mut broken = serde_json::to_value(&report).unwrap();
    broken.as_object_mut().unwrap().remove("status");
    assert!(!validator.is_valid(&broken));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_cleanups_run_after_failure_and_their_own_failure_is_reported() {
    let cleaned = Arc::new(AtomicUsize::new(0));
    let seen = cleaned.clone();
    let smoke = explicit()
        .check(check("fails_after_defer", move |ctx| {
            let cleaned = seen.clone();
            ctx.defer(async move {
                cleaned.fetch_add(1, Ordering::SeqCst);
                Ok(())
            });
            Box::pin(async { smoketest::fail!("failed after registering a cleanup") })
        }))
        .check(check("bad_cleanup", |ctx| {
            ctx.defer(async { Err(smoketest::CheckError::error("bucket object still there")) });
            Box::pin(async { Ok(Outcome::Pass) })
        }))
        .build()
        .unwrap();
    let report = smoke.run(&Selection::all()).await.unwrap();
    assert_eq!(cleaned.load(Ordering::SeqCst), 1);
    let error = report.checks[1].error.as_ref().unwrap();
    assert_eq!(error.kind, "cleanup");
    assert_eq!(
        error.message.as_deref(),
        Some("cleanup #1 failed: bucket object still there")
    );
}
