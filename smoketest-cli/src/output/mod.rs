//! Writing a [`Decision`](crate::gate::Decision): for people, as JSON, or as JUnit XML.

pub mod human;
pub mod json;
pub mod junit;

use std::io::IsTerminal;
use std::time::Duration;

use crate::cli::ColorChoice;

/// `12.4ms`, `1.52s`, `2m 5s`: short enough for a summary line.
pub fn format_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.1}ms", d.as_secs_f64() * 1000.0)
    } else if d < Duration::from_secs(60) {
        format!("{:.2}s", d.as_secs_f64())
    } else {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    }
}

/// Whether to colour standard output: `--color`, then `NO_COLOR` (no-color.org: set and
/// not empty), then whether standard output is a terminal.
pub fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stdout().is_terminal()
        }
    }
}

/// ANSI styling that is a no-op when colour is off.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// Whether to emit escape codes.
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// Green, bold.
    pub fn pass(self, text: &str) -> String {
        self.paint("1;32", text)
    }

    /// Red, bold.
    pub fn fail(self, text: &str) -> String {
        self.paint("1;31", text)
    }

    /// Yellow, bold.
    pub fn warn(self, text: &str) -> String {
        self.paint("1;33", text)
    }

    /// Dim.
    pub fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }
}

/// Redact text about to be printed with the library's own redactor (credentials in URLs,
/// secret-bearing keys, cookies, well-known token formats) plus the CLI's own token: a
/// server may echo what it was sent, and a report from an older service version may carry
/// secrets its own redactor missed. Nothing the CLI prints skips this.
pub fn redact(text: String, token: Option<&str>) -> String {
    let mut redactor = smoketest_core::redact::Redactor::new();
    if let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) {
        redactor = redactor.with_value(token, None);
    }
    redactor.redact(&text).into_owned()
}
