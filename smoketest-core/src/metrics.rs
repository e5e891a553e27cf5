//! Emission through the [`metrics`] facade (feature `metrics`): every run's outcome lands in
//! whatever exporter the service already installed, next to its own metrics.
//!
//! After each run (the mount path, a group, a background schedule):
//!
//! | metric | kind | labels |
//! | --- | --- | --- |
//! | `smoketest_check_success` | gauge, 1 passed or warned, 0 failed (skipped checks are not set) | `check` |
//! | `smoketest_check_duration_seconds` | histogram | `check` |
//! | `smoketest_check_failures_total` | counter | `check`, `kind` |
//! | `smoketest_runs_total` | counter | `status` |
//! | `smoketest_checks_overrunning` | gauge, check instances still running after their run answered; also updated when one ends | |

use crate::{Report, Status};

/// Record `report` with the installed recorder (a no-op when none is installed).
pub(crate) fn emit(report: &Report) {
    for c in &report.checks {
        let check = std::sync::Arc::<str>::from(c.name.clone());
        if c.status != Status::Skip {
            let success = if c.status == Status::Fail { 0.0 } else { 1.0 };
            metrics::gauge!("smoketest_check_success", "check" => check.clone()).set(success);
        }
        metrics::histogram!("smoketest_check_duration_seconds", "check" => check.clone())
            .record(c.duration_ms / 1000.0);
        if let Some(e) = &c.error {
            metrics::counter!(
                "smoketest_check_failures_total",
                "check" => check,
                "kind" => e.kind.clone()
            )
            .increment(1);
        }
    }
    metrics::counter!("smoketest_runs_total", "status" => report.status.as_str()).increment(1);
    overrunning(report.overrunning);
}

/// Set the gauge of check instances still running after their run answered.
pub(crate) fn overrunning(count: usize) {
    metrics::gauge!("smoketest_checks_overrunning").set(count as f64);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use metrics::{
        Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata,
        Recorder, SharedString, Unit,
    };

    use crate::{CheckError, Outcome, Selection, Smoketest, from_fn};

    type Values = Arc<Mutex<BTreeMap<String, f64>>>;

    /// Keeps the last value (gauges), the sum (counters) or the count (histograms) of each
    /// metric, keyed `name{label=value,…}`.
    #[derive(Default)]
    struct Capture {
        values: Values,
    }

    struct Handle {
        key: String,
        values: Values,
    }

    impl Handle {
        fn update(&self, f: impl FnOnce(f64) -> f64) {
            let mut values = self.values.lock().unwrap();
            let value = values.entry(self.key.clone()).or_insert(0.0);
            *value = f(*value);
        }
    }

    impl CounterFn for Handle {
        fn increment(&self, value: u64) {
            self.update(|v| v + value as f64);
        }
        fn absolute(&self, value: u64) {
            self.update(|_| value as f64);
        }
    }

    impl GaugeFn for Handle {
        fn increment(&self, value: f64) {
            self.update(|v| v + value);
        }
        fn decrement(&self, value: f64) {
            self.update(|v| v - value);
        }
        fn set(&self, value: f64) {
            self.update(|_| value);
        }
    }

    impl HistogramFn for Handle {
        fn record(&self, _value: f64) {
            self.update(|v| v + 1.0);
        }
    }

    impl Capture {
        fn handle(&self, key: &Key) -> Arc<Handle> {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            Arc::new(Handle {
                key: format!("{}{{{}}}", key.name(), labels.join(",")),
                values: self.values.clone(),
            })
        }
    }

    impl Recorder for Capture {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.handle(key))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(self.handle(key))
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(self.handle(key))
        }
    }

    #[test]
    fn every_run_is_recorded_with_the_installed_recorder() {
        let smoke = Smoketest::builder()
            .without_discovery()
            .check(from_fn("ok", |_| Box::pin(async { Ok(Outcome::Pass) })))
            .check(from_fn("skipped", |_| {
                Box::pin(async { Ok(Outcome::skip("n/a")) })
            }))
            .check(from_fn("broken", |_| {
                Box::pin(async { Err(CheckError::assertion("no")) })
            }))
            .build()
            .unwrap();
        let capture = Capture::default();
        metrics::with_local_recorder(&capture, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            for _ in 0..2 {
                runtime.block_on(smoke.run(&Selection::all())).unwrap();
            }
        });
        let values = capture.values.lock().unwrap().clone();
        assert_eq!(values["smoketest_check_success{check=ok}"], 1.0);
        assert_eq!(values["smoketest_check_success{check=broken}"], 0.0);
        assert!(!values.contains_key("smoketest_check_success{check=skipped}"));
        assert_eq!(values["smoketest_check_duration_seconds{check=ok}"], 2.0);
        assert_eq!(
            values["smoketest_check_failures_total{check=broken,kind=assertion}"],
            2.0
        );
        assert_eq!(values["smoketest_runs_total{status=fail}"], 2.0);
    }

    #[test]
    fn the_overrunning_gauge_follows_checks_left_running() {
        let smoke = Smoketest::builder()
            .without_discovery()
            .deadline(std::time::Duration::from_secs(1))
            .cleanup_timeout(std::time::Duration::from_secs(60))
            .check(from_fn("slow_cleanup", |ctx| {
                ctx.defer(async {
                    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                    Ok(())
                });
                Box::pin(async { Ok(Outcome::Pass) })
            }))
            .build()
            .unwrap();
        let capture = Capture::default();
        let gauge =
            |capture: &Capture| capture.values.lock().unwrap()["smoketest_checks_overrunning{}"];
        metrics::with_local_recorder(&capture, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            runtime.block_on(smoke.run(&Selection::all())).unwrap();
            assert_eq!(gauge(&capture), 1.0);
            // The left-behind instance ends: the gauge drops without waiting for a run.
            runtime
                .block_on(async { tokio::time::sleep(std::time::Duration::from_secs(20)).await });
            assert_eq!(gauge(&capture), 0.0);
        });
    }
}
