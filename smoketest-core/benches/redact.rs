//! Redaction on the hot path: every message of every check goes through
//! `Redactor::redact` once per run. Three messages: one without a secret (the common case,
//! which must not allocate), a driver error with a URL password, and a long `Debug` dump
//! of a config struct with several secret keys; plus a JSON observed value.
//!
//! `cargo bench -p smoketest-core --bench redact`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use smoketest_core::redact::Redactor;

const MESSAGES: &[(&str, &str)] = &[
    (
        "clean",
        "expected 1 row in orders after the insert, found 0 (the write went to a read replica?)",
    ),
    (
        "driver_error",
        "error connecting to postgres://orders:hunter2@db.internal:5432/orders: error communicating with database: Connection refused (os error 111)",
    ),
    (
        "config_dump",
        r#"invalid upstream: UpstreamConfig { endpoint: "https://api.vendor.example/v1", secret_key: "sk-9f8e7d6c5b4a", timeout: 5s, retries: 3, headers: {"x-api-key": "0123abcd", "accept": "application/json", "cookie": "session=8a7f3c; theme=dark"}, pool: PoolOptions { max_connections: 10, password: Some("hunter2") }, tokens_used: 17, password_policy: "strict" }"#,
    ),
];

fn redact(c: &mut Criterion) {
    let redactor = Redactor::new().with_value(
        "postgres://orders:hunter2@db.internal:5432/orders",
        Some("DATABASE_URL"),
    );
    let mut group = c.benchmark_group("redact");
    for &(name, message) in MESSAGES {
        group.throughput(Throughput::Bytes(message.len() as u64));
        group.bench_with_input(BenchmarkId::new("text", name), message, |b, message| {
            b.iter(|| redactor.redact(black_box(message)).len())
        });
    }
    let observed = serde_json::json!({
        "user": "app", "password": "hunter2", "pool": {"size": 5, "dsn": "postgres://app:pw@db/x"},
        "headers": {"accept": "*/*", "authorization": "Bearer abc"}, "tokens_used": 17,
    });
    group.bench_function("json/observed", |b| {
        b.iter(|| {
            let mut value = observed.clone();
            redactor.redact_json(black_box(&mut value));
            value
        })
    });
    group.finish();
}

criterion_group!(benches, redact);
criterion_main!(benches);
