//! Robust parsing, as a property: for any method, path, query string, `Accept` and
//! `Authorization` header, `Smoketest::handle` never panics, never answers 5xx because of
//! what it was sent, and refuses with a clear 4xx — a JSON error with a kind and a message,
//! plus the headers its status calls for.
//!
//! The fuzz target runs in CI as an ordinary test (proptest, stable Rust), 2,000 cases.

use std::sync::LazyLock;
use std::time::Duration;

use proptest::prelude::*;
use smoketest_core::{Outcome, Smoketest, from_fn};

const TOKEN: &str = "property-test-token-0123";

fn smoke() -> Smoketest {
    Smoketest::builder()
        .without_discovery()
        .check(from_fn("db::write", |_ctx| Box::pin(async { Ok(Outcome::Pass) })).tag("db"))
        .check(from_fn("cache", |_ctx| {
            Box::pin(async { Ok(Outcome::Pass) })
        }))
        .bearer_token(TOKEN)
        // Only parsing is under test: no limit may answer 503.
        .min_interval(Duration::ZERO)
        .max_runs_in_flight(usize::MAX)
        .build()
        .unwrap()
}

/// Text with the characters that matter to a URL parser, some non-ASCII, and pieces of
/// the real vocabulary so that many cases get past the first check.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z:=&%+/?#;,. _~*-]{0,12}",
        "(%[0-9A-Fa-f]{0,2}){1,4}",
        "[\\PC]{0,6}",
        prop::sample::select(vec![
            "tag",
            "check",
            "exclude",
            "format",
            "fresh",
            "db",
            "db::write",
            "cache",
            "json",
            "text",
            "1",
            "0",
            "true",
            "%FF",
            "%C3%28",
            "+",
            "=",
            "&&",
            "smoketest",
        ])
        .prop_map(str::to_string),
    ]
}

fn query() -> impl Strategy<Value = Option<String>> {
    prop::option::of(
        prop::collection::vec((fragment(), prop::option::of(fragment())), 0..5).prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k}={v}"),
                    None => k,
                })
                .collect::<Vec<_>>()
                .join("&")
        }),
    )
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/smoketest".to_string()),
        fragment().prop_map(|rest| format!("/smoketest/{rest}")),
        fragment().prop_map(|rest| format!("/smoketest{rest}")),
        fragment().prop_map(|rest| format!("/{rest}")),
    ]
}

fn header_bytes() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop::option::of(prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40),
        "[ -~]{0,40}".prop_map(String::into_bytes),
        prop::sample::select(vec![
            "application/json",
            "text/plain;q=0.5, */*;q=0",
            "text/*;q=abc",
            "application/json;q=NaN",
            ";;,,",
            "*/*",
            "Bearer",
            "Bearer ",
            "bearer property-test-token-0123",
            "Basic Zm9vOmJhcg==",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
    ])
}

fn method() -> impl Strategy<Value = http::Method> {
    prop_oneof![
        4 => Just(http::Method::GET),
        1 => Just(http::Method::HEAD),
        1 => Just(http::Method::POST),
        1 => Just(http::Method::DELETE),
        1 => "[A-Z]{1,8}".prop_map(|m| http::Method::from_bytes(m.as_bytes()).unwrap()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_request_gets_a_success_or_a_clear_client_error(
        method in method(),
        path in path(),
        query in query(),
        accept in header_bytes(),
        authorization in header_bytes(),
    ) {
        let uri = match &query {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };
        let mut request = http::Request::builder().method(method.clone()).uri(uri.as_str());
        if let Some(value) = accept.as_deref().and_then(|b| http::HeaderValue::from_bytes(b).ok()) {
            request = request.header(http::header::ACCEPT, value);
        }
        if let Some(value) = authorization.as_deref().and_then(|b| http::HeaderValue::from_bytes(b).ok()) {
            request = request.header(http::header::AUTHORIZATION, value);
        }
        // What http cannot even represent never reaches an adapter.
        let Ok(request) = request.body(()) else { return Ok(()) };
        let (parts, ()) = request.into_parts();

        let response = RUNTIME.block_on(SMOKE.handle(&parts));
        let status = response.status();

        prop_assert!(
            status == 200 || status.is_client_error(),
            "{method} {uri} answered {status}"
        );
        prop_assert_eq!(&response.headers()["cache-control"], "no-store");
        if status.is_client_error() {
            prop_assert_eq!(&response.headers()["content-type"], "application/json");
            let body: serde_json::Value = serde_json::from_slice(response.body())
                .map_err(|e| TestCaseError::fail(format!("{status} body is not JSON: {e}")))?;
            let kind = body["error"]["kind"].as_str().unwrap_or("");
            let message = body["error"]["message"].as_str().unwrap_or("");
            prop_assert!(!kind.is_empty() && message.len() > 10, "{status}: {body}");
            match status.as_u16() {
                401 => prop_assert!(response.headers().contains_key("www-authenticate")),
                405 => prop_assert_eq!(&response.headers()["allow"], "GET, HEAD"),
                _ => {}
            }
        }
    }
}

static SMOKE: LazyLock<Smoketest> = LazyLock::new(smoke);
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
});
