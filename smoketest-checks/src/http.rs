//! [`HttpCheck`] and [`probe`]: an HTTP upstream answers, probed layer by layer — DNS →
//! TCP → TLS → HTTP — stopping at the first layer that fails and saying which.
//!
//! A raw client error says `error sending request`; a probe says
//! "DNS resolution failed for `payments.internal`: the name does not exist (NXDOMAIN)", or
//! "TCP connection to 10.0.4.2:443 was refused: nothing listens on port 443", or
//! "TLS certificate of `payments.internal` expired on … (3 days ago)", or
//! "`GET https://payments.internal/health` answered 429 Too Many Requests", each with a
//! suggestion. The layers:
//!
//! 1. **DNS** — the system resolver the service's own clients use, with a direct DNS query
//!    to tell NXDOMAIN, no records and unreachable DNS servers apart ([`crate::dns`]):
//!    `dns_failure`.
//! 2. **TCP** — connect to the resolved addresses ([`crate::tcp`]): `tcp_refused`
//!    (nothing listens) or `tcp_timeout` (never answered). Never the same kind as DNS.
//! 3. **TLS** (https only) — a rustls handshake with the system's CA certificates plus any
//!    [`ProbeOptions::root_certificate`]: `tls_error`, telling expired, untrusted issuer
//!    (self-signed) and name mismatch apart ([`crate::tls`]).
//! 4. **HTTP** — the request, sent with one shared, pooled reqwest client (the same TLS
//!    trust), redirects followed: `timeout` when no response comes in time,
//!    `http_status` when the status is not expected (401, 403, 404, 429 and 5xx each with
//!    their own hint), `body_mismatch` when the body lacks a substring or a JSON pointer
//!    holds another value.
//!
//! Layers 1–3 run on a fresh connection each time, which is what gives their durations;
//! the request itself goes through the pooled client, as the service's own calls would.
//! The durations (`dns_ms`, `connect_ms`, `tls_ms`, `first_byte_ms`) go into the report
//! as observed values. Proxies are not used: the probe tests the direct path.
//!
//! [`probe`] is the same probe without a check around it (the `smoketest` CLI uses it).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use smoketest_checks::http::{probe, HttpCheck, ProbeOptions};
//! use smoketest_core::{ErrorKind, Smoketest};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // As a registered check:
//! let smoke = Smoketest::builder()
//!     .without_discovery()
//!     .check(
//!         HttpCheck::new("https://payments.internal/health")
//!             .name("payments::api")
//!             .expect_status([200, 204])
//!             .json_pointer("/status", "ok")
//!             .header("authorization", "Bearer …")
//!             .timeout(Duration::from_secs(3)),
//!     )
//!     .build()
//!     .unwrap();
//! assert!(smoke.check_names().any(|n| n == "payments::api"));
//!
//! // As a plain probe:
//! let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
//! let port = listener.local_addr().unwrap().port();
//! drop(listener); // nothing listens there now
//! let result = probe(&format!("http://127.0.0.1:{port}/"), &ProbeOptions::new()).await;
//! let diagnosis = result.diagnosis.unwrap();
//! assert_eq!(diagnosis.kind, ErrorKind::TcpRefused);
//! assert!(result.phases.connect.is_none());
//! # }
//! ```

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::{Method, Url};
use smoketest_core::{CheckError, Context, ErrorKind, Outcome, SmokeCheck};
use tokio::time::Instant;

use crate::diagnosis::{Diagnosis, Layer};
use crate::meta::{Meta, budget, human, ms, name_part};
use crate::tls::{CertificateInfo, Trust};

/// How long each layer took. A layer that did not run (or failed) is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Phases {
    /// Name resolution (`None` for an IP address literal).
    pub dns: Option<Duration>,
    /// The TCP connect.
    pub connect: Option<Duration>,
    /// The TLS handshake (`None` for `http://`).
    pub tls: Option<Duration>,
    /// From sending the request on the pooled client to the response head.
    pub first_byte: Option<Duration>,
    /// The whole probe, body included.
    pub total: Duration,
}

