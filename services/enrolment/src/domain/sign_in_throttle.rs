//! The sign-in password-oracle throttle: BeginRegistration and GetStatus check a password, so
//! each is limited per user id per hour and per client IP per minute.
//!
//! Invariants:
//! - Every attempt counts, before the password is checked, whether the user exists or not and
//!   whether the password is right: the answer (refused or not, and the retry-after) never
//!   depends on the account.
//! - Counters are fixed windows (the hour or the minute the attempt falls in), kept in the
//!   database so every replica shares them; a window's count is taken by an atomic increment,
//!   so concurrent attempts cannot all slip under the limit.
//! - Keys hold a user id (case-folded, so `Alice` and `alice` share a counter) or a client IP:
//!   never a password. A limit of 0 is treated as 1.

use chrono::{DateTime, Duration, DurationRound, Utc};

/// Which counter an attempt is charged to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Per user id, per hour.
    User(String),
    /// Per client IP, per minute.
    Ip(String),
}

/// One counter: its key and the window it counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// `u:<user id, lower case>` or `ip:<address>`.
    pub key: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub limit: u32,
}

impl Scope {
    /// The counter this attempt at `now` falls in.
    pub fn window(&self, now: DateTime<Utc>, limit: u32) -> Window {
        let (key, length) = match self {
            Scope::User(u) => (format!("u:{}", u.to_lowercase()), Duration::hours(1)),
            Scope::Ip(ip) => (format!("ip:{ip}"), Duration::minutes(1)),
        };
        let start = now.duration_trunc(length).unwrap_or(now);
        Window {
            key,
            start,
            end: start + length,
            limit: limit.max(1),
        }
    }

    /// The limit name, for logs and the refusal.
    pub fn name(&self) -> &'static str {
        match self {
            Scope::User(_) => "user_sign_in_checks_per_hour",
            Scope::Ip(_) => "ip_sign_in_checks_per_minute",
        }
    }
}

/// A sign-in check refused by a throttle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many sign-in attempts: try again in {retry_after_secs} seconds")]
pub struct Throttled {
    pub retry_after_secs: u64,
}

impl Window {
    /// Whether the attempt that brought the window's count to `count` may go on; when not,
    /// how long until the window ends (at least one second).
    pub fn judge(&self, count: u64, now: DateTime<Utc>) -> Result<(), Throttled> {
        if count <= u64::from(self.limit) {
            return Ok(());
        }
        let secs = (self.end - now).num_seconds().max(1);
        Err(Throttled {
            retry_after_secs: u64::try_from(secs).unwrap_or(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2026-11-25T{h:02}:{m:02}:{s:02}Z"))
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn user_windows_are_the_hour_and_fold_case() {
        let w = Scope::User("Alice".into()).window(t(10, 17, 5), 10);
        assert_eq!(w.key, "u:alice");
        assert_eq!(w.start, t(10, 0, 0));
        assert_eq!(w.end, t(11, 0, 0));
        assert_eq!(w, Scope::User("alice".into()).window(t(10, 59, 59), 10));
    }

    #[test]
    fn ip_windows_are_the_minute() {
        let w = Scope::Ip("192.0.2.7".into()).window(t(10, 17, 5), 30);
        assert_eq!(w.key, "ip:192.0.2.7");
        assert_eq!(w.start, t(10, 17, 0));
        assert_eq!(w.end, t(10, 18, 0));
    }

    #[test]
    fn the_attempt_over_the_limit_is_refused_until_the_window_ends() {
        let now = t(10, 17, 5);
        let w = Scope::User("alice".into()).window(now, 10);
        assert_eq!(w.judge(1, now), Ok(()));
        assert_eq!(w.judge(10, now), Ok(()));
        assert_eq!(
            w.judge(11, now),
            Err(Throttled {
                retry_after_secs: 42 * 60 + 55
            })
        );
        let ip = Scope::Ip("::1".into()).window(now, 0);
        assert_eq!(ip.limit, 1);
        assert_eq!(ip.judge(1, now), Ok(()));
        assert_eq!(
            ip.judge(2, t(10, 17, 59)),
            Err(Throttled {
                retry_after_secs: 1
            })
        );
    }
}
