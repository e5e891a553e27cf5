//! The HTML writer: one self-contained page a person reads at a glance, on a laptop or a
//! phone.
//!
//! The overall status is the first thing on the page, in words and colour; then one card per
//! check — failures first, then warnings, skips and passes — with its status, duration,
//! tags, and — when the caller may see them — the error, the suggestion and observed values. The page loads nothing (styles are inline, no
//! scripts, no fonts, no images), so it works behind strict proxies and the endpoint can
//! send it with `Content-Security-Policy: default-src 'none'`. Every value from the report is
//! HTML-escaped: a check message is data, never markup.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use smoketest_core::{format::html, report::{CheckReport, ErrorReport}, Report, Status};
//!
//! let check = CheckReport {
//!     name: "orders::db_write".into(),
//!     status: Status::Fail,
//!     duration_ms: 3.2,
//!     tags: vec![],
//!     error: Some(ErrorReport {
//!         kind: "assertion".into(),
//!         message: Some("<script>alert(1)</script>".into()),
//!         suggestion: None,
//!     }),
//!     message: None,
//!     observed: Default::default(),
//!     steps: vec![],
//! };
//! let report = Report::from_checks(SystemTime::now(), Duration::from_millis(4), vec![check]);
//! let page = String::from_utf8(html::write(&report)).unwrap();
//! assert!(page.starts_with("<!DOCTYPE html>"));
//! assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
//! assert!(!page.contains("<script>"));
//! ```

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use crate::report::CheckHistory;
use crate::{Report, Status};

const STYLE: &str = "\
:root{color-scheme:light dark;--pass:#1a7f37;--warn:#9a6700;--fail:#cf222e;--skip:#6e7781}\
*{box-sizing:border-box}\
body{font:16px/1.45 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;margin:0 auto;max-width:56rem;padding:1rem}\
header{border-radius:.5rem;padding:1rem;color:#fff;margin-bottom:1rem}\
header h1{margin:0;font-size:1.6rem}\
header p{margin:.25rem 0 0}\
.s-pass{background:var(--pass)}.s-warn{background:var(--warn)}.s-fail{background:var(--fail)}.s-skip{background:var(--skip)}\
ol{list-style:none;padding:0;margin:0}\
li{border:1px solid #8884;border-left:.4rem solid var(--skip);border-radius:.4rem;padding:.6rem .8rem;margin:.5rem 0;overflow-wrap:anywhere}\
li.pass{border-left-color:var(--pass)}li.warn{border-left-color:var(--warn)}li.fail{border-left-color:var(--fail)}\
.name{font-weight:600;font-family:ui-monospace,SFMono-Regular,Menlo,monospace}\
.badge{display:inline-block;color:#fff;border-radius:.25rem;padding:0 .4rem;font-size:.8rem;font-weight:700;text-transform:uppercase;margin-right:.4rem}\
.meta{color:#888;font-size:.9rem}\
.error,.note{margin:.35rem 0 0}\
.suggestion{margin:.35rem 0 0;font-style:italic}\
dl{margin:.35rem 0 0;display:grid;grid-template-columns:max-content 1fr;gap:0 .75rem;font-size:.9rem}\
dt{font-family:ui-monospace,monospace}dd{margin:0}\
footer{margin-top:1rem;color:#888;font-size:.85rem}\
.hist{display:flex;flex-wrap:wrap;align-items:center;gap:.2rem .6rem;margin:.35rem 0 0}\
.strip{display:block;max-width:100%;height:1.1rem}\
.r-pass{fill:var(--pass)}.r-warn{fill:var(--warn)}.r-fail{fill:var(--fail)}.r-skip{fill:var(--skip)}\
.reason{font-weight:600}";

/// The report as a complete HTML document. See the [module documentation](self).
pub fn write(report: &Report) -> Vec<u8> {
    write_page(report, None)
}