/// What one [`probe`] saw. `diagnosis` is `None` when every layer passed and the response
/// met the expectations.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Probe {
    /// The URL probed.
    pub url: String,
    /// Durations of the layers that ran.
    pub phases: Phases,
    /// The address the layered connection reached.
    pub remote: Option<std::net::SocketAddr>,
    /// The HTTP status, when a response came.
    pub status: Option<u16>,
    /// The server's certificate, for `https://` when the handshake got that far.
    pub certificate: Option<CertificateInfo>,
    /// Why the probe failed, if it did.
    pub diagnosis: Option<Diagnosis>,
}

impl Probe {
    /// Whether every layer passed and the response was as expected.
    pub fn is_ok(&self) -> bool {
        self.diagnosis.is_none()
    }

    /// `Ok(())`, or the diagnosis as the [`CheckError`] a check returns.
    pub fn result(&self) -> Result<(), CheckError> {
        match &self.diagnosis {
            None => Ok(()),
            Some(d) => Err(d.clone().into()),
        }
    }

    /// Record the durations, remote address and status as observed values of a check
    /// (`dns_ms`, `connect_ms`, `tls_ms`, `first_byte_ms`, `remote`, `status`).
    pub fn observe(&self, ctx: &mut Context) {
        let phases = [
            ("dns_ms", self.phases.dns),
            ("connect_ms", self.phases.connect),
            ("tls_ms", self.phases.tls),
            ("first_byte_ms", self.phases.first_byte),
        ];
        for (key, value) in phases {
            if let Some(d) = value {
                ctx.observe(key, ms(d));
            }
        }
        if let Some(remote) = self.remote {
            ctx.observe("remote", remote.to_string());
        }
        if let Some(status) = self.status {
            ctx.observe("status", status);
        }
    }
}

/// What to send and what to expect, for [`probe`] and [`HttpCheck`].
///
/// Cloning is cheap and shares the HTTP client built for extra root certificates.
#[derive(Clone)]
pub struct ProbeOptions {
    method: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    timeout: Duration,
    connect_timeout: Duration,
    expect_status: Option<Vec<u16>>,
    body_contains: Option<String>,
    json_pointer: Option<(String, serde_json::Value)>,
    max_body: usize,
    trust: Trust,
    client: Arc<OnceLock<Result<reqwest::Client, String>>>,
}

impl fmt::Debug for ProbeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values are left out: they are often credentials.
        f.debug_struct("ProbeOptions")
            .field("method", &self.method)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("expect_status", &self.expect_status)
            .field("body_contains", &self.body_contains)
            .field("json_pointer", &self.json_pointer)
            .field("trust", &self.trust)
            .finish_non_exhaustive()
    }
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            method: "GET".to_string(),
            headers: Vec::new(),
            body: None,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            expect_status: None,
            body_contains: None,
            json_pointer: None,
            max_body: 1 << 20,
            trust: Trust::default(),
            client: Arc::default(),
        }
    }
}

impl ProbeOptions {
    /// `GET`, any 2xx status expected, 10 s for the whole probe, 5 s per connection layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The request method (default `GET`). An unknown method is reported as a `config`
    /// failure when the probe runs.
    pub fn method(mut self, method: impl AsRef<str>) -> Self {
        self.method = method.as_ref().to_ascii_uppercase();
        self
    }

    /// Add a request header. Values are never shown in reports or `Debug` output.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Send this request body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// The time the whole probe may take, all layers and the body (default 10 s). Inside a
    /// check, the check's deadline also bounds it.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The time DNS, TCP connect and TLS handshake may each take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The statuses that pass (default: any 2xx, after redirects).
    pub fn expect_status(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.expect_status = Some(statuses.into_iter().collect());
        self
    }

