//! `BENCHMARKS.md`, written from the figures of one run: every number in it is measured.

use std::fmt::Write;
use std::time::Duration;

use crate::load::median;
use crate::machine::{Machine, utc_now};
use crate::run::{Paired, Plan};

/// Scenario 1.
#[derive(Debug, Clone)]
pub struct PassThrough {
    /// A: with the layer (`Router::layer`), B: without.
    pub pair: Paired,
    /// A: with the layer around the whole router, B: without.
    pub outer: Paired,
    /// Connections.
    pub connections: usize,
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
    /// What was requested.
    pub path: &'static str,
    /// Instructions per request.
    pub per_request: f64,
    /// Requests counted.
    pub requests: u64,
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

/// The growth of a run per added check (ns), from the `scale` group's 1- and 1,000-check
/// runs of checks of `kind` ("no-op", "sleep 1 ms").
fn per_check_at_scale(criterion: &[Criterion], kind: &str) -> Option<f64> {
    let mean = |n: &str| {
        criterion
            .iter()
            .find(|c| c.id == format!("scale/{kind}/{n}"))
            .map(|c| c.mean_ns)
    };
    Some((mean("1000")? - mean("1")?) / 999.0)
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
         by side in the same run, never as absolute numbers compared across runs.\n",
        utc_now(),
        m.commit
    );

    // Summary.
    let _ = writeln!(md, "## Summary\n");
    let _ = writeln!(md, "| # | scenario | measured | goal | verdict |");
    let _ = writeln!(md, "| --- | --- | --- | --- | --- |");
    let row = |md: &mut String,
               n: &str,
               what: &str,
               r: Result<(String, String, Option<bool>), &String>| {
        let _ = match r {
            Ok((value, goal, met)) => writeln!(
                md,
                "| {n} | {what} | {value} | {goal} | {} |",
                met.map_or("reported", verdict)
            ),
            Err(e) => writeln!(md, "| {n} | {what} | not measured: {e} | | |"),
        };
    };
    row(
        &mut md,
        "1",
        "pass-through: API throughput with `Router::layer(SmoketestLayer)` / without",
        f.pass_through.as_ref().map(|x| {
            let r = x.pair.ratio();
            (
                format!("{r:.3} (server CPU: {:.3})", x.pair.capacity_ratio()),
                "≥ 0.98".into(),
                Some(r >= 0.98),
            )
        }),
    );
    row(
        &mut md,
        "1b",
        "pass-through: the layer wrapped around the whole router / without",
        f.pass_through.as_ref().map(|x| {
            let r = x.outer.ratio();
            (
                format!("{r:.3} (server CPU: {:.3})", x.outer.capacity_ratio()),
                "≥ 0.98".into(),
                Some(r >= 0.98),
            )
        }),
    );
    row(
        &mut md,
        "2",
        "endpoint: `/smoketest` (10 no-op checks) / bare handler, same JSON",
        f.endpoint.as_ref().map(|x| {
            let r = x.pair.ratio();
            (
                format!("{r:.3} (server CPU: {:.3})", x.pair.capacity_ratio()),
                "≥ 0.5".into(),
                Some(r >= 0.5),
            )
        }),
    );
    row(
        &mut md,
        "3",
        "database: `/smoketest` (one Postgres check) / pgbench, same transaction",
        f.postgres.as_ref().map(|x| {
            let r = x.pair.ratio();
            (format!("{r:.3}"), "≥ 0.6".into(), Some(r >= 0.6))
        }),
    );
    row(
        &mut md,
        "4",
        "parallel: wall time of 10 checks of 100 ms / 100 ms",
        f.parallel.as_ref().map(|x| {
            let r = x.median_ms / 100.0;
            (
                format!("{r:.3} ({:.1} ms)", x.median_ms),
                "≤ 1.2".into(),
                Some(r <= 1.2),
            )
        }),
    );
    row(
        &mut md,
        "5",
        "flood: throughput, p99 latency, DB transactions/s",
        f.flood.as_ref().map(|x| {
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
        }),
    );
    row(
        &mut md,
        "6",
        "memory: RSS growth from 1,000 to 100,000 requests",
        f.memory.as_ref().map(|x| {
            let g = x.growth_mib();
            (format!("{g:.2} MiB"), "< 5 MiB".into(), Some(g < 5.0))
        }),
    );

