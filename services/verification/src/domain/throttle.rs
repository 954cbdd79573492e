//! The abuse throttles of reset and registration codes, free of IO: which counters a call
//! touches, sliding-window decisions, the retry time, the failed-verification block and the
//! CAPTCHA threshold.
//!
//! Invariants:
//! - A counter ([`Bucket`]) is named by its limit and a keyed hash
//!   (`HMAC-SHA256(code_key, "sspr-throttle" ‖ subject kind ‖ value)`) of what it counts: a user
//!   id, a normalised destination or a client IP. No destination or IP is ever stored in clear,
//!   and nobody without the key can tell whose counter a row is.
//! - A window is sliding: a call is allowed when fewer than `max` earlier calls fall in the last
//!   `window`; a refused call is not counted. The retry time is when the oldest counted call
//!   that keeps the counter full leaves the window, so a retry at that time succeeds (unless
//!   others took the slot meanwhile).
//! - Decoy sessions use the same counters as real ones (keyed by the typed user id; a decoy
//!   method's "destination" is a keyed stand-in), so the answers cannot tell them apart.

use chrono::{DateTime, Duration, Utc};
use hmac::Mac;

use super::code::keyed;
use super::hex;
use super::ids::{MethodId, UserId};
use super::session::MethodKind;

/// Every limit kept here, with its window. `name` is the `reset.throttled` event's `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Limit {
    /// Per user: SMS and voice codes per hour.
    PhoneSendsPerHour,
    /// Per user: email codes per 10 minutes.
    EmailSendsPer10Minutes,
    /// Per destination, across users: codes per hour.
    DestinationSendsPerHour,
    /// Per client IP: StartReset calls per minute.
    IpStartResetPerMinute,
    /// Per client IP: SendCode calls (and registration/step-up codes) per minute.
    IpSendCodePerMinute,
    /// Per user: failed verifications in 24 hours before the block.
    FailedVerificationsPerDay,
    /// Per client IP: failed verifications of sessions it started, per hour (CAPTCHA threshold).
    IpFailuresPerHour,
}

impl Limit {
    pub fn name(self) -> &'static str {
        match self {
            Limit::PhoneSendsPerHour => "phone_sends_per_hour",
            Limit::EmailSendsPer10Minutes => "email_sends_per_10_minutes",
            Limit::DestinationSendsPerHour => "destination_sends_per_hour",
            Limit::IpStartResetPerMinute => "ip_start_reset_per_minute",
            Limit::IpSendCodePerMinute => "ip_send_code_per_minute",
            Limit::FailedVerificationsPerDay => "failed_verifications_per_day",
            Limit::IpFailuresPerHour => "ip_failures_per_hour",
        }
    }

    pub fn window(self) -> Duration {
        match self {
            Limit::PhoneSendsPerHour
            | Limit::DestinationSendsPerHour
            | Limit::IpFailuresPerHour => Duration::hours(1),
            Limit::EmailSendsPer10Minutes => Duration::minutes(10),
            Limit::IpStartResetPerMinute | Limit::IpSendCodePerMinute => Duration::minutes(1),
            Limit::FailedVerificationsPerDay => Duration::hours(24),
        }
    }

    /// The per-user send limit of a code sent over `kind` (`None`: nothing is sent).
    pub fn user_sends(kind: MethodKind) -> Option<Limit> {
        match kind {
            MethodKind::Sms | MethodKind::Voice => Some(Limit::PhoneSendsPerHour),
            MethodKind::Email => Some(Limit::EmailSendsPer10Minutes),
            MethodKind::SecurityQuestions => None,
        }
    }

    /// The longest window: counts older than this are never read again.
    pub fn longest_window() -> Duration {
        Duration::hours(24)
    }
}

/// One counter: its key (limit and keyed subject hash) and how many calls its window allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub key: String,
    pub limit: Limit,
    pub max: u32,
}

