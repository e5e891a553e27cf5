//! The `Server-Timing` header: each check's duration where browser developer tools and
//! tracing proxies show it, next to the request's own timings.
//!
//! One `run` entry for the whole run, then one entry per check: a token made from the
//! check's name (characters a header token cannot hold become `_`) with the real name in
//! `desc` and the duration in milliseconds in `dur`. The endpoint sends it only to callers
//! who may see [`Detail::Full`](crate::Detail::Full), since it names every check and how
//! long it took.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use smoketest_core::{format::server_timing, report::CheckReport, Report, Status};
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
//! let report = Report::from_checks(SystemTime::now(), Duration::from_micros(4200), vec![check]);
//! assert_eq!(
//!     server_timing::header_value(&report),
//!     r#"run;dur=4.2, db__ping;desc="db::ping";dur=3.1"#
//! );
//! ```

use std::fmt::Write;

use crate::Report;

/// The value of the `Server-Timing` header for `report`: visible ASCII only.
pub fn header_value(report: &Report) -> String {
    let mut out = format!("run;dur={}", report.duration_ms);
    for c in &report.checks {
        out.push_str(", ");
        for ch in c.name.chars() {
            out.push(if is_tchar(ch) { ch } else { '_' });
        }
        out.push_str(";desc=\"");
        for ch in c.name.chars() {
            match ch {
                '"' | '\\' => {
                    out.push('\\');
                    out.push(ch);
                }
                ' '..='~' => out.push(ch),
                _ => out.push('_'),
            }
        }
        let _ = write!(out, "\";dur={}", c.duration_ms);
    }
    out
}

/// RFC 9110 `tchar`: what a header token may contain.
fn is_tchar(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(ch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::fixtures;

    #[test]
    fn every_check_has_an_entry_with_its_duration() {
        let value = header_value(&fixtures::mixed());
        assert!(value.starts_with("run;dur=12.4, "));
        assert!(value.contains(r#"orders__db_write;desc="orders::db_write";dur=3.25"#));
        assert_eq!(value.matches(";dur=").count(), 6);
        assert!(http::HeaderValue::from_str(&value).is_ok());
    }

    #[test]
    fn odd_names_still_make_a_valid_header() {
        let mut report = fixtures::passing();
        report.checks[0].name = "naïve \"quoted\"\\name".into();
        let value = header_value(&report);
        assert!(
            value.contains(r#"na_ve__quoted__name;desc="na_ve \"quoted\"\\name""#),
            "{value}"
        );
        assert!(value.bytes().all(|b| (b' '..=b'~').contains(&b)));
    }
}
