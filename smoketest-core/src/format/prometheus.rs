//! The Prometheus writer: the run as gauges, in OpenMetrics 1.0 or the classic text format
//! 0.0.4, for scrapers.
//!
//! | metric | labels | value |
//! | --- | --- | --- |
//! | `smoketest_check_success` | `check` | 1 passed or warned, 0 failed; skipped checks are absent |
//! | `smoketest_check_status` | `check`, `status` | 1 for the check's status, 0 for the other three |
//! | `smoketest_check_duration_seconds` | `check` | how long the check ran |
//! | `smoketest_check_consecutive_failures` | `check` | failed runs in a row (on a group's path the group's own; else across every path) |
//! | `smoketest_check_last_success_timestamp_seconds` | `check` | Unix time of the last pass or warn ([history](crate::history): any path) |
//! | `smoketest_run_success` | | 1 when no check failed |
//! | `smoketest_run_duration_seconds` | | how long the run took |
//! | `smoketest_run_checks` | `status` | checks of the run by status |
//! | `smoketest_run_age_seconds` | | age of a cached or background snapshot, 0 when run for this scrape |
//! | `smoketest_checks_overrunning` | | check instances still running after their run answered (see [`runner`](crate::runner)) |
//! | `smoketest_build_info` | `service`, `version`, `release_id` | always 1 |
//!
//! Per-check metrics appear only when the caller may see check names. The endpoint answers
//! 200 in these formats whatever the checks say, because scrapers discard the body of any
//! other status; alert on `smoketest_check_success == 0`.
//!
//! Hand-written rather than through `prometheus-client`: that crate's encoder writes only
//! OpenMetrics (its `info` type is invalid in the 0.0.4 text format that `text/plain`
//! scrapers and browsers get), and its label families iterate a hash map, so checks would
//! come out in a different order on every scrape. A report is a one-shot snapshot, not a
//! registry of live metrics; the tests check both dialects with a strict parser.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use smoketest_core::format::prometheus::{write, Dialect};
//! use smoketest_core::{report::CheckReport, Report, Status};
//!
//! let check = CheckReport {
//!     name: "db::ping".into(),
//!     status: Status::Pass,
//!     duration_ms: 3.1,
//!     tags: vec![],
//!     error: None,
//!     message: None,
//!     observed: Default::default(),
//!     steps: vec![],
//! };
//! let report = Report::from_checks(SystemTime::now(), Duration::from_millis(4), vec![check]);
//! let text = String::from_utf8(write(&report, Dialect::OpenMetrics)).unwrap();
//! assert!(text.contains("smoketest_check_success{check=\"db::ping\"} 1\n"));
//! assert!(text.ends_with("# EOF\n"));
//! ```

use std::fmt::Write;

use crate::{Report, Status};

/// Which exposition format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// OpenMetrics 1.0 (`application/openmetrics-text; version=1.0.0`): units, an `info`
    /// type, and the closing `# EOF`.
    OpenMetrics,
    /// The Prometheus text format 0.0.4 (`text/plain; version=0.0.4`).
    Text004,
}

struct Writer {
    out: String,
    dialect: Dialect,
}

impl Writer {
    /// `# HELP` and `# TYPE` (and `# UNIT` in OpenMetrics) for a gauge family.
    fn gauge(&mut self, name: &str, help: &str, unit: Option<&str>) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} gauge");
        if let (Some(unit), Dialect::OpenMetrics) = (unit, self.dialect) {
            let _ = writeln!(self.out, "# UNIT {name} {unit}");
        }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"");
                escape_label_value(&mut self.out, value);
                self.out.push('"');
            }
            self.out.push('}');
        }
        // f64's Display never uses an exponent and prints integers without a fraction, both
        // of which both dialects accept.
        let _ = writeln!(self.out, " {value}");
    }
}

