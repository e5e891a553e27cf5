//! Fetching one report from one endpoint: one GET, retried on transient faults until the
//! deadline, then either a [`Report`] or an [`EndpointError`] saying why there is none.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::Serialize;
use smoketest_core::Report;

use crate::cli::ClientArgs;
use crate::diagnose;
use crate::replicas::Overrides;
use crate::retry::{Backoff, is_transient_status, parse_retry_after};

/// How far the clocks of this host and a server may disagree before a report that says it
/// was run for this request, but started long before the gate did, is taken to come from a
/// cache in between (a proxy or CDN that ignored `Cache-Control: no-store`).
const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(300);

/// The longest the layered diagnosis of an unreachable endpoint may take.
const DIAGNOSIS_BUDGET: Duration = Duration::from_secs(5);

/// Reports larger than this are not read to the end.
const MAX_BODY: usize = 8 << 20;

/// Why an endpoint gave no report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointError {
    /// `not_a_report`, `http_status`, `timeout`, `stale`, `no_checks`, or a layer of the
    /// diagnosis (`dns_failure`, `tcp_refused`, `tcp_timeout`, `tls_error`, …).
    pub kind: String,
    /// What was seen.
    pub message: String,
    /// What to try next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
    /// The HTTP status of the last answer, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// The network layer that failed (`dns`, `tcp`, `tls`, `http`), when diagnosed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<&'static str>,
    /// How long each layer took in the diagnosis probe (`dns_ms`, `connect_ms`,
    /// `tls_ms`, `first_byte_ms`), for the layers that worked.
    #[serde(skip_serializing_if = "LayerTimes::is_empty")]
    pub phases: LayerTimes,
    /// For `stale`: the age of the newest report the endpoint served, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<f64>,
}

/// How long each network layer took in the diagnosis probe, in milliseconds; a layer that
/// failed or did not run is absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LayerTimes {
    /// Name resolution.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_ms: Option<f64>,
    /// The TCP connect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<f64>,
    /// The TLS handshake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ms: Option<f64>,
    /// From the request to the response head.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_byte_ms: Option<f64>,
}

impl LayerTimes {
    /// Whether no layer was timed.
    pub fn is_empty(&self) -> bool {
        self.layers().next().is_none()
    }

    /// `(layer, milliseconds)` in the order the layers run.
    pub fn layers(&self) -> impl Iterator<Item = (&'static str, f64)> {
        [
            ("dns", self.dns_ms),
            ("tcp", self.connect_ms),
            ("tls", self.tls_ms),
            ("http", self.first_byte_ms),
        ]
        .into_iter()
        .filter_map(|(name, ms)| ms.map(|ms| (name, ms)))
    }
}

/// What one endpoint answered.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A smoketest report, with the HTTP status it came with.
    Report {
        /// The HTTP status (200, 500, …): informational, the report's status decides.
        http_status: u16,
        /// The report.
        report: Box<Report>,
    },
    /// No report.
    Error(EndpointError),
}

/// One endpoint's answer and what it took to get it.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The answer.
    pub answer: Answer,
    /// HTTP requests sent.
    pub attempts: u32,
    /// Time from the first request to the answer.
    pub elapsed: Duration,
    /// The deadline ended an attempt in flight: the endpoint had no chance to answer.
    pub cut_by_deadline: bool,
}

/// An HTTP client with the retry policy and the token.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    authorization: Option<HeaderValue>,
    backoff: Backoff,
    attempt_timeout: Duration,
    root_certificates: Vec<Vec<u8>>,
    extra_roots: Vec<reqwest::Certificate>,
    overrides: Arc<Overrides>,
    /// The one address every request goes to (`--all-replicas`).
    pinned: Option<SocketAddr>,
}

/// When a report is a verdict for this gate: its run started after the gate did, or it is
/// no older than `--max-age`.
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    /// When the gate started (monotonic).
    pub since: Instant,
    /// When the gate started, by this host's clock (only for reports without `age_ms`).
    pub since_wall: SystemTime,
    /// `--max-age`.
    pub max_age: Option<Duration>,
}

/// Why a report is not a verdict for this gate.
#[derive(Debug, Clone)]
pub struct Stale {
    age: Duration,
    why: String,
}

impl Freshness {
    /// Reports from now on, and none older unless `max_age` allows.
    pub fn from_now(max_age: Option<Duration>) -> Freshness {
        Freshness {
            since: Instant::now(),
            since_wall: SystemTime::now(),
            max_age,
        }
    }

