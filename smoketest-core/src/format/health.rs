//! The IETF health check writer: `application/health+json` as described by
//! draft-inadarei-api-health-check, for service catalogues and monitors that speak it.
//!
//! `status` is `pass`, `warn` (no failure, but a warning) or `fail`; `version`,
//! `releaseId` and `serviceId` come from the builder. `checks` is keyed
//! `component:measurement`: every check contributes `{name}:responseTime` (its duration in
//! `ms`), and each value it recorded with `Context::observe` contributes `{name}:{key}`.
//! The draft forbids a colon in the component name, so the `::` of module-path names
//! becomes `.` in the key; `componentId` keeps the name as it is. A skipped check reports
//! `pass` (the draft has no "skipped") with `output` saying it was skipped. `output` carries
//! the failure, warning or skip message when the caller may see it, else the error kind.
//! A scenario check's steps are observed values too: `{name}:step{n}` (teardowns
//! `{name}:teardown{n}`) with the step's duration in `ms`, its status, and an `output`
//! naming the step, its request and status code, and its error when the caller may see it.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use smoketest_core::{format::health, report::CheckReport, Report, Status};
//!
//! let check = CheckReport {
//!     name: "db::ping".into(),
//!     status: Status::Pass,
//!     duration_ms: 3.1,
//!     tags: vec![],
//!     error: None,
//!     message: None,
//!     observed: Default::default(),
//!     steps: vec![],
//! };
//! let mut report = Report::from_checks(SystemTime::UNIX_EPOCH, Duration::from_millis(4), vec![check]);
//! report.service = Some("orders-api".into());
//! let body: serde_json::Value = serde_json::from_slice(&health::write(&report)).unwrap();
//! assert_eq!(body["status"], "pass");
//! assert_eq!(body["serviceId"], "orders-api");
//! assert_eq!(body["checks"]["db.ping:responseTime"][0]["observedValue"], 3.1);
//! assert_eq!(body["checks"]["db.ping:responseTime"][0]["observedUnit"], "ms");
//! ```

use serde_json::{Map, Value, json};

use crate::report::CheckReport;
use crate::{Report, Status};

/// The report as an `application/health+json` document. See the [module documentation](self).
pub fn write(report: &Report) -> Vec<u8> {
    let status = match report.status {
        Status::Fail => "fail",
        _ if report.summary.warned > 0 => "warn",
        _ => "pass",
    };
    let mut body = Map::new();
    body.insert("status".into(), json!(status));
    if let Some(v) = &report.version {
        body.insert("version".into(), json!(v));
    }
    if let Some(r) = &report.release_id {
        body.insert("releaseId".into(), json!(r));
    }
    if let Some(s) = &report.service {
        body.insert("serviceId".into(), json!(s));
    }
    let s = &report.summary;
    body.insert(
        "description".into(),
        json!(format!(
            "smoke checks: {} passed, {} warned, {} failed, {} skipped",
            s.passed, s.warned, s.failed, s.skipped
        )),
    );
    if report.status == Status::Fail {
        let failed: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.name.as_str())
            .collect();
        let output = if failed.is_empty() {
            format!("{} checks failed", s.failed)
        } else {
            format!("failed: {}", failed.join(", "))
        };
        body.insert("output".into(), json!(output));
    }
    if !report.checks.is_empty() {
        let mut checks = Map::new();
        for c in &report.checks {
            let component = component_name(&c.name);
            let mut response_time = entry(c, &report.started_at);
            response_time.insert("observedValue".into(), json!(c.duration_ms));
            response_time.insert("observedUnit".into(), json!("ms"));
            checks.insert(
                format!("{component}:responseTime"),
                Value::Array(vec![Value::Object(response_time)]),
            );
            for (key, value) in &c.observed {
                let mut observed = entry(c, &report.started_at);
                observed.insert("observedValue".into(), value.clone());
                checks.insert(
                    format!("{component}:{}", key.replace(':', ".")),
                    Value::Array(vec![Value::Object(observed)]),
                );
            }
            for (measurement, step) in steps(c, &report.started_at) {
                checks.insert(
                    format!("{component}:{measurement}"),
                    Value::Array(vec![Value::Object(step)]),
                );
            }
        }
        body.insert("checks".into(), Value::Object(checks));
    }
    let mut out = serde_json::to_vec_pretty(&Value::Object(body)).expect("serializes");
    out.push(b'\n');
    out
}

/// The fields every entry of one check shares.
fn entry(c: &CheckReport, time: &str) -> Map<String, Value> {
    let mut e = Map::new();
    e.insert("componentId".into(), json!(c.name));
    e.insert("componentType".into(), json!("component"));
    e.insert(
        "status".into(),
        json!(match c.status {
            Status::Pass | Status::Skip => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }),
    );
    e.insert("time".into(), json!(time));
    let output = match (&c.error, &c.message, c.status) {
        (Some(err), _, _) => Some(match &err.message {
            Some(m) => format!("{}: {m}", err.kind),
            None => err.kind.clone(),
        }),
        (None, Some(m), Status::Skip) => Some(format!("skipped: {m}")),
        (None, None, Status::Skip) => Some("skipped".to_string()),
        (None, Some(m), _) => Some(m.clone()),
        (None, None, _) => None,
    };
    if let Some(output) = output {
        e.insert("output".into(), json!(output));
    }
    e
}

