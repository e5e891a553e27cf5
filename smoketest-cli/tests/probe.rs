//! `smoketest probe`: layered diagnosis of any URL against real loopback servers —
//! DNS, refused port, TLS (wrong name, expired, self-signed, not TLS at all), HTTP status
//! and the body expectations — and its outputs and exit codes.

mod support;

use std::io::{Read, Write};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use support::*;

fn page(status: u16, content_type: &str, body: &str) -> Server {
    let (content_type, body) = (content_type.to_string(), body.to_string());
    Server::start(move |_| {
        Action::Status(
            status,
            vec![("content-type".into(), content_type.clone())],
            body.clone(),
        )
    })
}

fn base(server: &Server) -> String {
    format!("http://{}/health", server.addr)
}

/// `smoketest probe ARGS… --format json`: the exit code and the first probe.
fn probe_json(args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = vec!["probe", "--format", "json", "--timeout", "3s"];
    all.extend_from_slice(args);
    let out = smoketest(&all);
    let json = json(&out);
    (code(&out), json["probes"][0].clone())
}

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
            .push(rcgen::DnType::CommonName, "smoketest probe test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf(&self, name: &str, valid: Option<(i32, i32)>) -> (Vec<u8>, Vec<u8>) {
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        if let Some((from, to)) = valid {
            params.not_before = rcgen::date_time_ymd(from, 1, 1);
            params.not_after = rcgen::date_time_ymd(to, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.der().to_vec(), key.serialize_der())
    }

    fn file(&self, name: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "smoketest-cli-probe-{name}-{}.pem",
            std::process::id()
        ));
        std::fs::write(&path, &self.pem).unwrap();
        path
    }
}

fn https(leaf: (Vec<u8>, Vec<u8>)) -> Server {
    Server::start_tls(vec![leaf.0], leaf.1, |_| {
        Action::Status(200, Vec::new(), "ok".into())
    })
}

#[test]
fn a_name_under_invalid_is_a_dns_failure() {
    let (code, probe) = probe_json(&["http://no-such-service.invalid/health"]);
    assert_eq!(code, 1);
    assert_eq!(probe["outcome"], "fail");
    assert_eq!(probe["error"]["kind"], "dns_failure", "{probe}");
    assert_eq!(probe["error"]["layer"], "dns");
    assert!(
        probe["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-service.invalid"),
        "{probe}"
    );
    assert!(probe["phases"]["connect_ms"].is_null(), "{probe}");
}

#[test]
fn a_refused_port_is_tcp_refused() {
    let url = format!("http://{}/health", free_addr());
    let (code, probe) = probe_json(&[&url]);
    assert_eq!(code, 1);
    assert_eq!(probe["error"]["kind"], "tcp_refused", "{probe}");
    assert_eq!(probe["error"]["layer"], "tcp");
    assert!(probe["error"]["suggestion"].is_string());
}

