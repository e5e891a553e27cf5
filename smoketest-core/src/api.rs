//! The service's own API, for scenario checks: [`Context::api`] returns an [`Api`] client
//! bound to it, in process or over loopback.
//!
//! Unlike an HTTP check that calls an upstream, this client calls *the service itself*,
//! through the same routes, middleware and authentication its users go through, so a
//! scenario proves the API works end to end. Two ways to bind it, on the builder:
//!
//! - **In process** ([`SmoketestBuilder::api`]): the service's router is called directly, no
//!   socket; with axum, `.api(smoketest::axum::api(router.clone()))`; with actix-web, whose
//!   `App` is `!Send`, `.api(smoketest::actix::api(|| App::new()…))` builds the app on a
//!   thread of its own and sends it the requests. The core stays free of any framework: an
//!   [`ApiService`] is a function from `http::Request<Bytes>` to `http::Response<Bytes>`.
//! - **Over a base URL** ([`SmoketestBuilder::api_base_url`], feature `api-base-url`):
//!   requests go to `http://127.0.0.1:{port}` through the real listener, and everything in
//!   front of the app (for any stack).
//!
//! Every request made inside a [`Context::step`] is recorded on that step (method, path,
//! status code, persona). A response whose status is not the one expected
//! ([`ApiRequest::expect_status`]; by default any 2xx) fails with kind `http_status`, naming
//! the request and quoting the start of the body; so an expected denial is one line:
//! `.as_("viewer").expect_status(403)`.
//!
//! # Contract drift
//!
//! A scenario is where a breaking change of the API shows first. Three levels of strictness
//! for a JSON body, each failing with kind `body_mismatch` and the path of the offending
//! field:
//!
//! - [`ApiResponse::json`]: the body must deserialize into `T` (`at "items[0].quantity":
//!   invalid type: string "2", expected i64`). Add `#[serde(deny_unknown_fields)]` to `T`
//!   and a field the API added fails too.
//! - [`ApiResponse::json_strict`]: rejects fields `T` does not know, without changing `T`
//!   (it compares the body with `T` serialized again; a `null` the type omits is allowed).
//! - [`ApiResponse::json_schema`] (feature `json-schema`): validates against a JSON Schema,
//!   such as the one the service publishes in its OpenAPI document.
//!
//! # Example
//!
//! ```
//! use smoketest_core::{api::ApiService, Context, ErrorKind};
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Order { id: i64, item: String }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let api = ApiService::from_fn(|_request| async {
//!     let body = r#"{"id": 1, "item": "tea", "discount": 5}"#;
//!     Ok(http::Response::new(bytes::Bytes::from_static(body.as_bytes())))
//! });
//! let smoke = smoketest_core::Smoketest::builder().without_discovery().api(api).build().unwrap();
//! let ctx = Context::detached("orders::read", std::time::Duration::from_secs(1)).with_pools_of(&smoke);
//! let response = ctx.api().get("/orders/1").expect_status(200).await.unwrap();
//! let error = response.json::<Order>().err().unwrap();
//! assert_eq!(error.kind(), ErrorKind::BodyMismatch);
//! assert!(error.message().contains("unknown field `discount`"), "{}", error.message());
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::scenario::{PersonaState, ScenarioOptions, SharedLog};
use crate::{CheckError, Context, ErrorKind, SmoketestBuilder};

/// The future an [`ApiService`] returns.
pub type ApiFuture = Pin<Box<dyn Future<Output = Result<Response<Bytes>, CheckError>> + Send>>;

/// The service's API as the core sees it: a function from a request to a response, both with
/// their bodies in memory. Made by `smoketest::axum::api(router)`, [`ApiService::base_url`],
/// or [`ApiService::from_fn`] for anything else.
#[derive(Clone)]
pub struct ApiService {
    call: Arc<dyn Fn(Request<Bytes>) -> ApiFuture + Send + Sync>,
    description: Arc<str>,
}

impl ApiService {
    /// An API answered by `call`.
    pub fn from_fn<F, Fut>(call: F) -> Self
    where
        F: Fn(Request<Bytes>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<Bytes>, CheckError>> + Send + 'static,
    {
        ApiService {
            call: Arc::new(move |request| Box::pin(call(request))),
            description: Arc::from("in process"),
        }
    }

    /// Say what this API is in messages (`in process`, `http://127.0.0.1:3000`).
    pub fn described_as(mut self, description: impl Into<String>) -> Self {
        self.description = Arc::from(description.into());
        self
    }

    /// The API behind `base_url` (`http://127.0.0.1:3000`), called over the network:
    /// requests go to `{base_url}{path}`. For stacks that cannot be called in process.
    #[cfg(feature = "api-base-url")]
    pub fn base_url(base_url: impl Into<String>) -> Self {
        let base = base_url.into().trim_end_matches('/').to_string();
        // Loopback to this very process: never through a proxy from the environment.
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("a client without TLS or proxy settings always builds");
        let description = base.clone();
        ApiService::from_fn(move |request: Request<Bytes>| {
            let url = format!("{base}{}", request.uri());
            let client = client.clone();
            let base = base.clone();
            async move {
                let (parts, body) = request.into_parts();
                let response = client
                    .request(parts.method, &url)
                    .headers(parts.headers)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| {
                        CheckError::new(
                            if e.is_connect() {
                                ErrorKind::TcpRefused
                            } else {
                                ErrorKind::Error
                            },
                            format!(
                                "the service's API at {base} did not answer: {}",
                                crate::error::error_chain(&e)
                            ),
                        )
                        .with_suggestion("The base URL given to SmoketestBuilder::api_base_url must reach this very process (its own listener, usually 127.0.0.1 and the port it listens on).")
                    })?;
                let mut builder = Response::builder().status(response.status());
                if let Some(headers) = builder.headers_mut() {
                    *headers = response.headers().clone();
                }
                let body = response.bytes().await.map_err(|e| {
                    CheckError::error(format!(
                        "reading the response body from {base}: {}",
                        crate::error::error_chain(&e)
                    ))
                })?;
                builder
                    .body(body)
                    .map_err(|e| CheckError::error(e.to_string()))
            }
        })
        .described_as(description)
    }
}

impl fmt::Debug for ApiService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiService({})", self.description)
    }
}