    /// `None` when `report`, answered to a request sent at `sent`, is a verdict.
    ///
    /// The server's own `cached` and `age_ms` decide when present: they are measured on
    /// the server's clock alone, so skew between the clocks does not matter. The run
    /// started `age_ms + duration_ms` before the server answered, and the server answered
    /// after `sent`: if that is less than the time from the gate's start to `sent`, the
    /// run started after the gate did, whatever the clocks say.
    pub fn stale(&self, report: &Report, sent: Instant) -> Option<Stale> {
        let accepted = |age: Duration| self.max_age.is_some_and(|max| age <= max);
        let started_at = humantime::parse_rfc3339(report.started_at.trim()).ok();
        let wall_age = started_at.map(|t| {
            SystemTime::now()
                .duration_since(t)
                .unwrap_or(Duration::ZERO)
        });
        if report.cached {
            if let Some(age_ms) = report.age_ms {
                let age = Duration::from_secs_f64(age_ms.max(0.0) / 1000.0);
                let run = Duration::from_secs_f64(report.duration_ms.max(0.0) / 1000.0);
                if age + run <= sent.saturating_duration_since(self.since) || accepted(age) {
                    return None;
                }
                return Some(Stale {
                    age,
                    why: format!(
                        "a cached report {} old (age_ms {age_ms:.0}), from a run that started before this gate did",
                        crate::output::format_duration(age)
                    ),
                });
            }
            // No server-relative age: only the clocks can tell.
            return match (started_at, wall_age) {
                (Some(t), _) if t >= self.since_wall => None,
                (Some(_), Some(age)) if accepted(age) => None,
                (_, age) => Some(Stale {
                    age: age.unwrap_or_default(),
                    why: match age {
                        Some(age) => format!(
                            "a cached report without age_ms whose run started {} ago by this host's clock (started_at {}), before this gate did",
                            crate::output::format_duration(age),
                            report.started_at
                        ),
                        None => format!(
                            "a cached report with neither age_ms nor a readable started_at (`{}`)",
                            report.started_at
                        ),
                    },
                }),
            };
        }
        // Run for this request, the report says; unless a cache in between kept it.
        match (started_at, wall_age) {
            (Some(t), Some(age))
                if t + CLOCK_SKEW_ALLOWANCE < self.since_wall && !accepted(age) =>
            {
                Some(Stale {
                    age,
                    why: format!(
                        "a report that says it was run for this request (cached: false) but started {} ago by this host's clock (started_at {}): a proxy or CDN in between may be caching it, or the server's clock is wrong",
                        crate::output::format_duration(age),
                        report.started_at
                    ),
                })
            }
            _ => None,
        }
    }
}

/// A retryable fault seen on one attempt.
enum Transient {
    Transport(reqwest::Error),
    AttemptTimeout(Duration),
    Status {
        status: StatusCode,
        retry_after: Option<Duration>,
        detail: String,
        server: Option<String>,
    },
    /// A report older than the gate: ask again, the next may be fresh.
    Stale(Stale),
}

impl Transient {
    /// A TLS failure (untrusted, expired or mismatched certificate, no common protocol)
    /// fails the same way on every attempt: retrying it would only delay the diagnosis.
    fn is_permanent(&self) -> bool {
        let Transient::Transport(error) = self else {
            return false;
        };
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(s) = source {
            if s.downcast_ref::<rustls::Error>().is_some() {
                return true;
            }
            // `io::Error::source` skips the error it wraps: look inside.
            source = match s.downcast_ref::<std::io::Error>() {
                Some(io) => io.get_ref().map(|inner| inner as _),
                None => s.source(),
            };
        }
        false
    }
}

