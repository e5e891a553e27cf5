//! The HTTP contract of DESIGN.md §3, implemented once over [`http`] types so that every
//! adapter answers exactly alike.
//!
//! An adapter hands [`Smoketest::handle`] the request's [`Parts`] and sends back the
//! [`Response`] it gets: the core decides every status code, header and body. Requests
//! outside the mount path are not the endpoint's ([`Smoketest::serves`] tells adapters
//! which requests to pass on).
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /smoketest` | run every check: 200 when none failed, else the failure status (500) |
//! | `GET /smoketest/{name}` | run one check; 404 if there is none of that name |
//! | `?tag=a&tag=b`, `?check=a`, `?exclude=a` | narrow the selection; an unknown check name is 404 |
//! | `?format=json\|text\|html\|health+json\|prometheus\|openmetrics\|junit` | overrides `Accept` (see [`format`](crate::format)); an unsatisfiable `Accept` is 406 |
//! | a [group](crate::group)'s path (`/livez`, `/readyz`) | that group: its checks, status mapping and detail level; live or its background snapshot |
//! | `?fresh=1` | skip the cache and the rate limit ([`engine`](crate::engine)); authorized callers only, anonymous ones get 403 |
//! | no or wrong credentials | 401 with `WWW-Authenticate: Bearer` when a token is required or a wrong one is sent ([`auth`](crate::auth)) |
//! | limits reached, no earlier report | 503 with `Retry-After` ([`engine`](crate::engine)) |
//! | `HEAD` | as `GET`, without the body |
//! | other methods | 405 with `Allow: GET, HEAD` |
//! | unknown or malformed parameters | 400 with a JSON error naming the parameter |
//!
//! Every answer carries `Cache-Control: no-store`. Credentials are checked before anything
//! else, and the report is restricted to the caller's [`Detail`](crate::Detail) level
//! before any writer runs, so every format shows the same. The Prometheus formats always
//! answer 200 (scrapers discard other statuses; the failure is in the metrics). Callers who
//! may see [`Detail::Full`](crate::Detail::Full) also get a `Server-Timing` header with
//! each check's duration.
//!
//! # Example
//!
//! ```
//! use smoketest_core::{from_fn, Outcome, Smoketest};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let smoke = Smoketest::builder()
//!     .without_discovery()
//!     .check(from_fn("ok", |_ctx| Box::pin(async { Ok(Outcome::Pass) })))
//!     .build()
//!     .unwrap();
//!
//! let (parts, ()) = http::Request::get("/smoketest?format=text").body(()).unwrap().into_parts();
//! let response = smoke.handle(&parts).await;
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.headers()["cache-control"], "no-store");
//! assert!(response.body().starts_with(b"PASS\n"));
//!
//! let (parts, ()) = http::Request::get("/smoketest?bogus=1").body(()).unwrap().into_parts();
//! assert_eq!(smoke.handle(&parts).await.status(), 400);
//! # }
//! ```

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use percent_encoding::percent_decode_str;
use serde::Serialize;

use crate::auth::Caller;
use crate::engine::Refusal;
use crate::format::Format;
use crate::{Selection, Smoketest};

const PARAMETERS: &str = "tag, check, exclude, format, fresh";

/// A request the endpoint refuses, with the status and the JSON error body it gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestError {
    /// The HTTP status (400, 401, 403, 404, 405, 406 or 503).
    #[serde(skip)]
    pub status: StatusCode,
    /// A stable machine-readable kind: `bad_request`, `not_found`, `method_not_allowed`,
    /// `not_acceptable`, `unauthorized` and `invalid_token` (401), `forbidden` (403),
    /// `throttled` (503).
    pub kind: &'static str,
    /// The query parameter or header at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// What was wrong and how to ask instead.
    pub message: String,
}

impl RequestError {
    fn bad_parameter(parameter: &str, message: String) -> Self {
        RequestError {
            status: StatusCode::BAD_REQUEST,
            kind: "bad_request",
            parameter: Some(parameter.to_string()),
            message,
        }
    }

    fn not_found(message: String) -> Self {
        RequestError {
            status: StatusCode::NOT_FOUND,
            kind: "not_found",
            parameter: None,
            message,
        }
    }

