//! When to retry an HTTP attempt and how long to wait first.
//!
//! Policy: an attempt that failed for a transient reason — HTTP 408, 409, 429 or 5xx, a
//! timeout, a refused or reset connection, a body cut short or not a chat completion — is
//! retried up to `max_retries` times. The wait before retry `n` (1-based) is "full jitter"
//! (AWS Architecture Blog, "Exponential Backoff and Jitter"): uniform in
//! `[0, min(max_delay, base_delay · 2^(n-1))]`, which spreads a burst of failing callers
//! instead of having them retry in lockstep. A `Retry-After` header (seconds or an HTTP
//! date) overrides that: we wait what the provider asked, plus up to `base_delay` of jitter.
//! A provider asking for longer than `max_retry_after` fails the call at once with
//! `RATE_LIMITED` rather than holding a worker for minutes. Other statuses (400, 401, 403,
//! 404, 422, …) are final: retrying cannot fix the request.
//!
//! `backon`/`backoff` were considered; neither lets the error choose the next delay
//! (`Retry-After`) without wrapping it in their own types, and the policy fits in this file.

use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

/// Retry limits and backoff delays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = try once).
    pub max_retries: u32,
    /// Delay cap before the first retry; doubles with each retry.
    pub base_delay: Duration,
    /// Largest backoff delay.
    pub max_delay: Duration,
    /// Longest `Retry-After` honoured; beyond it the call fails with `RATE_LIMITED`.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Wait before retry number `retry` (1-based), honouring `retry_after` when given.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let mut rng = rand::thread_rng();
        let mut jitter = |cap: Duration| -> Duration {
            let cap_ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
            Duration::from_millis(rng.gen_range(0..=cap_ms))
        };
        match retry_after {
            Some(wait) => wait + jitter(self.base_delay),
            None => {
                let exp = self
                    .base_delay
                    .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)));
                jitter(exp.min(self.max_delay))
            }
        }
    }
}

/// Whether an HTTP status is worth retrying.
pub fn retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::CONFLICT
        || status.is_server_error()
}

/// The `Retry-After` header as a duration from now: delta-seconds (`120`, fractional
/// seconds tolerated) or an HTTP date (a date in the past means "now").
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(RETRY_AFTER, value);
        }
        headers
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        assert_eq!(retry_after(&headers("7")), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(&headers("0.5")),
            Some(Duration::from_millis(500))
        );
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let wait = retry_after(&headers(&later)).unwrap_or_default();
        assert!(
            wait > Duration::from_secs(27) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(30));
        assert_eq!(retry_after(&headers(&past)), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers("soon")), None);
        assert_eq!(retry_after(&headers("-3")), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_cap() {
        let policy = RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            max_retry_after: Duration::from_secs(60),
        };
        for _ in 0..200 {
            assert!(policy.delay(1, None) <= Duration::from_millis(100));
            assert!(policy.delay(2, None) <= Duration::from_millis(200));
            assert!(policy.delay(6, None) <= Duration::from_millis(350));
            let honoured = policy.delay(1, Some(Duration::from_secs(2)));
            assert!(honoured >= Duration::from_secs(2) && honoured <= Duration::from_millis(2100));
        }
        // Jitter really varies (a fixed delay would make callers retry in lockstep).
        let delays: std::collections::HashSet<_> = (0..50).map(|_| policy.delay(3, None)).collect();
        assert!(delays.len() > 10);
    }

    #[test]
    fn only_transient_statuses_are_retried() {
        for code in [429, 500, 502, 503, 504, 408] {
            assert!(
                retryable_status(StatusCode::from_u16(code).unwrap_or_default()),
                "{code}"
            );
        }
        for code in [400, 401, 403, 404, 422] {
            assert!(
                !retryable_status(StatusCode::from_u16(code).unwrap_or_default()),
                "{code}"
            );
        }
    }
}
