//! `redact_env`: the value of a variable the service names never reaches a report or a log.
//!
//! Alone in its test binary because it sets an environment variable, which is only sound
//! while no other thread reads the environment.

use std::time::Duration;

use smoketest_core::{Smoketest, fail, from_fn};

const URL: &str = "postgres://orders:Tr0ub4dor&3@db.internal:5432/orders";

#[tokio::test]
async fn the_values_of_named_environment_variables_are_redacted() {
    // SAFETY: the only test in this binary, and nothing else has started threads that
    // read the environment yet.
    unsafe { std::env::set_var("SMOKETEST_TEST_REDACT_DATABASE_URL", URL) };
    let smoke = Smoketest::builder()
        .without_discovery()
        .redact_env("SMOKETEST_TEST_REDACT_DATABASE_URL")
        .redact_env("SMOKETEST_TEST_REDACT_UNSET")
        .anonymous_detail(smoketest_core::Detail::Full)
        .min_interval(Duration::ZERO)
        .check(from_fn("db::connect", |_ctx| {
            Box::pin(async {
                fail!("cannot reach {URL}; the driver said: bad password Tr0ub4dor&3");
            })
        }))
        .build()
        .unwrap();
    let request = http::Request::get("/smoketest")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let body = String::from_utf8(smoke.handle(&request).await.body().to_vec()).unwrap();
    assert!(!body.contains("Tr0ub4dor"), "{body}");
    assert!(
        body.contains(
            "cannot reach [redacted $SMOKETEST_TEST_REDACT_DATABASE_URL]; the driver said: bad password [redacted $SMOKETEST_TEST_REDACT_DATABASE_URL]"
        ),
        "{body}"
    );
}
