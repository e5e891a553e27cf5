//! `smoketest probe URL…`: layered diagnosis of any HTTP(S) URL, no smoketest endpoint
//! needed.
//!
//! Each URL goes through [`smoketest_checks::http::probe`] — DNS → TCP → TLS → HTTP, the
//! probe a service's own HTTP checks use — so a failure names its layer, what was seen and
//! what to try, in the same words as a check would. Many URLs are probed concurrently
//! (`--concurrency`), printed in the order given, and summed up; exit 0 when all pass, 1
//! when any fails, 64 on a usage error.

use std::fmt::Write;
use std::io::Read;
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use reqwest::Url;
use serde::Serialize;
use smoketest_checks::http::{Probe, ProbeOptions, probe, redact_url};

use crate::cli::{Format, ProbeArgs, parse_url};
use crate::output::{Style, format_duration, use_color};

const EXIT_USAGE: u8 = 64;

/// Certificates expiring within this many days are pointed out (the probe still passes).
const CERT_SOON_DAYS: u64 = 14;

/// Run `smoketest probe`; returns the exit code.
pub async fn run(args: ProbeArgs) -> u8 {
    let urls = match collect_urls(&args) {
        Ok(urls) => urls,
        Err(error) => {
            eprintln!("smoketest probe: {error}");
            return EXIT_USAGE;
        }
    };
    let mut options = ProbeOptions::new()
        .timeout(args.timeout)
        .connect_timeout(args.connect_timeout);
    if !args.expect_status.is_empty() {
        options = options.expect_status(args.expect_status.iter().copied());
    }
    if let Some(text) = &args.expect_body {
        options = options.body_contains(text.as_str());
    }
    if let Some((pointer, value)) = &args.expect_json_pointer {
        options = options.json_pointer(pointer.as_str(), value.clone());
    }
    for (name, value) in &args.headers {
        options = options.header(name.as_str(), value.as_str());
    }
    match crate::fetch::load_certificates(&args.ca_cert) {
        Ok(roots) => {
            for der in roots {
                options = options.root_certificate(der);
            }
        }
        Err(error) => {
            eprintln!("smoketest probe: {error}");
            return EXIT_USAGE;
        }
    }
    let started = Instant::now();
    let options = &options;
    let probes: Vec<Probe> = futures_util::stream::iter(urls.iter())
        .map(|url| probe(url.as_str(), options))
        .buffered(usize::try_from(args.concurrency).unwrap_or(usize::MAX))
        .collect()
        .await;
    let elapsed = started.elapsed();
    let code = if probes.iter().all(Probe::is_ok) {
        0
    } else {
        1
    };
    let text = match args.format {
        Format::Human => render_human(
            &probes,
            elapsed,
            code,
            Style {
                color: use_color(args.color.color),
            },
        ),
        Format::Json => render_json(&probes, elapsed, code),
        Format::Junit => render_junit(&probes, elapsed),
    };
    print!("{text}");
    code
}

/// The URLs on the command line, then those of each `-f` file, in order.
fn collect_urls(args: &ProbeArgs) -> Result<Vec<Url>, String> {
    let mut urls = args.urls.clone();
    for path in &args.files {
        let (name, text) = if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("cannot read URLs from standard input: {e}"))?;
            ("standard input".to_string(), text)
        } else {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read URLs from {}: {e}", path.display()))?;
            (path.display().to_string(), text)
        };
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            urls.push(parse_url(line).map_err(|e| format!("{name}:{}: {e}", number + 1))?);
        }
    }
    if urls.is_empty() {
        return Err("no URL to probe: give URLs as arguments or in a file with -f urls.txt".into());
    }
    Ok(urls)
}

/// Days from now to `t` (negative when past).
fn days_left(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::now()) {
        Ok(d) => (d.as_secs() / 86_400) as i64,
        Err(e) => -((e.duration().as_secs() / 86_400) as i64),
    }
}

fn ms(d: Duration) -> f64 {
    smoketest_core::report::millis(d)
}

/// The layers of one probe: `dns 1.2ms  tcp 0.3ms  tls 4.0ms  first byte 2.1ms  total
/// 8.0ms`, the failing layer marked; a layer that did not run (DNS for an IP address, TLS
/// for http) is left out.
fn layers_line(p: &Probe) -> String {
    let failed = p.diagnosis.as_ref().map(|d| d.layer.as_str());
    let mut parts = Vec::new();
    let layers = [
        ("dns", "dns", p.phases.dns),
        ("tcp", "tcp", p.phases.connect),
        ("tls", "tls", p.phases.tls),
        ("http", "first byte", p.phases.first_byte),
    ];
    for (layer, label, took) in layers {
        match took {
            Some(d) => parts.push(format!("{label} {}", format_duration(d))),
            None if failed == Some(layer) => {
                parts.push(format!("{label} FAILED"));
                break;
            }
            None => {}
        }
    }
    parts.push(format!("total {}", format_duration(p.phases.total)));
    parts.join("  ")
}

fn certificate_line(p: &Probe) -> Option<String> {
    let cert = p.certificate.as_ref()?;
    let days = days_left(cert.not_after);
    let soon = if days < CERT_SOON_DAYS as i64 {
        " — renew soon"
    } else {
        ""
    };
    Some(format!(
        "certificate expires {} ({days} days){soon}",
        humantime::format_rfc3339_seconds(cert.not_after)
    ))
}

