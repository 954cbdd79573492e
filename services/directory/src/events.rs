//! The public events the directory emits, built here and written through the outbox by the
//! store in the same transaction as the change.
//!
//! Invariant: no event carries a password or a hash; `password.changed` says only who, when,
//! in which flow, and why.

use chrono::{DateTime, Utc};
use sspr_bus::subjects::events;
use sspr_proto::events::v1::{
    AccountLocked, AccountUnlocked, EventMeta, GroupDeleted, GroupUpserted, PasswordChanged,
    UserDeleted, UserUpserted,
};
use sspr_storage::outbox::OutboxMessage;

use crate::SERVICE;
use crate::domain::group::Group;
use crate::domain::ids::{GroupId, UserId};
use crate::domain::password::ChangeReason;
use crate::domain::user::{UnlockReason, User};

fn meta(user_id: &UserId, flow_id: &str, now: DateTime<Utc>) -> EventMeta {
    EventMeta {
        event_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: Some(sspr_proto::time::timestamp(now)),
        user_id: user_id.as_str().to_owned(),
        flow_id: flow_id.to_owned(),
        source: SERVICE.to_owned(),
        actor: String::new(),
    }
}

/// `sspr.events.v1.password.changed`; `actor` is the admin id for an admin's change, empty
/// for the user's own.
pub fn password_changed(
    user_id: &UserId,
    flow_id: &str,
    reason: ChangeReason,
    actor: &str,
    now: DateTime<Utc>,
) -> OutboxMessage {
    let meta = EventMeta {
        actor: actor.to_owned(),
        ..meta(user_id, flow_id, now)
    };
    let id = meta.event_id.clone();
    let event = PasswordChanged {
        meta: Some(meta),
        reason: reason.as_str().to_owned(),
    };
    OutboxMessage::new(events::PASSWORD_CHANGED, id, &event)
}

/// `sspr.events.v1.user.deleted`, deleted by the admin `actor`.
pub fn user_deleted(user_id: &UserId, actor: &str, now: DateTime<Utc>) -> OutboxMessage {
    let meta = EventMeta {
        actor: actor.to_owned(),
        ..meta(user_id, "", now)
    };
    let id = meta.event_id.clone();
    OutboxMessage::new(events::USER_DELETED, id, &UserDeleted { meta: Some(meta) })
}

/// `sspr.events.v1.account.locked`, reason "admin"; `actor` is the admin id (may be empty).
pub fn account_locked(user_id: &UserId, actor: &str, now: DateTime<Utc>) -> OutboxMessage {
    let meta = EventMeta {
        actor: actor.to_owned(),
        ..meta(user_id, "", now)
    };
    let id = meta.event_id.clone();
    let event = AccountLocked {
        meta: Some(meta),
        reason: "admin".to_owned(),
    };
    OutboxMessage::new(events::ACCOUNT_LOCKED, id, &event)
}

/// `sspr.events.v1.account.unlocked`; `flow_id` is the verified reset flow for
/// [`UnlockReason::SelfService`], `actor` the admin id for [`UnlockReason::Admin`].
pub fn account_unlocked(
    user_id: &UserId,
    flow_id: &str,
    reason: UnlockReason,
    actor: &str,
    now: DateTime<Utc>,
) -> OutboxMessage {
    let meta = EventMeta {
        actor: actor.to_owned(),
        ..meta(user_id, flow_id, now)
    };
    let id = meta.event_id.clone();
    let event = AccountUnlocked {
        meta: Some(meta),
        reason: reason.as_str().to_owned(),
    };
    OutboxMessage::new(events::ACCOUNT_UNLOCKED, id, &event)
}

/// `sspr.events.v1.user.upserted`: the account as stored after an admin's upsert by `actor`.
/// Says only whether a password was set, never the password or its hash.
pub fn user_upserted(
    user: &User,
    created: bool,
    password_set: bool,
    actor: &str,
    now: DateTime<Utc>,
) -> OutboxMessage {
    let meta = EventMeta {
        actor: actor.to_owned(),
        ..meta(&user.profile.user_id, "", now)
    };
    let id = meta.event_id.clone();
    let event = UserUpserted {
        meta: Some(meta),
        created,
        group_ids: user
            .profile
            .group_ids
            .iter()
            .map(|g| g.as_str().to_owned())
            .collect(),
        is_admin: user.profile.is_admin,
        enabled: user.enabled,
        locked: user.locked,
        password_set,
    };
    OutboxMessage::new(events::USER_UPSERTED, id, &event)
}

/// EventMeta of a group change by `actor`: about no user.
fn group_meta(actor: &str, now: DateTime<Utc>) -> EventMeta {
    EventMeta {
        event_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: Some(sspr_proto::time::timestamp(now)),
        source: SERVICE.to_owned(),
        actor: actor.to_owned(),
        ..Default::default()
    }
}

/// `sspr.events.v1.group.upserted`: the group as stored after an admin's upsert by `actor`.
pub fn group_upserted(
    group: &Group,
    created: bool,
    actor: &str,
    now: DateTime<Utc>,
) -> OutboxMessage {
    let meta = group_meta(actor, now);
    let id = meta.event_id.clone();
    let event = GroupUpserted {
        meta: Some(meta),
        group_id: group.group_id.as_str().to_owned(),
        member_group_ids: group
            .member_group_ids
            .iter()
            .map(|g| g.as_str().to_owned())
            .collect(),
        created,
    };
    OutboxMessage::new(events::GROUP_UPSERTED, id, &event)
}

/// `sspr.events.v1.group.deleted`, deleted by the admin `actor`.
pub fn group_deleted(group_id: &GroupId, actor: &str, now: DateTime<Utc>) -> OutboxMessage {
    let meta = group_meta(actor, now);
    let id = meta.event_id.clone();
    let event = GroupDeleted {
        meta: Some(meta),
        group_id: group_id.as_str().to_owned(),
    };
    OutboxMessage::new(events::GROUP_DELETED, id, &event)
}
