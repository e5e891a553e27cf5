//! A fault-injecting HTTP/1.1 server on a loopback port, serving a real `Smoketest`
//! through the core's HTTP handler, and helpers to run the real `smoketest` binary.
#![allow(dead_code)] // each test file uses its own part of the support module

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smoketest_core::{CheckError, Detail, Outcome, Smoketest, from_fn};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server does with one request.
#[derive(Clone)]
pub enum Action {
    /// Answer with the smoketest endpoint's own response.
    Smoke(Smoketest),
    /// Answer this status, these headers and this body.
    Status(u16, Vec<(String, String)>, String),
    /// Read the request, then reset the connection (RST).
    Reset,
    /// Read the request and never answer.
    Hang,
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub path: String,
    pub headers: BTreeMap<String, String>,
}

type Script = dyn Fn(usize) -> Action + Send + Sync;

/// The server; it stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    count: Arc<AtomicUsize>,
    script: Arc<Mutex<Arc<Script>>>,
    tls: bool,
    _runtime: tokio::runtime::Runtime,
}

impl Server {
    /// A server answering request number `n` (from 0) with `script(n)`.
    pub fn start(script: impl Fn(usize) -> Action + Send + Sync + 'static) -> Server {
        Server::start_at("127.0.0.1:0".parse().unwrap(), script)
    }

    /// Like [`Server::start`], on a given address (a port chosen earlier).
    pub fn start_at(
        addr: SocketAddr,
        script: impl Fn(usize) -> Action + Send + Sync + 'static,
    ) -> Server {
        Server::start_with(addr, None, script)
    }

    /// An HTTPS server with this certificate chain and key (DER).
    pub fn start_tls(
        chain: Vec<Vec<u8>>,
        key: Vec<u8>,
        script: impl Fn(usize) -> Action + Send + Sync + 'static,
    ) -> Server {
        Server::start_tls_at("127.0.0.1:0".parse().unwrap(), chain, key, script)
    }

    /// Like [`Server::start_tls`], on a given address.
    pub fn start_tls_at(
        addr: SocketAddr,
        chain: Vec<Vec<u8>>,
        key: Vec<u8>,
        script: impl Fn(usize) -> Action + Send + Sync + 'static,
    ) -> Server {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                chain.into_iter().map(Into::into).collect(),
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let mut server = Server::start_with(addr, Some(acceptor), script);
        server.tls = true;
        server
    }

