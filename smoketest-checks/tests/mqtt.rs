//! The MQTT check against a real broker (`SMOKETEST_TEST_MQTT_URL`, e.g.
//! `mqtt://127.0.0.1:1883`) and a private `mosquitto` that requires a password.
#![cfg(feature = "mqtt")]

mod support;

use std::time::Duration;

use smoketest_checks::mqtt::MqttCheck;
use smoketest_core::{Context, ErrorKind, Outcome, SmokeCheck};

fn ctx() -> Context {
    Context::detached("mqtt", Duration::from_secs(10))
}

#[tokio::test]
async fn qos1_round_trip_passes_and_leaves_no_task() {
    let Some(url) = support::service_url("SMOKETEST_TEST_MQTT_URL") else {
        return;
    };
    let mut ctx = ctx();
    assert_eq!(
        MqttCheck::new(url).run(&mut ctx).await.unwrap(),
        Outcome::Pass
    );
    for key in ["connect_ms", "handshake_ms", "round_trip_ms"] {
        assert!(ctx.observed().contains_key(key), "{key} not observed");
    }
    support::assert_no_tasks_left().await;
}

#[tokio::test]
async fn closed_port_is_tcp_refused() {
    let addr = support::closed_port();
    let error = MqttCheck::new(format!("mqtt://{addr}"))
        .run(&mut ctx())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::TcpRefused, "{error:?}");
    assert!(
        error.message().starts_with(&format!(
            "MQTT broker at mqtt://{addr}: TCP connection to {addr} was refused"
        )),
        "{error:?}"
    );
}

/// A private mosquitto on a free port that requires user `smoke` with a password.
async fn broker_with_password(dir: &std::path::Path) -> Option<(support::Spawned, u16)> {
    let (Some(mosquitto), Some(passwd)) = (
        support::program(&["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]),
        support::program(&["/usr/bin/mosquitto_passwd"]),
    ) else {
        return None;
    };
    let passwords = dir.join("passwords");
    let status = std::process::Command::new(passwd)
        .args(["-c", "-b"])
        .arg(&passwords)
        .args(["smoke", "right-password"])
        .status()
        .unwrap();
    assert!(status.success());
    let port = support::free_port();
    let config = dir.join("mosquitto.conf");
    std::fs::write(
        &config,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\npersistence false\n",
            passwords.display()
        ),
    )
    .unwrap();
    let child = std::process::Command::new(mosquitto)
        .arg("-c")
        .arg(&config)
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
    let dir = std::env::temp_dir().join(format!("smoketest-mqtt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let Some((_broker, port)) = broker_with_password(&dir).await else {
        return;
    };
    let right = MqttCheck::new(format!("mqtt://smoke:right-password@127.0.0.1:{port}"));
    assert_eq!(right.run(&mut ctx()).await.unwrap(), Outcome::Pass);

    let wrong = MqttCheck::new(format!("mqtt://smoke:wrong-4711@127.0.0.1:{port}"));
    let error = wrong.run(&mut ctx()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Auth, "{error:?}");
    assert!(
        error.message().contains("refused user `smoke`"),
        "{error:?}"
    );
    assert!(!error.message().contains("4711"), "{error:?}");
    assert!(!format!("{wrong:?}").contains("4711"));

    let anonymous = MqttCheck::new(format!("mqtt://127.0.0.1:{port}"));
    let error = anonymous.run(&mut ctx()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Auth, "{error:?}");
    assert!(error.message().contains("an anonymous client"), "{error:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_silent_server_is_a_timeout_within_the_deadline() {
    let addr = support::silent_server();
    let check =
        MqttCheck::new(format!("mqtt://{addr}")).connect_timeout(Duration::from_millis(500));
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
    let Some(url) = support::service_url("SMOKETEST_TEST_MQTT_URL") else {
        return;
    };
    // Dropped at different points of the round trip, as the runner's timeout drops it.
    for cut in [100, 300, 1_000, 3_000, 10_000, 30_000] {
        let check = MqttCheck::new(url.clone());
        let mut ctx = ctx();
        let _ = tokio::time::timeout(Duration::from_micros(cut), check.run(&mut ctx)).await;
        support::assert_no_tasks_left().await;
    }
}