/// The report as exposition text. See the [module documentation](self).
pub fn write(report: &Report, dialect: Dialect) -> Vec<u8> {
    let mut w = Writer {
        out: String::with_capacity(1024 + report.checks.len() * 400),
        dialect,
    };

    if !report.checks.is_empty() {
        w.gauge(
            "smoketest_check_success",
            "Whether the smoke check passed (1: passed or warned, 0: failed). Skipped checks are absent.",
            None,
        );
        for c in report.checks.iter().filter(|c| c.status != Status::Skip) {
            let value = if c.status == Status::Fail { 0.0 } else { 1.0 };
            w.sample("smoketest_check_success", &[("check", &c.name)], value);
        }
        w.gauge(
            "smoketest_check_status",
            "The smoke check's status: 1 for the current one, 0 for the others.",
            None,
        );
        for c in &report.checks {
            for status in [Status::Pass, Status::Warn, Status::Fail, Status::Skip] {
                let value = if c.status == status { 1.0 } else { 0.0 };
                w.sample(
                    "smoketest_check_status",
                    &[("check", &c.name), ("status", status.as_str())],
                    value,
                );
            }
        }
        w.gauge(
            "smoketest_check_duration_seconds",
            "How long the smoke check ran.",
            Some("seconds"),
        );
        for c in &report.checks {
            w.sample(
                "smoketest_check_duration_seconds",
                &[("check", &c.name)],
                seconds(c.duration_ms),
            );
        }
    }

    if !report.history.is_empty() {
        w.gauge(
            "smoketest_check_consecutive_failures",
            "Failed runs of the smoke check in a row, up to the latest.",
            None,
        );
        for (name, history) in &report.history {
            w.sample(
                "smoketest_check_consecutive_failures",
                &[("check", name)],
                f64::from(history.consecutive_failures),
            );
        }
        w.gauge(
            "smoketest_check_last_success_timestamp_seconds",
            "When the smoke check last passed or warned, as a Unix time (absent if never).",
            Some("seconds"),
        );
        for (name, history) in &report.history {
            let Some(when) = history.last_success.as_deref().and_then(unix_seconds) else {
                continue;
            };
            w.sample(
                "smoketest_check_last_success_timestamp_seconds",
                &[("check", name)],
                when,
            );
        }
    }

    w.gauge(
        "smoketest_run_success",
        "Whether the run passed: 1 when no smoke check failed.",
        None,
    );
    let passed = if report.status == Status::Fail {
        0.0
    } else {
        1.0
    };
    w.sample("smoketest_run_success", &[], passed);
    w.gauge(
        "smoketest_run_duration_seconds",
        "How long the run of the smoke checks took.",
        Some("seconds"),
    );
    w.sample(
        "smoketest_run_duration_seconds",
        &[],
        seconds(report.duration_ms),
    );
    w.gauge(
        "smoketest_run_checks",
        "Smoke checks in the run, by status.",
        None,
    );
    let s = &report.summary;
    for (status, count) in [
        (Status::Pass, s.passed),
        (Status::Warn, s.warned),
        (Status::Fail, s.failed),
        (Status::Skip, s.skipped),
    ] {
        w.sample(
            "smoketest_run_checks",
            &[("status", status.as_str())],
            count as f64,
        );
    }
    w.gauge(
        "smoketest_run_age_seconds",
        "Age of the reported run: 0 when it ran for this scrape, more for a cached or background snapshot.",
        Some("seconds"),
    );
    let age = if report.cached {
        seconds(report.age_ms.unwrap_or(0.0))
    } else {
        0.0
    };
    w.sample("smoketest_run_age_seconds", &[], age);

    w.gauge(
        "smoketest_checks_overrunning",
        "Instances of smoke checks still running after the run that started them answered; while one runs, its check reports kind overrun instead of starting again.",
        None,
    );
    w.sample(
        "smoketest_checks_overrunning",
        &[],
        report.overrunning as f64,
    );

    let help = "The service's name, version and release; always 1.";
    match dialect {
        Dialect::OpenMetrics => {
            let _ = writeln!(w.out, "# HELP smoketest_build {help}");
            let _ = writeln!(w.out, "# TYPE smoketest_build info");
        }
        Dialect::Text004 => w.gauge("smoketest_build_info", help, None),
    }
    let labels = [
        ("service", report.service.as_deref().unwrap_or("")),
        ("version", report.version.as_deref().unwrap_or("")),
        ("release_id", report.release_id.as_deref().unwrap_or("")),
    ];
    w.sample("smoketest_build_info", &labels, 1.0);

    if dialect == Dialect::OpenMetrics {
        w.out.push_str("# EOF\n");
    }
    w.out.into_bytes()
}

/// Milliseconds (with microsecond precision, as reports keep them) as seconds, computed
/// from whole microseconds so that they print exactly: `4.206` ms is `0.004206`, not
/// `0.0042060000000000005`.
fn seconds(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1_000_000.0
}

/// An RFC 3339 time as Unix seconds.
fn unix_seconds(rfc3339: &str) -> Option<f64> {
    let time = humantime::parse_rfc3339(rfc3339).ok()?;
    Some(
        time.duration_since(std::time::SystemTime::UNIX_EPOCH)
            .ok()?
            .as_secs_f64(),
    )
}