    /// The response for this error: its status, `Cache-Control: no-store` and a JSON body
    /// `{"error": {"kind": …, "parameter": …, "message": …}}`.
    pub fn into_response(self) -> Response<Bytes> {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a RequestError,
        }
        let mut body = serde_json::to_vec_pretty(&Body { error: &self }).expect("serializes");
        body.push(b'\n');
        let mut response = Response::new(Bytes::from(body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                crate::auth::www_authenticate(self.kind),
            );
        }
        response
    }
}

/// A parsed request to the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRequest {
    /// The checks to run.
    pub selection: Selection,
    /// The output format chosen from `?format=` and `Accept`.
    pub format: Format,
    /// `HEAD`: answer without a body.
    pub head: bool,
    /// `?fresh=1`: bypass the cache and the rate limit (authorized callers only).
    pub fresh: bool,
}

impl Smoketest {
    /// Whether a request for `path` belongs to this endpoint (the mount path itself,
    /// anything below it, or a [group](crate::group)'s path). Adapters that sit in front of
    /// other routes pass the rest on.
    pub fn serves(&self, path: &str) -> bool {
        self.relative_path(path).is_some() || self.group_at(path).is_some()
    }

    fn relative_path<'a>(&self, path: &'a str) -> Option<&'a str> {
        let mount = self.path();
        let rest = if mount == "/" {
            path
        } else {
            path.strip_prefix(mount)?
        };
        (rest.is_empty() || rest.starts_with('/') || mount == "/").then_some(rest)
    }

    /// Answer one request to the endpoint. See the [module documentation](self).
    pub async fn handle(&self, parts: &Parts) -> Response<Bytes> {
        // Credentials first: an anonymous caller learns nothing, not even which names exist.
        let caller = match self.authorize(parts) {
            Ok(caller) => caller,
            Err(e) => return e.into_response(),
        };
        if let Some(group) = self.group_at(parts.uri.path()) {
            let entitled =
                (caller == crate::auth::Caller::Authorized).then_some(crate::Detail::Full);
            return self.handle_group(group, parts, entitled).await;
        }
        let request = match self.parse_request(parts) {
            Ok(request) => request,
            Err(e) => return e.into_response(),
        };
        if request.fresh && caller != Caller::Authorized {
            return fresh_forbidden().into_response();
        }
        let report = match self.serve(&request.selection, request.fresh).await {
            Ok(report) => report,
            Err(Refusal::Unknown(unknown)) => {
                return RequestError::not_found(format!(
                    "{unknown}; GET {} lists every check",
                    self.path()
                ))
                .into_response();
            }
            Err(Refusal::Throttled(refused)) => {
                return throttled(refused.retry_after, refused.reason);
            }
        };
        let detail = caller.detail(self.inner.config.anonymous_detail);
        let report = report.restrict(detail);
        request.format.response(
            &report,
            detail,
            self.inner.config.failure_status,
            request.head,
        )
    }

    /// Parse and validate a request without running anything: method, path, query and
    /// `Accept`. Errors carry the response the contract prescribes.
    pub fn parse_request(&self, parts: &Parts) -> Result<EndpointRequest, RequestError> {
        let head = match parts.method {
            Method::GET => false,
            Method::HEAD => true,
            _ => {
                return Err(RequestError {
                    status: StatusCode::METHOD_NOT_ALLOWED,
                    kind: "method_not_allowed",
                    parameter: None,
                    message: format!(
                        "{} is not allowed here; use GET (or HEAD for the status alone)",
                        parts.method
                    ),
                });
            }
        };

        let path = parts.uri.path();
        let rest = self.relative_path(path).ok_or_else(|| {
            RequestError::not_found(format!(
                "{path} is not a smoketest path; try {}",
                self.path()
            ))
        })?;
        let mut selection = Selection::default();
        let rest = rest.trim_start_matches('/');
        if !rest.is_empty() {
            let name = percent_decode_str(rest).decode_utf8().map_err(|_| {
                RequestError::not_found(format!("the check name in {path} is not valid UTF-8"))
            })?;
            if !self.inner.by_name.contains_key(&*name) {
                return Err(RequestError::not_found(format!(
                    "no check is named `{name}`; GET {} lists every check",
                    self.path()
                )));
            }
            selection.checks.push(name.into_owned());
        }

        let mut format = None;
        let mut fresh = None;
        if let Some(query) = parts.uri.query() {
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
                let key = decode_component(raw_key).ok_or_else(|| {
                    RequestError::bad_parameter(
                        raw_key,
                        format!(
                            "the parameter name `{raw_key}` is not valid percent-encoded UTF-8"
                        ),
                    )
                })?;
                let value = decode_component(raw_value).ok_or_else(|| {
                    RequestError::bad_parameter(
                        &key,
                        format!("the value of `{key}` is not valid percent-encoded UTF-8"),
                    )
                })?;
                let needs_value = |v: &str| {
                    if v.is_empty() {
                        Err(RequestError::bad_parameter(
                            &key,
                            format!("`{key}` needs a value, as in `?{key}=…`"),
                        ))
                    } else {
                        Ok(v.to_string())
                    }
                };
                match key.as_str() {
                    "tag" => selection.tags.push(needs_value(&value)?),
                    "check" => selection.checks.push(needs_value(&value)?),
                    "exclude" => selection.exclude.push(needs_value(&value)?),
                    "format" => {
                        if format.is_some() {
                            return Err(RequestError::bad_parameter(
                                "format",
                                "`format` is given more than once".to_string(),
                            ));
                        }
                        let f = Format::from_param(&value).ok_or_else(|| {
                            RequestError::bad_parameter(
                                "format",
                                format!(
                                    "unknown format `{value}`; use one of: {}",
                                    Format::ALL
                                        .iter()
                                        .map(|f| f.param())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            )
                        })?;
                        format = Some(f);
                    }
                    "fresh" => {
                        if fresh.is_some() {
                            return Err(RequestError::bad_parameter(
                                "fresh",
                                "`fresh` is given more than once".to_string(),
                            ));
                        }
                        fresh = Some(parse_flag("fresh", &value)?);
                    }
                    _ => {
                        return Err(RequestError::bad_parameter(
                            &key,
                            format!("unknown parameter `{key}`; known parameters: {PARAMETERS}"),
                        ));
                    }
                }
            }
        }
        for name in selection.checks.iter().chain(&selection.exclude) {
            if !self.inner.by_name.contains_key(name.as_str()) {
                return Err(RequestError::not_found(format!(
                    "no check is named `{name}`; GET {} lists every check",
                    self.path()
                )));
            }
        }

        let accept = match parts.headers.get(header::ACCEPT) {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| {
                RequestError::bad_parameter("Accept", "the Accept header is not valid ASCII".into())
            })?),
        };
        let format = Format::negotiate(accept, format).map_err(|e| RequestError {
            status: StatusCode::NOT_ACCEPTABLE,
            kind: "not_acceptable",
            parameter: Some("Accept".to_string()),
            message: format!("{e}; or ask with ?format="),
        })?;

        Ok(EndpointRequest {
            selection,
            format,
            head,
            fresh: fresh.unwrap_or(false),
        })
    }
}