/// A scenario's steps as measurements: `step1`, `step2`, …, `teardown1`, ….
fn steps(c: &CheckReport, time: &str) -> Vec<(String, Map<String, Value>)> {
    let (mut step, mut teardown) = (0, 0);
    c.steps
        .iter()
        .map(|s| {
            let measurement = if s.teardown {
                teardown += 1;
                format!("teardown{teardown}")
            } else {
                step += 1;
                format!("step{step}")
            };
            let mut e = Map::new();
            e.insert("componentId".into(), json!(c.name));
            e.insert("componentType".into(), json!("component"));
            e.insert(
                "status".into(),
                json!(match s.status {
                    Status::Pass | Status::Skip => "pass",
                    Status::Warn => "warn",
                    Status::Fail => "fail",
                }),
            );
            e.insert("time".into(), json!(time));
            e.insert("observedValue".into(), json!(s.duration_ms));
            e.insert("observedUnit".into(), json!("ms"));
            let mut output = s.name.clone();
            if let (Some(method), Some(path), false) = (&s.method, &s.path, s.teardown) {
                output.push_str(&format!(": {method} {path}"));
            }
            if let Some(code) = s.status_code {
                output.push_str(&format!(" → {code}"));
            }
            match (&s.error, s.status) {
                (Some(err), _) => {
                    output.push_str(&format!("; {}", err.kind));
                    if let Some(m) = &err.message {
                        output.push_str(&format!(": {m}"));
                    }
                }
                (None, Status::Skip) => output.push_str("; skipped"),
                _ => {}
            }
            e.insert("output".into(), json!(output));
            (measurement, e)
        })
        .collect()
}

/// The draft forbids `:` in a component name; module paths use `::`.
fn component_name(name: &str) -> String {
    name.replace("::", ".").replace(':', ".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Detail;
    use crate::format::fixtures;

    fn doc(report: &Report) -> Value {
        serde_json::from_slice(&write(report)).unwrap()
    }

    #[test]
    fn failing_run_has_status_fail_and_every_check_keyed_component_measurement() {
        let body = doc(&fixtures::mixed());
        assert_eq!(body["status"], "fail");
        assert_eq!(body["version"], "1.4.2");
        assert_eq!(body["releaseId"], "9f2c1ab");
        assert_eq!(body["serviceId"], "orders-api");
        assert_eq!(body["output"], "failed: orders::db_write, payments::api");
        let checks = body["checks"].as_object().unwrap();
        let mut keys: Vec<&str> = checks.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "db.ping:responseTime",
                "disk.free:free_pct",
                "disk.free:responseTime",
                "mail.smtp:responseTime",
                "orders.db_write:responseTime",
                "payments.api:responseTime",
            ]
        );
        for key in keys {
            let (component, measurement) = key.split_once(':').unwrap();
            assert!(!component.contains(':') && !measurement.contains(':'));
        }
        let pass = &checks["db.ping:responseTime"][0];
        assert_eq!(pass["status"], "pass");
        assert_eq!(pass["componentId"], "db::ping");
        assert_eq!(pass["observedValue"], 3.25);
        assert_eq!(pass["observedUnit"], "ms");
        assert_eq!(pass["time"], "2026-11-22T08:47:21.000Z");
        assert!(pass.get("output").is_none());

        let warn = &checks["disk.free:responseTime"][0];
        assert_eq!(warn["status"], "warn");
        assert_eq!(warn["output"], "only 9% free");
        assert_eq!(checks["disk.free:free_pct"][0]["observedValue"], 9);

        let fail = &checks["orders.db_write:responseTime"][0];
        assert_eq!(fail["status"], "fail");
        assert_eq!(
            fail["output"],
            "assertion: expected 1 row, found 0 <script>alert(\"x\")</script>"
        );
        let skip = &checks["mail.smtp:responseTime"][0];
        assert_eq!(skip["status"], "pass");
        assert_eq!(skip["output"], "skipped: SMTP_HOST is not set");
    }

    #[test]
    fn scenario_steps_are_observed_values() {
        let body = doc(&fixtures::scenario());
        let checks = &body["checks"];
        let read = &checks["orders.lifecycle[clerk]:step2"][0];
        assert_eq!(read["status"], "fail");
        assert_eq!(read["componentId"], "orders::lifecycle[clerk]");
        assert_eq!(read["observedValue"], 1.5);
        assert_eq!(
            read["output"],
            "read: GET /orders/7 → 500; http_status: GET /orders/7 as clerk: expected a 2xx status, got 500"
        );
        assert_eq!(
            checks["orders.lifecycle[clerk]:step3"][0]["output"],
            "list; skipped"
        );
        assert_eq!(
            checks["orders.lifecycle[clerk]:teardown1"][0]["output"],
            "teardown: DELETE /orders/7 → 204"
        );
        let public = doc(&fixtures::scenario().restrict(Detail::Checks));
        assert_eq!(
            public["checks"]["orders.lifecycle[clerk]:step2"][0]["output"],
            "read: GET /orders/7 → 500; http_status"
        );
    }

    #[test]
    fn passing_run_with_a_warning_is_warn() {
        let body = doc(&fixtures::passing());
        assert_eq!(body["status"], "warn");
        assert!(body.get("output").is_none());
    }

    #[test]
    fn anonymous_detail_shows_kinds_not_messages() {
        let body = doc(&fixtures::mixed().restrict(Detail::Checks));
        assert_eq!(
            body["checks"]["orders.db_write:responseTime"][0]["output"],
            "assertion"
        );
        assert_eq!(
            body["checks"]["mail.smtp:responseTime"][0]["output"],
            "skipped"
        );
        assert!(body["checks"].get("disk.free:free_pct").is_none());
        let status_only = doc(&fixtures::mixed().restrict(Detail::Status));
        assert_eq!(status_only["status"], "fail");
        assert!(status_only.get("checks").is_none());
    }
}
