//! The command line: every flag, its default, and the exit codes `--help` shows.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use reqwest::Url;

/// Exit codes, shown at the end of `--help` and documented in the README.
pub const EXIT_CODES: &str = "\
Exit codes (smoketest check):
  0   pass: every endpoint (every replica) answered a fresh, passing report that ran
      checks (and of the required service and release)
  1   fail: a service answered and its checks failed, or it is another service or runs
      another release: roll back
  2   error: nothing was decided: an endpoint could not be reached, answered something
      that is not a smoketest report (not_a_report, http_status), ran no checks
      (no_checks) or only served reports older than the gate (stale)
  64  usage error: bad flag, URL or duration

Exit codes (smoketest probe):
  0   every URL answered as expected
  1   some URL failed a layer (DNS, TCP, TLS, HTTP) or an expectation
  64  usage error: bad flag, URL, file or duration

smoketest watch exits 0 when interrupted and 64 on a usage error; it never exits because
an endpoint fails.";

/// The deploy gate and monitor client for smoketest endpoints.
#[derive(Debug, Parser)]
#[command(name = "smoketest", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch the report from one or more endpoints (replicas) and decide: exit 0 pass,
    /// 1 fail (roll back), 2 no answer or not a report.
    #[command(after_help = EXIT_CODES)]
    Check(CheckArgs),
    /// Poll endpoints forever and print one line each time one changes state.
    #[command(after_help = EXIT_CODES)]
    Watch(WatchArgs),
    /// Probe any HTTP(S) URL layer by layer (DNS, TCP, TLS, HTTP): timings, certificate
    /// expiry, status, and which layer failed; exit 0 when all pass, 1 when any fails.
    #[command(after_help = EXIT_CODES)]
    Probe(ProbeArgs),
}

/// `smoketest check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Smoketest endpoint URLs, e.g. https://10.0.0.5:8080/smoketest; several URLs are
    /// fetched concurrently and must all pass.
    #[arg(required = true, value_name = "URL", value_parser = parse_url)]
    pub urls: Vec<Url>,

    /// Keep polling until every endpoint passes or DURATION has passed (a rollout in
    /// progress). Without it a failing report exits 1 at once.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive)]
    pub wait: Option<Duration>,

    /// Pause between polls while waiting.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub interval: Duration,

    /// Fail unless every endpoint reports this release_id (so an old pod cannot pass).
    #[arg(long, value_name = "ID")]
    pub require_release: Option<String>,

    /// Fail unless every endpoint reports this `service` (so a URL that points at another
    /// service cannot pass).
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,

    /// A report counts as a verdict only if at least N checks ran (passed, warned or
    /// failed; skipped checks did not run). Fewer is exit 2, kind `no_checks`.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub min_checks: u64,

    /// Accept a cached report up to DURATION old (its `age_ms`) even if its run started
    /// before the gate did. Without it, only runs that started after the gate count.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_age: Option<Duration>,

    /// Resolve every address of each URL's host (A and AAAA) and check each replica
    /// directly, keeping the URL's Host header and TLS name: one failing pod fails the gate.
    #[arg(long)]
    pub all_replicas: bool,

    /// Decide on the first failing report without awaiting the other endpoints.
    #[arg(long)]
    pub fail_fast: bool,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,

    #[command(flatten)]
    pub client: ClientArgs,

    #[command(flatten)]
    pub color: ColorArgs,
}

/// `smoketest watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Smoketest endpoint URLs to poll.
    #[arg(required = true, value_name = "URL", value_parser = parse_url)]
    pub urls: Vec<Url>,

    /// Pause between polls.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_positive)]
    pub interval: Duration,

    /// Output format: a line of text, or one JSON object per line.
    #[arg(long, value_enum, default_value_t = WatchFormat::Human)]
    pub format: WatchFormat,

    #[command(flatten)]
    pub client: ClientArgs,

    #[command(flatten)]
    pub color: ColorArgs,
}

/// `smoketest probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// URLs to probe (http or https), concurrently.
    #[arg(value_name = "URL", value_parser = parse_url)]
    pub urls: Vec<Url>,

    /// Also probe the URLs in FILE, one per line; blank lines and lines starting with `#`
    /// are skipped. `-` reads standard input. Repeatable.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<std::path::PathBuf>,

    /// The statuses that pass, e.g. `200` or `200,204` (default: any 2xx). Repeatable.
    #[arg(long, value_name = "STATUS", value_delimiter = ',', value_parser = parse_status)]
    pub expect_status: Vec<u16>,

    /// Fail unless the body contains this text.
    #[arg(long, value_name = "TEXT")]
    pub expect_body: Option<String>,

    /// Fail unless the body is JSON holding VALUE at POINTER (RFC 6901), e.g.
    /// `/status=ok` or `/ready=true`; VALUE is read as JSON when it is JSON, else as a string.
    #[arg(long, value_name = "POINTER=VALUE", value_parser = parse_json_pointer)]
    pub expect_json_pointer: Option<(String, serde_json::Value)>,

    /// Send this header, e.g. `-H 'Authorization: Bearer …'` (values are never printed).
    /// Repeatable.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,

    /// Longest time one URL's probe may take, all layers and the body.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_positive)]
    pub timeout: Duration,

    /// Longest time DNS, the TCP connect and the TLS handshake may each take.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_positive)]
    pub connect_timeout: Duration,

    /// How many URLs to probe at once.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    pub concurrency: u64,

    /// Trust this CA certificate (PEM file) besides the system's. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Vec<std::path::PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,

    #[command(flatten)]
    pub color: ColorArgs,
}

