//! Serve a [`Smoketest`] from actix-web, in one line.
//!
//! A thin translation: the actix request becomes [`http::request::Parts`] (method, URI with
//! its query, version, headers), [`Smoketest::handle`] decides the answer, and its status,
//! headers and body go back unchanged. Nothing here decides a status code, a header or a
//! body, so actix-web and axum answer alike (the repository's conformance suite checks
//! every row of the HTTP contract against both).
//!
//! - [`scope`] returns a service to pass to [`App::service`](actix_web::App::service); it
//!   answers at the `Smoketest`'s mount path (default `/smoketest`) and below, and lets
//!   every other request reach your routes untouched.
//! - [`configure`] does the same for [`App::configure`](actix_web::App::configure).
//! - [`api`] hands the service's own app to scenario checks (`ctx.api()`), called in
//!   process on a thread of its own.
//!
//! # Where the checks run
//!
//! Every actix worker is a single-threaded runtime. By default the checks of a run execute
//! on a small runtime of their own, shared by the whole process (two threads named
//! `smoketest-checks`, created on the first request): a check that burns CPU, or blocks
//! its thread by mistake, then delays no other request of the worker that received the
//! smoketest request. [`SmoketestScope::runtime`] picks another tokio runtime;
//! [`SmoketestScope::on_worker`] runs the checks on the worker itself, concurrently as
//! tasks but sharing its one thread. Either way, do blocking work inside a check with
//! [`tokio::task::spawn_blocking`]: a check that blocks still holds one of the two shared
//! threads, and with `on_worker()` the worker itself.
//!
//! Measured with one worker (`cargo bench -p smoketest-actix --bench runtime`): while a
//! check spins the CPU or sleeps its thread for 1 s, another route of the worker answers
//! within 1 ms with the default and waits 0.9 s with `on_worker()`; a check that sleeps in
//! `spawn_blocking` delays nothing in either mode. The hop to the shared runtime costs
//! about 0.07 ms per smoketest request.
//!
//! # Example
//!
//! ```no_run
//! use actix_web::{App, HttpServer, web};
//! use smoketest_core::Smoketest;
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let smoke = Smoketest::builder().service("orders-api").build().expect("unique check names");
//!     HttpServer::new(move || {
//!         App::new()
//!             .route("/orders", web::get().to(|| async { "[]" }))
//!             .service(smoketest_actix::scope(smoke.clone()))
//!     })
//!     .bind("127.0.0.1:8080")?
//!     .run()
//!     .await
//! }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::sync::OnceLock;

use actix_web::dev::{AppService, HttpServiceFactory};
use actix_web::http::StatusCode;
use actix_web::http::Version;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, Scope, guard, web};
use bytes::Bytes;
use smoketest_core::Smoketest;
use tokio::runtime::{Handle, Runtime};

/// The smoketest endpoint as an actix-web service: `App::new().service(scope(smoke))`.
///
/// Requests for the mount path and below are answered by [`Smoketest::handle`]; all others
/// (including `/smoketestx`) go on to the app's other services. actix tries services in
/// the order they are registered, so with a mount path of `/` register this one last.
///
/// ```
/// use actix_web::{App, test, web};
/// use smoketest_core::{Smoketest, from_fn, Outcome};
///
/// # #[actix_web::main]
/// # async fn main() {
/// let smoke = Smoketest::builder()
///     .without_discovery()
///     .path("/ops/smoke")
///     .check(from_fn("ok", |_ctx| Box::pin(async { Ok(Outcome::Pass) })))
///     .build()
///     .unwrap();
/// let app = test::init_service(
///     App::new()
///         .route("/orders", web::get().to(|| async { "[]" }))
///         .service(smoketest_actix::scope(smoke)),
/// )
/// .await;
///
/// let request = test::TestRequest::get().uri("/ops/smoke?format=text").to_request();
/// let response = test::call_service(&app, request).await;
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.headers().get("cache-control").unwrap(), "no-store");
/// assert!(test::read_body(response).await.starts_with(b"PASS\n"));
///
/// let request = test::TestRequest::get().uri("/orders").to_request();
/// assert_eq!(test::read_body(test::call_service(&app, request).await).await, "[]");
/// # }
/// ```
pub fn scope(smoke: Smoketest) -> SmoketestScope {
    SmoketestScope {
        smoke,
        runtime: Where::Shared,
    }
}

/// The endpoint for [`App::configure`](actix_web::App::configure) or
/// [`ServiceConfig::configure`](actix_web::web::ServiceConfig::configure):
/// `App::new().configure(configure(smoke))`. Same as [`scope`].
pub fn configure(smoke: Smoketest) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| {
        config.service(scope(smoke));
    }
}

/// The service made by [`scope`]; choose where the checks run, then pass it to
/// [`App::service`](actix_web::App::service).
#[derive(Clone, Debug)]
#[must_use]
pub struct SmoketestScope {
    smoke: Smoketest,
    runtime: Where,
}

