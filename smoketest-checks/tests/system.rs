//! System checks against the real machine.
#![cfg(feature = "system")]

use std::time::Duration;

use smoketest_checks::system::{DiskSpaceCheck, MemoryCheck, WritableDirCheck};
use smoketest_core::{Context, ErrorKind, Outcome, SmokeCheck};

fn ctx() -> Context {
    Context::detached("system", Duration::from_secs(10))
}

fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("smoketest-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn disk_with_room_passes_and_reports_what_it_measured() {
    let mut ctx = ctx();
    let check = DiskSpaceCheck::new(std::env::temp_dir()).min_free_bytes(1);
    assert_eq!(check.run(&mut ctx).await.unwrap(), Outcome::Pass);
    let free = ctx.observed()["free_bytes"].as_u64().unwrap();
    let total = ctx.observed()["total_bytes"].as_u64().unwrap();
    assert!(free > 0 && free <= total, "{free} of {total}");
    assert!(
        ctx.observed()["mount_point"]
            .as_str()
            .unwrap()
            .starts_with('/')
    );
}

#[tokio::test]
async fn disk_below_the_byte_threshold_is_a_resource_failure() {
    let check = DiskSpaceCheck::new(std::env::temp_dir()).min_free_bytes(u64::MAX);
    let error = check.run(&mut ctx()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Resource);
    assert!(error.message().starts_with("only "), "{}", error.message());
    assert!(
        error.message().ends_with("want at least 16.0 EiB"),
        "{}",
        error.message()
    );
    assert!(error.suggestion().unwrap().contains("Free up space"));
}

#[tokio::test]
async fn disk_below_the_percent_threshold_is_a_resource_failure() {
    let check = DiskSpaceCheck::new("/").min_free_percent(100.1);
    let error = check.run(&mut ctx()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Resource);
    assert!(
        error.message().ends_with("want at least 100.1%"),
        "{}",
        error.message()
    );
}

#[tokio::test]
async fn disk_of_a_missing_path_is_a_resource_failure() {
    let error = DiskSpaceCheck::new("/smoketest/no/such/volume")
        .run(&mut ctx())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Resource);
    assert!(
        error
            .message()
            .starts_with("cannot measure free disk under `/smoketest/no/such/volume`"),
        "{}",
        error.message()
    );
}

#[tokio::test]
async fn memory_passes_a_low_bar_and_fails_an_impossible_one() {
    let mut ctx = ctx();
    assert_eq!(
        MemoryCheck::new()
            .min_available_bytes(1)
            .run(&mut ctx)
            .await
            .unwrap(),
        Outcome::Pass
    );
    let available = ctx.observed()["available_bytes"].as_u64().unwrap();
    assert!(available > 0);
    assert!(ctx.observed().contains_key("cgroup_limited"));

    let error = MemoryCheck::new()
        .min_available_bytes(u64::MAX)
        .run(&mut ctx)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Resource);
    assert!(
        error.message().contains("memory available"),
        "{}",
        error.message()
    );
    assert!(error.suggestion().unwrap().contains("memory limit"));
}

#[tokio::test]
async fn writable_dir_passes_and_leaves_nothing_behind() {
    let dir = scratch_dir("writable");
    let mut ctx = ctx();
    assert_eq!(
        WritableDirCheck::new(&dir).run(&mut ctx).await.unwrap(),
        Outcome::Pass
    );
    assert!(ctx.finish().await.is_empty());
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "the probe file was removed"
    );
    std::fs::remove_dir(&dir).unwrap();
}

#[tokio::test]
async fn missing_dir_is_not_writable() {
    let dir = scratch_dir("gone");
    std::fs::remove_dir(&dir).unwrap();
    let mut ctx = ctx();
    let error = WritableDirCheck::new(&dir).run(&mut ctx).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Resource);
    assert!(
        error
            .message()
            .contains("is not writable: could not create a file"),
        "{}",
        error.message()
    );
    assert!(
        error.message().contains("No such file or directory"),
        "{}",
        error.message()
    );
    assert!(
        ctx.finish().await.is_empty(),
        "cleanup of a file never created is not an error"
    );
}

#[tokio::test]
async fn a_file_in_place_of_the_dir_is_not_writable() {
    let dir = scratch_dir("file");
    let file = dir.join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let error = WritableDirCheck::new(&file)
        .run(&mut ctx())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Resource);
    assert!(
        error.message().contains("Not a directory"),
        "{}",
        error.message()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
