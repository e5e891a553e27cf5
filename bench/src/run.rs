//! The driver: starts each benchmark server, loads it, measures side by side, prints each
//! ratio with its goal and writes `BENCHMARKS.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::load::{self, Load, Outcome, median};
use crate::machine::{self, Machine};
use crate::pg::Db;
use crate::pgproxy::Proxy;
use crate::profile::Profile;
use crate::report::{self, Criterion, Figures};
use crate::servers::App;

/// How the run was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to write the Markdown report.
    pub out: PathBuf,
    /// Postgres to measure against; `None` skips the database scenarios.
    pub postgres: Option<String>,
    /// A criterion output directory to include (`target/criterion`).
    pub criterion: Option<PathBuf>,
    /// Short windows: checks the harness, not the code.
    pub quick: bool,
}

/// Timing of the run (shortened by `--quick`).
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Warm-up per server before measuring.
    pub warmup: Duration,
    /// Alternating rounds per comparison.
    pub rounds: usize,
    /// Measuring window per round and side.
    pub window: Duration,
    /// Connections for the HTTP throughput comparisons.
    pub connections: usize,
    /// Clients for pgbench and connections for the Postgres scenario.
    pub pg_clients: usize,
    /// Alternating rounds of the Postgres scenario (each side 1 s: pgbench counts whole
    /// seconds).
    pub pg_rounds: usize,
    /// Sequential requests through the counting proxy for the round trips per check.
    pub round_trip_requests: usize,
    /// Requests counted under callgrind per server (fewer for the 100-check servers).
    pub callgrind_requests: u64,
    /// Requests to time in the parallel scenario.
    pub parallel_samples: usize,
    /// Connections in the flood.
    pub flood_connections: usize,
    /// Length of the flood.
    pub flood: Duration,
    /// Requests before the first and the second memory reading.
    pub memory_requests: (u64, u64),
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                warmup: Duration::from_millis(200),
                rounds: 2,
                window: Duration::from_millis(300),
                connections: 16,
                pg_clients: 4,
                pg_rounds: 2,
                round_trip_requests: 20,
                callgrind_requests: 400,
                parallel_samples: 3,
                flood_connections: 100,
                flood: Duration::from_secs(1),
                memory_requests: (1_000, 5_000),
            }
        } else {
            Plan {
                warmup: Duration::from_millis(700),
                rounds: 6,
                window: Duration::from_millis(1000),
                connections: 32,
                pg_clients: 8,
                pg_rounds: 8,
                round_trip_requests: 100,
                callgrind_requests: 2_000,
                parallel_samples: 20,
                flood_connections: 500,
                flood: Duration::from_secs(10),
                memory_requests: (1_000, 100_000),
            }
        }
    }
}

/// `smoketest-bench run [--out FILE] [--postgres URL | --no-postgres] [--criterion DIR] [--quick]`.
pub fn main(args: &[String]) -> Result<(), String> {
    let mut options = Options {
        out: PathBuf::from("BENCHMARKS.md"),
        postgres: std::env::var("SMOKETEST_BENCH_POSTGRES_URL")
            .or_else(|_| std::env::var("SMOKETEST_TEST_POSTGRES_URL"))
            .ok()
            .or_else(|| Some("postgres://postgres@127.0.0.1:5432/test".into())),
        criterion: None,
        quick: false,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--out" => options.out = value()?.into(),
            "--postgres" => options.postgres = Some(value()?),
            "--no-postgres" => options.postgres = None,
            "--criterion" => options.criterion = Some(value()?.into()),
            "--quick" => options.quick = true,
            _ => return Err(format!("run: unknown option {flag}")),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(run(options))
}

/// CPU time (user + system) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesized command name; utime and stime are the 14th and 15th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux architecture Rust targets.
    Some(ticks as f64 / 100.0)
}