impl SmoketestBuilder {
    /// The service's own API, which [`Context::api`] calls: with axum,
    /// `.api(smoketest::axum::api(router.clone()))`. See the [module documentation](self).
    /// With an API registered, [`build`](SmoketestBuilder::build) checks that every persona
    /// a `#[smoketest::check(personas = [...])]` names is registered.
    pub fn api(mut self, api: impl Into<ApiService>) -> Self {
        self.scenarios.api = Some(api.into());
        self
    }

    /// The service's own API, called over the network at `base_url` (its own loopback
    /// listener, `http://127.0.0.1:3000`), for stacks that cannot be called in process
    /// (actix-web). Feature `api-base-url`.
    #[cfg(feature = "api-base-url")]
    pub fn api_base_url(self, base_url: impl Into<String>) -> Self {
        self.api(ApiService::base_url(base_url))
    }
}

/// A client for the service's own API, made by [`Context::api`]. Cheap to clone; clones
/// record on the same check's steps. See the [module documentation](self).
#[derive(Clone)]
pub struct Api {
    scenarios: Option<Arc<ScenarioOptions>>,
    persona: Option<Arc<str>>,
    log: SharedLog,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("persona", &self.persona)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A client for the service's own API (registered with [`SmoketestBuilder::api`] or
    /// [`api_base_url`](SmoketestBuilder::api_base_url)), making requests as this check's
    /// persona, if it has one. Requests fail with kind `config` when no API is registered.
    pub fn api(&self) -> Api {
        Api {
            scenarios: self.scenarios(),
            persona: self.persona_arc(),
            log: self.step_log().clone(),
        }
    }

    /// Register `request` as a teardown: sent after the check, whatever happens to it (see
    /// [`Context::defer`]), reported as the step `teardown: {METHOD} {path}`. Register it in
    /// the step that created the resource, as soon as it exists.
    pub fn defer_request(&self, request: ApiRequest) {
        let label = request.label();
        self.defer_as(label, async move { request.send().await.map(drop) });
    }
}

impl Api {
    /// The same client, making requests as the persona `name` (registered with
    /// [`SmoketestBuilder::persona`]).
    pub fn as_(&self, name: &str) -> Api {
        Api {
            persona: Some(Arc::from(name)),
            ..self.clone()
        }
    }

