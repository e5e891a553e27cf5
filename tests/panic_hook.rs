//! A panicking check's message reaches stderr (the container log) only redacted, while a
//! panic elsewhere in the service still gets the hook it had before.
//!
//! The default panic hook prints before the runner can catch the panic, so this runs as
//! its own process (`harness = false`): the parent re-runs this binary as a child that
//! serves a panicking check, and reads the child's stderr.

use std::process::Command;

use smoketest::{Outcome, Selection, Smoketest, from_fn};

const CHILD: &str = "SMOKETEST_PANIC_HOOK_CHILD";
const SECRET: &str = "hunter2-panic-s3cret";

fn child() {
    // A hook of the application's own, installed first, must keep working for its panics.
    std::panic::set_hook(Box::new(|_| eprintln!("the application's own hook ran")));
    let smoke = Smoketest::builder()
        .without_discovery()
        .check(from_fn("config::load", |_| {
            Box::pin(async {
                panic!("cannot parse postgres://app:{SECRET}@db.internal/orders");
                #[allow(unreachable_code)]
                Ok(Outcome::Pass)
            })
        }))
        .build()
        .expect("builds");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let report = runtime.block_on(smoke.run(&Selection::all())).unwrap();
    let message = report.checks[0]
        .error
        .as_ref()
        .unwrap()
        .message
        .clone()
        .unwrap();
    assert!(!message.contains(SECRET), "{message}");
    // A panic outside any check goes to the application's hook.
    let _ = std::thread::spawn(|| panic!("outside")).join();
}

fn main() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, "1")
        .output()
        .expect("run the child");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut failed = Vec::new();
    if !output.status.success() {
        failed.push(format!("the child failed: {stderr}"));
    }
    if stderr.contains(SECRET) {
        failed.push(format!("the secret reached stderr: {stderr}"));
    }
    if !stderr.contains("panicked") || !stderr.contains("db.internal") {
        failed.push(format!(
            "the panic was not reported (redacted) on stderr: {stderr}"
        ));
    }
    if !stderr.contains("the application's own hook ran") {
        failed.push(format!("the application's hook was lost: {stderr}"));
    }
    for f in &failed {
        eprintln!("FAILED: {f}");
    }
    println!(
        "panic_hook: {} passed, {} failed",
        usize::from(failed.is_empty()),
        usize::from(!failed.is_empty())
    );
    if !failed.is_empty() {
        std::process::exit(1);
    }
}
