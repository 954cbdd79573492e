//! Idempotency keys for a service's router: the store in its own database
//! (`sspr_storage::idempotency`) and the periodic purge of rows older than
//! `SSPR_IDEMPOTENCY_HOURS` (default 24).

use std::sync::Arc;
use std::time::Duration;

use sspr_bus::idempotency::Idempotency;
use sspr_storage::idempotency::{IdempotencyTable, purge};
use tokio_util::sync::CancellationToken;

use crate::ServiceContext;
use crate::settings;

/// How often old rows are purged.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// Default of `SSPR_IDEMPOTENCY_HOURS`.
pub const DEFAULT_HOURS: u32 = 24;

/// The retention from `SSPR_IDEMPOTENCY_HOURS` (1 hour to a year; checked at start by
/// [`settings::CommonSettings::from_env`], so a bad value here falls back to the default).
pub fn retention() -> chrono::Duration {
    let hours = settings::bounded("SSPR_IDEMPOTENCY_HOURS", DEFAULT_HOURS, 1, 24 * 365)
        .unwrap_or(DEFAULT_HOURS);
    chrono::Duration::hours(i64::from(hours))
}

/// The router's idempotency settings on `ctx.db`, with `secret` (see
/// [`Idempotency::new`]), and a background task purging old rows until `shutdown`.
pub fn start(
    ctx: &ServiceContext,
    secret: Option<[u8; 32]>,
    shutdown: &CancellationToken,
) -> Idempotency {
    let table = IdempotencyTable::new(ctx.db.clone());
    let db = ctx.db.clone();
    let shutdown = shutdown.clone();
    let keep = retention();
    tokio::spawn(async move {
        loop {
            // Wall-clock time, as the rows' `created_at` (not the domain clock).
            match purge(&db, chrono::Utc::now() - keep).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "purged old idempotency keys"),
                Err(e) => tracing::warn!(error = %e, "purging old idempotency keys failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(PURGE_EVERY) => {}
            }
        }
    });
    Idempotency::new(Arc::new(table), secret)
}
