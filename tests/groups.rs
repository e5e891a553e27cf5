//! Groups as a platform sees them: `/livez` and `/readyz` with their own status and detail,
//! members validated at build, background snapshots with their age, failure thresholds and
//! the status-change hook, and a deploy gate that stays live.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use smoketest::{
    BuildError, CheckError, Detail, Group, Outcome, Smoketest, SmoketestBuilder, Status, from_fn,
};

/// A check whose runs are counted and whose failure is switched from the test.
#[derive(Clone, Default)]
struct Switch {
    runs: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
}

impl Switch {
    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    fn check(&self, name: &'static str, tag: &'static str) -> impl smoketest::SmokeCheck {
        let switch = self.clone();
        from_fn(name, move |_ctx| {
            switch.runs.fetch_add(1, Ordering::SeqCst);
            let failing = switch.failing.load(Ordering::SeqCst);
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
        .tag(tag)
    }
}

fn builder(db: &Switch) -> SmoketestBuilder {
    Smoketest::builder()
        .service("orders-api")
        .without_discovery()
        .check(db.check("db::ping", "db"))
        .check(from_fn("config::loaded", |_| Box::pin(async { Ok(Outcome::Pass) })).tag("local"))
}

async fn get(smoke: &Smoketest, uri: &str) -> Response<Bytes> {
    let (parts, ()) = Request::get(uri).body(()).unwrap().into_parts();
    smoke.handle(&parts).await
}

fn json(response: &Response<Bytes>) -> serde_json::Value {
    serde_json::from_slice(response.body()).unwrap()
}

#[tokio::test]
async fn unknown_members_do_not_build() {
    let db = Switch::default();
    let err = builder(&db)
        .group(Group::ready().check("db::pnig"))
        .build()
        .unwrap_err();
    let BuildError::UnknownGroupMember { group, member, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(group, "ready");
    assert_eq!(member, "the check `db::pnig`");
    assert!(
        err.to_string().contains("checks: config::loaded, db::ping"),
        "{err}"
    );

    let err = builder(&db)
        .group(Group::new("x").tag("dbb"))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("the tag `dbb`"), "{err}");
    assert!(err.to_string().contains("tags in use: db, local"), "{err}");

    let err = builder(&db)
        .group(Group::new("x").exclude("nope"))
        .build()
        .unwrap_err();
    assert!(
        matches!(err, BuildError::UnknownGroupMember { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn unusable_paths_names_and_schedules_do_not_build() {
    let db = Switch::default();
    let cases = [
        (
            Group::new("x").path("/smoketest/x"),
            "inside the mount path",
        ),
        (Group::new("x").path("readyz"), "must start with `/`"),
        (
            Group::deploy()
                .path("/deployz")
                .every(Duration::from_secs(1)),
            "always runs live",
        ),
        (Group::new("x").failure_threshold(0), "at least 1"),
        (
            Group::new("x").initial_delay(Duration::from_secs(1)),
            "needs `every(interval)`",
        ),
    ];
    for (group, expected) in cases {
        let err = builder(&db).group(group).build().unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
    }
    let err = builder(&db)
        .group(Group::live())
        .group(Group::new("other").path("/livez"))
        .build()
        .unwrap_err();
    assert!(
        err.to_string().contains("already served at `/livez`"),
        "{err}"
    );
    let err = builder(&db)
        .group(Group::new("a"))
        .group(Group::new("a"))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("two groups"), "{err}");
}

#[tokio::test]
async fn livez_passes_while_the_database_is_down_and_readyz_does_not() {
    let db = Switch::default();
    db.fail(true);
    let smoke = builder(&db)
        .group(Group::live())
        .group(Group::ready().tag("db"))
        .build()
        .unwrap();
    assert!(smoke.serves("/livez") && smoke.serves("/readyz"));
    assert!(!smoke.serves("/livez/x") && !smoke.serves("/ready"));
    assert_eq!(smoke.group_members("live"), Some(vec![]));
    assert_eq!(smoke.group_members("ready"), Some(vec!["db::ping"]));

    let live = get(&smoke, "/livez").await;
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(db.runs(), 0, "liveness never touches the database");

    let ready = get(&smoke, "/readyz").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = json(&ready);
    assert_eq!(body["status"], "fail");
    assert_eq!(body["group"], "ready");
    // Like every path: the service's anonymous level (names and kinds, no messages).
    assert_eq!(body["checks"][0]["name"], "db::ping", "{body:#}");
    assert!(
        body["checks"][0]["error"].get("message").is_none(),
        "{body:#}"
    );
    assert!(
        body["history"]["db::ping"].get("runs").is_none(),
        "{body:#}"
    );

    let text = get(&smoke, "/readyz?format=text").await;
    assert!(text.body().starts_with(b"FAIL\n"));
}

#[tokio::test]
async fn a_group_has_its_own_detail_and_status() {
    let db = Switch::default();
    db.fail(true);
    let smoke = builder(&db)
        .group(
            Group::new("monitor")
                .path("/monitor")
                .tag("db")
                .detail(Detail::Full)
                .failure_status(StatusCode::IM_A_TEAPOT),
        )
        .build()
        .unwrap();
    let response = get(&smoke, "/monitor").await;
    assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
    let body = json(&response);
    assert_eq!(body["checks"][0]["error"]["message"], "connection refused");
    assert!(response.headers().contains_key("server-timing"));
    assert_eq!(body["history"]["db::ping"]["consecutive_failures"], 1);

    // The mount path keeps the builder's settings.
    let main = get(&smoke, "/smoketest").await;
    assert_eq!(main.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(json(&main)["checks"][0]["error"].get("message").is_none());
}

#[tokio::test]
async fn group_paths_refuse_selection_and_other_methods() {
    let db = Switch::default();
    let smoke = builder(&db)
        .group(Group::ready().tag("db"))
        .build()
        .unwrap();
    let narrowed = get(&smoke, "/readyz?check=db::ping").await;
    assert_eq!(narrowed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(&narrowed)["error"]["parameter"], "check");
    let unknown = get(&smoke, "/readyz?verbose").await;
    assert_eq!(json(&unknown)["error"]["parameter"], "verbose");
    let refused = {
        let (parts, ()) = Request::get("/readyz")
            .header("accept", "image/png")
            .body(())
            .unwrap()
            .into_parts();
        smoke.handle(&parts).await
    };
    assert_eq!(refused.status(), StatusCode::NOT_ACCEPTABLE);
    let (parts, ()) = Request::post("/readyz").body(()).unwrap().into_parts();
    let post = smoke.handle(&parts).await;
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
    let prometheus = get(&smoke, "/readyz?format=openmetrics").await;
    assert_eq!(prometheus.status(), 200);
}

#[tokio::test(start_paused = true)]
async fn background_group_serves_its_snapshot_with_its_age_and_the_deploy_gate_stays_live() {
    let db = Switch::default();
    let smoke = builder(&db)
        .group(Group::ready().tag("db").every(Duration::from_secs(10)))
        .build()
        .unwrap();
    // The schedule started at build; its first run is immediate.
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(db.runs(), 1);

    tokio::time::sleep(Duration::from_secs(3)).await;
    for _ in 0..20 {
        let response = get(&smoke, "/readyz?format=json").await;
        assert_eq!(response.status(), 200);
        let body = json(&response);
        assert_eq!(body["cached"], true);
        let age = body["age_ms"].as_f64().unwrap();
        assert!((3000.0..3100.0).contains(&age), "age {age}");
    }
    assert_eq!(db.runs(), 1, "requests are answered from the snapshot");

    let gate = json(&get(&smoke, "/smoketest").await);
    assert_eq!(gate["cached"], false);
    assert_eq!(db.runs(), 2, "the deploy gate runs live");

    tokio::time::sleep(Duration::from_secs(7)).await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(db.runs(), 3, "the schedule ran again after its interval");
    let fresh = json(&get(&smoke, "/readyz").await);
    assert!(fresh["age_ms"].as_f64().unwrap() < 100.0);

    drop(smoke);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(db.runs(), 3, "the schedule ends with the last Smoketest");
}

#[tokio::test(start_paused = true)]
async fn before_its_first_run_a_background_group_answers_pending_and_runs_nothing() {
    let db = Switch::default();
    let smoke = builder(&db)
        .bearer_token("s3cret-token-for-tests")
        .group(
            Group::ready()
                .tag("db")
                .every(Duration::from_secs(10))
                .initial_delay(Duration::from_secs(30)),
        )
        .group(
            Group::live()
                .tag("local")
                .every(Duration::from_secs(10))
                .initial_delay(Duration::from_secs(30)),
        )
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(db.runs(), 0, "nothing runs before the initial delay");

    let (a, b) = tokio::join!(get(&smoke, "/readyz"), get(&smoke, "/readyz"));
    assert_eq!(
        (a.status(), b.status()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::SERVICE_UNAVAILABLE
        ),
        "no verdict yet is not a pass for readiness"
    );
    let pending = json(&a);
    assert_eq!(pending["status"], "fail");
    assert_eq!(pending["reason"], "pending");
    assert_eq!(pending["summary"]["total"], 0);
    let live = get(&smoke, "/livez").await;
    assert_eq!(
        live.status(),
        StatusCode::OK,
        "the process is up: liveness passes"
    );
    assert_eq!(json(&live)["reason"], "pending");
    let text = get(&smoke, "/readyz?format=text").await;
    assert!(text.body().starts_with(b"FAIL\nreason: pending\n"));
    assert_eq!(db.runs(), 0, "pending answers run nothing");

    // A token holder's fresh request still runs the group, and its report is then served.
    let (parts, ()) = Request::get("/readyz?fresh=1")
        .header("authorization", "Bearer s3cret-token-for-tests")
        .body(())
        .unwrap()
        .into_parts();
    let fresh = smoke.handle(&parts).await;
    assert_eq!(fresh.status(), StatusCode::OK);
    assert_eq!(db.runs(), 1);
    let after = get(&smoke, "/readyz").await;
    assert_eq!(after.status(), StatusCode::OK);
    let after = json(&after);
    assert_eq!(
        (after["cached"].clone(), after.get("reason")),
        (true.into(), None)
    );
    assert_eq!(db.runs(), 1);

    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(db.runs(), 2, "the schedule starts after its delay");
}

#[tokio::test]
async fn threshold_rides_out_one_failure_and_the_hook_sees_each_change() {
    let db = Switch::default();
    type Changes = Arc<Mutex<Vec<(Option<Status>, Status)>>>;
    let changes: Changes = Arc::default();
    let seen = changes.clone();
    let smoke = builder(&db)
        .group(
            Group::new("monitor")
                .path("/monitor")
                .tag("db")
                .failure_threshold(2)
                .on_status_change(move |change| {
                    assert_eq!(change.group, "monitor");
                    seen.lock().unwrap().push((change.previous, change.current));
                }),
        )
        .build()
        .unwrap();

    assert_eq!(get(&smoke, "/monitor").await.status(), 200);
    db.fail(true);
    let first = get(&smoke, "/monitor").await;
    assert_eq!(first.status(), 200, "one failure is below the threshold");
    let body = json(&first);
    assert_eq!(body["status"], "pass");
    assert_eq!(body["checks"][0]["status"], "fail");
    assert_eq!(body["history"]["db::ping"]["consecutive_failures"], 1);
    assert!(body["history"]["db::ping"]["last_success"].is_string());

    let second = get(&smoke, "/monitor").await;
    assert_eq!(second.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        json(&second)["history"]["db::ping"]["consecutive_failures"],
        2
    );

    db.fail(false);
    assert_eq!(get(&smoke, "/monitor").await.status(), 200);
    let report = smoke.run_group("monitor").await.unwrap();
    assert_eq!(report.history["db::ping"].consecutive_failures, 0);
    assert!(smoke.run_group("nope").await.is_none());

    assert_eq!(
        *changes.lock().unwrap(),
        [
            (None, Status::Pass),
            (Some(Status::Pass), Status::Fail),
            (Some(Status::Fail), Status::Pass),
        ]
    );
}

#[tokio::test]
async fn a_panicking_hook_does_not_break_the_group() {
    let db = Switch::default();
    let smoke = builder(&db)
        .group(
            Group::new("monitor")
                .path("/monitor")
                .on_status_change(|_| panic!("pager is down")),
        )
        .build()
        .unwrap();
    assert_eq!(get(&smoke, "/monitor").await.status(), 200);
    assert_eq!(get(&smoke, "/monitor").await.status(), 200);
}

#[tokio::test]
async fn group_reports_validate_against_the_committed_schema() {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../schema/report.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let db = Switch::default();
    let smoke = builder(&db)
        .group(Group::new("monitor").path("/monitor").detail(Detail::Full))
        .build()
        .unwrap();
    get(&smoke, "/monitor").await;
    db.fail(true);
    let body = json(&get(&smoke, "/monitor").await);
    assert_eq!(body["group"], "monitor");
    assert!(body["history"]["db::ping"]["last_failure"].is_string());
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{body:#}");

    // The schema checks history: a negative count is rejected.
    let mut broken = body.clone();
    broken["history"]["db::ping"]["consecutive_failures"] = serde_json::json!(-1);
    assert!(!validator.is_valid(&broken));
}

/// One HTTP/1.1 request over a fresh loopback connection: status, lower-cased headers, body.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> (u16, Vec<(String, String)>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_over_a_real_socket_through_the_unchanged_axum_layer() {
    let db = Switch::default();
    db.fail(true);
    let smoke = builder(&db)
        .group(Group::live())
        .group(Group::ready().tag("db").every(Duration::from_secs(60)))
        .build()
        .unwrap();
    assert_eq!(
        smoke.group_paths().collect::<Vec<_>>(),
        ["/livez", "/readyz"]
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/hello", axum::routing::get(|| async { "hello" }))
        .layer(smoketest_axum::SmoketestLayer::new(smoke));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (status, _, _) = raw_get(addr, "/livez").await;
    assert_eq!(status, 200);
    let (status, headers, body) = raw_get(addr, "/readyz?format=text").await;
    assert_eq!(status, 503);
    assert!(headers.contains(&("cache-control".into(), "no-store".into())));
    assert!(body.starts_with("FAIL\n"), "{body}");
    let (_, _, hello) = raw_get(addr, "/hello").await;
    assert_eq!(hello, "hello");
}

#[tokio::test(start_paused = true)]
async fn the_schedule_alone_raises_the_alarm_after_the_threshold() {
    let db = Switch::default();
    let changes: Arc<Mutex<Vec<Status>>> = Arc::default();
    let seen = changes.clone();
    let smoke = builder(&db)
        .group(
            Group::new("monitor")
                .path("/monitor")
                .tag("db")
                .every(Duration::from_secs(10))
                .failure_threshold(3)
                .on_status_change(move |change| seen.lock().unwrap().push(change.current)),
        )
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    db.fail(true);
    // Failed runs at 10 s and 20 s stay below the threshold; the one at 30 s crosses it.
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(*changes.lock().unwrap(), [Status::Pass]);
    assert_eq!(get(&smoke, "/monitor").await.status(), 200);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(*changes.lock().unwrap(), [Status::Pass, Status::Fail]);
    let response = get(&smoke, "/monitor").await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = json(&response);
    assert_eq!(body["cached"], true);
    assert_eq!(body["history"]["db::ping"]["consecutive_failures"], 3);
    assert_eq!(db.runs(), 4, "no request ran the checks");

    let (parts, ()) = Request::head("/monitor").body(()).unwrap().into_parts();
    let head = smoke.handle(&parts).await;
    assert_eq!(head.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(head.body().is_empty());
}
