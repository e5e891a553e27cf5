//! `smoketest watch`: one line per state change, never exits because an endpoint fails,
//! exits 0 on SIGTERM.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use support::*;

struct Watch {
    child: Child,
    lines: Receiver<String>,
}

impl Watch {
    fn start(args: &[&str]) -> Watch {
        let mut child = Command::new(env!("CARGO_BIN_EXE_smoketest"))
            .arg("watch")
            .args(args)
            .env_remove("SMOKETEST_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Watch { child, lines }
    }

    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(10))
            .expect("a line within 10s")
    }

    fn no_line_for(&self, quiet: Duration) {
        if let Ok(line) = self.lines.recv_timeout(quiet) {
            panic!("no state change, yet a line: {line}");
        }
    }

    /// SIGTERM, then the exit code.
    fn terminate(mut self) -> i32 {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.child
            .wait()
            .unwrap()
            .code()
            .expect("exited, not killed")
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fast_watch(url: &str, format: &str) -> Watch {
    let mut args = vec![
        url,
        "--interval",
        "50ms",
        // Long enough that a busy machine does not turn a slow poll into a state change.
        "--timeout",
        "1s",
        "--format",
        format,
    ];
    args.extend_from_slice(FAST);
    Watch::start(&args)
}

#[test]
fn watch_prints_one_json_line_per_state_change() {
    let server = Server::smoke(healthy("r1"));
    let watch = fast_watch(&server.url(), "json");

    let line: serde_json::Value = serde_json::from_str(&watch.next_line()).unwrap();
    assert_eq!(line["state"], "pass");
    assert_eq!(line["release_id"], "r1");
    watch.no_line_for(Duration::from_millis(400));
    assert!(
        server.requests() >= 3,
        "it kept polling: {}",
        server.requests()
    );

    let down = failing("r1");
    server.set_script(move |_| Action::Smoke(down.clone()));
    let line: serde_json::Value = serde_json::from_str(&watch.next_line()).unwrap();
    assert_eq!(line["state"], "fail");
    assert_eq!(line["failed"][0]["name"], "orders::db_write");
    assert_eq!(line["failed"][0]["kind"], "assertion");
    assert_eq!(line["failed"][0]["message"], "expected 1 row, found 0");
    watch.no_line_for(Duration::from_millis(400));

    server.set_script(|_| status(503));
    let line: serde_json::Value = serde_json::from_str(&watch.next_line()).unwrap();
    assert_eq!(line["state"], "error");
    assert_eq!(line["error"]["kind"], "http_status");
    assert_eq!(line["error"]["http_status"], 503);

    let up = healthy("r2");
    server.set_script(move |_| Action::Smoke(up.clone()));
    let line: serde_json::Value = serde_json::from_str(&watch.next_line()).unwrap();
    assert_eq!(line["state"], "pass");
    assert_eq!(line["release_id"], "r2");

    assert_eq!(watch.terminate(), 0, "SIGTERM ends the watch cleanly");
}

#[test]
fn watch_says_what_failed_in_its_human_lines() {
    let server = Server::smoke(failing("r1"));
    let watch = fast_watch(&server.url(), "human");
    let line = watch.next_line();
    assert!(line.contains(&server.url()), "{line}");
    assert!(line.contains("FAIL"), "{line}");
    assert!(
        line.contains("orders::db_write (assertion: expected 1 row, found 0)"),
        "{line}"
    );
    assert!(!line.contains('\x1b'), "no colour into a pipe: {line}");

    let up = healthy("r1");
    server.set_script(move |_| Action::Smoke(up.clone()));
    let line = watch.next_line();
    assert!(
        line.contains("PASS") && line.contains("2/2 checks passed"),
        "{line}"
    );
}

#[test]
fn watch_keeps_running_while_the_endpoint_is_unreachable() {
    let url = format!("http://{}/smoketest", free_addr());
    let mut watch = fast_watch(&url, "human");
    let line = watch.next_line();
    assert!(
        line.contains("ERROR") && line.contains("tcp_refused"),
        "{line}"
    );
    watch.no_line_for(Duration::from_millis(800));
    assert!(
        watch.child.try_wait().unwrap().is_none(),
        "an unreachable endpoint is a state, not a reason to exit"
    );
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn watch_prints_a_healthy_endpoint_without_waiting_for_a_hung_one() {
    let healthy_server = Server::smoke(healthy("r1"));
    // Accepts connections (the kernel's backlog) and never answers: a hung replica.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_url = format!("http://{}/smoketest", hung.local_addr().unwrap());
    let mut args = vec![
        hung_url.as_str(),
        "--interval",
        "50ms",
        "--timeout",
        "60s",
        "--format",
        "json",
    ];
    let healthy_url = healthy_server.url();
    args.insert(1, &healthy_url);
    args.extend_from_slice(FAST);
    let watch = Watch::start(&args);
    // Within next_line's 10 s, far inside the hung endpoint's 60 s timeout.
    let line: serde_json::Value = serde_json::from_str(&watch.next_line()).unwrap();
    assert_eq!(line["state"], "pass", "{line}");
    assert_eq!(line["url"], healthy_url.as_str(), "{line}");
    drop(hung);
}
