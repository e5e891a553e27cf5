//! `smoketest watch`: poll forever, print one line each time an endpoint changes state.

use std::time::{Instant, SystemTime};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde::Serialize;
use smoketest_core::Status;

use crate::cli::{WatchArgs, WatchFormat, display_url};
use crate::fetch::{Answer, Client, EndpointError, Fetched};
use crate::output::{Style, redact, use_color};

/// An endpoint's state, as far as a change is concerned: timings and messages may vary
/// from poll to poll without it being news.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Pass,
    Fail {
        failed: Vec<(String, String)>,
        count: usize,
    },
    Error {
        kind: String,
        http_status: Option<u16>,
    },
}

impl State {
    fn of(fetched: &Fetched) -> State {
        match &fetched.answer {
            Answer::Report { report, .. } if report.status == Status::Fail => State::Fail {
                failed: report
                    .checks
                    .iter()
                    .filter(|c| c.status == Status::Fail)
                    .map(|c| {
                        let kind = c.error.as_ref().map_or("error", |e| e.kind.as_str());
                        (c.name.to_string(), kind.to_string())
                    })
                    .collect(),
                count: report.summary.failed,
            },
            Answer::Report { .. } => State::Pass,
            Answer::Error(e) => State::Error {
                kind: e.kind.clone(),
                http_status: e.http_status,
            },
        }
    }
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    url: String,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    release_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failed: Vec<FailedCheck<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a EndpointError>,
}

#[derive(Serialize)]
struct FailedCheck<'a> {
    name: &'a str,
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

/// Run until interrupted; returns the exit code (0).
pub async fn run(args: WatchArgs, client: Client) -> u8 {
    let style = Style {
        color: use_color(args.color.color),
    };
    let mut last: Vec<Option<State>> = vec![None; args.urls.len()];
    let mut stop = Box::pin(interrupted());
    loop {
        let deadline = Instant::now() + args.client.timeout;
        let client = &client;
        // Each endpoint's state is printed as soon as it is known: a dead replica waiting
        // out its timeout does not hold back the healthy ones' lines.
        let mut polls: FuturesUnordered<_> = args
            .urls
            .iter()
            .enumerate()
            .map(|(i, url)| async move { (i, client.fetch(url, deadline, None).await) })
            .collect();
        loop {
            let (i, fetched) = tokio::select! {
                next = polls.next() => match next {
                    Some(done) => done,
                    None => break,
                },
                () = &mut stop => return 0,
            };
            let state = State::of(&fetched);
            if last[i].as_ref() != Some(&state) {
                let url = display_url(&args.urls[i]);
                let line = match args.format {
                    WatchFormat::Human => human_line(&url, &fetched, style),
                    WatchFormat::Json => json_line(&url, &fetched),
                };
                println!("{}", redact(line, args.client.token.as_deref()));
                last[i] = Some(state);
            }
        }
        drop(polls);
        tokio::select! {
            () = tokio::time::sleep(args.interval) => {}
            () = &mut stop => return 0,
        }
    }
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn human_line(url: &str, fetched: &Fetched, style: Style) -> String {
    let time = now();
    match &fetched.answer {
        Answer::Report { report, .. } if report.status == Status::Fail => {
            let failed: Vec<String> = report
                .checks
                .iter()
                .filter(|c| c.status == Status::Fail)
                .map(|c| match &c.error {
                    Some(e) => match &e.message {
                        Some(m) => format!("{} ({}: {m})", c.name, e.kind),
                        None => format!("{} ({})", c.name, e.kind),
                    },
                    None => c.name.to_string(),
                })
                .collect();
            let what = if failed.is_empty() {
                format!(
                    "{} of {} checks failed",
                    report.summary.failed, report.summary.total
                )
            } else {
                failed.join(", ")
            };
            format!("{time}  {url}  {}  {what}", style.fail("FAIL "))
        }
        Answer::Report { report, .. } => format!(
            "{time}  {url}  {}  {}/{} checks passed{}",
            style.pass("PASS "),
            report.summary.passed + report.summary.warned,
            report.summary.total,
            report
                .release_id
                .as_deref()
                .map(|r| format!(" (release {r})"))
                .unwrap_or_default()
        ),
        Answer::Error(e) => format!(
            "{time}  {url}  {}  {}{}",
            style.warn("ERROR"),
            crate::output::human::error_line(e),
            e.suggestion
                .as_deref()
                .map(|s| format!(" → {s}"))
                .unwrap_or_default()
        ),
    }
}

fn json_line(url: &str, fetched: &Fetched) -> String {
    let mut line = Line {
        time: now(),
        url: url.to_string(),
        state: "error",
        service: None,
        release_id: None,
        failed: Vec::new(),
        error: None,
    };
    match &fetched.answer {
        Answer::Report { report, .. } => {
            line.state = report.status.as_str();
            line.service = report.service.as_deref();
            line.release_id = report.release_id.as_deref();
            line.failed = report
                .checks
                .iter()
                .filter(|c| c.status == Status::Fail)
                .map(|c| FailedCheck {
                    name: &c.name,
                    kind: c.error.as_ref().map_or("error", |e| e.kind.as_str()),
                    message: c.error.as_ref().and_then(|e| e.message.as_deref()),
                })
                .collect();
        }
        Answer::Error(e) => line.error = Some(e),
    }
    serde_json::to_string(&line).expect("a watch line always serializes")
}

/// Resolves on Ctrl-C or SIGTERM.
async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
