//! Access control and detail levels through `Smoketest::handle`: what each caller sees in
//! every format, and how missing, wrong and rotated tokens are answered.

use std::time::Duration;

use http::request::Parts;
use smoketest_core::format::Format;
use smoketest_core::{Detail, Outcome, Smoketest, Verdict, fail, from_fn};

const NEW_TOKEN: &str = "new-token-5f0c1d2e3a4b";
const OLD_TOKEN: &str = "old-token-9e8d7c6b5a41";
const ERROR_TEXT: &str = "expected 1 row in orders, found 0";
const WARN_TEXT: &str = "replica lag 4s";
const OBSERVED_KEY: &str = "rows_seen";

fn builder(anonymous: Detail) -> smoketest_core::SmoketestBuilder {
    Smoketest::builder()
        .without_discovery()
        .service("orders-api")
        .check(from_fn("orders::db_write", |ctx| {
            Box::pin(async move {
                ctx.observe(OBSERVED_KEY, 0);
                fail!("{ERROR_TEXT}");
            })
        }))
        .check(from_fn("orders::replica", |_ctx| {
            Box::pin(async { Ok(Outcome::warn(WARN_TEXT)) })
        }))
        .anonymous_detail(anonymous)
        // These tests are about access, not load: no rate limit in the way.
        .min_interval(Duration::ZERO)
}

fn smoke(anonymous: Detail) -> Smoketest {
    builder(anonymous)
        .bearer_token(NEW_TOKEN)
        .bearer_token(OLD_TOKEN)
        .build()
        .unwrap()
}

fn request(uri: &str, authorization: Option<&str>) -> Parts {
    let mut request = http::Request::get(uri);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.body(()).unwrap().into_parts().0
}

async fn body(smoke: &Smoketest, uri: &str, authorization: Option<&str>) -> (u16, String) {
    let response = smoke.handle(&request(uri, authorization)).await;
    let status = response.status().as_u16();
    (
        status,
        String::from_utf8(response.body().to_vec()).expect("utf-8 body"),
    )
}

/// Every format, every level: what must not appear, for every format in `Format::ALL`
/// (formats added later are covered automatically); what must appear, for the formats that
/// carry names, kinds and messages (JSON and text).
#[tokio::test]
async fn each_detail_level_shows_the_same_in_every_format() {
    for &format in Format::ALL {
        let uri = format!("/smoketest?format={}", format.param());
        let shows_everything = matches!(format, Format::Json | Format::Text);
        for anonymous in [Detail::Status, Detail::Checks, Detail::Full] {
            let smoke = smoke(anonymous);
            let (status, text) = body(&smoke, &uri, None).await;
            let context = format!("{format:?} at {anonymous:?}:\n{text}");
            match anonymous {
                Detail::Status => {
                    assert!(!text.contains("orders::"), "no names: {context}");
                    assert!(!text.contains("assertion"), "no kinds: {context}");
                }
                Detail::Checks => {
                    assert!(!text.contains(ERROR_TEXT), "no messages: {context}");
                    assert!(!text.contains(WARN_TEXT), "no warn messages: {context}");
                    assert!(!text.contains(OBSERVED_KEY), "no observed: {context}");
                    if shows_everything {
                        assert!(text.contains("orders::db_write"), "names: {context}");
                        assert!(text.contains("assertion"), "kinds: {context}");
                    }
                }
                Detail::Full => {
                    if shows_everything {
                        assert!(text.contains(ERROR_TEXT), "messages: {context}");
                        assert!(text.contains(WARN_TEXT), "warn messages: {context}");
                    }
                }
            }
            // Whatever the anonymous level, a valid token sees everything, and the level
            // never changes the status code.
            let (authorized_status, full) =
                body(&smoke, &uri, Some(&format!("Bearer {NEW_TOKEN}"))).await;
            assert_eq!(status, authorized_status, "{context}");
            assert!(
                full.contains("orders::db_write"),
                "authorized {format:?}: {full}"
            );
            if shows_everything {
                assert_eq!(status, 500, "{context}");
                assert!(full.contains(ERROR_TEXT), "authorized {format:?}: {full}");
            }
        }
    }
}

