//! The command line: every flag, its default, and the exit codes `--help` shows.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use reqwest::Url;

/// Exit codes, shown at the end of `--help` and documented in the README.
pub const EXIT_CODES: &str = "\
Exit codes (smoketest check):
  0   pass: every endpoint answered a passing report (and the required release)
  1   fail: a service answered and its checks failed, or it runs another release: roll back
  2   error: an endpoint could not be reached, or answered something that is not a
      smoketest report (not_a_report); nothing was decided
  64  usage error: bad flag, URL or duration

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
    fn passwords_in_urls_are_not_shown() {
        let url = parse_url("https://ops:hunter2@orders.internal/smoketest").unwrap();
        let shown = display_url(&url);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("ops:***@"), "{shown}");
    }
}
