//! Load protection through `Smoketest::handle`: single-flight, the cache, the cap on runs
//! in flight, the rate limit, `?fresh`, and runs that outlive the request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::request::Parts;
use smoketest_core::{Outcome, Smoketest, SmoketestBuilder, from_fn};
use tokio::sync::Notify;

const TOKEN: &str = "engine-test-token-0123456789";

/// A check that counts its executions and takes `pause` to finish.
fn counted(
    name: &str,
    runs: &Arc<AtomicUsize>,
    pause: Duration,
) -> impl smoketest_core::SmokeCheck {
    let runs = runs.clone();
    from_fn(name.to_string(), move |_ctx| {
        runs.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::sleep(pause).await;
            Ok(Outcome::Pass)
        })
    })
    .tag(name.split("::").next().unwrap().to_string())
}

fn base() -> SmoketestBuilder {
    Smoketest::builder().without_discovery().bearer_token(TOKEN)
}

fn get(uri: &str) -> Parts {
    http::Request::get(uri).body(()).unwrap().into_parts().0
}

fn authorized(uri: &str) -> Parts {
    http::Request::get(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn json(response: &http::Response<bytes::Bytes>) -> serde_json::Value {
    serde_json::from_slice(response.body()).expect("a JSON body")
}

/// Resolves once `count` reaches `target` (then a moment more, for a last arrival to
/// finish the synchronous step from its count to joining the run), or after 30 s.
async fn until_count(count: &AtomicUsize, target: usize) {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
    while count.load(Ordering::SeqCst) < target && tokio::time::Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_share_one_run() {
    let runs = Arc::new(AtomicUsize::new(0));
    let arrived = Arc::new(AtomicUsize::new(0));
    let (counter, waiting) = (runs.clone(), arrived.clone());
    // The check lasts until every request has arrived, however slow the machine.
    let smoke = base()
        .check(from_fn("db::write", move |_ctx| {
            counter.fetch_add(1, Ordering::SeqCst);
            let waiting = waiting.clone();
            Box::pin(async move {
                until_count(&waiting, 1000).await;
                Ok(Outcome::Pass)
            })
        }))
        .build()
        .unwrap();
    let requests: Vec<_> = (0..1000)
        .map(|_| {
            let (smoke, arrived) = (smoke.clone(), arrived.clone());
            tokio::spawn(async move {
                let request = get("/smoketest");
                // Counted in the same poll that joins the run (no await in between).
                arrived.fetch_add(1, Ordering::SeqCst);
                smoke.handle(&request).await
            })
        })
        .collect();
    for request in requests {
        let response = request.await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            json(&response)["cached"],
            false,
            "a shared run is not a cached one"
        );
    }
    assert_eq!(arrived.load(Ordering::SeqCst), 1000);
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the check ran once");
    assert_eq!(smoke.runs_started(), 1);
}

#[tokio::test]
async fn different_spellings_of_one_selection_share_a_run() {
    let runs = Arc::new(AtomicUsize::new(0));
    let smoke = base()
        .check(counted("db::write", &runs, Duration::from_millis(200)))
        .check(counted("cache::ping", &runs, Duration::from_millis(200)))
        .build()
        .unwrap();
    let (a, b, c) = (
        get("/smoketest/db::write"),
        get("/smoketest?check=db::write"),
        get("/smoketest?tag=db"),
    );
    let (ra, rb, rc) = tokio::join!(smoke.handle(&a), smoke.handle(&b), smoke.handle(&c));
    for response in [ra, rb, rc] {
        assert_eq!(response.status(), 200);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_cache_serves_a_recent_report_with_its_age_until_the_ttl_passes() {
    let runs = Arc::new(AtomicUsize::new(0));
    let smoke = base()
        .check(counted("db::write", &runs, Duration::ZERO))
        .cache_ttl(Duration::from_millis(1500))
        .min_interval(Duration::ZERO)
        .build()
        .unwrap();
    let first = json(&smoke.handle(&get("/smoketest")).await);
    assert_eq!(first["cached"], false);
    assert_eq!(
        first["age_ms"], 0.0,
        "every report says its age, a fresh one too"
    );

    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = json(&smoke.handle(&get("/smoketest")).await);
    assert_eq!(second["cached"], true);
    let age = second["age_ms"].as_f64().unwrap();
    assert!((50.0..1500.0).contains(&age), "age {age}");
    assert_eq!(second["started_at"], first["started_at"], "the same report");
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // The text format says so too.
    let text = smoke.handle(&get("/smoketest?format=text")).await;
    assert!(String::from_utf8_lossy(text.body()).contains("(cached)"));

    tokio::time::sleep(Duration::from_millis(1600)).await;
    let third = json(&smoke.handle(&get("/smoketest")).await);
    assert_eq!(third["cached"], false, "expired");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn fresh_is_refused_to_anonymous_callers_and_honoured_for_authorized_ones() {
    let runs = Arc::new(AtomicUsize::new(0));
    let smoke = base()
        .check(counted("db::write", &runs, Duration::ZERO))
        .cache_ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    smoke.handle(&get("/smoketest")).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    for uri in [
        "/smoketest?fresh=1",
        "/smoketest?fresh",
        "/smoketest?fresh=true",
    ] {
        let response = smoke.handle(&get(uri)).await;
        assert_eq!(response.status(), 403, "{uri}");
        let error = &json(&response)["error"];
        assert_eq!(error["kind"], "forbidden");
        assert_eq!(error["parameter"], "fresh");
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "a refused request runs nothing"
    );
    // Asking explicitly for the cache is fine.
    assert_eq!(smoke.handle(&get("/smoketest?fresh=0")).await.status(), 200);

    let fresh = smoke.handle(&authorized("/smoketest?fresh=1")).await;
    assert_eq!(json(&fresh)["cached"], false);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let cached = smoke.handle(&authorized("/smoketest")).await;
    assert_eq!(
        json(&cached)["cached"],
        true,
        "without fresh, authorized callers use the cache"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    let bad = smoke.handle(&authorized("/smoketest?fresh=yes")).await;
    assert_eq!(bad.status(), 400);
    assert_eq!(json(&bad)["error"]["parameter"], "fresh");
}

#[tokio::test]
async fn the_rate_limit_serves_the_latest_report_or_503_with_retry_after() {
    let runs = Arc::new(AtomicUsize::new(0));
    let smoke = base()
        .check(counted("db::write", &runs, Duration::ZERO))
        .check(counted("cache::ping", &runs, Duration::ZERO))
        .min_interval(Duration::from_secs(30))
        .burst(2)
        .build()
        .unwrap();
    assert_eq!(
        json(&smoke.handle(&get("/smoketest/db::write")).await)["cached"],
        false
    );
    assert_eq!(
        json(&smoke.handle(&get("/smoketest/db::write")).await)["cached"],
        false
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2, "the burst");

    // Over the limit: the latest report of the same selection, marked as such.
    let limited = json(&smoke.handle(&get("/smoketest/db::write")).await);
    assert_eq!(limited["cached"], true);
    assert!(limited["age_ms"].as_f64().is_some());
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    // A selection that never ran has nothing to fall back on.
    let response = smoke.handle(&get("/smoketest/cache::ping")).await;
    assert_eq!(response.status(), 503);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "Retry-After {retry}");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(json(&response)["error"]["kind"], "throttled");

    // A deploy gate with a token and ?fresh=1 is not held back by the rate.
    let fresh = smoke
        .handle(&authorized("/smoketest/cache::ping?fresh=1"))
        .await;
    assert_eq!(fresh.status(), 200);
    assert_eq!(json(&fresh)["cached"], false);
    assert_eq!(runs.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_in_flight_are_capped() {
    let release = Arc::new(Notify::new());
    let started = Arc::new(AtomicUsize::new(0));
    let blocking = |name: &str| {
        let (release, started) = (release.clone(), started.clone());
        from_fn(name.to_string(), move |_ctx| {
            let (release, started) = (release.clone(), started.clone());
            Box::pin(async move {
                // Created before counting, so a notify_waiters() after the count reaches it.
                let released = release.notified();
                started.fetch_add(1, Ordering::SeqCst);
                released.await;
                Ok(Outcome::Pass)
            })
        })
    };
    let smoke = base()
        .check(blocking("a"))
        .check(blocking("b"))
        .check(blocking("c"))
        .max_runs_in_flight(2)
        .min_interval(Duration::ZERO)
        .build()
        .unwrap();

    let a = tokio::spawn({
        let smoke = smoke.clone();
        async move { smoke.handle(&get("/smoketest/a")).await }
    });
    let b = tokio::spawn({
        let smoke = smoke.clone();
        async move { smoke.handle(&get("/smoketest/b")).await }
    });
    while started.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Two runs in flight: a third selection is turned away, even with a token and fresh.
    let c = smoke.handle(&get("/smoketest/c")).await;
    assert_eq!(c.status(), 503);
    assert_eq!(c.headers()["retry-after"], "1");
    let c = smoke.handle(&authorized("/smoketest/c?fresh=1")).await;
    assert_eq!(c.status(), 503);
    assert_eq!(started.load(Ordering::SeqCst), 2, "c never started");
    assert_eq!(smoke.runs_started(), 2);

    release.notify_waiters();
    assert_eq!(a.await.unwrap().status(), 200);
    assert_eq!(b.await.unwrap().status(), 200);
    // Capacity is back once they finish.
    let c = tokio::spawn({
        let smoke = smoke.clone();
        async move { smoke.handle(&get("/smoketest/c")).await }
    });
    while started.load(Ordering::SeqCst) < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    release.notify_waiters();
    assert_eq!(c.await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_hanging_up_does_not_cancel_the_run() {
    let finished = Arc::new(AtomicUsize::new(0));
    let done = finished.clone();
    let smoke = base()
        .check(from_fn("slow", move |_ctx| {
            let done = done.clone();
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                done.fetch_add(1, Ordering::SeqCst);
                Ok(Outcome::Pass)
            })
        }))
        .cache_ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    // The client gives up after 20 ms.
    let gave_up = tokio::time::timeout(Duration::from_millis(20), smoke.handle(&get("/smoketest")))
        .await
        .is_err();
    assert!(gave_up);
    until_count(&finished, 1).await;
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "the check ran to its end"
    );
    // And its report was kept for the next caller.
    let next = json(&smoke.handle(&get("/smoketest")).await);
    assert_eq!(next["cached"], true);
    assert_eq!(smoke.runs_started(), 1);
}

#[test]
fn limits_that_would_never_run_anything_are_refused() {
    let err = base().max_runs_in_flight(0).build().unwrap_err();
    assert!(err.to_string().contains("max_runs_in_flight"));
    let err = base().burst(0).build().unwrap_err();
    assert!(err.to_string().contains("burst"));
}

#[tokio::test]
async fn selecting_nothing_does_not_use_up_the_budget() {
    let runs = Arc::new(AtomicUsize::new(0));
    let smoke = base()
        .check(counted("db::write", &runs, Duration::ZERO))
        .min_interval(Duration::from_secs(30))
        .burst(1)
        .build()
        .unwrap();
    for _ in 0..20 {
        let response = smoke.handle(&get("/smoketest?tag=no-such-tag")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(json(&response)["summary"]["total"], 0);
    }
    let real = smoke.handle(&get("/smoketest")).await;
    assert_eq!(
        json(&real)["cached"],
        false,
        "the one run in the budget is still there"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_sharing_a_run_each_see_their_own_level() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let smoke = base()
        .check(from_fn("db::write", move |_ctx| {
            counter.fetch_add(1, Ordering::SeqCst);
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                smoketest_core::fail!("insert into orders failed: disk full");
            })
        }))
        .build()
        .unwrap();
    let (anonymous, authorized) = (get("/smoketest"), authorized("/smoketest"));
    let (anonymous, authorized) = tokio::join!(smoke.handle(&anonymous), smoke.handle(&authorized));
    assert_eq!(runs.load(Ordering::SeqCst), 1, "one shared run");
    let anonymous = json(&anonymous);
    let authorized = json(&authorized);
    assert_eq!(anonymous["started_at"], authorized["started_at"]);
    assert!(anonymous["checks"][0]["error"].get("message").is_none());
    assert_eq!(
        authorized["checks"][0]["error"]["message"],
        "insert into orders failed: disk full"
    );
}

#[tokio::test]
async fn runs_admitted_outside_the_endpoint_share_its_budget() {
    let runs = Arc::new(AtomicUsize::new(0));
    let smoke = base()
        .check(counted("db::write", &runs, Duration::ZERO))
        .max_runs_in_flight(1)
        .min_interval(Duration::ZERO)
        .build()
        .unwrap();
    let permit = smoke.admit_run(false).expect("one place free");
    assert_eq!(smoke.admit_run(true).unwrap_err().reason, "runs in flight");
    let busy = smoke.handle(&get("/smoketest")).await;
    assert_eq!(busy.status(), 503);
    assert_eq!(runs.load(Ordering::SeqCst), 0);

    drop(permit);
    assert_eq!(smoke.handle(&get("/smoketest")).await.status(), 200);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        smoke.runs_started(),
        2,
        "the permit's run and the endpoint's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_a_live_group_path_are_rate_limited_too() {
    let runs = Arc::new(AtomicUsize::new(0));
    let smoke = base()
        .check(counted("db::ping", &runs, Duration::ZERO))
        .group(smoketest_core::Group::ready().check("db::ping"))
        .burst(3)
        .min_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    // One after another, so single-flight cannot merge them: only the limits can.
    let mut cached = 0;
    for _ in 0..50 {
        let response = smoke.handle(&get("/readyz?format=json")).await;
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        if body["cached"] == true {
            cached += 1;
        }
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3,
        "the burst, then the latest report"
    );
    assert_eq!(cached, 47);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_has_a_budget_of_its_own_that_the_mount_path_cannot_drain() {
    let runs = Arc::new(AtomicUsize::new(0));
    let smoke = base()
        .check(counted("db::ping", &runs, Duration::ZERO))
        .group(smoketest_core::Group::ready().check("db::ping"))
        .burst(1)
        .min_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    // The mount path uses the only place in its budget, and is refused after that …
    assert_eq!(smoke.handle(&get("/smoketest")).await.status(), 200);
    let refused = json(&smoke.handle(&get("/smoketest")).await);
    assert_eq!(refused["cached"], true);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // … while the group, which has never run, runs on its own budget.
    let response = smoke.handle(&get("/readyz?format=json")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(json(&response)["cached"], false);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_request_never_joins_a_run_that_started_before_it_arrived() {
    let runs = Arc::new(AtomicUsize::new(0));
    let smoke = base()
        .check(counted("db::write", &runs, Duration::from_millis(300)))
        .build()
        .unwrap();
    let plain = {
        let smoke = smoke.clone();
        tokio::spawn(async move { json(&smoke.handle(&get("/smoketest")).await) })
    };
    until_count(&runs, 1).await;
    // A run is in progress; a fresh request must wait for it and get one of its own.
    let fresh = json(&smoke.handle(&authorized("/smoketest?fresh=1")).await);
    let plain = plain.await.unwrap();
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "the fresh request ran the checks again"
    );
    assert_eq!(fresh["cached"], false);
    assert!(
        fresh["started_at"].as_str().unwrap() > plain["started_at"].as_str().unwrap(),
        "fresh {} vs the older run {}",
        fresh["started_at"],
        plain["started_at"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_paths_honour_fresh_and_the_cache_like_the_mount_path() {
    let runs = Arc::new(AtomicUsize::new(0));
    let smoke = base()
        .check(counted("db::ping", &runs, Duration::ZERO))
        .group(smoketest_core::Group::ready().tag("db"))
        .cache_ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    let first = json(&smoke.handle(&get("/readyz")).await);
    let second = json(&smoke.handle(&get("/readyz")).await);
    assert_eq!(
        (first["cached"].clone(), second["cached"].clone()),
        (false.into(), true.into())
    );
    assert!(second["age_ms"].as_f64().is_some());
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the cache answered the second"
    );

    let fresh = smoke.handle(&authorized("/readyz?fresh=1")).await;
    assert_eq!(fresh.status(), 200);
    assert_eq!(json(&fresh)["cached"], false);
    assert_eq!(runs.load(Ordering::SeqCst), 2, "fresh bypassed the cache");
    assert_eq!(smoke.handle(&get("/readyz?fresh=1")).await.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_group_answers_from_its_snapshot_until_fresh_is_asked() {
    let runs = Arc::new(AtomicUsize::new(0));
    let smoke = base()
        .check(counted("db::ping", &runs, Duration::ZERO))
        .group(
            smoketest_core::Group::ready()
                .tag("db")
                .every(Duration::from_secs(3600)),
        )
        .build()
        .unwrap();
    until_count(&runs, 1).await;
    for _ in 0..20 {
        let snapshot = json(&smoke.handle(&get("/readyz?format=json")).await);
        assert_eq!(snapshot["cached"], true);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the schedule's run only");
    let fresh = json(&smoke.handle(&authorized("/readyz?fresh=1")).await);
    assert_eq!(fresh["cached"], false);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_empty_selection_costs_no_place_in_any_budget() {
    let runs = Arc::new(AtomicUsize::new(0));
    let smoke = base()
        .check(counted("db::ping", &runs, Duration::ZERO))
        .group(smoketest_core::Group::live())
        .burst(1)
        .min_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    for _ in 0..50 {
        assert_eq!(smoke.handle(&get("/livez")).await.status(), 200);
        assert_eq!(
            smoke.handle(&get("/smoketest?tag=nothing")).await.status(),
            200
        );
    }
    assert_eq!(smoke.runs_started(), 0);
    // The mount path's one place is still there.
    let report = json(&smoke.handle(&get("/smoketest")).await);
    assert_eq!(report["cached"], false);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// `max_runs_in_flight` counts the tasks a run started, not runs that answered: a run whose
/// check is still cleaning up after the response went out keeps its place.
#[tokio::test(start_paused = true)]
async fn a_run_keeps_its_place_in_flight_until_its_last_task_ends() {
    let smoke = base()
        .check(
            from_fn("slow::cleanup", |ctx| {
                ctx.defer(async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Ok(())
                });
                Box::pin(async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(Outcome::Pass)
                })
            })
            .tag("slow"),
        )
        .check(from_fn("fast::ok", |_| Box::pin(async { Ok(Outcome::Pass) })).tag("fast"))
        .deadline(Duration::from_millis(100))
        .max_runs_in_flight(1)
        .min_interval(Duration::ZERO)
        .build()
        .unwrap();
    let first = smoke.handle(&get("/smoketest?tag=slow")).await;
    assert_eq!(first.status(), 500, "the slow check was cut off");
    // The response went out; the cut-off check's cleanup still runs and holds the place.
    let refused = smoke.handle(&get("/smoketest?tag=fast")).await;
    assert_eq!(refused.status(), 503, "{:?}", refused.body());
    assert!(
        std::str::from_utf8(refused.body())
            .unwrap()
            .contains("runs in flight")
    );
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(
        smoke.handle(&get("/smoketest?tag=fast")).await.status(),
        200
    );
}
