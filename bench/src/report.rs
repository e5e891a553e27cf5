//! `BENCHMARKS.md`, written from the figures of one run: every number in it is measured.

use std::fmt::Write;
use std::time::Duration;

use crate::load::median;
use crate::machine::{Machine, utc_now};
use crate::pgproxy::Turn;
use crate::profile::{Profile, short_name};
use crate::run::{Paired, Plan};

/// The goals of issue 19, in one place: the summary, the details and the driver's output
/// all judge by these.
pub mod goal {
    /// Pass-through, the README's mounting: throughput with / without, at least.
    pub const PASS_THROUGH: f64 = 0.98;
    /// `/smoketest` of 10 no-op checks / the bare handler: throughput, at least.
    pub const ENDPOINT: f64 = 0.6;
    /// `/smoketest` of the Postgres check / pgbench: throughput, at least.
    pub const POSTGRES: f64 = 0.85;
    /// Round trips the runner adds around a Postgres check's own statements, at most.
    pub const ROUND_TRIPS: f64 = 2.0;
    /// Wall time of 10 checks of 100 ms / 100 ms, at most.
    pub const PARALLEL: f64 = 1.2;
    /// RSS growth from 1,000 to 100,000 requests, MiB, less than.
    pub const MEMORY_MIB: f64 = 5.0;
    /// Instructions of `/smoketest` (10 no-op checks) / the bare handler, at most.
    pub const INSTRUCTIONS_RATIO: f64 = 4.0;
    /// Instructions per added no-op check, at most.
    pub const INSTRUCTIONS_PER_CHECK: f64 = 3_000.0;
}

/// Scenario 1: the plain API server is the reference of every comparison.
#[derive(Debug, Clone)]
pub struct PassThrough {
    /// A: the endpoint mounted as the README does (`Router::merge`), B: without.
    pub merged: Paired,
    /// A: `Router::layer(SmoketestLayer)`, B: without.
    pub layer: Paired,
    /// A: the layer around the whole router, B: without.
    pub outer: Paired,
    /// Connections.
    pub connections: usize,
}