impl Client {
    /// A client for `args`; errors are configuration errors (a token that cannot be a
    /// header value, a TLS setup failure).
    pub fn new(args: &ClientArgs) -> Result<Client, String> {
        let token = args
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let authorization = match token {
            None => None,
            Some(token) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| {
                        "the token (from --token or SMOKETEST_TOKEN) contains characters an HTTP header cannot carry".to_string()
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let root_certificates = load_certificates(&args.ca_cert)?;
        let extra_roots = root_certificates
            .iter()
            .map(|der| reqwest::Certificate::from_der(der))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("a --ca-cert certificate is not usable: {e}"))?;
        let overrides = Arc::new(Overrides::from_env()?);
        let http = build_http(&extra_roots, args.attempt_timeout, &overrides, None)?;
        Ok(Client {
            http,
            authorization,
            backoff: Backoff {
                base: args.retry_base,
                max: args.retry_max,
            },
            attempt_timeout: args.attempt_timeout,
            root_certificates,
            extra_roots,
            overrides,
            pinned: None,
        })
    }

    /// Whether requests carry a token.
    pub fn has_token(&self) -> bool {
        self.authorization.is_some()
    }

    /// The test-only resolver overrides ([`Overrides`]).
    pub fn overrides(&self) -> &Overrides {
        &self.overrides
    }

    /// The same client, but every request for `host` goes to `addr` (one replica), with
    /// the URL's Host header and TLS name unchanged, and no proxy.
    pub fn pinned(&self, host: &str, addr: SocketAddr) -> Result<Client, String> {
        Ok(Client {
            http: build_http(
                &self.extra_roots,
                self.attempt_timeout,
                &self.overrides,
                Some((host, addr)),
            )?,
            pinned: Some(addr),
            ..self.clone()
        })
    }

    /// Fetch `url`'s report, retrying transient faults (and, with `freshness`, reports
    /// older than the gate) until `deadline`.
    pub async fn fetch(
        &self,
        url: &Url,
        deadline: Instant,
        freshness: Option<&Freshness>,
    ) -> Fetched {
        let started = Instant::now();
        let mut attempts = 0;
        let mut previous: Option<Transient> = None;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let budget = remaining.min(self.attempt_timeout);
            attempts += 1;
            let mut fault = match tokio::time::timeout(budget, self.attempt(url, freshness)).await {
                Ok(Ok(answer)) => {
                    return Fetched {
                        answer,
                        attempts,
                        elapsed: started.elapsed(),
                        cut_by_deadline: false,
                    };
                }
                Ok(Err(fault)) => fault,
                Err(_) => Transient::AttemptTimeout(budget),
            };
            let cut = matches!(fault, Transient::AttemptTimeout(b) if b < self.attempt_timeout);
            if cut {
                // The deadline, not the endpoint, ended this attempt: what the endpoint
                // last said (a 503, a reset) is the better account.
                if let Some(seen) = previous.take() {
                    fault = seen;
                }
            }
            let retry_after = match &fault {
                Transient::Status { retry_after, .. } if !cut => *retry_after,
                _ => None,
            };
            let delay = retry_after.unwrap_or_else(|| self.backoff.delay(attempts - 1));
            let remaining = deadline.saturating_duration_since(Instant::now());
            if cut || delay >= remaining || fault.is_permanent() {
                let cut_by_deadline =
                    matches!(fault, Transient::AttemptTimeout(b) if b < self.attempt_timeout);
                let error = self
                    .give_up(
                        url,
                        fault,
                        attempts,
                        started.elapsed(),
                        retry_after,
                        remaining,
                    )
                    .await;
                return Fetched {
                    answer: Answer::Error(error),
                    attempts,
                    elapsed: started.elapsed(),
                    cut_by_deadline,
                };
            }
            previous = Some(fault);
            tokio::time::sleep(delay).await;
        }
    }

