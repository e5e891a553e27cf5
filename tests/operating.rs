//! Operating a service with smoketest (issue 17): draining on shutdown, probes that cannot
//! restart every pod for a database outage, latency budgets, and the history people see.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use smoketest::{
    BuildError, CheckError, Context, Detail, Group, Outcome, SmokeCheck, Smoketest,
    SmoketestBuilder, from_fn,
};

const TOKEN: &str = "operating-test-token-0123456789";

/// A database check whose runs are counted and whose failure is switched from the test.
#[derive(Clone, Default)]
struct Db {
    runs: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
}

impl Db {
    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    fn check(&self) -> impl SmokeCheck {
        let db = self.clone();
        from_fn("db::ping", move |_ctx| {
            db.runs.fetch_add(1, Ordering::SeqCst);
            let failing = db.failing.load(Ordering::SeqCst);
            Box::pin(async move {
                if failing {
                    Err(CheckError::new(
                        smoketest::ErrorKind::DbUnavailable,
                        "connection refused",
                    ))
                } else {
                    Ok(Outcome::Pass)
                }
            })
        })
        .tag("db")
    }
}

fn builder(db: &Db) -> SmoketestBuilder {
    Smoketest::builder()
        .service("orders-api")
        .without_discovery()
        .min_interval(Duration::ZERO)
        .check(db.check())
        .check(from_fn("config::loaded", |_| Box::pin(async { Ok(Outcome::Pass) })).tag("local"))
}

async fn get(smoke: &Smoketest, uri: &str) -> Response<Bytes> {
    let (parts, ()) = Request::get(uri).body(()).unwrap().into_parts();
    smoke.handle(&parts).await
}

async fn get_authorized(smoke: &Smoketest, uri: &str) -> Response<Bytes> {
    let (parts, ()) = Request::get(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(())
        .unwrap()
        .into_parts();
    smoke.handle(&parts).await
}

fn json(response: &Response<Bytes>) -> serde_json::Value {
    serde_json::from_slice(response.body()).unwrap()
}

fn body(response: &Response<Bytes>) -> &str {
    std::str::from_utf8(response.body()).unwrap()
}

fn schema() -> jsonschema::Validator {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../schema/report.schema.json")).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn assert_valid(report: &serde_json::Value) {
    let errors: Vec<String> = schema()
        .iter_errors(report)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{report:#}");
}

// ---------------------------------------------------------------------------------------
// Drain

#[tokio::test]
async fn draining_takes_readiness_out_of_rotation_without_a_run_while_liveness_stays_up() {
    let db = Db::default();
    let smoke = builder(&db)
        .bearer_token(TOKEN)
        .group(Group::live())
        .group(Group::ready().tag("db"))
        .group(Group::new("warm").path("/warmz").tag("db").readiness())
        .group(Group::new("monitor").path("/monitor").tag("db"))
        .build()
        .unwrap();
    assert_eq!(get(&smoke, "/readyz").await.status(), StatusCode::OK);
    assert!(!smoke.is_draining());
    let runs = db.runs();

    smoke.start_draining();
    assert!(smoke.is_draining());
    // Each answers its own failure status: the preset's 503, the builder's 500.
    for (path, status) in [
        ("/readyz", StatusCode::SERVICE_UNAVAILABLE),
        ("/warmz", StatusCode::INTERNAL_SERVER_ERROR),
    ] {
        let response = get(&smoke, path).await;
        assert_eq!(response.status(), status, "{path}");
        let report = json(&response);
        assert_eq!(report["status"], "fail");
        assert_eq!(report["reason"], "draining");
        assert_eq!(report["summary"]["total"], 0);
        assert_valid(&report);
    }
    let fresh = get_authorized(&smoke, "/readyz?fresh=1").await;
    assert_eq!(fresh.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        json(&fresh)["reason"],
        "draining",
        "fresh cannot undo a drain"
    );
    let text = get(&smoke, "/readyz?format=text").await;
    assert!(
        body(&text).starts_with("FAIL\nreason: draining\n"),
        "{}",
        body(&text)
    );
    let html = get(&smoke, "/readyz?format=html").await;
    assert!(body(&html).contains("draining: this instance is shutting down"));
    assert_eq!(db.runs(), runs, "draining answers cost no run");

    assert_eq!(get(&smoke, "/livez").await.status(), StatusCode::OK);
    let monitor = get(&smoke, "/monitor").await;
    assert_eq!(monitor.status(), StatusCode::OK, "only readiness drains");
    assert_eq!(json(&monitor).get("reason"), None);
    let gate = get_authorized(&smoke, "/smoketest").await;
    assert_eq!(gate.status(), StatusCode::OK, "the deploy gate still runs");
    assert_eq!(db.runs(), runs + 2);
}

#[tokio::test(start_paused = true)]
async fn drain_after_drains_on_the_signal_and_completes_after_the_delay() {
    let smoke = Smoketest::builder()
        .without_discovery()
        .group(Group::ready())
        .build()
        .unwrap();
    let (signal, signalled) = tokio::sync::oneshot::channel::<()>();
    let shutdown = tokio::spawn(smoke.drain_after(
        async move {
            let _ = signalled.await;
        },
        Duration::from_secs(5),
    ));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(get(&smoke, "/readyz").await.status(), StatusCode::OK);
    assert!(!shutdown.is_finished(), "nothing happens before the signal");

    signal.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(
        get(&smoke, "/readyz").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        !shutdown.is_finished(),
        "the server keeps serving during the delay"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(shutdown.is_finished(), "then graceful shutdown may begin");
}

// ---------------------------------------------------------------------------------------
// Probe safety

#[tokio::test]
async fn a_liveness_group_with_an_external_dependency_does_not_build_unless_allowed() {
    let db = Db::default();
    for live in [
        Group::live().tag("db"),
        Group::live().check("db::ping"),
        Group::new("alive").path("/alive").liveness(),
    ] {
        let err = builder(&db).group(live).build().unwrap_err();
        assert!(
            matches!(&err, BuildError::UnsafeProbe { check, tag, .. } if check == "db::ping" && tag == "db"),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message
                .contains("a database outage would restart every pod: move it to Group::ready()"),
            "{message}"
        );
    }
    let err = builder(&db)
        .check(from_fn("payments::api", |_| Box::pin(async { Ok(Outcome::Pass) })).tag("external"))
        .group(Group::live().check("payments::api"))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("`payments::api`"), "{err}");

    builder(&db)
        .group(Group::live().tag("db").allow_external_dependencies())
        .build()
        .expect("an explicit opt-out builds");
    builder(&db)
        .group(Group::live().tag("local"))
        .group(Group::ready().tag("db"))
        .group(Group::deploy().path("/deployz"))
        .build()
        .expect("readiness and deploy gates may depend on the database");
}

/// The rule the README's probe-safety snippet (a doc-test) shows.
#[test]
fn readme_a_database_check_on_liveness_does_not_build() {
    let err = Smoketest::builder()
        .without_discovery()
        .check(from_fn("db::ping", |_| Box::pin(async { Ok(Outcome::Pass) })).tag("db"))
        .group(Group::live().check("db::ping"))
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::UnsafeProbe { .. }));
}

