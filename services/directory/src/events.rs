//! The public events the directory emits, built here and written through the outbox by the
//! store in the same transaction as the change.
//!
//! Invariant: no event carries a password or a hash; `password.changed` says only who, when,
//! in which flow, and why.

use chrono::{DateTime, Utc};
use sspr_bus::subjects::events;
use sspr_proto::events::v1::{EventMeta, PasswordChanged, UserDeleted};
use sspr_storage::outbox::OutboxMessage;

use crate::SERVICE;
use crate::domain::ids::UserId;
use crate::domain::password::ChangeReason;

fn meta(user_id: &UserId, flow_id: &str, now: DateTime<Utc>) -> EventMeta {
    EventMeta {
        event_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: Some(sspr_proto::time::timestamp(now)),
        user_id: user_id.as_str().to_owned(),
        flow_id: flow_id.to_owned(),
        source: SERVICE.to_owned(),
    }
}

/// `sspr.events.v1.password.changed`.
pub fn password_changed(
    user_id: &UserId,
    flow_id: &str,
    reason: ChangeReason,
    now: DateTime<Utc>,
) -> OutboxMessage {
    let meta = meta(user_id, flow_id, now);
    let id = meta.event_id.clone();
    let event = PasswordChanged {
        meta: Some(meta),
        reason: reason.as_str().to_owned(),
    };
    OutboxMessage::new(events::PASSWORD_CHANGED, id, &event)
}

/// `sspr.events.v1.user.deleted`.
pub fn user_deleted(user_id: &UserId, now: DateTime<Utc>) -> OutboxMessage {
    let meta = meta(user_id, "", now);
    let id = meta.event_id.clone();
    OutboxMessage::new(events::USER_DELETED, id, &UserDeleted { meta: Some(meta) })
}
