//! What verification deletes after `SSPR_RETENTION_DAYS` (run by the runtime's retention
//! sweep, with published outbox rows; see `sspr_runtime::retention`):
//! - reset sessions that expired before the cutoff (a session lives minutes; once expired it
//!   can neither be continued nor completed);
//! - codes (reset, registration, step-up) that expired before the cutoff: an expired code can
//!   never be checked again; throttles, blocks and the SMS ledger keep their own tables;
//! - processed-event ids recorded before the cutoff (see the runtime's module docs for why the
//!   retention is long enough for them).

use chrono::{DateTime, Utc};
use sspr_storage::retention::Purge;

/// The purges for rows older than `cutoff`.
pub fn purges(cutoff: DateTime<Utc>) -> Vec<Purge> {
    vec![
        Purge::older_than("reset_sessions", "token_hash", "expires_at", cutoff),
        Purge::older_than("codes", "id", "expires_at", cutoff),
        Purge::older_than("processed_events", "event_id", "processed_at", cutoff),
    ]
}
