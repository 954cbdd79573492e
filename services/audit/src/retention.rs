//! The retention sweep: at start and then every `every`, deletes records that occurred more
//! than `days` days before the service clock's now. Failures are logged and retried at the next
//! sweep; they never stop the service.

use std::time::Duration;

use sspr_clock::SharedClock;
use tokio_util::sync::CancellationToken;

use crate::adapters::store::AuditStore;
use crate::error::Error;

/// Deletes what is older than `days` now; returns how many records went.
pub async fn purge(store: &AuditStore, clock: &SharedClock, days: u32) -> Result<u64, Error> {
    let cutoff = clock.now() - chrono::Duration::days(i64::from(days));
    store.delete_before(cutoff).await
}

/// Sweeps until `shutdown` is cancelled.
pub async fn sweep(
    store: AuditStore,
    clock: SharedClock,
    days: u32,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        match purge(&store, &clock, days).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, days, "old audit records deleted"),
            Err(e) => tracing::error!(error = %e, "audit retention sweep failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
