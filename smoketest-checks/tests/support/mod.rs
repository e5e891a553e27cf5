//! Loopback servers for the network tests: plain and TLS HTTP servers with canned answers,
//! a server that never answers, a listener whose accept queue is full, and certificates
//! generated with rcgen.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::TlsAcceptor;

/// A test CA and how to make server certificates signed by it.
pub struct Ca {
    pub der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "smoketest test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `names`, valid between the two offsets from now (in days).
    pub fn leaf(&self, names: &[&str], from_days: i64, to_days: i64) -> (Vec<u8>, Vec<u8>) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(from_days);
        params.not_after = now + time::Duration::days(to_days);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.der().to_vec(), key.serialize_der())
    }
}

/// A self-signed certificate for `names`.
pub fn self_signed(names: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.der().to_vec(), key.serialize_der())
}

fn acceptor(cert: Vec<u8>, key: Vec<u8>) -> TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from(cert)],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
        )
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

/// What a server does with each request.
#[derive(Clone)]
pub enum Answer {
    /// Status line, extra headers, body.
    Respond(u16, &'static str, String),
    /// Read the request, then say nothing for this long.
    Stall(Duration),
}

pub fn respond(status: u16, body: &str) -> Answer {
    Answer::Respond(status, "", body.to_string())
}

async fn handle<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, answer: Answer) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    match answer {
        Answer::Stall(d) => tokio::time::sleep(d).await,
        Answer::Respond(status, headers, body) => {
            let response = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    }
}

/// A plain HTTP server on loopback answering every request with `answer`.
pub async fn http_server(answer: Answer) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handle(stream, answer.clone()));
        }
    });
    addr
}

/// An HTTPS server on loopback with this certificate, answering with `answer`.
pub async fn https_server(cert: Vec<u8>, key: Vec<u8>, answer: Answer) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = acceptor(cert, key);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let answer = answer.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    handle(tls, answer).await;
                }
            });
        }
    });
    addr
}

/// A loopback port nothing listens on.
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// A listener that never accepts, with its accept queue filled, so that further
/// connection attempts are never answered (Linux drops the SYN of a full queue).
/// Keep the returned values alive for the test.
pub async fn full_listener() -> (SocketAddr, TcpListener, Vec<TcpStream>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => break,
        }
    }
    (addr, listener, fillers)
}

/// A self-signed CA certificate (basicConstraints CA:TRUE) for `names`, as
/// `openssl req -x509` makes by default.
pub fn self_signed_ca(names: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.der().to_vec(), key.serialize_der())
}

/// The URL in `var`, or `None` after printing `skipped: …` — unless
/// `SMOKETEST_REQUIRE_SERVICES=1`, where a missing URL fails the test. (The facade's
/// `tests/common` has the same rule.)
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("SMOKETEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "{var} is not set and SMOKETEST_REQUIRE_SERVICES=1: this test needs the service"
            );
            eprintln!("skipped: {var} is not set");
            None
        }
    }
}

/// A program the test starts (a private broker on a free port), killed when dropped.
pub struct Spawned(pub std::process::Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port nothing listens on at the moment, for a private server to take.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until something accepts on `port` (a server the test started), up to 10 s.
pub async fn wait_for_port(port: u16) {
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on 127.0.0.1:{port} after 10 s");
}

/// The first of `paths` that exists, or `None` after printing `skipped: …` — unless
/// `SMOKETEST_REQUIRE_SERVICES=1`, where a missing program fails the test.
pub fn program(paths: &[&'static str]) -> Option<&'static str> {
    let found = paths
        .iter()
        .copied()
        .find(|p| std::path::Path::new(p).exists());
    if found.is_none() {
        assert!(
            std::env::var("SMOKETEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "{paths:?} not installed and SMOKETEST_REQUIRE_SERVICES=1"
        );
        eprintln!("skipped: none of {paths:?} is installed");
    }
    found
}

/// Nothing a check spawned is still alive on this test's runtime (waits up to 2 s for
/// tasks that are ending).
pub async fn assert_no_tasks_left() {
    let metrics = tokio::runtime::Handle::current().metrics();
    for _ in 0..40 {
        if metrics.num_alive_tasks() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{} task(s) still alive after the check returned",
        metrics.num_alive_tasks()
    );
}

/// A server that accepts connections and never says a word (a hung broker), on a thread of
/// its own so that it is not a task of the test's runtime.
pub fn silent_server() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    addr
}
