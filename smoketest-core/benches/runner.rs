//! The runner's own cost: `Smoketest::run` of 1, 10 and 100 checks that do nothing, so the
//! time measured is spawning, timeouts, contexts and the report — the per-check overhead.
//!
//! `cargo bench -p smoketest-core --bench runner`; `scripts/bench.sh` puts the figures in
//! BENCHMARKS.md.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use smoketest_core::{Outcome, Selection, Smoketest, from_fn};

fn noop_checks(count: usize) -> Smoketest {
    let mut builder = Smoketest::builder().service("bench").without_discovery();
    for i in 0..count {
        builder = builder.check(from_fn(format!("noop::{i:03}"), |_ctx| {
            Box::pin(async { Ok(Outcome::Pass) })
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

criterion_group!(benches, runner);
criterion_main!(benches);
