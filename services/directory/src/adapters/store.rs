//! [`UserStore`] on the directory's own database (SQLite or PostgreSQL through sea-orm).
//!
//! Invariants:
//! - Each write is one transaction holding the account change and its outbox rows; the relay
//!   is woken only after the commit.
//! - `upsert` is a single `INSERT .. ON CONFLICT (user_id) DO UPDATE`, so two concurrent
//!   upserts of a new account cannot both try to create it; `created_at` and, when not given,
//!   `enabled` and the password hash keep their stored values.
//! - Groups are replaced as a whole and read back sorted by group id.
//! - Effective groups are computed at every read, one query per nesting level
//!   ([`GroupClosure`]): a change to a group takes effect at once, for every member.
//! - A lock change is decided on the row read inside the write transaction, so its event is
//!   committed with it (and only when the state really changes).
//! - Every user or group upsert and group delete commits its `user.upserted`,
//!   `group.upserted` or `group.deleted` event with the change; "created" is decided on the row
//!   read inside the write transaction.
//! - A password write moves the replaced hash into `password_history` (when history is on)
//!   and trims it to the newest `keep - 1` rows, in the same transaction.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use sspr_storage::outbox::{self, OutboxMessage, OutboxSignal};

use crate::adapters::entities::{group_members, groups, password_history, user_groups, users};
use crate::domain::group::{Group, GroupClosure, GroupDraft};
use crate::domain::ids::{GroupId, UserId};
use crate::domain::password::PasswordHash;
use crate::domain::user::{Profile, ProfileDraft, User};
use crate::error::Error;
use crate::ports::{AccountWrite, GroupUpsertedEvent, LockEvent, UpsertedEvent, UserStore};

pub struct SqlUserStore {
    db: DatabaseConnection,
    signal: OutboxSignal,
}

impl SqlUserStore {
    /// `signal` wakes the outbox relay after each committed change.
    pub fn new(db: DatabaseConnection, signal: OutboxSignal) -> Self {
        Self { db, signal }
    }
}

async fn to_user<C: ConnectionTrait>(
    conn: &C,
    row: users::Model,
    groups: Vec<user_groups::Model>,
) -> Result<User, Error> {
    let corrupt = |e: &dyn std::fmt::Display| Error::Corrupt(format!("user row: {e}"));
    let profile = Profile::parse(ProfileDraft {
        user_id: row.user_id,
        display_name: row.display_name,
        locale: row.locale,
        group_ids: groups.into_iter().map(|g| g.group_id).collect(),
        is_admin: row.is_admin,
    })
    .map_err(|e| corrupt(&e))?;
    let password_hash = row
        .password_hash
        .as_deref()
        .map(PasswordHash::from_stored)
        .transpose()
        .map_err(|e| corrupt(&e))?;
    let effective_group_ids = effective_groups(conn, &profile.group_ids).await?;
    Ok(User {
        profile,
        enabled: row.enabled,
        locked: row.locked,
        password_hash,
        effective_group_ids,
    })
}

