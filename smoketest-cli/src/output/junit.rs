//! `--format junit`: JUnit XML for CI test-report panes. One test suite per endpoint (per
//! replica with `--all-replicas`), one test case per check, plus a `release_id` case under
//! `--require-release`, a `service` case under `--service`, and an `endpoint` error case
//! when an endpoint gave no report or a report that decides nothing (`no_checks`).

use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use smoketest_core::Status;

use crate::fetch::{Answer, EndpointError};
use crate::gate::{Decision, display_target};

/// An error test case named `endpoint` for an endpoint that gave no verdict.
fn error_case(error: &EndpointError, classname: &str) -> TestCase {
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
    status.set_type(error.kind.as_str());
    status.set_message(error.message.as_str());
    if let Some(suggestion) = &error.suggestion {
        status.set_description(suggestion.as_str());
    }
    let mut case = TestCase::new("endpoint", status);
    case.set_classname(classname);
    case
}

/// Render the decision as JUnit XML.
pub fn render(decision: &Decision) -> String {
    let mut junit = Report::new("smoketest");
    junit.set_time(decision.elapsed);
    for endpoint in &decision.endpoints {
        let url = display_target(endpoint);
        let mut suite = TestSuite::new(url.as_str());
        let Some(fetched) = &endpoint.fetched else {
            let mut status = TestCaseStatus::skipped();
            status.set_message("not awaited: another endpoint already failed");
            suite.add_test_case(TestCase::new("endpoint", status));
            junit.add_test_suite(suite);
            continue;
        };
        suite.set_time(fetched.elapsed);
        match &fetched.answer {
            Answer::Error(error) => {
                suite.add_test_case(error_case(error, url.as_str()));
            }
            Answer::Report { report, .. } => {
                let classname = report.service.clone().unwrap_or_else(|| url.clone());
                if let Some(problem) = &endpoint.problem {
                    suite.add_test_case(error_case(problem, classname.as_str()));
                }
                if let (Some(matches), Some(required)) =
                    (endpoint.service_matches, &decision.service)
                {
                    let status = if matches {
                        TestCaseStatus::success()
                    } else {
                        let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                        status.set_type("service_mismatch");
                        status.set_message(format!(
                            "is service {}, not {required}",
                            report.service.as_deref().unwrap_or("(none reported)")
                        ));
                        status
                    };
                    let mut case = TestCase::new("service", status);
                    case.set_classname(classname.as_str());
                    suite.add_test_case(case);
                }
                if let (Some(matches), Some(required)) =
                    (endpoint.release_matches, &decision.require_release)
                {
                    let status = if matches {
                        TestCaseStatus::success()
                    } else {
                        let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                        status.set_type("release_mismatch");
                        status.set_message(format!(
                            "runs release {}, not {required}",
                            report.release_id.as_deref().unwrap_or("(none reported)")
                        ));
                        status
                    };
                    let mut case = TestCase::new("release_id", status);
                    case.set_classname(classname.as_str());
                    suite.add_test_case(case);
                }
                for check in &report.checks {
                    let status = match check.status {
                        Status::Pass => TestCaseStatus::success(),
                        Status::Warn => TestCaseStatus::success(),
                        Status::Skip => {
                            let mut status = TestCaseStatus::skipped();
                            if let Some(message) = &check.message {
                                status.set_message(message.as_str());
                            }
                            status
                        }
                        Status::Fail => {
                            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                            if let Some(error) = &check.error {
                                status.set_type(error.kind.as_str());
                                status.set_message(
                                    error.message.as_deref().unwrap_or(error.kind.as_str()),
                                );
                                if let Some(suggestion) = &error.suggestion {
                                    status.set_description(suggestion.as_str());
                                }
                            }
                            status
                        }
                    };
                    let mut case = TestCase::new(check.name.as_str(), status);
                    case.set_classname(classname.as_str());
                    case.set_time(Duration::from_secs_f64(check.duration_ms.max(0.0) / 1000.0));
                    if check.status == Status::Warn
                        && let Some(message) = &check.message
                    {
                        case.set_system_out(format!("warning: {message}"));
                    }
                    suite.add_test_case(case);
                }
                if report.checks.is_empty() && endpoint.problem.is_none() {
                    // The endpoint hides check names from anonymous callers: one case for the run.
                    let status = if report.status == Status::Fail {
                        let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                        status.set_message(format!(
                            "{} of {} checks failed",
                            report.summary.failed, report.summary.total
                        ));
                        status
                    } else {
                        TestCaseStatus::success()
                    };
                    let mut case = TestCase::new("smoketest", status);
                    case.set_classname(classname.as_str());
                    suite.add_test_case(case);
                }
            }
        }
        junit.add_test_suite(suite);
    }
    junit
        .to_string()
        .expect("the JUnit report always serializes")
}
