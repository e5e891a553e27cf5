//! The deploy gate: fetch every endpoint (every replica, with `--all-replicas`)
//! concurrently, poll while `--wait` allows, and decide pass (0), fail (1) or error (2).
//!
//! A report is a verdict only when it proves something: it ran at least `--min-checks`
//! checks (`no_checks` otherwise), its run started after the gate did (`stale`
//! otherwise, see [`Freshness`]), and it is of the `--service` and `--require-release`
//! asked for.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use reqwest::Url;
use smoketest_core::{Report, Status};

use crate::fetch::{Answer, Client, EndpointError, Fetched, Freshness, LayerTimes};

/// Where the README explains what to do when an endpoint ran no checks.
pub const NO_CHECKS_HELP: &str = "https://github.com/smoketest-rs/smoketest/blob/main/smoketest-cli/README.md#when-the-endpoint-ran-no-checks";

/// The longest the name resolution of `--all-replicas` may take.
const RESOLVE_BUDGET: Duration = Duration::from_secs(5);

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
    /// The address asked, with `--all-replicas`.
    pub replica: Option<SocketAddr>,
    /// What it answered; `None` when the decision was made before it answered.
    pub fetched: Option<Fetched>,
    /// Its verdict; `None` when not awaited.
    pub verdict: Option<Verdict>,
    /// Whether its report carries the required release (`None` without
    /// `--require-release` or without a report).
    pub release_matches: Option<bool>,
    /// Whether its report is of the required service (`None` without `--service` or
    /// without a report).
    pub service_matches: Option<bool>,
    /// Why a report that came is no verdict (`no_checks`).
    pub problem: Option<EndpointError>,
}

impl Endpoint {
    fn new(url: Url, replica: Option<SocketAddr>) -> Endpoint {
        Endpoint {
            url,
            replica,
            fetched: None,
            verdict: None,
            release_matches: None,
            service_matches: None,
            problem: None,
        }
    }

    fn same_target(&self, other: &Endpoint) -> bool {
        self.url == other.url && self.replica == other.replica
    }
}

/// What a report must show to pass.
#[derive(Debug, Clone, Default)]
pub struct Criteria {
    /// `--require-release`.
    pub require_release: Option<String>,
    /// `--service`.
    pub service: Option<String>,
    /// `--min-checks`.
    pub min_checks: u64,
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
    /// The service every endpoint had to report.
    pub service: Option<String>,
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
    /// What a report must show to pass.
    pub criteria: Criteria,
    /// Which reports are recent enough to decide on.
    pub freshness: Freshness,
    /// Resolve each URL's host and ask every address.
    pub all_replicas: bool,
    /// Decide on the first failing report without awaiting the others.
    pub fail_fast: bool,
    /// Print a line to standard error when the state changes between polls (for logs,
    /// where there is no spinner).
    pub log_progress: bool,
    /// Clients pinned to one replica, by host and address, reused across polls.
    pub pinned: Arc<Mutex<HashMap<(String, SocketAddr), Client>>>,
}

