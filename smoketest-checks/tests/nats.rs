//! The NATS check against a real server (`SMOKETEST_TEST_NATS_URL`, e.g.
//! `nats://127.0.0.1:4222`, JetStream enabled) and a private `nats-server` with a password.
#![cfg(feature = "nats")]

mod support;

use std::time::Duration;

use smoketest_checks::nats::NatsCheck;
use smoketest_core::{Context, ErrorKind, Outcome, SmokeCheck};

fn ctx() -> Context {
    Context::detached("nats", Duration::from_secs(10))
}

fn nats_url() -> Option<String> {
    support::service_url("SMOKETEST_TEST_NATS_URL")
}

#[tokio::test]
async fn request_reply_round_trip_passes_and_leaves_no_task() {
    let Some(url) = nats_url() else { return };
    let mut ctx = ctx();
    assert_eq!(
        NatsCheck::new(url).run(&mut ctx).await.unwrap(),
        Outcome::Pass
    );
    for key in ["connect_ms", "handshake_ms", "round_trip_ms"] {
        assert!(ctx.observed().contains_key(key), "{key} not observed");
    }
    support::assert_no_tasks_left().await;
}

#[tokio::test]
async fn jetstream_stream_must_exist() {
    let Some(url) = nats_url() else { return };
    let client = async_nats::connect(url.as_str()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client.clone());
    let name = format!("SMOKETEST_{}", std::process::id());
    jetstream
        .create_stream(async_nats::jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![format!("smoketest.{}.>", std::process::id())],
            storage: async_nats::jetstream::stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .unwrap();

    let present = NatsCheck::new(url.clone()).stream_exists(name.clone());
    let mut ctx = ctx();
    assert_eq!(present.run(&mut ctx).await.unwrap(), Outcome::Pass);
    assert_eq!(ctx.observed()["streams"], 1);

    let missing = NatsCheck::new(url)
        .stream_exists(name.clone())
        .stream_exists("NO_SUCH_STREAM_SMOKETEST");
    let error = missing.run(&mut self::ctx()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Broker, "{error:?}");
    assert!(
        error
            .message()
            .contains("has no JetStream stream `NO_SUCH_STREAM_SMOKETEST`"),
        "{error:?}"
    );
    jetstream.delete_stream(&name).await.unwrap();
}

#[tokio::test]
async fn closed_port_is_tcp_refused() {
    let addr = support::closed_port();
    let error = NatsCheck::new(format!("nats://{addr}"))
        .run(&mut ctx())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::TcpRefused, "{error:?}");
    assert!(
        error.message().starts_with(&format!(
            "NATS at nats://{addr}: TCP connection to {addr} was refused"
        )),
        "{error:?}"
    );
}

/// A private nats-server on a free port that requires a user and password.
async fn server_with_password() -> Option<(support::Spawned, u16)> {
    let binary = support::program(&["/usr/sbin/nats-server", "/usr/bin/nats-server"])?;
    let port = support::free_port();
    let child = std::process::Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .args(["--user", "smoke", "--pass", "right-password"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let spawned = support::Spawned(child);
    support::wait_for_port(port).await;
    Some((spawned, port))
}

#[tokio::test]
async fn wrong_password_is_auth_and_never_shown() {
    let Some((_server, port)) = server_with_password().await else {
        return;
    };
    let right = NatsCheck::new(format!("nats://smoke:right-password@127.0.0.1:{port}"));
    assert_eq!(right.run(&mut ctx()).await.unwrap(), Outcome::Pass);

    let wrong = NatsCheck::new(format!("nats://smoke:wrong-4711@127.0.0.1:{port}"));
    let error = wrong.run(&mut ctx()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Auth, "{error:?}");
    assert!(
        error.message().contains("refused user `smoke`"),
        "{error:?}"
    );
    assert!(!error.message().contains("4711"), "{error:?}");
    assert!(!format!("{wrong:?}").contains("4711"));
}

#[tokio::test]
async fn a_silent_server_is_a_timeout_within_the_deadline() {
    let addr = support::silent_server();
    let check =
        NatsCheck::new(format!("nats://{addr}")).connect_timeout(Duration::from_millis(500));
    let started = std::time::Instant::now();
    let error = check
        .run(&mut Context::detached("silent", Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error:?}");
    assert!(error.message().contains("within 500ms"), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_check_cut_off_midway_leaves_no_task() {
    let Some(url) = nats_url() else { return };
    // Dropped at different points of the round trip, as the runner's timeout drops it.
    for cut in [100, 300, 1_000, 3_000, 10_000, 30_000] {
        let check = NatsCheck::new(url.clone());
        let mut ctx = ctx();
        let _ = tokio::time::timeout(Duration::from_micros(cut), check.run(&mut ctx)).await;
        support::assert_no_tasks_left().await;
    }
}
