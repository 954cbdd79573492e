//! When to try a delivery again.
//!
//! A send fails either transiently (the provider is unreachable, timed out, or answered "try
//! later": SMTP 4xx, HTTP 5xx/408/429) or permanently (SMTP 5xx, other HTTP 4xx, a message that
//! cannot be built). Transient failures are retried with exponential backoff and jitter, at most
//! [`MAX_ATTEMPTS`] deliveries in all (the consumer's `max_deliver`); permanent ones never are.
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
    match kind {
        FailureKind::Permanent => NextStep::GiveUp,
        FailureKind::Transient if attempt >= MAX_ATTEMPTS => NextStep::GiveUp,
        FailureKind::Transient => NextStep::RetryAfter(backoff(attempt, jitter)),
    }
}

/// Delay after attempt `attempt` (1-based): `BASE_DELAY * 2^(attempt-1)`, capped at
/// [`MAX_DELAY`], then scaled by a factor in `[0.8, 1.2)` taken from `jitter` in `[0, 1)`, so
/// replicas that failed together do not retry together.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(16);
    let nominal = BASE_DELAY.saturating_mul(1u32 << exponent).min(MAX_DELAY);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.5
    };
    nominal.mul_f64(0.8 + 0.4 * jitter)
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
    fn permanent_failures_never_retry() {
        assert_eq!(
            after_failure(FailureKind::Permanent, 1, 0.5),
            NextStep::GiveUp
        );
    }
}
