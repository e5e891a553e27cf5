//! The first stage of the pipeline: what a request to the endpoint asks for, parsed once
//! for every path — the mount path, one check, and each group's path.
//!
//! [`Smoketest::parse_request`] reads the method, the path (which scope: the mount path's
//! selection, one check, or a group), the query (`tag`, `check`, `exclude`, `format`,
//! `fresh`, `refresh`) and `Accept`, without running anything and without deciding who may ask:
//! that is the [access](crate::auth) stage's job, and whether a check name exists is the
//! [engine](crate::engine)'s. Anything malformed is a [`RequestError`] carrying the exact
//! answer the contract prescribes (400 naming the parameter, 405, 406).
//!
//! On a group's path the group is the selection: `tag`, `check` and `exclude` are refused
//! with 400; `format`, `fresh` and `refresh` mean the same as on the mount path.
//! `refresh=N` (whole seconds, 1 to 3600) makes the HTML page reload itself; anything else
//! is 400 naming `refresh`.
//!
//! # Example
//!
//! ```
//! use smoketest_core::{from_fn, Group, Outcome, Smoketest};
//!
//! let smoke = Smoketest::builder()
//!     .without_discovery()
//!     .check(from_fn("db::ping", |_ctx| Box::pin(async { Ok(Outcome::Pass) })).tag("db"))
//!     .group(Group::ready().tag("db"))
//!     .build()
//!     .unwrap();
//! let parts = |uri: &str| http::Request::get(uri).body(()).unwrap().into_parts().0;
//!
//! let request = smoke.parse_request(&parts("/smoketest?tag=db&format=text&fresh=1")).unwrap();
//! assert_eq!(request.selection.tags, ["db"]);
//! assert!(request.fresh && request.group.is_none());
//!
//! let ready = smoke.parse_request(&parts("/readyz?fresh=1")).unwrap();
//! assert_eq!(ready.group.as_deref(), Some("ready"));
//!
//! let error = smoke.parse_request(&parts("/readyz?tag=db")).unwrap_err();
//! assert_eq!((error.status.as_u16(), error.parameter.as_deref()), (400, Some("tag")));
//! ```

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use percent_encoding::percent_decode_str;
use serde::Serialize;

use crate::format::Format;
use crate::{Selection, Smoketest};

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
    pub(crate) fn new(
        status: StatusCode,
        kind: &'static str,
        parameter: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        RequestError {
            status,
            kind,
            parameter: parameter.map(str::to_string),
            message: message.into(),
        }
    }

    fn bad_parameter(parameter: &str, message: String) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            Some(parameter),
            message,
        )
    }

    pub(crate) fn not_found(message: String) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", None, message)
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
                HeaderValue::from_static(if self.kind == "invalid_token" {
                    r#"Bearer realm="smoketest", error="invalid_token""#
                } else {
                    r#"Bearer realm="smoketest""#
                }),
            );
        }
        response
    }
}

/// A parsed request to the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointRequest {
    /// The group whose path was asked for; `None` for the mount path.
    pub group: Option<String>,
    /// The checks to run (on a group's path: empty, the group is the selection). Names are
    /// not checked here; the engine answers 404 for one that does not exist.
    pub selection: Selection,
    /// The output format chosen from `?format=` and `Accept`.
    pub format: Format,
    /// `HEAD`: answer without a body.
    pub head: bool,
    /// `?fresh=1`: a run that starts after the request arrived (authorized callers only).
    pub fresh: bool,
    /// `?refresh=10`: the HTML page reloads itself every this many seconds (1 to 3600;
    /// other formats ignore it).
    pub refresh: Option<u32>,
    /// The engine scope serving the path: 0 for the mount path, then one per group.
    pub(crate) scope: usize,
}

/// Which scope serves a path, and the check name in `/smoketest/{name}`.
pub(crate) enum Route<'a> {
    Mount(&'a str),
    Group(usize),
}

impl Smoketest {
    /// Whether a request for `path` belongs to this endpoint (the mount path itself,
    /// anything below it, or a [group](crate::group)'s path). Adapters that sit in front of
    /// other routes pass the rest on.
    pub fn serves(&self, path: &str) -> bool {
        self.route(path).is_some()
    }