/// How to reach the endpoints and how hard to retry.
#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// Bearer token sent as `Authorization: Bearer TOKEN`; never printed.
    #[arg(
        long,
        env = "SMOKETEST_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,

    /// Longest time to get one report, retries of transient faults included.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_positive)]
    pub timeout: Duration,

    /// Longest time one HTTP request may take before it is retried.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_positive)]
    pub attempt_timeout: Duration,

    /// First retry delay; it doubles on each retry (with jitter) up to --retry-max.
    #[arg(long, value_name = "DURATION", default_value = "250ms", value_parser = parse_duration)]
    pub retry_base: Duration,

    /// Longest delay between two retries (a longer Retry-After is still honoured).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub retry_max: Duration,

    /// Trust this CA certificate (PEM file) besides the system's, e.g. a private CA.
    /// Repeatable.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Vec<std::path::PathBuf>,
}

/// When to colour the human output.
#[derive(Debug, Args, Clone, Copy)]
pub struct ColorArgs {
    /// Colour the output: auto (only on a terminal, and not when NO_COLOR is set),
    /// always or never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour on a terminal unless NO_COLOR is set.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// `smoketest check --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A summary for people.
    Human,
    /// One JSON object.
    Json,
    /// JUnit XML, for CI test-report panes.
    Junit,
}

/// `smoketest watch --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WatchFormat {
    /// One line of text per state change.
    Human,
    /// One JSON object per line per state change.
    Json,
}

/// A duration written the usual way: `500ms`, `30s`, `5m`, `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration ({e}); write it like 500ms, 30s or 5m"))
}

/// A duration longer than zero.
pub fn parse_positive(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err(format!("`{text}` is zero; this must be longer than zero"));
    }
    Ok(duration)
}

/// An HTTP status code, 100 to 599.
pub fn parse_status(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u16>() {
        Ok(status) if (100..=599).contains(&status) => Ok(status),
        _ => Err(format!(
            "`{text}` is not an HTTP status; write it like 200 or 200,204"
        )),
    }
}

/// `POINTER=VALUE`: a JSON pointer and the value expected there (JSON if it parses as
/// JSON, else a string).
pub fn parse_json_pointer(text: &str) -> Result<(String, serde_json::Value), String> {
    let Some((pointer, value)) = text.split_once('=') else {
        return Err(format!(
            "`{text}` has no `=`; write it like /status=ok or /ready=true"
        ));
    };
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err(format!(
            "`{pointer}` is not a JSON pointer: it starts with `/`, like /status or /checks/0/ok"
        ));
    }
    let value = serde_json::from_str(value)
        .unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
    Ok((pointer.to_string(), value))
}

/// `NAME: VALUE`.
pub fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), value.trim().to_string()))
        }
        _ => Err("a header is written `NAME: VALUE`, e.g. `Accept: application/json`".into()),
    }
}

/// An absolute http or https URL.
pub fn parse_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| {
        format!("`{text}` is not a URL ({e}); write it like https://host:8080/smoketest")
    })?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        "http" | "https" => Err(format!("`{text}` has no host")),
        other => Err(format!(
            "`{text}` uses the `{other}` scheme; only http and https are supported"
        )),
    }
}

/// The URL as it may be printed: a password in it is replaced by `***`.
pub fn display_url(url: &Url) -> String {
    if url.password().is_some() {
        let mut shown = url.clone();
        let _ = shown.set_password(Some("***"));
        shown.to_string()
    } else {
        url.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_the_usual_way() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("5 parsecs").unwrap_err().contains("500ms"));
        assert!(parse_positive("0s").is_err());
    }

    #[test]
    fn only_http_urls_with_a_host_are_accepted() {
        assert!(parse_url("https://orders.internal/smoketest").is_ok());
        assert!(
            parse_url("ftp://orders.internal/")
                .unwrap_err()
                .contains("ftp")
        );
        assert!(parse_url("orders.internal/smoketest").is_err());
    }

    #[test]
    fn probe_expectations_parse() {
        assert_eq!(parse_status("204"), Ok(204));
        assert!(parse_status("99").is_err());
        assert!(parse_status("ok").is_err());
        assert_eq!(
            parse_json_pointer("/status=ok"),
            Ok(("/status".into(), serde_json::json!("ok")))
        );
        assert_eq!(
            parse_json_pointer("/ready=true"),
            Ok(("/ready".into(), serde_json::json!(true)))
        );
        assert_eq!(
            parse_json_pointer("/n=3"),
            Ok(("/n".into(), serde_json::json!(3)))
        );
        assert!(parse_json_pointer("status=ok").is_err());
        assert!(parse_json_pointer("/status").is_err());
        assert_eq!(
            parse_header("X-Probe: yes"),
            Ok(("X-Probe".into(), "yes".into()))
        );
        assert!(parse_header("nocolon").is_err());
    }

    #[test]
    fn passwords_in_urls_are_not_shown() {
        let url = parse_url("https://ops:hunter2@orders.internal/smoketest").unwrap();
        let shown = display_url(&url);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("ops:***@"), "{shown}");
    }
}
