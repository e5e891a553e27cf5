//! When to retry and how long to wait: only transient faults, exponential backoff with
//! jitter, and the server's `Retry-After` when it sends one.

use std::hash::BuildHasher;
use std::time::{Duration, SystemTime};

/// HTTP statuses worth retrying: the load balancer or the service is briefly unable to
/// answer (rate limited, a bad or missing upstream during a rollout). Every other 4xx
/// and 5xx is an answer, and retrying it would only delay the decision.
pub fn is_transient_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// Exponential backoff: `base · 2^retry`, capped at `max`, with "equal jitter" (a random
/// point in the upper half) so that many gates polling one fleet do not retry in step.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Delay before the first retry (before jitter).
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry number `retry` (0 for the first retry).
    pub fn delay(&self, retry: u32) -> Duration {
        let full = self
            .base
            .saturating_mul(1u32 << retry.min(20))
            .min(self.max);
        let half = full / 2;
        half + half.mul_f64(unit_random())
    }
}

/// A random number in `[0, 1)`. The standard library's hasher keys are random per
/// process, which is all the randomness jitter needs.
fn unit_random() -> f64 {
    let bits = std::collections::hash_map::RandomState::new().hash_one(SystemTime::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// The wait a `Retry-After` header asks for: delay-seconds or an HTTP-date (RFC 9110
/// §10.2.3). A date in the past means "now"; anything unreadable is ignored.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rate_limits_and_gateway_faults_are_transient() {
        for status in [429, 502, 503, 504] {
            assert!(is_transient_status(status), "{status}");
        }
        for status in [200, 400, 401, 403, 404, 405, 406, 500, 501] {
            assert!(!is_transient_status(status), "{status}");
        }
    }

    #[test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for retry in 0..3 {
            let full = Duration::from_millis(100 << retry);
            for _ in 0..50 {
                let d = backoff.delay(retry);
                assert!(d >= full / 2 && d <= full, "retry {retry}: {d:?}");
            }
        }
        for _ in 0..50 {
            let d = backoff.delay(40);
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_secs(1));
        }
    }

    #[test]
    fn jitter_spreads_the_delays() {
        let backoff = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(1),
        };
        let distinct: std::collections::BTreeSet<_> = (0..20).map(|_| backoff.delay(0)).collect();
        assert!(distinct.len() > 10, "{distinct:?}");
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Sun, 22 Nov 2026 17:00:00 GMT").unwrap();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 17:00:07 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 16:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
