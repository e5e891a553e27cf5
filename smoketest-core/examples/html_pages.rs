//! Renders the HTML page in three states — all passing, a slow check (warn), failing with
//! history — into a directory, for the screenshots in `docs/img/` (`scripts/screenshots.sh`).
//!
//! ```text
//! cargo run -p smoketest-core --example html_pages -- /tmp/pages
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use smoketest_core::{CheckError, Detail, ErrorKind, Outcome, Smoketest, from_fn};

/// Which run of the scenario is going on; checks decide their outcome from it.
type Round = Arc<AtomicUsize>;

#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    Pass,
    Slow,
    Fail,
}

const RUNS: usize = 20;

fn smoke(scenario: Scenario, round: &Round) -> Smoketest {
    let r = round.clone();
    let db_write = from_fn("orders::db_write", move |ctx| {
        let n = r.load(Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(3 + (n % 4) as u64)).await;
            ctx.observe("rows", 1);
            if scenario == Scenario::Fail && (n == 6 || n == 7) {
                return Err(CheckError::new(
                    ErrorKind::Assertion,
                    "expected 1 row, found 0",
                ));
            }
            Ok(Outcome::Pass)
        })
    })
    .tag("db");
    let r = round.clone();
    let ping = from_fn("db::ping", move |_ctx| {
        let n = r.load(Ordering::SeqCst);
        Box::pin(async move {
            let slow = scenario == Scenario::Slow && (n >= RUNS - 3 || n == 9);
            let ms = if slow { 140 } else { 2 + (n % 3) as u64 };
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(Outcome::Pass)
        })
    })
    .tag("db")
    .warn_after(Duration::from_millis(100));
    let r = round.clone();
    let payments = from_fn("payments::api", move |_ctx| {
        let n = r.load(Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(12 + (n % 5) as u64 * 3)).await;
            if scenario == Scenario::Fail && n >= RUNS - 4 {
                return Err(CheckError::new(
                    ErrorKind::HttpStatus,
                    "GET https://payments.internal/health answered 503 Service Unavailable",
                ));
            }
            Ok(Outcome::Pass)
        })
    })
    .tag("http")
    .tag("external");
    let disk = from_fn("disk::free", |ctx| {
        Box::pin(async move {
            ctx.observe("free_pct", 41);
            Ok(Outcome::Pass)
        })
    })
    .tag("system");
    Smoketest::builder()
        .service("orders-api")
        .version("1.4.2")
        .release_id("9f2c1ab")
        .without_discovery()
        .anonymous_detail(Detail::Full)
        .min_interval(Duration::ZERO)
        .check(db_write)
        .check(ping)
        .check(payments)
        .check(disk)
        .build()
        .expect("valid configuration")
}

#[tokio::main]
async fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: html_pages <output directory>");
    std::fs::create_dir_all(&dir).expect("create the output directory");
    for (scenario, file) in [
        (Scenario::Pass, "pass.html"),
        (Scenario::Slow, "warn-slow.html"),
        (Scenario::Fail, "fail-history.html"),
    ] {
        let round = Round::default();
        let smoke = smoke(scenario, &round);
        let request = || {
            http::Request::get("/smoketest?format=html")
                .body(())
                .unwrap()
                .into_parts()
                .0
        };
        let mut page = None;
        for n in 0..RUNS {
            round.store(n, Ordering::SeqCst);
            page = Some(smoke.handle(&request()).await);
        }
        let page = page.expect("at least one run");
        let path = std::path::Path::new(&dir).join(file);
        std::fs::write(&path, page.body()).expect("write the page");
        println!("{} ({})", path.display(), page.status());
    }
}
