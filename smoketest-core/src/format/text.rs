//! The plain-text writer, for people at a terminal and for monitors that match a string.
//!
//! The first line is `PASS` or `FAIL` (what django-smoketest monitors read). Then one line
//! per check in the style of Kubernetes' `/readyz?verbose`: `[+]` passed, `[!]` warned,
//! `[-]` failed, `[~]` skipped, then the duration; then a summary line. Messages appear
//! only when the caller may see them.
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
    for c in &report.checks {
        let _ = match c.status {
            Status::Pass => write!(out, "[+]{} ok", c.name),
            Status::Warn => write!(out, "[!]{} warn", c.name),
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
    }
    let s = &report.summary;
    let _ = writeln!(
        out,
        "{} checks: {} passed, {} warned, {} failed, {} skipped in {}ms{}",
        s.total,
        s.passed,
        s.warned,
        s.failed,
        s.skipped,
        report.duration_ms,
        if report.cached { " (cached)" } else { "" }
    );
    out.into_bytes()
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