#[derive(Clone, Debug)]
enum Where {
    Shared,
    Handle(Handle),
    Worker,
}

impl SmoketestScope {
    /// Run the checks on this tokio runtime instead of the shared one. It should outlive
    /// the server: once it shuts down, checks run on the worker. (tokio refuses to drop a
    /// runtime inside async code such as `#[actix_web::main]`; create it before, or leak it.)
    pub fn runtime(mut self, handle: Handle) -> Self {
        self.runtime = Where::Handle(handle);
        self
    }

    /// Run the checks on the actix worker that received the request: still concurrently (one
    /// task per check), but on the worker's single thread, so a check that computes without
    /// awaiting delays the worker's other requests meanwhile.
    pub fn on_worker(mut self) -> Self {
        self.runtime = Where::Worker;
        self
    }

    fn into_scope(self) -> Scope {
        let SmoketestScope { smoke, runtime } = self;
        // `web::scope("")` is actix's spelling of "everything" for a mount path of `/`.
        let prefix = if smoke.path() == "/" {
            String::new()
        } else {
            smoke.path().to_string()
        };
        let guard_smoke = smoke.clone();
        web::scope(&prefix)
            // actix matches scopes on the percent-decoded path; ask the core, which reads the
            // path as sent, so `/smoke%74est` falls through here as it does in axum.
            .guard(guard::fn_guard(move |ctx| {
                guard_smoke.serves(ctx.head().uri.path())
            }))
            .default_service(web::to(move |request: HttpRequest| {
                let smoke = smoke.clone();
                let runtime = runtime.clone();
                async move { answer(smoke, runtime, &request).await }
            }))
    }
}

impl HttpServiceFactory for SmoketestScope {
    fn register(self, config: &mut AppService) {
        // Groups mounted on their own paths (`/livez`, `/readyz`), outside the mount path.
        let group_paths: Vec<String> = self.smoke.group_paths().map(str::to_string).collect();
        for path in group_paths {
            let (smoke, runtime) = (self.smoke.clone(), self.runtime.clone());
            web::resource(path)
                .default_service(web::to(move |request: HttpRequest| {
                    let (smoke, runtime) = (smoke.clone(), runtime.clone());
                    async move { answer(smoke, runtime, &request).await }
                }))
                .register(config);
        }
        self.into_scope().register(config)
    }
}

async fn answer(smoke: Smoketest, runtime: Where, request: &HttpRequest) -> HttpResponse {
    let parts = parts(request);
    let handle = match runtime {
        Where::Worker => return response(smoke.handle(&parts).await),
        Where::Handle(handle) => handle,
        Where::Shared => shared_runtime().clone(),
    };
    let remote = smoke.clone();
    let fallback = parts.clone();
    let task = handle.spawn(async move { remote.handle(&parts).await });
    match task.await {
        Ok(answer) => response(answer),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // The chosen runtime is shutting down: answer from the worker rather than not at all.
        Err(_) => response(smoke.handle(&fallback).await),
    }
}

/// The process-wide runtime for checks, created on first use and never shut down.
fn shared_runtime() -> &'static Handle {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("smoketest-checks")
                .enable_all()
                .build()
                .expect(
                    "smoketest-actix could not start its runtime for checks (threads exhausted?); \
                     pass one with `.runtime(handle)` or use `.on_worker()`",
                )
        })
        .handle()
}

/// The actix request as the `http` 1 request head the core reads. actix-web 4 speaks `http`
/// 0.2, so each part is carried over by its textual form.
fn parts(request: &HttpRequest) -> http::request::Parts {
    let mut head = http::Request::new(());
    *head.method_mut() = http::Method::from_bytes(request.method().as_str().as_bytes())
        .unwrap_or_else(|_| unreachable_conversion("method"));
    *head.uri_mut() = request
        .uri()
        .to_string()
        .parse()
        .unwrap_or_else(|_| unreachable_conversion("URI"));
    *head.version_mut() = match request.version() {
        Version::HTTP_09 => http::Version::HTTP_09,
        Version::HTTP_10 => http::Version::HTTP_10,
        Version::HTTP_2 => http::Version::HTTP_2,
        Version::HTTP_3 => http::Version::HTTP_3,
        _ => http::Version::HTTP_11,
    };
    let headers = head.headers_mut();
    for (name, value) in request.headers().iter() {
        let name = http::HeaderName::from_bytes(name.as_str().as_bytes())
            .unwrap_or_else(|_| unreachable_conversion("header name"));
        let value = http::HeaderValue::from_bytes(value.as_bytes())
            .unwrap_or_else(|_| unreachable_conversion("header value"));
        headers.append(name, value);
    }
    head.into_parts().0
}