#[tokio::test]
async fn explain_says_what_each_path_depends_on_and_what_a_failure_does() {
    let db = Db::default();
    let smoke = builder(&db)
        .group(Group::live())
        .group(Group::ready().tag("db").every(Duration::from_secs(5)))
        .group(Group::deploy().path("/deployz").exclude("config::loaded"))
        .build()
        .unwrap();
    let text = smoke.explain();
    let section = |path: &str| {
        let start = text
            .find(&format!("{path} — "))
            .unwrap_or_else(|| panic!("{path}:\n{text}"));
        let rest = &text[start..];
        let end = rest[1..].find("\n/").map_or(rest.len(), |i| i + 1);
        rest[..end].to_string()
    };
    let mount = section("/smoketest");
    assert!(mount.contains("deploy gate"), "{mount}");
    assert!(mount.contains("db::ping [db, external] — if it fails: roll the deploy back"));
    assert!(mount.contains("config::loaded [local] — if it fails: roll the deploy back"));
    let live = section("/livez");
    assert!(live.contains("liveness probe (group `live`)"), "{live}");
    assert!(live.contains("restart the pod"), "{live}");
    assert!(live.contains("no checks"), "{live}");
    let ready = section("/readyz");
    assert!(
        ready.contains("readiness probe (group `ready`, every 5s)"),
        "{ready}"
    );
    assert!(
        ready.contains("db::ping [db, external] — if it fails: take the pod out of rotation"),
        "{ready}"
    );
    assert!(ready.contains("while draining: 503"), "{ready}");
    assert!(!ready.contains("config::loaded"), "{ready}");
    let deploy = section("/deployz");
    assert!(deploy.contains("db::ping"), "{deploy}");
    assert!(!deploy.contains("config::loaded"), "{deploy}");
}

// ---------------------------------------------------------------------------------------
// Latency budgets

