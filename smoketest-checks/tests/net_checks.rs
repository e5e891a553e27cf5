//! The standalone DNS, TCP and TLS-certificate checks against loopback servers.
#![cfg(feature = "tls")]

mod support;

use std::time::Duration;

use smoketest_checks::dns::DnsCheck;
use smoketest_checks::tcp::TcpCheck;
use smoketest_checks::tls::TlsCheck;
use smoketest_core::{Context, ErrorKind, Outcome, SmokeCheck};
use support::{Ca, respond};

fn ctx() -> Context {
    Context::detached("net", Duration::from_secs(5))
}

#[tokio::test]
async fn dns_check_resolves_localhost_and_fails_a_reserved_name() {
    let mut ctx = ctx();
    assert_eq!(
        DnsCheck::new("localhost").run(&mut ctx).await.unwrap(),
        Outcome::Pass
    );
    let addresses = ctx.observed()["addresses"].as_array().unwrap();
    assert!(
        addresses.iter().any(|a| a == "127.0.0.1" || a == "::1"),
        "{addresses:?}"
    );

    let check = DnsCheck::new("smoketest-no-such-host.invalid");
    assert_eq!(
        SmokeCheck::name(&check),
        "dns::smoketest-no-such-host.invalid"
    );
    let error = check.run(&mut ctx).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::DnsFailure);
    assert!(
        error
            .message()
            .starts_with("DNS resolution failed for `smoketest-no-such-host.invalid`: "),
        "{}",
        error.message()
    );
    assert!(error.suggestion().is_some());
}

#[tokio::test]
async fn tcp_check_tells_refused_from_unanswered() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = listener.local_addr().unwrap();
    let mut ctx = ctx();
    assert_eq!(
        TcpCheck::new(open.to_string()).run(&mut ctx).await.unwrap(),
        Outcome::Pass
    );
    assert_eq!(ctx.observed()["remote"], open.to_string());

    let closed = support::closed_port();
    let error = TcpCheck::new(closed.to_string())
        .run(&mut ctx)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::TcpRefused);
    assert_eq!(
        error.message(),
        format!(
            "TCP connection to {closed} was refused: nothing listens on port {}",
            closed.port()
        )
    );

    let (full, _listener, _fillers) = support::full_listener().await;
    let error = TcpCheck::new(full.to_string())
        .connect_timeout(Duration::from_millis(300))
        .run(&mut ctx)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::TcpTimeout);
    assert_eq!(
        error.message(),
        format!("TCP connection to {full} was not answered within 300ms")
    );
}

#[tokio::test]
async fn tcp_check_rejects_a_target_without_port() {
    let error = TcpCheck::new("db.internal")
        .run(&mut ctx())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
}

#[tokio::test]
async fn certificate_far_from_expiry_passes_with_its_dates_observed() {
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["localhost"], -1, 90);
    let addr = support::https_server(cert, key, respond(200, "")).await;
    let mut ctx = ctx();
    let check =
        TlsCheck::new(format!("localhost:{}", addr.port())).root_certificate(ca.der.clone());
    assert_eq!(check.run(&mut ctx).await.unwrap(), Outcome::Pass);
    let days_left = ctx.observed()["days_left"].as_u64().unwrap();
    assert!((88..=90).contains(&days_left), "{days_left}");
    assert_eq!(ctx.observed()["subject"], "CN=localhost");
}

#[tokio::test]
async fn certificate_expiring_within_the_warning_period_warns() {
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["localhost"], -60, 5);
    let addr = support::https_server(cert, key, respond(200, "")).await;
    let target = format!("localhost:{}", addr.port());
    let outcome = TlsCheck::new(&target)
        .root_certificate(ca.der.clone())
        .run(&mut ctx())
        .await
        .unwrap();
    let Outcome::Warn(message) = outcome else {
        panic!("expected a warning, got {outcome:?}")
    };
    assert!(
        message.starts_with("TLS certificate of `localhost` expires in 4 days, on "),
        "{message}"
    );
    assert!(message.ends_with("renew it before then"), "{message}");

    // With a shorter warning period the same certificate passes.
    let outcome = TlsCheck::new(&target)
        .root_certificate(ca.der.clone())
        .warn_days(3)
        .run(&mut ctx())
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Pass);
}

#[tokio::test]
async fn expired_certificate_fails() {
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["localhost"], -400, -10);
    let addr = support::https_server(cert, key, respond(200, "")).await;
    let error = TlsCheck::new(format!("localhost:{}", addr.port()))
        .root_certificate(ca.der.clone())
        .run(&mut ctx())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::TlsError);
    assert!(
        error.message().contains("expired on"),
        "{}",
        error.message()
    );
    assert!(
        error.message().contains("(10 days ago)"),
        "{}",
        error.message()
    );
}

#[tokio::test]
async fn certificate_from_an_unknown_ca_is_untrusted() {
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["localhost"], -1, 90);
    let addr = support::https_server(cert, key, respond(200, "")).await;
    // The CA is not given to the check, so only the system's roots are trusted.
    let error = TlsCheck::new(format!("localhost:{}", addr.port()))
        .run(&mut ctx())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::TlsError);
    assert_eq!(
        error.message(),
        "TLS certificate of `localhost` is not trusted: its issuer `CN=smoketest test CA` is not a CA this host trusts"
    );
    assert!(
        error
            .suggestion()
            .unwrap()
            .contains("intermediate certificates")
    );
}
