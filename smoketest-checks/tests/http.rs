//! The layered HTTP probe against real loopback servers: each failing layer yields its
//! documented kind, diagnosis and suggestion.
#![cfg(feature = "http")]

mod support;

use std::time::Duration;

use smoketest_checks::Layer;
use smoketest_checks::http::{HttpCheck, ProbeOptions, probe};
use smoketest_core::{Context, ErrorKind, Outcome, SmokeCheck};
use support::{Answer, Ca, respond};

fn fast() -> ProbeOptions {
    ProbeOptions::new()
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(2))
}

#[tokio::test]
async fn healthy_http_upstream_passes_with_phase_durations() {
    let addr = support::http_server(respond(200, r#"{"status":"ok"}"#)).await;
    let check = HttpCheck::new(format!("http://localhost:{}/health", addr.port()))
        .json_pointer("/status", "ok")
        .body_contains("ok");
    let mut ctx = Context::detached("http", Duration::from_secs(5));
    assert_eq!(check.run(&mut ctx).await.unwrap(), Outcome::Pass);
    for key in ["dns_ms", "connect_ms", "first_byte_ms", "status", "remote"] {
        assert!(
            ctx.observed().contains_key(key),
            "{key} not observed: {:?}",
            ctx.observed()
        );
    }
    assert!(!ctx.observed().contains_key("tls_ms"));
    assert_eq!(ctx.observed()["status"], 200);
}

#[tokio::test]
async fn unresolvable_name_is_a_dns_failure() {
    let result = probe("http://smoketest-no-such-host.invalid/", &fast()).await;
    let d = result.diagnosis.expect("an .invalid name cannot resolve");
    assert_eq!(d.kind, ErrorKind::DnsFailure);
    assert_eq!(d.layer, Layer::Dns);
    assert!(
        d.message
            .starts_with("DNS resolution failed for `smoketest-no-such-host.invalid`"),
        "{}",
        d.message
    );
    assert!(
        d.suggestion.contains("/etc/resolv.conf") || d.suggestion.contains("host name"),
        "{}",
        d.suggestion
    );
    assert!(result.phases.connect.is_none(), "stopped at the DNS layer");
}

#[tokio::test]
async fn closed_port_is_tcp_refused_not_dns() {
    let addr = support::closed_port();
    let result = probe(&format!("http://localhost:{}/", addr.port()), &fast()).await;
    let d = result.diagnosis.unwrap();
    assert_eq!(d.kind, ErrorKind::TcpRefused);
    assert_eq!(d.layer, Layer::Tcp);
    assert!(
        d.message.contains("was refused: nothing listens on port"),
        "{}",
        d.message
    );
    assert!(d.message.contains("(for `localhost`)"), "{}", d.message);
    assert!(
        d.suggestion
            .contains(&format!("listening on port {}", addr.port())),
        "{}",
        d.suggestion
    );
    assert!(result.phases.dns.is_some(), "DNS passed and was timed");
}

#[tokio::test]
async fn listener_that_never_accepts_is_tcp_timeout() {
    let (addr, _listener, _fillers) = support::full_listener().await;
    let options = ProbeOptions::new().connect_timeout(Duration::from_millis(300));
    let result = probe(&format!("http://{addr}/"), &options).await;
    let d = result.diagnosis.unwrap();
    assert_eq!(d.kind, ErrorKind::TcpTimeout);
    assert!(
        d.message.contains("was not answered within 300ms"),
        "{}",
        d.message
    );
    assert!(d.suggestion.contains("firewall"), "{}", d.suggestion);
}

#[tokio::test]
async fn slow_server_is_a_timeout_after_the_connection_layers_pass() {
    let addr = support::http_server(Answer::Stall(Duration::from_secs(10))).await;
    let options = ProbeOptions::new().timeout(Duration::from_millis(400));
    let result = probe(&format!("http://{addr}/slow"), &options).await;
    let d = result.diagnosis.unwrap();
    assert_eq!(d.kind, ErrorKind::Timeout);
    assert_eq!(d.layer, Layer::Http);
    assert!(
        d.message.contains("got no response within"),
        "{}",
        d.message
    );
    assert!(d.message.contains("DNS, TCP were fine"), "{}", d.message);
    assert!(d.suggestion.contains("slow or stuck"), "{}", d.suggestion);
    assert!(
        result.phases.total < Duration::from_secs(3),
        "gave up well before the server's 10 s"
    );
}

async fn status_of(code: u16) -> smoketest_checks::Diagnosis {
    let addr =
        support::http_server(Answer::Respond(code, "retry-after: 30\r\n", "no".into())).await;
    let result = probe(&format!("http://{addr}/api"), &fast()).await;
    assert_eq!(result.status, Some(code));
    result.diagnosis.unwrap()
}

#[tokio::test]
async fn error_statuses_each_have_their_own_hint() {
    let cases: [(u16, &str, &str); 6] = [
        (
            401,
            "rejected the request's credentials",
            "credentials this service sends",
        ),
        (403, "refused the request", "IP allow-list"),
        (404, "nothing at this path", "URL's path"),
        (429, "rate limited (Retry-After: 30)", "rate limit or quota"),
        (500, "failed with a server error", "status page"),
        (503, "got no healthy answer", "backends are running"),
    ];
    let mut suggestions = Vec::new();
    for (code, meaning, hint) in cases {
        let d = status_of(code).await;
        assert_eq!(d.kind, ErrorKind::HttpStatus, "{code}");
        assert!(
            d.message.contains(&format!("answered {code}")),
            "{}",
            d.message
        );
        assert!(d.message.contains(meaning), "{code}: {}", d.message);
        assert!(d.message.contains("expected a 2xx status"), "{}", d.message);
        assert!(d.suggestion.contains(hint), "{code}: {}", d.suggestion);
        suggestions.push(d.suggestion);
    }
    suggestions.dedup();
    assert_eq!(suggestions.len(), 6, "each status has its own suggestion");
}

#[tokio::test]
async fn expected_status_set_is_honoured() {
    let addr = support::http_server(respond(404, "")).await;
    let url = format!("http://{addr}/gone");
    assert!(probe(&url, &fast().expect_status([404, 410])).await.is_ok());
    let d = probe(&url, &fast().expect_status([200]))
        .await
        .diagnosis
        .unwrap();
    assert_eq!(d.kind, ErrorKind::HttpStatus);
    assert!(d.message.contains("(expected 200)"), "{}", d.message);
}

#[tokio::test]
async fn body_mismatches_say_what_was_found() {
    let addr = support::http_server(respond(200, r#"{"status":"degraded","db":true}"#)).await;
    let url = format!("http://{addr}/health");

    let d = probe(&url, &fast().body_contains("\"ok\""))
        .await
        .diagnosis
        .unwrap();
    assert_eq!(d.kind, ErrorKind::BodyMismatch);
    assert!(
        d.message.contains("does not contain `\"ok\"`"),
        "{}",
        d.message
    );
    assert!(
        d.message.contains("degraded"),
        "shows the body: {}",
        d.message
    );
    assert!(
        d.suggestion.contains("right service and version"),
        "{}",
        d.suggestion
    );

    let d = probe(&url, &fast().json_pointer("/status", "ok"))
        .await
        .diagnosis
        .unwrap();
    assert_eq!(d.kind, ErrorKind::BodyMismatch);
    assert!(
        d.message
            .contains(r#"has "degraded" at `/status`, expected "ok""#),
        "{}",
        d.message
    );

    let d = probe(&url, &fast().json_pointer("/version", "1"))
        .await
        .diagnosis
        .unwrap();
    assert!(d.message.contains("nothing at `/version`"), "{}", d.message);

    assert!(probe(&url, &fast().json_pointer("/db", true)).await.is_ok());
}

#[tokio::test]
async fn non_json_body_is_a_body_mismatch() {
    let addr = support::http_server(respond(200, "<html>login</html>")).await;
    let d = probe(
        &format!("http://{addr}/"),
        &fast().json_pointer("/status", "ok"),
    )
    .await
    .diagnosis
    .unwrap();
    assert_eq!(d.kind, ErrorKind::BodyMismatch);
    assert!(d.message.contains("is not JSON"), "{}", d.message);
    assert!(d.message.contains("<html>login</html>"), "{}", d.message);
}

#[tokio::test]
async fn trusted_https_upstream_passes_with_tls_duration_and_certificate() {
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["localhost"], -1, 90);
    let addr = support::https_server(cert, key, respond(200, "pong")).await;
    let options = fast()
        .root_certificate(ca.der.clone())
        .body_contains("pong");
    let result = probe(&format!("https://localhost:{}/ping", addr.port()), &options).await;
    assert!(result.is_ok(), "{:?}", result.diagnosis);
    assert!(result.phases.tls.is_some());
    assert!(result.phases.first_byte.is_some());
    assert_eq!(result.certificate.unwrap().names, ["localhost"]);
}

#[tokio::test]
async fn expired_certificate_is_a_tls_error_saying_when() {
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["localhost"], -30, -3);
    let addr = support::https_server(cert, key, respond(200, "pong")).await;
    let options = fast().root_certificate(ca.der.clone());
    let d = probe(&format!("https://localhost:{}/", addr.port()), &options)
        .await
        .diagnosis
        .unwrap();
    assert_eq!(d.kind, ErrorKind::TlsError);
    assert_eq!(d.layer, Layer::Tls);
    assert!(
        d.message
            .starts_with("TLS certificate of `localhost` expired on"),
        "{}",
        d.message
    );
    assert!(d.message.contains("(3 days ago)"), "{}", d.message);
    assert!(
        d.suggestion.starts_with("Renew the certificate"),
        "{}",
        d.suggestion
    );
}

#[tokio::test]
async fn self_signed_certificate_is_an_untrusted_issuer() {
    let (cert, key) = support::self_signed(&["localhost"]);
    let addr = support::https_server(cert, key, respond(200, "pong")).await;
    let d = probe(&format!("https://localhost:{}/", addr.port()), &fast())
        .await
        .diagnosis
        .unwrap();
    assert_eq!(d.kind, ErrorKind::TlsError);
    assert!(
        d.message.contains("is not trusted: it is self-signed"),
        "{}",
        d.message
    );
    assert!(d.suggestion.contains("trust store"), "{}", d.suggestion);
}

#[tokio::test]
async fn certificate_for_another_name_is_a_name_mismatch() {
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["payments.example"], -1, 90);
    let addr = support::https_server(cert, key, respond(200, "pong")).await;
    let options = fast().root_certificate(ca.der.clone());
    let d = probe(&format!("https://localhost:{}/", addr.port()), &options)
        .await
        .diagnosis
        .unwrap();
    assert_eq!(d.kind, ErrorKind::TlsError);
    assert!(
        d.message.contains(
            "presented for `localhost` does not cover that name: it is valid for `payments.example`"
        ),
        "{}",
        d.message
    );
    assert!(
        d.suggestion.contains("subject alternative names"),
        "{}",
        d.suggestion
    );
}

#[tokio::test]
async fn plain_http_server_on_an_https_url_is_a_tls_error() {
    let addr = support::http_server(respond(200, "plain")).await;
    let options = fast().connect_timeout(Duration::from_millis(300));
    let d = probe(&format!("https://localhost:{}/", addr.port()), &options)
        .await
        .diagnosis
        .unwrap();
    assert_eq!(d.kind, ErrorKind::TlsError);
    // The HTTP server waits for a request line that the TLS hello never completes.
    assert!(
        d.message.contains("did not answer the TLS hello"),
        "{}",
        d.message
    );
    assert!(d.suggestion.contains("serves TLS"), "{}", d.suggestion);
}

#[tokio::test]
async fn failing_check_reports_kind_and_suggestion_through_the_check_error() {
    let addr = support::http_server(respond(503, "")).await;
    let check = HttpCheck::new(format!("http://{addr}/"))
        .name("upstream::api")
        .tag("upstream");
    assert_eq!(SmokeCheck::name(&check), "upstream::api");
    assert_eq!(SmokeCheck::tags(&check), ["http", "upstream", "external"]);
    let mut ctx = Context::detached("upstream::api", Duration::from_secs(5));
    let error = check.run(&mut ctx).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::HttpStatus);
    assert!(error.suggestion().unwrap().contains("backends"));
    assert_eq!(ctx.observed()["status"], 503);
}

#[tokio::test]
async fn malformed_url_is_a_config_failure() {
    let d = probe("not a url", &fast()).await.diagnosis.unwrap();
    assert_eq!(d.kind, ErrorKind::Config);
}

#[tokio::test]
async fn credentials_in_the_url_never_reach_the_diagnosis() {
    let addr = support::http_server(respond(401, "")).await;
    let url = format!("http://admin:hunter2@{addr}/api?token=s3cr3t&page=1");
    let result = probe(&url, &fast()).await;
    let d = result.diagnosis.clone().unwrap();
    assert_eq!(d.kind, ErrorKind::HttpStatus);
    assert!(
        d.message.contains(&format!(
            "`GET http://{addr}/api?token=***&page=1` answered 401"
        )),
        "{}",
        d.message
    );
    let everything = format!("{result:?}");
    assert!(
        !everything.contains("hunter2") && !everything.contains("s3cr3t"),
        "{everything}"
    );
}

#[tokio::test]
async fn unknown_method_is_a_config_failure() {
    let addr = support::http_server(respond(200, "")).await;
    let d = probe(&format!("http://{addr}/"), &fast().method("NOT A METHOD"))
        .await
        .diagnosis
        .unwrap();
    assert_eq!(d.kind, ErrorKind::Config);
    assert!(
        d.message.contains("is not a valid HTTP method"),
        "{}",
        d.message
    );
    assert!(
        probe(&format!("http://{addr}/"), &fast().method("head"))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn ca_certificate_served_as_a_server_certificate_is_named_as_such() {
    let (cert, key) = support::self_signed_ca(&["localhost"]);
    let addr = support::https_server(cert.clone(), key, respond(200, "")).await;
    // Even trusted as a root, a CA certificate cannot be the server's own.
    let options = fast().root_certificate(cert);
    let d = probe(&format!("https://localhost:{}/", addr.port()), &options)
        .await
        .diagnosis
        .unwrap();
    assert_eq!(d.kind, ErrorKind::TlsError);
    assert!(
        d.message
            .contains("is a CA certificate (basicConstraints CA:TRUE)"),
        "{}",
        d.message
    );
    assert!(d.suggestion.contains("CA:FALSE"), "{}", d.suggestion);
}