    /// The same client, making requests without credentials.
    pub fn anonymous(&self) -> Api {
        Api {
            persona: None,
            ..self.clone()
        }
    }

    /// The persona requests run as, if any.
    pub fn persona(&self) -> Option<&str> {
        self.persona.as_deref()
    }

    /// A `GET` of `path` (`/orders/17?full=1`).
    pub fn get(&self, path: impl Into<String>) -> ApiRequest {
        self.request(Method::GET, path)
    }

    /// A `POST` to `path`.
    pub fn post(&self, path: impl Into<String>) -> ApiRequest {
        self.request(Method::POST, path)
    }

    /// A `PUT` to `path`.
    pub fn put(&self, path: impl Into<String>) -> ApiRequest {
        self.request(Method::PUT, path)
    }

    /// A `PATCH` to `path`.
    pub fn patch(&self, path: impl Into<String>) -> ApiRequest {
        self.request(Method::PATCH, path)
    }

    /// A `DELETE` of `path`.
    pub fn delete(&self, path: impl Into<String>) -> ApiRequest {
        self.request(Method::DELETE, path)
    }

    /// A request with any method.
    pub fn request(&self, method: Method, path: impl Into<String>) -> ApiRequest {
        ApiRequest {
            api: self.clone(),
            method,
            path: path.into(),
            headers: Vec::new(),
            body: Bytes::new(),
            expect: Vec::new(),
            error: None,
        }
    }
}

/// One request to the service's API, built with [`Api::get`] and friends, sent by awaiting
/// it (or [`send`](ApiRequest::send)): `api.get("/orders/1").await?.json::<Order>()?`.
#[derive(Clone)]
#[must_use = "a request does nothing until it is sent"]
pub struct ApiRequest {
    api: Api,
    method: Method,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
    /// The status codes that pass; empty: any 2xx.
    expect: Vec<StatusCode>,
    /// A mistake made while building (a body that does not serialize), reported on send.
    error: Option<CheckError>,
}

impl fmt::Debug for ApiRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiRequest({})", self.label())
    }
}

impl ApiRequest {
    /// Make this request as the persona `name`.
    pub fn as_(mut self, name: &str) -> Self {
        self.api = self.api.as_(name);
        self
    }

    /// Make this request without credentials.
    pub fn anonymous(mut self) -> Self {
        self.api = self.api.anonymous();
        self
    }

    /// Add a header.
    pub fn header(mut self, name: HeaderName, value: impl TryInto<HeaderValue>) -> Self {
        match value.try_into() {
            Ok(value) => self.headers.push((name, value)),
            Err(_) => {
                self.error = Some(CheckError::error(format!(
                    "the value of the header `{name}` is not a valid header value"
                )))
            }
        }
        self
    }

