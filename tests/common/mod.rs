//! Helpers shared by the database integration tests: the service-URL/skip rule, a hammer
//! that mixes passing, failing, panicking, timing-out and cancelled runs, and a TCP proxy
//! that can take a database "down" and bring it back, and counts round trips.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use std::time::Instant;

use smoketest::{Selection, Smoketest, Status};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;

/// The URL in `var`, or `None` after printing `skipped: …` — unless
/// `SMOKETEST_REQUIRE_SERVICES=1`, where a missing URL fails the test.
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("SMOKETEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "{var} is not set and SMOKETEST_REQUIRE_SERVICES=1: this test needs the database"
            );
            eprintln!("skipped: {var} is not set");
            None
        }
    }
}

/// Held by the tests that load the machine (the hammers) and by those that measure time,
/// so that a timing is not taken while 32 other runs compete for the two cores.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

/// A name no other test run uses (tables, schemas, markers).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// What the hammered checks are called; each inserts rows before it ends its own way.
pub const PASS: &str = "hammer::pass";
pub const FAIL: &str = "hammer::fail";
pub const PANIC: &str = "hammer::panic";
/// Times out while the database is busy with a query (server-side sleep).
pub const TIMEOUT_IN_QUERY: &str = "hammer::timeout_in_query";
/// Times out while the check sleeps client-side, transaction open.
pub const TIMEOUT_IDLE: &str = "hammer::timeout_idle";
/// Inserts and passes after a short sleep; the hammer drops the run's future before that.
pub const SLOW_PASS: &str = "hammer::slow_pass";

/// How many runs ended which way.
#[derive(Debug, Default)]
pub struct Tally {
    pub passed: usize,
    pub failed: usize,
    pub panicked: usize,
    pub timed_out: usize,
    pub cancelled: usize,
}

/// Run `runs` single-check runs, `concurrency` at once, cycling through the hammer checks,
/// and assert that each ended as its check intends.
pub async fn hammer(smoke: &Smoketest, runs: usize, concurrency: usize) -> Tally {
    quiet_intended_panics();
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut set = JoinSet::new();
    for i in 0..runs {
        let smoke = smoke.clone();
        let permit = permits.clone().acquire_owned().await.unwrap();
        set.spawn(async move {
            let _permit = permit;
            let name = [PASS, FAIL, PANIC, TIMEOUT_IN_QUERY, TIMEOUT_IDLE, SLOW_PASS][i % 6];
            if name == SLOW_PASS {
                // A client hanging up: drop the run's future half-way.
                let cut = Duration::from_millis(5 + (i % 20) as u64);
                let run = tokio::time::timeout(cut, smoke.run(&Selection::one(name))).await;
                assert!(run.is_err(), "the slow run finished before it was dropped");
                return "cancelled";
            }
            let report = smoke.run(&Selection::one(name)).await.unwrap();
            let check = &report.checks[0];
            let kind = check.error.as_ref().map(|e| e.kind.as_str());
            let expected: &[Option<&str>] = match name {
                PASS => &[None],
                FAIL => &[Some("assertion")],
                PANIC => &[Some("panic")],
                // A check with a very short timeout may not even get a connection from a
                // pool the other 31 runs keep busy.
                _ => &[Some("timeout"), Some("db_unavailable")],
            };
            assert!(
                expected.contains(&kind),
                "run {i} of {name} ended unexpectedly: {check:?}"
            );
            match (name, check.status) {
                (PASS, Status::Pass) => "passed",
                (FAIL, Status::Fail) => "failed",
                (PANIC, Status::Fail) => "panicked",
                (_, Status::Fail) => "timed_out",
                other => panic!("unexpected {other:?}"),
            }
        });
    }
    let mut tally = Tally::default();
    while let Some(outcome) = set.join_next().await {
        match outcome.unwrap() {
            "passed" => tally.passed += 1,
            "failed" => tally.failed += 1,
            "panicked" => tally.panicked += 1,
            "timed_out" => tally.timed_out += 1,
            _ => tally.cancelled += 1,
        }
    }
    tally
}

/// Keep the hammer's hundreds of intended panics ("… on purpose") out of the test output.
fn quiet_intended_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let intended = info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|m| m.contains("on purpose"));
            if !intended {
                previous(info);
            }
        }));
    });
}

