//! Serve a [`Smoketest`] from axum or any tower stack, in one line.
//!
//! Two ways to mount, both thin: every status code, header and body comes from
//! [`Smoketest::handle`], so axum and actix-web answer alike. And [`api`], which hands the
//! service's own router to scenario checks (`ctx.api()`), called in process.
//!
//! - [`router`] returns an axum [`Router`] to [`merge`](Router::merge) into yours.
//! - [`SmoketestLayer`] wraps any tower service: requests under the mount path are answered,
//!   everything else passes through untouched.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use smoketest_core::Smoketest;
//!
//! let smoke = Smoketest::builder().build().expect("unique check names");
//!
//! // Either merge the router…
//! let app: Router = Router::new()
//!     .route("/orders", get(|| async { "[]" }))
//!     .merge(smoketest_axum::router(smoke.clone()));
//!
//! // …or wrap the whole app in the layer.
//! let app: Router = Router::new()
//!     .route("/orders", get(|| async { "[]" }))
//!     .layer(smoketest_axum::SmoketestLayer::new(smoke));
//! # let _ = app;
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::any;
use bytes::Bytes;
use futures_util::future::Either;
use smoketest_core::Smoketest;
use tower::{Layer, Service};

/// An axum router serving `smoke` at its mount path (default `/smoketest`) and below.
pub fn router<S>(smoke: Smoketest) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let path = smoke.path().to_string();
    let groups: Vec<String> = smoke.group_paths().map(str::to_string).collect();
    let below = if path == "/" {
        "/{*name}".to_string()
    } else {
        format!("{path}/{{*name}}")
    };
    let handler = move |request: Request| {
        let smoke = smoke.clone();
        async move { answer(&smoke, request).await }
    };
    let mut router = Router::new()
        .route(&path, any(handler.clone()))
        .route(&below, any(handler.clone()));
    // `{*name}` matches no empty rest: route `/smoketest/` too, as the core serves it.
    if path != "/" {
        router = router.route(&format!("{path}/"), any(handler.clone()));
    }
    // Groups mounted on their own paths (`/livez`, `/readyz`), outside the mount path.
    for group_path in &groups {
        router = router.route(group_path, any(handler.clone()));
    }
    router
}

/// The largest response body a scenario reads from the service's own API.
const API_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// The service's own API, for scenario checks: `ctx.api()` calls `router` in process
/// (`tower::ServiceExt::oneshot` on a clone per request), through all its routes, layers
/// and authentication, with no socket. Register it with
/// [`SmoketestBuilder::api`](smoketest_core::SmoketestBuilder::api); give it the router
/// *without* the smoketest endpoint merged in (a scenario has no business calling it).
///
/// ```
/// use axum::{Router, routing::get};
/// use smoketest_core::Smoketest;
///
/// let orders: Router = Router::new().route("/orders", get(|| async { "[]" }));
/// let smoke = Smoketest::builder()
///     .api(smoketest_axum::api(orders.clone()))
///     .build()
///     .unwrap();
/// let app = orders.merge(smoketest_axum::router(smoke));
/// # let _: Router = app;
/// ```
pub fn api(router: Router) -> smoketest_core::api::ApiService {
    smoketest_core::api::ApiService::from_fn(move |request: http::Request<Bytes>| {
        let router = router.clone();
        async move {
            use tower::ServiceExt;
            let response = match router.oneshot(request.map(Body::from)).await {
                Ok(response) => response,
                Err(infallible) => match infallible {},
            };
            let (parts, body) = response.into_parts();
            let body = axum::body::to_bytes(body, API_BODY_LIMIT)
                .await
                .map_err(|e| {
                    smoketest_core::CheckError::error(format!(
                        "reading the response body from the service's router: {e}"
                    ))
                })?;
            Ok(http::Response::from_parts(parts, body))
        }
    })
}

async fn answer(smoke: &Smoketest, request: Request) -> Response {
    let (parts, _body) = request.into_parts();
    smoke.handle(&parts).await.map(Body::from)
}

/// A tower [`Layer`] that answers the smoketest endpoint and passes every other request to
/// the service it wraps.
#[derive(Clone, Debug)]
pub struct SmoketestLayer {
    smoke: Smoketest,
}

impl SmoketestLayer {
    /// A layer serving `smoke` at its mount path.
    pub fn new(smoke: Smoketest) -> Self {
        SmoketestLayer { smoke }
    }
}

impl<S> Layer<S> for SmoketestLayer {
    type Service = SmoketestService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SmoketestService {
            smoke: self.smoke.clone(),
            inner,
        }
    }
}

/// The service made by [`SmoketestLayer`].
#[derive(Clone, Debug)]
pub struct SmoketestService<S> {
    smoke: Smoketest,
    inner: S,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for SmoketestService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<Bytes> + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    /// The endpoint's answer (boxed), or the inner service's own future, unboxed: requests
    /// that pass through cost no allocation of the layer's.
    type Future = Either<
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>,
        S::Future,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        if self.smoke.serves(request.uri().path()) {
            let smoke = self.smoke.clone();
            let (parts, _body) = request.into_parts();
            Either::Left(Box::pin(async move {
                Ok(smoke.handle(&parts).await.map(ResBody::from))
            }))
        } else {
            // `poll_ready` drove this very service to readiness, and its future owns what it
            // needs: call it in place (no clone, no box; the pass-through cost BENCHMARKS.md
            // measures).
            Either::Right(self.inner.call(request))
        }
    }
}
