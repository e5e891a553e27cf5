//! HTTPS endpoints: certificates generated in the test, real TLS handshakes, the layered
//! diagnosis of a certificate that is not trusted, and `--ca-cert` for a private CA.

mod support;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use support::*;

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "smoketest-cli test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for 127.0.0.1 valid between the two dates, and its key.
    fn leaf(&self, valid: Option<(i32, i32)>) -> (Vec<u8>, Vec<u8>) {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        if let Some((from, to)) = valid {
            params.not_before = rcgen::date_time_ymd(from, 1, 1);
            params.not_after = rcgen::date_time_ymd(to, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.der().to_vec(), key.serialize_der())
    }

    /// The CA certificate in a PEM file of its own.
    fn file(&self, name: &str) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("smoketest-cli-{name}-{}.pem", std::process::id()));
        std::fs::write(&path, &self.pem).unwrap();
        path
    }
}

fn https(leaf: (Vec<u8>, Vec<u8>)) -> Server {
    let smoke = healthy("r1");
    Server::start_tls(vec![leaf.0], leaf.1, move |_| Action::Smoke(smoke.clone()))
}

#[test]
fn a_private_ca_is_trusted_with_ca_cert_and_diagnosed_without() {
    let ca = Ca::new();
    let server = https(ca.leaf(None));
    let url = server.url();
    let ca_file = ca.file("private-ca");

    let out = smoketest(&["check", &url, "--ca-cert", ca_file.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));

    let mut args = vec![
        "check",
        url.as_str(),
        "--timeout",
        "500ms",
        "--format",
        "json",
    ];
    args.extend_from_slice(FAST);
    let out = smoketest(&args);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    let error = &json(&out)["endpoints"][0]["error"];
    assert_eq!(error["kind"], "tls_error", "{error}");
    assert_eq!(error["layer"], "tls", "{error}");
    assert_eq!(
        json(&out)["endpoints"][0]["attempts"],
        1,
        "a certificate error is not transient"
    );
    assert!(
        error["phases"]["connect_ms"].is_number(),
        "TCP worked, and its time is shown: {error}"
    );
    assert!(error["phases"]["tls_ms"].is_null(), "{error}");
    assert!(error["suggestion"].is_string());

    let mut args = vec!["check", url.as_str(), "--timeout", "500ms"];
    args.extend_from_slice(FAST);
    let out = smoketest(&args);
    let text = stdout(&out);
    assert!(text.contains("tls_error (tls layer)"), "{text}");
    assert!(text.contains("layers that worked: tcp "), "{text}");
    let _ = std::fs::remove_file(ca_file);
}

#[test]
fn an_expired_certificate_is_named_as_such() {
    let ca = Ca::new();
    let server = https(ca.leaf(Some((2020, 2021))));
    let ca_file = ca.file("expired");
    let url = server.url();
    let mut args = vec![
        "check",
        url.as_str(),
        "--ca-cert",
        ca_file.to_str().unwrap(),
        "--timeout",
        "500ms",
        "--format",
        "json",
    ];
    args.extend_from_slice(FAST);
    let out = smoketest(&args);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    let error = &json(&out)["endpoints"][0]["error"];
    assert_eq!(error["kind"], "tls_error", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("expired"),
        "{error}"
    );
    let _ = std::fs::remove_file(ca_file);
}

#[test]
fn a_ca_cert_that_is_not_a_certificate_is_a_usage_error() {
    let path = std::env::temp_dir().join(format!("smoketest-cli-bad-{}.pem", std::process::id()));
    std::fs::write(&path, "not a certificate").unwrap();
    let out = smoketest(&[
        "check",
        "https://127.0.0.1:1/",
        "--ca-cert",
        path.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 64, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("holds no certificate"),
        "{}",
        stderr(&out)
    );
    let out = smoketest(&[
        "check",
        "https://127.0.0.1:1/",
        "--ca-cert",
        "/nonexistent.pem",
    ]);
    assert_eq!(code(&out), 64);
    let _ = std::fs::remove_file(path);
}