/// `smoketest-bench load ADDR PATH [CONNECTIONS] [SECONDS] [SERVER_PID]`: load a server
/// started with `serve` (under a profiler, say) and print what it sustained, and the
/// server's CPU time per request when its process id is given.
pub fn load_main(args: &[String]) -> Result<(), String> {
    let usage = "load ADDR PATH [CONNECTIONS] [SECONDS]";
    let addr: SocketAddr = args
        .first()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("usage: {usage}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{addr} is not a loopback address: load only loopback"
        ));
    }
    let path = args
        .get(1)
        .ok_or_else(|| format!("usage: {usage}"))?
        .clone();
    let number = |i: usize, default: u64| -> Result<u64, String> {
        args.get(i).map_or(Ok(default), |v| {
            v.parse().map_err(|_| format!("usage: {usage}"))
        })
    };
    let connections = number(2, 32)? as usize;
    let seconds = number(3, 10)?.min(600);
    let pid = number(4, 0)? as u32;
    let cpu_before = cpu_seconds(pid);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let outcome = runtime.block_on(load::run(&Load {
        addr,
        path,
        connections,
        duration: Duration::from_secs(seconds),
        max_requests: None,
    }));
    println!(
        "{:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms; {} 2xx, {} other, {} errors",
        outcome.throughput(),
        outcome.percentile_ms(50.0),
        outcome.percentile_ms(99.0),
        outcome.ok,
        outcome.non_2xx,
        outcome.errors
    );
    if let (Some(before), Some(after)) = (cpu_before, cpu_seconds(pid)) {
        println!(
            "server CPU: {:.1} µs per request",
            (after - before) * 1e6 / (outcome.ok + outcome.non_2xx).max(1) as f64
        );
    }
    Ok(())
}

/// A benchmark server process.
struct Server {
    child: Child,
    addr: SocketAddr,
    app: App,
}

impl Server {
    async fn start(app: App, postgres: Option<&str>, pool: usize) -> Result<Server, String> {
        let exe = std::env::current_exe().map_err(|e| format!("where am I? {e}"))?;
        let mut command = Command::new(exe);
        command
            .arg("serve")
            .arg(app.name())
            .args(["--pool", &pool.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(url) = postgres {
            command.args(["--postgres", url]);
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start the {} server: {e}", app.name()))?;
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(30),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .map_err(|_| format!("the {} server did not start within 30 s", app.name()))?
        .map_err(|e| format!("reading the {} server's address: {e}", app.name()))?;
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("the {} server did not start: {line:?}", app.name()))?;
        Ok(Server { child, addr, app })
    }

    /// Resident memory of the server process, KiB.
    fn rss_kib(&self) -> Option<u64> {
        let pid = self.child.id()?;
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    }

    /// How many check bodies the server has run.
    async fn check_runs(&self) -> Result<u64, String> {
        let (_, body) = load::get(self.addr, "/bench/stats").await?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("/bench/stats: {e}"))?;
        v["check_runs"]
            .as_u64()
            .ok_or_else(|| "/bench/stats has no check_runs".into())
    }

    /// GET `path` once and insist on a 200, so that we never measure a failing server.
    async fn expect_ok(&self, path: &str) -> Result<(), String> {
        let (status, body) = load::get(self.addr, path).await?;
        if status != 200 {
            return Err(format!(
                "the {} server answered GET {path} with {status}: {}",
                self.app.name(),
                String::from_utf8_lossy(&body)
            ));
        }
        Ok(())
    }

    fn load(&self, path: &str, connections: usize, duration: Duration) -> Load {
        Load {
            addr: self.addr,
            path: path.to_string(),
            connections,
            duration,
            max_requests: None,
        }
    }

    async fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill().await;
    }
}

/// Throughput of two loads measured in alternating rounds (A B, B A, …) so that drift in
/// the machine's other load hits both alike; the ratio is taken per round.
#[derive(Debug, Clone, Default)]
pub struct Paired {
    /// Requests (or transactions) per second of the measured side, per round.
    pub a: Vec<f64>,
    /// Of the reference side, per round.
    pub b: Vec<f64>,
    /// `a / b` per round.
    pub ratios: Vec<f64>,
    /// Requests that did not get a 2xx answer, both sides.
    pub failures: u64,
    /// Requests side A answered, warm-up included.
    pub a_answered: u64,
    /// Server CPU time per answered request on side A, µs, per round (HTTP sides only).
    pub a_cpu_us: Vec<f64>,
    /// The same for side B.
    pub b_cpu_us: Vec<f64>,
}

