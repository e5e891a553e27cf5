//! On a terminal: colour and a spinner with the elapsed time; `NO_COLOR` turns colour off.
//! The terminal is a real pseudo-terminal from util-linux `script` (Debian: bsdutils,
//! an essential package).

mod support;

use std::process::Command;

use support::*;

/// Run the binary under a pseudo-terminal; stdout and stderr arrive mixed, as on a screen.
fn on_a_terminal(args: &[&str], no_color: bool) -> (i32, String) {
    let command = std::iter::once(env!("CARGO_BIN_EXE_smoketest"))
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = Command::new("script");
    script
        .args(["-qec", &command, "/dev/null"])
        .env_remove("SMOKETEST_TOKEN")
        .env_remove("NO_COLOR");
    if no_color {
        script.env("NO_COLOR", "1");
    }
    let out = script.output().expect("util-linux `script` runs");
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

/// A service that fails its first three requests, so that a `--wait` lasts a few polls.
fn slow_to_pass() -> Server {
    let (up, down) = (healthy("r1"), failing("r1"));
    Server::start(move |n| {
        if n < 3 {
            Action::Smoke(down.clone())
        } else {
            Action::Smoke(up.clone())
        }
    })
}

#[test]
fn a_terminal_gets_colour_and_a_spinner_with_the_elapsed_time() {
    let server = slow_to_pass();
    let url = server.url();
    let (code, screen) = on_a_terminal(
        &["check", &url, "--wait", "10s", "--interval", "150ms"],
        false,
    );
    assert_eq!(code, 0, "{screen}");
    assert!(
        screen.contains("\x1b[1;32mPASS"),
        "coloured verdict: {screen:?}"
    );
    assert!(
        screen.contains("\r\x1b[2K"),
        "a spinner line redrawn: {screen:?}"
    );
    // Frames look like "\r\x1b[2K⠙ poll 2: 0 of 1 endpoint(s) pass; …  0.2s".
    let frames: Vec<&str> = screen.split("\r\x1b[2K").skip(1).collect();
    assert!(
        frames.iter().any(|f| f.contains(" poll ")
            && f.trim_end().ends_with('s')
            && f.trim_end()
                .trim_end_matches('s')
                .rsplit(' ')
                .next()
                .unwrap()
                .parse::<f64>()
                .is_ok()),
        "the spinner shows the poll and the elapsed seconds: {frames:?}"
    );
    assert!(
        !screen.contains("smoketest: 0 of 1"),
        "no log lines on a terminal: {screen:?}"
    );
}

#[test]
fn no_color_turns_colour_off_on_a_terminal() {
    let server = Server::smoke(failing("r1"));
    let url = server.url();
    let (code, screen) = on_a_terminal(&["check", &url], true);
    assert_eq!(code, 1, "{screen}");
    assert!(screen.contains("FAIL"), "{screen}");
    assert!(
        !screen.contains("\x1b[1;"),
        "no colour with NO_COLOR: {screen:?}"
    );
}
