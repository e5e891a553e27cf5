//! The deploy gate: fetch every endpoint concurrently, poll while `--wait` allows, and
//! decide pass (0), fail (1) or error (2).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use reqwest::Url;
use smoketest_core::Status;

use crate::fetch::{Answer, Client, Fetched};

/// The decision, and the process exit code it maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Every endpoint answered a passing report (of the required release).
    Pass,
    /// Nothing failed, but some endpoint gave no report: nothing can be decided.
    Error,
    /// An endpoint answered and its checks failed, or it runs another release.
    Fail,
}

impl Verdict {
    /// 0, 1 or 2.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Pass => 0,
            Verdict::Fail => 1,
            Verdict::Error => 2,
        }
    }

    /// `pass`, `fail` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Error => "error",
        }
    }
}

/// One endpoint's part in the decision.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The URL asked.
    pub url: Url,
    /// What it answered; `None` when the decision was made before it answered.
    pub fetched: Option<Fetched>,
    /// Its verdict; `None` when not awaited.
    pub verdict: Option<Verdict>,
    /// Whether its report carries the required release (`None` without
    /// `--require-release` or without a report).
    pub release_matches: Option<bool>,
}

/// The outcome of `smoketest check`.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The overall verdict.
    pub verdict: Verdict,
    /// Each endpoint, in the order given.
    pub endpoints: Vec<Endpoint>,
    /// How many times the endpoints were asked (1 without `--wait`).
    pub polls: u32,
    /// Time to the decision.
    pub elapsed: Duration,
    /// The release every endpoint had to report.
    pub require_release: Option<String>,
    /// The `--wait` budget, if any.
    pub wait: Option<Duration>,
}

/// What the gate needs to know.
#[derive(Debug, Clone)]
pub struct Gate {
    /// The client.
    pub client: Client,
    /// Endpoints to ask.
    pub urls: Vec<Url>,
    /// Budget of one round (`--timeout`).
    pub timeout: Duration,
    /// Poll until pass or this much time has passed.
    pub wait: Option<Duration>,
    /// Pause between polls.
    pub interval: Duration,
    /// Release every endpoint must report.
    pub require_release: Option<String>,
    /// Print a line to standard error when the state changes between polls (for logs,
    /// where there is no spinner).
    pub log_progress: bool,
}

impl Gate {
    /// Run the gate; `progress` gets a one-line status for the spinner.
    pub async fn run(&self, progress: Arc<Mutex<String>>) -> Decision {
        let started = Instant::now();
        let wait_deadline = self.wait.map(|w| started + w);
        let mut polls = 0;
        let mut last: Vec<Option<Endpoint>> = vec![None; self.urls.len()];
        let mut last_state = String::new();
        loop {
            polls += 1;
            *progress.lock().unwrap() = match self.wait {
                Some(_) => format!("poll {polls}: asking {} endpoint(s)", self.urls.len()),
                None => format!("asking {} endpoint(s)", self.urls.len()),
            };
            let round_deadline = match wait_deadline {
                Some(deadline) => deadline.min(Instant::now() + self.timeout),
                None => Instant::now() + self.timeout,
            };
            let results = self.round(round_deadline).await;
            for (slot, result) in last.iter_mut().zip(results) {
                // An answer cut short by the wait deadline says nothing new: keep the last one.
                let cut = result.fetched.as_ref().is_some_and(|f| f.cut_by_deadline);
                if !(cut && slot.is_some()) {
                    *slot = Some(result);
                }
            }
            let endpoints: Vec<Endpoint> = last.iter().flatten().cloned().collect();
            let verdict = overall(&endpoints);
            let now = Instant::now();
            let done = match wait_deadline {
                None => true,
                Some(deadline) => verdict == Verdict::Pass || now + self.interval >= deadline,
            };
            if done {
                return Decision {
                    verdict,
                    endpoints,
                    polls,
                    elapsed: started.elapsed(),
                    require_release: self.require_release.clone(),
                    wait: self.wait,
                };
            }
            let state = waiting_state(&endpoints);
            if self.log_progress && state != last_state {
                eprintln!(
                    "smoketest: {state} ({} elapsed; polling until pass or {} have passed)",
                    crate::output::format_duration(started.elapsed()),
                    humantime::format_duration(self.wait.unwrap_or_default()),
                );
            }
            *progress.lock().unwrap() = format!("poll {polls}: {state}");
            last_state = state;
            tokio::time::sleep(self.interval).await;
        }
    }