fn render_human(probes: &[Probe], elapsed: Duration, code: u8, style: Style) -> String {
    let mut out = String::new();
    for p in probes {
        let status = p.status.map(|s| format!("HTTP {s}  ")).unwrap_or_default();
        match &p.diagnosis {
            None => {
                let _ = writeln!(
                    out,
                    "{}  {}  {status}{}",
                    style.pass("PASS"),
                    p.url,
                    layers_line(p)
                );
                if let Some(line) = certificate_line(p) {
                    let _ = writeln!(out, "      {line}");
                }
            }
            Some(d) => {
                let _ = writeln!(
                    out,
                    "{}  {}  {} ({} layer)  {status}{}",
                    style.fail("FAIL"),
                    p.url,
                    d.kind.as_str(),
                    d.layer.as_str(),
                    layers_line(p)
                );
                let _ = writeln!(out, "      {}", d.message);
                if let Some(line) = certificate_line(p) {
                    let _ = writeln!(out, "      {line}");
                }
                let _ = writeln!(out, "      → {}", d.suggestion);
            }
        }
    }
    let failed: Vec<&Probe> = probes.iter().filter(|p| !p.is_ok()).collect();
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for p in &failed {
        let kind = p.diagnosis.as_ref().map_or("", |d| d.kind.as_str());
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((kind, 1)),
        }
    }
    let kinds = if kinds.is_empty() {
        String::new()
    } else {
        format!(
            " ({})",
            kinds
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let verdict = if code == 0 {
        style.pass("PASS")
    } else {
        style.fail("FAIL")
    };
    let _ = writeln!(
        out,
        "{verdict}: {} URL(s) probed, {} passed, {} failed{kinds} in {} (exit {code})",
        probes.len(),
        probes.len() - failed.len(),
        failed.len(),
        format_duration(elapsed),
    );
    out
}

#[derive(Serialize)]
struct JsonOutput<'a> {
    exit_code: u8,
    elapsed_ms: f64,
    summary: JsonSummary,
    probes: Vec<JsonProbe<'a>>,
}

#[derive(Serialize)]
struct JsonSummary {
    total: usize,
    passed: usize,
    failed: usize,
}

#[derive(Serialize)]
struct JsonProbe<'a> {
    url: &'a str,
    /// `pass` or `fail`.
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remote: Option<String>,
    phases: JsonPhases,
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate: Option<JsonCertificate<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<JsonError<'a>>,
}

#[derive(Serialize)]
struct JsonPhases {
    #[serde(skip_serializing_if = "Option::is_none")]
    dns_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connect_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_byte_ms: Option<f64>,
    total_ms: f64,
}

#[derive(Serialize)]
struct JsonCertificate<'a> {
    subject: &'a str,
    issuer: &'a str,
    names: &'a [String],
    not_after: String,
    days_left: i64,
}

#[derive(Serialize)]
struct JsonError<'a> {
    kind: &'static str,
    layer: &'static str,
    message: &'a str,
    suggestion: &'a str,
}

fn render_json(probes: &[Probe], elapsed: Duration, code: u8) -> String {
    let passed = probes.iter().filter(|p| p.is_ok()).count();
    let output = JsonOutput {
        exit_code: code,
        elapsed_ms: ms(elapsed),
        summary: JsonSummary {
            total: probes.len(),
            passed,
            failed: probes.len() - passed,
        },
        probes: probes
            .iter()
            .map(|p| JsonProbe {
                url: &p.url,
                outcome: if p.is_ok() { "pass" } else { "fail" },
                http_status: p.status,
                remote: p.remote.map(|r| r.to_string()),
                phases: JsonPhases {
                    dns_ms: p.phases.dns.map(ms),
                    connect_ms: p.phases.connect.map(ms),
                    tls_ms: p.phases.tls.map(ms),
                    first_byte_ms: p.phases.first_byte.map(ms),
                    total_ms: ms(p.phases.total),
                },
                certificate: p.certificate.as_ref().map(|c| JsonCertificate {
                    subject: &c.subject,
                    issuer: &c.issuer,
                    names: &c.names,
                    not_after: humantime::format_rfc3339_seconds(c.not_after).to_string(),
                    days_left: days_left(c.not_after),
                }),
                error: p.diagnosis.as_ref().map(|d| JsonError {
                    kind: d.kind.as_str(),
                    layer: d.layer.as_str(),
                    message: &d.message,
                    suggestion: &d.suggestion,
                }),
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&output).expect("the output always serializes");
    text.push('\n');
    text
}

fn render_junit(probes: &[Probe], elapsed: Duration) -> String {
    let mut junit = Report::new("smoketest probe");
    junit.set_time(elapsed);
    let mut suite = TestSuite::new("probe");
    for p in probes {
        let status = match &p.diagnosis {
            None => TestCaseStatus::success(),
            Some(d) => {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status.set_type(d.kind.as_str());
                status.set_message(d.message.as_str());
                status.set_description(format!("{} layer: {}", d.layer.as_str(), d.suggestion));
                status
            }
        };
        let mut case = TestCase::new(redact_url(&p.url), status);
        case.set_classname("probe");
        case.set_time(p.phases.total);
        case.set_system_out(layers_line(p));
        suite.add_test_case(case);
    }
    junit.add_test_suite(suite);
    junit
        .to_string()
        .expect("the JUnit report always serializes")
}
