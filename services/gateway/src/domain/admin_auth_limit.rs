//! Failed Admin API authentication, limited per client IP.
//!
//! Rules:
//! - A failure is a call without a bearer token or with one that matches no admin token.
//! - [`MAX_FAILURES`] failures from one client IP are allowed within a [`WINDOW`] (fixed
//!   windows that start at the first failure); after one more, every Admin call from that IP is
//!   refused with
//!   `RESOURCE_EXHAUSTED` and a retry-after until the window ends — a correct token too, so a
//!   guesser cannot tell a hit from the refusals.
//! - Failures are reported (the `admin.auth_failed` event) at most once per IP per [`WINDOW`]:
//!   the first failure is reported at once, later ones are counted and reported with the first
//!   failure after the window, so a flood costs one event a minute.
//! - State is in memory, per gateway replica: N replicas allow N × [`MAX_FAILURES`] a minute.
//!   At most [`MAX_TRACKED_IPS`] addresses are tracked; beyond that, windows that ended are
//!   forgotten first, and if all are live, the oldest goes.
//!
//! Time comes in as [`Instant`]s so the rules are tested without waiting.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Failures allowed per client IP and window; the next one blocks the IP.
pub const MAX_FAILURES: u32 = 10;
/// The window of the limit and of the event summary.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Client IPs tracked at once.
pub const MAX_TRACKED_IPS: usize = 100_000;

/// An Admin call from an IP over its limit; try again after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
}

/// A failure to report now: `failures` counted since the last report, this one included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub failures: u32,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: Instant,
    failures: u32,
    last_report: Option<Instant>,
    unreported: u32,
}

/// The failures of every client IP seen recently.
#[derive(Debug, Default)]
pub struct AdminAuthLimiter {
    ips: HashMap<String, Entry>,
}

impl AdminAuthLimiter {
    /// Whether `ip` may make an Admin call at `now`.
    pub fn check(&self, ip: &str, now: Instant) -> Result<(), Limited> {
        match self.ips.get(ip) {
            Some(e) if e.failures > MAX_FAILURES => {
                let ends = e.window_start + WINDOW;
                if now < ends {
                    Err(Limited {
                        retry_after: ends - now,
                    })
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed authentication from `ip` at `now`; `Some` when it should be reported.
    pub fn record_failure(&mut self, ip: &str, now: Instant) -> Option<Report> {
        if !self.ips.contains_key(ip) && self.ips.len() >= MAX_TRACKED_IPS {
            self.make_room(now);
        }
        let entry = self.ips.entry(ip.to_owned()).or_insert(Entry {
            window_start: now,
            failures: 0,
            last_report: None,
            unreported: 0,
        });
        if now >= entry.window_start + WINDOW {
            entry.window_start = now;
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.unreported = entry.unreported.saturating_add(1);
        match entry.last_report {
            Some(at) if now < at + WINDOW => None,
            _ => {
                entry.last_report = Some(now);
                let failures = entry.unreported;
                entry.unreported = 0;
                Some(Report { failures })
            }
        }
    }

    /// How many IPs are tracked.
    pub fn tracked(&self) -> usize {
        self.ips.len()
    }

    fn make_room(&mut self, now: Instant) {
        self.ips.retain(|_, e| now < e.window_start + WINDOW);
        if self.ips.len() >= MAX_TRACKED_IPS
            && let Some(oldest) = self
                .ips
                .iter()
                .min_by_key(|(_, e)| e.window_start)
                .map(|(ip, _)| ip.clone())
        {
            self.ips.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_than_ten_failures_block_the_ip_until_the_window_ends() {
        let mut limiter = AdminAuthLimiter::default();
        let t0 = Instant::now();
        for i in 0..=MAX_FAILURES {
            assert_eq!(limiter.check("10.0.0.1", t0), Ok(()), "failure {i}");
            limiter.record_failure("10.0.0.1", t0 + Duration::from_secs(u64::from(i)));
        }
        let at = t0 + Duration::from_secs(20);
        assert_eq!(
            limiter.check("10.0.0.1", at),
            Err(Limited {
                retry_after: Duration::from_secs(40)
            })
        );
        // Another IP is not affected.
        assert_eq!(limiter.check("10.0.0.2", at), Ok(()));
        // The window ends: allowed again, and counting starts afresh.
        let later = t0 + WINDOW;
        assert_eq!(limiter.check("10.0.0.1", later), Ok(()));
        limiter.record_failure("10.0.0.1", later);
        assert_eq!(limiter.check("10.0.0.1", later), Ok(()));
    }

    #[test]
    fn failures_are_reported_at_most_once_a_minute_with_the_count() {
        let mut limiter = AdminAuthLimiter::default();
        let t0 = Instant::now();
        assert_eq!(
            limiter.record_failure("ip", t0),
            Some(Report { failures: 1 })
        );
        for s in 1..=30 {
            assert_eq!(
                limiter.record_failure("ip", t0 + Duration::from_secs(s)),
                None
            );
        }
        assert_eq!(
            limiter.record_failure("ip", t0 + WINDOW),
            Some(Report { failures: 31 })
        );
        assert_eq!(
            limiter.record_failure("other", t0),
            Some(Report { failures: 1 })
        );
    }

    #[test]
    fn tracking_is_bounded() {
        let mut limiter = AdminAuthLimiter::default();
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED_IPS {
            limiter.record_failure(&format!("ip-{i}"), t0);
        }
        assert_eq!(limiter.tracked(), MAX_TRACKED_IPS);
        limiter.record_failure("new", t0 + Duration::from_secs(1));
        assert_eq!(limiter.tracked(), MAX_TRACKED_IPS);
        // Once the windows ended, they are forgotten to make room.
        limiter.record_failure("newer", t0 + WINDOW + Duration::from_secs(1));
        assert!(limiter.tracked() <= 2);
    }
}
