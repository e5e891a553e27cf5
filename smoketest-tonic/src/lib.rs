//! gRPC health checking (`grpc.health.v1.Health`) for [smoketest](https://docs.rs/smoketest):
//! the service's smoke checks, answered to gRPC health clients, load balancers and
//! Kubernetes `grpc` probes.
//!
//! [`HealthService`] implements the standard health protocol over a [`Smoketest`]:
//!
//! | gRPC service name | answers from |
//! | --- | --- |
//! | `""` (the empty name: the whole server) | the mount path (`/smoketest`): every check |
//! | a group's name (`live`, `ready`, …) | that group's path (`/livez`, `/readyz`) |
//! | anything else, or a group without a path | `NOT_FOUND` (`Check`), `SERVICE_UNKNOWN` (`Watch`) |
//!
//! Unlike [tonic-health](https://docs.rs/tonic-health)'s own `HealthReporter`, where the
//! application sets each status by hand, every answer here comes from the checks
//! themselves, **through the same pipeline as the HTTP endpoint**: each `Check` becomes a
//! synthesized `GET {path}?format=json` handed to [`Smoketest::handle`], so the path's
//! access rule, budget (rate limit, in-flight cap, single-flight, cache) and status mapping
//! apply exactly as they do over HTTP — a flood of gRPC health calls cannot run the checks
//! more often than a flood of HTTP requests could. The status maps as:
//!
//! | HTTP answer | gRPC answer |
//! | --- | --- |
//! | 200 (no check failed; warnings pass) | `SERVING` |
//! | a report with a failure (500, a group's 503) | `NOT_SERVING` |
//! | 401 (the path needs a token) | status `UNAUTHENTICATED`; send `authorization: Bearer …` metadata, it is passed on |
//! | 403 | status `PERMISSION_DENIED` |
//! | 503 without a report (the mount path throttled, no earlier report) | status `UNAVAILABLE` |
//!
//! `Watch` sends the current status at once, then polls it every
//! [`watch_interval`](HealthService::watch_interval) (default 5 s) and sends each change;
//! each poll is an ordinary `Check` under the path's budget, so within `cache_ttl` or the
//! rate limit a watcher sees the latest report rather than a new run. The polling task
//! ends as soon as the client goes away.
//!
//! # Example
//!
//! ```no_run
//! use smoketest_core::{Group, Smoketest};
//!
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! let smoke = Smoketest::builder()
//!     .group(Group::live())
//!     .group(Group::ready().tag("db"))
//!     .build()?;
//! let health = smoketest_tonic::HealthService::new(smoke.clone()).into_server();
//! tonic::transport::Server::builder()
//!     .add_service(health)
//!     .serve("0.0.0.0:50051".parse()?)
//!     .await?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::pin::Pin;
use std::time::Duration;

use http::StatusCode;
use smoketest_core::Smoketest;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

pub use tonic_health::pb;
/// The answer of a health call: `SERVING`, `NOT_SERVING`, or for `Watch`, `SERVICE_UNKNOWN`.
pub use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// `grpc.health.v1.Health` over a [`Smoketest`]. See the [crate documentation](crate).
#[derive(Clone)]
pub struct HealthService {
    smoke: Smoketest,
    watch_interval: Duration,
}

impl std::fmt::Debug for HealthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthService")
            .field("path", &self.smoke.path())
            .field("groups", &self.smoke.group_names().collect::<Vec<_>>())
            .field("watch_interval", &self.watch_interval)
            .finish()
    }
}

/// The health server for `smoke`, ready for `tonic::transport::Server::add_service`:
/// `HealthService::new(smoke).into_server()`.
pub fn health_server(smoke: Smoketest) -> HealthServer<HealthService> {
    HealthService::new(smoke).into_server()
}

impl HealthService {
    /// Answer health requests from `smoke`'s checks; `Watch` polls every 5 s.
    pub fn new(smoke: Smoketest) -> Self {
        HealthService {
            smoke,
            watch_interval: Duration::from_secs(5),
        }
    }

