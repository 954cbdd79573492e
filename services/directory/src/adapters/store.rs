//! [`UserStore`] on the directory's own database (SQLite or PostgreSQL through sea-orm).
//!
//! Invariants:
//! - Each write is one transaction holding the account change and its outbox rows; the relay
//!   is woken only after the commit.
//! - `upsert` is a single `INSERT .. ON CONFLICT (user_id) DO UPDATE`, so two concurrent
//!   upserts of a new account cannot both try to create it; `created_at` and, when not given,
//!   `enabled` and the password hash keep their stored values.
//! - Groups are replaced as a whole and read back sorted by group id.
//! - A password write moves the replaced hash into `password_history` (when history is on)
//!   and trims it to the newest `keep - 1` rows, in the same transaction.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use sspr_storage::outbox::{self, OutboxMessage, OutboxSignal};

use crate::adapters::entities::{password_history, user_groups, users};
use crate::domain::ids::UserId;
use crate::domain::password::PasswordHash;
use crate::domain::user::{Profile, ProfileDraft, User};
use crate::error::Error;
use crate::ports::UserStore;

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

fn to_user(row: users::Model, groups: Vec<user_groups::Model>) -> Result<User, Error> {
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
    Ok(User {
        profile,
        enabled: row.enabled,
        password_hash,
    })
}

async fn load<C: ConnectionTrait>(conn: &C, user_id: &UserId) -> Result<Option<User>, Error> {
    let Some(row) = users::Entity::find_by_id(user_id.as_str().to_owned())
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    let groups = user_groups::Entity::find()
        .filter(user_groups::Column::UserId.eq(user_id.as_str()))
        .order_by_asc(user_groups::Column::GroupId)
        .all(conn)
        .await?;
    to_user(row, groups).map(Some)
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
            admins.push(to_user(row, groups)?);
        }
        Ok(admins)
    }

    async fn upsert(
        &self,
        profile: &Profile,
        enabled: Option<bool>,
        password: Option<&PasswordHash>,
        keep: u32,
        now: DateTime<Utc>,
        events: Vec<OutboxMessage>,
    ) -> Result<User, Error> {
        let user_id = profile.user_id.as_str();
        let row = users::ActiveModel {
            user_id: Set(user_id.to_owned()),
            display_name: Set(profile.display_name.as_str().to_owned()),
            locale: Set(profile.locale.as_str().to_owned()),
            is_admin: Set(profile.is_admin),
            enabled: Set(enabled.unwrap_or(true)),
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
        if password.is_some() {
            update.extend([
                users::Column::PasswordHash,
                users::Column::PasswordChangedAt,
            ]);
        }

        let txn = sspr_storage::begin_write(&self.db).await?;
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
        let notify = enqueue_all(&txn, events, now).await?;
        let user = load(&txn, &profile.user_id).await?.ok_or_else(|| {
            Error::Corrupt("the account vanished while it was written".to_owned())
        })?;
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
        events: Vec<OutboxMessage>,
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
        let notify = enqueue_all(&txn, events, now).await?;
        txn.commit().await?;
        if notify {
            self.signal.notify();
        }
        Ok(true)
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