/// [`write()`], with the page reloading itself every `refresh` seconds when given (a
/// `<meta http-equiv="refresh">`: no script, so the page stays self-contained under the
/// endpoint's `Content-Security-Policy`). The endpoint's `?refresh=10`.
pub fn write_page(report: &Report, refresh: Option<u32>) -> Vec<u8> {
    let mut out = String::with_capacity(4096 + report.checks.len() * 1024);
    let overall = overall(report);
    let title = match &report.service {
        Some(service) => format!("{} — smoke checks: {}", service, word(overall)),
        None => format!("Smoke checks: {}", word(overall)),
    };
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    if let Some(seconds) = refresh {
        let _ = writeln!(out, "<meta http-equiv=\"refresh\" content=\"{seconds}\">");
    }
    let _ = writeln!(out, "<title>{}</title>", escape(&title));
    let _ = writeln!(out, "<style>{STYLE}{STEPS_STYLE}</style>\n</head>\n<body>");

    let _ = write!(
        out,
        "<header class=\"s-{}\">\n<h1>{}</h1>\n<p>",
        overall.as_str(),
        escape(&title)
    );
    let s = &report.summary;
    let _ = write!(
        out,
        "{}: {} passed, {} warned, {} failed, {} skipped in {} ms",
        super::checks(s.total),
        s.passed,
        s.warned,
        s.failed,
        s.skipped,
        report.duration_ms
    );
    out.push_str("</p>\n");
    if let Some(reason) = &report.reason {
        let why = match reason.as_str() {
            "draining" => {
                "draining: this instance is shutting down and leaves rotation; nothing was run"
            }
            "pending" => "pending: the first background run has not finished yet; nothing was run",
            _ => "",
        };
        let _ = writeln!(
            out,
            "<p class=\"reason\">{}</p>",
            if why.is_empty() {
                escape(reason)
            } else {
                why.to_string()
            }
        );
    }
    let mut about = Vec::new();
    if let Some(v) = &report.version {
        about.push(format!("version {}", escape(v)));
    }
    if let Some(r) = &report.release_id {
        about.push(format!("release {}", escape(r)));
    }
    if let Some(group) = &report.group {
        about.push(format!("group {}", escape(group)));
    }
    about.push(format!("started {}", escape(&report.started_at)));
    if report.cached {
        match report.age_ms {
            Some(age) => about.push(format!(
                "cached result, {} s old",
                (age / 100.0).round() / 10.0
            )),
            None => about.push("cached result".to_string()),
        }
    }
    let _ = writeln!(out, "<p>{}</p>\n</header>", about.join(" · "));

    if !report.checks.is_empty() {
        // What needs attention first; registration order within each status.
        let mut checks: Vec<_> = report.checks.iter().collect();
        checks.sort_by_key(|c| match c.status {
            Status::Fail => 0,
            Status::Warn => 1,
            Status::Skip => 2,
            Status::Pass => 3,
        });
        out.push_str("<ol>\n");
        for c in checks {
            let status = c.status.as_str();
            let _ = write!(
                out,
                "<li class=\"{status}\"><span class=\"badge s-{status}\">{}</span><span class=\"name\">{}</span> <span class=\"meta\">{} ms",
                word(c.status),
                escape(&c.name),
                c.duration_ms
            );
            if !c.tags.is_empty() {
                let tags: Vec<_> = c.tags.iter().map(|t| escape(t)).collect();
                let _ = write!(out, " · {}", tags.join(", "));
            }
            if let Some(h) = report.history.get(c.name.as_str()) {
                if h.consecutive_failures > 1 {
                    let _ = write!(out, " · failed {} runs in a row", h.consecutive_failures);
                }
                if c.status == Status::Fail {
                    match &h.last_success {
                        Some(when) => {
                            let _ = write!(out, " · last passed {}", escape(when));
                        }
                        None => out.push_str(" · has not passed yet"),
                    }
                }
            }
            out.push_str("</span>");
            if let Some(e) = &c.error {
                let _ = write!(
                    out,
                    "\n<p class=\"error\"><strong>{}</strong>",
                    escape(&e.kind)
                );
                if let Some(m) = &e.message {
                    let _ = write!(out, ": {}", escape(m));
                }
                out.push_str("</p>");
                if let Some(suggestion) = &e.suggestion {
                    let _ = write!(out, "\n<p class=\"suggestion\">{}</p>", escape(suggestion));
                }
            }
            if let Some(m) = &c.message {
                let _ = write!(out, "\n<p class=\"note\">{}</p>", escape(m));
            }
            if let Some(h) = report.history.get(c.name.as_str()) {
                history_strip(&mut out, h);
            }
            if !c.observed.is_empty() {
                out.push_str("\n<dl>");
                for (key, value) in &c.observed {
                    let _ = write!(
                        out,
                        "<dt>{}</dt><dd>{}</dd>",
                        escape(key),
                        escape(&value.to_string())
                    );
                }
                out.push_str("</dl>");
            }
            write_steps(&mut out, c);
            out.push_str("</li>\n");
        }
        out.push_str("</ol>\n");
    }
    out.push_str("<footer>Served by smoketest. Machine-readable: add <code>?format=json</code>.</footer>\n</body>\n</html>\n");
    out.into_bytes()
}

