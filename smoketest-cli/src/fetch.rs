//! Fetching one report from one endpoint: one GET, retried on transient faults until the
//! deadline, then either a [`Report`] or an [`EndpointError`] saying why there is none.

use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::Serialize;
use smoketest_core::Report;

use crate::cli::ClientArgs;
use crate::diagnose;
use crate::retry::{Backoff, is_transient_status, parse_retry_after};

/// The longest the layered diagnosis of an unreachable endpoint may take.
const DIAGNOSIS_BUDGET: Duration = Duration::from_secs(5);

/// Reports larger than this are not read to the end.
const MAX_BODY: usize = 8 << 20;

/// Why an endpoint gave no report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointError {
    /// `not_a_report`, `timeout`, or a layer of the diagnosis (`dns_failure`,
    /// `tcp_refused`, `tcp_timeout`, `tls_error`, …).
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
}

/// A retryable fault seen on one attempt.
enum Transient {
    Transport(reqwest::Error),
    AttemptTimeout(Duration),
    Status {
        status: StatusCode,
        retry_after: Option<Duration>,
        detail: String,
    },
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
        let http = reqwest::Client::builder()
            .user_agent(concat!("smoketest-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(args.attempt_timeout)
            .tls_certs_merge(extra_roots)
            .build()
            .map_err(|e| format!("could not set up the HTTP client: {e}"))?;
        Ok(Client {
            http,
            authorization,
            backoff: Backoff {
                base: args.retry_base,
                max: args.retry_max,
            },
            attempt_timeout: args.attempt_timeout,
            root_certificates,
        })
    }

    /// Fetch `url`'s report, retrying transient faults until `deadline`.
    pub async fn fetch(&self, url: &Url, deadline: Instant) -> Fetched {
        let started = Instant::now();
        let mut attempts = 0;
        let mut previous: Option<Transient> = None;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let budget = remaining.min(self.attempt_timeout);
            attempts += 1;
            let mut fault = match tokio::time::timeout(budget, self.attempt(url)).await {
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
    async fn attempt(&self, url: &Url) -> Result<Answer, Transient> {
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
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(Transient::Transport)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Ok(Answer::Error(not_a_report(
                    status,
                    format!("the body is larger than {} MiB", MAX_BODY >> 20),
                )));
            }
            body.extend_from_slice(&chunk);
        }
        // A report decides, whatever the status code it came with.
        if let Ok(report) = serde_json::from_slice::<Report>(&body) {
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
            });
        }
        let mut error = not_a_report(status, detail);
        if matches!(status.as_u16(), 401 | 403) && self.authorization.is_some() {
            error.suggestion = Some(
                "The endpoint refused the token: check that it is the one the service expects (--token or SMOKETEST_TOKEN).".into(),
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
            Transient::Status { status, detail, .. } => {
                let mut error = not_a_report(status, detail);
                error.message = match retry_after {
                    Some(wait) if wait >= remaining => format!(
                        "{}; it asked to retry after {}, later than the deadline ({tried})",
                        error.message,
                        humantime::format_duration(wait)
                    ),
                    _ => format!("{} ({tried}, until the deadline)", error.message),
                };
                error.suggestion = Some(format!(
                    "The service or its load balancer is {}: wait for it, or give --timeout or --wait more time.",
                    match status.as_u16() {
                        429 => "rate limiting this client",
                        502 | 504 => "not reaching the service (a rollout in progress, or the service is down)",
                        _ => "unavailable",
                    }
                ));
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
            },
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

/// The DER certificates in each PEM file given with `--ca-cert`.
fn load_certificates(paths: &[std::path::PathBuf]) -> Result<Vec<Vec<u8>>, String> {
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

fn not_a_report(status: StatusCode, detail: String) -> EndpointError {
    let suggestion = match status.as_u16() {
        401 | 403 => {
            "The endpoint wants a token: pass --token or set SMOKETEST_TOKEN (sent as Authorization: Bearer)."
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
