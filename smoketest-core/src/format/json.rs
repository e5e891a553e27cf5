//! The JSON writer: the report exactly as DESIGN.md §3 and `schema/report.schema.json`
//! describe it. This is what deploy pipelines and the `smoketest` CLI parse.
//!
//! The output is byte for byte what `serde_json::to_vec_pretty` makes of the [`Report`]
//! (plus a final newline), written straight into the response buffer: the report's own
//! fields are written here without serde's per-field machinery, and the rare nested values
//! (observed values, steps, history) go through serde_json. A test holds the two equal.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use smoketest_core::{format::json, Report};
//!
//! let report = Report::from_checks(SystemTime::UNIX_EPOCH, Duration::from_millis(3), vec![]);
//! let body = json::write(&report);
//! let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(value["status"], "pass");
//! assert_eq!(value["started_at"], "1970-01-01T00:00:00.000Z");
//! ```

use serde::Serialize;

use crate::Report;
use crate::report::CheckReport;

/// The report as pretty-printed JSON, newline-terminated.
pub fn write(report: &Report) -> Vec<u8> {
    let mut w = Writer {
        out: Vec::with_capacity(320 + 144 * report.checks.len()),
    };
    w.report(report);
    w.out.push(b'\n');
    w.out
}

struct Writer {
    out: Vec<u8>,
}

/// `,\n`, the indentation and `"key": `, as one literal: every key but an object's first.
macro_rules! key {
    ($indent:literal, $key:literal) => {
        concat!(",\n", $indent, "\"", $key, "\": ").as_bytes()
    };
}

/// Two spaces per level, as serde_json's pretty printer.
const INDENT: &[u8] = b"                                ";

/// Whether `bytes` can be written between quotes as they are: no control character, quote or
/// backslash (what serde_json escapes). Eight bytes at a time: a word has a byte below 0x20
/// when `(w - 0x20…) & !w & 0x80…` is not zero, a byte equal to `c` when the same holds
/// for `w ^ c…` and 0x01; neither test misses one (it may flag a word that has none, which
/// then takes serde_json's escaping path, whose output is the same).
fn plain(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let w = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        if below(w, 0x20)
            | below(w ^ (ONES * u64::from(b'"')), 1)
            | below(w ^ (ONES * u64::from(b'\\')), 1)
            != 0
        {
            return false;
        }
    }
    words
        .remainder()
        .iter()
        .all(|&b| b >= 0x20 && b != b'"' && b != b'\\')
}

impl Writer {
    fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn indent(&mut self, level: usize) {
        let width = 2 * level;
        if width <= INDENT.len() {
            self.raw(&INDENT[..width]);
        } else {
            self.out.resize(self.out.len() + width, b' ');
        }
    }

    /// The closing bracket of an object or array at `level` that had members.
    fn close(&mut self, level: usize, bracket: u8) {
        self.raw(b"\n");
        self.indent(level);
        self.out.push(bracket);
    }

    fn string(&mut self, s: &str) {
        if plain(s.as_bytes()) {
            self.out.reserve(s.len() + 2);
            self.out.push(b'"');
            self.raw(s.as_bytes());
            self.out.push(b'"');
        } else {
            // serde_json's own escaping, so that the bytes are the same.
            self.serde(s);
        }
    }

    fn number(&mut self, n: f64) {
        // A duration is whole microseconds in milliseconds (`report::millis`): the double
        // nearest to m / 1000. Below 10^12 its shortest round-trip text — what serde_json
        // writes — is the decimal m / 1000 itself (any other decimal of as many digits or
        // fewer is at least 0.001 away, far more than half the double's spacing), written
        // here from its integer digits. Anything else goes through serde_json.
        if n.is_sign_positive() && n < 1e12 {
            // The nearest whole number of thousandths; should that be off, the check below
            // fails and serde_json writes the number.
            let m = (n * 1000.0 + 0.5) as u64;
            if m as f64 / 1000.0 == n {
                self.thousandths(m);
                return;
            }
        }
        self.serde(&n);
    }