    fn start_with(
        addr: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
        script: impl Fn(usize) -> Action + Send + Sync + 'static,
    ) -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(TcpListener::bind(addr)).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let script: Arc<Mutex<Arc<Script>>> = Arc::new(Mutex::new(Arc::new(script)));
        {
            let (seen, count, script) = (seen.clone(), count.clone(), script.clone());
            runtime.spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (seen, count, script) = (seen.clone(), count.clone(), script.clone());
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        match tls {
                            None => {
                                let _ = serve(stream, seen, count, script).await;
                            }
                            Some(acceptor) => {
                                if let Ok(stream) = acceptor.accept(stream).await {
                                    let _ = serve(stream, seen, count, script).await;
                                }
                            }
                        }
                    });
                }
            });
        }
        Server {
            addr,
            seen,
            count,
            script,
            tls: false,
            _runtime: runtime,
        }
    }

    /// A server that always answers with `smoke`.
    pub fn smoke(smoke: Smoketest) -> Server {
        Server::start(move |_| Action::Smoke(smoke.clone()))
    }

    /// Change what the server does from now on (the request count goes on).
    pub fn set_script(&self, script: impl Fn(usize) -> Action + Send + Sync + 'static) {
        *self.script.lock().unwrap() = Arc::new(script);
    }

    /// The endpoint's URL.
    pub fn url(&self) -> String {
        if self.tls {
            format!("https://127.0.0.1:{}/smoketest", self.addr.port())
        } else {
            format!("http://{}/smoketest", self.addr)
        }
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A connection the server can reset.
trait Conn: AsyncRead + AsyncWrite + Unpin + Send {
    fn reset(self);
}

impl Conn for TcpStream {
    fn reset(self) {
        let _ = self.set_zero_linger();
    }
}

impl Conn for tokio_rustls::server::TlsStream<TcpStream> {
    fn reset(self) {
        let (tcp, _) = self.into_inner();
        let _ = tcp.set_zero_linger();
    }
}

async fn serve<S: Conn>(
    mut stream: S,
    seen: Arc<Mutex<Vec<Seen>>>,
    count: Arc<AtomicUsize>,
    script: Arc<Mutex<Arc<Script>>>,
) -> std::io::Result<()> {
    // One request per connection: read the head (a GET has no body).
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let path = request_line.split(' ').nth(1).unwrap_or("/").to_string();
    let mut headers = BTreeMap::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let n = count.fetch_add(1, Ordering::SeqCst);
    seen.lock().unwrap().push(Seen {
        at: Instant::now(),
        path: path.clone(),
        headers: headers.clone(),
    });
    let script = script.lock().unwrap().clone();
    let (status, extra, body) = match script(n) {
        Action::Reset => {
            stream.reset();
            return Ok(());
        }
        Action::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return Ok(());
        }
        Action::Status(status, extra, body) => (status, extra, body.into_bytes()),
        Action::Smoke(smoke) => {
            let mut request = http::Request::get(path.as_str());
            for (name, value) in &headers {
                request = request.header(name.as_str(), value.as_str());
            }
            let (parts, ()) = request.body(()).unwrap().into_parts();
            let response = smoke.handle(&parts).await;
            let extra = response
                .headers()
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_string(),
                        value.to_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            (response.status().as_u16(), extra, response.body().to_vec())
        }
    };
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown");
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    for (name, value) in extra {
        if !name.eq_ignore_ascii_case("content-length") {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    out.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(out.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await
}

/// A service whose checks pass.
pub fn healthy(release: &str) -> Smoketest {
    Smoketest::builder()
        .service("orders-api")
        .version("1.4.2")
        .release_id(release)
        .anonymous_detail(Detail::Full)
        .without_discovery()
        .check(from_fn("orders::db_write", |_ctx| {
            Box::pin(async { Ok(Outcome::Pass) })
        }))
        .check(from_fn("payments::api", |_ctx| {
            Box::pin(async { Ok(Outcome::Pass) })
        }))
        .build()
        .unwrap()
}

/// A service whose `orders::db_write` check fails with an assertion.
pub fn failing(release: &str) -> Smoketest {
    Smoketest::builder()
        .service("orders-api")
        .version("1.4.2")
        .release_id(release)
        .anonymous_detail(Detail::Full)
        .without_discovery()
        .check(from_fn("orders::db_write", |_ctx| {
            Box::pin(async { Err(CheckError::assertion("expected 1 row, found 0")) })
        }))
        .check(from_fn("payments::api", |_ctx| {
            Box::pin(async { Ok(Outcome::Pass) })
        }))
        .build()
        .unwrap()
}

/// `Action::Status` shorthand.
pub fn status(code: u16) -> Action {
    Action::Status(
        code,
        vec![("content-type".into(), "text/html".into())],
        format!("<html><body>{code}</body></html>"),
    )
}

/// Run the real binary with these arguments, without a token in the environment.
pub fn smoketest(args: &[&str]) -> Output {
    smoketest_with_env(args, &[])
}

/// Run the real binary with these arguments and environment variables.
pub fn smoketest_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_smoketest"));
    command
        .args(args)
        .env_remove("SMOKETEST_TOKEN")
        .env_remove("NO_COLOR");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("the smoketest binary runs")
}

/// The exit code (panics when killed by a signal).
pub fn code(output: &Output) -> i32 {
    output.status.code().expect("exited normally")
}

/// Standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// Standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

/// Standard output parsed as the `--format json` object.
pub fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(output)))
}

/// Fast retries for tests.
pub const FAST: &[&str] = &["--retry-base", "10ms", "--retry-max", "50ms"];

/// A loopback address nothing listens on (bound, then released).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The JSON report `smoke` produces, to serve by hand with any status.
pub fn report_json(smoke: &Smoketest) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = runtime
        .block_on(smoke.run(&smoketest_core::Selection::all()))
        .unwrap();
    report.to_json()
}
