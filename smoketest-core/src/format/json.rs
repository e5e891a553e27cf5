//! The JSON writer: the report exactly as DESIGN.md §3 and `schema/report.schema.json`
//! describe it. This is what deploy pipelines and the `smoketest` CLI parse.
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

use crate::Report;

/// The report as pretty-printed JSON, newline-terminated.
pub fn write(report: &Report) -> Vec<u8> {
    let mut body = serde_json::to_vec_pretty(report).expect("a report always serializes");
    body.push(b'\n');
    body
}