#[tokio::test]
async fn json_levels_drop_exactly_the_documented_fields() {
    let (_, status) = body(&smoke(Detail::Status), "/smoketest", None).await;
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["checks"], serde_json::json!([]));
    assert_eq!(v["summary"]["failed"], 1);
    assert_eq!(v["status"], "fail");

    let (_, checks) = body(&smoke(Detail::Checks), "/smoketest", None).await;
    let v: serde_json::Value = serde_json::from_str(&checks).unwrap();
    let failed = &v["checks"][0];
    assert_eq!(failed["name"], "orders::db_write");
    assert_eq!(failed["error"]["kind"], "assertion");
    assert!(failed["error"].get("message").is_none());
    assert!(failed["error"].get("suggestion").is_none());
    assert!(failed.get("observed").is_none());
    assert!(v["checks"][1].get("message").is_none());

    let smoke = smoke(Detail::Checks);
    let (_, full) = body(&smoke, "/smoketest", Some(&format!("Bearer {OLD_TOKEN}"))).await;
    let v: serde_json::Value = serde_json::from_str(&full).unwrap();
    assert_eq!(v["checks"][0]["error"]["message"], ERROR_TEXT);
    assert_eq!(v["checks"][0]["observed"][OBSERVED_KEY], 0);
    assert_eq!(v["checks"][1]["message"], WARN_TEXT);
}

#[tokio::test]
async fn text_levels() {
    let (_, status) = body(&smoke(Detail::Status), "/smoketest?format=text", None).await;
    let lines: Vec<_> = status.lines().collect();
    assert_eq!(lines[0], "FAIL");
    assert_eq!(lines.len(), 2, "status line and summary only: {status}");
    assert!(lines[1].starts_with("2 checks: 0 passed, 1 warned, 1 failed"));

    let (_, checks) = body(&smoke(Detail::Checks), "/smoketest?format=text", None).await;
    assert!(
        checks
            .lines()
            .any(|l| l.starts_with("[-]orders::db_write failed: assertion ")),
        "{checks}"
    );
    assert!(!checks.contains("suggestion"), "{checks}");
}

#[tokio::test]
async fn both_tokens_of_a_rotation_are_accepted() {
    let smoke = smoke(Detail::Status);
    for token in [NEW_TOKEN, OLD_TOKEN] {
        let (status, text) = body(&smoke, "/smoketest", Some(&format!("Bearer {token}"))).await;
        assert_eq!(status, 500);
        assert!(text.contains(ERROR_TEXT), "{token}: {text}");
    }
    // The scheme is case-insensitive (RFC 7235), surrounding white space is tolerated.
    let (_, text) = body(
        &smoke,
        "/smoketest",
        Some(&format!("bearer   {NEW_TOKEN} ")),
    )
    .await;
    assert!(text.contains(ERROR_TEXT));
}

#[tokio::test]
async fn a_token_rotated_out_is_refused_not_downgraded() {
    // After the rotation only the new token is configured.
    let smoke = builder(Detail::Checks)
        .bearer_token(NEW_TOKEN)
        .build()
        .unwrap();
    let response = smoke
        .handle(&request("/smoketest", Some(&format!("Bearer {OLD_TOKEN}"))))
        .await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Bearer realm="smoketest", error="invalid_token""#
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    let v: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(v["error"]["kind"], "invalid_token");
    assert_eq!(v["error"]["parameter"], "Authorization");
}

#[tokio::test]
async fn wrong_tokens_of_every_shape_get_401_in_every_format() {
    let smoke = smoke(Detail::Full);
    let long = "x".repeat(4096);
    let wrong = [
        "Bearer wrong-token-000000000000".to_string(),
        format!("Bearer {}", &NEW_TOKEN[..NEW_TOKEN.len() - 1]),
        format!("Bearer {NEW_TOKEN}x"),
        "Bearer".to_string(),
        "Bearer ".to_string(),
        format!("Bearer {long}"),
    ];
    for &format in Format::ALL {
        for value in &wrong {
            let uri = format!("/smoketest?format={}", format.param());
            let response = smoke.handle(&request(&uri, Some(value))).await;
            assert_eq!(response.status(), 401, "{format:?} {value:.40}");
            assert_eq!(response.headers()["content-type"], "application/json");
            assert!(!String::from_utf8_lossy(response.body()).contains(ERROR_TEXT));
        }
    }
    // A non-ASCII credential is a wrong credential too, not a server error.
    let mut parts = request("/smoketest", None);
    parts.headers.insert(
        "authorization",
        http::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
    );
    assert_eq!(smoke.handle(&parts).await.status(), 401);
}

