//! The JUnit XML writer, for CI systems that display test reports (GitLab, Jenkins, GitHub
//! test-report actions): a deploy job saves `?format=junit` as an artifact and every check
//! shows up as a test case.
//!
//! One `<testsuite>` named after the service holds one `<testcase>` per check, with its
//! duration; a scenario check is followed by one `<testcase>` per step (and per teardown),
//! named `{check} / {n}. {step}`, with the check's name as `classname`, so a CI pane shows
//! which step failed and which were skipped. A failed assertion — or any failure a built-in check diagnosed, such as
//! `dns_failure` or `http_status` — is a `<failure>`: the check ran and found the service
//! wrong. A timeout, panic, unexpected error, failed cleanup, commit behind the runner's
//! back or missing configuration is an `<error>`: the check itself could not do its job.
//! Either carries the error kind as `type` and the message and suggestion when the caller
//! may see them. Skipped checks are `<skipped>`; a warning passes, with the warning in
//! `<system-out>`. Written with [`quick_junit`], the serializer of cargo-nextest.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use smoketest_core::{format::junit, report::CheckReport, Report, Status};
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
//! let xml = String::from_utf8(junit::write(&report)).unwrap();
//! assert!(xml.contains("<testcase name=\"db::ping\""));
//! ```

use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};

use crate::{Report, Status};

/// Error kinds that mean the check could not do its job, rather than finding the service
/// wrong: JUnit `<error>` instead of `<failure>`.
const ERROR_KINDS: &[&str] = &[
    "error",
    "timeout",
    "panic",
    "cleanup",
    "committed",
    "config",
];

/// The report as JUnit XML. See the [module documentation](self).
pub fn write(report: &Report) -> Vec<u8> {
    let name = report.service.as_deref().unwrap_or("smoketest");
    let mut junit = quick_junit::Report::new(format!("{name} smoke checks"));
    let mut suite = TestSuite::new(name);
    let started = chrono::DateTime::parse_from_rfc3339(&report.started_at).ok();
    if let Some(started) = started {
        junit.set_timestamp(started);
        suite.set_timestamp(started);
    }
    let run_time = duration(report.duration_ms);
    junit.set_time(run_time);
    suite.set_time(run_time);
    for (key, value) in [
        ("service", &report.service),
        ("version", &report.version),
        ("release_id", &report.release_id),
    ] {
        if let Some(value) = value {
            suite.add_property(Property::new(key, value.as_str()));
        }
    }
    if report.cached {
        suite.add_property(Property::new("cached", "true"));
        if let Some(age) = report.age_ms {
            suite.add_property(Property::new("age_ms", age.to_string()));
        }
    }

    for c in &report.checks {
        let status = match c.status {
            Status::Pass | Status::Warn => TestCaseStatus::success(),
            Status::Skip => {
                let mut status = TestCaseStatus::skipped();
                if let Some(m) = &c.message {
                    status.set_message(m.as_str());
                }
                status
            }
            Status::Fail => failure(c.error.as_ref()),
        };
        let mut case = TestCase::new(c.name.as_str(), status);
        case.set_classname(name);
        case.set_time(duration(c.duration_ms));
        if c.status == Status::Warn {
            let warning = c.message.as_deref().unwrap_or("passed with a warning");
            case.set_system_out(format!("warning: {warning}"));
        }
        if !c.tags.is_empty() {
            case.add_property(Property::new("tags", c.tags.join(",")));
        }
        suite.add_test_case(case);
        for step in step_cases(c) {
            suite.add_test_case(step);
        }
    }
    junit.add_test_suite(suite);
    let mut out = junit
        .to_string()
        .expect("quick-junit serializes any report to a String")
        .into_bytes();
    if out.last() != Some(&b'\n') {
        out.push(b'\n');
    }
    out
}

/// `<failure>` or `<error>` for a failed check or step, by its error kind.
fn failure(error: Option<&crate::report::ErrorReport>) -> TestCaseStatus {
    let (kind, message, suggestion) = match error {
        Some(e) => (
            e.kind.as_str(),
            e.message.as_deref(),
            e.suggestion.as_deref(),
        ),
        None => ("error", None, None),
    };
    let junit_kind = if ERROR_KINDS.contains(&kind) {
        NonSuccessKind::Error
    } else {
        NonSuccessKind::Failure
    };
    let mut status = TestCaseStatus::non_success(junit_kind);
    status.set_type(kind);
    status.set_message(message.unwrap_or(kind));
    let description: Vec<&str> = message.into_iter().chain(suggestion).collect();
    if !description.is_empty() {
        status.set_description(description.join("\n\n"));
    }
    status
}

/// One test case per step of a scenario check (scenario.rs), teardowns included.
fn step_cases(c: &crate::report::CheckReport) -> Vec<TestCase> {
    let mut number = 0;
    c.steps
        .iter()
        .map(|s| {
            let status = match s.status {
                Status::Pass | Status::Warn => TestCaseStatus::success(),
                Status::Skip => {
                    let mut status = TestCaseStatus::skipped();
                    if let Some(m) = &s.message {
                        status.set_message(m.as_str());
                    }
                    status
                }
                Status::Fail => failure(s.error.as_ref()),
            };
            let name = if s.teardown {
                format!("{} / {}", c.name, s.name)
            } else {
                number += 1;
                format!("{} / {number}. {}", c.name, s.name)
            };
            let mut case = TestCase::new(name, status);
            case.set_classname(c.name.as_str());
            case.set_time(duration(s.duration_ms));
            if let (Some(method), Some(path)) = (&s.method, &s.path) {
                case.add_property(Property::new("request", format!("{method} {path}")));
            }
            if let Some(code) = s.status_code {
                case.add_property(Property::new("status_code", code.to_string()));
            }
            if let Some(persona) = &s.persona {
                case.add_property(Property::new("persona", persona.as_str()));
            }
            case
        })
        .collect()
}

