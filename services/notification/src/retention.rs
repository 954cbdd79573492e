//! What notification deletes after `SSPR_RETENTION_DAYS` (run by the runtime's retention sweep,
//! with published outbox rows; see `sspr_runtime::retention`):
//! - delivery records (`failed` ones included) last changed before the cutoff, and dead-letter
//!   records written before it. No
//!   such record can still be in flight: the code it carries lived 10 minutes and the
//!   `SSPR_DELIVERY` stream drops a message after a day, while the retention is at least one
//!   day;
//! - processed-event ids recorded before the cutoff (see the runtime's module docs for why the
//!   retention is long enough for them).

use chrono::{DateTime, Utc};
use sspr_storage::retention::Purge;

/// The purges for rows older than `cutoff`.
pub fn purges(cutoff: DateTime<Utc>) -> Vec<Purge> {
    vec![
        Purge::older_than("deliveries", "delivery_id", "updated_at", cutoff),
        Purge::older_than("dead_letters", "delivery_id", "created_at", cutoff),
        Purge::older_than("processed_events", "event_id", "processed_at", cutoff),
    ]
}