/// The core's response as an actix response: status, every header (repeated ones too) and
/// the body, unchanged.
fn response(answer: http::Response<Bytes>) -> HttpResponse {
    let (parts, body) = answer.into_parts();
    let status = StatusCode::from_u16(parts.status.as_u16())
        .unwrap_or_else(|_| unreachable_conversion("status"));
    let mut builder = HttpResponse::build(status);
    for (name, value) in &parts.headers {
        let name = HeaderName::from_bytes(name.as_str().as_bytes())
            .unwrap_or_else(|_| unreachable_conversion("header name"));
        let value = HeaderValue::from_bytes(value.as_bytes())
            .unwrap_or_else(|_| unreachable_conversion("header value"));
        builder.append_header((name, value));
    }
    builder.body(body)
}

/// The service's own API, for scenario checks, called in process (no socket):
/// `builder.api(smoketest::actix::api(|| App::new().configure(orders::routes)))`.
///
/// actix-web's `App` is `!Send`, so the runner's tasks cannot call it: `factory` builds the
/// app once on a thread of its own (`smoketest-api`, running an actix system until the
/// `Smoketest` is dropped), and requests travel to it over a channel. Give it the same
/// routes, data and middleware as the app `HttpServer` serves. A handler that panics ends
/// only its request: the step fails with kind `error`. Calling the real listener instead
/// (`SmoketestBuilder::api_base_url`, feature `api-base-url`) goes through everything in
/// front of the app too.
///
/// ```
/// use actix_web::{App, HttpResponse, web};
/// use smoketest_core::{Context, Smoketest};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let smoke = Smoketest::builder()
///     .without_discovery()
///     .api(smoketest_actix::api(|| {
///         App::new().route("/orders", web::get().to(|| async { HttpResponse::Ok().json([1, 2]) }))
///     }))
///     .build()
///     .unwrap();
/// let ctx = Context::detached("orders::list", std::time::Duration::from_secs(5)).with_pools_of(&smoke);
/// let orders: Vec<i64> = ctx.api().get("/orders").await.unwrap().json().unwrap();
/// assert_eq!(orders, [1, 2]);
/// # }
/// ```
pub fn api<F, T, B>(factory: F) -> smoketest_core::api::ApiService
where
    F: FnOnce() -> actix_web::App<T> + Send + 'static,
    T: actix_web::dev::ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    B: actix_web::body::MessageBody + 'static,
{
    use actix_web::dev::Service;
    use smoketest_core::CheckError;

    type Answer = Result<http::Response<Bytes>, CheckError>;
    let (requests, mut incoming) = tokio::sync::mpsc::unbounded_channel::<(
        http::Request<Bytes>,
        tokio::sync::oneshot::Sender<Answer>,
    )>();
    std::thread::Builder::new()
        .name("smoketest-api".into())
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let app = std::rc::Rc::new(actix_web::test::init_service(factory()).await);
                // Ends when the last sender (the `Smoketest`) is dropped.
                while let Some((request, reply)) = incoming.recv().await {
                    let app = app.clone();
                    actix_web::rt::spawn(async move {
                        let (parts, body) = request.into_parts();
                        let method =
                            actix_web::http::Method::from_bytes(parts.method.as_str().as_bytes())
                                .unwrap_or_else(|_| unreachable_conversion("method"));
                        let mut test = actix_web::test::TestRequest::default()
                            .method(method)
                            .uri(&parts.uri.to_string());
                        for (name, value) in &parts.headers {
                            let name = HeaderName::from_bytes(name.as_str().as_bytes())
                                .unwrap_or_else(|_| unreachable_conversion("header name"));
                            let value = HeaderValue::from_bytes(value.as_bytes())
                                .unwrap_or_else(|_| unreachable_conversion("header value"));
                            test = test.append_header((name, value));
                        }
                        let response = match app.call(test.set_payload(body).to_request()).await {
                            Ok(response) => response.map_into_boxed_body().into_parts().1,
                            Err(error) => error.error_response(),
                        };
                        let status = response.status().as_u16();
                        let mut answer = http::Response::builder().status(status);
                        for (name, value) in response.headers() {
                            answer = answer.header(name.as_str(), value.as_bytes());
                        }
                        let answer = match actix_web::body::to_bytes(response.into_body()).await {
                            Ok(body) => answer
                                .body(body)
                                .map_err(|e| CheckError::error(e.to_string())),
                            Err(e) => Err(CheckError::error(format!(
                                "reading the response body from the actix app: {e}"
                            ))),
                        };
                        let _ = reply.send(answer);
                    });
                }
            })
        })
        .expect("spawn the thread that serves the API in process");
    let gone = || {
        CheckError::error(
            "the actix app serving the API in process dropped the request (a handler panicked, or its thread ended)",
        )
    };
    smoketest_core::api::ApiService::from_fn(move |request| {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sent = requests.send((request, reply));
        async move {
            sent.map_err(|_| gone())?;
            answer.await.map_err(|_| gone())?
        }
    })
    .described_as("the actix app, in process")
}

/// `http` 0.2 and 1 share their grammar for every part converted here, so a value valid in
/// one is valid in the other.
#[cold]
fn unreachable_conversion(what: &str) -> ! {
    panic!(
        "smoketest-actix: the {what}, valid in `http` 0.2 was refused by `http` 1; please report this bug"
    )
}