    let _ = writeln!(
        md,
        "\nThe verdicts judge throughput, as the goals are stated. \"Server CPU\" is the \
         same comparison made with each server's CPU time per request (what it could serve \
         with the cores to itself): it leaves out the load generator, which shares the cores \
         and pays the same per request on both sides, and it moves far less with the \
         machine's other load, so small differences show there first."
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
         - **Side by side**: each comparison runs {} alternating rounds (A B, B A, …) of {:.1} s \
         per side after {:.1} s of warm-up each, and reports the **median of the per-round \
         ratios**, so drift in the machine's other load hits both sides alike.",
        m.cores,
        p.rounds,
        p.window.as_secs_f64(),
        p.warmup.as_secs_f64()
    );

    // Scenario details.
    let _ = writeln!(md, "\n## 1. Pass-through cost\n");
    let _ = writeln!(
        md,
        "What it answers: does mounting `SmoketestLayer` slow down the service's own routes? \
         Both servers serve `GET /orders` (a three-item JSON list serialized per request); one \
         has the layer (with 10 no-op checks registered) wrapped around its router, one does \
         not. The ratio is the layered server's throughput over the plain one's: 1.0 means \
         the layer costs nothing measurable.\n"
    );
    match &f.pass_through {
        Ok(x) => {
            let (lo, hi) = spread(&x.pair.ratios);
            let _ = writeln!(
                md,
                "- {} connections. Requests/s with the layer per round: {}; without: {}.\n\
                 - Server CPU time per request (median of rounds): {:.1} µs with the layer, {:.1} µs without.\n\
                 - Per-round ratios: {} (range {lo:.3}–{hi:.3}).\n\
                 - **Ratio {:.3}** (goal ≥ 0.98): {}. Failed requests: {}.",
                x.connections,
                rounds(&x.pair.a),
                rounds(&x.pair.b),
                median(&x.pair.a_cpu_us),
                median(&x.pair.b_cpu_us),
                ratios(&x.pair.ratios),
                x.pair.ratio(),
                verdict(x.pair.ratio() >= 0.98),
                x.pair.failures
            );
            let _ = writeln!(
                md,
                "- The layer wrapped once around the whole router instead \
                 (`SmoketestLayer::new(smoke).layer(router)` served with `into_make_service`), \
                 measured the same way against the same plain server: requests/s per round {}; \
                 plain {}; server CPU per request {:.1} µs vs {:.1} µs; per-round ratios {}; \
                 **ratio {:.3}**: {}.",
                rounds(&x.outer.a),
                rounds(&x.outer.b),
                median(&x.outer.a_cpu_us),
                median(&x.outer.b_cpu_us),
                ratios(&x.outer.ratios),
                x.outer.ratio(),
                verdict(x.outer.ratio() >= 0.98)
            );
        }
        Err(e) => {
            let _ = writeln!(md, "Not measured: {e}");
        }
    }

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
         most requests *not* run the checks (scenario 5 measures it). The ratio is the endpoint's throughput over the bare handler's: 0.5 \
         means a run of 10 checks plus the report costs as much as all of HTTP handling.\n"
    );
    match &f.endpoint {
        Ok(x) => {
            let (lo, hi) = spread(&x.pair.ratios);
            let _ = writeln!(
                md,
                "- {} connections. Requests/s of `/smoketest` per round: {}; bare: {}.\n\
                 - Check bodies run per request: {:.2} (10 means every request ran every check).\n\
                 - Server CPU time per request (median of rounds): {:.1} µs for `/smoketest`, {:.1} µs for the bare handler.\n\
                 - Per-round ratios: {} (range {lo:.3}–{hi:.3}).\n\
                 - **Ratio {:.3}** (goal ≥ 0.5): {}. Failed requests: {}.",
                x.connections,
                rounds(&x.pair.a),
                rounds(&x.pair.b),
                x.checks_per_request,
                median(&x.pair.a_cpu_us),
                median(&x.pair.b_cpu_us),
                ratios(&x.pair.ratios),
                x.pair.ratio(),
                verdict(x.pair.ratio() >= 0.5),
                x.pair.failures
            );
        }
        Err(e) => {
            let _ = writeln!(md, "Not measured: {e}");
        }
    }

    if let Ok(x) = &f.endpoint {
        let runner = per_check(&f.criterion)
            .map(|(check, run)| {
                format!(
                    " In-process, without HTTP, the runner costs {} per run plus {} per check \
                     (criterion, below)",
                    duration(run),
                    duration(check)
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            md,
            "\nWhere the time goes. The server's CPU time per request above is the stable \
             figure: the difference between the two sides ({:.1} µs) is the run and the \
             report, paid on every request because this scenario turns every protection off.{runner}. \
             Profiling the endpoint server under this load (`perf record -g` with \
             `smoketest-bench serve endpoint` and `smoketest-bench load`) shows no single hot \
             spot: the run's share is spawning, scheduling and joining one tokio task per check, \
             the allocations that go with them, and the JSON writer with the copy of the \
             report made for the caller's detail level. One task per check is the runner's \
             design, not an accident: it is what lets the run's deadline cut off a check that \
             blocks its thread and keeps a caller that hangs up from cancelling a check half-way \
             (DESIGN.md §2). Against any check that does real work (scenario 3: one database \
             transaction) the overhead is small; the ratio here is the worst case of checks \
             that do nothing at all, on a machine where the load generator competes for the \
             same two cores.",
            median(&x.pair.a_cpu_us) - median(&x.pair.b_cpu_us)
        );
    }

    let _ = writeln!(md, "\n## 3. Database check vs the database's own limit\n");
    let _ = writeln!(
        md,
        "What it answers: how close does a smoke check that writes to Postgres get to what \
         Postgres itself can do? The server's `/smoketest` runs one check per request, \
         written as a service would write it: `ctx.postgres()` (the runner begins the \
         transaction and sets the deadline inside the database), `INSERT … RETURNING id`, \
         `SELECT … WHERE id = $1`, and the runner's `ROLLBACK`; the pool has one connection \
         per client (no liveness ping on acquire: pgbench holds its connections too). \
         pgbench runs the same statements (prepared protocol, \
         same table) with the same number of clients. The ratio is `/smoketest` requests per \
         second over pgbench's transactions per second: the whole HTTP + runner + sqlx path \
         against a C client that does nothing else.\n\n\
         The transaction, as pgbench runs it:\n\n```sql\n{}```\n",
        crate::pg::pgbench_script()
    );
    match &f.postgres {
        Ok(x) => {
            let (lo, hi) = spread(&x.pair.ratios);
            let _ = writeln!(
                md,
                "- {} clients on both sides, {:.0} s windows. `/smoketest` requests/s per round: {}; \
                 pgbench TPS: {}.\n\
                 - Check runs per request: {:.2} (1 means every request ran the transaction).\n\
                 - Per-round ratios: {} (range {lo:.3}–{hi:.3}).\n\
                 - **Ratio {:.3}** (goal ≥ 0.6): {}. Failed requests: {}.",
                x.clients,
                x.window.as_secs_f64(),
                rounds(&x.pair.a),
                rounds(&x.pair.b),
                x.checks_per_request,
                ratios(&x.pair.ratios),
                x.pair.ratio(),
                verdict(x.pair.ratio() >= 0.6),
                x.pair.failures
            );
        }
        Err(e) => {
            let _ = writeln!(md, "Not measured: {e}");
        }
    }

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
                 - **Ratio {:.3}** (goal ≤ 1.2): {}.",
                x.samples,
                x.median_ms,
                x.max_ms,
                x.median_ms / 100.0,
                verdict(x.median_ms / 100.0 <= 1.2)
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
                 - **Growth {:.2} MiB** (goal < 5 MiB): {}.",
                x.requests.0,
                x.rss_kib.0 as f64 / 1024.0,
                x.requests.1,
                x.rss_kib.1 as f64 / 1024.0,
                x.answered,
                x.failed,
                x.seconds,
                x.growth_mib(),
                verdict(x.growth_mib() < 5.0)
            );
        }
        Err(e) => {
            let _ = writeln!(md, "Not measured: {e}");
        }
    }

    // Instruction counts.
    let _ = writeln!(md, "\n## Instructions per request (callgrind)\n");
    let _ = writeln!(
        md,
        "Time on a shared machine moves with everybody else's work; the number of \
         instructions a server executes per request does not. Each server below runs under \
         valgrind's callgrind, is warmed up, then counts user-space instructions (the kernel's \
         TCP work is not included) over a fixed number of requests from 8 connections. This is \
         the figure to watch for regressions of a few percent, which the throughput ratios \
         above cannot resolve. Instructions are not time: copies and serialization loops are \
         cheap per instruction, system calls are not counted, so compare a row with itself \
         across commits rather than rows with each other.\n"
    );
    match &f.instructions {
        Ok(rows) => {
            let per = |app: &str| {
                rows.iter()
                    .find(|r| r.app == app)
                    .map_or(f64::NAN, |r| r.per_request)
            };
            let _ = writeln!(
                md,
                "| server | request | instructions per request | requests counted |"
            );
            let _ = writeln!(md, "| --- | --- | --- | --- |");
            for r in rows {
                let _ = writeln!(
                    md,
                    "| `{}` | `GET {}` | {:.0} | {} |",
                    r.app, r.path, r.per_request, r.requests
                );
            }
            let api = per("api");
            let _ = writeln!(
                md,
                "\n- Pass-through: `Router::layer(SmoketestLayer)` adds {:.0} instructions per API \
                 request ({:+.1} %); wrapped once around the whole router \
                 (`SmoketestLayer::new(smoke).layer(router)`, served with `into_make_service`) it \
                 adds {:.0} ({:+.1} %). The difference between the two is axum's: `Router::layer` \
                 wraps every route in another boxed, cloned service, whatever the layer does. \
                 Mounting with `smoketest_axum::router(smoke)` and `Router::merge` instead adds \
                 no layer at all: the service's own routes do not pass through smoketest.\n\
                 - Endpoint: a `/smoketest` request running 10 no-op checks executes {:.1}× the \
                 instructions of the bare handler returning the same JSON.",
                per("api-with-layer") - api,
                (per("api-with-layer") / api - 1.0) * 100.0,
                per("api-with-outer-layer") - api,
                (per("api-with-outer-layer") / api - 1.0) * 100.0,
                per("endpoint") / per("bare")
            );
        }
        Err(e) => {
            let _ = writeln!(md, "Not measured: {e}");
        }
    }

    // Criterion.
    let _ = writeln!(
        md,
        "\n## Micro-benchmarks (`cargo bench -p smoketest-core`)\n"
    );
    if f.criterion.is_empty() {
        let _ = writeln!(md, "Not run in this invocation.");
    } else {
        let _ = writeln!(
            md,
            "Criterion, in-process, no HTTP: `runner` is `Smoketest::run` of N no-op checks \
             (spawning a task per check, timeouts, the report); `formats` writes one report \
             (10 checks, one failed with a message and a suggestion) in each format.\n"
        );
        let _ = writeln!(md, "| benchmark | mean | 95 % confidence interval |");
        let _ = writeln!(md, "| --- | --- | --- |");
        for c in &f.criterion {
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
        if let (Some(noop), Some(sleep)) = (
            per_check_at_scale(&f.criterion, "no-op"),
            per_check_at_scale(&f.criterion, "sleep 1 ms"),
        ) {
            let _ = writeln!(
                md,
                "\nAt scale (`scale`: 1 to 1,000 registered checks, the builder's defaults, 16 \
                 checks at once), from the 1- and 1,000-check runs: **{}** more per no-op check; \
                 **{}** more per check that sleeps 1 ms, which is the sleep (about 2 ms with \
                 tokio's millisecond timer) divided by the 16 checks that run at once.",
                duration(noop),
                duration(sleep)
            );
        }
    }

    let _ = writeln!(
        md,
        "\n## Running it\n\n```sh\nscripts/bench.sh            # everything: criterion, then the load scenarios\n\
         scripts/bench.sh --quick    # a few seconds per scenario: checks the harness, not the code\n```\n\n\
         It installs what it needs on Debian (pgbench from `postgresql-client`), builds the \
         `smoketest-bench` package in release mode and writes this file. Postgres is read from \
         `SMOKETEST_BENCH_POSTGRES_URL`, else `SMOKETEST_TEST_POSTGRES_URL`, else \
         `postgres://postgres@127.0.0.1:5432/test`; the benchmark creates a database \
         `smoketest_bench` there and drops it at the end. Without Postgres the database \
         scenarios say so and the rest still run."
    );
    md
}

#[cfg(test)]
mod tests {
    use super::{Criterion, per_check_at_scale};

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