/// The last runs of a check as a strip of bars (colour: status; height: duration relative to
/// the slowest shown), and the time since its last failure. Inline SVG: nothing to load.
fn history_strip(out: &mut String, history: &CheckHistory) {
    const BAR: usize = 8;
    let runs = &history.runs;
    if runs.is_empty() && history.last_failure.is_none() {
        return;
    }
    out.push_str("\n<div class=\"hist\">");
    if !runs.is_empty() {
        let failed = runs.iter().filter(|r| r.status == Status::Fail).count();
        let slowest = runs.iter().map(|r| r.duration_ms).fold(0.0_f64, f64::max);
        let width = runs.len() * BAR;
        let _ = write!(
            out,
            "<svg class=\"strip\" viewBox=\"0 0 {width} 16\" width=\"{width}\" height=\"16\" role=\"img\" aria-label=\"last {} runs, {failed} failed\">",
            runs.len()
        );
        for (i, run) in runs.iter().enumerate() {
            let height = if slowest > 0.0 {
                (4.0 + 12.0 * run.duration_ms / slowest).round()
            } else {
                4.0
            };
            let kind = run
                .kind
                .as_deref()
                .map(|k| format!(" ({})", escape(k)))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<rect class=\"r-{}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{height}\" rx=\"1\"><title>{} {}{kind}, {} ms</title></rect>",
                run.status.as_str(),
                i * BAR,
                16.0 - height,
                BAR - 2,
                escape(&run.at),
                run.status.as_str(),
                run.duration_ms
            );
        }
        out.push_str("</svg>");
    }
    let since = match &history.last_failure {
        Some(at) => match humantime::parse_rfc3339(at)
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
        {
            Some(ago) if ago.as_secs() == 0 => format!("last failure just now ({})", escape(at)),
            Some(ago) => format!(
                "last failure {} ago ({})",
                humantime::format_duration(Duration::from_secs(ago.as_secs())),
                escape(at)
            ),
            None => format!("last failure {}", escape(at)),
        },
        None => "no failure on record".to_string(),
    };
    let _ = write!(out, "<span class=\"meta\">{since}</span></div>");
}

/// How a scenario's steps look inside their check's card.
const STEPS_STYLE: &str = "\
ol.steps{margin:.4rem 0 0;counter-reset:step}\
ol.steps li{border:0;border-left:.25rem solid var(--skip);border-radius:0;margin:.15rem 0;padding:.05rem .5rem;font-size:.9rem}\
ol.steps li.pass{border-left-color:var(--pass)}ol.steps li.fail{border-left-color:var(--fail)}\
ol.steps li.skip{color:#888}ol.steps .teardown{font-style:italic}";

