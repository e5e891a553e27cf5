//! The summary for people: one line per endpoint, one line per failed check, the
//! decision last.

use std::fmt::Write;

use smoketest_core::Status;

use super::{Style, format_duration};
use crate::fetch::{Answer, EndpointError};
use crate::gate::{Decision, Verdict, display_target};

/// Render the decision.
pub fn render(decision: &Decision, style: Style) -> String {
    let mut out = String::new();
    for endpoint in &decision.endpoints {
        let url = display_target(endpoint);
        let Some(fetched) = &endpoint.fetched else {
            let _ = writeln!(
                out,
                "{}  {url}  not awaited: another endpoint already failed",
                style.dim("SKIP ")
            );
            continue;
        };
        let label = match endpoint.verdict {
            Some(Verdict::Pass) => style.pass("PASS "),
            Some(Verdict::Fail) => style.fail("FAIL "),
            _ => style.warn("ERROR"),
        };
        match &fetched.answer {
            Answer::Report {
                http_status,
                report,
            } => {
                let mut who = Vec::new();
                if let Some(service) = &report.service {
                    who.push(service.clone());
                }
                if let Some(version) = &report.version {
                    who.push(version.clone());
                }
                if let Some(release) = &report.release_id {
                    who.push(format!("release {release}"));
                }
                let s = &report.summary;
                let mut counts = format!("{}/{} checks passed", s.passed + s.warned, s.total);
                if s.warned > 0 {
                    let _ = write!(counts, ", {} warned", s.warned);
                }
                if s.failed > 0 {
                    let _ = write!(counts, ", {} failed", s.failed);
                }
                if s.skipped > 0 {
                    let _ = write!(counts, ", {} skipped", s.skipped);
                }
                let cached = match (report.cached, report.age_ms) {
                    (true, Some(age)) => format!(
                        ", cached {} old",
                        format_duration(std::time::Duration::from_secs_f64(age.max(0.0) / 1000.0))
                    ),
                    (true, None) => ", cached".to_string(),
                    _ => String::new(),
                };
                let _ = writeln!(
                    out,
                    "{label}  {url}  {}  {counts}  (HTTP {http_status}, {}{cached})",
                    if who.is_empty() {
                        "unnamed service".to_string()
                    } else {
                        who.join(" ")
                    },
                    format_duration(fetched.elapsed),
                );
                if let (Some(false), Some(required)) =
                    (endpoint.release_matches, &decision.require_release)
                {
                    let _ = writeln!(
                        out,
                        "       {} runs release {}, not {required}: an old (or new) replica is still answering",
                        style.fail("[-]release"),
                        report.release_id.as_deref().unwrap_or("(none reported)"),
                    );
                }
                if let (Some(false), Some(required)) = (endpoint.service_matches, &decision.service)
                {
                    let _ = writeln!(
                        out,
                        "       {} is service {}, not {required}: the URL points at another service",
                        style.fail("[-]service"),
                        report.service.as_deref().unwrap_or("(none reported)"),
                    );
                }
                if let Some(problem) = &endpoint.problem {
                    let _ = writeln!(out, "       {}", error_line(problem));
                    if let Some(suggestion) = &problem.suggestion {
                        let _ = writeln!(out, "         → {suggestion}");
                    }
                }
                for check in &report.checks {
                    match check.status {
                        Status::Fail => {
                            let _ =
                                write!(out, "       {}", style.fail(&format!("[-]{}", check.name)));
                            match &check.error {
                                Some(e) => {
                                    let _ = write!(out, "  {}", e.kind);
                                    if let Some(message) = &e.message {
                                        let _ = write!(out, ": {message}");
                                    }
                                    let _ = writeln!(out);
                                    if let Some(suggestion) = &e.suggestion {
                                        let _ = writeln!(out, "         → {suggestion}");
                                    }
                                }
                                None => {
                                    let _ = writeln!(out);
                                }
                            }
                        }
                        Status::Warn => {
                            let _ = writeln!(
                                out,
                                "       {}  {}",
                                style.warn(&format!("[!]{}", check.name)),
                                check.message.as_deref().unwrap_or("warning")
                            );
                        }
                        Status::Pass | Status::Skip => {}
                    }
                }
                if report.status == Status::Fail && report.checks.is_empty() {
                    let _ = writeln!(
                        out,
                        "       the endpoint shows no check details to anonymous callers: pass --token to see what failed"
                    );
                }
            }
            Answer::Error(error) => {
                let _ = writeln!(out, "{label}  {url}  {}", error_line(error));
                if !error.phases.is_empty() {
                    let layers: Vec<String> = error
                        .phases
                        .layers()
                        .map(|(name, ms)| format!("{name} {ms:.1}ms"))
                        .collect();
                    let _ = writeln!(out, "         layers that worked: {}", layers.join(", "));
                }
                if let Some(suggestion) = &error.suggestion {
                    let _ = writeln!(out, "         → {suggestion}");
                }
            }
        }
    }
    let polls = if decision.wait.is_some() {
        format!(
            " after {} poll{}",
            decision.polls,
            if decision.polls == 1 { "" } else { "s" }
        )
    } else {
        String::new()
    };
    let elapsed = format_duration(decision.elapsed);
    let _ = match decision.verdict {
        Verdict::Pass => writeln!(out, "{} in {elapsed}{polls} (exit 0)", style.pass("PASS")),
        Verdict::Fail => writeln!(
            out,
            "{}: the service answered and failed; roll back ({elapsed}{polls}, exit 1)",
            style.fail("FAIL")
        ),
        Verdict::Error => writeln!(
            out,
            "{}: no verdict: an endpoint gave no report, or one that proves nothing ({elapsed}{polls}, exit 2)",
            style.warn("ERROR")
        ),
    };
    out
}

/// `kind (layer): message` for an endpoint that gave no report.
pub fn error_line(error: &EndpointError) -> String {
    match error.layer {
        Some(layer) => format!("{} ({layer} layer): {}", error.kind, error.message),
        None => format!("{}: {}", error.kind, error.message),
    }
}
