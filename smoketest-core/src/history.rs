//! History: the last runs of every check, kept by the engine in a fixed-size ring per check,
//! so that a person or a monitor can tell a blip from an outage without a time-series
//! database.
//!
//! Every run the [engine](crate::engine) makes, on every path (the mount path, one check,
//! each group, live or scheduled), is folded into the history of each check it ran: its
//! status, duration, error kind and when it finished, plus the check's last success, last
//! failure and failed runs in a row. Reports carry it under `history`:
//!
//! - the JSON report: `history.{check}.runs` (oldest first) for callers who may see
//!   [`Detail::Full`](crate::Detail::Full); the counts and timestamps at
//!   [`Detail::Checks`](crate::Detail::Checks) too;
//! - the HTML page: a strip of the last runs per check and the time since its last failure;
//! - Prometheus: `smoketest_check_last_success_timestamp_seconds{check}`.
//!
//! On a group's path the counts (`consecutive_failures`, `last_success`, `last_failure`)
//! are the group's own — they drive its [failure threshold](crate::Group::failure_threshold)
//! — while `runs` always shows the check's runs on every path.
//!
//! **Memory is bounded**: each check has one ring of
//! [`history_len`](crate::SmoketestBuilder::history_len) runs (default
//! [`DEFAULT_HISTORY_LEN`]), allocated once at build time and never grown; a run takes
//! [`BYTES_PER_RUN`] bytes (32 on 64-bit targets: error kinds are interned, a closed set,
//! so a failed run allocates nothing), a check's record [`BYTES_PER_CHECK`] bytes (168)
//! plus its ring. With the default of 20 runs that is 808 bytes per check, whatever the
//! traffic: 80 KiB for a service with 100 checks.
//!
//! Runs made by [`Smoketest::run`](crate::Smoketest::run) directly (programs and tests,
//! not requests) are not recorded.
//!
//! # Example
//!
//! ```
//! use smoketest_core::{from_fn, Detail, Outcome, Smoketest};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let smoke = Smoketest::builder()
//!     .without_discovery()
//!     .anonymous_detail(Detail::Full)
//!     .min_interval(std::time::Duration::ZERO)
//!     .history_len(3)
//!     .check(from_fn("ok", |_ctx| Box::pin(async { Ok(Outcome::Pass) })))
//!     .build()
//!     .unwrap();
//! let get = || http::Request::get("/smoketest").body(()).unwrap().into_parts().0;
//! for _ in 0..5 {
//!     smoke.handle(&get()).await;
//! }
//! let body = smoke.handle(&get()).await.into_body();
//! let report: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(report["history"]["ok"]["runs"].as_array().unwrap().len(), 3, "the last 3");
//! # }
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::report::{CheckHistory, RunRecord};
use crate::{Report, Status};

/// How many runs of each check are kept unless the builder says otherwise.
pub const DEFAULT_HISTORY_LEN: usize = 20;

/// Bytes one kept run takes in memory (measured with `size_of`, checked by a test).
pub const BYTES_PER_RUN: usize = std::mem::size_of::<Run>();

/// Bytes of one check's record besides its ring (measured with `size_of`: the record and
/// its entry in the map).
pub const BYTES_PER_CHECK: usize =
    std::mem::size_of::<Track>() + std::mem::size_of::<(Arc<str>, Mutex<Track>)>();

/// One run as kept: 32 bytes on 64-bit targets.
#[derive(Clone)]
struct Run {
    /// Unix time the run finished, in milliseconds.
    finished_ms: u64,
    /// Interned error kind.
    kind: Option<Arc<str>>,
    /// Duration in microseconds, saturating at ~71 minutes (longer than any deadline).
    duration_us: u32,
    status: Status,
}

#[derive(Default)]
struct Track {
    runs: VecDeque<Run>,
    consecutive_failures: u32,
    last_success_ms: Option<u64>,
    last_failure_ms: Option<u64>,
}

/// The engine's history of every check. See the [module documentation](self).
pub(crate) struct History {
    len: usize,
    tracks: HashMap<Arc<str>, Mutex<Track>>,
    kinds: Mutex<Vec<Arc<str>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

impl History {
    /// A history of `len` runs for each of `names`, allocated now and never grown.
    pub(crate) fn new<'a>(len: usize, names: impl IntoIterator<Item = &'a Arc<str>>) -> Self {
        let tracks = names
            .into_iter()
            .map(|name| {
                let track = Track {
                    runs: VecDeque::with_capacity(len),
                    ..Track::default()
                };
                (name.clone(), Mutex::new(track))
            })
            .collect();
        History {
            len,
            tracks,
            kinds: Mutex::new(Vec::new()),
        }
    }

