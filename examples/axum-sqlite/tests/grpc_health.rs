//! The example service, run as its binary with `SMOKETEST_EXAMPLE_GRPC_ADDR`: a gRPC health
//! client sees the whole server and each group SERVING on the second port.

use std::process::Stdio;
use std::time::Duration;

use smoketest::tonic::ServingStatus;
use smoketest::tonic::pb::HealthCheckRequest;
use smoketest::tonic::pb::health_client::HealthClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn grpc_health_answers_on_the_second_port() {
    let dir = std::env::temp_dir().join(format!("smoketest-example-grpc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_smoketest-example-axum"))
        .env(
            "DATABASE_URL",
            format!("sqlite:{}", dir.join("orders.db").display()),
        )
        .env("SMOKETEST_EXAMPLE_ADDR", "127.0.0.1:0")
        .env("SMOKETEST_EXAMPLE_GRPC_ADDR", "127.0.0.1:0")
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the example binary");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (found, grpc) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut found = Some(found);
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.trim().strip_prefix("gRPC health: ")
                && let Some(found) = found.take()
            {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                let _ = found.send(addr.to_string());
            }
        }
    });
    let addr = tokio::time::timeout(Duration::from_secs(30), grpc)
        .await
        .expect("the example printed its gRPC address in time")
        .expect("the example exited without printing its gRPC address");

    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect to the gRPC health port");
    let mut client = HealthClient::new(channel);
    for service in ["", "live", "ready"] {
        let request = HealthCheckRequest {
            service: service.to_string(),
        };
        let answer = client.check(request).await.unwrap().into_inner();
        assert_eq!(
            answer.status,
            ServingStatus::Serving as i32,
            "service `{service}`"
        );
    }
    let unknown = HealthCheckRequest {
        service: "payments".to_string(),
    };
    let error = client.check(unknown).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::NotFound);
    child.kill().await.expect("stop the example");
    let _ = std::fs::remove_dir_all(&dir);
}