    /// How often a `Watch` stream polls the status (default 5 s, at least 10 ms).
    pub fn watch_interval(mut self, interval: Duration) -> Self {
        self.watch_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// The tonic service to add to a server.
    pub fn into_server(self) -> HealthServer<Self> {
        HealthServer::new(self)
    }

    /// The HTTP path that answers for gRPC service `service`: the mount path for `""`, a
    /// group's path for its name.
    fn path_of(&self, service: &str) -> Option<String> {
        if service.is_empty() {
            return Some(self.smoke.path().to_string());
        }
        self.smoke.group_path(service).map(str::to_string)
    }

    /// The serving status of `service`, with the caller's `authorization` metadata passed
    /// on: what a `Check` call answers.
    pub async fn status(
        &self,
        service: &str,
        authorization: Option<&str>,
    ) -> Result<ServingStatus, Status> {
        let Some(path) = self.path_of(service) else {
            return Err(Status::not_found(format!(
                "no health service `{service}`: the empty name is the whole server, and each group served at a path is a service ({})",
                self.smoke
                    .group_names()
                    .filter(|g| self.smoke.group_path(g).is_some())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let mut request = http::Request::get(format!("{path}?format=json"))
            .header(http::header::ACCEPT, "application/json");
        if let Some(token) = authorization {
            request = request.header(http::header::AUTHORIZATION, token);
        }
        let (parts, ()) = request
            .body(())
            .map_err(|e| Status::internal(format!("could not build the health request: {e}")))?
            .into_parts();
        let response = self.smoke.handle(&parts).await;
        let status = response.status();
        if status == StatusCode::OK {
            return Ok(ServingStatus::Serving);
        }
        let body: serde_json::Value =
            serde_json::from_slice(response.body()).unwrap_or(serde_json::Value::Null);
        if body.get("status").is_some() {
            // A report with a failure: the checks ran (or a recent run is shown) and failed.
            return Ok(ServingStatus::NotServing);
        }
        let message = body
            .pointer("/error/message")
            .and_then(|m| m.as_str())
            .unwrap_or("")
            .to_string();
        Err(match status {
            StatusCode::UNAUTHORIZED => Status::unauthenticated(message),
            StatusCode::FORBIDDEN => Status::permission_denied(message),
            StatusCode::NOT_FOUND => Status::not_found(message),
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                Status::unavailable(message)
            }
            other => Status::internal(format!("the health endpoint answered {other}: {message}")),
        })
    }
}

fn authorization<T>(request: &Request<T>) -> Option<String> {
    request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn answer(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status as i32,
    }
}

/// The stream a `Watch` call returns.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let token = authorization(&request);
        let service = &request.get_ref().service;
        let status = self.status(service, token.as_deref()).await?;
        Ok(Response::new(answer(status)))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let token = authorization(&request);
        let service = request.into_inner().service;
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        let this = self.clone();
        tokio::spawn(async move {
            let mut last: Option<ServingStatus> = None;
            let mut ticks = tokio::time::interval(this.watch_interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    // The client went away: stop polling.
                    () = sender.closed() => return,
                    _ = ticks.tick() => {}
                }
                let current = if this.path_of(&service).is_none() {
                    // Unknown now and forever (groups are fixed when the registry is built);
                    // the protocol says to keep the call open rather than end it.
                    Ok(ServingStatus::ServiceUnknown)
                } else {
                    this.status(&service, token.as_deref()).await
                };
                let item = match current {
                    Ok(status) if last == Some(status) => continue,
                    Ok(status) => {
                        last = Some(status);
                        Ok(answer(status))
                    }
                    // Throttled with nothing to show: keep the last status, try next tick.
                    Err(e) if e.code() == tonic::Code::Unavailable && last.is_some() => continue,
                    Err(e) => {
                        let _ = sender.send(Err(e)).await;
                        return;
                    }
                };
                if sender.send(item).await.is_err() {
                    return;
                }
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(receiver);
        Ok(Response::new(Box::pin(stream)))
    }
}