#[tokio::test]
async fn other_schemes_belong_to_someone_else_and_are_ignored() {
    let smoke = smoke(Detail::Checks);
    let (status, text) = body(&smoke, "/smoketest", Some("Basic dXNlcjpwYXNz")).await;
    assert_eq!(status, 500);
    assert!(text.contains("orders::db_write") && !text.contains(ERROR_TEXT));
}

#[tokio::test]
async fn without_access_control_an_authorization_header_changes_nothing() {
    let smoke = builder(Detail::Checks).build().unwrap();
    let (status, text) = body(&smoke, "/smoketest", Some("Bearer anything-at-all-00000")).await;
    assert_eq!(status, 500);
    assert!(!text.contains(ERROR_TEXT), "still anonymous: {text}");
}

#[tokio::test]
async fn required_authorization_turns_anonymous_callers_away() {
    let smoke = builder(Detail::Full)
        .bearer_token(NEW_TOKEN)
        .require_authorization()
        .build()
        .unwrap();
    for &format in Format::ALL {
        let uri = format!("/smoketest?format={}", format.param());
        let response = smoke.handle(&request(&uri, None)).await;
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.headers()["www-authenticate"],
            r#"Bearer realm="smoketest""#
        );
        let v: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(v["error"]["kind"], "unauthorized");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Authorization: Bearer")
        );
    }
    // Before revealing which checks exist.
    let response = smoke
        .handle(&request("/smoketest/no-such-check", None))
        .await;
    assert_eq!(response.status(), 401);
    let (status, text) = body(&smoke, "/smoketest", Some(&format!("Bearer {NEW_TOKEN}"))).await;
    assert_eq!(status, 500);
    assert!(text.contains(ERROR_TEXT));
}

#[tokio::test]
async fn a_custom_authorizer_decides_from_the_request() {
    let smoke = builder(Detail::Status)
        .authorizer(|parts: &Parts| {
            match parts.headers.get("x-mesh-identity").map(|v| v.as_bytes()) {
                Some(b"deploy-pipeline") => Verdict::Authorized,
                Some(_) => Verdict::Denied,
                None => Verdict::Anonymous,
            }
        })
        .build()
        .unwrap();
    let with = |identity: Option<&'static str>| {
        let mut request = http::Request::get("/smoketest");
        if let Some(identity) = identity {
            request = request.header("x-mesh-identity", identity);
        }
        request.body(()).unwrap().into_parts().0
    };
    let full = smoke.handle(&with(Some("deploy-pipeline"))).await;
    assert!(String::from_utf8_lossy(full.body()).contains(ERROR_TEXT));
    let anonymous = smoke.handle(&with(None)).await;
    assert_eq!(anonymous.status(), 500);
    assert!(!String::from_utf8_lossy(anonymous.body()).contains("orders::db_write"));
    let denied = smoke.handle(&with(Some("intruder"))).await;
    assert_eq!(denied.status(), 401);
}

#[test]
fn unusable_token_settings_are_refused_at_build_time() {
    let short = builder(Detail::Checks).bearer_token("short").build();
    let err = short.unwrap_err().to_string();
    assert!(
        err.contains("bearer token #1") && err.contains("at least 16"),
        "{err}"
    );

    let spaced = builder(Detail::Checks)
        .bearer_token("has a space in it, sixteen+")
        .build();
    assert!(spaced.unwrap_err().to_string().contains("cannot carry"));

    let locked_out = builder(Detail::Checks).require_authorization().build();
    assert!(
        locked_out
            .unwrap_err()
            .to_string()
            .contains("lock every caller out")
    );
}

#[test]
fn debug_output_never_shows_tokens() {
    let smoke = smoke(Detail::Checks);
    let shown = format!("{smoke:?}");
    assert!(
        !shown.contains(NEW_TOKEN) && !shown.contains(OLD_TOKEN),
        "{shown}"
    );
}
