//! Output formats: which one a request gets ([`Format::negotiate`]) and the writers.
//!
//! Every consumer of a run reads it in its own language: deploy pipelines and the CLI read
//! [JSON](json), monitors and terminals read [text], people read [HTML](html), service
//! catalogues read [IETF health+json](health), Prometheus reads the
//! [exposition format](prometheus), and CI systems read [JUnit XML](junit).
//!
//! `?format=` wins over `Accept`. `Accept` is matched as RFC 9110 §12.5.1 says: each format
//! takes the q-value of the most specific range that matches it (so `*/*, text/html;q=0`
//! refuses HTML), the highest q wins, and ties go to the more specific range, then the range
//! listed first, then this order: JSON, text, HTML, health+json, OpenMetrics, Prometheus
//! text, JUnit. No `Accept` (or `*/*`, as curl and kube-probe send) gets JSON. When nothing
//! acceptable can be written the request gets 406.
//!
//! Two media types are told apart by a parameter: `text/plain; version=0.0.4` (any
//! `version`) is the Prometheus text format, plain `text/plain` is the human text. A
//! Prometheus scraper, which prefers `application/openmetrics-text`, gets OpenMetrics.
//!
//! Every writer takes a [`Report`] that was already restricted to the caller's detail level,
//! so no format can show more than another.
//!
//! # Example
//!
//! ```
//! use smoketest_core::format::Format;
//!
//! assert_eq!(Format::negotiate(None, None), Ok(Format::Json));
//! assert_eq!(Format::negotiate(Some("*/*"), None), Ok(Format::Json));
//! assert_eq!(Format::negotiate(Some("text/plain"), None), Ok(Format::Text));
//! assert_eq!(Format::negotiate(Some("text/plain;q=0.5, application/json"), None), Ok(Format::Json));
//! let chrome = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
//! assert_eq!(Format::negotiate(Some(chrome), None), Ok(Format::Html));
//! let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
//! assert_eq!(Format::negotiate(Some(prometheus), None), Ok(Format::OpenMetrics));
//! assert_eq!(Format::negotiate(Some("application/json"), Some(Format::Text)), Ok(Format::Text));
//! assert!(Format::negotiate(Some("image/png"), None).is_err());
//! assert_eq!(Format::from_param("health+json"), Some(Format::HealthJson));
//! ```

pub mod health;
pub mod html;
pub mod json;
pub mod junit;
pub mod prometheus;
pub mod server_timing;
pub mod text;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use crate::{Detail, Report, Status};

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// The JSON report (DESIGN.md §3). The default.
    Json,
    /// Plain text: `PASS`/`FAIL`, then one line per check.
    Text,
    /// A self-contained HTML page for people.
    Html,
    /// IETF health check response format, `application/health+json`.
    HealthJson,
    /// OpenMetrics text, `application/openmetrics-text; version=1.0.0`: what Prometheus asks
    /// for first.
    OpenMetrics,
    /// The Prometheus text exposition format, `text/plain; version=0.0.4`.
    Prometheus,
    /// JUnit XML, for CI systems that display test reports.
    Junit,
}

/// No format satisfies the request's `Accept` header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("none of the media types in `Accept: {accept}` can be produced; available: {available}")]
pub struct NotAcceptable {
    /// The header as sent.
    pub accept: String,
    /// The media types on offer.
    pub available: String,
}

/// One media range of an `Accept` header.
struct MediaRange<'a> {
    ty: &'a str,
    subtype: &'a str,
    /// Whether the range carries a `version` parameter (Prometheus' text format).
    versioned: bool,
    q: f32,
}

