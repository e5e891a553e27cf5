//! `smoketest`: the deploy gate and monitor client for smoketest endpoints.
//!
//! `smoketest check URL…` fetches the report from every endpoint (replica) concurrently,
//! retries only what is transient, and exits 0 (pass), 1 (the service answered and
//! failed: roll back), 2 (no verdict: no report, or one that proves nothing) or 64 (usage error). `smoketest watch`
//! polls and prints one line per state change. `smoketest probe URL…` diagnoses any
//! HTTP(S) URL layer by layer. See README.md for the details.
#![forbid(unsafe_code)]

mod cli;
mod diagnose;
mod fetch;
mod gate;
mod output;
mod probe;
mod replicas;
mod retry;
mod spinner;
mod watch;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::Parser;

use crate::cli::{CheckArgs, Cli, Command, Format};
use crate::fetch::{Client, Freshness};
use crate::gate::{Criteria, Gate};
use crate::output::{Style, redact, use_color};

/// Usage errors exit 64 (EX_USAGE, sysexits.h), leaving 2 to "no report".
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            // `--help` and `--version` are not errors.
            return ExitCode::from(if error.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    // The one TLS crypto provider this binary uses; ring builds without cmake.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("smoketest: could not start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Check(args) => check(args).await,
            Command::Probe(args) => probe::run(args).await,
            Command::Watch(args) => match Client::new(&args.client) {
                Ok(client) => watch::run(args, client).await,
                Err(error) => {
                    eprintln!("smoketest: {error}");
                    EXIT_USAGE
                }
            },
        }
    });
    ExitCode::from(code)
}

async fn check(args: CheckArgs) -> u8 {
    let client = match Client::new(&args.client) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("smoketest: {error}");
            return EXIT_USAGE;
        }
    };
    // An authorized caller may ask for a run of its own rather than a cached report.
    let urls = if client.has_token() {
        args.urls.iter().cloned().map(with_fresh).collect()
    } else {
        args.urls.clone()
    };
    let gate = Gate {
        client,
        urls,
        timeout: args.client.timeout,
        wait: args.wait,
        interval: args.interval,
        criteria: Criteria {
            require_release: args.require_release.clone(),
            service: args.service.clone(),
            min_checks: args.min_checks,
        },
        freshness: Freshness::from_now(args.max_age),
        all_replicas: args.all_replicas,
        fail_fast: args.fail_fast,
        pinned: Arc::default(),
        // On a terminal the spinner shows progress; in a CI log, a line per change does.
        log_progress: args.wait.is_some() && !std::io::stderr().is_terminal(),
    };
    let progress = Arc::new(Mutex::new(String::new()));
    let spinner = (args.format == Format::Human && std::io::stderr().is_terminal())
        .then(|| spinner::Spinner::start(progress.clone()));
    let decision = gate.run(progress).await;
    if let Some(spinner) = spinner {
        spinner.stop().await;
    }
    let text = match args.format {
        Format::Human => output::human::render(
            &decision,
            Style {
                color: use_color(args.color.color),
            },
        ),
        Format::Json => output::json::render(&decision),
        Format::Junit => output::junit::render(&decision),
    };
    print!("{}", redact(text, args.client.token.as_deref()));
    decision.verdict.exit_code()
}

/// `url` with `fresh=1` added to its query (unless it has a `fresh` already), other
/// parameters kept.
fn with_fresh(mut url: reqwest::Url) -> reqwest::Url {
    if !url.query_pairs().any(|(name, _)| name == "fresh") {
        url.query_pairs_mut().append_pair("fresh", "1");
    }
    url
}

#[cfg(test)]
mod tests {
    #[test]
    fn fresh_is_added_and_other_parameters_are_kept() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        assert_eq!(
            super::with_fresh(url("http://h/smoketest?tag=db&tag=cache")).as_str(),
            "http://h/smoketest?tag=db&tag=cache&fresh=1"
        );
        assert_eq!(
            super::with_fresh(url("http://h/smoketest")).as_str(),
            "http://h/smoketest?fresh=1"
        );
        assert_eq!(
            super::with_fresh(url("http://h/smoketest?fresh=0")).as_str(),
            "http://h/smoketest?fresh=0"
        );
    }
}
