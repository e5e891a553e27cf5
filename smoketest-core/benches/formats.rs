//! Report serialization in every format: one report of 10 checks (one failed with a
//! message and a suggestion, one warning, observed values), written by each writer in
//! `Format::ALL`.
//!
//! `cargo bench -p smoketest-core --bench formats`; `scripts/bench.sh` puts the figures in
//! BENCHMARKS.md.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use smoketest_core::format::Format;
use smoketest_core::{CheckError, ErrorKind, Outcome, Report, Selection, Smoketest, from_fn};

fn sample_report() -> Report {
    let mut builder = Smoketest::builder()
        .service("orders-api")
        .version("1.4.2")
        .release_id("9f2c1ab")
        .without_discovery();
    for i in 0..8 {
        builder = builder.check(
            from_fn(format!("orders::check_{i}"), move |ctx| {
                ctx.observe("rows", i);
                Box::pin(async { Ok(Outcome::Pass) })
            })
            .tag("db"),
        );
    }
    builder = builder
        .check(from_fn("disk::space", |_ctx| {
            Box::pin(async { Ok(Outcome::Warn("12% free under /var/lib/app".into())) })
        }))
        .check(
            from_fn("payments::api", |_ctx| {
                Box::pin(async {
                    Err(CheckError::new(
                        ErrorKind::Assertion,
                        "expected 1 row, found 0 <in the orders table> & \"more\"",
                    )
                    .with_suggestion("Check that the migration ran on this database."))
                })
            })
            .tag("http"),
        );
    let smoke = builder.build().expect("unique names");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(smoke.run(&Selection::all()))
        .expect("known checks")
}

fn formats(c: &mut Criterion) {
    let report = sample_report();
    let mut group = c.benchmark_group("formats");
    for &format in Format::ALL {
        let size = format.write(&report).len();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("write", format.param()),
            &report,
            |b, report| b.iter(|| format.write(black_box(report))),
        );
    }
    group.finish();
}

criterion_group!(benches, formats);
criterion_main!(benches);