/// Escape a label value as both dialects require: backslash, double quote, line feed.
fn escape_label_value(out: &mut String, value: &str) {
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use openmetrics_parser::{
        MetricsExposition, OpenMetricsType, OpenMetricsValue, PrometheusType, PrometheusValue,
    };

    use super::*;
    use crate::Detail;
    use crate::format::fixtures;

    /// Parse with a strict grammar for the dialect; any syntax error fails the test.
    fn parse(report: &Report, dialect: Dialect) -> Samples {
        let text = String::from_utf8(write(report, dialect)).unwrap();
        let mut samples = HashMap::new();
        match dialect {
            Dialect::OpenMetrics => {
                let exposition = openmetrics_parser::openmetrics::parse_openmetrics(&text)
                    .unwrap_or_else(|e| panic!("invalid OpenMetrics: {e:?}\n{text}"));
                collect_om(&exposition, &mut samples);
            }
            Dialect::Text004 => {
                let exposition = openmetrics_parser::prometheus::parse_prometheus(&text)
                    .unwrap_or_else(|e| panic!("invalid Prometheus text: {e:?}\n{text}"));
                collect_prom(&exposition, &mut samples);
            }
        }
        samples
    }

    type Samples = HashMap<(String, Vec<(String, String)>), f64>;

    fn insert<V: openmetrics_parser::RenderableMetricValue + Clone>(
        samples: &mut Samples,
        name: String,
        sample: &openmetrics_parser::Sample<V>,
        value: f64,
    ) {
        let labelset = sample.get_labelset().expect("labels match the family");
        let mut labels: Vec<(String, String)> = labelset
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.sort();
        assert!(
            samples.insert((name.clone(), labels), value).is_none(),
            "{name} has a duplicate sample"
        );
    }

    fn collect_om(
        exposition: &MetricsExposition<OpenMetricsType, OpenMetricsValue>,
        samples: &mut Samples,
    ) {
        for (name, family) in &exposition.families {
            for sample in family.iter_samples() {
                let (sample_name, value) = match &sample.value {
                    OpenMetricsValue::Gauge(v) => (name.clone(), v.as_f64()),
                    OpenMetricsValue::Info => (format!("{name}_info"), 1.0),
                    other => panic!("{name}: unexpected value {other:?}"),
                };
                insert(samples, sample_name, sample, value);
            }
        }
    }

    fn collect_prom(
        exposition: &MetricsExposition<PrometheusType, PrometheusValue>,
        samples: &mut Samples,
    ) {
        for (name, family) in &exposition.families {
            assert_eq!(family.family_type, PrometheusType::Gauge, "{name}");
            for sample in family.iter_samples() {
                let PrometheusValue::Gauge(v) = &sample.value else {
                    panic!("{name}: not a gauge");
                };
                insert(samples, name.clone(), sample, v.as_f64());
            }
        }
    }

    fn get(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.sort();
        samples.get(&(name.to_string(), labels)).copied()
    }

    #[test]
    fn both_dialects_parse_and_carry_every_check() {
        for dialect in [Dialect::OpenMetrics, Dialect::Text004] {
            let s = parse(&fixtures::mixed(), dialect);
            let ok = |check| get(&s, "smoketest_check_success", &[("check", check)]);
            assert_eq!(ok("db::ping"), Some(1.0), "{dialect:?}");
            assert_eq!(ok("disk::free"), Some(1.0), "{dialect:?}");
            assert_eq!(ok("orders::db_write"), Some(0.0), "{dialect:?}");
            assert_eq!(ok("payments::api"), Some(0.0), "{dialect:?}");
            assert_eq!(
                ok("mail::smtp"),
                None,
                "{dialect:?}: skipped checks have no success"
            );
            assert_eq!(
                get(
                    &s,
                    "smoketest_check_status",
                    &[("check", "mail::smtp"), ("status", "skip")]
                ),
                Some(1.0)
            );
            assert_eq!(
                get(
                    &s,
                    "smoketest_check_status",
                    &[("check", "disk::free"), ("status", "warn")]
                ),
                Some(1.0)
            );
            assert_eq!(
                get(
                    &s,
                    "smoketest_check_status",
                    &[("check", "disk::free"), ("status", "pass")]
                ),
                Some(0.0)
            );
            assert_eq!(
                get(
                    &s,
                    "smoketest_check_duration_seconds",
                    &[("check", "db::ping")]
                ),
                Some(0.00325)
            );
            assert_eq!(get(&s, "smoketest_run_success", &[]), Some(0.0));
            assert_eq!(get(&s, "smoketest_run_duration_seconds", &[]), Some(0.0124));
            assert_eq!(
                get(&s, "smoketest_run_checks", &[("status", "fail")]),
                Some(2.0)
            );
            assert_eq!(get(&s, "smoketest_run_age_seconds", &[]), Some(0.0));
            assert_eq!(
                get(
                    &s,
                    "smoketest_build_info",
                    &[
                        ("service", "orders-api"),
                        ("version", "1.4.2"),
                        ("release_id", "9f2c1ab")
                    ]
                ),
                Some(1.0),
                "{dialect:?}"
            );
        }
    }

    #[test]
    fn checks_left_running_are_exported_in_both_dialects() {
        for dialect in [Dialect::OpenMetrics, Dialect::Text004] {
            let s = parse(&fixtures::passing(), dialect);
            assert_eq!(get(&s, "smoketest_checks_overrunning", &[]), Some(0.0));
            let mut report = fixtures::mixed();
            report.overrunning = 2;
            let s = parse(&report, dialect);
            assert_eq!(
                get(&s, "smoketest_checks_overrunning", &[]),
                Some(2.0),
                "{dialect:?}"
            );
        }
    }

    #[test]
    fn passing_run_reports_success() {
        for dialect in [Dialect::OpenMetrics, Dialect::Text004] {
            let s = parse(&fixtures::passing(), dialect);
            assert_eq!(get(&s, "smoketest_run_success", &[]), Some(1.0));
            assert_eq!(
                get(&s, "smoketest_run_checks", &[("status", "warn")]),
                Some(1.0)
            );
        }
    }

    #[test]
    fn hostile_check_names_are_escaped_and_still_parse() {
        let mut report = fixtures::passing();
        report.checks[0].name = "a\"b\\c\nd".into();
        report.version = Some("1.0 \"beta\"".to_string());
        let text = String::from_utf8(write(&report, Dialect::Text004)).unwrap();
        assert!(
            text.contains(r#"smoketest_check_success{check="a\"b\\c\nd"} 1"#),
            "{text}"
        );
        for dialect in [Dialect::OpenMetrics, Dialect::Text004] {
            let s = parse(&report, dialect);
            assert_eq!(s.len(), parse(&fixtures::passing(), dialect).len());
        }
    }

    #[test]
    fn status_detail_has_only_run_metrics() {
        let report = fixtures::mixed().restrict(Detail::Status);
        for dialect in [Dialect::OpenMetrics, Dialect::Text004] {
            let s = parse(&report, dialect);
            assert!(
                s.keys()
                    .all(|(name, _)| !name.starts_with("smoketest_check_"))
            );
            assert_eq!(get(&s, "smoketest_run_success", &[]), Some(0.0));
        }
    }

    #[test]
    fn group_history_becomes_metrics() {
        let mut report = fixtures::mixed();
        report.history.insert(
            "orders::db_write".into(),
            crate::report::CheckHistory {
                consecutive_failures: 3,
                last_success: Some("2026-11-22T08:40:41.500Z".into()),
                last_failure: Some("2026-11-22T08:45:00.000Z".into()),
                ..Default::default()
            },
        );
        report.history.insert(
            "payments::api".into(),
            crate::report::CheckHistory {
                consecutive_failures: 1,
                last_success: None,
                last_failure: Some("2026-11-22T08:45:00.000Z".into()),
                ..Default::default()
            },
        );
        for dialect in [Dialect::OpenMetrics, Dialect::Text004] {
            let s = parse(&report, dialect);
            let check = |name| [("check", name)];
            assert_eq!(
                get(
                    &s,
                    "smoketest_check_consecutive_failures",
                    &check("orders::db_write")
                ),
                Some(3.0)
            );
            assert_eq!(
                get(
                    &s,
                    "smoketest_check_last_success_timestamp_seconds",
                    &check("orders::db_write")
                ),
                Some(1_795_336_841.5)
            );
            assert_eq!(
                get(
                    &s,
                    "smoketest_check_last_success_timestamp_seconds",
                    &check("payments::api")
                ),
                None,
                "never succeeded: no sample"
            );
        }
    }

    #[test]
    fn cached_report_has_its_age() {
        let mut report = fixtures::passing();
        report.cached = true;
        report.age_ms = Some(1500.0);
        let s = parse(&report, Dialect::OpenMetrics);
        assert_eq!(get(&s, "smoketest_run_age_seconds", &[]), Some(1.5));
    }

    #[test]
    fn openmetrics_has_units_info_and_eof_and_text_has_none() {
        let om = String::from_utf8(write(&fixtures::mixed(), Dialect::OpenMetrics)).unwrap();
        assert!(om.contains("# UNIT smoketest_check_duration_seconds seconds\n"));
        assert!(om.contains("# TYPE smoketest_build info\n"));
        assert!(om.ends_with("# EOF\n"));
        let text = String::from_utf8(write(&fixtures::mixed(), Dialect::Text004)).unwrap();
        assert!(!text.contains("# UNIT") && !text.contains("# EOF") && !text.contains(" info\n"));
    }

    #[test]
    fn durations_print_as_exact_decimals() {
        let mut report = fixtures::passing();
        report.duration_ms = 4.206;
        report.checks[0].duration_ms = 0.3;
        let text = String::from_utf8(write(&report, Dialect::Text004)).unwrap();
        assert!(
            text.contains("smoketest_run_duration_seconds 0.004206\n"),
            "{text}"
        );
        assert!(text.contains("} 0.0003\n"), "{text}");
        assert!(!text.contains("000000000"), "float noise: {text}");
    }
}
