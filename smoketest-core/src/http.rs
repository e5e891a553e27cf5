//! The HTTP contract of DESIGN.md §3, implemented once over [`http`] types so that every
//! adapter answers exactly alike: this file is where every status code is decided.
//!
//! An adapter hands [`Smoketest::handle`] the request's [`Parts`] and sends back the
//! [`Response`] it gets: the core decides every status code, header and body. Requests
//! outside the mount path and the groups' paths are not the endpoint's
//! ([`Smoketest::serves`] tells adapters which requests to pass on).
//!
//! One pipeline serves every path — the mount path, one check, each group — in this order
//! (`docs/request-pipeline.md` draws it):
//!
//! 1. **Route** ([`request`](crate::request)): which scope serves the path; 404 if none.
//! 2. **Access** ([`auth`](crate::auth)): who is asking, under the scope's rule; 401.
//! 3. **Parse** ([`request`](crate::request)): method, query, `Accept`; 405, 400, 406.
//! 4. **Permit**: `?fresh=1` from an anonymous caller is 403; so is selecting checks by
//!    name (`/smoketest/{name}`, `?check=`, `?exclude=`) when the caller's detail level
//!    hides names, identically for names that exist and names that do not.
//! 5. **Engine** ([`engine`](crate::engine)): join, serve from memory, run or refuse;
//!    404 for an unknown name, 503 when throttled with no report to give.
//! 6. **Restrict and write** ([`format`](crate::format)): the report cut to the caller's
//!    detail level, then the scope's status mapping (200, or its failure status).
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /smoketest` | run every check: 200 when none failed, else the failure status (500) |
//! | `GET /smoketest/{name}` | run one check; 404 if there is none of that name |
//! | `?tag=a&tag=b`, `?check=a`, `?exclude=a` | narrow the selection; an unknown check name is 404 |
//! | `?format=json\|text\|html\|health+json\|prometheus\|openmetrics\|junit` | overrides `Accept` (see [`format`](crate::format)); an unsatisfiable `Accept` is 406 |
//! | a [group](crate::group)'s path (`/livez`, `/readyz`) | that group: its checks, status mapping and detail level; live or its background snapshot |
//! | `?refresh=10` | the HTML page reloads itself every 10 s (1–3600; other formats ignore it) |
//! | a readiness group while [draining](Smoketest::start_draining) | its failure status (503), `"reason": "draining"`, nothing run |
//! | a background group before its first run | `"reason": "pending"`: 200 for liveness, else the failure status (503) |
//! | `?fresh=1` | a run that started after the request arrived, on every path ([`engine`](crate::engine)); authorized callers only, anonymous ones get 403 |
//! | no or wrong credentials | 401 with `WWW-Authenticate: Bearer` when a token is required or a wrong one is sent ([`auth`](crate::auth)) |
//! | limits reached, no earlier report | 503 with `Retry-After` on the mount path; a group's first run always happens ([`engine`](crate::engine)) |
//! | `HEAD` | as `GET`, without the body |
//! | other methods | 405 with `Allow: GET, HEAD` |
//! | unknown or malformed parameters | 400 with a JSON error naming the parameter |
//!
//! Every answer carries `Cache-Control: no-store`. Credentials are checked before anything
//! else, and the report is restricted to the caller's [`Detail`] level
//! before any writer runs, so every format shows the same. The Prometheus formats always
//! answer 200 (scrapers discard other statuses; the failure is in the metrics). Callers who
//! may see [`Detail::Full`] also get a `Server-Timing` header with
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
use http::{Response, StatusCode};

use crate::auth::Caller;
use crate::engine::{Ask, Refusal};
pub use crate::request::{EndpointRequest, RequestError};
use crate::{Detail, Smoketest};

impl Smoketest {
    /// Answer one request to the endpoint. See the [module documentation](self).
    pub async fn handle(&self, parts: &Parts) -> Response<Bytes> {
        let arrived = tokio::time::Instant::now();
        self.start_background();
        let caller = match self.authorize(parts) {
            Ok(caller) => caller,
            Err(e) => return e.into_response(),
        };
        let request = match self.parse_request(parts) {
            Ok(request) => request,
            Err(e) => return e.into_response(),
        };
        let scope = &self.inner.engine.scopes[request.scope];
        let detail = caller.detail(scope.detail);
        if request.fresh && caller != Caller::Authorized {
            return forbidden(
                "fresh",
                "`fresh` asks for a run that starts now, so only authorized callers may ask for it: send `Authorization: Bearer <token>`, or drop `fresh` to get a report within the service's limits",
            );
        }
        let selection = &request.selection;
        if detail == Detail::Status
            && !(selection.checks.is_empty() && selection.exclude.is_empty())
        {
            // Answering 404 for unknown names and 200/500 for known ones would list them.
            let parameter = if selection.exclude.is_empty() {
                "check"
            } else {
                "exclude"
            };
            return forbidden(
                parameter,
                "this endpoint does not show check names to anonymous callers, so it does not select checks by name for them either: send `Authorization: Bearer <token>`, or select by `?tag=`",
            );
        }
        let ask = Ask::Request {
            fresh: request.fresh,
        };
        let report = match self
            .serve(request.scope, selection, ask, arrived, detail)
            .await
        {
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
        let report = report.into_restricted(detail);
        request.format.response(
            &report,
            detail,
            scope.failure_status,
            request.head,
            request.refresh,
        )
    }
}

fn forbidden(parameter: &str, message: &str) -> Response<Bytes> {
    RequestError::new(StatusCode::FORBIDDEN, "forbidden", Some(parameter), message).into_response()
}

/// 503 with `Retry-After` (whole seconds, at least 1): the engine's limits are reached and
/// there is no report of this selection the caller may be given instead.
fn throttled(retry_after: std::time::Duration, reason: &str) -> Response<Bytes> {
    let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    let mut response = RequestError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "throttled",
        None,
        format!(
            "the checks are not run again yet ({reason} reached) and no report of this selection can be given instead; retry in {seconds}s"
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}