/// What a counter counts.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    User(&'a UserId),
    /// A destination as typed or stored; normalised before hashing.
    Destination(MethodKind, &'a str),
    /// A decoy method has no destination: a stand-in keyed by its user and method.
    DecoyDestination(&'a UserId, &'a MethodId),
    ClientIp(&'a str),
}

impl Bucket {
    pub fn new(key: &[u8; 32], limit: Limit, subject: Subject<'_>, max: u32) -> Self {
        let mut mac = keyed(key);
        mac.update(b"sspr-throttle\0");
        match subject {
            Subject::User(user) => {
                mac.update(b"user\0");
                mac.update(user.as_str().as_bytes());
            }
            Subject::Destination(kind, raw) => {
                mac.update(b"destination\0");
                mac.update(normalise_destination(kind, raw).as_bytes());
            }
            Subject::DecoyDestination(user, method) => {
                mac.update(b"decoy-destination\0");
                mac.update(user.as_str().as_bytes());
                mac.update(b"\0");
                mac.update(method.as_str().as_bytes());
            }
            Subject::ClientIp(ip) => {
                mac.update(b"ip\0");
                mac.update(ip.trim().to_ascii_lowercase().as_bytes());
            }
        }
        let digest = mac.finalize().into_bytes();
        Self {
            key: format!("{}:{}", limit.name(), hex(&digest)),
            limit,
            max,
        }
    }
}

/// The form of a destination that counts: an email address trimmed and lower-cased; a phone
/// number reduced to `+` and its digits (spaces, dots, dashes and brackets dropped).
pub fn normalise_destination(kind: MethodKind, raw: &str) -> String {
    match kind {
        MethodKind::Email => raw.trim().to_lowercase(),
        MethodKind::Sms | MethodKind::Voice => {
            let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
            if raw.trim_start().starts_with('+') {
                format!("+{digits}")
            } else {
                digits
            }
        }
        MethodKind::SecurityQuestions => String::new(),
    }
}

/// A counter's verdict on one more call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Full until `retry_at`.
    Refuse {
        retry_at: DateTime<Utc>,
    },
}

/// Decides one more call, given the times of the calls counted so far (any order).
pub fn decide(hits: &[DateTime<Utc>], max: u32, window: Duration, now: DateTime<Utc>) -> Decision {
    let since = now - window;
    let mut recent: Vec<DateTime<Utc>> = hits.iter().copied().filter(|t| *t > since).collect();
    let max = max as usize;
    if recent.len() < max {
        return Decision::Allow;
    }
    recent.sort();
    // One slot frees up when the call at index len - max leaves the window (with max 0, never
    // within this window: wait for the newest call to leave it).
    let frees_at = match max {
        0 => recent.last().map_or(now + window, |t| *t + window),
        _ => recent.get(recent.len() - max).map_or(now, |t| *t + window),
    };
    Decision::Refuse {
        retry_at: frees_at.max(now + Duration::seconds(1)),
    }
}

/// Whole seconds from `now` until `at`, rounded up, at least 1 (a retry-after of 0 would invite
/// an immediate retry that fails).
pub fn retry_after_secs(now: DateTime<Utc>, at: DateTime<Utc>) -> u64 {
    let millis = (at - now).num_milliseconds().max(0);
    let secs = u64::try_from(millis).unwrap_or(0).div_ceil(1000);
    secs.max(1)
}

/// When a block that starts `now` ends.
pub fn block_until(now: DateTime<Utc>, block_hours: u32) -> DateTime<Utc> {
    now + Duration::hours(i64::from(block_hours.max(1)))
}

/// Whether failures counted so far (this one included) reach the block.
pub fn reaches_block(failures: u32, max: u32) -> bool {
    failures >= max.max(1)
}

/// The CAPTCHA thresholds of a policy (0 = not on this ground).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChallengeThresholds {
    pub ip_starts_per_minute: u32,
    pub ip_failures_per_hour: u32,
}