#[test]
fn a_certificate_for_another_name_is_a_tls_error_naming_both() {
    let ca = Ca::new();
    let server = https(ca.leaf("payments.example", None));
    let ca_file = ca.file("wrong-name");
    let url = format!("https://127.0.0.1:{}/", server.addr.port());
    let (code, probe) = probe_json(&[&url, "--ca-cert", ca_file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(probe["error"]["kind"], "tls_error", "{probe}");
    assert_eq!(probe["error"]["layer"], "tls");
    let message = probe["error"]["message"].as_str().unwrap();
    assert!(message.contains("does not cover"), "{message}");
    assert!(message.contains("payments.example"), "{message}");
    assert!(
        probe["phases"]["connect_ms"].is_number(),
        "TCP worked: {probe}"
    );
    let _ = std::fs::remove_file(ca_file);
}

#[test]
fn an_expired_certificate_is_a_tls_error_with_its_date() {
    let ca = Ca::new();
    let server = https(ca.leaf("127.0.0.1", Some((2020, 2021))));
    let ca_file = ca.file("expired");
    let url = format!("https://127.0.0.1:{}/", server.addr.port());
    let (code, probe) = probe_json(&[&url, "--ca-cert", ca_file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(probe["error"]["kind"], "tls_error", "{probe}");
    let message = probe["error"]["message"].as_str().unwrap();
    assert!(message.contains("expired on 2021-01-01"), "{message}");
    let _ = std::fs::remove_file(ca_file);
}

#[test]
fn a_self_signed_certificate_is_a_tls_error_saying_so() {
    let params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let server = https((cert.der().to_vec(), key.serialize_der()));
    let url = format!("https://127.0.0.1:{}/", server.addr.port());
    let (code, probe) = probe_json(&[&url]);
    assert_eq!(code, 1);
    assert_eq!(probe["error"]["kind"], "tls_error", "{probe}");
    let message = probe["error"]["message"].as_str().unwrap();
    assert!(message.contains("self-signed"), "{message}");
}

#[test]
fn a_port_that_does_not_speak_tls_is_a_tls_error() {
    // A plain-HTTP server that answers whatever it is sent with a 400, as nginx does.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    let url = format!("https://127.0.0.1:{port}/");
    let (code, probe) = probe_json(&[&url]);
    assert_eq!(code, 1);
    assert_eq!(probe["error"]["kind"], "tls_error", "{probe}");
    assert!(
        probe["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not answer with TLS"),
        "{probe}"
    );
}

#[test]
fn a_trusted_certificate_passes_with_its_expiry_and_every_layer_timed() {
    let ca = Ca::new();
    let server = https(ca.leaf("127.0.0.1", None));
    let ca_file = ca.file("good");
    let url = format!("https://127.0.0.1:{}/", server.addr.port());
    let (code, probe) = probe_json(&[&url, "--ca-cert", ca_file.to_str().unwrap()]);
    assert_eq!(code, 0, "{probe}");
    assert_eq!(probe["outcome"], "pass");
    assert_eq!(probe["http_status"], 200);
    for phase in ["connect_ms", "tls_ms", "first_byte_ms", "total_ms"] {
        assert!(probe["phases"][phase].is_number(), "{phase}: {probe}");
    }
    assert!(
        probe["certificate"]["days_left"].as_i64().unwrap() > 0,
        "{probe}"
    );
    assert!(probe["certificate"]["not_after"].is_string());

    let out = smoketest(&["probe", &url, "--ca-cert", ca_file.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(text.contains("certificate expires"), "{text}");
    assert!(text.contains("tls "), "{text}");
    assert!(text.contains("first byte "), "{text}");
    let _ = std::fs::remove_file(ca_file);
}

#[test]
fn a_503_is_http_status() {
    let server = page(503, "text/html", "<html>maintenance</html>");
    let (code, probe) = probe_json(&[&base(&server)]);
    assert_eq!(code, 1);
    assert_eq!(probe["error"]["kind"], "http_status", "{probe}");
    assert_eq!(probe["http_status"], 503);
}

#[test]
fn expect_status_body_and_json_pointer_mismatches_fail_with_what_was_seen() {
    let server = page(
        200,
        "application/json",
        r#"{"status":"degraded","version":"1.4.2"}"#,
    );
    let url = base(&server);

    let (code, probe) = probe_json(&[&url]);
    assert_eq!(code, 0, "any 2xx passes by default: {probe}");

    let (code, probe) = probe_json(&[&url, "--expect-status", "204,201"]);
    assert_eq!(code, 1);
    assert_eq!(probe["error"]["kind"], "http_status", "{probe}");
    let message = probe["error"]["message"].as_str().unwrap();
    assert!(message.contains("200"), "{message}");

    let (code, probe) = probe_json(&[&url, "--expect-body", "healthy"]);
    assert_eq!(code, 1);
    assert_eq!(probe["error"]["kind"], "body_mismatch", "{probe}");
    assert!(
        probe["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not contain `healthy`"),
        "{probe}"
    );

    let (code, probe) = probe_json(&[&url, "--expect-json-pointer", "/status=ok"]);
    assert_eq!(code, 1);
    assert_eq!(probe["error"]["kind"], "body_mismatch", "{probe}");
    let message = probe["error"]["message"].as_str().unwrap();
    assert!(message.contains("\"degraded\" at `/status`"), "{message}");

    let (code, probe) = probe_json(&[
        &url,
        "--expect-status",
        "200",
        "--expect-body",
        "1.4.2",
        "--expect-json-pointer",
        "/status=degraded",
    ]);
    assert_eq!(code, 0, "{probe}");
}

#[test]
fn many_urls_are_probed_with_a_summary_in_every_format() {
    let ok = page(200, "text/plain", "ok");
    let down = page(503, "text/plain", "down");
    let refused = format!("http://{}/", free_addr());
    let file = std::env::temp_dir().join(format!("smoketest-cli-urls-{}.txt", std::process::id()));
    std::fs::write(
        &file,
        format!("# the fleet\n{}\n\n  # refused\n{refused}\n", base(&down)),
    )
    .unwrap();
    let file_arg = file.to_str().unwrap();

    let out = smoketest(&["probe", &base(&ok), "-f", file_arg]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("PASS  ") || l.starts_with("FAIL  "))
        .collect();
    assert_eq!(lines.len(), 3, "one line per URL, in order: {text}");
    assert!(lines[0].starts_with("PASS  "), "{text}");
    assert!(lines[1].contains("http_status (http layer)"), "{text}");
    assert!(lines[2].contains("tcp_refused (tcp layer)"), "{text}");
    assert!(
        text.contains("3 URL(s) probed, 1 passed, 2 failed (http_status 1, tcp_refused 1)"),
        "{text}"
    );

    let out = smoketest(&["probe", &base(&ok), "-f", file_arg, "--format", "json"]);
    let json = json(&out);
    assert_eq!(json["exit_code"], 1);
    assert_eq!(json["summary"]["total"], 3);
    assert_eq!(json["summary"]["failed"], 2);

    let out = smoketest(&["probe", &base(&ok), "-f", file_arg, "--format", "junit"]);
    let junit = quick_junit::Report::deserialize_from_str(&stdout(&out)).unwrap();
    assert_eq!(junit.tests, 3);
    assert_eq!(junit.failures, 2);

    let out = smoketest(&["probe", &base(&ok)]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    let _ = std::fs::remove_file(file);
}

#[test]
fn probe_usage_errors_exit_64() {
    let bad =
        std::env::temp_dir().join(format!("smoketest-cli-bad-urls-{}.txt", std::process::id()));
    std::fs::write(&bad, "http://ok.example/\nnot a url\n").unwrap();
    for args in [
        &["probe"][..],
        &["probe", "ftp://example.invalid/"][..],
        &["probe", "-f", "/nonexistent/urls.txt"][..],
        &["probe", "-f", bad.to_str().unwrap()][..],
        &["probe", "http://127.0.0.1:1/", "--expect-status", "abc"][..],
        &[
            "probe",
            "http://127.0.0.1:1/",
            "--expect-json-pointer",
            "status",
        ][..],
        &["probe", "http://127.0.0.1:1/", "--format", "yaml"][..],
    ] {
        let out = smoketest(args);
        assert_eq!(code(&out), 64, "{args:?}: {}", stderr(&out));
    }
    let out = smoketest(&["probe", "-f", bad.to_str().unwrap()]);
    assert!(
        stderr(&out).contains(":2:"),
        "names the line: {}",
        stderr(&out)
    );
    let _ = std::fs::remove_file(bad);
}