/// A scenario's steps, as a list inside its check's card: each step's status, name,
/// request and status code, duration, and (when the caller may see them) its error or why
/// it was skipped. Kept apart from the card itself (scenario.rs owns the steps).
fn write_steps(out: &mut String, c: &crate::report::CheckReport) {
    if c.steps.is_empty() {
        return;
    }
    out.push_str("\n<ol class=\"steps\">");
    let mut number = 0;
    for s in &c.steps {
        let status = s.status.as_str();
        let name = if s.teardown {
            format!("<span class=\"teardown\">{}</span>", escape(&s.name))
        } else {
            number += 1;
            format!("{number}. {}", escape(&s.name))
        };
        let _ = write!(
            out,
            "<li class=\"{status}\"><span class=\"badge s-{status}\">{}</span>{name}",
            word(s.status)
        );
        let mut meta = Vec::new();
        if let (Some(method), Some(path), false) = (&s.method, &s.path, s.teardown) {
            meta.push(format!("<code>{} {}</code>", escape(method), escape(path)));
        }
        if let Some(code) = s.status_code {
            meta.push(format!("→ {code}"));
        }
        if let Some(persona) = &s.persona {
            meta.push(format!("as {}", escape(persona)));
        }
        if s.status != Status::Skip {
            meta.push(format!("{} ms", s.duration_ms));
        }
        if !meta.is_empty() {
            let _ = write!(out, " <span class=\"meta\">{}</span>", meta.join(" · "));
        }
        if let Some(e) = &s.error {
            let _ = write!(out, "<br><strong>{}</strong>", escape(&e.kind));
            if let Some(m) = &e.message {
                let _ = write!(out, ": {}", escape(m));
            }
        }
        if let Some(m) = &s.message {
            let _ = write!(out, "<br>{}", escape(m));
        }
        out.push_str("</li>");
    }
    out.push_str("</ol>");
}

/// The page's headline status: a passing run with warnings shows as a warning.
fn overall(report: &Report) -> Status {
    if report.status == Status::Pass && report.summary.warned > 0 {
        Status::Warn
    } else {
        report.status
    }
}

fn word(status: Status) -> &'static str {
    match status {
        Status::Pass => "pass",
        Status::Warn => "warn",
        Status::Fail => "fail",
        Status::Skip => "skipped",
    }
}