    /// One GET: a final answer, or a fault worth retrying.
    async fn attempt(&self, url: &Url, freshness: Option<&Freshness>) -> Result<Answer, Transient> {
        let sent = Instant::now();
        let mut request = self
            .http
            .get(url.clone())
            .header(ACCEPT, "application/json");
        if let Some(value) = &self.authorization {
            request = request.header(AUTHORIZATION, value.clone());
        }
        let mut response = request.send().await.map_err(Transient::Transport)?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("no content type")
            .to_string();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let server = response
            .headers()
            .get(reqwest::header::SERVER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(Transient::Transport)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Ok(Answer::Error(no_report(
                    status,
                    format!("the body is larger than {} MiB", MAX_BODY >> 20),
                    server.as_deref(),
                )));
            }
            body.extend_from_slice(&chunk);
        }
        // A report decides, whatever the status code it came with.
        if let Ok(report) = serde_json::from_slice::<Report>(&body) {
            if let Some(stale) = freshness.and_then(|f| f.stale(&report, sent)) {
                return Err(Transient::Stale(stale));
            }
            return Ok(Answer::Report {
                http_status: status.as_u16(),
                report: Box::new(report),
            });
        }
        let detail = describe_body(&content_type, &body);
        if is_transient_status(status.as_u16()) {
            return Err(Transient::Status {
                status,
                retry_after,
                detail,
                server,
            });
        }
        let mut error = no_report(status, detail, server.as_deref());
        if matches!(status.as_u16(), 401 | 403) && self.authorization.is_some() {
            error.suggestion = Some(
                "The endpoint refused the token; check that it is the one the service expects (--token or SMOKETEST_TOKEN).".into(),
            );
        }
        Ok(Answer::Error(error))
    }

    /// The error for a fault that can no longer be retried before the deadline.
    async fn give_up(
        &self,
        url: &Url,
        fault: Transient,
        attempts: u32,
        elapsed: Duration,
        retry_after: Option<Duration>,
        remaining: Duration,
    ) -> EndpointError {
        let tried = format!(
            "{attempts} attempt{} in {}",
            if attempts == 1 { "" } else { "s" },
            crate::output::format_duration(elapsed)
        );
        match fault {
            Transient::Status {
                status,
                detail,
                server,
                ..
            } => {
                let mut error = no_report(status, detail, server.as_deref());
                error.message = match retry_after {
                    Some(wait) if wait >= remaining => format!(
                        "{}; it asked to retry after {}, later than the deadline ({tried})",
                        error.message,
                        humantime::format_duration(wait)
                    ),
                    _ => format!("{} ({tried}, until the deadline)", error.message),
                };
                error.suggestion = Some(match status.as_u16() {
                    429 => "The service or its load balancer is rate limiting this client: wait for it, or give --timeout or --wait more time.".into(),
                    // Keep what the status means (a maintenance page, no healthy backend).
                    _ => format!(
                        "{} It was retried until the deadline: wait for it, or give --timeout or --wait more time.",
                        error.suggestion.unwrap_or_default()
                    ),
                });
                error
            }
            Transient::AttemptTimeout(budget) => EndpointError {
                kind: "timeout".into(),
                message: if budget < self.attempt_timeout {
                    format!(
                        "no answer in the {} left before the deadline ({tried})",
                        crate::output::format_duration(budget)
                    )
                } else {
                    format!(
                        "no answer within {} ({tried})",
                        crate::output::format_duration(budget)
                    )
                },
                suggestion: Some(
                    "The endpoint accepted the request but did not answer in time: look for a slow check or an overloaded service, or raise --attempt-timeout and --timeout.".into(),
                ),
                http_status: None,
                layer: Some("http"),
                phases: LayerTimes::default(),
                age_ms: None,
            },
            Transient::Stale(stale) => EndpointError {
                kind: "stale".into(),
                message: format!(
                    "only reports older than this gate came: the last was {} ({tried}, until the deadline)",
                    stale.why
                ),
                suggestion: Some(format!(
                    "A cached report may predate the deploy. Pass --token (or SMOKETEST_TOKEN) so the gate asks for a fresh run (?fresh=1); or give --timeout more time than the service's cache TTL or schedule; or accept reports up to a given age with --max-age (this one is {}).",
                    crate::output::format_duration(stale.age)
                )),
                http_status: None,
                layer: None,
                phases: LayerTimes::default(),
                age_ms: Some(smoketest_core::report::millis(stale.age)),
            },
            Transient::Transport(error) if self.pinned.is_some() => {
                // The layered probe would resolve the name again and might reach another
                // replica: describe what the client saw on this one.
                let mut error = diagnose::classify(url, &error);
                error.message = format!("{} ({tried})", error.message);
                error
            }
            Transient::Transport(error) => {
                let budget = self.attempt_timeout.min(DIAGNOSIS_BUDGET);
                let mut diagnosis =
                    diagnose::unreachable(url, &error, budget, &self.root_certificates).await;
                diagnosis.message = format!("{} ({tried})", diagnosis.message);
                diagnosis
            }
        }
    }
}