fn duration(ms: f64) -> Duration {
    Duration::from_secs_f64((ms / 1000.0).max(0.0))
}

#[cfg(test)]
mod tests {
    use quick_junit::Report as JunitReport;

    use super::*;
    use crate::Detail;
    use crate::format::fixtures;

    fn parse(report: &Report) -> JunitReport {
        let xml = String::from_utf8(write(report)).unwrap();
        JunitReport::deserialize_from_str(&xml)
            .unwrap_or_else(|e| panic!("not JUnit XML: {e}\n{xml}"))
    }

    fn case<'a>(suite: &'a TestSuite, name: &str) -> &'a TestCase {
        suite
            .test_cases
            .iter()
            .find(|c| c.name.as_str() == name)
            .unwrap_or_else(|| panic!("no test case {name}"))
    }

    #[test]
    fn every_status_maps_to_its_junit_element() {
        let junit = parse(&fixtures::mixed());
        assert_eq!(junit.test_suites.len(), 1);
        let suite = &junit.test_suites[0];
        assert_eq!(suite.name.as_str(), "orders-api");
        assert_eq!(suite.tests, 5);
        assert_eq!(suite.failures, 1);
        assert_eq!(suite.errors, 1);
        assert_eq!(suite.skipped, 1);

        assert!(matches!(
            case(suite, "db::ping").status,
            TestCaseStatus::Success { .. }
        ));
        let warn = case(suite, "disk::free");
        assert!(matches!(warn.status, TestCaseStatus::Success { .. }));
        assert_eq!(
            warn.system_out.as_ref().map(|s| s.as_str()),
            Some("warning: only 9% free")
        );

        match &case(suite, "orders::db_write").status {
            TestCaseStatus::NonSuccess {
                kind,
                message,
                ty,
                description,
                ..
            } => {
                assert_eq!(*kind, NonSuccessKind::Failure);
                assert_eq!(ty.as_ref().unwrap().as_str(), "assertion");
                assert_eq!(
                    message.as_ref().unwrap().as_str(),
                    "expected 1 row, found 0 <script>alert(\"x\")</script>"
                );
                assert!(
                    description
                        .as_ref()
                        .unwrap()
                        .as_str()
                        .contains("Look at <b>the</b> logs & retry.")
                );
            }
            other => panic!("assertion failure became {other:?}"),
        }
        match &case(suite, "payments::api").status {
            TestCaseStatus::NonSuccess { kind, ty, .. } => {
                assert_eq!(*kind, NonSuccessKind::Error);
                assert_eq!(ty.as_ref().unwrap().as_str(), "timeout");
            }
            other => panic!("timeout became {other:?}"),
        }
        match &case(suite, "mail::smtp").status {
            TestCaseStatus::Skipped { message, .. } => {
                assert_eq!(message.as_ref().unwrap().as_str(), "SMTP_HOST is not set");
            }
            other => panic!("skip became {other:?}"),
        }
        let time = case(suite, "db::ping").time.unwrap();
        // JUnit XML carries seconds with three decimals.
        assert_eq!(time.as_millis(), 3);
    }

    #[test]
    fn passing_report_has_no_failures() {
        let junit = parse(&fixtures::passing());
        let suite = &junit.test_suites[0];
        assert_eq!((suite.tests, suite.failures, suite.errors), (3, 0, 0));
        assert!(
            suite
                .properties
                .iter()
                .any(|p| p.name.as_str() == "release_id" && p.value.as_str() == "9f2c1ab")
        );
    }

    #[test]
    fn anonymous_detail_gives_the_kind_as_the_message() {
        let junit = parse(&fixtures::mixed().restrict(Detail::Checks));
        match &case(&junit.test_suites[0], "orders::db_write").status {
            TestCaseStatus::NonSuccess {
                message,
                description,
                ..
            } => {
                assert_eq!(message.as_ref().unwrap().as_str(), "assertion");
                assert!(description.is_none());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_scenario_has_one_test_case_per_step_and_teardown() {
        let junit = parse(&fixtures::scenario());
        let suite = &junit.test_suites[0];
        assert_eq!(
            (suite.tests, suite.failures, suite.skipped),
            (5, 2, 1),
            "the check, 3 steps, 1 teardown"
        );
        let read = case(suite, "orders::lifecycle[clerk] / 2. read");
        assert_eq!(
            read.classname.as_ref().unwrap().as_str(),
            "orders::lifecycle[clerk]"
        );
        assert!(matches!(read.status, TestCaseStatus::NonSuccess { .. }));
        assert!(
            read.properties
                .iter()
                .any(|p| p.name.as_str() == "status_code" && p.value.as_str() == "500")
        );
        assert!(matches!(
            case(suite, "orders::lifecycle[clerk] / 3. list").status,
            TestCaseStatus::Skipped { .. }
        ));
        assert!(matches!(
            case(
                suite,
                "orders::lifecycle[clerk] / teardown: DELETE /orders/7"
            )
            .status,
            TestCaseStatus::Success { .. }
        ));
    }

    #[test]
    fn panics_and_errors_are_errors_and_diagnosed_failures_are_failures() {
        let mut report = fixtures::passing();
        report.checks = vec![
            fixtures::failing("a", "panic", "boom"),
            fixtures::failing("b", "error", "io"),
            fixtures::failing("c", "dns_failure", "no such host"),
            fixtures::failing("d", "http_status", "503"),
        ];
        let junit = parse(&report);
        let suite = &junit.test_suites[0];
        assert_eq!((suite.errors, suite.failures), (2, 2));
    }
}