fn parse_accept(accept: &str) -> impl Iterator<Item = MediaRange<'_>> {
    accept.split(',').filter_map(|range| {
        let mut parts = range.split(';').map(str::trim);
        let (ty, subtype) = parts.next()?.split_once('/')?;
        let (ty, subtype) = (ty.trim(), subtype.trim());
        if ty.is_empty() || subtype.is_empty() {
            return None;
        }
        let mut q = 1.0f32;
        let mut versioned = false;
        for param in parts {
            let Some((key, value)) = param.split_once('=') else {
                continue;
            };
            let key = key.trim();
            if key.eq_ignore_ascii_case("q") {
                // A malformed weight counts as "not acceptable" rather than "preferred".
                q = value.trim().parse::<f32>().unwrap_or(0.0).clamp(0.0, 1.0);
            } else if key.eq_ignore_ascii_case("version") {
                versioned = true;
            }
        }
        Some(MediaRange {
            ty,
            subtype,
            versioned,
            q,
        })
    })
}

impl Format {
    /// Every format, in preference order for ties (a wildcard matches them all).
    pub const ALL: &'static [Format] = &[
        Format::Json,
        Format::Text,
        Format::Html,
        Format::HealthJson,
        Format::OpenMetrics,
        Format::Prometheus,
        Format::Junit,
    ];

    /// The canonical `?format=` value naming this format.
    pub fn param(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Text => "text",
            Format::Html => "html",
            Format::HealthJson => "health+json",
            Format::OpenMetrics => "openmetrics",
            Format::Prometheus => "prometheus",
            Format::Junit => "junit",
        }
    }

    /// Parse a `?format=` value, already form-decoded.
    ///
    /// In a query string `+` decodes to a space, so `?format=health+json` arrives as
    /// `health json`; both that and `health+json` (sent as `health%2Bjson`) are accepted, as
    /// is `health`.
    pub fn from_param(value: &str) -> Option<Format> {
        match value {
            "health json" | "health" => Some(Format::HealthJson),
            _ => Format::ALL.iter().copied().find(|f| f.param() == value),
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Text => "text/plain; charset=utf-8",
            Format::Html => "text/html; charset=utf-8",
            Format::HealthJson => "application/health+json",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::Junit => "application/xml; charset=utf-8",
        }
    }

    /// Whether a response in this format always has status 200, whatever the checks say.
    /// True for the Prometheus formats: scrapers discard the body of any other status, and
    /// the failure is in the metrics.
    pub fn always_ok(self) -> bool {
        matches!(self, Format::OpenMetrics | Format::Prometheus)
    }

    /// The media types (without parameters) that name this format in `Accept`.
    fn media_types(self) -> &'static [&'static str] {
        match self {
            Format::Json => &["application/json"],
            Format::Text => &["text/plain"],
            Format::Html => &["text/html"],
            Format::HealthJson => &["application/health+json"],
            Format::OpenMetrics => &["application/openmetrics-text"],
            Format::Prometheus => &["text/plain"],
            Format::Junit => &["application/xml", "text/xml"],
        }
    }

    /// How specifically `range` names this format: 3 for a parameter-qualified match, 2 for
    /// an exact type, 1 for `type/*`, 0 for `*/*`; `None` when it does not match.
    fn specificity(self, range: &MediaRange<'_>) -> Option<u8> {
        if range.ty == "*" && range.subtype == "*" {
            return Some(0);
        }
        let mut best = None;
        for media in self.media_types() {
            let (ty, subtype) = media.split_once('/').expect("type/subtype");
            if !range.ty.eq_ignore_ascii_case(ty) {
                continue;
            }
            let s = if range.subtype == "*" {
                1
            } else if range.subtype.eq_ignore_ascii_case(subtype) {
                // `text/plain; version=…` is Prometheus' format, and only that.
                match (self, range.versioned) {
                    (Format::Prometheus, true) => 3,
                    (Format::Prometheus, false) | (Format::Text, true) => continue,
                    _ => 2,
                }
            } else {
                continue;
            };
            best = best.max(Some(s));
        }
        best
    }

    /// Choose the format from `?format=` (if given) or the `Accept` header.
    pub fn negotiate(accept: Option<&str>, param: Option<Format>) -> Result<Format, NotAcceptable> {
        if let Some(f) = param {
            return Ok(f);
        }
        let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
            return Ok(Format::Json);
        };
        if accept == "*/*" {
            // What curl and most HTTP libraries send: every format matches alike, and the
            // first in preference order wins.
            return Ok(Format::ALL[0]);
        }
        let ranges: Vec<MediaRange<'_>> = parse_accept(accept).collect();
        // (q, specificity, earlier range first, preference order) — larger is better.
        let mut best: Option<((f32, u8, usize, usize), Format)> = None;
        for (preference, &format) in Format::ALL.iter().enumerate() {
            // The most specific matching range decides this format's q; the first wins a tie.
            let mut decided: Option<(u8, usize, f32)> = None;
            for (position, range) in ranges.iter().enumerate() {
                if let Some(s) = format.specificity(range)
                    && decided.is_none_or(|(ds, _, _)| s > ds)
                {
                    decided = Some((s, position, range.q));
                }
            }
            let Some((specificity, position, q)) = decided else {
                continue;
            };
            if q <= 0.0 {
                continue;
            }
            let key = (
                q,
                specificity,
                usize::MAX - position,
                usize::MAX - preference,
            );
            if best.as_ref().is_none_or(|(b, _)| key > *b) {
                best = Some((key, format));
            }
        }
        best.map(|(_, f)| f).ok_or_else(|| NotAcceptable {
            accept: accept.to_string(),
            available: Format::ALL
                .iter()
                .map(|f| {
                    if *f == Format::Prometheus {
                        "text/plain; version=0.0.4".to_string()
                    } else {
                        f.media_types().join(", ")
                    }
                })
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Write `report` in this format.
    pub fn write(self, report: &Report) -> Vec<u8> {
        match self {
            Format::Json => json::write(report),
            Format::Text => text::write(report),
            Format::Html => html::write(report),
            Format::HealthJson => health::write(report),
            Format::OpenMetrics => prometheus::write(report, prometheus::Dialect::OpenMetrics),
            Format::Prometheus => prometheus::write(report, prometheus::Dialect::Text004),
            Format::Junit => junit::write(report),
        }
    }

    /// The endpoint's response carrying `report`, which must already be restricted to
    /// `detail`: status (`failure_status` for a failed run, except in the Prometheus
    /// formats), `Content-Type`, `Cache-Control: no-store`, `Vary: Accept`, a
    /// `Server-Timing` header when `detail` is [`Detail::Full`], and for HTML a
    /// `Content-Security-Policy` that lets the page load nothing. `head` leaves the body out.
    pub(crate) fn response(
        self,
        report: &Report,
        detail: Detail,
        failure_status: StatusCode,
        head: bool,
        refresh: Option<u32>,
    ) -> Response<Bytes> {
        let status = if report.status == Status::Fail && !self.always_ok() {
            failure_status
        } else {
            StatusCode::OK
        };
        let body = if head {
            Bytes::new()
        } else if self == Format::Html {
            Bytes::from(html::write_page(report, refresh))
        } else {
            Bytes::from(self.write(report))
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type()),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::VARY, HeaderValue::from_static("Accept"));
        if self == Format::Html {
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
            );
        }
        if detail == Detail::Full
            && let Ok(value) = HeaderValue::from_str(&server_timing::header_value(report))
        {
            headers.insert(HeaderName::from_static("server-timing"), value);
        }
        response
    }
}

