//! The runner's own cost: `Smoketest::run` of 1, 10 and 100 checks that do nothing, so the
//! time measured is spawning, timeouts, contexts and the report — the per-check overhead.
//! The `scale` group runs 1, 10, 100 and 1,000 registered checks, each a no-op or a 1 ms
//! sleep, with the builder's defaults (16 checks at once), to show how a run grows with the
//! number of checks.
//!
//! `cargo bench -p smoketest-core --bench runner`; `scripts/bench.sh` puts the figures in
//! BENCHMARKS.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use smoketest_core::{Outcome, Selection, Smoketest, from_fn};

fn noop_checks(count: usize) -> Smoketest {
    let mut builder = Smoketest::builder().service("bench").without_discovery();
    for i in 0..count {
        builder = builder.check(from_fn(format!("noop::{i:04}"), |_ctx| {
            Box::pin(async { Ok(Outcome::Pass) })
        }));
    }
    builder.build().expect("unique names")
}

/// `count` checks that each sleep 1 ms (a timer, not a blocked thread).
fn sleeping_checks(count: usize) -> Smoketest {
    let mut builder = Smoketest::builder().service("bench").without_discovery();
    for i in 0..count {
        builder = builder.check(from_fn(format!("sleep::{i:04}"), |_ctx| {
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok(Outcome::Pass)
            })
        }));
    }
    builder.build().expect("unique names")
}

fn runner(c: &mut Criterion) {
    // A current-thread runtime: the run's tasks execute on the benchmark's own thread, so
    // the figure is the runner's CPU cost, not the latency of waking worker threads (which
    // depends on how busy the machine is).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let all = Selection::all();
    let mut group = c.benchmark_group("runner");
    for count in [1, 10, 100] {
        let smoke = noop_checks(count);
        group.throughput(Throughput::Elements(count as u64));
        group.bench_with_input(
            BenchmarkId::new("no-op checks", count),
            &smoke,
            |b, smoke| {
                b.to_async(&runtime).iter(|| async {
                    let report = smoke.run(black_box(&all)).await.expect("known checks");
                    assert_eq!(report.summary.passed, count);
                    report
                })
            },
        );
    }
    group.finish();
}

fn scale(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let all = Selection::all();
    let mut group = c.benchmark_group("scale");
    // A run of 1,000 sleeping checks takes tens of milliseconds: ten samples are enough.
    group.sample_size(10);
    for count in [1, 10, 100, 1000] {
        for (kind, smoke) in [
            ("no-op", noop_checks(count)),
            ("sleep 1 ms", sleeping_checks(count)),
        ] {
            group.throughput(Throughput::Elements(count as u64));
            group.bench_with_input(BenchmarkId::new(kind, count), &smoke, |b, smoke| {
                b.to_async(&runtime).iter(|| async {
                    let report = smoke.run(black_box(&all)).await.expect("known checks");
                    assert_eq!(report.summary.passed, count);
                    report
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, runner, scale);
criterion_main!(benches);