impl Gate {
    /// Run the gate; `progress` gets a one-line status for the spinner.
    pub async fn run(&self, progress: Arc<Mutex<String>>) -> Decision {
        let started = Instant::now();
        let wait_deadline = self.wait.map(|w| started + w);
        let mut polls = 0;
        let mut last: Vec<Endpoint> = Vec::new();
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
            // Replicas may come and go between polls: the latest round lists them.
            let endpoints: Vec<Endpoint> = results
                .into_iter()
                .map(|result| {
                    // An answer cut short by the wait deadline says nothing new: keep the last one.
                    let cut = result.fetched.as_ref().is_some_and(|f| f.cut_by_deadline);
                    match last.iter().find(|old| old.same_target(&result)) {
                        Some(old) if cut => old.clone(),
                        _ => result,
                    }
                })
                .collect();
            last = endpoints.clone();
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
                    require_release: self.criteria.require_release.clone(),
                    service: self.criteria.service.clone(),
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

    /// What to ask this round: each URL, or with `--all-replicas` each address of each
    /// URL's host (resolved again every round: pods come and go during a rollout). A name
    /// that does not resolve is an endpoint with its diagnosis already.
    async fn targets(&self, deadline: Instant) -> Vec<(Endpoint, Option<Client>)> {
        if !self.all_replicas {
            return self
                .urls
                .iter()
                .map(|url| (Endpoint::new(url.clone(), None), Some(self.client.clone())))
                .collect();
        }
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .min(RESOLVE_BUDGET);
        let overrides = self.client.overrides();
        let resolved = futures_util::future::join_all(
            self.urls
                .iter()
                .map(|url| crate::replicas::addresses(url, overrides, budget)),
        )
        .await;
        let mut targets = Vec::new();
        for (url, resolved) in self.urls.iter().zip(resolved) {
            let host = url.host_str().unwrap_or_default().to_string();
            match resolved {
                Ok(addresses) => {
                    for addr in addresses {
                        let endpoint = Endpoint::new(url.clone(), Some(addr));
                        match self.pinned_client(&host, addr) {
                            Ok(client) => targets.push((endpoint, Some(client))),
                            Err(message) => {
                                let error = EndpointError {
                                    kind: "config".into(),
                                    message,
                                    suggestion: Some(
                                        "Check --ca-cert and the TLS setup of this host.".into(),
                                    ),
                                    http_status: None,
                                    layer: None,
                                    phases: LayerTimes::default(),
                                    age_ms: None,
                                };
                                targets.push((failed(endpoint, error), None));
                            }
                        }
                    }
                }
                Err(error) => targets.push((failed(Endpoint::new(url.clone(), None), error), None)),
            }
        }
        targets
    }

    /// The client pinned to one replica, built once and reused across polls.
    fn pinned_client(&self, host: &str, addr: SocketAddr) -> Result<Client, String> {
        let mut pinned = self.pinned.lock().unwrap();
        if let Some(client) = pinned.get(&(host.to_string(), addr)) {
            return Ok(client.clone());
        }
        let client = self.client.pinned(host, addr)?;
        pinned.insert((host.to_string(), addr), client.clone());
        Ok(client)
    }

    /// Ask every endpoint once (with retries), concurrently. With `--fail-fast` (and
    /// without `--wait`), the first failing report decides and the others are not awaited.
    async fn round(&self, deadline: Instant) -> Vec<Endpoint> {
        let targets = self.targets(deadline).await;
        let mut results = Vec::with_capacity(targets.len());
        let mut clients = Vec::new();
        for (i, (endpoint, client)) in targets.into_iter().enumerate() {
            if let Some(client) = client {
                clients.push((i, endpoint.url.clone(), client));
            }
            results.push(endpoint);
        }
        let freshness = &self.freshness;
        let mut pending: FuturesUnordered<_> = clients
            .into_iter()
            .map(|(i, url, client)| async move {
                (i, client.fetch(&url, deadline, Some(freshness)).await)
            })
            .collect();
        while let Some((i, fetched)) = pending.next().await {
            let judgement = judge(&fetched, &self.criteria);
            let endpoint = &mut results[i];
            endpoint.fetched = Some(fetched);
            endpoint.verdict = Some(judgement.verdict);
            endpoint.release_matches = judgement.release_matches;
            endpoint.service_matches = judgement.service_matches;
            endpoint.problem = judgement.problem;
            if judgement.verdict == Verdict::Fail && self.fail_fast && self.wait.is_none() {
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
        let url = display_target(endpoint);
        let what = match endpoint.fetched.as_ref().map(|f| &f.answer) {
            Some(Answer::Error(error)) => error.kind.clone(),
            Some(Answer::Report { .. }) if endpoint.problem.is_some() => endpoint
                .problem
                .as_ref()
                .map(|p| p.kind.clone())
                .unwrap_or_default(),
            Some(Answer::Report { report, .. }) if endpoint.service_matches == Some(false) => {
                format!(
                    "service {}",
                    report.service.as_deref().unwrap_or("(none reported)")
                )
            }
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

/// `endpoint`, decided before any request: it could not be asked.
fn failed(mut endpoint: Endpoint, error: EndpointError) -> Endpoint {
    endpoint.fetched = Some(Fetched {
        answer: Answer::Error(error),
        attempts: 0,
        elapsed: Duration::ZERO,
        cut_by_deadline: false,
    });
    endpoint.verdict = Some(Verdict::Error);
    endpoint
}

/// The URL as printed, with the replica's address under `--all-replicas`.
pub fn display_target(endpoint: &Endpoint) -> String {
    let url = crate::cli::display_url(&endpoint.url);
    match endpoint.replica {
        Some(addr) => format!("{url} [{addr}]"),
        None => url,
    }
}

/// One endpoint's verdict and what it rests on.
struct Judgement {
    verdict: Verdict,
    release_matches: Option<bool>,
    service_matches: Option<bool>,
    problem: Option<EndpointError>,
}

/// One endpoint's verdict. A failing report, another service or another release fail
/// (exit 1, even when no check ran: the answer is wrong whatever else it proves); a report
/// that ran fewer than `--min-checks` checks decides nothing (exit 2, `no_checks`).
fn judge(fetched: &Fetched, criteria: &Criteria) -> Judgement {
    let Answer::Report { report, .. } = &fetched.answer else {
        return Judgement {
            verdict: Verdict::Error,
            release_matches: None,
            service_matches: None,
            problem: None,
        };
    };
    let release_matches = criteria
        .require_release
        .as_deref()
        .map(|id| report.release_id.as_deref() == Some(id));
    let service_matches = criteria
        .service
        .as_deref()
        .map(|name| report.service.as_deref() == Some(name));
    let mut problem = None;
    let verdict = if report.status == Status::Fail
        || release_matches == Some(false)
        || service_matches == Some(false)
    {
        Verdict::Fail
    } else if let Some(no_checks) = no_checks(report, criteria.min_checks) {
        problem = Some(no_checks);
        Verdict::Error
    } else {
        Verdict::Pass
    };
    Judgement {
        verdict,
        release_matches,
        service_matches,
        problem,
    }
}

/// Checks that ran: passed, warned or failed. A skipped check did not run, so it proves
/// nothing about production and does not count.
pub fn checks_ran(report: &Report) -> u64 {
    let s = &report.summary;
    (s.passed + s.warned + s.failed) as u64
}

/// `no_checks` when fewer than `min` checks ran.
fn no_checks(report: &Report, min: u64) -> Option<EndpointError> {
    let ran = checks_ran(report);
    if ran >= min {
        return None;
    }
    let s = &report.summary;
    let what = if ran == 0 {
        "the endpoint ran no checks".to_string()
    } else {
        format!("the endpoint ran only {ran} check(s), fewer than --min-checks {min}")
    };
    let skipped = if s.skipped > 0 {
        format!(", {} skipped", s.skipped)
    } else {
        String::new()
    };
    Some(EndpointError {
        kind: "no_checks".into(),
        message: format!(
            "{what} ({} selected{skipped}): a wrong `?tag=`, `?check=` or `?exclude=`, or checks that were not linked into the service — see {NO_CHECKS_HELP}",
            s.total
        ),
        suggestion: Some(
            "Compare the URL's ?tag=, ?check= and ?exclude= with the service's tags and check names (a typo selects nothing), and make sure the modules that declare checks are compiled and linked into the service; lower --min-checks only if fewer checks are expected.".into(),
        ),
        http_status: None,
        layer: None,
        phases: LayerTimes::default(),
        age_ms: None,
    })
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