impl Paired {
    /// The median of the per-round ratios.
    pub fn ratio(&self) -> f64 {
        median(&self.ratios)
    }

    /// B's server CPU time per request over A's (medians): the ratio of what each server
    /// could serve with the CPU to itself, free of the load generator's share.
    pub fn capacity_ratio(&self) -> f64 {
        median(&self.b_cpu_us) / median(&self.a_cpu_us)
    }

    fn push(&mut self, a: f64, b: f64) {
        self.a.push(a);
        self.b.push(b);
        self.ratios.push(a / b);
    }
}

fn failures(o: &Outcome) -> u64 {
    o.non_2xx + o.errors
}

/// One load run, with the server's CPU time per answered request.
async fn measured(load: &Load, pid: Option<u32>) -> (Outcome, f64) {
    let before = pid.and_then(cpu_seconds);
    let outcome = load::run(load).await;
    let after = pid.and_then(cpu_seconds);
    let cpu = match (before, after) {
        (Some(b), Some(a)) => (a - b) * 1e6 / (outcome.ok + outcome.non_2xx).max(1) as f64,
        _ => f64::NAN,
    };
    (outcome, cpu)
}

/// Throughput of `others` each measured against `reference` in the same rounds: every
/// round measures all of them one after another, in an order that rotates from round to
/// round (and reverses every other round), so drift in the machine's other load hits every
/// side alike; each ratio is taken against the reference's window of the same round.
async fn side_by_side(
    reference: (&Load, &Server),
    others: &[(&Load, &Server)],
    plan: &Plan,
) -> Vec<Paired> {
    let sides: Vec<(&Load, &Server)> = std::iter::once(reference)
        .chain(others.iter().copied())
        .collect();
    let mut answered = vec![0u64; sides.len()];
    for (i, (load, _)) in sides.iter().enumerate() {
        let mut warm = (*load).clone();
        warm.duration = plan.warmup;
        let w = load::run(&warm).await;
        answered[i] += w.ok + w.non_2xx;
    }
    let mut out = vec![Paired::default(); others.len()];
    for round in 0..plan.rounds {
        let mut order: Vec<usize> = (0..sides.len()).collect();
        order.rotate_left(round % sides.len());
        if round % 2 == 1 {
            order.reverse();
        }
        let mut results: Vec<Option<(Outcome, f64)>> = vec![None; sides.len()];
        for i in order {
            let (load, server) = sides[i];
            results[i] = Some(measured(load, server.child.id()).await);
        }
        let results: Vec<(Outcome, f64)> = results.into_iter().flatten().collect();
        let (reference, ref_cpu) = &results[0];
        for (i, pair) in out.iter_mut().enumerate() {
            let (outcome, cpu) = &results[i + 1];
            pair.a_cpu_us.push(*cpu);
            pair.b_cpu_us.push(*ref_cpu);
            pair.failures += failures(outcome) + failures(reference);
            answered[i + 1] += outcome.ok + outcome.non_2xx;
            pair.push(outcome.throughput(), reference.throughput());
        }
    }
    for (i, pair) in out.iter_mut().enumerate() {
        pair.a_answered = answered[i + 1];
    }
    out
}

async fn paired_http(a: (&Load, &Server), b: (&Load, &Server), plan: &Plan) -> Paired {
    side_by_side(b, &[a], plan)
        .await
        .pop()
        .expect("one comparison")
}

async fn pass_through(plan: &Plan) -> Result<report::PassThrough, String> {
    let plain = Server::start(App::Api, None, 1).await?;
    let merged = Server::start(App::ApiMerged, None, 1).await?;
    let layered = Server::start(App::ApiWithLayer, None, 1).await?;
    let outer = Server::start(App::ApiWithOuterLayer, None, 1).await?;
    plain.expect_ok("/orders").await?;
    for server in [&merged, &layered, &outer] {
        server.expect_ok("/orders").await?;
        server.expect_ok("/smoketest").await?;
    }
    let load = |s: &Server| s.load("/orders", plan.connections, plan.window);
    let (l_plain, l_merged, l_layered, l_outer) =
        (load(&plain), load(&merged), load(&layered), load(&outer));
    let mut pairs = side_by_side(
        (&l_plain, &plain),
        &[
            (&l_merged, &merged),
            (&l_layered, &layered),
            (&l_outer, &outer),
        ],
        plan,
    )
    .await
    .into_iter();
    for server in [plain, merged, layered, outer] {
        server.stop().await;
    }
    let mut next = || pairs.next().expect("three comparisons");
    Ok(report::PassThrough {
        merged: next(),
        layer: next(),
        outer: next(),
        connections: plan.connections,
    })
}

