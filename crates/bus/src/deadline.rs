//! Deadlines that travel with a request, so no hop keeps working for a caller who gave up.
//!
//! The gateway starts a call's budget from the client's `grpc-timeout`; every request made
//! inside it ([`Bus::request`](crate::Bus::request)) waits at most the time left (and never
//! longer than the bus's own request timeout), and carries what is left in the
//! [`DEADLINE_HEADER`] header: **relative** milliseconds at send time, so the hosts' clocks need
//! not agree. A serving [`Router`](crate::Router) turns the header back into a local deadline
//! for the handler's task ([`scope`]), so the handler's own requests use what is left; a request
//! whose budget was already spent when the service got to it is dropped without running the
//! handler (the caller has stopped waiting).
//!
//! The deadline is task-local, like [`work`](crate::work): a task spawned by a handler does not
//! inherit it, which is right for work that outlives the answer (relays, consumers).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Request header: the caller's remaining budget in whole milliseconds at send time.
pub const DEADLINE_HEADER: &str = "Sspr-Deadline-Ms";

/// Largest budget accepted from a header (one hour); larger values are clamped to it.
const MAX_BUDGET: Duration = Duration::from_secs(3600);

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `fut` with `deadline` as the current deadline (none: whatever the caller had, if any).
/// A deadline later than an enclosing one never extends it.
pub async fn scope<F: Future>(deadline: Option<Instant>, fut: F) -> F::Output {
    let effective = match (deadline, current()) {
        (Some(d), Some(outer)) => Some(d.min(outer)),
        (d, outer) => d.or(outer),
    };
    match effective {
        Some(d) => DEADLINE.scope(d, fut).await,
        None => fut.await,
    }
}

/// The deadline of the request being handled on this task, if it has one.
pub fn current() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok()
}

/// Time left before the current deadline (zero once it passed); `None` without a deadline.
pub fn remaining() -> Option<Duration> {
    current().map(|d| d.saturating_duration_since(Instant::now()))
}

/// The header value for a remaining budget (whole milliseconds, rounded down).
pub fn header_value(remaining: Duration) -> String {
    remaining.as_millis().to_string()
}

/// Parses a [`DEADLINE_HEADER`] value: 1 to 10 ASCII digits of milliseconds, clamped to an
/// hour. `None` for anything else (the request is then served without a propagated deadline).
pub fn parse_header(value: &str) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ms: u64 = value.parse().ok()?;
    Some(Duration::from_millis(ms).min(MAX_BUDGET))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_parse_strictly() {
        assert_eq!(parse_header("1500"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_header("0"), Some(Duration::ZERO));
        assert_eq!(parse_header("99999999999"), None);
        assert_eq!(parse_header("9999999999"), Some(MAX_BUDGET));
        for bad in ["", "-1", "1.5", "1e3", "abc", " "] {
            assert_eq!(parse_header(bad), None, "{bad:?}");
        }
        assert_eq!(header_value(Duration::from_micros(2_999_999)), "2999");
    }

    #[tokio::test]
    async fn an_inner_scope_never_extends_the_outer_deadline() {
        assert_eq!(remaining(), None);
        let soon = Instant::now() + Duration::from_millis(200);
        let later = Instant::now() + Duration::from_secs(60);
        scope(Some(soon), async {
            assert_eq!(current(), Some(soon));
            scope(Some(later), async { assert_eq!(current(), Some(soon)) }).await;
            scope(None, async { assert_eq!(current(), Some(soon)) }).await;
            let left = remaining().unwrap_or_default();
            assert!(left <= Duration::from_millis(200));
            // A spawned task does not inherit it.
            let spawned = tokio::spawn(async { current() }).await.ok().flatten();
            assert_eq!(spawned, None);
        })
        .await;
        assert_eq!(current(), None);
    }
}
