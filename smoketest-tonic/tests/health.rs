//! A real tonic health client against `HealthService` on a loopback port: the empty name
//! and each group's name, `NOT_FOUND` for an unknown service, the status flipping when a
//! check starts failing (`Check` and `Watch`), tokens passed on, the path's budget applied.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use smoketest_core::{CheckError, Group, Outcome, Smoketest, from_fn};
use smoketest_tonic::pb::HealthCheckRequest;
use smoketest_tonic::pb::health_client::HealthClient;
use smoketest_tonic::{HealthService, ServingStatus};
use tonic::transport::Channel;

/// A registry with `db` (fails while `failing` is set, tagged `db`) and `config` (always
/// passes), the `ready` group over `db`, `live` over `config`, and a group without a path.
fn registry(failing: Arc<AtomicBool>) -> smoketest_core::SmoketestBuilder {
    Smoketest::builder()
        .without_discovery()
        .check(from_fn("db", move |_ctx| {
            let failing = failing.load(Ordering::SeqCst);
            Box::pin(async move {
                if failing {
                    Err(CheckError::assertion("the database is gone"))
                } else {
                    Ok(Outcome::Pass)
                }
            })
        }))
        .check(from_fn("config", |_ctx| {
            Box::pin(async { Ok(Outcome::Pass) })
        }))
        .group(Group::ready().check("db"))
        .group(Group::live().check("config"))
        .group(Group::new("pathless").check("config"))
        .min_interval(Duration::ZERO)
}

async fn serve(service: HealthService) -> HealthClient<Channel> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(incoming),
    );
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
}

fn ask(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.to_string(),
    }
}

async fn status(client: &mut HealthClient<Channel>, service: &str) -> ServingStatus {
    let answer = client.check(ask(service)).await.unwrap().into_inner();
    ServingStatus::try_from(answer.status).unwrap()
}

#[tokio::test]
async fn check_answers_for_the_server_and_each_group_and_flips_on_failure() {
    let failing = Arc::new(AtomicBool::new(false));
    let smoke = registry(failing.clone()).build().unwrap();
    let mut client = serve(HealthService::new(smoke)).await;

    assert_eq!(status(&mut client, "").await, ServingStatus::Serving);
    assert_eq!(status(&mut client, "ready").await, ServingStatus::Serving);
    assert_eq!(status(&mut client, "live").await, ServingStatus::Serving);

    failing.store(true, Ordering::SeqCst);
    assert_eq!(status(&mut client, "").await, ServingStatus::NotServing);
    assert_eq!(
        status(&mut client, "ready").await,
        ServingStatus::NotServing
    );
    // `live` does not contain `db`.
    assert_eq!(status(&mut client, "live").await, ServingStatus::Serving);

    failing.store(false, Ordering::SeqCst);
    assert_eq!(status(&mut client, "ready").await, ServingStatus::Serving);
}

#[tokio::test]
async fn unknown_services_and_groups_without_a_path_are_not_found() {
    let smoke = registry(Arc::default()).build().unwrap();
    let mut client = serve(HealthService::new(smoke)).await;
    for service in ["payments", "pathless"] {
        let error = client.check(ask(service)).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::NotFound, "{service}: {error:?}");
        assert!(error.message().contains("ready, live"), "{error:?}");
    }
}

#[tokio::test]
async fn watch_sends_the_status_then_each_change() {
    let failing = Arc::new(AtomicBool::new(false));
    let smoke = registry(failing.clone()).build().unwrap();
    let service = HealthService::new(smoke).watch_interval(Duration::from_millis(50));
    let mut client = serve(service).await;

    let mut stream = client.watch(ask("ready")).await.unwrap().into_inner();
    let next = |s: Option<smoketest_tonic::pb::HealthCheckResponse>| {
        ServingStatus::try_from(s.expect("the stream ended").status).unwrap()
    };
    let first = tokio::time::timeout(Duration::from_secs(5), stream.message());
    assert_eq!(next(first.await.unwrap().unwrap()), ServingStatus::Serving);

    failing.store(true, Ordering::SeqCst);
    let second = tokio::time::timeout(Duration::from_secs(5), stream.message());
    assert_eq!(
        next(second.await.unwrap().unwrap()),
        ServingStatus::NotServing
    );

    failing.store(false, Ordering::SeqCst);
    let third = tokio::time::timeout(Duration::from_secs(5), stream.message());
    assert_eq!(next(third.await.unwrap().unwrap()), ServingStatus::Serving);

    // An unknown service: SERVICE_UNKNOWN, and the call stays open.
    let mut unknown = client.watch(ask("payments")).await.unwrap().into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), unknown.message());
    assert_eq!(
        next(first.await.unwrap().unwrap()),
        ServingStatus::ServiceUnknown
    );
    let more = tokio::time::timeout(Duration::from_millis(300), unknown.message()).await;
    assert!(more.is_err(), "no second message and no end: {more:?}");
}

#[tokio::test]
async fn tokens_are_passed_on_and_required_where_the_path_requires_them() {
    let smoke = registry(Arc::default())
        .bearer_token("s3cret-token-0123456789abcdef")
        .require_authorization()
        .build()
        .unwrap();
    let mut client = serve(HealthService::new(smoke)).await;

    let error = client.check(ask("")).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::Unauthenticated, "{error:?}");
    // The `ready` preset stays open (kubelet sends no token).
    assert_eq!(status(&mut client, "ready").await, ServingStatus::Serving);

    let mut request = tonic::Request::new(ask(""));
    request.metadata_mut().insert(
        "authorization",
        "Bearer s3cret-token-0123456789abcdef".parse().unwrap(),
    );
    let answer = client.check(request).await.unwrap().into_inner();
    assert_eq!(answer.status, ServingStatus::Serving as i32);
}

#[tokio::test]
async fn checks_run_under_the_paths_budget() {
    let failing = Arc::new(AtomicBool::new(false));
    let smoke = registry(failing.clone())
        .min_interval(Duration::from_secs(3600))
        .burst(1)
        .build()
        .unwrap();
    let mut client = serve(HealthService::new(smoke.clone())).await;
    assert_eq!(status(&mut client, "").await, ServingStatus::Serving);
    let runs = smoke.runs_started();
    failing.store(true, Ordering::SeqCst);
    for _ in 0..20 {
        // The budget is spent: the latest report answers, no new run starts.
        assert_eq!(status(&mut client, "").await, ServingStatus::Serving);
    }
    assert_eq!(smoke.runs_started(), runs);
}