    /// Ask every endpoint once (with retries), concurrently. Without `--wait`, the first
    /// failing report decides and the others are not awaited.
    async fn round(&self, deadline: Instant) -> Vec<Endpoint> {
        let mut results: Vec<Endpoint> = self
            .urls
            .iter()
            .map(|url| Endpoint {
                url: url.clone(),
                fetched: None,
                verdict: None,
                release_matches: None,
            })
            .collect();
        let mut pending: FuturesUnordered<_> = self
            .urls
            .iter()
            .enumerate()
            .map(|(i, url)| {
                let client = &self.client;
                async move { (i, client.fetch(url, deadline).await) }
            })
            .collect();
        while let Some((i, fetched)) = pending.next().await {
            let (verdict, release_matches) = judge(&fetched, self.require_release.as_deref());
            let endpoint = &mut results[i];
            endpoint.fetched = Some(fetched);
            endpoint.verdict = Some(verdict);
            endpoint.release_matches = release_matches;
            if verdict == Verdict::Fail && self.wait.is_none() {
                break;
            }
        }
        results
    }
}

/// While waiting: how many endpoints pass, and what the others say.
fn waiting_state(endpoints: &[Endpoint]) -> String {
    let passing = endpoints
        .iter()
        .filter(|e| e.verdict == Some(Verdict::Pass))
        .count();
    let mut state = format!("{passing} of {} endpoint(s) pass", endpoints.len());
    for endpoint in endpoints
        .iter()
        .filter(|e| e.verdict != Some(Verdict::Pass))
    {
        let url = crate::cli::display_url(&endpoint.url);
        let what = match endpoint.fetched.as_ref().map(|f| &f.answer) {
            Some(Answer::Error(error)) => error.kind.clone(),
            Some(Answer::Report { report, .. }) if report.status == Status::Fail => {
                let failed: Vec<&str> = report
                    .checks
                    .iter()
                    .filter(|c| c.status == Status::Fail)
                    .map(|c| c.name.as_str())
                    .collect();
                if failed.is_empty() {
                    "fail".to_string()
                } else {
                    format!("fail {}", failed.join(", "))
                }
            }
            Some(Answer::Report { report, .. }) => format!(
                "release {}",
                report.release_id.as_deref().unwrap_or("(none)")
            ),
            None => "no answer".to_string(),
        };
        state.push_str(&format!("; {url}: {what}"));
    }
    state
}

/// One endpoint's verdict, and whether it runs the required release.
fn judge(fetched: &Fetched, require_release: Option<&str>) -> (Verdict, Option<bool>) {
    match &fetched.answer {
        Answer::Error(_) => (Verdict::Error, None),
        Answer::Report { report, .. } => {
            let release_matches =
                require_release.map(|id| report.release_id.as_deref() == Some(id));
            let verdict = if report.status == Status::Fail || release_matches == Some(false) {
                Verdict::Fail
            } else {
                Verdict::Pass
            };
            (verdict, release_matches)
        }
    }
}

/// Fail beats error beats pass: a replica that answered "failed" is evidence enough to
/// roll back, whatever the others did. Endpoints not awaited do not count.
fn overall(endpoints: &[Endpoint]) -> Verdict {
    endpoints
        .iter()
        .filter_map(|e| e.verdict)
        .max()
        .unwrap_or(Verdict::Error)
}