    /// Send `body` as JSON (`Content-Type: application/json`).
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => {
                self.body = Bytes::from(bytes);
                self.headers
                    .push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
            }
            Err(e) => {
                self.error = Some(CheckError::error(format!(
                    "the body of {} does not serialize to JSON: {e}",
                    self.label()
                )))
            }
        }
        self
    }

    /// Send `body` as it is.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// The status code the response must have (`201`, or `403` for an expected denial).
    /// Without it, any 2xx passes. Panics on a number that is no status code.
    pub fn expect_status(self, status: u16) -> Self {
        self.expect_status_in([status])
    }

    /// The status codes the response may have: a teardown `DELETE` that accepts `[204,
    /// 404]` (deleted now, or by the scenario already). Panics on a number that is no
    /// status code.
    pub fn expect_status_in(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.expect = statuses
            .into_iter()
            .map(|s| StatusCode::from_u16(s).expect("an HTTP status code (100-999)"))
            .collect();
        self
    }

    /// `METHOD /path`, as reports show it.
    pub fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// `METHOD /path as persona`, for messages.
    fn described(&self) -> String {
        match self.api.persona() {
            Some(persona) => format!("{} as {persona}", self.label()),
            None => self.label(),
        }
    }

    /// Send the request and check its status. Records the exchange on the step running now.
    pub async fn send(self) -> Result<ApiResponse, CheckError> {
        if let Some(e) = self.error.clone() {
            return Err(e);
        }
        let described = self.described();
        let Some(service) = self.api.scenarios.as_ref().and_then(|s| s.api.clone()) else {
            return Err(CheckError::new(
                ErrorKind::Config,
                format!("{described}: no API is registered to call"),
            )
            .with_suggestion(
                "Register the service's API with SmoketestBuilder::api (axum: smoketest::axum::api(router.clone())) or SmoketestBuilder::api_base_url.",
            ));
        };
        let persona = match self.api.persona() {
            None => None,
            Some(name) => Some((name, self.persona_state(name)?)),
        };
        let mut refreshed = false;
        loop {
            let authorization = match persona {
                Some((name, state)) => match state.authorization(name, refreshed).await {
                    Ok(value) => value,
                    Err(e) => {
                        self.record(None);
                        return Err(e.context(&described));
                    }
                },
                None => None,
            };
            let mut request = Request::builder()
                .method(self.method.clone())
                .uri(self.path.as_str());
            for (name, value) in &self.headers {
                request = request.header(name, value);
            }
            if let Some(value) = authorization {
                request = request.header(AUTHORIZATION, value);
            }
            let request = request
                .body(self.body.clone())
                .map_err(|e| CheckError::error(format!("{described}: not a valid request: {e}")))?;
            let response = match (service.call)(request).await {
                Ok(response) => response,
                Err(e) => {
                    self.record(None);
                    return Err(e.context(&described));
                }
            };
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED
                && !self.expect.contains(&StatusCode::UNAUTHORIZED)
                && !refreshed
                && persona.is_some_and(|(_, state)| state.refreshable())
            {
                // The cached token may have expired: mint a new one, once.
                refreshed = true;
                continue;
            }
            self.record(Some(status.as_u16()));
            let expected = if self.expect.is_empty() {
                status.is_success()
            } else {
                self.expect.contains(&status)
            };
            let (parts, body) = response.into_parts();
            if !expected {
                let wanted = match self.expect.as_slice() {
                    [] => "a 2xx status".to_string(),
                    [one] => format!("status {}", one.as_u16()),
                    many => {
                        let codes: Vec<String> =
                            many.iter().map(|s| s.as_u16().to_string()).collect();
                        format!("status {}", codes.join(" or "))
                    }
                };
                let snippet = snippet(&body);
                return Err(CheckError::new(
                    ErrorKind::HttpStatus,
                    format!(
                        "{described}: expected {wanted}, got {}{}",
                        status.as_u16(),
                        if snippet.is_empty() {
                            String::new()
                        } else {
                            format!(": {snippet}")
                        }
                    ),
                )
                .with_suggestion(
                    "The service's own API answered unexpectedly: see the service's log for this request.",
                ));
            }
            return Ok(ApiResponse {
                label: described,
                status,
                headers: parts.headers,
                body,
            });
        }
    }

    fn persona_state(&self, name: &str) -> Result<&PersonaState, CheckError> {
        let personas = &self
            .api
            .scenarios
            .as_ref()
            .expect("an API is registered")
            .personas;
        personas.get(name).map(|s| &**s).ok_or_else(|| {
            let known: Vec<&str> = personas.keys().map(String::as_str).collect();
            CheckError::new(
                ErrorKind::Config,
                format!(
                    "{}: no persona named `{name}` is registered ({})",
                    self.label(),
                    if known.is_empty() {
                        "none is".to_string()
                    } else {
                        format!("registered: {}", known.join(", "))
                    }
                ),
            )
            .with_suggestion("Register it with SmoketestBuilder::persona.")
        })
    }

    fn record(&self, status: Option<u16>) {
        crate::scenario::lock(&self.api.log).exchange(
            self.method.as_str(),
            &self.path,
            status,
            self.api.persona(),
        );
    }
}

