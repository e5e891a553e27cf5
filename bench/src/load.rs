//! The load generator: N keep-alive HTTP/1.1 connections on loopback, each sending one
//! request after another until a deadline or a request budget is reached.
//!
//! Closed-loop on purpose: each connection waits for its answer before asking again, so
//! the measured throughput is what the server sustains at that concurrency, and a slow
//! server gets fewer requests rather than an unbounded queue.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Barrier;
use tokio::time::{Instant, timeout};

/// How long one request may take before it counts as an error and its connection is
/// replaced. Far above anything a healthy run sees; it only bounds a broken one.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What to send, how hard and for how long.
#[derive(Debug, Clone)]
pub struct Load {
    /// The server.
    pub addr: SocketAddr,
    /// Path and query of every request.
    pub path: String,
    /// Concurrent connections (each with one request in flight at a time).
    pub connections: usize,
    /// Stop starting requests after this long.
    pub duration: Duration,
    /// Stop after this many requests in all, if sooner.
    pub max_requests: Option<u64>,
}

/// What a load run saw.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Requests answered with a 2xx status.
    pub ok: u64,
    /// Requests answered with any other status.
    pub non_2xx: u64,
    /// Requests that got no answer (connection failure or timeout).
    pub errors: u64,
    /// From the first request to the last answer.
    pub elapsed: Duration,
    /// Latency of every answered request, in microseconds.
    pub latencies_us: Vec<u32>,
}

impl Outcome {
    /// Answered requests (any status) per second.
    pub fn throughput(&self) -> f64 {
        (self.ok + self.non_2xx) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `p`-th percentile latency (`p` in 0..=100), in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        percentile(&sorted, p) / 1000.0
    }
}

/// The `p`-th percentile (nearest rank) of sorted values; 0 for none.
pub fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The median of some values; NaN for none.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// Run `load` and report what happened. Every connection is open before the clock starts.
pub async fn run(load: &Load) -> Outcome {
    let budget = Arc::new(AtomicU64::new(load.max_requests.unwrap_or(u64::MAX)));
    let barrier = Arc::new(Barrier::new(load.connections + 1));
    let mut tasks = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        let load = load.clone();
        let budget = budget.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(load.addr).await.ok();
            barrier.wait().await;
            drive(&load, &budget, &mut sender).await
        }));
    }
    barrier.wait().await;
    let start = Instant::now();
    let mut outcome = Outcome::default();
    for task in tasks {
        let part = task.await.expect("a load connection task panicked");
        outcome.ok += part.ok;
        outcome.non_2xx += part.non_2xx;
        outcome.errors += part.errors;
        outcome.latencies_us.extend(part.latencies_us);
    }
    outcome.elapsed = start.elapsed();
    outcome
}

/// One GET on a fresh connection: the status and the body.
pub async fn get(addr: SocketAddr, path: &str) -> Result<(http::StatusCode, Bytes), String> {
    let mut sender = connect(addr).await?;
    let request = http::Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = timeout(REQUEST_TIMEOUT, sender.send_request(request))
        .await
        .map_err(|_| format!("GET {path} timed out"))?
        .map_err(|e| format!("GET {path}: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("GET {path}: reading the body: {e}"))?
        .to_bytes();
    Ok((status, body))
}

type Sender = http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let stream = timeout(Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connecting to {addr} timed out"))?
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {addr} failed: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

async fn drive(load: &Load, budget: &AtomicU64, sender: &mut Option<Sender>) -> Outcome {
    let deadline = Instant::now() + load.duration;
    let mut outcome = Outcome::default();
    let host = load.addr.to_string();
    while Instant::now() < deadline {
        if budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_err()
        {
            break;
        }
        if sender.is_none() {
            *sender = connect(load.addr).await.ok();
            if sender.is_none() {
                outcome.errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        }
        let s = sender.as_mut().expect("connected above");
        let request = http::Request::get(load.path.as_str())
            .header(http::header::HOST, host.as_str())
            .body(Empty::<Bytes>::new())
            .expect("a valid request");
        let sent = Instant::now();
        let answer = timeout(REQUEST_TIMEOUT, async {
            s.ready().await.map_err(|e| e.to_string())?;
            let response = s.send_request(request).await.map_err(|e| e.to_string())?;
            let status = response.status();
            response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(status)
        })
        .await;
        match answer {
            Ok(Ok(status)) => {
                let us = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                outcome.latencies_us.push(us);
                if status.is_success() {
                    outcome.ok += 1;
                } else {
                    outcome.non_2xx += 1;
                }
            }
            _ => {
                outcome.errors += 1;
                *sender = None;
            }
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let values: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), 50.0);
        assert_eq!(percentile(&values, 99.0), 99.0);
        assert_eq!(percentile(&values, 100.0), 100.0);
        assert_eq!(percentile(&values, 0.0), 1.0);
        assert_eq!(percentile(&[], 99.0), 0.0);
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counts_statuses_and_stops_at_the_budget() {
        use axum::Router;
        use axum::routing::get;
        let app = Router::new().route("/ok", get(|| async { "ok" })).route(
            "/missing",
            get(|| async { (http::StatusCode::NOT_FOUND, "no") }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        let ok = run(&Load {
            addr,
            path: "/ok".into(),
            connections: 4,
            duration: Duration::from_secs(10),
            max_requests: Some(200),
        })
        .await;
        assert_eq!((ok.ok, ok.non_2xx, ok.errors), (200, 0, 0));
        assert_eq!(ok.latencies_us.len(), 200);
        assert!(ok.throughput() > 0.0);

        let missing = run(&Load {
            addr,
            path: "/missing".into(),
            connections: 2,
            duration: Duration::from_secs(10),
            max_requests: Some(10),
        })
        .await;
        assert_eq!((missing.ok, missing.non_2xx), (0, 10));
        server.abort();
    }
}
