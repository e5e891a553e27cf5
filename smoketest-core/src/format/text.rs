//! The plain-text writer, for people at a terminal and for monitors that match a string.
//!
//! The first line is `PASS` or `FAIL` (what django-smoketest monitors read). Then one line
//! per check in the style of Kubernetes' `/readyz?verbose`: `[+]` passed, `[!]` warned,
//! `[-]` failed, `[~]` skipped, then the duration; then a summary line. Messages appear
//! only when the caller may see them. A report answered without a run (a readiness probe
//! while the service drains, a background group before its first run) says why on its
//! second line: `reason: draining` or `reason: pending`.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use smoketest_core::{format::text, report::CheckReport, Report, Status};
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
//! let out = String::from_utf8(text::write(&report)).unwrap();
//! assert_eq!(out.lines().next(), Some("PASS"));
//! assert_eq!(out.lines().nth(1), Some("[+]db::ping ok 3.1ms"));
//! ```

use std::fmt::Write;

use crate::{Report, Status};

/// The report as text. See the [module documentation](self).
pub fn write(report: &Report) -> Vec<u8> {
    let mut out = String::new();
    out.push_str(if report.status == Status::Fail {
        "FAIL\n"
    } else {
        "PASS\n"
    });
    if let Some(reason) = &report.reason {
        // A report answered without a run: say why before the (empty) check lines.
        let _ = writeln!(out, "reason: {reason}");
    }
    for c in &report.checks {
        let _ = match c.status {
            Status::Pass => write!(out, "[+]{} ok", c.name),
            Status::Warn => match c.error.as_ref() {
                // A warning with a kind: `slow`, over the check's latency budget.
                Some(e) => match e.message.as_deref() {
                    Some(m) => write!(out, "[!]{} warn: {}: {}", c.name, e.kind, one_line(m)),
                    None => write!(out, "[!]{} warn: {}", c.name, e.kind),
                },
                None => write!(out, "[!]{} warn", c.name),
            },
            Status::Skip => write!(out, "[~]{} skipped", c.name),
            Status::Fail => {
                let e = c.error.as_ref();
                let kind = e.map(|e| e.kind.as_str()).unwrap_or("error");
                match e.and_then(|e| e.message.as_deref()) {
                    Some(m) => write!(out, "[-]{} failed: {kind}: {}", c.name, one_line(m)),
                    None => write!(out, "[-]{} failed: {kind}", c.name),
                }
            }
        };
        if let Some(m) = &c.message {
            let _ = write!(out, ": {}", one_line(m));
        }
        let _ = writeln!(out, " {}ms", c.duration_ms);
        if let Some(s) = c.error.as_ref().and_then(|e| e.suggestion.as_deref()) {
            let _ = writeln!(out, "    suggestion: {}", one_line(s));
        }
        write_steps(&mut out, c);
    }
    let s = &report.summary;
    let cached = match (report.cached, report.age_ms) {
        (true, Some(age)) => format!(" (cached), {}s old", (age / 100.0).round() / 10.0),
        (true, None) => " (cached)".to_string(),
        (false, _) => String::new(),
    };
    let _ = writeln!(
        out,
        "{}: {} passed, {} warned, {} failed, {} skipped in {}ms{cached}",
        super::checks(s.total),
        s.passed,
        s.warned,
        s.failed,
        s.skipped,
        report.duration_ms,
    );
    out.into_bytes()
}

/// A scenario's steps, one line each, indented under its check: `    [+]step 1/5 create
/// order ok POST /orders → 201 3.1ms`, `    [~]step 4/5 delete order skipped`, then the
/// teardowns. Kept apart from the check lines (scenario.rs owns the steps).
fn write_steps(out: &mut String, c: &crate::report::CheckReport) {
    let total = c.steps.iter().filter(|s| !s.teardown).count();
    let mut number = 0;
    for s in &c.steps {
        let label = if s.teardown {
            s.name.clone()
        } else {
            number += 1;
            format!("step {number}/{total} {}", s.name)
        };
        let (marker, word) = match s.status {
            Status::Pass => ("[+]", "ok"),
            Status::Warn => ("[!]", "warn"),
            Status::Skip => ("[~]", "skipped"),
            Status::Fail => ("[-]", "failed"),
        };
        let _ = write!(out, "    {marker}{label} {word}");
        if let Some(e) = &s.error {
            let _ = write!(out, ": {}", e.kind);
            if let Some(m) = &e.message {
                let _ = write!(out, ": {}", one_line(m));
            }
        }
        if let Some(m) = &s.message {
            let _ = write!(out, ": {}", one_line(m));
        }
        if let (Some(method), Some(path), false) = (&s.method, &s.path, s.teardown) {
            let _ = write!(out, " {method} {path}");
        }
        if let Some(code) = s.status_code {
            let _ = write!(out, " → {code}");
        }
        if let Some(persona) = &s.persona {
            let _ = write!(out, " as {persona}");
        }
        if s.status != Status::Skip {
            let _ = write!(out, " {}ms", s.duration_ms);
        }
        out.push('\n');
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::fixtures;

    fn text(report: &Report) -> String {
        String::from_utf8(write(report)).unwrap()
    }

    #[test]
    fn every_status_has_its_line() {
        let out = text(&fixtures::mixed());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "FAIL");
        assert_eq!(lines[1], "[+]db::ping ok 3.25ms");
        assert_eq!(lines[2], "[!]disk::free warn: only 9% free 3.25ms");
        assert!(lines[3].starts_with("[-]orders::db_write failed: assertion: expected 1 row"));
        assert_eq!(lines[4], "    suggestion: Look at <b>the</b> logs & retry.");
        assert!(lines[5].starts_with("[-]payments::api failed: timeout: did not finish"));
        assert_eq!(
            lines[7],
            "[~]mail::smtp skipped: SMTP_HOST is not set 3.25ms"
        );
        assert_eq!(
            lines[8],
            "5 checks: 1 passed, 1 warned, 2 failed, 1 skipped in 12.4ms"
        );
        assert_eq!(text(&fixtures::passing()).lines().next(), Some("PASS"));
    }

    #[test]
    fn one_check_is_counted_in_the_singular() {
        let mut report = fixtures::passing();
        report.checks.truncate(1);
        report.summary = crate::Report::from_checks(
            std::time::SystemTime::now(),
            std::time::Duration::ZERO,
            report.checks.clone(),
        )
        .summary;
        let out = text(&report);
        assert!(out.lines().any(|l| l.starts_with("1 check: ")), "{out}");
    }

    #[test]
    fn a_snapshot_says_how_old_it_is() {
        let mut report = fixtures::passing();
        report.cached = true;
        report.age_ms = Some(2_449.0);
        assert!(text(&report).ends_with(" in 5ms (cached), 2.4s old\n"));
    }
}