    /// `m / 1000` as a decimal with the trailing zeros of its fraction cut, and at least one
    /// fractional digit (`12.0`, `12.5`, `0.125`).
    fn thousandths(&mut self, m: u64) {
        let whole = m / 1000;
        if whole < 10 {
            self.out.push(b'0' + whole as u8);
        } else {
            let mut digits = [0u8; 20];
            let mut start = digits.len();
            let mut rest = whole;
            while rest > 0 {
                start -= 1;
                digits[start] = b'0' + (rest % 10) as u8;
                rest /= 10;
            }
            self.raw(&digits[start..]);
        }
        let fraction = (m % 1000) as u16;
        let shown = if fraction.is_multiple_of(100) {
            1
        } else if fraction.is_multiple_of(10) {
            2
        } else {
            3
        };
        self.out.push(b'.');
        for digit in [fraction / 100, fraction / 10 % 10, fraction % 10]
            .into_iter()
            .take(shown)
        {
            self.out.push(b'0' + digit as u8);
        }
    }

    fn unsigned(&mut self, n: u64) {
        self.serde(&n);
    }

    fn boolean(&mut self, b: bool) {
        self.raw(if b { b"true" } else { b"false" });
    }

    /// A scalar through serde_json (compact is the same as pretty for a scalar).
    fn serde<T: Serialize + ?Sized>(&mut self, value: &T) {
        serde_json::to_writer(&mut self.out, value).expect("a report always serializes");
    }