/// A loopback TCP proxy to a database that the test can take down (connections refused,
/// open ones cut) and bring back on the same port, or stall (bytes held, nothing closed:
/// a server that stops answering).
pub struct Proxy {
    pub addr: SocketAddr,
    target: SocketAddr,
    tasks: Mutex<Option<JoinSet<()>>>,
    stalled: Arc<AtomicBool>,
    turns: Arc<AtomicU64>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Arc<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Arc::new(Proxy {
            addr: listener.local_addr().unwrap(),
            target,
            tasks: Mutex::new(None),
            stalled: Arc::new(AtomicBool::new(false)),
            turns: Arc::new(AtomicU64::new(0)),
        });
        proxy.serve(listener).await;
        proxy
    }

    async fn serve(&self, listener: TcpListener) {
        let target = self.target;
        let stalled = self.stalled.clone();
        let turns = self.turns.clone();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                let stalled = stalled.clone();
                let turns = turns.clone();
                connections.spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(target).await {
                        let (from_client, to_client) = inbound.into_split();
                        let (from_server, to_server) = outbound.into_split();
                        // Whether the client has spoken since the server last answered.
                        let client_turn = Arc::new(AtomicBool::new(false));
                        let request = Turns {
                            count: Some(turns),
                            client_turn: client_turn.clone(),
                        };
                        let answer = Turns {
                            count: None,
                            client_turn,
                        };
                        tokio::join!(
                            pump(from_client, to_server, stalled.clone(), request),
                            pump(from_server, to_client, stalled, answer),
                        );
                    }
                });
            }
        });
        *self.tasks.lock().await = Some(tasks);
    }

    /// Refuse new connections and cut the open ones.
    pub async fn down(&self) {
        if let Some(mut tasks) = self.tasks.lock().await.take() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }

    /// Hold every byte in both directions (open connections stay open) until [`Proxy::resume`].
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    /// Pass bytes again.
    pub fn resume(&self) {
        self.stalled.store(false, Ordering::SeqCst);
    }

    /// Round trips through the proxy so far, on all its connections: each time a client
    /// sends after the server last answered (or first), one more. Bytes a client sends in
    /// several writes before any answer (a pipeline) count once.
    pub fn round_trips(&self) -> u64 {
        self.turns.load(Ordering::SeqCst)
    }

    /// Listen again on the same port.
    pub async fn up(&self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener).await;
    }
}

/// One direction's part in counting round trips: the client's side counts a turn when it
/// speaks first since the last answer, the server's side ends the client's turn.
struct Turns {
    /// `Some` on the client-to-server side.
    count: Option<Arc<AtomicU64>>,
    client_turn: Arc<AtomicBool>,
}

/// Copy `from` to `to` until either closes, holding bytes while `stalled`.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
    turns: Turns,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        match &turns.count {
            Some(count) => {
                if !turns.client_turn.swap(true, Ordering::SeqCst) {
                    count.fetch_add(1, Ordering::SeqCst);
                }
            }
            None => turns.client_turn.store(false, Ordering::SeqCst),
        }
        while stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// What the application saw while smoke checks were cut off around it: every query's
/// connection id and start, and every error.
#[derive(Debug, Default)]
pub struct AppLoad {
    /// (backend id, when the query started)
    pub queries: Vec<(i64, Instant)>,
    pub errors: Vec<String>,
    /// Queries the server interrupted without an error (MariaDB's `SLEEP` returns 1).
    pub interrupted: usize,
}

/// The backend ids a cut-off check ran on, with when it got each.
pub type CheckBackends = Arc<std::sync::Mutex<Vec<(i64, Instant)>>>;

/// Assert that no application query ran on a backend after a smoke check got it, and that
/// none was cancelled.
pub fn assert_no_query_hit(load: &AppLoad, checks: &CheckBackends) {
    let checks = checks.lock().unwrap();
    assert!(!checks.is_empty(), "the check never ran");
    assert!(
        load.queries.len() > 50,
        "too little application load to tell: {}",
        load.queries.len()
    );
    assert!(
        load.errors.is_empty(),
        "application queries failed: {:?}",
        load.errors
    );
    assert_eq!(load.interrupted, 0, "application queries were interrupted");
    for (backend, got) in checks.iter() {
        let reused: Vec<_> = load
            .queries
            .iter()
            .filter(|(b, started)| b == backend && started > got)
            .collect();
        assert!(
            reused.is_empty(),
            "backend {backend}, on which a cancel was started, served {} application queries afterwards",
            reused.len()
        );
    }
}