    /// The scope for `path`; for the mount path, the rest of the path after it.
    pub(crate) fn route<'a>(&self, path: &'a str) -> Option<Route<'a>> {
        let scopes = &self.inner.engine.scopes;
        if let Some(index) = scopes
            .iter()
            .position(|s| s.group.as_ref().and_then(|g| g.path.as_deref()) == Some(path))
        {
            return Some(Route::Group(index));
        }
        let mount = self.path();
        let rest = if mount == "/" {
            path
        } else {
            path.strip_prefix(mount)?
        };
        (rest.is_empty() || rest.starts_with('/') || mount == "/").then_some(Route::Mount(rest))
    }

    /// Parse and validate a request without running anything: method, path, query and
    /// `Accept`. Errors carry the response the contract prescribes. See the
    /// [module documentation](self).
    pub fn parse_request(&self, parts: &Parts) -> Result<EndpointRequest, RequestError> {
        let head = match parts.method {
            Method::GET => false,
            Method::HEAD => true,
            _ => {
                return Err(RequestError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    None,
                    format!(
                        "{} is not allowed here; use GET (or HEAD for the status alone)",
                        parts.method
                    ),
                ));
            }
        };

        let path = parts.uri.path();
        let mut selection = Selection::default();
        let (scope, group) = match self.route(path) {
            None => {
                return Err(RequestError::not_found(format!(
                    "{path} is not a smoketest path; try {}",
                    self.path()
                )));
            }
            Some(Route::Group(index)) => {
                let group = self.inner.engine.scopes[index].group.as_ref();
                (index, group.map(|g| g.name.clone()))
            }
            Some(Route::Mount(rest)) => {
                let rest = rest.trim_start_matches('/');
                if !rest.is_empty() {
                    let name = percent_decode_str(rest).decode_utf8().map_err(|_| {
                        RequestError::not_found(format!(
                            "the check name in {path} is not valid UTF-8"
                        ))
                    })?;
                    selection.checks.push(name.into_owned());
                }
                (0, None)
            }
        };

        let mut format = None;
        let mut fresh = None;
        let mut refresh = None;
        for pair in parts
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode_component(raw_key).ok_or_else(|| {
                RequestError::bad_parameter(
                    raw_key,
                    format!("the parameter name `{raw_key}` is not valid percent-encoded UTF-8"),
                )
            })?;
            let value = decode_component(raw_value).ok_or_else(|| {
                RequestError::bad_parameter(
                    &key,
                    format!("the value of `{key}` is not valid percent-encoded UTF-8"),
                )
            })?;
            let once = |seen: bool| {
                if seen {
                    Err(RequestError::bad_parameter(
                        &key,
                        format!("`{key}` is given more than once"),
                    ))
                } else {
                    Ok(())
                }
            };
            match key.as_str() {
                "tag" | "check" | "exclude" if group.is_some() => {
                    return Err(RequestError::bad_parameter(
                        &key,
                        format!(
                            "`{key}` cannot narrow the group `{}`: its path serves the whole group; narrow the mount path's selection instead ({}?{key}=…)",
                            group.as_deref().unwrap_or_default(),
                            self.path()
                        ),
                    ));
                }
                "tag" | "check" | "exclude" if value.is_empty() => {
                    return Err(RequestError::bad_parameter(
                        &key,
                        format!("`{key}` needs a value, as in `?{key}=…`"),
                    ));
                }
                "tag" => selection.tags.push(value),
                "check" => selection.checks.push(value),
                "exclude" => selection.exclude.push(value),
                "format" => {
                    once(format.is_some())?;
                    format = Some(Format::from_param(&value).ok_or_else(|| {
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
                    })?);
                }
                "fresh" => {
                    once(fresh.is_some())?;
                    fresh = Some(parse_flag("fresh", &value)?);
                }
                "refresh" => {
                    once(refresh.is_some())?;
                    refresh = Some(
                        value
                            .parse::<u32>()
                            .ok()
                            .filter(|s| REFRESH_SECONDS.contains(s))
                            .ok_or_else(|| {
                                RequestError::bad_parameter(
                                    "refresh",
                                    format!(
                                        "`refresh` is the HTML page's reload interval in whole seconds, from {} to {}, not `{value}`",
                                        REFRESH_SECONDS.start(),
                                        REFRESH_SECONDS.end()
                                    ),
                                )
                            })?,
                    );
                }
                _ => {
                    let known = if group.is_some() {
                        "format, fresh, refresh"
                    } else {
                        "tag, check, exclude, format, fresh, refresh"
                    };
                    return Err(RequestError::bad_parameter(
                        &key,
                        format!("unknown parameter `{key}`; known parameters here: {known}"),
                    ));
                }
            }
        }

        let accept = match parts.headers.get(header::ACCEPT) {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| {
                RequestError::bad_parameter("Accept", "the Accept header is not valid ASCII".into())
            })?),
        };
        let format = Format::negotiate(accept, format).map_err(|e| {
            RequestError::new(
                StatusCode::NOT_ACCEPTABLE,
                "not_acceptable",
                Some("Accept"),
                format!("{e}; or ask with ?format="),
            )
        })?;

        Ok(EndpointRequest {
            group,
            selection,
            format,
            head,
            fresh: fresh.unwrap_or(false),
            refresh,
            scope,
        })
    }
}

/// The accepted `?refresh=` values, in seconds: a page reloading faster than once a second
/// would be a flood of its own.
const REFRESH_SECONDS: std::ops::RangeInclusive<u32> = 1..=3600;

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
