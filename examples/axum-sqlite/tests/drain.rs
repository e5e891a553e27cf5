//! The example binary on SIGTERM: `/readyz` turns 503 `draining` at once while `/livez`,
//! the API and the deploy gate still answer, then the process stops on its own with exit
//! status 0. SQLite in a temporary directory: no server needed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Generous bound for anything to happen on a busy machine; never an assertion on speed.
const PATIENCE: Duration = Duration::from_secs(120);

struct Service {
    child: Child,
    lines: mpsc::Receiver<String>,
    dir: std::path::PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Service {
    /// Start the example on a free loopback port; its address (`127.0.0.1:port`).
    fn start(binary: &str, drain_secs: u64) -> (Service, String) {
        let dir = std::env::temp_dir().join(format!(
            "smoketest-drain-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new(binary)
            .current_dir(&dir)
            .env(
                "DATABASE_URL",
                format!("sqlite:{}", dir.join("orders.db").display()),
            )
            .env("SMOKETEST_EXAMPLE_ADDR", "127.0.0.1:0")
            .env("SMOKETEST_EXAMPLE_DRAIN_SECS", drain_secs.to_string())
            .env("ORDERS_API_TOKENS", format!("viewer:{VIEWER}"))
            .env_remove("SMOKETEST_TOKEN")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the example binary");
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        // Keep reading for as long as the example runs, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        let mut service = Service { child, lines, dir };
        let url = service
            .wait_for_line(|l| l.trim().starts_with("smoke checks: http://"))
            .expect("the example printed its URL");
        let addr = url
            .trim()
            .trim_start_matches("smoke checks: http://")
            .trim_end_matches("/smoketest")
            .to_string();
        (service, addr)
    }

    fn wait_for_line(&mut self, wanted: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + PATIENCE;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if wanted(&line) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Wait for the process to exit by itself.
    fn wait_for_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the example did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The orders API's viewer token in these tests (the API requires one).
const VIEWER: &str = "drain-test-viewer-token-0001";

/// GET `path` over a new connection: the status code and the body.
fn get(addr: &str, path: &str) -> (u16, String) {
    get_as(addr, path, "")
}

/// GET `path` with `extra` header lines (each ending in `\r\n`).
fn get_as(addr: &str, path: &str, extra: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("the example is listening");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// Poll `path` until it answers `status` (the example's background readiness run takes a
/// moment to finish after start).
fn until(addr: &str, path: &str, status: u16) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (got, body) = get(addr, path);
        if got == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never answered {status}; last {got}: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn terminate(pid: &str) {
    let status = Command::new("kill").args(["-TERM", pid]).status().unwrap();
    assert!(status.success(), "kill -TERM {pid}");
}

#[test]
fn on_sigterm_readiness_drains_while_everything_else_answers_then_the_process_exits_0() {
    // The drain is long enough that the requests below land inside it on any machine; the
    // test then waits for the process to stop by itself.
    let (mut service, addr) = Service::start(env!("CARGO_BIN_EXE_smoketest-example-axum"), 15);
    until(&addr, "/readyz", 200);
    assert_eq!(get(&addr, "/livez").0, 200);

    terminate(&service.pid());
    let body = until(&addr, "/readyz", 503);
    let report: serde_json::Value = serde_json::from_str(&body).expect("a JSON report");
    assert_eq!(report["status"], "fail", "{report:#}");
    assert_eq!(report["reason"], "draining", "{report:#}");

    let (live, body) = get(&addr, "/livez");
    assert_eq!(live, 200, "liveness stays up while draining: {body}");
    let (api, body) = get_as(
        &addr,
        "/orders",
        &format!("Authorization: Bearer {VIEWER}\r\n"),
    );
    assert_eq!(api, 200, "the API still answers while draining: {body}");
    let (gate, body) = get(&addr, "/smoketest");
    assert_eq!(gate, 200, "the deploy gate still runs: {body}");

    let status = service.wait_for_exit();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        service
            .wait_for_line(|l| l.contains("orders-example stopped"))
            .is_some(),
        "the example returned from main normally"
    );
}