async fn endpoint(plan: &Plan) -> Result<report::Endpoint, String> {
    let smoke = Server::start(App::Endpoint, None, 1).await?;
    let bare = Server::start(App::Bare, None, 1).await?;
    smoke.expect_ok("/smoketest").await?;
    bare.expect_ok("/smoketest").await?;
    let runs_before = smoke.check_runs().await?;
    let pair = paired_http(
        (
            &smoke.load("/smoketest", plan.connections, plan.window),
            &smoke,
        ),
        (
            &bare.load("/smoketest", plan.connections, plan.window),
            &bare,
        ),
        plan,
    )
    .await;
    let runs = smoke.check_runs().await? - runs_before;
    smoke.stop().await;
    bare.stop().await;
    Ok(report::Endpoint {
        connections: plan.connections,
        checks_per_request: runs as f64 / pair.a_answered.max(1) as f64,
        pair,
    })
}

async fn postgres(plan: &Plan, db: &Db) -> Result<report::Postgres, String> {
    let clients = plan.pg_clients;
    let smoke = Server::start(App::Postgres, Some(&db.url), clients).await?;
    smoke.expect_ok("/smoketest").await?;
    let load = smoke.load("/smoketest", clients, plan.window);
    // pgbench counts whole seconds: many short rounds rather than a few long ones, so the
    // median and the spread of the per-round ratios say how stable the figure is.
    let seconds = 1;
    // Warm both: the server's pool and statement cache, Postgres' buffers.
    let mut warm = load.clone();
    warm.duration = plan.warmup;
    load::run(&warm).await;
    db.pgbench(clients, 1).await?;

    let mut pair = Paired::default();
    let mut runs = 0;
    let mut requests = 0;
    let window = Duration::from_secs(seconds);
    let mut timed = load.clone();
    timed.duration = window;
    for round in 0..plan.pg_rounds {
        let before = smoke.check_runs().await?;
        let (http, tps) = if round % 2 == 0 {
            let http = load::run(&timed).await;
            (http, db.pgbench(clients, seconds).await?)
        } else {
            let tps = db.pgbench(clients, seconds).await?;
            (load::run(&timed).await, tps)
        };
        runs += smoke.check_runs().await? - before;
        requests += http.ok + http.non_2xx;
        pair.failures += failures(&http);
        pair.push(http.throughput(), tps);
    }
    smoke.stop().await;
    Ok(report::Postgres {
        pair,
        clients,
        checks_per_request: runs as f64 / requests.max(1) as f64,
        window,
    })
}

/// Round trips per run of the Postgres check, counted on the wire by a proxy between the
/// server (one pooled connection) and Postgres, over sequential requests on a warm
/// connection, and sorted by what each carried: the check's own statements (on the
/// benchmark's table), sqlx's pings (a `Sync`, after any `ROLLBACK` queued for it to
/// flush), and the rest — what the runner adds
/// around the check.
async fn round_trips(plan: &Plan, db: &Db) -> Result<report::RoundTrips, String> {
    let unresolved = crate::pg::via_proxy(&db.url, SocketAddr::from(([127, 0, 0, 1], 0)))
        .ok_or("cannot read the host and port of the Postgres URL")?
        .1;
    let target = tokio::net::lookup_host(&unresolved)
        .await
        .map_err(|e| format!("resolving {unresolved}: {e}"))?
        .next()
        .ok_or_else(|| format!("{unresolved} resolves to nothing"))?;
    let proxy = Proxy::start(target).await?;
    let (url, _) = crate::pg::via_proxy(&db.url, proxy.addr).expect("parsed above");
    let server = Server::start(App::Postgres, Some(&url), 1).await?;
    // Warm: the connection is open and the statements are prepared.
    for _ in 0..5 {
        server.expect_ok("/smoketest").await?;
    }
    // sqlx pings a connection returned to the pool from a task of its own: wait for quiet.
    let settled = || async {
        let mut last = proxy.count();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = proxy.count();
            if now == last {
                return now;
            }
            last = now;
        }
    };
    let before = settled().await;
    let requests = plan.round_trip_requests as u64;
    let outcome = load::run(&Load {
        max_requests: Some(requests),
        ..server.load("/smoketest", 1, Duration::from_secs(60))
    })
    .await;
    let after = settled().await;
    server.stop().await;
    if outcome.ok != requests {
        return Err(format!(
            "{} of {requests} requests through the counting proxy failed",
            requests - outcome.ok
        ));
    }
    let turns = proxy.turns();
    Ok(report::RoundTrips::classify(
        &turns[before..after],
        requests,
        crate::servers::TABLE,
    ))
}

