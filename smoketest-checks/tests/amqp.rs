//! The RabbitMQ check against a real broker (`SMOKETEST_TEST_AMQP_URL`, e.g.
//! `amqp://guest:guest@127.0.0.1:5672/%2f`): a round trip that leaves no queue behind, and
//! each way of failing told apart.
#![cfg(feature = "amqp")]

mod support;

use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use smoketest_checks::amqp::AmqpCheck;
use smoketest_core::{Context, ErrorKind, Outcome, SmokeCheck};

fn ctx() -> Context {
    Context::detached("amqp", Duration::from_secs(10))
}

/// The tests that connect run one at a time, so that counting lapin's threads after one of
/// them counts only its own.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

/// Threads of this process whose name starts with `prefix` (Linux; 0 elsewhere).
fn threads_named(prefix: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end().starts_with(prefix))
        .count()
}

/// lapin's I/O thread and the check's private runtime thread are gone (waits up to 2 s).
async fn assert_no_client_threads_left() {
    for _ in 0..40 {
        if threads_named("lapin-io-loop") + threads_named("smoketest-amqp") == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "threads left after the check: {} lapin-io-loop, {} smoketest-amqp",
        threads_named("lapin-io-loop"),
        threads_named("smoketest-amqp")
    );
}

fn amqp_url() -> Option<String> {
    support::service_url("SMOKETEST_TEST_AMQP_URL")
}

/// `url` with its password replaced by `password`.
fn with_password(url: &str, password: &str) -> String {
    let parsed: lapin::uri::AMQPUri = url.parse().unwrap();
    let user = &parsed.authority.userinfo.username;
    let (scheme, rest) = url.split_once("://").unwrap();
    let after_at = rest.rsplit_once('@').map(|(_, a)| a).unwrap_or(rest);
    format!("{scheme}://{user}:{password}@{after_at}")
}

#[tokio::test]
async fn round_trip_passes_and_leaves_no_queue_behind() {
    let Some(url) = amqp_url() else { return };
    let _serial = serial().await;
    let mut ctx = ctx();
    let outcome = AmqpCheck::new(url.clone()).run(&mut ctx).await.unwrap();
    assert_eq!(outcome, Outcome::Pass);
    for key in ["connect_ms", "login_ms", "round_trip_ms"] {
        assert!(ctx.observed().contains_key(key), "{key} not observed");
    }
    support::assert_no_tasks_left().await;
    assert_no_client_threads_left().await;
    let queue = ctx.observed()["queue"].as_str().unwrap().to_string();
    assert!(
        queue.starts_with("amq.gen-"),
        "a server-named queue: {queue}"
    );

    // A passive declare of the check's queue from another connection: NOT_FOUND.
    let connection = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let error = channel
        .queue_declare(queue.as_str().into(), passive, FieldTable::default())
        .await
        .expect_err("the check's queue is still there");
    assert!(
        error.to_string().contains("NOT_FOUND") || error.to_string().contains("NOT-FOUND"),
        "{error}"
    );
    let _ = connection.close(200, "test done".into()).await;
}

#[tokio::test]
async fn closed_port_is_tcp_refused() {
    let addr = support::closed_port();
    let error = AmqpCheck::new(format!("amqp://guest:guest@{addr}/%2f"))
        .run(&mut ctx())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::TcpRefused, "{error:?}");
    assert!(
        error.message().starts_with(&format!(
            "RabbitMQ at amqp://guest:***@{addr}/%2f: TCP connection to {addr} was refused"
        )),
        "{error:?}"
    );
    assert!(!error.message().contains("guest:guest"));
}

#[tokio::test]
async fn wrong_password_is_auth_and_never_shown() {
    let Some(url) = amqp_url() else { return };
    let url = with_password(&url, "not-the-password-4711");
    let _serial = serial().await;
    let error = AmqpCheck::new(url).run(&mut ctx()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Auth, "{error:?}");
    assert!(
        error.message().contains("refused the login of user"),
        "{error:?}"
    );
    assert!(!error.message().contains("4711"), "{error:?}");
    assert!(!format!("{error:?}").contains("4711"));
    assert!(error.suggestion().unwrap().contains("password"));
    assert_no_client_threads_left().await;
}

#[tokio::test]
async fn unknown_virtual_host_is_named() {
    let Some(url) = amqp_url() else { return };
    let (base, _vhost) = url.rsplit_once('/').unwrap();
    let url = format!("{base}/no-such-vhost-smoketest");
    let _serial = serial().await;
    let error = AmqpCheck::new(url).run(&mut ctx()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Broker, "{error:?}");
    assert!(
        error
            .message()
            .contains("has no virtual host `no-such-vhost-smoketest`"),
        "{error:?}"
    );
}

#[tokio::test]
async fn amqps_urls_are_a_config_failure() {
    let error = AmqpCheck::new("amqps://guest:guest@127.0.0.1:5671/%2f")
        .run(&mut ctx())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
}

#[test]
fn debug_hides_the_password() {
    let check = AmqpCheck::new("amqp://guest:hunter2@mq:5672/%2f");
    assert!(!format!("{check:?}").contains("hunter2"));
}

#[tokio::test]
async fn a_silent_server_is_a_timeout_within_the_deadline() {
    let addr = support::silent_server();
    let check = AmqpCheck::new(format!("amqp://guest:guest@{addr}/%2f"))
        .connect_timeout(Duration::from_millis(500));
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
    let Some(url) = amqp_url() else { return };
    let _serial = serial().await;
    // Dropped at different points of the round trip, as the runner's timeout drops it.
    let before = server_named_queues();
    for cut in [100, 300, 1_000, 3_000, 10_000, 30_000] {
        let check = AmqpCheck::new(url.clone());
        let mut ctx = ctx();
        let _ = tokio::time::timeout(Duration::from_micros(cut), check.run(&mut ctx)).await;
        support::assert_no_tasks_left().await;
    }
    assert_no_client_threads_left().await;
    // The broker dropped every queue a cut-off check had declared, with its connection.
    if let Some(before) = before {
        let mut after = server_named_queues();
        for _ in 0..20 {
            if after <= Some(before) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            after = server_named_queues();
        }
        assert!(
            after <= Some(before),
            "{before} server-named queues before, {after:?} after"
        );
    }
}

/// How many server-named (`amq.gen-…`) queues the broker has, per `rabbitmqctl` (`None`
/// where it cannot be run: another machine, no rights).
fn server_named_queues() -> Option<usize> {
    let output = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_queues", "name"])
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!("skipped: rabbitmqctl list_queues failed");
        return None;
    }
    let names = String::from_utf8_lossy(&output.stdout).into_owned();
    Some(names.lines().filter(|n| n.starts_with("amq.gen-")).count())
}