/// "1 check", "3 checks": the count every format's summary line starts with.
pub(crate) fn checks(n: usize) -> String {
    if n == 1 {
        "1 check".to_string()
    } else {
        format!("{n} checks")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME: &str =
        "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
    const FIREFOX: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    const PROMETHEUS_2: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    const PROMETHEUS_3: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

    fn pick(accept: &str) -> Result<Format, NotAcceptable> {
        Format::negotiate(Some(accept), None)
    }

    #[test]
    fn browsers_get_html() {
        assert_eq!(pick(CHROME), Ok(Format::Html));
        assert_eq!(pick(FIREFOX), Ok(Format::Html));
    }

    #[test]
    fn curl_and_kube_probe_get_json() {
        assert_eq!(pick("*/*"), Ok(Format::Json));
        assert_eq!(Format::negotiate(None, None), Ok(Format::Json));
        assert_eq!(pick("  "), Ok(Format::Json));
    }

    #[test]
    fn prometheus_scrapers_get_openmetrics() {
        assert_eq!(pick(PROMETHEUS_2), Ok(Format::OpenMetrics));
        assert_eq!(pick(PROMETHEUS_3), Ok(Format::OpenMetrics));
    }

    #[test]
    fn versioned_text_plain_is_prometheus_and_plain_text_plain_is_text() {
        assert_eq!(pick("text/plain;version=0.0.4"), Ok(Format::Prometheus));
        assert_eq!(
            pick("text/plain; version=0.0.4; q=0.9, */*;q=0.1"),
            Ok(Format::Prometheus)
        );
        assert_eq!(pick("text/plain"), Ok(Format::Text));
        assert_eq!(pick("text/*"), Ok(Format::Text));
    }

    #[test]
    fn health_json_and_junit_by_media_type() {
        assert_eq!(pick("application/health+json"), Ok(Format::HealthJson));
        assert_eq!(
            pick("application/health+json, application/json;q=0.9"),
            Ok(Format::HealthJson)
        );
        assert_eq!(pick("application/xml"), Ok(Format::Junit));
        assert_eq!(pick("text/xml"), Ok(Format::Junit));
    }

    #[test]
    fn a_specific_zero_q_refuses_what_a_wildcard_offers() {
        assert_eq!(pick("*/*, application/json;q=0"), Ok(Format::Text));
        assert_eq!(pick("text/*, text/plain;q=0"), Ok(Format::Html));
    }

    #[test]
    fn q_values_order_and_ties_go_to_the_earlier_range() {
        assert_eq!(pick("text/plain;q=0.5, application/json"), Ok(Format::Json));
        assert_eq!(pick("text/html, application/json"), Ok(Format::Html));
        assert_eq!(pick("application/json, text/html"), Ok(Format::Json));
        assert_eq!(pick("text/html;q=0.2, */*;q=0.1"), Ok(Format::Html));
        // Case-insensitive types, white space around parameters.
        assert_eq!(pick("Text/HTML ; Q=1"), Ok(Format::Html));
    }

    #[test]
    fn nothing_acceptable_is_an_error_naming_the_header_and_the_offer() {
        let err = pick("image/png, application/pdf").unwrap_err();
        assert_eq!(err.accept, "image/png, application/pdf");
        assert!(err.available.contains("application/health+json"), "{err}");
        assert!(pick("application/json;q=0").is_err());
        assert!(pick("garbage").is_err());
        assert!(pick("application/json;q=nonsense").is_err());
    }

    #[test]
    fn format_param_wins_over_accept() {
        assert_eq!(
            Format::negotiate(Some("image/png"), Some(Format::Junit)),
            Ok(Format::Junit)
        );
    }

    #[test]
    fn every_param_round_trips_and_health_json_survives_form_decoding() {
        for &f in Format::ALL {
            assert_eq!(Format::from_param(f.param()), Some(f));
        }
        assert_eq!(Format::from_param("health json"), Some(Format::HealthJson));
        assert_eq!(Format::from_param("yaml"), None);
    }

    #[test]
    fn only_prometheus_formats_are_always_ok() {
        let always: Vec<_> = Format::ALL.iter().filter(|f| f.always_ok()).collect();
        assert_eq!(always, [&Format::OpenMetrics, &Format::Prometheus]);
    }
}

/// Reports for the writers' tests: one check of each status, with a hostile message.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::time::{Duration, SystemTime};

    use crate::report::{CheckReport, ErrorReport};
    use crate::{Report, Status};

    pub(crate) fn check(name: &str, status: Status) -> CheckReport {
        CheckReport {
            name: name.into(),
            status,
            duration_ms: 3.25,
            tags: vec!["db".to_string()],
            error: None,
            message: None,
            observed: Default::default(),
            steps: Vec::new(),
        }
    }

    pub(crate) fn failing(name: &str, kind: &str, message: &str) -> CheckReport {
        CheckReport {
            error: Some(ErrorReport {
                kind: kind.to_string(),
                message: Some(message.to_string()),
                suggestion: Some("Look at <b>the</b> logs & retry.".to_string()),
            }),
            ..check(name, Status::Fail)
        }
    }

    /// A pass, a warn, a fail (assertion), an error (timeout) and a skip.
    pub(crate) fn mixed() -> Report {
        let mut warn = check("disk::free", Status::Warn);
        warn.message = Some("only 9% free".to_string());
        warn.observed
            .insert("free_pct".into(), serde_json::json!(9));
        let mut skip = check("mail::smtp", Status::Skip);
        skip.message = Some("SMTP_HOST is not set".to_string());
        let checks = vec![
            check("db::ping", Status::Pass),
            warn,
            failing(
                "orders::db_write",
                "assertion",
                "expected 1 row, found 0 <script>alert(\"x\")</script>",
            ),
            failing("payments::api", "timeout", "did not finish within 2s"),
            skip,
        ];
        let mut report = Report::from_checks(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_337_241),
            Duration::from_micros(12_400),
            checks,
        );
        report.service = Some("orders-api".into());
        report.version = Some("1.4.2".into());
        report.release_id = Some("9f2c1ab".into());
        report
    }

    /// A scenario that failed at step 2 of 3: step 3 skipped, its teardown ran.
    pub(crate) fn scenario() -> Report {
        use crate::report::StepReport;
        let step = |name: &str, status: Status| StepReport {
            name: name.to_string(),
            status,
            duration_ms: 1.5,
            teardown: false,
            persona: Some("clerk".into()),
            method: Some("GET".into()),
            path: Some("/orders/7".into()),
            status_code: Some(200),
            error: None,
            message: None,
        };
        let mut check = failing(
            "orders::lifecycle[clerk]",
            "http_status",
            "step 2/3 \"read\": 500",
        );
        let mut read = step("read", Status::Fail);
        read.status_code = Some(500);
        read.error = Some(ErrorReport {
            kind: "http_status".into(),
            message: Some("GET /orders/7 as clerk: expected a 2xx status, got 500".into()),
            suggestion: None,
        });
        let mut list = step("list", Status::Skip);
        (list.method, list.path, list.status_code, list.persona) = (None, None, None, None);
        list.duration_ms = 0.0;
        list.message = Some("not run: step 2 \"read\" failed".into());
        let mut teardown = step("teardown: DELETE /orders/7", Status::Pass);
        teardown.teardown = true;
        teardown.method = Some("DELETE".into());
        teardown.status_code = Some(204);
        check.steps = vec![step("create", Status::Pass), read, list, teardown];
        let mut report = Report::from_checks(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_337_241),
            Duration::from_millis(9),
            vec![check],
        );
        report.service = Some("orders-api".into());
        report
    }

    /// Every check passed (one warned, one skipped).
    pub(crate) fn passing() -> Report {
        let mixed = mixed();
        let checks = mixed
            .checks
            .into_iter()
            .filter(|c| c.status != Status::Fail)
            .collect();
        let mut report = Report::from_checks(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_337_241),
            Duration::from_millis(5),
            checks,
        );
        report.service = mixed.service;
        report.version = mixed.version;
        report.release_id = mixed.release_id;
        report
    }
}