    /// Fail with `body_mismatch` unless the body contains this text.
    pub fn body_contains(mut self, text: impl Into<String>) -> Self {
        self.body_contains = Some(text.into());
        self
    }

    /// Fail with `body_mismatch` unless the body is JSON with `value` at `pointer`
    /// (RFC 6901, e.g. `/status` or `/checks/0/ok`).
    pub fn json_pointer(
        mut self,
        pointer: impl Into<String>,
        value: impl Into<serde_json::Value>,
    ) -> Self {
        self.json_pointer = Some((pointer.into(), value.into()));
        self
    }

    /// Read at most this many body bytes for the body expectations (default 1 MiB).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Trust this CA certificate (DER) besides the system's, e.g. a private CA.
    pub fn root_certificate(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.trust.add_root(der.into());
        self.client = Arc::default();
        self
    }

    /// The pooled client for this trust: the process-wide one for the system trust.
    fn client(&self) -> Result<reqwest::Client, Diagnosis> {
        static SHARED: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
        let verifier = self.trust.verifier()?;
        let build = || {
            reqwest::Client::builder()
                .tls_backend_preconfigured(self.trust.client_config(verifier))
                .no_proxy()
                .user_agent(concat!("smoketest/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| smoketest_core::error::error_chain(&e))
        };
        let cell = if self.client_is_shared() {
            &SHARED
        } else {
            &*self.client
        };
        cell.get_or_init(build).clone().map_err(|e| {
            Diagnosis::new(
                Layer::Http,
                ErrorKind::Config,
                format!("the HTTP client could not be built: {e}"),
                "Check the TLS configuration given to the probe.",
            )
        })
    }

    fn client_is_shared(&self) -> bool {
        self.trust.is_system()
    }
}

/// Probe `url` layer by layer, as described in the [module documentation](self).
///
/// Never panics and never returns an error: a failure is in [`Probe::diagnosis`].
pub async fn probe(url: &str, options: &ProbeOptions) -> Probe {
    let started = Instant::now();
    let mut probe = Probe {
        url: redact_url(url),
        phases: Phases::default(),
        remote: None,
        status: None,
        certificate: None,
        diagnosis: None,
    };
    let deadline = started + options.timeout;
    if let Err(d) = run_layers(url, options, deadline, &mut probe).await {
        probe.diagnosis = Some(d);
    }
    probe.phases.total = started.elapsed();
    probe
}

/// `url` as it may be shown: without user and password, and with the values of query
/// parameters that look like credentials (`token`, `key`, `secret`, `password`,
/// `signature`, …) replaced by `***`.
///
/// ```
/// use smoketest_checks::http::redact_url;
///
/// assert_eq!(
///     redact_url("https://user:pw@api.example/v1?api_key=abc&page=2"),
///     "https://api.example/v1?api_key=***&page=2"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = Url::parse(url) else {
        // Not a URL: still never show what sits before an `@`.
        return match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}***{}", &url[..scheme + 3], &url[at..])
            }
            _ => url.to_string(),
        };
    };
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    if parsed.query().is_some() {
        const SECRET: [&str; 9] = [
            "token",
            "key",
            "secret",
            "password",
            "passwd",
            "signature",
            "sig",
            "auth",
            "credential",
        ];
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(name, value)| {
                let lower = name.to_ascii_lowercase();
                if SECRET.iter().any(|s| lower.contains(s)) {
                    (name.into_owned(), "***".to_string())
                } else {
                    (name.into_owned(), value.into_owned())
                }
            })
            .collect();
        let query: Vec<String> = pairs
            .iter()
            .map(|(n, v)| {
                if v == "***" {
                    format!("{n}=***")
                } else {
                    format!("{n}={v}")
                }
            })
            .collect();
        parsed.set_query(Some(&query.join("&")));
    }
    parsed.to_string()
}

fn config(message: String, suggestion: &'static str) -> Diagnosis {
    Diagnosis::new(Layer::Http, ErrorKind::Config, message, suggestion)
}