/// The reqwest client: `--ca-cert` trusted, the test-only overrides applied, and with
/// `pin`, every request for that host sent to that one address, bypassing any proxy.
fn build_http(
    extra_roots: &[reqwest::Certificate],
    attempt_timeout: Duration,
    overrides: &Overrides,
    pin: Option<(&str, SocketAddr)>,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("smoketest-cli/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(attempt_timeout)
        .tls_certs_merge(extra_roots.iter().cloned());
    for (host, addresses) in overrides.entries() {
        builder = builder.resolve_to_addrs(host, addresses);
    }
    if let Some((host, addr)) = pin {
        builder = builder.no_proxy().resolve(host, addr);
    }
    builder
        .build()
        .map_err(|e| format!("could not set up the HTTP client: {e}"))
}

/// The DER certificates in each PEM file given with `--ca-cert`.
pub fn load_certificates(paths: &[std::path::PathBuf]) -> Result<Vec<Vec<u8>>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut all = Vec::new();
    for path in paths {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read --ca-cert {}: {e}", path.display()))?;
        let before = all.len();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| {
                format!(
                    "--ca-cert {} is not a PEM certificate file: {e}",
                    path.display()
                )
            })?;
            all.push(cert.to_vec());
        }
        if all.len() == before {
            return Err(format!(
                "--ca-cert {} holds no certificate (expected -----BEGIN CERTIFICATE-----)",
                path.display()
            ));
        }
    }
    Ok(all)
}

/// An answer without a report: `http_status` for a 5xx (the service, or a proxy or load
/// balancer in front of it, failed or is unavailable), `not_a_report` otherwise.
fn no_report(status: StatusCode, detail: String, server: Option<&str>) -> EndpointError {
    if !status.is_server_error() {
        return not_a_report(status, detail);
    }
    let suggestion = match status.as_u16() {
        503 => {
            "The service, or a proxy or load balancer in front of it, is unavailable (a maintenance page, no healthy backend, overload): check for a maintenance switch and that the service has healthy replicas behind the load balancer."
        }
        502 | 504 => {
            "A proxy or load balancer got no good answer from the service behind it (a rollout in progress, or the service is down or too slow): check the service's pods or targets and their logs."
        }
        500 => {
            "The server failed before it could answer with a report (a crash in the service, or a proxy's error page): see the service's logs."
        }
        _ => {
            "Something in front of the endpoint, or the service itself, answered with a server error instead of a report: see the service's and the proxy's logs."
        }
    };
    let from = server.map(|s| format!(" from `{s}`")).unwrap_or_default();
    EndpointError {
        kind: "http_status".into(),
        message: format!("HTTP {status}{from}, without a smoketest report: {detail}"),
        suggestion: Some(suggestion.into()),
        http_status: Some(status.as_u16()),
        layer: Some("http"),
        phases: LayerTimes::default(),
        age_ms: None,
    }
}

fn not_a_report(status: StatusCode, detail: String) -> EndpointError {
    let suggestion = match status.as_u16() {
        401 | 403 => {
            "The endpoint requires authorization; pass --token or set SMOKETEST_TOKEN (it is sent as a bearer token in the Authorization header)."
        }
        404 => {
            "Check the URL's path: the endpoint is mounted at /smoketest by default (https://host/smoketest)."
        }
        400 | 406 => {
            "The endpoint refused the request: see the message, and check the URL's query parameters."
        }
        200..=299 => {
            "This URL answers, but not with a smoketest report: is it the smoketest endpoint of the right service?"
        }
        _ => {
            "Something other than the smoketest endpoint answered (a proxy, or the service's error page): check the URL and the service's logs."
        }
    };
    EndpointError {
        kind: "not_a_report".into(),
        message: format!("HTTP {status}: {detail}"),
        suggestion: Some(suggestion.into()),
        http_status: Some(status.as_u16()),
        layer: Some("http"),
        phases: LayerTimes::default(),
        age_ms: None,
    }
}

/// A short description of a body that is not a report.
fn describe_body(content_type: &str, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: EndpointErrorBody,
    }
    #[derive(serde::Deserialize)]
    struct EndpointErrorBody {
        kind: String,
        message: Option<String>,
    }
    if let Ok(e) = serde_json::from_slice::<ErrorBody>(body) {
        return match e.error.message {
            Some(message) => format!(
                "the endpoint refused the request ({}): {message}",
                e.error.kind
            ),
            None => format!("the endpoint refused the request ({})", e.error.kind),
        };
    }
    if body.is_empty() {
        return format!("an empty body ({content_type}), not a smoketest report");
    }
    let text = String::from_utf8_lossy(body);
    let mut excerpt: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(120)
        .collect();
    if text.chars().count() > 120 {
        excerpt.push('…');
    }
    format!(
        "a {content_type} body that is not a smoketest report: `{}`",
        excerpt.trim()
    )
}
