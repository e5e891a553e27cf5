//! Probes cannot be starved: a fresh service flooded by hundreds of anonymous connections
//! on the mount path keeps answering `/livez` and `/readyz` with 200, on both adapters —
//! the scenario in which kubelet would otherwise restart a healthy pod.
//!
//! Every address is on loopback; the flood is bounded in time and stops by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use smoketest::{Group, Outcome, Smoketest, from_fn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONNECTIONS: usize = 300;
const FLOOD: Duration = Duration::from_secs(3);

fn service() -> Smoketest {
    Smoketest::builder()
        .service("flooded")
        .without_discovery()
        // A database-like check: slow enough that a flood would queue behind it.
        .check(
            from_fn("db::ping", |_| {
                Box::pin(async {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok(Outcome::Pass)
                })
            })
            .tag("db"),
        )
        .group(Group::live())
        .group(Group::ready().tag("db"))
        .build()
        .expect("the service builds")
}

async fn serve_axum() -> String {
    let app = axum::Router::new().merge(smoketest::axum::router(service()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr.to_string()
}

fn serve_actix() -> String {
    let smoke = service();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            actix_web::HttpServer::new(move || {
                actix_web::App::new().configure(smoketest::actix::configure(smoke.clone()))
            })
            .workers(2)
            .listen(listener)
            .unwrap()
            .run()
            .await
        })
    });
    addr.to_string()
}

/// One HTTP/1.1 GET on a new connection: the status code, or `None` on any failure.
async fn status_of(addr: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// `CONNECTIONS` keep-alive connections asking for the mount path back to back until the
/// deadline. Returns how many answers they got.
async fn flood(addr: String, answered: Arc<AtomicUsize>) {
    let deadline = tokio::time::Instant::now() + FLOOD;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let (addr, answered) = (addr.clone(), answered.clone());
        tasks.spawn(async move {
            let Ok(mut stream) = TcpStream::connect(&addr).await else {
                return;
            };
            let request = format!("GET /smoketest HTTP/1.1\r\nHost: {addr}\r\n\r\n");
            let mut buf = vec![0u8; 64 * 1024];
            while tokio::time::Instant::now() < deadline {
                if stream.write_all(request.as_bytes()).await.is_err() {
                    return;
                }
                // Read one whole response: the head, then Content-Length bytes.
                let mut got = Vec::new();
                let (header_end, length) = loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (end + 4, length);
                    }
                };
                while got.len() < header_end + length {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                answered.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Poll `/livez` and `/readyz` as kubelet does (a new connection, a 2 s timeout) while the
/// flood runs; every answer must be 200.
async fn probes_stay_up_under_a_flood(addr: String, adapter: &str) {
    let answered = Arc::new(AtomicUsize::new(0));
    let flooding = tokio::spawn(flood(addr.clone(), answered.clone()));
    // Let the flood start before the first probe: a fresh pod meets it at once.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut probes = Vec::new();
    while !flooding.is_finished() {
        for path in ["/livez", "/readyz"] {
            let status = tokio::time::timeout(Duration::from_secs(2), status_of(&addr, path))
                .await
                .ok()
                .flatten();
            probes.push((path, status));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    flooding.await.unwrap();
    let answered = answered.load(Ordering::Relaxed);
    println!(
        "{adapter}: {answered} flood answers, {} probe answers",
        probes.len()
    );
    assert!(
        answered >= CONNECTIONS,
        "{adapter}: the flood got only {answered} answers; it did not load the service"
    );
    assert!(probes.len() >= 8, "{adapter}: too few probes: {probes:?}");
    let failed: Vec<_> = probes.iter().filter(|(_, s)| *s != Some(200)).collect();
    assert!(
        failed.is_empty(),
        "{adapter}: probes that were not 200 during the flood: {failed:?} of {}",
        probes.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_the_mount_path_never_fails_a_probe_on_axum() {
    probes_stay_up_under_a_flood(serve_axum().await, "axum").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_the_mount_path_never_fails_a_probe_on_actix() {
    probes_stay_up_under_a_flood(serve_actix(), "actix").await;
}