    /// A nested value pretty-printed by serde_json, indented to `level`: JSON strings hold
    /// no raw newline, so every newline in the output starts a line to indent.
    fn nested<T: Serialize + ?Sized>(&mut self, level: usize, value: &T) {
        let text = serde_json::to_vec_pretty(value).expect("a report always serializes");
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                self.raw(b"\n");
                self.indent(level);
            }
            self.raw(line);
        }
    }

    /// `key` (a [`key!`] literal) and the string, when there is one.
    fn optional_string(&mut self, key: &[u8], value: &Option<String>) {
        if let Some(value) = value {
            self.raw(key);
            self.string(value);
        }
    }

    fn report(&mut self, report: &Report) {
        self.raw(b"{\n  \"status\": \"");
        self.raw(report.status.as_str().as_bytes());
        self.raw(b"\"");
        self.optional_string(key!("  ", "service"), &report.service);
        self.optional_string(key!("  ", "version"), &report.version);
        self.optional_string(key!("  ", "release_id"), &report.release_id);
        self.raw(key!("  ", "started_at"));
        self.string(&report.started_at);
        self.raw(key!("  ", "duration_ms"));
        self.number(report.duration_ms);
        self.raw(key!("  ", "cached"));
        self.boolean(report.cached);
        if report.overrunning != 0 {
            self.raw(key!("  ", "overrunning"));
            self.unsigned(report.overrunning as u64);
        }
        if let Some(age) = report.age_ms {
            self.raw(key!("  ", "age_ms"));
            self.number(age);
        }
        let summary = &report.summary;
        self.raw(key!("  ", "summary"));
        self.raw(b"{\n    \"total\": ");
        self.unsigned(summary.total as u64);
        self.raw(key!("    ", "passed"));
        self.unsigned(summary.passed as u64);
        self.raw(key!("    ", "warned"));
        self.unsigned(summary.warned as u64);
        self.raw(key!("    ", "failed"));
        self.unsigned(summary.failed as u64);
        self.raw(key!("    ", "skipped"));
        self.unsigned(summary.skipped as u64);
        self.raw(b"\n  }");
        self.raw(key!("  ", "checks"));
        if report.checks.is_empty() {
            self.raw(b"[]");
        } else {
            self.raw(b"[");
            for (i, check) in report.checks.iter().enumerate() {
                self.raw(if i == 0 { b"\n    " } else { b",\n    " });
                self.check(check);
            }
            self.raw(b"\n  ]");
        }
        self.optional_string(key!("  ", "group"), &report.group);
        if !report.history.is_empty() {
            self.raw(key!("  ", "history"));
            self.nested(1, &report.history);
        }
        self.optional_string(key!("  ", "reason"), &report.reason);
        self.raw(b"\n}");
    }

    /// One check at level 2 (inside `checks`).
    fn check(&mut self, check: &CheckReport) {
        // The fields every check has, with their indentation, as literals.
        self.raw(b"{\n      \"name\": ");
        self.string(&check.name);
        self.raw(b",\n      \"status\": \"");
        self.raw(check.status.as_str().as_bytes());
        self.raw(b"\",\n      \"duration_ms\": ");
        self.number(check.duration_ms);
        self.raw(b",\n      \"tags\": ");
        if check.tags.is_empty() {
            self.raw(b"[]");
        } else {
            self.raw(b"[");
            for (i, tag) in check.tags.iter().enumerate() {
                self.raw(if i == 0 { b"\n" } else { b",\n" });
                self.indent(4);
                self.string(tag);
            }
            self.close(3, b']');
        }
        if let Some(error) = &check.error {
            self.raw(key!("      ", "error"));
            self.raw(b"{\n        \"kind\": ");
            self.string(&error.kind);
            self.optional_string(key!("        ", "message"), &error.message);
            self.optional_string(key!("        ", "suggestion"), &error.suggestion);
            self.raw(b"\n      }");
        }
        self.optional_string(key!("      ", "message"), &check.message);
        if !check.observed.is_empty() {
            self.raw(key!("      ", "observed"));
            self.nested(3, &check.observed);
        }
        if !check.steps.is_empty() {
            self.raw(key!("      ", "steps"));
            self.nested(3, &check.steps);
        }
        self.raw(b"\n    }");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, SystemTime};

    use proptest::prelude::*;

    use crate::report::{CheckHistory, CheckReport, ErrorReport, RunRecord, StepReport};
    use crate::{Report, Status};

    fn serde(report: &Report) -> Vec<u8> {
        let mut body = serde_json::to_vec_pretty(report).unwrap();
        body.push(b'\n');
        body
    }

    fn check(name: &str, status: Status) -> CheckReport {
        CheckReport {
            name: name.into(),
            status,
            duration_ms: 0.123,
            tags: vec![],
            error: None,
            message: None,
            observed: BTreeMap::new(),
            steps: vec![],
        }
    }

    fn everything() -> Report {
        let mut failing = check("db::\"quoted\"\\name\u{1}\n", Status::Fail);
        failing.tags = vec!["db".into(), "critical\t".into()];
        failing.error = Some(ErrorReport {
            kind: "assertion".into(),
            message: Some("expected 1 row, found 0 — ünïcode".into()),
            suggestion: Some("Check the \"orders\" table".into()),
        });
        failing.observed.insert("rows".into(), serde_json::json!(0));
        failing.observed.insert(
            "nested".into(),
            serde_json::json!({"a": [1, 2.5, null, "x\ny"], "b": {}}),
        );
        failing.steps = vec![StepReport {
            name: "create order".into(),
            status: Status::Fail,
            duration_ms: 12.5,
            teardown: false,
            persona: Some("clerk".into()),
            method: Some("POST".into()),
            path: Some("/orders".into()),
            status_code: Some(500),
            error: Some(ErrorReport {
                kind: "http_status".into(),
                message: Some("500".into()),
                suggestion: None,
            }),
            message: None,
        }];
        let mut warning = check("slow", Status::Warn);
        warning.message = Some("degraded".into());
        warning.duration_ms = 1e-7;
        let mut report = Report::from_checks(
            SystemTime::UNIX_EPOCH,
            Duration::from_micros(1234),
            vec![failing, warning, check("skip", Status::Skip)],
        );
        report.service = Some("orders-api".into());
        report.version = Some("1.2.3".into());
        report.release_id = Some("abc123".into());
        report.cached = true;
        report.overrunning = 2;
        report.age_ms = Some(1500.25);
        report.group = Some("ready".into());
        report.reason = Some("pending".into());
        report.history.insert(
            "slow".into(),
            CheckHistory {
                consecutive_failures: 3,
                last_success: Some("2026-12-02T10:00:00.000Z".into()),
                last_failure: None,
                runs: vec![RunRecord {
                    at: "2026-12-02T10:00:01.000Z".into(),
                    status: Status::Fail,
                    duration_ms: 3.0,
                    kind: Some("timeout".into()),
                }],
            },
        );
        report
    }

    #[test]
    fn every_field_is_written_as_serde_json_writes_it() {
        let report = everything();
        assert_eq!(
            String::from_utf8(super::write(&report)).unwrap(),
            String::from_utf8(serde(&report)).unwrap()
        );
        let empty = Report::from_checks(SystemTime::UNIX_EPOCH, Duration::ZERO, vec![]);
        assert_eq!(super::write(&empty), serde(&empty));
        for detail in [crate::Detail::Status, crate::Detail::Checks] {
            let restricted = report.restrict(detail);
            assert_eq!(super::write(&restricted), serde(&restricted));
        }
    }

    /// A restricted copy (`Report::restrict`) is exactly the report cloned and then
    /// stripped in place (`Report::into_restricted`), at every detail level.
    #[test]
    fn a_restricted_copy_is_the_report_stripped() {
        let report = everything();
        for detail in [
            crate::Detail::Status,
            crate::Detail::Checks,
            crate::Detail::Full,
        ] {
            assert_eq!(
                report.restrict(detail),
                report.clone().into_restricted(detail),
                "{detail:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn any_names_tags_and_messages_are_written_as_serde_json_writes_them(
            name in any::<String>(),
            tags in proptest::collection::vec(any::<String>(), 0..3),
            message in proptest::option::of(any::<String>()),
            duration in any::<f64>(),
            service in proptest::option::of(any::<String>()),
        ) {
            let mut one = check(&name, Status::Warn);
            one.tags = tags;
            one.message = message;
            one.duration_ms = duration;
            let mut report = Report::from_checks(SystemTime::UNIX_EPOCH, Duration::ZERO, vec![one]);
            report.service = service;
            prop_assert_eq!(super::write(&report), serde(&report));
        }

        #[test]
        fn durations_in_whole_microseconds_are_written_as_serde_json_writes_them(
            micros in prop_oneof![0u64..10_000, 0u64..10_000_000_000, 0u64..2_000_000_000_000_000],
        ) {
            let mut report = Report::from_checks(SystemTime::UNIX_EPOCH, Duration::ZERO, vec![]);
            report.duration_ms = crate::report::millis(Duration::from_micros(micros));
            prop_assert_eq!(super::write(&report), serde(&report));
        }
    }

    #[test]
    fn a_byte_to_escape_is_found_at_every_position() {
        let clean = "abcdefghijklmnopqrsé".as_bytes();
        assert!(super::plain(clean));
        for at in 0..clean.len() {
            for bad in (0u8..0x20).chain([b'"', b'\\']) {
                let mut text = clean.to_vec();
                text[at] = bad;
                assert!(!super::plain(&text), "{bad:#x} at {at}");
            }
        }
        let every_plain_byte: Vec<u8> = (0x20u8..=0xff).filter(|b| !b"\"\\".contains(b)).collect();
        assert!(super::plain(&every_plain_byte));
    }

    #[test]
    fn edge_durations_are_written_as_serde_json_writes_them() {
        for n in [
            0.0,
            -0.0,
            0.001,
            0.01,
            0.1,
            0.5,
            1.0,
            1.5,
            10.25,
            999.999,
            1000.0,
            123_456.789,
            999_999_999_999.999,
            1e12,
            1e12 + 0.5,
            1e15,
            1e16,
            1e17,
            0.0005,
            0.1 + 0.2,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::NAN,
            f64::INFINITY,
            -1.0,
            -0.001,
        ] {
            let mut report = Report::from_checks(SystemTime::UNIX_EPOCH, Duration::ZERO, vec![]);
            report.duration_ms = n;
            assert_eq!(
                String::from_utf8(super::write(&report)).unwrap(),
                String::from_utf8(serde(&report)).unwrap(),
                "{n:?}"
            );
        }
    }
}