async fn parallel(plan: &Plan) -> Result<report::Parallel, String> {
    let server = Server::start(App::Parallel, None, 1).await?;
    for _ in 0..3 {
        server.expect_ok("/smoketest").await?;
    }
    let outcome = load::run(&Load {
        max_requests: Some(plan.parallel_samples as u64),
        ..server.load("/smoketest", 1, Duration::from_secs(60))
    })
    .await;
    server.stop().await;
    if failures(&outcome) > 0 {
        return Err(format!(
            "{} of the parallel scenario's requests failed",
            failures(&outcome)
        ));
    }
    Ok(report::Parallel {
        median_ms: outcome.percentile_ms(50.0),
        max_ms: outcome.percentile_ms(100.0),
        samples: outcome.latencies_us.len(),
    })
}

async fn flood(plan: &Plan, db: Option<&Db>) -> Result<report::Flood, String> {
    let server = Server::start(App::Flood, db.map(|d| d.url.as_str()), 10).await?;
    server.expect_ok("/smoketest").await?;
    // Let the statistics of earlier scenarios settle (backends report within ~1 s).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let xacts_before = match db {
        Some(db) => Some(db.transactions().await?),
        None => None,
    };
    let runs_before = server.check_runs().await?;
    let outcome = load::run(&server.load("/smoketest", plan.flood_connections, plan.flood)).await;
    let runs = server.check_runs().await? - runs_before;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let db_xacts_per_s = match (db, xacts_before) {
        (Some(db), Some(before)) => {
            Some((db.transactions().await? - before) as f64 / outcome.elapsed.as_secs_f64())
        }
        _ => None,
    };
    server.stop().await;
    Ok(report::Flood {
        connections: plan.flood_connections,
        seconds: outcome.elapsed.as_secs_f64(),
        throughput: outcome.throughput(),
        p50_ms: outcome.percentile_ms(50.0),
        p99_ms: outcome.percentile_ms(99.0),
        max_ms: outcome.percentile_ms(100.0),
        ok: outcome.ok,
        non_2xx: outcome.non_2xx,
        errors: outcome.errors,
        check_runs_per_s: runs as f64 / outcome.elapsed.as_secs_f64(),
        db_xacts_per_s,
    })
}

async fn memory(plan: &Plan, db: Option<&Db>) -> Result<report::Memory, String> {
    let server = Server::start(App::Memory, db.map(|d| d.url.as_str()), 10).await?;
    let (first, second) = plan.memory_requests;
    let connections = plan.connections;
    let started = Instant::now();
    let bounded = |n: u64| Load {
        max_requests: Some(n),
        ..server.load("/smoketest", connections, Duration::from_secs(300))
    };
    let a = load::run(&bounded(first)).await;
    let rss_first = server.rss_kib().ok_or("cannot read the server's RSS")?;
    let b = load::run(&bounded(second - first)).await;
    let rss_second = server.rss_kib().ok_or("cannot read the server's RSS")?;
    let elapsed = started.elapsed();
    let answered = a.ok + a.non_2xx + b.ok + b.non_2xx;
    let failed = failures(&a) + failures(&b);
    server.stop().await;
    Ok(report::Memory {
        requests: (first, second),
        answered,
        failed,
        rss_kib: (rss_first, rss_second),
        with_postgres: db.is_some(),
        seconds: elapsed.as_secs_f64(),
    })
}