/// The start of a body, on one line, for a message.
fn snippet(body: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(body);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

impl std::future::IntoFuture for ApiRequest {
    type Output = Result<ApiResponse, CheckError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    /// `request.await` is `request.send().await`.
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// A response of the service's API whose status was the expected one.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    label: String,
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl ApiResponse {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &http::HeaderMap {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The JSON body as `T`. A body that does not match fails with kind `body_mismatch` and
    /// the path of the field (`at "items[0].quantity": invalid type: …`). With
    /// `#[serde(deny_unknown_fields)]` on `T`, a field `T` does not know fails too.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, CheckError> {
        let mut deserializer = serde_json::Deserializer::from_slice(&self.body);
        serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let at = if path == "." || path.is_empty() {
                String::new()
            } else {
                format!(" at \"{path}\"")
            };
            self.mismatch(format!(
                "the body does not match `{}`{at}: {inner}",
                short_type_name::<T>()
            ))
        })
    }

    /// The JSON body as `T`, rejecting any field `T` does not know — a field the API added or
    /// renamed — without `#[serde(deny_unknown_fields)]` on `T`. The body is compared with `T`
    /// serialized again, so `T` must serialize with the names it deserializes (a plain derive
    /// does); a field that is `null` in the body and absent from `T` is allowed.
    pub fn json_strict<T: DeserializeOwned + Serialize>(&self) -> Result<T, CheckError> {
        let value: T = self.json()?;
        let body: serde_json::Value = serde_json::from_slice(&self.body)
            .map_err(|e| self.mismatch(format!("the body is not JSON: {e}")))?;
        let known = serde_json::to_value(&value).map_err(|e| {
            CheckError::error(format!(
                "{}: `{}` does not serialize again: {e}",
                self.label,
                short_type_name::<T>()
            ))
        })?;
        let mut unknown = Vec::new();
        unknown_fields(&body, &known, String::new(), &mut unknown);
        if unknown.is_empty() {
            return Ok(value);
        }
        let fields: Vec<String> = unknown.iter().map(|p| format!("`{p}`")).collect();
        Err(self.mismatch(format!(
            "unknown field{} {} in the body: `{}` does not know {} (the API's contract changed?)",
            if fields.len() == 1 { "" } else { "s" },
            fields.join(", "),
            short_type_name::<T>(),
            if fields.len() == 1 { "it" } else { "them" },
        )))
    }

    /// The JSON body, validated against the JSON Schema `schema` (draft detected from
    /// `$schema`, 2020-12 by default). Every violation is listed with the path of the
    /// offending value, kind `body_mismatch`. Feature `json-schema`.
    #[cfg(feature = "json-schema")]
    pub fn json_schema(&self, schema: &serde_json::Value) -> Result<serde_json::Value, CheckError> {
        let validator = jsonschema::validator_for(schema).map_err(|e| {
            CheckError::new(
                ErrorKind::Config,
                format!("{}: the JSON Schema itself is invalid: {e}", self.label),
            )
        })?;
        let body: serde_json::Value = serde_json::from_slice(&self.body)
            .map_err(|e| self.mismatch(format!("the body is not JSON: {e}")))?;
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| {
                let path = e.instance_path().to_string();
                if path.is_empty() {
                    format!("at the top level: {e}")
                } else {
                    format!("at \"{path}\": {e}")
                }
            })
            .collect();
        if errors.is_empty() {
            Ok(body)
        } else {
            Err(self.mismatch(format!(
                "the body does not match the schema: {}",
                errors.join("; ")
            )))
        }
    }

    fn mismatch(&self, message: String) -> CheckError {
        CheckError::new(ErrorKind::BodyMismatch, format!("{}: {message}", self.label))
            .with_suggestion(
                "The API's response no longer matches what the scenario expects: a breaking change of the API's contract, or a scenario to update with it.",
            )
    }
}

/// Paths of the fields in `body` that `known` (the typed value serialized again) lacks.
fn unknown_fields(
    body: &serde_json::Value,
    known: &serde_json::Value,
    at: String,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    match (body, known) {
        (Value::Object(body), Value::Object(known)) => {
            for (key, value) in body {
                let path = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                match known.get(key) {
                    Some(known) => unknown_fields(value, known, path, out),
                    None if value.is_null() => {}
                    None => out.push(path),
                }
            }
        }
        (Value::Array(body), Value::Array(known)) => {
            for (i, (value, known)) in body.iter().zip(known).enumerate() {
                unknown_fields(value, known, format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// `Order` rather than `my_service::orders::Order` (generic types keep their full name).
fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    if full.contains('<') {
        return full;
    }
    full.rsplit("::").next().unwrap_or(full)
}
