//! A loop of endpoint work without HTTP, for profilers: `N` no-op checks, `M` requests, each
//! doing what `/smoketest` does when nothing is cached (parse, run, restrict, write JSON).
//!
//! ```text
//! cargo build --release -p smoketest-core --example run_loop
//! valgrind --tool=callgrind target/release/examples/run_loop 10 2000
//! ```

use smoketest_core::{Detail, Outcome, Smoketest, from_fn};

fn main() {
    let mut args = std::env::args().skip(1);
    let checks: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let requests: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let mut builder = Smoketest::builder().service("bench").without_discovery();
    for i in 0..checks {
        builder = builder.check(from_fn(format!("noop::{i:04}"), |_ctx| {
            Box::pin(async { Ok(Outcome::Pass) })
        }));
    }
    let smoke = builder.build().expect("unique names");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (parts, ()) = http::Request::get("/smoketest")
        .body(())
        .expect("a request")
        .into_parts();
    let bytes = runtime.block_on(async {
        let mut bytes = 0;
        for _ in 0..requests {
            let request = smoke.parse_request(&parts).expect("a valid request");
            let report = smoke.run(&request.selection).await.expect("known checks");
            let report = report.into_restricted(Detail::Checks);
            bytes += request.format.write(&report).len();
        }
        bytes
    });
    println!("{requests} requests of {checks} checks: {bytes} bytes written");
}
