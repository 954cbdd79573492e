//! What enrolment deletes after `SSPR_RETENTION_DAYS` (run by the runtime's retention sweep,
//! with published outbox rows; see `sspr_runtime::retention`): processed-event ids recorded
//! before the cutoff. Registered methods are the user's data and are never purged by age.

use chrono::{DateTime, Utc};
use sspr_storage::retention::Purge;

/// The purges for rows older than `cutoff`.
pub fn purges(cutoff: DateTime<Utc>) -> Vec<Purge> {
    vec![Purge::older_than(
        "processed_events",
        "event_id",
        "processed_at",
        cutoff,
    )]
}
