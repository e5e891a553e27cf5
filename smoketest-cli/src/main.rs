//! `smoketest`: the deploy gate and monitor client for smoketest endpoints.
//!
//! `smoketest check URL…` fetches the report from every endpoint (replica) concurrently,
//! retries only what is transient, and exits 0 (pass), 1 (the service answered and
//! failed: roll back), 2 (no report to decide on) or 64 (usage error). `smoketest watch`
//! polls and prints one line per state change. See README.md for the details.
#![forbid(unsafe_code)]

mod cli;
mod diagnose;
mod fetch;
mod gate;
mod output;
mod retry;
mod spinner;
mod watch;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::Parser;

use crate::cli::{CheckArgs, Cli, Command, Format};
use crate::fetch::Client;
use crate::gate::Gate;
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
    let gate = Gate {
        client,
        urls: args.urls.clone(),
        timeout: args.client.timeout,
        wait: args.wait,
        interval: args.interval,
        require_release: args.require_release.clone(),
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