/// Decode one `application/x-www-form-urlencoded` component (`+` is a space), refusing
/// invalid UTF-8 rather than replacing it.
fn decode_component(raw: &str) -> Option<String> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// `?fresh`, `?fresh=1`, `?fresh=true` are on; `0` and `false` are off.
fn parse_flag(key: &str, value: &str) -> Result<bool, RequestError> {
    match value {
        "" | "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        other => Err(RequestError::bad_parameter(
            key,
            format!("`{key}` is a flag: use `?{key}=1` or `?{key}=0`, not `{other}`"),
        )),
    }
}

fn fresh_forbidden() -> RequestError {
    RequestError {
        status: StatusCode::FORBIDDEN,
        kind: "forbidden",
        parameter: Some("fresh".to_string()),
        message: "`fresh` bypasses the cache and the rate limit, so only authorized callers may ask for it: send `Authorization: Bearer <token>`, or drop `fresh` to get a report within the service's limits".to_string(),
    }
}

/// 503 with `Retry-After` (whole seconds, at least 1): the engine's limits are reached and
/// there is no earlier report of this selection to serve instead.
pub(crate) fn throttled(retry_after: std::time::Duration, reason: &str) -> Response<Bytes> {
    let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    let mut response = RequestError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        kind: "throttled",
        parameter: None,
        message: format!(
            "the checks are not run again yet ({reason} reached) and no earlier report of this selection exists; retry in {seconds}s"
        ),
    }
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}
