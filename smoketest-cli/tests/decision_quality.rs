//! Decision quality: against a healthy service that injects transient faults on 10% of
//! requests the gate never says "roll back", and against a genuinely failing service (with
//! the same faults) it always does, within the timeout.
//!
//! Run with `--nocapture` to see the figures.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use smoketest_core::Smoketest;
use support::*;

const TRIALS: usize = 200;
const THREADS: usize = 4;
const TIMEOUT: Duration = Duration::from_secs(5);

/// A server that answers `smoke`, except for about one request in ten, which gets a
/// transient fault (503, 502, 504, 429 or a reset), chosen by a seeded generator so that
/// a failure can be replayed.
fn flaky(smoke: Smoketest, seed: u64) -> (Server, Arc<AtomicUsize>) {
    let state = AtomicU64::new(seed);
    let faults = Arc::new(AtomicUsize::new(0));
    let injected = faults.clone();
    let server = Server::start(move |_| {
        // xorshift64*
        let mut x = state.load(Ordering::SeqCst);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.store(x, Ordering::SeqCst);
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32;
        if !r.is_multiple_of(10) {
            return Action::Smoke(smoke.clone());
        }
        injected.fetch_add(1, Ordering::SeqCst);
        match (r / 10) % 5 {
            0 => status(503),
            1 => status(502),
            2 => status(504),
            3 => Action::Status(429, vec![("retry-after".into(), "0".into())], String::new()),
            _ => Action::Reset,
        }
    });
    (server, faults)
}

struct Trials {
    codes: Vec<i32>,
    elapsed: Vec<Duration>,
}

fn run_trials(url: &str) -> Trials {
    let per_thread = TRIALS / THREADS;
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let url = url.to_string();
            std::thread::spawn(move || {
                (0..per_thread)
                    .map(|_| {
                        let started = Instant::now();
                        // Hundreds of gates a second exceed the endpoint's run rate, which
                        // then serves its latest report, cached; this test is about
                        // transient faults, so it accepts those (freshness: verdicts.rs).
                        let mut args =
                            vec!["check", url.as_str(), "--timeout", "5s", "--max-age", "1h"];
                        args.extend_from_slice(&["--retry-base", "5ms", "--retry-max", "20ms"]);
                        let out = smoketest(&args);
                        (code(&out), started.elapsed())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut trials = Trials {
        codes: Vec::new(),
        elapsed: Vec::new(),
    };
    for handle in handles {
        for (code, elapsed) in handle.join().unwrap() {
            trials.codes.push(code);
            trials.elapsed.push(elapsed);
        }
    }
    trials.elapsed.sort();
    trials
}

fn count(codes: &[i32], code: i32) -> usize {
    codes.iter().filter(|&&c| c == code).count()
}

#[test]
fn a_healthy_service_with_transient_faults_is_never_rolled_back() {
    let (server, faults) = flaky(healthy("r1"), 0x5EED_0001);
    let trials = run_trials(&server.url());
    eprintln!(
        "healthy + 10% transient faults: {TRIALS} trials, exit 0: {}, exit 1 (false roll back): {}, exit 2: {}; \
         {} faults injected in {} requests; median {:?}, max {:?}",
        count(&trials.codes, 0),
        count(&trials.codes, 1),
        count(&trials.codes, 2),
        faults.load(Ordering::SeqCst),
        server.requests(),
        trials.elapsed[TRIALS / 2],
        trials.elapsed[TRIALS - 1],
    );
    assert_eq!(trials.codes.len(), TRIALS);
    assert_eq!(count(&trials.codes, 1), 0, "false roll-back decisions");
    assert_eq!(count(&trials.codes, 0), TRIALS, "every trial passes");
    assert!(
        faults.load(Ordering::SeqCst) >= 5,
        "the faults were injected"
    );
}

#[test]
fn a_failing_service_with_transient_faults_is_always_detected_within_the_timeout() {
    let (server, faults) = flaky(failing("r1"), 0x5EED_0002);
    let trials = run_trials(&server.url());
    eprintln!(
        "failing + 10% transient faults: {TRIALS} trials, exit 1 (detected): {}, exit 0: {}, exit 2: {}; \
         {} faults injected in {} requests; median {:?}, max {:?}",
        count(&trials.codes, 1),
        count(&trials.codes, 0),
        count(&trials.codes, 2),
        faults.load(Ordering::SeqCst),
        server.requests(),
        trials.elapsed[TRIALS / 2],
        trials.elapsed[TRIALS - 1],
    );
    assert_eq!(count(&trials.codes, 1), TRIALS, "every failure detected");
    assert!(
        trials.elapsed[TRIALS - 1] < TIMEOUT,
        "all within the timeout"
    );
    assert!(
        faults.load(Ordering::SeqCst) >= 5,
        "the faults were injected"
    );
}
