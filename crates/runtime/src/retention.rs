//! Retention: each service that owns data deletes what it no longer needs once it is older
//! than `SSPR_RETENTION_DAYS` (default 7), at start and then every hour.
//!
//! A service lists its purges as a plain function from the cutoff to
//! [`sspr_storage::retention::Purge`]s (its `retention.rs`); the [`crate::Emitter`] adds the
//! published outbox rows and runs the sweep next to the relay. Every purge deletes in batches
//! (see [`sspr_storage::retention`]), so a large backlog never holds a table's locks for long.
//!
//! Invariants: the cutoff comes from the service's clock (tests use a manual one); a failed
//! purge is logged and retried at the next sweep, never stops the service; nothing a purge
//! matches is still needed (unpublished outbox rows, live sessions and codes never match).
//!
//! Processed-event ids (enrolment, verification, notification) go with the same retention.
//! They only have to outlive a re-delivery or re-publication of the same event: redeliveries
//! come within the consumers' ack wait, re-publications of an outbox row within the duplicate
//! window or later only after a crash between ack and mark — both seconds to minutes, and
//! `SSPR_DUPLICATE_WINDOW_SECS` is at most a day while the retention is at least one. The
//! events stream's max age does not matter to them: a durable consumer keeps its ack floor and
//! never replays what it acknowledged.

use std::time::Duration;

use sspr_clock::SharedClock;
use sspr_storage::retention::{DEFAULT_BATCH, Purge};
use sspr_storage::sea_orm::{DatabaseConnection, DbErr};
use tokio_util::sync::CancellationToken;

/// How often the sweep runs after the one at start.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// A service's purges: what to delete for a cutoff (rows older than it).
pub type Purges = fn(chrono::DateTime<chrono::Utc>) -> Vec<Purge>;

/// A service without purges of its own (only its published outbox rows go).
pub fn no_purges(_: chrono::DateTime<chrono::Utc>) -> Vec<Purge> {
    Vec::new()
}

/// Runs `purges` plus the outbox purge once, for rows older than `days` before the clock's
/// now; returns how many rows went. Stops at the first failure.
pub async fn purge_once(
    db: &DatabaseConnection,
    clock: &SharedClock,
    days: u32,
    purges: Purges,
) -> Result<u64, DbErr> {
    let cutoff = clock.now() - chrono::Duration::days(i64::from(days));
    let mut total = 0;
    for purge in
        std::iter::once(sspr_storage::outbox::published_before(cutoff)).chain(purges(cutoff))
    {
        let n = purge.run(db, DEFAULT_BATCH).await?;
        if n > 0 {
            tracing::info!(table = purge.table, deleted = n, days, "retention purge");
        }
        total += n;
    }
    Ok(total)
}

/// Sweeps at once, then every `every`, until `shutdown` is cancelled.
pub async fn sweep(
    db: DatabaseConnection,
    clock: SharedClock,
    days: u32,
    purges: Purges,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        if let Err(e) = purge_once(&db, &clock, days, purges).await {
            tracing::warn!(error = %e, "retention purge failed; will retry at the next sweep");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
