//! No surprises for the host service: its own reqwest clients and smoketest's HTTP check
//! make HTTPS requests side by side in one process, and nobody installs a process-wide
//! rustls crypto provider.
//!
//! What used to panic: with the `net` feature, smoketest-checks built reqwest with
//! `rustls-no-provider`. Cargo unifies features, so a service whose own reqwest had no TLS
//! feature of its own (`default-features = false, features = ["json"]`, as this package's
//! dev-dependency) got a reqwest with rustls but without a provider, and its
//! `Client::new()` panicked ("No rustls crypto provider is configured"). smoketest-checks
//! now asks for reqwest's `rustls` feature, which brings reqwest's own default provider;
//! the HTTP check still passes its own ring-based configuration explicitly. Services with
//! reqwest's default features or `rustls` get the same reqwest (features only add up), so
//! this client is the one that covers every combination.
#![cfg(feature = "net")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use smoketest::checks::http::HttpCheck;
use smoketest::{Context, Outcome, SmokeCheck};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA (DER) and an HTTPS server on loopback with a certificate for `127.0.0.1` signed by
/// it, answering `ok` to every request.
async fn https_server() -> (SocketAddr, Vec<u8>) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "coexistence test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_der = ca_params.self_signed(&ca_key).unwrap().der().to_vec();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();

    // The test server names its provider explicitly too: nothing may rely on a default.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return; // the check's TLS layer only shakes hands
                };
                let mut request = vec![0; 4096];
                let _ = tls.read(&mut request).await;
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, ca_der)
}

#[tokio::test]
async fn service_clients_and_the_http_check_both_speak_https_without_a_global_provider() {
    assert!(
        rustls::crypto::CryptoProvider::get_default().is_none(),
        "this test must start without a process-wide provider"
    );
    let (addr, ca) = https_server().await;
    let url = format!("https://{addr}/health");

    // smoketest's HTTP check, with the test CA.
    let check = HttpCheck::new(url.clone()).root_certificate(ca.clone());
    let mut ctx = Context::detached("coexistence", Duration::from_secs(10));
    assert_eq!(check.run(&mut ctx).await.unwrap(), Outcome::Pass);

    // The service's own client, built after smoketest's, trusting the same CA.
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_der(&ca).unwrap())
        .build()
        .expect("the service's reqwest client builds");
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");

    // What most services write, and the check again after it.
    let _plain = reqwest::Client::new();
    assert_eq!(check.run(&mut ctx).await.unwrap(), Outcome::Pass);

    // Nobody installed a process-wide provider: that choice stays the service's.
    assert!(rustls::crypto::CryptoProvider::get_default().is_none());
}