/// Declared with the attribute; only the test that builds with discovery sees it.
#[smoketest::check(name = "attr::slow", warn_after = "10ms")]
async fn slow_by_attribute(_ctx: &mut Context) -> smoketest::Result {
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(Outcome::Pass)
}

struct SlowTrait;

#[smoketest::async_trait]
impl SmokeCheck for SlowTrait {
    fn name(&self) -> &str {
        "trait::slow"
    }

    fn warn_after(&self) -> Option<Duration> {
        Some(Duration::from_millis(10))
    }

    async fn run(&self, _ctx: &mut Context) -> smoketest::Result {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(Outcome::Pass)
    }
}

/// A check that takes `millis` and then passes (or fails), with an optional own budget.
fn sleeping(name: &'static str, millis: u64, fail: bool, budget: Option<u64>) -> impl SmokeCheck {
    let check = from_fn(name, move |_ctx| {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(millis)).await;
            if fail {
                Err(CheckError::assertion("no rows"))
            } else {
                Ok(Outcome::Pass)
            }
        })
    });
    match budget {
        Some(ms) => check.warn_after(Duration::from_millis(ms)),
        None => check,
    }
}

// Paused time: a check's sleep advances the clock by exactly its length, so durations are
// exact and nothing here depends on how busy the machine is.
#[tokio::test(start_paused = true)]
async fn a_pass_slower_than_its_budget_is_a_slow_warning_whichever_way_the_budget_is_set() {
    let smoke = Smoketest::builder()
        .anonymous_detail(Detail::Full)
        .warn_after(Duration::from_millis(100))
        .check(SlowTrait)
        .check(sleeping("fn::slow", 50, false, Some(10)))
        .check(sleeping("default::slow", 150, false, None))
        .check(sleeping("default::fast", 50, false, None))
        .check(sleeping("own::generous", 150, false, Some(1000)))
        .check(sleeping("fn::failing", 50, true, Some(10)))
        .build()
        .unwrap();
    let response = get(&smoke, "/smoketest").await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let report = json(&response);
    assert_valid(&report);
    let check = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name}: {report:#}"))
            .clone()
    };
    for (name, took, budget) in [
        ("attr::slow", "50", "10ms"),
        ("trait::slow", "50", "10ms"),
        ("fn::slow", "50", "10ms"),
        ("default::slow", "150", "100ms"),
    ] {
        let c = check(name);
        assert_eq!(c["status"], "warn", "{c:#}");
        assert_eq!(c["error"]["kind"], "slow", "{c:#}");
        let message = c["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("took {took}"))
                && message.ends_with(&format!("latency budget of {budget}")),
            "{message}"
        );
    }
    for name in ["default::fast", "own::generous"] {
        assert_eq!(check(name)["status"], "pass", "{name}");
    }
    assert_eq!(
        check("fn::failing")["error"]["kind"],
        "assertion",
        "a failure stays a failure"
    );
    assert_eq!(report["summary"]["warned"], 4);
    assert_eq!(report["summary"]["passed"], 2);

    // Without the failing check, slow checks still answer 200: a warning passes.
    let passing = get(&smoke, "/smoketest?exclude=fn::failing&format=text").await;
    assert_eq!(passing.status(), StatusCode::OK);
    let text = body(&passing);
    assert!(text.starts_with("PASS\n"), "{text}");
    assert!(text.contains("[!]fn::slow warn: slow: took 50"), "{text}");
    // Anonymous callers at the default detail see the kind, not the message.
    let restricted = Smoketest::builder()
        .without_discovery()
        .check(sleeping("fn::slow", 50, false, Some(10)))
        .build()
        .unwrap();
    let c = &json(&get(&restricted, "/smoketest").await)["checks"][0];
    assert_eq!(
        (c["status"].as_str(), c["error"]["kind"].as_str()),
        (Some("warn"), Some("slow"))
    );
    assert!(c["error"].get("message").is_none());
}

// ---------------------------------------------------------------------------------------
// History