async fn run_layers(
    url: &str,
    options: &ProbeOptions,
    deadline: Instant,
    probe: &mut Probe,
) -> Result<(), Diagnosis> {
    let parsed = Url::parse(url).map_err(|e| {
        config(
            format!("`{}` is not a valid URL: {e}", probe.url),
            "Write an absolute URL such as `https://payments.internal/health`.",
        )
    })?;
    let https = match parsed.scheme() {
        "https" => true,
        "http" => false,
        other => {
            return Err(config(
                format!(
                    "`{}` has the scheme `{other}`; the HTTP probe speaks http and https",
                    probe.url
                ),
                "Use an http:// or https:// URL.",
            ));
        }
    };
    let host = parsed.host_str().unwrap_or_default().to_string();
    let port = parsed
        .port_or_known_default()
        .unwrap_or(if https { 443 } else { 80 });
    let layer_timeout = |now: Instant| {
        options
            .connect_timeout
            .min(deadline.saturating_duration_since(now))
    };

    // 1. DNS
    let resolution = crate::dns::resolve(&host, port, layer_timeout(Instant::now())).await?;
    if host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_err()
    {
        probe.phases.dns = Some(resolution.elapsed);
    }
    // 2. TCP
    let connection =
        crate::tcp::connect(&host, &resolution.addresses, layer_timeout(Instant::now())).await?;
    probe.phases.connect = Some(connection.elapsed);
    probe.remote = Some(connection.remote);
    // 3. TLS
    if https {
        let handshake = crate::tls::handshake(
            connection.stream,
            &host,
            &options.trust,
            layer_timeout(Instant::now()),
        );
        let result = handshake.await;
        let handshake = result?;
        probe.phases.tls = Some(handshake.elapsed);
        probe.certificate = handshake.chain.first().cloned();
    } else {
        drop(connection);
    }
    // 4. HTTP
    let client = options.client()?;
    let method = Method::from_bytes(options.method.as_bytes()).map_err(|_| {
        config(
            format!("`{}` is not a valid HTTP method", options.method),
            "Use a method such as GET, HEAD or POST.",
        )
    })?;
    let mut request = client.request(method, parsed.clone());
    for (name, value) in &options.headers {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            config(
                format!("`{name}` is not a valid header name"),
                "Fix the header name in the check's options.",
            )
        })?;
        let value = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
            config(
                format!("the value of header `{name}` is not a valid header value"),
                "Fix the header value in the check's options.",
            )
        })?;
        request = request.header(name, value);
    }
    if let Some(body) = &options.body {
        request = request.body(body.clone());
    }
    let what = format!("`{} {}`", options.method, probe.url);
    let sent = Instant::now();
    let timed_out = |phase: &str| {
        let budget = deadline.saturating_duration_since(sent);
        Diagnosis::new(
            Layer::Http,
            ErrorKind::Timeout,
            format!(
                "{what} {phase} within {} (DNS, TCP{} were fine)",
                human(budget),
                if https { " and TLS" } else { "" }
            ),
            "The upstream accepted the connection but is slow or stuck: check its load, its own dependencies and its logs; raise the timeout only if this latency is acceptable.",
        )
    };
    let mut response = match tokio::time::timeout_at(deadline, request.send()).await {
        Err(_) => return Err(timed_out("got no response")),
        Ok(Err(e)) => {
            return Err(diagnose_reqwest(
                &host,
                &what,
                &e,
                timed_out("got no response"),
            ));
        }
        Ok(Ok(response)) => response,
    };
    probe.phases.first_byte = Some(sent.elapsed());
    let status = response.status();
    probe.status = Some(status.as_u16());

    let expected = match &options.expect_status {
        Some(set) => set.contains(&status.as_u16()),
        None => status.is_success(),
    };
    if !expected {
        return Err(status_diagnosis(
            &what,
            status,
            response.headers(),
            options.expect_status.as_deref(),
        ));
    }
    if options.body_contains.is_none() && options.json_pointer.is_none() {
        return Ok(());
    }
    let mut body = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Err(_) => return Err(timed_out("did not send its whole body")),
            Ok(Err(e)) => {
                return Err(diagnose_reqwest(
                    &host,
                    &what,
                    &e,
                    timed_out("did not send its whole body"),
                ));
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => {
                let room = options.max_body - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= options.max_body {
                    break;
                }
            }
        }
    }
    check_body(&what, status.as_u16(), &body, options)
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let cut: String = text.chars().take(120).collect();
    if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