/// Escape text for HTML element content and double-quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Detail;
    use crate::format::fixtures;

    fn page(report: &Report) -> String {
        String::from_utf8(write(report)).unwrap()
    }

    #[test]
    fn a_script_in_a_message_is_shown_as_text() {
        let out = page(&fixtures::mixed());
        assert!(!out.contains("<script"), "{out}");
        assert!(
            out.contains(
                "expected 1 row, found 0 &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"
            )
        );
        assert!(out.contains("Look at &lt;b&gt;the&lt;/b&gt; logs &amp; retry."));
    }

    #[test]
    fn failing_run_shows_fail_first_and_every_check_with_its_status() {
        let out = page(&fixtures::mixed());
        assert!(out.contains("<header class=\"s-fail\">"));
        assert!(out.contains("<title>orders-api — smoke checks: fail</title>"));
        for (status, name) in [
            ("pass", "db::ping"),
            ("warn", "disk::free"),
            ("fail", "orders::db_write"),
            ("fail", "payments::api"),
            ("skip", "mail::smtp"),
        ] {
            let card = format!("<li class=\"{status}\"><span class=\"badge s-{status}\">");
            let at = out
                .find(&format!("<span class=\"name\">{name}</span>"))
                .unwrap();
            let card_at = out[..at].rfind("<li ").unwrap();
            assert!(
                out[card_at..].starts_with(&card),
                "{name} is not shown as {status}"
            );
        }
        assert!(out.contains("3.25 ms"));
        let at = |name: &str| out.find(&format!(">{name}<")).unwrap();
        assert!(
            at("orders::db_write") < at("payments::api"),
            "registration order within a status"
        );
        assert!(
            at("payments::api") < at("disk::free"),
            "failures before warnings"
        );
        assert!(at("disk::free") < at("mail::smtp") && at("mail::smtp") < at("db::ping"));
        assert!(out.contains("<strong>timeout</strong>: did not finish within 2s"));
        assert!(out.contains("<p class=\"note\">only 9% free</p>"));
        assert!(out.contains("<p class=\"note\">SMTP_HOST is not set</p>"));
        assert!(out.contains("<dt>free_pct</dt><dd>9</dd>"));
        assert!(out.contains("version 1.4.2 · release 9f2c1ab"));
    }

    #[test]
    fn passing_run_with_a_warning_shows_warn() {
        let out = page(&fixtures::passing());
        assert!(out.contains("<header class=\"s-warn\">"));
        assert!(out.contains("3 checks: 1 passed, 1 warned, 0 failed, 1 skipped"));
    }

    #[test]
    fn restricted_report_shows_no_messages() {
        let out = page(&fixtures::mixed().restrict(Detail::Checks));
        assert!(out.contains("<strong>assertion</strong></p>"));
        assert!(!out.contains("expected 1 row"));
        assert!(!out.contains("SMTP_HOST"));
        let status_only = page(&fixtures::mixed().restrict(Detail::Status));
        assert!(!status_only.contains("<ol>"));
        assert!(!status_only.contains("db::ping"));
    }

    #[test]
    fn page_is_self_contained_and_fits_a_phone() {
        let out = page(&fixtures::mixed());
        assert!(out.contains("name=\"viewport\" content=\"width=device-width, initial-scale=1\""));
        for external in [
            "<link", "<script", "<img", "src=", "href=", "url(", "@import",
        ] {
            assert!(!out.contains(external), "page loads something: {external}");
        }
    }

    #[test]
    fn group_history_is_shown_on_failing_checks() {
        let mut report = fixtures::mixed();
        report.group = Some("ready".into());
        report.history.insert(
            "orders::db_write".into(),
            crate::report::CheckHistory {
                consecutive_failures: 4,
                last_success: Some("2026-11-22T08:40:41.500Z".into()),
                last_failure: None,
                runs: Vec::new(),
            },
        );
        let out = page(&report);
        assert!(out.contains("group ready · started"));
        assert!(out.contains(" · failed 4 runs in a row · last passed 2026-11-22T08:40:41.500Z"));
    }

    #[test]
    fn history_is_a_strip_of_bars_one_per_run_coloured_by_status() {
        let mut report = fixtures::passing();
        let run = |status: Status, duration_ms: f64, kind: Option<&str>| crate::report::RunRecord {
            at: "2026-11-22T08:40:41.500Z".into(),
            status,
            duration_ms,
            kind: kind.map(str::to_string),
        };
        report.history.insert(
            "db::ping".into(),
            crate::report::CheckHistory {
                last_failure: Some("2026-11-22T08:40:40.000Z".into()),
                runs: vec![
                    run(Status::Pass, 2.0, None),
                    run(Status::Fail, 8.0, Some("timeout")),
                    run(Status::Warn, 4.0, Some("slow")),
                ],
                ..Default::default()
            },
        );
        let out = page(&report);
        assert!(out.contains(
            "<svg class=\"strip\" viewBox=\"0 0 24 16\" width=\"24\" height=\"16\" role=\"img\" aria-label=\"last 3 runs, 1 failed\">"
        ));
        // Height follows the duration, relative to the slowest run shown.
        assert!(out.contains("<rect class=\"r-pass\" x=\"0\" y=\"9\" width=\"6\" height=\"7\""));
        assert!(out.contains("<rect class=\"r-fail\" x=\"8\" y=\"0\" width=\"6\" height=\"16\""));
        assert!(out.contains("<title>2026-11-22T08:40:41.500Z warn (slow), 4 ms</title>"));
        assert!(out.contains("last failure "));
        assert!(out.contains("(2026-11-22T08:40:40.000Z)"));
    }

    #[test]
    fn a_report_without_a_run_says_why_and_the_page_can_reload_itself() {
        let mut report = Report::from_checks(
            std::time::SystemTime::now(),
            std::time::Duration::ZERO,
            vec![],
        );
        report.status = Status::Fail;
        report.reason = Some("draining".into());
        let out = String::from_utf8(write_page(&report, Some(15))).unwrap();
        assert!(out.contains("<meta http-equiv=\"refresh\" content=\"15\">"));
        assert!(out.contains("<p class=\"reason\">draining: this instance is shutting down"));
        assert!(
            !page(&report).contains("http-equiv"),
            "no refresh unless asked"
        );
    }

    #[test]
    fn cached_report_says_how_old_it_is() {
        let mut report = fixtures::passing();
        report.cached = true;
        report.age_ms = Some(12_345.0);
        assert!(page(&report).contains("cached result, 12.3 s old"));
    }
}