#[tokio::test]
async fn history_keeps_the_last_runs_of_every_check_on_every_path() {
    let db = Db::default();
    let smoke = builder(&db)
        .bearer_token(TOKEN)
        .history_len(3)
        .group(Group::ready().tag("db"))
        .build()
        .unwrap();
    get_authorized(&smoke, "/smoketest").await;
    get_authorized(&smoke, "/smoketest").await;
    get(&smoke, "/readyz").await;
    db.failing.store(true, Ordering::SeqCst);
    assert_eq!(get(&smoke, "/readyz").await.status(), 503);

    let report = json(&get_authorized(&smoke, "/smoketest").await);
    assert_valid(&report);
    let runs = |name: &str| report["history"][name]["runs"].as_array().unwrap().clone();
    let db_runs = runs("db::ping");
    assert_eq!(db_runs.len(), 3, "the last 3 of 5 runs: {db_runs:#?}");
    let statuses: Vec<&str> = db_runs
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["pass", "fail", "fail"],
        "oldest first, /readyz runs included"
    );
    assert_eq!(db_runs[2]["kind"], "db_unavailable");
    assert!(db_runs[0]["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        runs("config::loaded").len(),
        3,
        "its own runs: the mount path only"
    );
    assert_eq!(report["history"]["db::ping"]["consecutive_failures"], 2);
    assert!(report["history"]["config::loaded"]["last_success"].is_string());

    // Anonymous callers see the counts but not the strip; status-only callers nothing.
    let anonymous = json(&get(&smoke, "/smoketest").await);
    assert!(anonymous["history"]["db::ping"]["last_failure"].is_string());
    assert!(
        anonymous["history"]["db::ping"].get("runs").is_none(),
        "{anonymous:#}"
    );
    let ready = json(&get(&smoke, "/readyz").await);
    let history = ready["history"].as_object().cloned().unwrap_or_default();
    assert!(
        history.values().all(|h| h.get("runs").is_none()),
        "{ready:#}"
    );

    // Prometheus: the last success of every check, also off group paths; still valid.
    let metrics = get(&smoke, "/smoketest?format=openmetrics").await;
    let text = body(&metrics);
    openmetrics_parser::openmetrics::parse_openmetrics(text)
        .unwrap_or_else(|e| panic!("invalid OpenMetrics: {e:?}\n{text}"));
    assert!(
        text.contains("smoketest_check_last_success_timestamp_seconds{check=\"config::loaded\"} "),
        "{text}"
    );

    // The page: a strip of the last runs per check and the time since the last failure.
    let page = get_authorized(&smoke, "/smoketest?format=html").await;
    assert_eq!(
        page.headers()["content-security-policy"],
        "default-src 'none'; style-src 'unsafe-inline'"
    );
    let html = body(&page);
    assert_eq!(html.matches("<svg class=\"strip\"").count(), 2, "{html}");
    assert!(
        html.contains("aria-label=\"last 3 runs, 3 failed\""),
        "{html}"
    );
    assert!(html.contains("<rect class=\"r-fail\""));
    assert!(html.contains("<rect class=\"r-pass\""));
    assert!(html.contains("last failure "), "{html}");
    assert!(html.contains("no failure on record"), "{html}");
    for external in ["<script", "<img", "src=", "href=", "url(", "@import"] {
        assert!(
            !html.contains(external),
            "the page loads something: {external}"
        );
    }
}

#[tokio::test]
async fn a_history_of_zero_runs_keeps_no_strip_but_still_counts() {
    let db = Db::default();
    let smoke = builder(&db)
        .anonymous_detail(Detail::Full)
        .history_len(0)
        .build()
        .unwrap();
    get(&smoke, "/smoketest").await;
    let report = json(&get(&smoke, "/smoketest").await);
    assert!(
        report["history"]["db::ping"].get("runs").is_none(),
        "{report:#}"
    );
    assert!(report["history"]["db::ping"]["last_success"].is_string());
}

// ---------------------------------------------------------------------------------------
// ?refresh

#[tokio::test]
async fn refresh_makes_the_page_reload_itself_and_bad_values_are_400_naming_it() {
    let db = Db::default();
    let smoke = builder(&db)
        .group(Group::ready().tag("db"))
        .build()
        .unwrap();
    for path in ["/smoketest", "/readyz"] {
        let page = get(&smoke, &format!("{path}?format=html&refresh=10")).await;
        assert_eq!(page.status(), StatusCode::OK);
        assert!(
            body(&page).contains("<meta http-equiv=\"refresh\" content=\"10\">"),
            "{path}"
        );
        let plain = get(&smoke, &format!("{path}?format=html")).await;
        assert!(!body(&plain).contains("http-equiv"), "{path}");
        let json_ignores_it = get(&smoke, &format!("{path}?refresh=10")).await;
        assert_eq!(json_ignores_it.status(), StatusCode::OK);

        for bad in ["abc", "0", "3601", "-1", "1.5", "", "10&refresh=20"] {
            let response = get(&smoke, &format!("{path}?format=html&refresh={bad}")).await;
            assert_eq!(
                response.status(),
                StatusCode::BAD_REQUEST,
                "{path} refresh={bad}"
            );
            let error = json(&response);
            assert_eq!(error["error"]["parameter"], "refresh", "{error:#}");
        }
    }
}