/// `direct` plus every group containing one of them through nesting, sorted.
async fn effective_groups<C: ConnectionTrait>(
    conn: &C,
    direct: &[GroupId],
) -> Result<Vec<GroupId>, Error> {
    let mut closure = GroupClosure::new(direct);
    // The first round runs even for no groups at all (see `load`).
    let mut first = true;
    loop {
        let frontier: Vec<String> = closure
            .frontier()
            .iter()
            .map(|g| g.as_str().to_owned())
            .collect();
        if frontier.is_empty() && !first {
            break;
        }
        first = false;
        let parents: Vec<String> = group_members::Entity::find()
            .select_only()
            .column(group_members::Column::ParentGroupId)
            .filter(group_members::Column::MemberGroupId.is_in(frontier))
            .distinct()
            .order_by_asc(group_members::Column::ParentGroupId)
            .into_tuple()
            .all(conn)
            .await?;
        let parents = parents
            .iter()
            .map(|p| {
                GroupId::parse(p)
                    .ok_or_else(|| Error::Corrupt("group_members row: invalid group id".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        closure.add_parents(parents);
    }
    if closure.truncated() {
        tracing::warn!("group nesting too deep or too wide: effective groups truncated");
    }
    Ok(closure.finish())
}

fn to_group(row: groups::Model, members: Vec<String>) -> Result<Group, Error> {
    Group::parse(GroupDraft {
        group_id: row.group_id,
        display_name: row.display_name,
        member_group_ids: members,
    })
    .map_err(|e| Error::Corrupt(format!("group row: {e}")))
}

async fn load_group<C: ConnectionTrait>(
    conn: &C,
    group_id: &GroupId,
) -> Result<Option<Group>, Error> {
    let Some(row) = groups::Entity::find_by_id(group_id.as_str().to_owned())
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    let members: Vec<String> = group_members::Entity::find()
        .select_only()
        .column(group_members::Column::MemberGroupId)
        .filter(group_members::Column::ParentGroupId.eq(group_id.as_str()))
        .order_by_asc(group_members::Column::MemberGroupId)
        .into_tuple()
        .all(conn)
        .await?;
    to_group(row, members).map(Some)
}

/// Clears the locked state of `user_id` if set; true if it was.
async fn clear_lock<C: ConnectionTrait>(
    conn: &C,
    user_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let updated = users::Entity::update_many()
        .col_expr(users::Column::Locked, Expr::value(false))
        .col_expr(users::Column::UpdatedAt, Expr::value(now))
        .filter(users::Column::UserId.eq(user_id))
        .filter(users::Column::Locked.eq(true))
        .exec(conn)
        .await?;
    Ok(updated.rows_affected > 0)
}

/// Loads an account. The same look-ups run whether or not it exists (the account row, its
/// groups, at least one round of group nesting), so the reset flow's call for an unknown id
/// costs what a real user's does and its timing does not tell them apart. (A user in nested
/// groups costs one more indexed query per level.)
async fn load<C: ConnectionTrait>(conn: &C, user_id: &UserId) -> Result<Option<User>, Error> {
    let row = users::Entity::find_by_id(user_id.as_str().to_owned())
        .one(conn)
        .await?;
    let groups = user_groups::Entity::find()
        .filter(user_groups::Column::UserId.eq(user_id.as_str()))
        .order_by_asc(user_groups::Column::GroupId)
        .all(conn)
        .await?;
    match row {
        Some(row) => to_user(conn, row, groups).await.map(Some),
        None => {
            effective_groups(conn, &[]).await?;
            Ok(None)
        }
    }
}

/// Before the password of `user_id` is replaced: keeps its current hash (if any) as the newest
/// previous password when `keep` > 1, and trims the history to the newest `keep - 1` rows.
async fn remember_replaced<C: ConnectionTrait>(
    conn: &C,
    user_id: &str,
    keep: u32,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let previous_kept = u64::from(keep.saturating_sub(1));
    if previous_kept > 0 {
        let current = users::Entity::find_by_id(user_id.to_owned())
            .one(conn)
            .await?
            .and_then(|row| row.password_hash);
        if let Some(phc) = current {
            password_history::Entity::insert(password_history::ActiveModel {
                id: Set(uuid::Uuid::now_v7().to_string()),
                user_id: Set(user_id.to_owned()),
                password_hash: Set(phc),
                created_at: Set(now),
            })
            .exec_without_returning(conn)
            .await?;
        }
    }
    // At most MAX_HISTORY + 1 rows: every write trims. (No OFFSET without LIMIT on SQLite.)
    let ids: Vec<String> = password_history::Entity::find()
        .select_only()
        .column(password_history::Column::Id)
        .filter(password_history::Column::UserId.eq(user_id))
        .order_by_desc(password_history::Column::Id)
        .into_tuple()
        .all(conn)
        .await?;
    let stale: Vec<String> = ids
        .into_iter()
        .skip(usize::try_from(previous_kept).unwrap_or(usize::MAX))
        .collect();
    if !stale.is_empty() {
        password_history::Entity::delete_many()
            .filter(password_history::Column::Id.is_in(stale))
            .exec(conn)
            .await?;
    }
    Ok(())
}

async fn enqueue_all<C: ConnectionTrait>(
    conn: &C,
    events: Vec<OutboxMessage>,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let any = !events.is_empty();
    for event in events {
        outbox::enqueue(conn, event, now).await?;
    }
    Ok(any)
}

#[async_trait::async_trait]
impl UserStore for SqlUserStore {
    async fn find(&self, user_id: &UserId) -> Result<Option<User>, Error> {
        load(&self.db, user_id).await
    }

    async fn list_admins(&self) -> Result<Vec<User>, Error> {
        let rows = users::Entity::find()
            .filter(users::Column::IsAdmin.eq(true))
            .filter(users::Column::Enabled.eq(true))
            .order_by_asc(users::Column::UserId)
            .all(&self.db)
            .await?;
        let mut admins = Vec::with_capacity(rows.len());
        for row in rows {
            let groups = user_groups::Entity::find()
                .filter(user_groups::Column::UserId.eq(row.user_id.as_str()))
                .order_by_asc(user_groups::Column::GroupId)
                .all(&self.db)
                .await?;
            admins.push(to_user(&self.db, row, groups).await?);
        }
        Ok(admins)
    }

    async fn list_users(&self, after: Option<&UserId>, limit: u64) -> Result<Vec<User>, Error> {
        let mut query = users::Entity::find().order_by_asc(users::Column::UserId);
        if let Some(after) = after {
            query = query.filter(users::Column::UserId.gt(after.as_str()));
        }
        let rows = query.limit(limit).all(&self.db).await?;
        let mut page = Vec::with_capacity(rows.len());
        for row in rows {
            let groups = user_groups::Entity::find()
                .filter(user_groups::Column::UserId.eq(row.user_id.as_str()))
                .order_by_asc(user_groups::Column::GroupId)
                .all(&self.db)
                .await?;
            page.push(to_user(&self.db, row, groups).await?);
        }
        Ok(page)
    }

    async fn upsert(
        &self,
        write: AccountWrite<'_>,
        now: DateTime<Utc>,
        mut events: Vec<OutboxMessage>,
        lock_event: LockEvent<'_>,
        upserted: UpsertedEvent<'_>,
    ) -> Result<User, Error> {
        let AccountWrite {
            profile,
            enabled,
            locked,
            password,
            keep,
        } = write;
        let user_id = profile.user_id.as_str();
        let row = users::ActiveModel {
            user_id: Set(user_id.to_owned()),
            display_name: Set(profile.display_name.as_str().to_owned()),
            locale: Set(profile.locale.as_str().to_owned()),
            is_admin: Set(profile.is_admin),
            enabled: Set(enabled.unwrap_or(true)),
            locked: Set(locked.unwrap_or(false)),
            password_hash: Set(password.map(|p| p.as_phc().to_owned())),
            created_at: Set(now),
            updated_at: Set(now),
            password_changed_at: Set(password.map(|_| now)),
        };
        let mut update = vec![
            users::Column::DisplayName,
            users::Column::Locale,
            users::Column::IsAdmin,
            users::Column::UpdatedAt,
        ];
        if enabled.is_some() {
            update.push(users::Column::Enabled);
        }
        if locked.is_some() {
            update.push(users::Column::Locked);
        }
        if password.is_some() {
            update.extend([
                users::Column::PasswordHash,
                users::Column::PasswordChangedAt,
            ]);
        }

        let txn = sspr_storage::begin_write(&self.db).await?;
        // Locked before this write (a new account counts as unlocked).
        let was_locked: Option<bool> = users::Entity::find_by_id(user_id.to_owned())
            .select_only()
            .column(users::Column::Locked)
            .lock_exclusive()
            .into_tuple()
            .one(&txn)
            .await?;
        let created = was_locked.is_none();
        let was_locked = was_locked.unwrap_or(false);
        if let Some(locked) = locked
            && locked != was_locked
        {
            events.push(lock_event(locked));
        }
        if password.is_some() {
            remember_replaced(&txn, user_id, keep, now).await?;
        }
        users::Entity::insert(row)
            .on_conflict(
                OnConflict::column(users::Column::UserId)
                    .update_columns(update)
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
        user_groups::Entity::delete_many()
            .filter(user_groups::Column::UserId.eq(user_id))
            .exec(&txn)
            .await?;
        if !profile.group_ids.is_empty() {
            user_groups::Entity::insert_many(profile.group_ids.iter().map(|g| {
                user_groups::ActiveModel {
                    user_id: Set(user_id.to_owned()),
                    group_id: Set(g.as_str().to_owned()),
                }
            }))
            .exec_without_returning(&txn)
            .await?;
        }
        let user = load(&txn, &profile.user_id).await?.ok_or_else(|| {
            Error::Corrupt("the account vanished while it was written".to_owned())
        })?;
        events.push(upserted(&user, created));
        let notify = enqueue_all(&txn, events, now).await?;
        txn.commit().await?;
        if notify {
            self.signal.notify();
        }
        Ok(user)
    }

    async fn set_password(
        &self,
        user_id: &UserId,
        password: &PasswordHash,
        keep: u32,
        now: DateTime<Utc>,
        mut events: Vec<OutboxMessage>,
        unlock: Option<OutboxMessage>,
    ) -> Result<bool, Error> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        remember_replaced(&txn, user_id.as_str(), keep, now).await?;
        let updated = users::Entity::update_many()
            .col_expr(
                users::Column::PasswordHash,
                Expr::value(password.as_phc().to_owned()),
            )
            .col_expr(users::Column::PasswordChangedAt, Expr::value(now))
            .col_expr(users::Column::UpdatedAt, Expr::value(now))
            .filter(users::Column::UserId.eq(user_id.as_str()))
            .exec(&txn)
            .await?;
        if updated.rows_affected == 0 {
            txn.rollback().await?;
            return Ok(false);
        }
        if let Some(event) = unlock
            && clear_lock(&txn, user_id.as_str(), now).await?
        {
            events.push(event);
        }
        let notify = enqueue_all(&txn, events, now).await?;
        txn.commit().await?;
        if notify {
            self.signal.notify();
        }
        Ok(true)
    }

    async fn unlock(
        &self,
        user_id: &UserId,
        now: DateTime<Utc>,
        event: OutboxMessage,
    ) -> Result<Option<(User, bool)>, Error> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        let was_locked = clear_lock(&txn, user_id.as_str(), now).await?;
        let Some(user) = load(&txn, user_id).await? else {
            txn.rollback().await?;
            return Ok(None);
        };
        if was_locked {
            outbox::enqueue(&txn, event, now).await?;
        }
        txn.commit().await?;
        if was_locked {
            self.signal.notify();
        }
        Ok(Some((user, was_locked)))
    }

    async fn upsert_group(
        &self,
        group: &Group,
        now: DateTime<Utc>,
        upserted: GroupUpsertedEvent<'_>,
    ) -> Result<Group, Error> {
        let group_id = group.group_id.as_str();
        let txn = sspr_storage::begin_write(&self.db).await?;
        let existing: Option<String> = groups::Entity::find_by_id(group_id.to_owned())
            .select_only()
            .column(groups::Column::GroupId)
            .lock_exclusive()
            .into_tuple()
            .one(&txn)
            .await?;
        groups::Entity::insert(groups::ActiveModel {
            group_id: Set(group_id.to_owned()),
            display_name: Set(group.display_name.as_str().to_owned()),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .on_conflict(
            OnConflict::column(groups::Column::GroupId)
                .update_columns([groups::Column::DisplayName, groups::Column::UpdatedAt])
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        group_members::Entity::delete_many()
            .filter(group_members::Column::ParentGroupId.eq(group_id))
            .exec(&txn)
            .await?;
        if !group.member_group_ids.is_empty() {
            group_members::Entity::insert_many(group.member_group_ids.iter().map(|m| {
                group_members::ActiveModel {
                    parent_group_id: Set(group_id.to_owned()),
                    member_group_id: Set(m.as_str().to_owned()),
                }
            }))
            .exec_without_returning(&txn)
            .await?;
        }
        let stored = load_group(&txn, &group.group_id)
            .await?
            .ok_or_else(|| Error::Corrupt("the group vanished while it was written".to_owned()))?;
        outbox::enqueue(&txn, upserted(&stored, existing.is_none()), now).await?;
        txn.commit().await?;
        self.signal.notify();
        Ok(stored)
    }

    async fn delete_group(
        &self,
        group_id: &GroupId,
        now: DateTime<Utc>,
        event: OutboxMessage,
    ) -> Result<bool, Error> {
        let id = group_id.as_str();
        let txn = sspr_storage::begin_write(&self.db).await?;
        let deleted = groups::Entity::delete_by_id(id.to_owned())
            .exec(&txn)
            .await?;
        if deleted.rows_affected == 0 {
            txn.rollback().await?;
            return Ok(false);
        }
        group_members::Entity::delete_many()
            .filter(
                group_members::Column::ParentGroupId
                    .eq(id)
                    .or(group_members::Column::MemberGroupId.eq(id)),
            )
            .exec(&txn)
            .await?;
        user_groups::Entity::delete_many()
            .filter(user_groups::Column::GroupId.eq(id))
            .exec(&txn)
            .await?;
        outbox::enqueue(&txn, event, now).await?;
        txn.commit().await?;
        self.signal.notify();
        Ok(true)
    }

    async fn list_groups(&self, after: Option<&GroupId>, limit: u64) -> Result<Vec<Group>, Error> {
        let mut query = groups::Entity::find().order_by_asc(groups::Column::GroupId);
        if let Some(after) = after {
            query = query.filter(groups::Column::GroupId.gt(after.as_str()));
        }
        let rows = query.limit(limit).all(&self.db).await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = rows.iter().map(|r| r.group_id.clone()).collect();
        let edges: Vec<(String, String)> = group_members::Entity::find()
            .select_only()
            .column(group_members::Column::ParentGroupId)
            .column(group_members::Column::MemberGroupId)
            .filter(group_members::Column::ParentGroupId.is_in(ids))
            .order_by_asc(group_members::Column::ParentGroupId)
            .order_by_asc(group_members::Column::MemberGroupId)
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut members: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (parent, member) in edges {
            members.entry(parent).or_default().push(member);
        }
        rows.into_iter()
            .map(|row| {
                let m = members.remove(&row.group_id).unwrap_or_default();
                to_group(row, m)
            })
            .collect()
    }

    async fn previous_passwords(
        &self,
        user_id: &UserId,
        limit: u32,
    ) -> Result<Vec<PasswordHash>, Error> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows: Vec<String> = password_history::Entity::find()
            .select_only()
            .column(password_history::Column::PasswordHash)
            .filter(password_history::Column::UserId.eq(user_id.as_str()))
            .order_by_desc(password_history::Column::Id)
            .limit(u64::from(limit))
            .into_tuple()
            .all(&self.db)
            .await?;
        rows.iter()
            .map(|phc| {
                PasswordHash::from_stored(phc)
                    .map_err(|e| Error::Corrupt(format!("password history row: {e}")))
            })
            .collect()
    }

    async fn delete(
        &self,
        user_id: &UserId,
        now: DateTime<Utc>,
        events: Vec<OutboxMessage>,
    ) -> Result<bool, Error> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        user_groups::Entity::delete_many()
            .filter(user_groups::Column::UserId.eq(user_id.as_str()))
            .exec(&txn)
            .await?;
        password_history::Entity::delete_many()
            .filter(password_history::Column::UserId.eq(user_id.as_str()))
            .exec(&txn)
            .await?;
        let deleted = users::Entity::delete_by_id(user_id.as_str().to_owned())
            .exec(&txn)
            .await?;
        if deleted.rows_affected == 0 {
            txn.rollback().await?;
            return Ok(false);
        }
        let notify = enqueue_all(&txn, events, now).await?;
        txn.commit().await?;
        if notify {
            self.signal.notify();
        }
        Ok(true)
    }
}
