//! When to try a delivery again.
//!
//! A send fails either transiently (the provider is unreachable, timed out, or answered "try
//! later": SMTP 4xx, HTTP 5xx/408/429) or permanently (SMTP 5xx, other HTTP 4xx, a message that
//! cannot be built). Transient failures are retried with exponential backoff and jitter, at most
//! [`MAX_ATTEMPTS`] sends in all; permanent ones never are.
//!
//! The number of the attempt is notification's own count, never the queue's alone: the larger
//! of the message's delivered count and the sends the delivery record has seen started
//! ([`RetryPolicy::attempt_number`]). A send that started but never reported (the replica died,
//! the ack wait ran out) therefore still counts, and once [`MAX_ATTEMPTS`] sends have started the
//! next delivery of the message only records the failure ([`RetryPolicy::exhausted`]).
//!
//! [`SendFailure::detail`] is shown to operators (delivery records, logs): it must never hold
//! the code or the destination, so adapters build it from status codes and error kinds only,
//! never from a provider's free text (which often echoes the recipient).

use std::time::Duration;

/// Deliveries of one message the queue makes at most (consumer `max_deliver`).
pub const MAX_ATTEMPTS: u32 = 5;
/// Delay before the first retry; doubles with each attempt.
pub const BASE_DELAY: Duration = Duration::from_secs(1);
/// Longest delay between two attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Worth trying again later.
    Transient,
    /// Trying again cannot help.
    Permanent,
}

/// Why a send failed, for operators.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct SendFailure {
    pub kind: FailureKind,
    /// Operator-readable; never the code or the destination.
    pub detail: String,
}

impl SendFailure {
    pub fn transient(detail: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Transient,
            detail: detail.into(),
        }
    }
    pub fn permanent(detail: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Permanent,
            detail: detail.into(),
        }
    }
}

/// How often and how fast to retry; [`RetryPolicy::default`] is [`MAX_ATTEMPTS`],
/// [`BASE_DELAY`], [`MAX_DELAY`] (tests shorten the delays).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Sends of one delivery at most.
    pub max_attempts: u32,
    /// Delay before the first retry; doubles with each attempt.
    pub base_delay: Duration,
    /// Longest delay between two attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: MAX_ATTEMPTS,
            base_delay: BASE_DELAY,
            max_delay: MAX_DELAY,
        }
    }
}

impl RetryPolicy {
    /// The number (1-based) of the attempt about to start: the queue's delivered count, or more
    /// when the record saw more sends start (`sends_started`, before this one).
    pub fn attempt_number(delivered: u32, sends_started: u32) -> u32 {
        delivered.max(sends_started.saturating_add(1)).max(1)
    }

    /// True when attempt `attempt` must not send any more: every allowed send already started.
    pub fn exhausted(&self, attempt: u32) -> bool {
        attempt > self.max_attempts.max(1)
    }

    /// Decides after attempt number `attempt` (1-based) failed with `kind`. `jitter` is a random
    /// number in `[0, 1)`.
    pub fn after_failure(&self, kind: FailureKind, attempt: u32, jitter: f64) -> NextStep {
        match kind {
            FailureKind::Permanent => NextStep::GiveUp,
            FailureKind::Transient if attempt >= self.max_attempts => NextStep::GiveUp,
            FailureKind::Transient => NextStep::RetryAfter(self.backoff(attempt, jitter)),
        }
    }

    /// Delay after attempt `attempt` (1-based): `base_delay * 2^(attempt-1)`, capped at
    /// `max_delay`, then scaled by a factor in `[0.8, 1.2)` taken from `jitter` in `[0, 1)`, so
    /// replicas that failed together do not retry together.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(16);
        let nominal = self
            .base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.5
        };
        nominal.mul_f64(0.8 + 0.4 * jitter)
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Have the queue deliver the message again after this delay.
    RetryAfter(Duration),
    /// Record the delivery as failed and stop.
    GiveUp,
}