/// Round trips per run of the Postgres check, counted on the wire.
#[derive(Debug, Clone)]
pub struct RoundTrips {
    /// Sequential requests counted.
    pub requests: u64,
    /// Round trips per request, all of them.
    pub total: f64,
    /// Those carrying the check's own statements.
    pub own: f64,
    /// sqlx's pings (a `Sync`, after any `ROLLBACK` queued for it): the pool's round trip.
    pub pings: f64,
    /// The rest: what the runner adds around the check.
    pub around: f64,
    /// Protocol exchanges (`Sync`s and simple queries) per request; more than `total`
    /// means the client pipelined.
    pub exchanges: f64,
    /// What the round trips carried, in the order first seen: (statements, per request,
    /// whose).
    pub kinds: Vec<(String, f64, &'static str)>,
}

impl RoundTrips {
    /// Sort the turns `requests` sequential requests paid; `table` names the check's own.
    pub fn classify(turns: &[Turn], requests: u64, table: &str) -> RoundTrips {
        let per = |n: usize| n as f64 / requests.max(1) as f64;
        let whose = |t: &Turn| {
            if t.is_ping() {
                "the pool (sqlx's ping)"
            } else if t.statements.iter().any(|s| s.contains(table)) {
                "the check"
            } else {
                "the runner"
            }
        };
        let mut kinds: Vec<(String, usize, &'static str)> = Vec::new();
        for t in turns {
            let label = if t.is_ping() && t.statements.is_empty() {
                "(Sync alone)".to_string()
            } else if t.is_ping() {
                format!("{} ⏎ (Sync)", t.statements.join(" ⏎ "))
            } else {
                t.statements
                    .iter()
                    .map(|s| sql_line(s, 110))
                    .collect::<Vec<_>>()
                    .join(" ⏎ ")
            };
            match kinds.iter_mut().find(|k| k.0 == label) {
                Some(k) => k.1 += 1,
                None => kinds.push((label, 1, whose(t))),
            }
        }
        let count = |w: &str| turns.iter().filter(|t| whose(t) == w).count();
        RoundTrips {
            requests,
            total: per(turns.len()),
            own: per(count("the check")),
            pings: per(count("the pool (sqlx's ping)")),
            around: per(count("the runner")),
            exchanges: per(turns.iter().map(|t| t.exchanges).sum()),
            kinds: kinds
                .into_iter()
                .map(|(label, n, whose)| (label, per(n), whose))
                .collect(),
        }
    }
}

/// SQL on one line, at most `max` characters, its literals generalized (`'…'` for a
/// string, `N` for a number: the deadline left and the transaction's key change with
/// every run, the statement does not).
fn sql_line(sql: &str, max: usize) -> String {
    let mut general = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut previous = ' ';
    while let Some(c) = chars.next() {
        if c == '\'' {
            for c in chars.by_ref() {
                if c == '\'' {
                    break;
                }
            }
            general.push_str("'…'");
            previous = '\'';
        } else if c.is_ascii_digit()
            && !(previous.is_alphanumeric() || previous == '_' || previous == '$')
        {
            while chars.peek().is_some_and(|c| c.is_ascii_digit()) {
                chars.next();
            }
            general.push('N');
            previous = 'N';
        } else {
            general.push(c);
            previous = c;
        }
    }
    let line = general.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > max {
        let cut: String = line.chars().take(max - 1).collect();
        format!("{cut}…")
    } else {
        line
    }
}

/// Scenario 2.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// A: `/smoketest` with 10 no-op checks, B: the bare handler.
    pub pair: Paired,
    /// Connections.
    pub connections: usize,
    /// Check bodies run per answered request (10 when every request runs every check).
    pub checks_per_request: f64,
}

/// Scenario 3.
#[derive(Debug, Clone)]
pub struct Postgres {
    /// A: `/smoketest` requests per second, B: pgbench transactions per second.
    pub pair: Paired,
    /// Connections on both sides.
    pub clients: usize,
    /// Check runs per answered request (1 when every request runs the check).
    pub checks_per_request: f64,
    /// Length of each side's window.
    pub window: Duration,
}

/// Scenario 4.
#[derive(Debug, Clone)]
pub struct Parallel {
    /// Median wall time of one request.
    pub median_ms: f64,
    /// Slowest request.
    pub max_ms: f64,
    /// Requests timed.
    pub samples: usize,
}

/// Scenario 5.
#[derive(Debug, Clone)]
pub struct Flood {
    /// Concurrent connections.
    pub connections: usize,
    /// Length.
    pub seconds: f64,
    /// Answered requests per second.
    pub throughput: f64,
    /// Median latency.
    pub p50_ms: f64,
    /// 99th percentile latency.
    pub p99_ms: f64,
    /// Slowest answer.
    pub max_ms: f64,
    /// 2xx answers.
    pub ok: u64,
    /// Other answers.
    pub non_2xx: u64,
    /// No answer.
    pub errors: u64,
    /// Check bodies run per second.
    pub check_runs_per_s: f64,
    /// Transactions per second in the benchmark's database (pg_stat_database).
    pub db_xacts_per_s: Option<f64>,
}

/// Scenario 6.
#[derive(Debug, Clone)]
pub struct Memory {
    /// Requests sent before the first and the second reading.
    pub requests: (u64, u64),
    /// Requests answered in all.
    pub answered: u64,
    /// Requests not answered with 2xx.
    pub failed: u64,
    /// RSS at the two readings, KiB.
    pub rss_kib: (u64, u64),
    /// Whether the Postgres check was among the checks.
    pub with_postgres: bool,
    /// How long the scenario took.
    pub seconds: f64,
}

impl Memory {
    /// Growth between the readings, MiB.
    pub fn growth_mib(&self) -> f64 {
        (self.rss_kib.1 as f64 - self.rss_kib.0 as f64) / 1024.0
    }
}

/// User-space instructions per request of one server (callgrind).
#[derive(Debug, Clone)]
pub struct Instructions {
    /// The server.
    pub app: &'static str,
    /// No-op checks registered (`serve --checks`).
    pub checks: usize,
    /// What was requested.
    pub path: &'static str,
    /// Instructions per request.
    pub per_request: f64,
    /// Requests counted.
    pub requests: u64,
    /// Where they went.
    pub profile: Profile,
}

/// One criterion benchmark's result.
#[derive(Debug, Clone)]
pub struct Criterion {
    /// `group/function/parameter`.
    pub id: String,
    /// Mean time per iteration, ns.
    pub mean_ns: f64,
    /// 95 % confidence interval of the mean.
    pub low_ns: f64,
    /// 95 % confidence interval of the mean.
    pub high_ns: f64,
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Figures {
    /// The timing plan.
    pub plan: Plan,
    /// Where.
    pub machine: Machine,
    /// `SELECT version()`, when Postgres was there.
    pub postgres_version: Option<String>,
    /// 1-minute load average before and after.
    pub load_average: (f64, f64),
    /// Length of the run.
    pub seconds: f64,
    /// Scenario 1.
    pub pass_through: Result<PassThrough, String>,
    /// Scenario 2.
    pub endpoint: Result<Endpoint, String>,
    /// Scenario 3.
    pub postgres: Result<Postgres, String>,
    /// Round trips per Postgres check.
    pub round_trips: Result<RoundTrips, String>,
    /// Scenario 4.
    pub parallel: Result<Parallel, String>,
    /// Scenario 5.
    pub flood: Result<Flood, String>,
    /// Scenario 6.
    pub memory: Result<Memory, String>,
    /// Instruction counts per request.
    pub instructions: Result<Vec<Instructions>, String>,
    /// `cargo bench` results, when given.
    pub criterion: Vec<Criterion>,
}

impl Figures {
    /// Nothing measured yet.
    pub fn new(plan: Plan, machine: Machine, postgres_version: Option<String>) -> Figures {
        Figures {
            plan,
            machine,
            postgres_version,
            load_average: (f64::NAN, f64::NAN),
            seconds: 0.0,
            pass_through: Err("not run".into()),
            endpoint: Err("not run".into()),
            postgres: Err("not run".into()),
            round_trips: Err("not run".into()),
            parallel: Err("not run".into()),
            flood: Err("not run".into()),
            memory: Err("not run".into()),
            instructions: Err("not run".into()),
            criterion: Vec::new(),
        }
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

fn rounds(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn ratios(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.3}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn spread(values: &[f64]) -> (f64, f64) {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

fn duration(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// An instruction count with thousands separated: `159,324`.
fn count(n: f64) -> String {
    let negative = n < 0.0;
    let digits = format!("{:.0}", n.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if negative { format!("−{out}") } else { out }
}

/// The runner's cost per check and per run (ns), from the 1- and 100-check benchmarks.
fn per_check(criterion: &[Criterion]) -> Option<(f64, f64)> {
    let mean = |n: &str| {
        criterion
            .iter()
            .find(|c| c.id == format!("runner/no-op checks/{n}"))
            .map(|c| c.mean_ns)
    };
    let (one, hundred) = (mean("1")?, mean("100")?);
    let check = (hundred - one) / 99.0;
    Some((check, one - check))
}

/// The mean of the `scale` group's run of `n` checks of `kind` ("no-op", "sleep 1 ms").
fn scale_mean(criterion: &[Criterion], kind: &str, n: usize) -> Option<f64> {
    criterion
        .iter()
        .find(|c| c.id == format!("scale/{kind}/{n}"))
        .map(|c| c.mean_ns)
}

/// The growth of a run per added check (ns), from the `scale` group's 1- and 1,000-check
/// runs of checks of `kind` ("no-op", "sleep 1 ms").
fn per_check_at_scale(criterion: &[Criterion], kind: &str) -> Option<f64> {
    Some((scale_mean(criterion, kind, 1000)? - scale_mean(criterion, kind, 1)?) / 999.0)
}

/// What callgrind says a no-op check costs: the endpoint's instructions per request minus
/// the bare handler's (same JSON), `d(n)`, for n = 1, 10, 100 checks.
#[derive(Debug, Clone, PartialEq)]
pub struct InstructionsPerCheck {
    /// (n, d(n)) for each n measured.
    pub differences: Vec<(usize, f64)>,
    /// The slope from 1 to 100 checks: what each added check costs.
    pub per_check: f64,
    /// `d(1) − per_check`: what a run costs whatever the number of checks.
    pub per_run: f64,
    /// Endpoint / bare at 10 checks.
    pub ratio_10: f64,
}

fn instructions_of<'a>(
    rows: &'a [Instructions],
    app: &str,
    checks: usize,
) -> Option<&'a Instructions> {
    rows.iter().find(|r| r.app == app && r.checks == checks)
}

fn instructions_per_check(rows: &[Instructions]) -> Option<InstructionsPerCheck> {
    let d = |n: usize| -> Option<f64> {
        Some(
            instructions_of(rows, "endpoint", n)?.per_request
                - instructions_of(rows, "bare", n)?.per_request,
        )
    };
    let differences: Vec<(usize, f64)> = [1, 10, 100]
        .into_iter()
        .filter_map(|n| Some((n, d(n)?)))
        .collect();
    let per_check = (d(100)? - d(1)?) / 99.0;
    Some(InstructionsPerCheck {
        per_run: d(1)? - per_check,
        per_check,
        ratio_10: instructions_of(rows, "endpoint", 10)?.per_request
            / instructions_of(rows, "bare", 10)?.per_request,
        differences,
    })
}

/// One line of the summary: the Markdown table and the driver's output both print these.
#[derive(Debug, Clone)]
pub struct Row {
    /// `1`, `1b`, …
    pub id: &'static str,
    /// What is compared (Markdown).
    pub scenario: &'static str,
    /// The same, short, for the terminal.
    pub short: &'static str,
    /// The figure (Markdown), or why it is missing.
    pub measured: String,
    /// The goal, or "(reported)".
    pub goal: String,
    /// `None`: reported, not judged (or not measured).
    pub met: Option<bool>,
}

/// The summary of a run: every scenario, its figure, its goal and its verdict.
pub fn summary(f: &Figures) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut row = |id, scenario, short, r: Result<(String, String, Option<bool>), String>| {
        let (measured, goal, met) = match r {
            Ok(x) => x,
            Err(e) => (format!("not measured: {e}"), String::new(), None),
        };
        rows.push(Row {
            id,
            scenario,
            short,
            measured,
            goal,
            met,
        });
    };
    let throughput = |p: &Paired, goal: f64| {
        let r = p.ratio();
        (
            format!("{r:.3} (server CPU: {:.3})", p.capacity_ratio()),
            format!("≥ {goal}"),
            Some(r >= goal),
        )
    };
    let information = |p: &Paired| {
        (
            format!("{:.3} (server CPU: {:.3})", p.ratio(), p.capacity_ratio()),
            "(information)".to_string(),
            None,
        )
    };
    row(
        "1",
        "pass-through: API throughput with the endpoint mounted as the README does (`Router::merge(smoketest::axum::router(smoke))`) / without",
        "pass-through: README mounting (merge) / plain",
        f.pass_through
            .as_ref()
            .map(|x| throughput(&x.merged, goal::PASS_THROUGH))
            .map_err(String::clone),
    );
    row(
        "1b",
        "pass-through: `Router::layer(SmoketestLayer)` / without",
        "pass-through: Router::layer / plain",
        f.pass_through
            .as_ref()
            .map(|x| information(&x.layer))
            .map_err(String::clone),
    );
    row(
        "1c",
        "pass-through: the layer wrapped around the whole router / without",
        "pass-through: outer layer / plain",
        f.pass_through
            .as_ref()
            .map(|x| information(&x.outer))
            .map_err(String::clone),
    );
    row(
        "2",
        "endpoint: `/smoketest` (10 no-op checks) / bare handler, same JSON",
        "endpoint: 10 no-op checks / bare handler",
        f.endpoint
            .as_ref()
            .map(|x| throughput(&x.pair, goal::ENDPOINT))
            .map_err(String::clone),
    );
    row(
        "3",
        "database: `/smoketest` (one Postgres check) / pgbench, same statements, prepared, same clients",
        "database: Postgres check / pgbench",
        f.postgres
            .as_ref()
            .map(|x| {
                let r = x.pair.ratio();
                let (lo, hi) = spread(&x.pair.ratios);
                (
                    format!(
                        "{r:.3} (median of {} rounds; range {lo:.3}–{hi:.3})",
                        x.pair.ratios.len()
                    ),
                    format!("≥ {}", goal::POSTGRES),
                    Some(r >= goal::POSTGRES),
                )
            })
            .map_err(String::clone),
    );
    row(
        "3b",
        "database: round trips per Postgres check around its own statements (counted on the wire)",
        "database: round trips around the check",
        f.round_trips
            .as_ref()
            .map(|x| {
                (
                    format!(
                        "{:.2} ({:.2} in all: {:.2} the check's own, {:.2} sqlx's pings)",
                        x.around, x.total, x.own, x.pings
                    ),
                    format!("≤ {}", goal::ROUND_TRIPS),
                    Some(x.around <= goal::ROUND_TRIPS + 0.005),
                )
            })
            .map_err(String::clone),
    );
    row(
        "4",
        "parallel: wall time of 10 checks of 100 ms / 100 ms",
        "parallel: 10 × 100 ms / 100 ms",
        f.parallel
            .as_ref()
            .map(|x| {
                let r = x.median_ms / 100.0;
                (
                    format!("{r:.3} ({:.1} ms)", x.median_ms),
                    format!("≤ {}", goal::PARALLEL),
                    Some(r <= goal::PARALLEL),
                )
            })
            .map_err(String::clone),
    );
    row(
        "5",
        "flood: throughput, p99 latency, DB transactions/s",
        "flood: req/s, p99, DB xact/s",
        f.flood
            .as_ref()
            .map(|x| {
                (
                    format!(
                        "{:.0} req/s, p99 {:.1} ms, {}",
                        x.throughput,
                        x.p99_ms,
                        x.db_xacts_per_s
                            .map_or("no database".into(), |t| format!("{t:.1} DB xact/s"))
                    ),
                    "(reported)".into(),
                    None,
                )
            })
            .map_err(String::clone),
    );
    row(
        "6",
        "memory: RSS growth from 1,000 to 100,000 requests",
        "memory: RSS growth",
        f.memory
            .as_ref()
            .map(|x| {
                let g = x.growth_mib();
                (
                    format!("{g:.2} MiB"),
                    format!("< {} MiB", goal::MEMORY_MIB),
                    Some(g < goal::MEMORY_MIB),
                )
            })
            .map_err(String::clone),
    );
    let per_check = f
        .instructions
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|rows| {
            instructions_per_check(rows)
                .ok_or_else(|| "the endpoint or bare server is missing".to_string())
        });
    row(
        "7",
        "instructions per request (callgrind): `/smoketest` (10 no-op checks) / bare handler, same JSON",
        "instructions: 10 no-op checks / bare",
        per_check
            .as_ref()
            .map(|x| {
                (
                    format!("{:.2}×", x.ratio_10),
                    format!("≤ {}×", goal::INSTRUCTIONS_RATIO),
                    Some(x.ratio_10 <= goal::INSTRUCTIONS_RATIO),
                )
            })
            .map_err(String::clone),
    );
    row(
        "8",
        "instructions per no-op check (callgrind; slope from 1 to 100 checks, endpoint − bare)",
        "instructions per no-op check",
        per_check
            .as_ref()
            .map(|x| {
                (
                    format!(
                        "{} per check, plus {} per run",
                        count(x.per_check),
                        count(x.per_run)
                    ),
                    format!("≤ {}", count(goal::INSTRUCTIONS_PER_CHECK)),
                    Some(x.per_check <= goal::INSTRUCTIONS_PER_CHECK),
                )
            })
            .map_err(String::clone),
    );
    row(
        "9",
        "instructions per request (callgrind): API with the README mounting − without",
        "instructions: merge − plain",
        f.instructions
            .as_ref()
            .map_err(String::clone)
            .and_then(|rows| {
                let plain = instructions_of(rows, "api", 10).map(|r| r.per_request);
                let merged = instructions_of(rows, "api-merged", 10).map(|r| r.per_request);
                match (plain, merged) {
                    (Some(p), Some(m)) => Ok((
                        format!("{:+.0} ({:+.2} %)", m - p, (m / p - 1.0) * 100.0),
                        "(reported)".into(),
                        None,
                    )),
                    _ => Err("the api or api-merged server is missing".into()),
                }
            }),
    );
    let scale = match (
        per_check_at_scale(&f.criterion, "no-op"),
        per_check_at_scale(&f.criterion, "sleep 1 ms"),
    ) {
        (Some(noop), Some(sleep)) => Ok((
            format!(
                "{} per no-op check, {} per 1 ms sleep",
                duration(noop),
                duration(sleep)
            ),
            "(reported)".into(),
            None,
        )),
        _ => Err("the criterion `scale` group was not run".to_string()),
    };
    row(
        "10",
        "scale (criterion, in process): per-check constant from 1 to 1,000 registered checks",
        "scale: per-check constant",
        scale,
    );
    rows
}

/// The Markdown document.
pub fn markdown(f: &Figures) -> String {
    let mut md = String::new();
    let m = &f.machine;
    let p = &f.plan;
    let _ = writeln!(
        md,
        "# Benchmarks\n\n\
         Generated by `scripts/bench.sh` on {} from commit `{}`; every figure below is measured \
         by that command (do not edit this file by hand, run it again). The machine is shared \
         and noisy, so the load scenarios are read as **ratios** of two things measured side \
         by side in the same run, never as absolute numbers compared across runs; the \
         instruction counts (callgrind) are the stable figures.\n",
        utc_now(),
        m.commit
    );

    // Summary.
    let _ = writeln!(md, "## Summary\n");
    let _ = writeln!(md, "| # | scenario | measured | goal | verdict |");
    let _ = writeln!(md, "| --- | --- | --- | --- | --- |");
    for r in summary(f) {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            r.id,
            r.scenario,
            r.measured,
            r.goal,
            match (r.met, r.goal.is_empty()) {
                (Some(met), _) => verdict(met),
                (None, true) => "",
                (None, false) => "reported",
            }
        );
    }
    let _ = writeln!(
        md,
        "\nThe throughput verdicts judge throughput, as the goals are stated. \"Server CPU\" is \
         the same comparison made with each server's CPU time per request (what it could serve \
         with the cores to itself): it leaves out the load generator, which shares the cores \
         and pays the same per request on both sides, and it moves far less with the \
         machine's other load, so small differences show there first. Rows 7–9 count \
         instructions, which do not move with the machine's load at all; where a goal is \
         missed, [Where the instructions go](#where-the-instructions-go-callgrind-profiles) \
         shows the profile."
    );

    // Machine.
    let _ = writeln!(md, "\n## Machine\n");
    let _ = writeln!(md, "- CPU: {} ({} cores available)", m.cpu, m.cores);
    let _ = writeln!(md, "- Memory: {} MiB", m.memory_mib);
    let _ = writeln!(md, "- OS: {}", m.os);
    let _ = writeln!(md, "- Compiler: {} (release profile)", m.rustc);
    let _ = writeln!(
        md,
        "- Postgres: {}",
        f.postgres_version.as_deref().unwrap_or("not available")
    );
    let _ = writeln!(
        md,
        "- Load average (1 min) before / after the run: {:.2} / {:.2} — anything above zero is \
         other work sharing the cores with the servers and the load generator.",
        f.load_average.0, f.load_average.1
    );
    let _ = writeln!(md, "- Run started {}, took {:.0} s", m.started, f.seconds);

    // Method.
    let _ = writeln!(
        md,
        "\n## Method\n\n\
         - **Servers**: small axum apps of the `smoketest-bench` package (`bench/src/servers.rs`), \
         each in its own process with tokio's multi-thread runtime, listening on 127.0.0.1. \
         They are not the example service: each is configured for its scenario.\n\
         - **Load**: a closed-loop generator in Rust (hyper 1, HTTP/1.1 keep-alive, \
         `bench/src/load.rs`): each connection sends one request, reads the whole answer, \
         sends the next. All connections are open before the clock starts. Loopback only; \
         every scenario is bounded in time and in requests, and the servers exit when the \
         driver does.\n\
         - **The same cores**: the generator, the servers and Postgres share the machine's \
         {} cores. A ratio is therefore the cost of the measured side relative to the \
         reference *under the same contention*, which is what a replica of a real service \
         experiences too.\n\
         - **Side by side**: each comparison runs {} rounds of {:.1} s per server after {:.1} s \
         of warm-up each; every round measures all the servers of the scenario one after \
         another, in an order that rotates from round to round and reverses every other \
         round, and the report gives the **median of the per-round ratios**, so drift in the \
         machine's other load hits every side alike. The Postgres comparison runs {} rounds of \
         1 s per side (pgbench counts whole seconds).\n\
         - **Instructions**: each server runs once more under valgrind's callgrind, warmed up, \
         then counts the user-space instructions of a fixed number of requests (see \
         [Instructions per request](#instructions-per-request-callgrind)).",
        m.cores,
        p.rounds,
        p.window.as_secs_f64(),
        p.warmup.as_secs_f64(),
        p.pg_rounds
    );

    pass_through_section(&mut md, f);
    endpoint_section(&mut md, f);
    postgres_section(&mut md, f);
    other_sections(&mut md, f);
    instructions_section(&mut md, f);
    profile_section(&mut md, f);
    scale_section(&mut md, f);
    criterion_section(&mut md, f);

    let _ = writeln!(
        md,
        "\n## Running it\n\n```sh\nscripts/bench.sh            # everything: criterion, then the load scenarios\n\
         scripts/bench.sh --quick    # a few seconds per scenario: checks the harness, not the code\n```\n\n\
         It installs what it needs on Debian (pgbench from `postgresql-client`, valgrind), builds \
         the `smoketest-bench` package in release mode and writes this file. Postgres is read \
         from `SMOKETEST_BENCH_POSTGRES_URL`, else `SMOKETEST_TEST_POSTGRES_URL`, else \
         `postgres://postgres@127.0.0.1:5432/test`; the benchmark creates a database \
         `smoketest_bench` there and drops it at the end. Without Postgres the database \
         scenarios say so and the rest still run. To profile one server by hand: \
         `smoketest-bench serve endpoint --checks 10` in one shell (under `valgrind \
         --tool=callgrind` or `perf record -g`), `smoketest-bench load ADDR /smoketest` in \
         another."
    );
    md
}

/// A throughput comparison's details, as list items.
fn paired_details(md: &mut String, x: &Paired, a: &str, b: &str) {
    let (lo, hi) = spread(&x.ratios);
    let _ = writeln!(
        md,
        "  - Requests/s {a} per round: {}; {b}: {}.\n\
         \x20 - Server CPU time per request (median of rounds): {:.1} µs {a}, {:.1} µs {b}.\n\
         \x20 - Per-round ratios: {} (range {lo:.3}–{hi:.3}); **median {:.3}**. Failed requests: {}.",
        rounds(&x.a),
        rounds(&x.b),
        median(&x.a_cpu_us),
        median(&x.b_cpu_us),
        ratios(&x.ratios),
        x.ratio(),
        x.failures
    );
}

fn pass_through_section(md: &mut String, f: &Figures) {
    let _ = writeln!(md, "\n## 1. Pass-through cost\n");
    let _ = writeln!(
        md,
        "What it answers: does adding smoketest slow down the service's own routes? Every \
         server serves `GET /orders` (a three-item JSON list serialized per request) and is \
         measured against the same plain server, in the same rounds. The headline mounts the \
         endpoint (10 no-op checks) as the README does: \
         `Router::new().route(\"/orders\", …).merge(smoketest_axum::router(smoke))`. Two other \
         ways to mount are measured for information: `Router::layer(SmoketestLayer)`, and the \
         layer wrapped once around the whole router \
         (`SmoketestLayer::new(smoke).layer(router)`, served with `into_make_service`). A \
         ratio is the server's throughput over the plain one's: 1.0 means mounting costs \
         nothing measurable.\n"
    );
    match &f.pass_through {
        Ok(x) => {
            let _ = writeln!(md, "- {} connections.", x.connections);
            let _ = writeln!(
                md,
                "- **README mounting (`merge`)**: ratio **{:.3}** (goal ≥ {}): {}.",
                x.merged.ratio(),
                goal::PASS_THROUGH,
                verdict(x.merged.ratio() >= goal::PASS_THROUGH)
            );
            paired_details(md, &x.merged, "merged", "plain");
            let _ = writeln!(
                md,
                "- `Router::layer(SmoketestLayer)`: ratio {:.3} (information).",
                x.layer.ratio()
            );
            paired_details(md, &x.layer, "with the layer", "plain");
            let _ = writeln!(
                md,
                "- The layer around the whole router: ratio {:.3} (information).",
                x.outer.ratio()
            );
            paired_details(md, &x.outer, "with the outer layer", "plain");
        }
        Err(e) => {
            let _ = writeln!(md, "Not measured: {e}");
        }
    }
    if let Ok(rows) = &f.instructions
        && let (Some(plain), Some(merged), Some(layer), Some(outer)) = (
            instructions_of(rows, "api", 10),
            instructions_of(rows, "api-merged", 10),
            instructions_of(rows, "api-with-layer", 10),
            instructions_of(rows, "api-with-outer-layer", 10),
        )
    {
        let added = |r: &Instructions| {
            format!(
                "{:+.0} instructions per request ({:+.2} %)",
                r.per_request - plain.per_request,
                (r.per_request / plain.per_request - 1.0) * 100.0
            )
        };
        let _ = writeln!(
            md,
            "\nCounted by callgrind (the stable figure; plain: {} per request): the README \
             mounting adds {}; `Router::layer` adds {}; the outer layer adds {}. \
             `Router::layer` wraps every route in another boxed, cloned service, whatever the \
             layer does; with `merge` the service's own routes never pass through smoketest, \
             and what remains is the router's: more routes to match against. The functions \
             that account for the difference are in \
             [Where the instructions go](#where-the-instructions-go-callgrind-profiles).",
            count(plain.per_request),
            added(merged),
            added(layer),
            added(outer)
        );
    }
}

fn endpoint_section(md: &mut String, f: &Figures) {
    let _ = writeln!(md, "\n## 2. Endpoint overhead\n");
    let _ = writeln!(
        md,
        "What it answers: what does running the checks and writing the report cost, on top \
         of HTTP? One server answers `GET /smoketest` by running 10 no-op checks for every \
         request and writing the JSON report; the other answers the same path with a bare \
         axum handler returning a JSON body of the same report, made once at start-up. \
         \"Every request\" means no cache, no rate limit and no single-flight: the server \
         takes the public steps `Smoketest::handle` takes (`parse_request`, `run`, \
         `restrict`, `Format::write`) without the engine, which exists precisely to make \
         most requests *not* run the checks (scenario 5 measures it). The ratio is the \
         endpoint's throughput over the bare handler's: 0.5 means a run of 10 checks plus \
         the report costs as much as all of HTTP handling.\n"
    );
    match &f.endpoint {
        Ok(x) => {
            let _ = writeln!(
                md,
                "- {} connections. Check bodies run per request: {:.2} (10 means every request \
                 ran every check).\n\
                 - **Ratio {:.3}** (goal ≥ {}): {}.",
                x.connections,
                x.checks_per_request,
                x.pair.ratio(),
                goal::ENDPOINT,
                verdict(x.pair.ratio() >= goal::ENDPOINT),
            );
            paired_details(md, &x.pair, "`/smoketest`", "bare");
            let runner = per_check(&f.criterion)
                .map(|(check, run)| {
                    format!(
                        " In process, without HTTP, the runner costs {} per run plus {} per \
                         check (criterion, below).",
                        duration(run),
                        duration(check)
                    )
                })
                .unwrap_or_default();
            let _ = writeln!(
                md,
                "\nThe difference in server CPU time per request ({:.1} µs) is the run and the \
                 report, paid on every request because this scenario turns every protection \
                 off.{runner} Where those instructions go is measured, not guessed: see rows 7 \
                 and 8 and [the profile](#where-the-instructions-go-callgrind-profiles).",
                median(&x.pair.a_cpu_us) - median(&x.pair.b_cpu_us)
            );
        }
        Err(e) => {
            let _ = writeln!(md, "Not measured: {e}");
        }
    }
}

fn postgres_section(md: &mut String, f: &Figures) {
    let _ = writeln!(md, "\n## 3. Database check vs the database's own limit\n");
    let _ = writeln!(
        md,
        "What it answers: how close does a smoke check that writes to Postgres get to what \
         Postgres itself can do? The server's `/smoketest` runs one check per request, \
         written as a service would write it: `ctx.postgres()` (the runner begins the \
         transaction and sets the deadline inside the database), `INSERT … RETURNING id`, \
         `SELECT … WHERE id = $1`, and the runner's `ROLLBACK`; the pool has one connection \
         per client (no liveness ping on acquire: pgbench holds its connections too). \
         pgbench runs the same statements (prepared protocol, same table) with the same \
         number of clients. The ratio is `/smoketest` requests per second over pgbench's \
         transactions per second: the whole HTTP + runner + sqlx path against a C client \
         that does nothing else. Rounds alternate which side goes first; the verdict is on \
         the median, and the range of the per-round ratios says how far to trust it.\n\n\
         The transaction, as pgbench runs it:\n\n```sql\n{}```\n",
        crate::pg::pgbench_script()
    );
    match &f.postgres {
        Ok(x) => {
            let (lo, hi) = spread(&x.pair.ratios);
            let _ = writeln!(
                md,
                "- {} clients on both sides, {} rounds of {:.0} s per side. `/smoketest` \
                 requests/s per round: {}; pgbench TPS: {}.\n\
                 - Check runs per request: {:.2} (1 means every request ran the transaction).\n\
                 - Per-round ratios: {}; **median {:.3}**, range {lo:.3}–{hi:.3} (goal ≥ {}): \
                 {}. Failed requests: {}.",
                x.clients,
                x.pair.ratios.len(),
                x.window.as_secs_f64(),
                rounds(&x.pair.a),
                rounds(&x.pair.b),
                x.checks_per_request,
                ratios(&x.pair.ratios),
                x.pair.ratio(),
                goal::POSTGRES,
                verdict(x.pair.ratio() >= goal::POSTGRES),
                x.pair.failures
            );
        }
        Err(e) => {
            let _ = writeln!(md, "Not measured: {e}");
        }
    }

    let _ = writeln!(md, "\n### Round trips per check\n");
    let _ = writeln!(
        md,
        "What it answers: how many times does a Postgres check wait for the database, and for \
         what? The same server, with one pooled connection, reaches Postgres through a \
         counting proxy of the benchmark's own (`bench/src/pgproxy.rs`, TLS off so that it \
         can read the protocol). Sequential requests on a warm connection are counted; a \
         round trip is a turn — the client sends, then waits for the answer (the definition \
         of the round-trip test `a_minimal_check_pays_a_known_number_of_round_trips` in \
         `tests/db_postgres.rs`) — and each is sorted by what it carried: the check's own \
         statements (on `{}`), sqlx's ping (a `Sync`, sent by the pool when a \
         connection comes back, with the `ROLLBACK` of an empty transaction that sqlx \
         queued for it to flush in the same write), and the rest, which is what the runner adds around the \
         check. Goal: at most {} around the check.\n",
        crate::servers::TABLE,
        goal::ROUND_TRIPS
    );
    match &f.round_trips {
        Ok(x) => {
            let _ = writeln!(
                md,
                "- {} requests: **{:.2} round trips around the check** (goal ≤ {}): {}; \
                 {:.2} in all per request, of which {:.2} carry the check's own statements and \
                 {:.2} are sqlx's pings. Protocol exchanges (`Sync`s and simple queries) per \
                 request: {:.2}{}.\n",
                x.requests,
                x.around,
                goal::ROUND_TRIPS,
                verdict(x.around <= goal::ROUND_TRIPS + 0.005),
                x.total,
                x.own,
                x.pings,
                x.exchanges,
                if x.exchanges > x.total + 0.005 {
                    " (more than the round trips: some are pipelined)"
                } else {
                    ""
                }
            );
            let _ = writeln!(
                md,
                "| round trip (statements sent, in order) | per request | whose |"
            );
            let _ = writeln!(md, "| --- | --- | --- |");
            for (label, per, whose) in &x.kinds {
                let _ = writeln!(
                    md,
                    "| `{}` | {per:.2} | {whose} |",
                    label.replace('|', "\\|").replace('`', "'")
                );
            }
        }
        Err(e) => {
            let _ = writeln!(md, "Not measured: {e}");
        }
    }
}

fn other_sections(md: &mut String, f: &Figures) {
    let _ = writeln!(md, "\n## 4. Parallel speed-up\n");
    let _ = writeln!(
        md,
        "What it answers: do checks really run concurrently? Ten checks each sleep 100 ms; \
         run one after another they would take a second. The ratio is the median wall time \
         of a whole `GET /smoketest` (HTTP included, one request at a time) over 100 ms: 1.0 \
         is perfect overlap, 10 is none.\n"
    );
    match &f.parallel {
        Ok(x) => {
            let _ = writeln!(
                md,
                "- {} requests: median {:.1} ms, slowest {:.1} ms.\n\
                 - **Ratio {:.3}** (goal ≤ {}): {}.",
                x.samples,
                x.median_ms,
                x.max_ms,
                x.median_ms / 100.0,
                goal::PARALLEL,
                verdict(x.median_ms / 100.0 <= goal::PARALLEL)
            );
        }
        Err(e) => {
            let _ = writeln!(md, "Not measured: {e}");
        }
    }

    let _ = writeln!(md, "\n## 5. Flood\n");
    let _ = writeln!(
        md,
        "What it answers: what happens when far more callers than expected hit the endpoint \
         at once — a misconfigured monitor, a probe storm? The server runs 10 no-op checks and \
         the Postgres check with **every smoketest setting at its default** (single-flight, the rate limit, the cap on runs in flight; a pool of 10 connections). \
         Reported, not judged: the throughput and tail latency callers see, how many check \
         bodies ran, and how many transactions the database had to start (from \
         `pg_stat_database`, committed + rolled back, in a database the benchmark creates for \
         itself so that nothing else is counted).\n"
    );
    match &f.flood {
        Ok(x) => {
            let _ = writeln!(
                md,
                "- {} connections for {:.1} s: {:.0} requests/s; latency median {:.1} ms, \
                 **p99 {:.1} ms**, slowest {:.1} ms.\n\
                 - Answers: {} 2xx, {} other, {} without answer.\n\
                 - Check bodies run: {:.1}/s. Database transactions: {}.",
                x.connections,
                x.seconds,
                x.throughput,
                x.p50_ms,
                x.p99_ms,
                x.max_ms,
                x.ok,
                x.non_2xx,
                x.errors,
                x.check_runs_per_s,
                x.db_xacts_per_s
                    .map_or("not measured (no Postgres)".into(), |t| format!(
                        "**{t:.1}/s**"
                    ))
            );
        }
        Err(e) => {
            let _ = writeln!(md, "Not measured: {e}");
        }
    }

    let _ = writeln!(md, "\n## 6. Memory\n");
    let _ = writeln!(
        md,
        "What it answers: does the endpoint leak? A fresh server whose every request runs 10 \
         no-op checks{} is read (`VmRSS` in `/proc/PID/status`) after its first 1,000 \
         requests — allocator pools, the runtime's threads and the database pool are warm by \
         then — and again after 100,000. Growth between the two readings is what a service \
         would accumulate over time.\n",
        if f.memory.as_ref().is_ok_and(|x| !x.with_postgres) {
            ""
        } else {
            " and the Postgres check"
        }
    );
    match &f.memory {
        Ok(x) => {
            let _ = writeln!(
                md,
                "- RSS after {} requests: {:.1} MiB; after {}: {:.1} MiB ({} answered, {} not 2xx, {:.0} s).\n\
                 - **Growth {:.2} MiB** (goal < {} MiB): {}.",
                x.requests.0,
                x.rss_kib.0 as f64 / 1024.0,
                x.requests.1,
                x.rss_kib.1 as f64 / 1024.0,
                x.answered,
                x.failed,
                x.seconds,
                x.growth_mib(),
                goal::MEMORY_MIB,
                verdict(x.growth_mib() < goal::MEMORY_MIB)
            );
        }
        Err(e) => {
            let _ = writeln!(md, "Not measured: {e}");
        }
    }
}

fn instructions_section(md: &mut String, f: &Figures) {
    let _ = writeln!(md, "\n## Instructions per request (callgrind)\n");
    let _ = writeln!(
        md,
        "Time on a shared machine moves with everybody else's work; the number of \
         instructions a server executes per request does not. Each server below runs under \
         valgrind's callgrind on one worker thread (so that the count does not depend on how \
         requests were spread over threads), is warmed up, then counts user-space instructions \
         (the kernel's TCP work is not included) over a fixed number of requests from 8 \
         connections. This is \
         the figure to watch for regressions of a few percent, which the throughput ratios \
         cannot resolve. Instructions are not time: copies and serialization loops are cheap \
         per instruction, system calls are not counted, so compare a row with itself across \
         commits rather than rows with each other.\n"
    );
    let rows = match &f.instructions {
        Ok(rows) => rows,
        Err(e) => {
            let _ = writeln!(md, "Not measured: {e}");
            return;
        }
    };
    let _ = writeln!(
        md,
        "| server | no-op checks | request | instructions per request | requests counted |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- |");
    for r in rows {
        let _ = writeln!(
            md,
            "| `{}` | {} | `GET {}` | {} | {} |",
            r.app,
            r.checks,
            r.path,
            count(r.per_request),
            r.requests
        );
    }
    let Some(x) = instructions_per_check(rows) else {
        return;
    };
    let _ = writeln!(
        md,
        "\n**Per no-op check.** For n = 1, 10 and 100 no-op checks, d(n) is the endpoint's \
         instructions per request minus the bare handler's returning the same JSON (the same \
         n entries): what the run and the report cost, HTTP taken out.\n"
    );
    let _ = writeln!(
        md,
        "| checks n | endpoint − bare, d(n) | d(n) / n | the line below at n |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- |");
    for (n, d) in &x.differences {
        let _ = writeln!(
            md,
            "| {n} | {} | {} | {} |",
            count(*d),
            count(d / *n as f64),
            count(x.per_run + x.per_check * *n as f64)
        );
    }
    let _ = writeln!(
        md,
        "\n- **{} instructions per check** (goal ≤ {}): {}. This is the slope from 1 to 100 \
         checks, (d(100) − d(1)) / 99: what each added check costs, its JSON entry included. \
         d(n) / n is not used for the verdict because it folds the per-run constant into the \
         per-check figure (at n = 1 it is almost all constant); the last column shows how \
         well a straight line through n = 1 and 100 predicts n = 10.\n\
         - **{} instructions per run**, d(1) minus one check: what a run costs whatever the \
         number of checks (the request's parsing, the run's setup and join, the report's \
         envelope).\n\
         - With 10 checks the endpoint executes **{:.2}×** the bare handler's instructions \
         (goal ≤ {}×): {}.",
        count(x.per_check),
        count(goal::INSTRUCTIONS_PER_CHECK),
        verdict(x.per_check <= goal::INSTRUCTIONS_PER_CHECK),
        count(x.per_run),
        x.ratio_10,
        goal::INSTRUCTIONS_RATIO,
        verdict(x.ratio_10 <= goal::INSTRUCTIONS_RATIO)
    );
}

/// Rows of a differential profile: per request, the functions whose self cost grew most
/// from `base` to `measured`.
fn added_by_function<'a>(
    measured: &'a Instructions,
    base: &Instructions,
    n: usize,
) -> Vec<(&'a str, f64, f64)> {
    let per = |p: &Instructions, name: &str| {
        p.profile.self_cost.get(name).copied().unwrap_or(0) as f64 / p.requests as f64
    };
    let mut rows: Vec<(&str, f64, f64)> = measured
        .profile
        .self_cost
        .keys()
        .map(|name| (name.as_str(), per(measured, name), per(base, name)))
        .collect();
    rows.sort_by(|a, b| (b.1 - b.2).total_cmp(&(a.1 - a.2)).then(a.0.cmp(b.0)));
    rows.truncate(n);
    rows
}

fn differential_table(md: &mut String, measured: &Instructions, base: &Instructions, n: usize) {
    let added_total = measured.per_request - base.per_request;
    let _ = writeln!(
        md,
        "| function (self cost) | `{}`, per request | `{}`, per request | added | share of what is added |",
        measured.app, base.app
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- |");
    for (name, with, without) in added_by_function(measured, base, n) {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} | {:.1} % |",
            short_name(name, 90).replace('|', "\\|"),
            count(with),
            count(without),
            count(with - without),
            (with - without) / added_total * 100.0
        );
    }
}

/// For the `n` functions that add the most from `base` to `measured` (the allocator's
/// internals left out), and for `malloc` and `free`: who calls them. `memcpy` and the
/// allocator are at the top of most profiles, and say nothing until one sees what copies,
/// allocates and frees.
fn callers_of_the_largest(md: &mut String, measured: &Instructions, base: &Instructions, n: usize) {
    let allocator_internal = |f: &str| {
        f.starts_with("_int_") || f.starts_with("unlink_chunk") || f == "malloc_consolidate"
    };
    let mut names: Vec<&str> = added_by_function(measured, base, 20)
        .into_iter()
        .map(|(name, _, _)| name)
        .filter(|name| !allocator_internal(name) && *name != "malloc" && *name != "free")
        .take(n)
        .collect();
    names.extend(["malloc", "free"]);
    let _ = writeln!(
        md,
        "\nWho calls the largest, and who allocates and frees (instructions per request spent \
         in the calls from each caller, in `{}`):\n",
        measured.app
    );
    for name in names {
        let callers: Vec<String> = measured
            .profile
            .top_callers(name, 4)
            .into_iter()
            .map(|(caller, cost)| {
                format!(
                    "`{}` {}",
                    short_name(caller, 80).replace('|', "\\|"),
                    count(cost as f64 / measured.requests as f64)
                )
            })
            .collect();
        if callers.is_empty() {
            continue;
        }
        let _ = writeln!(md, "- `{}` ← {}", short_name(name, 60), callers.join("; "));
    }
}

fn top_self_table(md: &mut String, x: &Instructions, n: usize) {
    let _ = writeln!(
        md,
        "| function (self cost) | per request | share of the request |"
    );
    let _ = writeln!(md, "| --- | --- | --- |");
    for (name, cost) in x.profile.top_self(n) {
        cost_row(md, x, name, cost);
    }
}

/// Smoketest's own functions, inclusive.
fn top_inclusive_table(md: &mut String, x: &Instructions, n: usize) {
    let _ = writeln!(
        md,
        "| function (inclusive) | per request | share of the request |"
    );
    let _ = writeln!(md, "| --- | --- | --- |");
    for (name, cost) in x.profile.top_inclusive(n, |f| f.contains("smoketest")) {
        cost_row(md, x, name, cost);
    }
}

fn cost_row(md: &mut String, x: &Instructions, name: &str, cost: u64) {
    let per = cost as f64 / x.requests as f64;
    let _ = writeln!(
        md,
        "| `{}` | {} | {:.1} % |",
        short_name(name, 90).replace('|', "\\|"),
        count(per),
        per / x.per_request * 100.0
    );
}

fn profile_section(md: &mut String, f: &Figures) {
    let Ok(rows) = &f.instructions else {
        return;
    };
    let _ = writeln!(md, "\n## Where the instructions go (callgrind profiles)\n");
    let _ = writeln!(
        md,
        "Read from the same callgrind dumps as the counts above (`bench/src/profile.rs` \
         reads callgrind's output format), per request. Names are demangled Rust symbols \
         shortened to their crate and last two path segments, generic arguments nested \
         deeper than one level elided (`…`); inlined functions are counted in their caller; a \
         `'2` after a name is callgrind's mark for a function called from inside itself. \
         \"Self\" is a function's own instructions; \"inclusive\" adds everything it called. \
         To see the whole profile: `callgrind_annotate` on a dump made as in \
         [Running it](#running-it).\n"
    );
    if let (Some(endpoint), Some(bare)) = (
        instructions_of(rows, "endpoint", 10),
        instructions_of(rows, "bare", 10),
    ) {
        let _ = writeln!(
            md,
            "### `/smoketest` with 10 no-op checks, against the bare handler\n\n\
             The functions whose own instructions grow most from the bare handler to the \
             endpoint: where the {} instructions a run of 10 no-op checks and its report add \
             to a request go.\n",
            count(endpoint.per_request - bare.per_request)
        );
        differential_table(md, endpoint, bare, 15);
        callers_of_the_largest(md, endpoint, bare, 3);
        let _ = writeln!(
            md,
            "\nThe endpoint's own code, inclusive (everything each function called, tasks it \
             spawned excepted: a spawned task's instructions belong to the runtime's poll of \
             it), the 15 largest among smoketest's functions:\n"
        );
        top_inclusive_table(md, endpoint, 15);
        let _ = writeln!(
            md,
            "\nAnd the endpoint's 15 most expensive functions by self cost, whatever their \
             crate:\n"
        );
        top_self_table(md, endpoint, 15);
    }
    if let Some(pg) = instructions_of(rows, "postgres", 1) {
        let _ = writeln!(
            md,
            "\n### `/smoketest` with the Postgres check\n\n\
             The server of scenario 3 executes {} instructions per request (the database's \
             work is in another process and not counted; neither are the waits of its round \
             trips, which the table of round trips above counts). Its 15 most expensive \
             functions by self cost, and smoketest's own functions inclusive:\n",
            count(pg.per_request)
        );
        top_self_table(md, pg, 15);
        let _ = writeln!(md);
        top_inclusive_table(md, pg, 10);
    }
    if let (Some(merged), Some(plain)) = (
        instructions_of(rows, "api-merged", 10),
        instructions_of(rows, "api", 10),
    ) {
        let added = merged.per_request - plain.per_request;
        let _ = writeln!(
            md,
            "\n### The README's mounting (`merge`), against the plain API\n\n\
             `GET /orders` on the API with the smoketest router merged in executes {} \
             instructions per request more than without ({:+.2} %){}\n",
            count(added),
            added / plain.per_request * 100.0,
            if added.abs() / plain.per_request < 0.005 {
                ": within half a per cent, i.e. nothing the service would notice. The \
                 functions that differ most, for the record:"
            } else {
                ". The functions whose own instructions grow most:"
            }
        );
        differential_table(md, merged, plain, 8);
    }
}

fn scale_section(md: &mut String, f: &Figures) {
    let _ = writeln!(md, "\n## Scale: 1 to 1,000 registered checks\n");
    let kinds = ["no-op", "sleep 1 ms"];
    if kinds
        .iter()
        .all(|k| scale_mean(&f.criterion, k, 1).is_none())
    {
        let _ = writeln!(
            md,
            "Not run in this invocation (the criterion `scale` group of `smoketest-core/benches/runner.rs`)."
        );
        return;
    }
    let _ = writeln!(
        md,
        "The criterion `scale` group (`smoketest-core/benches/runner.rs`): `Smoketest::run` on \
         a current-thread tokio runtime of N registered checks, each a no-op or a \
         `tokio::time::sleep(1 ms)`, with the builder's defaults (16 checks at once, no \
         database); mean of criterion's samples, in process, no HTTP.\n"
    );
    let _ = writeln!(md, "| checks | no-op | sleep 1 ms |");
    let _ = writeln!(md, "| --- | --- | --- |");
    for n in [1, 10, 100, 1000] {
        let cell = |k: &str| scale_mean(&f.criterion, k, n).map_or("—".into(), duration);
        let _ = writeln!(md, "| {n} | {} | {} |", cell(kinds[0]), cell(kinds[1]));
    }
    for kind in kinds {
        let (Some(slope), Some(low), Some(high)) = (
            per_check_at_scale(&f.criterion, kind),
            scale_mean(&f.criterion, kind, 100),
            scale_mean(&f.criterion, kind, 1000),
        ) else {
            continue;
        };
        let _ = writeln!(
            md,
            "\n- **Per-check constant ({kind})**, the slope from 1 to 1,000 checks: **{}** per \
             check. 1,000 checks take {:.1}× the time of 100{}",
            duration(slope),
            high / low,
            if kind == "no-op" {
                format!(
                    " (10 would be linear; {} per check from 100 to 1,000).",
                    duration((high - low) / 900.0)
                )
            } else {
                ": a 1 ms tokio sleep takes about 2 ms (the timer's millisecond wheel), and \
                 with 16 checks at once 1,000 checks are 63 waves of it; raising \
                 `concurrency` shortens it. The runner's own share is the no-op figure."
                    .to_string()
            }
        );
    }
}

fn criterion_section(md: &mut String, f: &Figures) {
    let _ = writeln!(
        md,
        "\n## Micro-benchmarks (`cargo bench -p smoketest-core`)\n"
    );
    let rows: Vec<&Criterion> = f
        .criterion
        .iter()
        .filter(|c| !c.id.starts_with("scale/"))
        .collect();
    if rows.is_empty() {
        let _ = writeln!(md, "Not run in this invocation.");
        return;
    }
    let _ = writeln!(
        md,
        "Criterion, in-process, no HTTP: `runner` is `Smoketest::run` of N no-op checks \
         (spawning a task per check, timeouts, the report); `formats` writes one report \
         (10 checks, one failed with a message and a suggestion) in each format.\n"
    );
    let _ = writeln!(md, "| benchmark | mean | 95 % confidence interval |");
    let _ = writeln!(md, "| --- | --- | --- |");
    for c in rows {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} – {} |",
            c.id,
            duration(c.mean_ns),
            duration(c.low_ns),
            duration(c.high_ns)
        );
    }
    if let Some((check, run)) = per_check(&f.criterion) {
        let _ = writeln!(
            md,
            "\nPer-check overhead of the runner, from the 1- and 100-check runs: \
             **{}** per check, on top of **{}** per run.",
            duration(check),
            duration(run)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{
        Criterion, Instructions, InstructionsPerCheck, RoundTrips, count, instructions_per_check,
        per_check_at_scale,
    };
    use crate::pgproxy::Turn;
    use crate::profile::Profile;

    fn server(app: &'static str, checks: usize, per_request: f64) -> Instructions {
        Instructions {
            app,
            checks,
            path: "/smoketest",
            per_request,
            requests: 100,
            profile: Profile::default(),
        }
    }

    #[test]
    fn round_trips_group_statements_that_differ_only_in_their_literals() {
        assert_eq!(
            super::sql_line(
                "SELECT coalesce(current_setting('smoketest.transaction', true) = 'cf18ed4e', false), pg_advisory_unlock(12345)",
                200
            ),
            "SELECT coalesce(current_setting('…', true) = '…', false), pg_advisory_unlock(N)"
        );
        assert_eq!(
            super::sql_line("SET LOCAL statement_timeout = 9999; SELECT $1, col2", 200),
            "SET LOCAL statement_timeout = N; SELECT $1, col2"
        );
    }

    #[test]
    fn the_instructions_per_check_are_the_slope_of_endpoint_minus_bare() {
        // Bare: 14,000 plus 20 per JSON entry; endpoint: that plus 20,000 per run and 2,500
        // per check.
        let bare = |n: usize| 14_000.0 + 20.0 * n as f64;
        let endpoint = |n: usize| bare(n) + 20_000.0 + 2_500.0 * n as f64;
        let rows: Vec<Instructions> = [1, 10, 100]
            .into_iter()
            .flat_map(|n| {
                [
                    server("bare", n, bare(n)),
                    server("endpoint", n, endpoint(n)),
                ]
            })
            .collect();
        let x = instructions_per_check(&rows).unwrap();
        assert_eq!(
            x,
            InstructionsPerCheck {
                differences: vec![(1, 22_500.0), (10, 45_000.0), (100, 270_000.0)],
                per_check: 2_500.0,
                per_run: 20_000.0,
                ratio_10: endpoint(10) / bare(10),
            }
        );
        // Without the 100-check servers there is no slope.
        assert_eq!(instructions_per_check(&rows[..4]), None);
    }

    #[test]
    fn round_trips_are_sorted_into_the_checks_the_pools_and_the_runners() {
        let turn = |statements: &[&str], exchanges| Turn {
            statements: statements.iter().map(|s| s.to_string()).collect(),
            exchanges,
        };
        let one_request = [
            turn(&["BEGIN; SET LOCAL statement_timeout = 5000"], 1),
            turn(&["INSERT INTO orders (item) VALUES ($1) RETURNING id"], 1),
            turn(&["SELECT item FROM orders WHERE id = $1"], 1),
            turn(&["ROLLBACK"], 1),
            turn(&[], 1),
        ];
        let turns: Vec<Turn> = one_request.iter().chain(&one_request).cloned().collect();
        let x = RoundTrips::classify(&turns, 2, "orders");
        assert_eq!(
            (x.total, x.own, x.pings, x.around, x.exchanges),
            (5.0, 2.0, 1.0, 2.0, 5.0)
        );
        assert_eq!(x.kinds.len(), 5);
        assert_eq!(x.kinds[0].0, "BEGIN; SET LOCAL statement_timeout = N");
        assert_eq!(
            x.kinds[4],
            ("(Sync alone)".to_string(), 1.0, "the pool (sqlx's ping)")
        );
    }

    #[test]
    fn counts_are_printed_with_thousands_separated() {
        assert_eq!(count(159_324.4), "159,324");
        assert_eq!(count(999.0), "999");
        assert_eq!(count(-1_234.0), "−1,234");
    }

    fn bench(id: &str, mean_ns: f64) -> Criterion {
        Criterion {
            id: id.to_string(),
            mean_ns,
            low_ns: mean_ns,
            high_ns: mean_ns,
        }
    }

    #[test]
    fn the_per_check_constant_at_scale_is_the_slope_from_one_to_a_thousand_checks() {
        let figures = [
            bench("scale/no-op/1", 2_000.0),
            bench("scale/no-op/1000", 2_000.0 + 999.0 * 1_500.0),
            bench("scale/sleep 1 ms/1", 2_000_000.0),
        ];
        assert_eq!(per_check_at_scale(&figures, "no-op"), Some(1_500.0));
        // Without the 1,000-check run there is no slope to report.
        assert_eq!(per_check_at_scale(&figures, "sleep 1 ms"), None);
    }
}