/// Whether StartReset needs a passed challenge, given the client IP's StartReset calls in the
/// last minute and its sessions' failed verifications in the last hour (both before this call).
pub fn challenge_required(
    thresholds: ChallengeThresholds,
    starts_last_minute: u32,
    failures_last_hour: u32,
) -> bool {
    let reached = |threshold: u32, count: u32| threshold > 0 && count >= threshold;
    reached(thresholds.ip_starts_per_minute, starts_last_minute)
        || reached(thresholds.ip_failures_per_hour, failures_last_hour)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).expect("a valid time")
    }

    #[test]
    fn a_window_allows_max_calls_and_frees_a_slot_when_the_oldest_leaves() {
        let now = t0();
        let hour = Duration::hours(1);
        let hits: Vec<_> = (0..5).map(|i| now + Duration::minutes(i)).collect();
        assert_eq!(
            decide(&hits[..4], 5, hour, now + Duration::minutes(5)),
            Decision::Allow
        );
        let later = now + Duration::minutes(10);
        assert_eq!(
            decide(&hits, 5, hour, later),
            Decision::Refuse {
                retry_at: now + hour
            }
        );
        // At the retry time the oldest call has left the window.
        assert_eq!(decide(&hits, 5, hour, now + hour), Decision::Allow);
        // Hits older than the window do not count, whatever their order.
        let mut old = hits.clone();
        old.reverse();
        old.push(now - Duration::hours(2));
        assert_eq!(
            decide(&old, 5, hour, later),
            Decision::Refuse {
                retry_at: now + hour
            }
        );
    }

    #[test]
    fn more_hits_than_max_wait_for_the_one_that_frees_a_slot() {
        let now = t0();
        let minute = Duration::minutes(1);
        let hits: Vec<_> = (0..4).map(|i| now + Duration::seconds(i * 10)).collect();
        // max lowered to 2 after 4 calls: two must leave, so the wait is for the third oldest.
        assert_eq!(
            decide(&hits, 2, minute, now + Duration::seconds(35)),
            Decision::Refuse {
                retry_at: now + Duration::seconds(20) + minute
            }
        );
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_never_zero() {
        let now = t0();
        assert_eq!(retry_after_secs(now, now + Duration::milliseconds(1500)), 2);
        assert_eq!(retry_after_secs(now, now + Duration::seconds(60)), 60);
        assert_eq!(retry_after_secs(now, now), 1);
        assert_eq!(retry_after_secs(now, now - Duration::seconds(5)), 1);
    }

    #[test]
    fn kinds_map_to_their_user_limit() {
        assert_eq!(
            Limit::user_sends(MethodKind::Sms),
            Some(Limit::PhoneSendsPerHour)
        );
        assert_eq!(
            Limit::user_sends(MethodKind::Voice),
            Some(Limit::PhoneSendsPerHour)
        );
        assert_eq!(
            Limit::user_sends(MethodKind::Email),
            Some(Limit::EmailSendsPer10Minutes)
        );
        assert_eq!(Limit::user_sends(MethodKind::SecurityQuestions), None);
        assert_eq!(
            Limit::EmailSendsPer10Minutes.window(),
            Duration::minutes(10)
        );
        assert_eq!(Limit::IpSendCodePerMinute.window(), Duration::minutes(1));
        assert_eq!(
            Limit::FailedVerificationsPerDay.window(),
            Duration::hours(24)
        );
    }

    #[test]
    fn destinations_are_normalised_and_never_in_the_key() {
        assert_eq!(
            normalise_destination(MethodKind::Email, " Alice@Example.COM "),
            "alice@example.com"
        );
        assert_eq!(
            normalise_destination(MethodKind::Sms, "+44 (0) 7700-900.123"),
            "+4407700900123"
        );
        let key = [7u8; 32];
        let a = Bucket::new(
            &key,
            Limit::DestinationSendsPerHour,
            Subject::Destination(MethodKind::Email, "Alice@Example.com"),
            10,
        );
        let b = Bucket::new(
            &key,
            Limit::DestinationSendsPerHour,
            Subject::Destination(MethodKind::Email, " alice@example.com"),
            10,
        );
        assert_eq!(a, b);
        assert!(a.key.starts_with("destination_sends_per_hour:"));
        assert!(!a.key.contains("alice") && !a.key.contains("example"));
        let other_key = Bucket::new(
            &[8u8; 32],
            Limit::DestinationSendsPerHour,
            Subject::Destination(MethodKind::Email, "alice@example.com"),
            10,
        );
        assert_ne!(a.key, other_key.key);
        let ip = Bucket::new(
            &key,
            Limit::IpSendCodePerMinute,
            Subject::ClientIp("10.1.2.3"),
            20,
        );
        assert!(!ip.key.contains("10.1.2.3"));
    }

    #[test]
    fn user_counters_differ_by_user_and_by_limit() {
        let key = [1u8; 32];
        let alice = UserId::parse("alice").expect("valid");
        let bob = UserId::parse("bob").expect("valid");
        let phone = |u| Bucket::new(&key, Limit::PhoneSendsPerHour, Subject::User(u), 5);
        assert_ne!(phone(&alice).key, phone(&bob).key);
        let email = Bucket::new(
            &key,
            Limit::EmailSendsPer10Minutes,
            Subject::User(&alice),
            5,
        );
        assert_ne!(phone(&alice).key, email.key);
        assert!(!phone(&alice).key.contains("alice"));
    }

    #[test]
    fn the_block_starts_at_the_limit_and_lasts_its_hours() {
        assert!(!reaches_block(4, 5));
        assert!(reaches_block(5, 5));
        assert_eq!(block_until(t0(), 24), t0() + Duration::hours(24));
    }

    #[test]
    fn a_challenge_is_required_only_above_a_set_threshold() {
        let off = ChallengeThresholds {
            ip_starts_per_minute: 0,
            ip_failures_per_hour: 0,
        };
        assert!(!challenge_required(off, 1000, 1000));
        let on = ChallengeThresholds {
            ip_starts_per_minute: 3,
            ip_failures_per_hour: 2,
        };
        assert!(!challenge_required(on, 2, 1));
        assert!(challenge_required(on, 3, 0));
        assert!(challenge_required(on, 0, 2));
    }
}
