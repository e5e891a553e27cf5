//! Environment and executable checks against the real machine.

use std::time::Duration;

use smoketest_checks::env::EnvCheck;
use smoketest_checks::exec::{ExecutableCheck, compare_versions, parse_version};
use smoketest_core::{Context, ErrorKind, Outcome, SmokeCheck};

fn ctx() -> Context {
    Context::detached("test", Duration::from_secs(10))
}

#[tokio::test]
async fn present_variables_pass() {
    let check = EnvCheck::new(["PATH"]).var("HOME");
    assert_eq!(check.run(&mut ctx()).await.unwrap(), Outcome::Pass);
}

#[tokio::test]
async fn missing_and_empty_variables_are_named_without_values() {
    // Only this test touches these variables, and nothing reads the environment from
    // another thread while it sets them.
    unsafe {
        std::env::set_var("SMOKETEST_TEST_EMPTY_VAR", "  ");
        std::env::set_var("SMOKETEST_TEST_SECRET_VAR", "hunter2-secret-value");
    }
    let check = EnvCheck::new([
        "SMOKETEST_TEST_SECRET_VAR",
        "SMOKETEST_TEST_EMPTY_VAR",
        "SMOKETEST_TEST_MISSING_VAR",
    ]);
    let mut ctx = ctx();
    let error = check.run(&mut ctx).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert_eq!(
        error.message(),
        "required environment variable not set: `SMOKETEST_TEST_MISSING_VAR`; \
         required environment variable set but empty: `SMOKETEST_TEST_EMPTY_VAR` (2 of 3 checked)"
    );
    assert!(
        error
            .suggestion()
            .unwrap()
            .contains("values are never shown")
    );
    let everything = format!("{error:?} {:?}", ctx.observed());
    assert!(
        !everything.contains("hunter2"),
        "a value leaked: {everything}"
    );
}

#[tokio::test]
async fn program_on_path_passes_and_records_where() {
    let mut ctx = ctx();
    let check = ExecutableCheck::new("sh");
    assert_eq!(check.run(&mut ctx).await.unwrap(), Outcome::Pass);
    assert!(ctx.observed()["path"].as_str().unwrap().ends_with("/sh"));
}

#[tokio::test]
async fn missing_program_is_a_config_failure() {
    let error = ExecutableCheck::new("smoketest-no-such-program")
        .run(&mut ctx())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert_eq!(
        error.message(),
        "`smoketest-no-such-program` is not on PATH"
    );
    assert!(error.suggestion().unwrap().contains("Install the program"));
}

#[tokio::test]
async fn new_enough_version_passes_and_is_observed() {
    let mut ctx = ctx();
    let check = ExecutableCheck::new("git").min_version("2.0");
    assert_eq!(check.run(&mut ctx).await.unwrap(), Outcome::Pass);
    let version = ctx.observed()["version"].as_str().unwrap().to_string();
    assert!(version.starts_with("2."), "{version}");
}

#[tokio::test]
async fn too_old_version_is_a_version_failure() {
    let error = ExecutableCheck::new("git")
        .min_version("999.1")
        .run(&mut ctx())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Version);
    assert!(
        error.message().starts_with("`git` is version 2."),
        "{}",
        error.message()
    );
    assert!(
        error.message().contains("older than the required 999.1"),
        "{}",
        error.message()
    );
}

#[tokio::test]
async fn hanging_version_command_is_killed_at_the_timeout() {
    let started = std::time::Instant::now();
    let error = ExecutableCheck::new("sleep")
        .min_version("1.0")
        .version_args(["30"])
        .exec_timeout(Duration::from_millis(200))
        .run(&mut ctx())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert_eq!(
        error.message(),
        "`sleep 30` did not finish within 200ms; it was killed"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn output_without_a_version_is_an_error_showing_the_output() {
    let error = ExecutableCheck::new("echo")
        .min_version("1.0")
        .version_args(["no numbers here"])
        .run(&mut ctx())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Error);
    assert!(
        error
            .message()
            .contains("`echo no numbers here` printed `no numbers here`"),
        "{}",
        error.message()
    );
}

#[test]
fn versions_are_parsed_from_real_world_banners() {
    assert_eq!(
        parse_version("ffmpeg version 6.1.1-3ubuntu5 Copyright (c) 2000-2023").as_deref(),
        Some("6.1.1")
    );
    assert_eq!(
        parse_version("git version 2.43.0").as_deref(),
        Some("2.43.0")
    );
    assert_eq!(
        parse_version("openjdk version \"21.0.2\" 2024-01-16").as_deref(),
        Some("21.0.2")
    );
    assert_eq!(
        parse_version("x264 0.164.3108").as_deref(),
        Some("0.164.3108")
    );
    assert_eq!(parse_version("ffmpeg version N-113245-gabc"), None);
    assert_eq!(
        compare_versions("6.1.1", "6.1"),
        std::cmp::Ordering::Greater
    );
    assert_eq!(compare_versions("6.0", "6"), std::cmp::Ordering::Equal);
    assert_eq!(compare_versions("4.4.2", "6.0"), std::cmp::Ordering::Less);
    assert_eq!(compare_versions("10.0", "9.9"), std::cmp::Ordering::Greater);
}