    fn intern(&self, kind: &str) -> Arc<str> {
        let mut kinds = lock(&self.kinds);
        if let Some(known) = kinds.iter().find(|k| ***k == *kind) {
            return known.clone();
        }
        let new: Arc<str> = Arc::from(kind);
        // Kinds are a closed set; the cap only guards against a misbehaving writer.
        if kinds.len() < 64 {
            kinds.push(new.clone());
        }
        new
    }

    /// Fold a finished run (its checks' statuses before any group threshold) into the
    /// history.
    pub(crate) fn record(&self, report: &Report, finished: SystemTime) {
        let at = unix_ms(finished);
        for check in &report.checks {
            let Some(track) = self.tracks.get(check.name.as_str()) else {
                continue;
            };
            let kind = check.error.as_ref().map(|e| self.intern(&e.kind));
            let mut track = lock(track);
            match check.status {
                Status::Fail => {
                    track.consecutive_failures = track.consecutive_failures.saturating_add(1);
                    track.last_failure_ms = Some(at);
                }
                Status::Pass | Status::Warn => {
                    track.consecutive_failures = 0;
                    track.last_success_ms = Some(at);
                }
                Status::Skip => {}
            }
            if self.len == 0 {
                continue;
            }
            if track.runs.len() == self.len {
                track.runs.pop_front();
            }
            track.runs.push_back(Run {
                finished_ms: at,
                kind,
                duration_us: u32::try_from((check.duration_ms * 1000.0) as u64).unwrap_or(u32::MAX),
                status: check.status,
            });
        }
    }

    /// Put each check's history into `report.history`: the runs always, the counts where
    /// the report has none of its own (a group's report has the group's).
    pub(crate) fn attach(&self, report: &mut Report) {
        for check in &report.checks {
            let Some(track) = self.tracks.get(check.name.as_str()) else {
                continue;
            };
            let track = lock(track);
            let runs = track
                .runs
                .iter()
                .map(|r| RunRecord {
                    at: rfc3339(r.finished_ms),
                    status: r.status,
                    duration_ms: f64::from(r.duration_us) / 1000.0,
                    kind: r.kind.as_deref().map(str::to_string),
                })
                .collect();
            let entry = report
                .history
                .entry(check.name.to_string())
                .or_insert_with(|| CheckHistory {
                    consecutive_failures: track.consecutive_failures,
                    last_success: track.last_success_ms.map(rfc3339),
                    last_failure: track.last_failure_ms.map(rfc3339),
                    runs: Vec::new(),
                });
            entry.runs = runs;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{CheckReport, ErrorReport};

    fn check(name: &str, status: Status, kind: Option<&str>) -> CheckReport {
        CheckReport {
            name: name.into(),
            status,
            duration_ms: 1.5,
            tags: vec![],
            error: kind.map(|k| ErrorReport {
                kind: k.into(),
                message: None,
                suggestion: None,
            }),
            message: None,
            observed: Default::default(),
            steps: Vec::new(),
        }
    }

    #[test]
    fn the_ring_keeps_the_last_runs_and_never_grows() {
        let name: Arc<str> = Arc::from("db::ping");
        let history = History::new(3, [&name]);
        for i in 0..10 {
            let status = if i % 2 == 0 {
                Status::Pass
            } else {
                Status::Fail
            };
            let kind = (status == Status::Fail).then_some("timeout");
            let report = Report::from_checks(
                SystemTime::now(),
                Duration::ZERO,
                vec![check("db::ping", status, kind)],
            );
            history.record(&report, UNIX_EPOCH + Duration::from_secs(i));
        }
        let track = lock(&history.tracks[&name]);
        assert_eq!(track.runs.len(), 3);
        assert_eq!(track.runs.capacity(), 3, "allocated once, never grown");
        let seconds: Vec<u64> = track.runs.iter().map(|r| r.finished_ms / 1000).collect();
        assert_eq!(seconds, [7, 8, 9], "oldest first, the last three");
        assert_eq!(track.runs[0].kind.as_deref(), Some("timeout"));
        assert_eq!(track.last_failure_ms, Some(9_000));
        assert_eq!(track.last_success_ms, Some(8_000));
        assert_eq!(lock(&history.kinds).len(), 1, "kinds are interned");
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn memory_per_check_is_what_the_docs_say() {
        // The figures in the module docs, the README and docs/operating.md.
        assert_eq!(BYTES_PER_RUN, 32);
        assert_eq!(BYTES_PER_CHECK, 168);
        assert_eq!(BYTES_PER_CHECK + DEFAULT_HISTORY_LEN * BYTES_PER_RUN, 808);
    }
}