fn check_body(
    what: &str,
    status: u16,
    body: &[u8],
    options: &ProbeOptions,
) -> Result<(), Diagnosis> {
    let mismatch = |message: String| {
        Diagnosis::new(
            Layer::Http,
            ErrorKind::BodyMismatch,
            message,
            "The upstream answered, but not with what was expected: check that the URL points at the right service and version, and what the body says.",
        )
    };
    if let Some(text) = &options.body_contains
        && !String::from_utf8_lossy(body).contains(text.as_str())
    {
        return Err(mismatch(format!(
            "{what} answered {status}, but its body does not contain `{text}` (body: `{}`)",
            snippet(body)
        )));
    }
    if let Some((pointer, expected)) = &options.json_pointer {
        let json: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
            mismatch(format!(
                "{what} answered {status}, but its body is not JSON ({e}; body: `{}`)",
                snippet(body)
            ))
        })?;
        match json.pointer(pointer) {
            None => {
                return Err(mismatch(format!(
                    "{what} answered {status}, but its JSON has nothing at `{pointer}` (expected {expected})"
                )));
            }
            Some(found) if found != expected => {
                return Err(mismatch(format!(
                    "{what} answered {status}, but its JSON has {found} at `{pointer}`, expected {expected}"
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn status_diagnosis(
    what: &str,
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    expected: Option<&[u16]>,
) -> Diagnosis {
    let code = status.as_u16();
    let reason = status.canonical_reason().unwrap_or("");
    let expected = match expected {
        Some(set) => format!(
            "expected {}",
            set.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" or ")
        ),
        None => "expected a 2xx status".to_string(),
    };
    let (meaning, suggestion): (String, &'static str) = match code {
        401 => (
            "the upstream rejected the request's credentials".into(),
            "Check the credentials this service sends (API key, token, client certificate): missing, expired, or rotated on the upstream's side?",
        ),
        403 => (
            "the upstream refused the request although it reached it".into(),
            "Check the permissions or scopes of the credentials, and any IP allow-list or WAF rule in front of the upstream that blocks this host.",
        ),
        404 => (
            "the upstream has nothing at this path".into(),
            "Check the URL's path (base path, API version prefix) and that the deployed upstream serves this route.",
        ),
        429 => (
            match headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
            {
                Some(after) => format!("this client is rate limited (Retry-After: {after})"),
                None => "this client is rate limited".into(),
            },
            "Check the rate limit or quota of these credentials and what else shares it; poll the smoke check less often if it counts against the limit.",
        ),
        502..=504 => (
            "the upstream's proxy or load balancer got no healthy answer from behind it".into(),
            "Check that the upstream's backends are running and healthy (its load balancer's targets, its deploy) and see its logs.",
        ),
        500..=599 => (
            "the upstream failed with a server error".into(),
            "The upstream is failing, not this service's request: see its logs and status page.",
        ),
        _ => (
            expected.clone(),
            "Check the URL, the method and what the upstream answers to it; adjust the expected statuses if this answer is right.",
        ),
    };
    let message = if matches!(code, 401 | 403 | 404 | 429 | 500..=599) {
        format!("{what} answered {code} {reason}: {meaning} ({expected})")
    } else {
        format!("{what} answered {code} {reason}: {meaning}")
    };
    Diagnosis::new(Layer::Http, ErrorKind::HttpStatus, message, suggestion)
}

/// A failure of the pooled client after the layered connection succeeded (a redirect to
/// another host, the server closing the connection, a race).
fn diagnose_reqwest(
    host: &str,
    what: &str,
    error: &reqwest::Error,
    timed_out: Diagnosis,
) -> Diagnosis {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return crate::tls::diagnose(host, tls, &[]);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return Diagnosis::new(
                Layer::Tcp,
                ErrorKind::TcpRefused,
                format!(
                    "{what}: the connection was refused ({})",
                    smoketest_core::error::error_chain(error)
                ),
                "Check that the upstream (or the host it redirects to) is running and listening on that port.",
            );
        }
        source = e.source();
    }
    if error.is_timeout() {
        return timed_out;
    }
    Diagnosis::new(
        Layer::Http,
        ErrorKind::Error,
        format!(
            "{what} failed after the connection was established: {}",
            smoketest_core::error::error_chain(error)
        ),
        "The upstream closed the connection or answered with something that is not HTTP: see its logs, and check redirects and the port.",
    )
}

/// Passes when a URL answers as expected, probed DNS → TCP → TLS → HTTP. See the
/// [module documentation](self).
#[derive(Debug, Clone)]
pub struct HttpCheck {
    meta: Meta,
    url: String,
    options: ProbeOptions,
}

impl HttpCheck {
    /// Probe `url`. Named `http::{host}`, or `http::{host}::{path}` with the path's
    /// segments joined by `.` (`https://pay.internal/v1/health` → `http::pay.internal::v1.health`);
    /// tagged `http`.
    pub fn new(url: impl Into<String>) -> Self {
        let url = url.into();
        let name = match Url::parse(&url) {
            Ok(u) if u.path().trim_matches('/').is_empty() => {
                format!("http::{}", name_part(u.host_str().unwrap_or_default()))
            }
            Ok(u) => format!(
                "http::{}::{}",
                name_part(u.host_str().unwrap_or_default()),
                name_part(u.path())
            ),
            Err(_) => format!("http::{}", name_part(&redact_url(&url))),
        };
        HttpCheck {
            meta: Meta::external(name, "http"),
            url,
            options: ProbeOptions::new(),
        }
    }

    /// Replace all probe options at once.
    pub fn options(mut self, options: ProbeOptions) -> Self {
        self.options = options;
        self
    }

    /// See [`ProbeOptions::method`].
    pub fn method(mut self, method: impl AsRef<str>) -> Self {
        self.options = self.options.method(method);
        self
    }

    /// See [`ProbeOptions::header`]. Values are never shown.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.options = self.options.header(name, value);
        self
    }

    /// See [`ProbeOptions::body`].
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.options = self.options.body(body);
        self
    }

    /// See [`ProbeOptions::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options = self.options.connect_timeout(timeout);
        self
    }

    /// See [`ProbeOptions::expect_status`].
    pub fn expect_status(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.options = self.options.expect_status(statuses);
        self
    }

    /// See [`ProbeOptions::body_contains`].
    pub fn body_contains(mut self, text: impl Into<String>) -> Self {
        self.options = self.options.body_contains(text);
        self
    }

    /// See [`ProbeOptions::json_pointer`].
    pub fn json_pointer(
        mut self,
        pointer: impl Into<String>,
        value: impl Into<serde_json::Value>,
    ) -> Self {
        self.options = self.options.json_pointer(pointer, value);
        self
    }

    /// See [`ProbeOptions::root_certificate`].
    pub fn root_certificate(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.options = self.options.root_certificate(der);
        self
    }
}

meta_builders!(HttpCheck);

#[async_trait::async_trait]
impl SmokeCheck for HttpCheck {
    meta_methods!();

    async fn run(&self, ctx: &mut Context) -> smoketest_core::Result {
        let options = self
            .options
            .clone()
            .timeout(self.options.timeout.min(budget(ctx)));
        let result = probe(&self.url, &options).await;
        result.observe(ctx);
        result.result()?;
        Ok(Outcome::Pass)
    }
}
