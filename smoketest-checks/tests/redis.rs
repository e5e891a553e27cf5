//! The Redis check against the machine's Redis (127.0.0.1:6379) and loopback fakes.
#![cfg(feature = "redis")]

mod support;

use std::time::Duration;

use smoketest_checks::redis::RedisCheck;
use smoketest_core::{Context, ErrorKind, Outcome, SmokeCheck};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn ctx() -> Context {
    Context::detached("redis", Duration::from_secs(5))
}

fn redis_url() -> Option<String> {
    match std::env::var("SMOKETEST_TEST_REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var("SMOKETEST_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("SMOKETEST_TEST_REDIS_URL is not set and SMOKETEST_REQUIRE_SERVICES=1")
        }
        Err(_) => {
            // The machine's Redis: probe the port before relying on it.
            if std::net::TcpStream::connect("127.0.0.1:6379").is_ok() {
                Some("redis://127.0.0.1:6379".to_string())
            } else {
                eprintln!("skipped: no SMOKETEST_TEST_REDIS_URL and nothing on 127.0.0.1:6379");
                None
            }
        }
    }
}

#[tokio::test]
async fn real_redis_answers_ping() {
    let Some(url) = redis_url() else { return };
    let mut ctx = ctx();
    assert_eq!(
        RedisCheck::new(url).run(&mut ctx).await.unwrap(),
        Outcome::Pass
    );
    assert!(ctx.observed().contains_key("ping_ms"));
}

#[tokio::test]
async fn closed_port_is_tcp_refused() {
    let addr = support::closed_port();
    let error = RedisCheck::new(format!("redis://{addr}"))
        .run(&mut ctx())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::TcpRefused);
    assert_eq!(
        error.message(),
        format!("Redis at redis://{addr} refused the connection: nothing listens there")
    );
}

#[tokio::test]
async fn unresolvable_host_is_a_dns_failure() {
    let error = RedisCheck::new("redis://smoketest-no-such-host.invalid:6379")
        .run(&mut ctx())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::DnsFailure);
    assert!(
        error
            .message()
            .starts_with("Redis host `smoketest-no-such-host.invalid`"),
        "{}",
        error.message()
    );
}

#[tokio::test]
async fn server_requiring_a_password_is_a_config_failure_without_leaking_it() {
    // A Redis-speaking fake that refuses every command until authenticated.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    // One error per command: commands may arrive pipelined in one read.
                    let commands = buf[..n]
                        .split(|b| *b == b'\n')
                        .filter(|l| l.first() == Some(&b'*'))
                        .count();
                    for _ in 0..commands.max(1) {
                        let _ = stream
                            .write_all(b"-NOAUTH Authentication required.\r\n")
                            .await;
                    }
                }
            });
        }
    });
    let url = format!("redis://:sekrit-password@{addr}");
    let check = RedisCheck::new(&url);
    let error = check.run(&mut ctx()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error:?}");
    assert!(
        error
            .message()
            .contains("rejected the connection's authentication"),
        "{}",
        error.message()
    );
    assert!(
        !format!("{error:?} {check:?}").contains("sekrit"),
        "the password leaked"
    );
}

#[tokio::test]
async fn server_that_never_answers_is_a_timeout_not_a_tcp_failure() {
    let addr = support::http_server(support::Answer::Stall(Duration::from_secs(30))).await;
    let mut ctx = Context::detached("redis", Duration::from_millis(700));
    let error = RedisCheck::new(format!("redis://{addr}"))
        .connect_timeout(Duration::from_millis(300))
        .run(&mut ctx)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error:?}");
    assert_eq!(
        error.message(),
        format!(
            "Redis at redis://{addr} accepted the TCP connection but did not complete the Redis handshake within 300ms"
        )
    );
    assert!(error.suggestion().unwrap().contains("SLOWLOG"));
}