/// User-space instructions the server executes per request, counted by valgrind's
/// callgrind over `requests` requests after a warm-up: unlike time, the count does not move
/// with the machine's other load, so it shows differences of a few percent that throughput
/// on a shared machine cannot.
async fn instructions_per_request(
    app: App,
    checks: usize,
    path: &str,
    requests: u64,
    postgres: Option<&str>,
) -> Result<(f64, Profile), String> {
    let exe = std::env::current_exe().map_err(|e| format!("where am I? {e}"))?;
    let out = std::env::temp_dir().join(format!(
        "smoketest-bench-{}-{}-{checks}.callgrind",
        std::process::id(),
        app.name()
    ));
    let dump = PathBuf::from(format!("{}.1", out.display()));
    let _ = std::fs::remove_file(&dump);
    let mut command = Command::new("valgrind");
    command
        .args(["--tool=callgrind", "--instr-atstart=no"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(exe)
        // One worker: the count then does not depend on how the requests happened to be
        // spread over threads (an idle worker looking for work counts too), which moved
        // it by several percent from run to run.
        .args(["serve", app.name(), "--checks", &checks.to_string()])
        .args(["--workers", "1"]);
    if let Some(url) = postgres {
        // A pooled connection per load connection, as in scenario 3.
        command.args(["--postgres", url, "--pool", "8"]);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run valgrind ({e}); scripts/bench.sh installs it"))?;
    let pid = child.id().ok_or("valgrind exited at once")?.to_string();
    let stdout = child.stdout.take().expect("piped");
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(60),
        BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .map_err(|_| "the server under valgrind did not start within 60 s".to_string())?
    .map_err(|e| e.to_string())?;
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("the server under valgrind did not start: {line:?}"))?;
    let bounded = |n: u64| Load {
        addr,
        path: path.to_string(),
        connections: 8,
        duration: Duration::from_secs(60),
        max_requests: Some(n),
    };
    load::run(&bounded(requests / 4)).await;
    let control = |what: &'static [&'static str]| {
        let pid = pid.clone();
        async move {
            Command::new("callgrind_control")
                .args(what)
                .arg(&pid)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await
                .map_err(|e| format!("callgrind_control: {e}"))
        }
    };
    control(&["-i", "on"]).await?;
    let outcome = load::run(&bounded(requests)).await;
    control(&["-i", "off"]).await?;
    control(&["-d"]).await?;
    drop(child.stdin.take());
    let _ = child.kill().await;
    let text = std::fs::read_to_string(&dump)
        .map_err(|e| format!("reading callgrind's dump {}: {e}", dump.display()))?;
    let _ = std::fs::remove_file(&dump);
    let _ = std::fs::remove_file(&out);
    let profile = Profile::parse(&text)?;
    if outcome.ok == 0 || failures(&outcome) > 0 {
        return Err(format!(
            "{} of {} requests failed under valgrind",
            failures(&outcome),
            requests
        ));
    }
    Ok((profile.total as f64 / outcome.ok as f64, profile))
}

/// The servers counted under callgrind: the pass-through servers, and the endpoint and the
/// bare handler with 1, 10 and 100 no-op checks (fewer requests for 100: the count per
/// request is exact enough, and a request costs over a million instructions there).
async fn instructions(plan: &Plan, db: Option<&Db>) -> Result<Vec<report::Instructions>, String> {
    let n = plan.callgrind_requests;
    let mut out = Vec::new();
    let database = db.map(|_| (App::Postgres, 1, "/smoketest", n / 4));
    for (app, checks, path, requests) in [
        (App::Api, 10, "/orders", n),
        (App::ApiMerged, 10, "/orders", n),
        (App::ApiWithLayer, 10, "/orders", n),
        (App::ApiWithOuterLayer, 10, "/orders", n),
        (App::Bare, 1, "/smoketest", n),
        (App::Endpoint, 1, "/smoketest", n),
        (App::Bare, 10, "/smoketest", n),
        (App::Endpoint, 10, "/smoketest", n),
        (App::Bare, 100, "/smoketest", n / 5),
        (App::Endpoint, 100, "/smoketest", n / 5),
    ]
    .into_iter()
    .chain(database)
    {
        let postgres = db.filter(|_| app == App::Postgres).map(|d| d.url.as_str());
        let (per_request, profile) =
            instructions_per_request(app, checks, path, requests, postgres).await?;
        out.push(report::Instructions {
            app: app.name(),
            checks,
            path,
            per_request,
            requests,
            profile,
        });
    }
    Ok(out)
}

fn read_criterion(dir: &Path) -> Vec<Criterion> {
    fn walk(dir: &Path, out: &mut Vec<Criterion>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if path.file_name().is_some_and(|n| n == "new") {
                let read = |f: &str| -> Option<serde_json::Value> {
                    serde_json::from_str(&std::fs::read_to_string(path.join(f)).ok()?).ok()
                };
                if let (Some(b), Some(e)) = (read("benchmark.json"), read("estimates.json"))
                    && let (Some(id), Some(mean), Some(lo), Some(hi)) = (
                        b["full_id"].as_str(),
                        e["mean"]["point_estimate"].as_f64(),
                        e["mean"]["confidence_interval"]["lower_bound"].as_f64(),
                        e["mean"]["confidence_interval"]["upper_bound"].as_f64(),
                    )
                {
                    out.push(Criterion {
                        id: id.to_string(),
                        mean_ns: mean,
                        low_ns: lo,
                        high_ns: hi,
                    });
                }
            } else {
                walk(&path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

async fn run(options: Options) -> Result<(), String> {
    let plan = Plan::new(options.quick);
    let machine = Machine::describe();
    let load_before = machine::load_average();
    let started = Instant::now();
    println!(
        "smoketest-bench on {} ({} cores), commit {}",
        machine.cpu, machine.cores, machine.commit
    );
    if let Some(url) = &options.postgres {
        println!("postgres: {url}");
    }
    println!();

    let db = match &options.postgres {
        Some(url) => match crate::pg::prepare(url).await {
            Ok(db) => Some(db),
            Err(e) => {
                println!("postgres unavailable, database scenarios skipped: {e}");
                None
            }
        },
        None => None,
    };

    let mut figures = Figures::new(plan, machine, db.as_ref().map(|d| d.version.clone()));

    figures.pass_through = step("1. pass-through", pass_through(&plan)).await;
    figures.endpoint = step("2. endpoint", endpoint(&plan)).await;
    if let Some(db) = &db {
        figures.postgres = step("3. postgres / pgbench", postgres(&plan, db)).await;
        figures.round_trips = step("3b. round trips per check", round_trips(&plan, db)).await;
    } else {
        let missing = "no Postgres to measure against".to_string();
        figures.postgres = Err(missing.clone());
        figures.round_trips = Err(missing);
    }
    figures.parallel = step("4. parallel", parallel(&plan)).await;
    figures.flood = step("5. flood", flood(&plan, db.as_ref())).await;
    figures.memory = step("6. memory", memory(&plan, db.as_ref())).await;
    figures.instructions = step(
        "7. instructions (callgrind)",
        instructions(&plan, db.as_ref()),
    )
    .await;
    if let Some(db) = &db {
        db.teardown().await;
    }

    if let Some(dir) = &options.criterion {
        figures.criterion = read_criterion(dir);
    }
    figures.load_average = (load_before, machine::load_average());
    figures.seconds = started.elapsed().as_secs_f64();
    println!();
    for row in report::summary(&figures) {
        let verdict = match row.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        };
        println!(
            "{:<4} {:<62} {:<34} {:<10} {verdict}",
            row.id,
            row.short,
            row.measured.replace('*', ""),
            row.goal
        );
    }
    let markdown = report::markdown(&figures);
    std::fs::write(&options.out, markdown)
        .map_err(|e| format!("writing {}: {e}", options.out.display()))?;
    println!(
        "\nwrote {} ({:.0} s of measuring)",
        options.out.display(),
        figures.seconds
    );
    Ok(())
}

/// Run one scenario, saying how long it took or why it failed.
async fn step<T>(
    name: &str,
    scenario: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    let started = Instant::now();
    let result = scenario.await;
    match &result {
        Ok(_) => println!(
            "{name}: measured in {:.0} s",
            started.elapsed().as_secs_f64()
        ),
        Err(e) => println!("{name}: not measured: {e}"),
    }
    result
}
