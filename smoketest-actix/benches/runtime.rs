//! What the choice of runtime for checks costs and buys under actix-web (one worker).
//!
//! ```text
//! cargo bench -p smoketest-actix --bench runtime
//! ```
//!
//! 1. Stall: while `/smoketest` runs one check that occupies a thread for 1 s, `/ping` on
//!    the same worker is timed every 50 ms. Checks: `spawn_blocking` sleep (the
//!    recommended way), `std::thread::sleep` in the check, and a 1 s CPU loop.
//! 2. Cost: latency of `/smoketest` with one trivial check, sequential and with 8
//!    concurrent clients, checks on the worker versus on the shared runtime.

use std::time::{Duration, Instant};

use actix_web::{App, HttpServer, web};
use smoketest_actix::SmoketestScope;
use smoketest_core::{Outcome, Smoketest, from_fn};

fn serve(scope: impl Fn() -> SmoketestScope + Send + Clone + 'static) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            HttpServer::new(move || {
                App::new()
                    .route("/ping", web::get().to(|| async { "pong" }))
                    .service(scope())
            })
            .workers(1)
            .listen(listener)
            .expect("listen")
            .run()
            .await
            .expect("server")
        })
    });
    format!("http://{addr}")
}

#[derive(Clone, Copy, Debug)]
enum Occupy {
    SpawnBlocking,
    ThreadSleep,
    CpuLoop,
}

fn occupying(how: Occupy) -> Smoketest {
    Smoketest::builder()
        .without_discovery()
        .check(from_fn("occupy", move |_ctx| {
            Box::pin(async move {
                let second = Duration::from_secs(1);
                match how {
                    Occupy::SpawnBlocking => {
                        tokio::task::spawn_blocking(move || std::thread::sleep(second)).await?
                    }
                    Occupy::ThreadSleep => std::thread::sleep(second),
                    Occupy::CpuLoop => {
                        let start = Instant::now();
                        let mut x = 0u64;
                        while start.elapsed() < second {
                            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                        }
                    }
                }
                Ok(Outcome::Pass)
            })
        }))
        .build()
        .expect("one check")
}

fn trivial() -> Smoketest {
    Smoketest::builder()
        .without_discovery()
        .check(from_fn("ok", |_ctx| Box::pin(async { Ok(Outcome::Pass) })))
        .build()
        .expect("one check")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn stall(client: &reqwest::Client, base: &str) -> Duration {
    let smoke = tokio::spawn({
        let client = client.clone();
        let url = format!("{base}/smoketest");
        async move {
            client
                .get(url)
                .send()
                .await
                .expect("GET /smoketest")
                .status()
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut worst = Duration::ZERO;
    for _ in 0..12 {
        let start = Instant::now();
        client
            .get(format!("{base}/ping"))
            .send()
            .await
            .expect("GET /ping");
        worst = worst.max(start.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(smoke.await.expect("smoketest"), 200);
    worst
}

async fn cost(client: &reqwest::Client, base: &str) -> (Duration, Duration, Duration, f64) {
    let url = format!("{base}/smoketest");
    for _ in 0..100 {
        client.get(&url).send().await.expect("warm up");
    }
    let mut sequential = Vec::new();
    for _ in 0..1000 {
        let start = Instant::now();
        let r = client.get(&url).send().await.expect("GET");
        r.bytes().await.expect("body");
        sequential.push(start.elapsed());
    }
    sequential.sort();
    let start = Instant::now();
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move {
                for _ in 0..250 {
                    client
                        .get(&url)
                        .send()
                        .await
                        .expect("GET")
                        .bytes()
                        .await
                        .expect("body");
                }
            })
        })
        .collect();
    for c in clients {
        c.await.expect("client");
    }
    let per_second = 2000.0 / start.elapsed().as_secs_f64();
    (
        percentile(&sequential, 0.5),
        percentile(&sequential, 0.99),
        percentile(&sequential, 1.0),
        per_second,
    )
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("client runtime");
    runtime.block_on(async {
        let client = reqwest::Client::new();
        println!(
            "1. worst /ping latency on the one worker while a check occupies a thread for 1 s"
        );
        for how in [Occupy::SpawnBlocking, Occupy::ThreadSleep, Occupy::CpuLoop] {
            for on_worker in [true, false] {
                let smoke = occupying(how);
                let base = serve(move || {
                    let scope = smoketest_actix::scope(smoke.clone());
                    if on_worker { scope.on_worker() } else { scope }
                });
                let worst = stall(&client, &base).await;
                println!(
                    "   {:<14} {:<24} worst /ping {}",
                    format!("{how:?}"),
                    if on_worker {
                        "on_worker()"
                    } else {
                        "shared runtime (default)"
                    },
                    ms(worst)
                );
            }
        }
        println!("2. /smoketest with one trivial check: 1000 sequential, then 8 clients x 250");
        for on_worker in [true, false] {
            let smoke = trivial();
            let base = serve(move || {
                let scope = smoketest_actix::scope(smoke.clone());
                if on_worker { scope.on_worker() } else { scope }
            });
            let (p50, p99, max, rps) = cost(&client, &base).await;
            println!(
                "   {:<24} p50 {}  p99 {}  max {}  concurrent {:.0} req/s",
                if on_worker {
                    "on_worker()"
                } else {
                    "shared runtime (default)"
                },
                ms(p50),
                ms(p99),
                ms(max),
                rps
            );
        }
    });
}