/// Decides after attempt number `attempt` (1-based) failed with `kind`. `jitter` is a random
/// number in `[0, 1)`.
pub fn after_failure(kind: FailureKind, attempt: u32, jitter: f64) -> NextStep {
    RetryPolicy::default().after_failure(kind, attempt, jitter)
}

/// Delay after attempt `attempt` (1-based): `BASE_DELAY * 2^(attempt-1)`, capped at
/// [`MAX_DELAY`], then scaled by a factor in `[0.8, 1.2)` taken from `jitter` in `[0, 1)`, so
/// replicas that failed together do not retry together.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    RetryPolicy::default().backoff(attempt, jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let secs: Vec<f64> = (1..=9).map(|a| backoff(a, 0.5).as_secs_f64()).collect();
        assert_eq!(secs, vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]);
        assert_eq!(backoff(u32::MAX, 0.5), MAX_DELAY);
        assert_eq!(backoff(0, 0.5), BASE_DELAY);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        for attempt in 1..=6 {
            let nominal = backoff(attempt, 0.5).as_secs_f64();
            let low = backoff(attempt, 0.0).as_secs_f64();
            let high = backoff(attempt, 0.999_999).as_secs_f64();
            assert!((low - nominal * 0.8).abs() < 1e-6);
            assert!(high < nominal * 1.2 + 1e-6 && high > nominal * 1.19);
        }
        // Out-of-range jitter never yields a silly delay.
        assert_eq!(backoff(1, f64::NAN), BASE_DELAY);
        assert!(backoff(1, 7.0) <= BASE_DELAY.mul_f64(1.2));
    }

    #[test]
    fn transient_failures_retry_until_the_last_attempt() {
        for attempt in 1..MAX_ATTEMPTS {
            assert!(matches!(
                after_failure(FailureKind::Transient, attempt, 0.5),
                NextStep::RetryAfter(_)
            ));
        }
        assert_eq!(
            after_failure(FailureKind::Transient, MAX_ATTEMPTS, 0.5),
            NextStep::GiveUp
        );
        assert_eq!(
            after_failure(FailureKind::Transient, MAX_ATTEMPTS + 3, 0.5),
            NextStep::GiveUp
        );
    }

    #[test]
    fn the_attempt_number_counts_sends_the_queue_did_not_see_end() {
        // First delivery, nothing recorded.
        assert_eq!(RetryPolicy::attempt_number(1, 0), 1);
        // Normal redelivery after a nak: both agree.
        assert_eq!(RetryPolicy::attempt_number(3, 2), 3);
        // A replica died mid-send and a lost ack made the queue count less than the record.
        assert_eq!(RetryPolicy::attempt_number(2, 4), 5);
        // Redeliveries after the record could not be written (the record lags).
        assert_eq!(RetryPolicy::attempt_number(6, 1), 6);
        assert_eq!(RetryPolicy::attempt_number(0, 0), 1);

        let policy = RetryPolicy::default();
        assert!(!policy.exhausted(MAX_ATTEMPTS));
        assert!(policy.exhausted(MAX_ATTEMPTS + 1));
        // The fifth send started and never reported: the sixth delivery sends nothing.
        assert!(policy.exhausted(RetryPolicy::attempt_number(6, MAX_ATTEMPTS)));
        assert!(policy.exhausted(RetryPolicy::attempt_number(1, MAX_ATTEMPTS)));
    }

    #[test]
    fn a_shorter_policy_scales_the_same_way() {
        let fast = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(30),
        };
        assert_eq!(fast.backoff(1, 0.5), Duration::from_millis(10));
        assert_eq!(fast.backoff(5, 0.5), Duration::from_millis(30));
        assert!(matches!(
            fast.after_failure(FailureKind::Transient, 2, 0.5),
            NextStep::RetryAfter(_)
        ));
        assert_eq!(
            fast.after_failure(FailureKind::Transient, 3, 0.5),
            NextStep::GiveUp
        );
    }

    #[test]
    fn permanent_failures_never_retry() {
        assert_eq!(
            after_failure(FailureKind::Permanent, 1, 0.5),
            NextStep::GiveUp
        );
    }
}
