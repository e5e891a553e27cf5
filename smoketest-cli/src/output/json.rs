//! `--format json`: one object with the decision, its exit code, and every endpoint's
//! report or error.

use serde::Serialize;
use smoketest_core::Report;

use crate::cli::display_url;
use crate::fetch::{Answer, EndpointError};
use crate::gate::Decision;

#[derive(Serialize)]
struct Output<'a> {
    decision: &'static str,
    exit_code: u8,
    elapsed_ms: f64,
    polls: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    require_release: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<&'a str>,
    endpoints: Vec<EndpointOutput<'a>>,
}

#[derive(Serialize)]
struct EndpointOutput<'a> {
    url: String,
    /// The address asked, with `--all-replicas`.
    #[serde(skip_serializing_if = "Option::is_none")]
    replica: Option<String>,
    /// `pass`, `fail`, `error`, or `not_awaited`.
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_status: Option<u16>,
    attempts: u32,
    elapsed_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    release_matches: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_matches: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<&'a Report>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a EndpointError>,
}

/// Render the decision as pretty JSON.
pub fn render(decision: &Decision) -> String {
    let endpoints = decision
        .endpoints
        .iter()
        .map(|e| {
            let mut out = EndpointOutput {
                url: display_url(&e.url),
                replica: e.replica.map(|a| a.to_string()),
                outcome: e.verdict.map_or("not_awaited", |v| v.as_str()),
                http_status: None,
                attempts: 0,
                elapsed_ms: 0.0,
                release_matches: e.release_matches,
                service_matches: e.service_matches,
                report: None,
                // A report that is no verdict (`no_checks`) comes with the reason.
                error: e.problem.as_ref(),
            };
            if let Some(fetched) = &e.fetched {
                out.attempts = fetched.attempts;
                out.elapsed_ms = smoketest_core::report::millis(fetched.elapsed);
                match &fetched.answer {
                    Answer::Report {
                        http_status,
                        report,
                    } => {
                        out.http_status = Some(*http_status);
                        out.report = Some(report);
                    }
                    Answer::Error(error) => {
                        out.http_status = error.http_status;
                        out.error = Some(error);
                    }
                }
            }
            out
        })
        .collect();
    let output = Output {
        decision: decision.verdict.as_str(),
        exit_code: decision.verdict.exit_code(),
        elapsed_ms: smoketest_core::report::millis(decision.elapsed),
        polls: decision.polls,
        require_release: decision.require_release.as_deref(),
        service: decision.service.as_deref(),
        endpoints,
    };
    let mut text = serde_json::to_string_pretty(&output).expect("the output always serializes");
    text.push('\n');
    text
}
