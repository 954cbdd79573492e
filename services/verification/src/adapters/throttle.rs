//! The throttle counters, the reset block and the flows' client IPs, in the verification
//! database, so every replica of the service shares them (adding replicas does not multiply a
//! limit).
//!
//! Invariants:
//! - Counting is race-safe across replicas: a call locks the row of each of its buckets (an
//!   upsert on `throttle_buckets`, in key order so two calls never deadlock; on SQLite the
//!   write transaction holds the database lock from `BEGIN`), then reads the bucket's hits and
//!   inserts its own, all in one transaction. Two calls racing for the last slot are
//!   serialised: the second reads the first one's hit and is refused.
//! - A refused call is not counted; it records, on the bucket row, until when the
//!   `reset.throttled` event of this window was already enqueued, so the event goes out once
//!   per limit and window, in the same transaction.
//! - A failed verification that reaches the limit blocks the user id (a `reset_blocks` row)
//!   and enqueues `reset.blocked` in the same transaction; the counted failures move into the
//!   block (the hits are deleted), so a block that ends does not re-trigger at once.
//! - Keys are keyed hashes (see [`crate::domain::throttle::Bucket`]): no destination or IP in
//!   clear. Rows older than the longest window are purged.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DatabaseTransaction, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use sspr_storage::outbox::{self, OutboxMessage};
use uuid::Uuid;

use super::store::StoreError;
use crate::domain::throttle::{Bucket, Decision, Limit, decide, reaches_block};
use crate::domain::{FlowId, UserId};

/// sea-orm entities of the throttle tables (schema: `migration::CreateThrottleTables`).
pub mod entities {
    /// `throttle_hits`: one row per counted call.
    pub mod throttle_hit {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "throttle_hits")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: String,
            /// `<limit>:<keyed hash>`.
            pub bucket: String,
            pub at: DateTimeUtc,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    /// `throttle_buckets`: the lock row of a bucket and its event marker.
    pub mod throttle_bucket {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "throttle_buckets")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub bucket: String,
            pub touched_at: DateTimeUtc,
            /// The end of the window whose `reset.throttled` event was enqueued.
            pub notified_until: Option<DateTimeUtc>,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    /// `reset_blocks`: users blocked from self-service reset.
    pub mod reset_block {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "reset_blocks")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub user_id: String,
            pub blocked_at: DateTimeUtc,
            pub blocked_until: DateTimeUtc,
            pub failed_verifications: i32,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    /// `flow_origins`: the keyed client IP that started a reset flow.
    pub mod flow_origin {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "flow_origins")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub flow_id: String,
            /// Key of the IP's failure bucket.
            pub ip_bucket: String,
            pub created_at: DateTimeUtc,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }
}

use entities::{flow_origin, reset_block, throttle_bucket, throttle_hit};

/// The outcome of [`ThrottleStore::take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Counted in every bucket.
    Allowed,
    /// Counted nowhere: `limit` is full until `retry_at` (the latest of the full buckets).
    Refused {
        limit: Limit,
        retry_at: DateTime<Utc>,
    },
}

/// A full bucket: its retry time and until when its event was already enqueued.
type FullBucket<'a> = (&'a Bucket, DateTime<Utc>, Option<DateTime<Utc>>);

/// A user's block and failure count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockStatus {
    pub blocked_until: Option<DateTime<Utc>>,
    pub failed_verifications: u32,
}

#[derive(Clone)]
pub struct ThrottleStore {
    db: DatabaseConnection,
}

impl ThrottleStore {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Counts one call in every bucket if none of them is full; otherwise counts nothing and,
    /// for each full bucket whose event was not yet enqueued in this window, enqueues
    /// `event(limit, retry_at)`.
    pub async fn take(
        &self,
        buckets: &[Bucket],
        now: DateTime<Utc>,
        event: impl Fn(Limit, DateTime<Utc>) -> Vec<OutboxMessage>,
    ) -> Result<Taken, StoreError> {
        let mut ordered: Vec<&Bucket> = buckets.iter().collect();
        ordered.sort_by(|a, b| a.key.cmp(&b.key));
        ordered.dedup_by(|a, b| a.key == b.key);
        let txn = sspr_storage::begin_write(&self.db).await?;
        let mut refused: Vec<FullBucket<'_>> = Vec::new();
        for bucket in &ordered {
            let notified_until = lock(&txn, &bucket.key, now).await?;
            let hits = hits_since(&txn, &bucket.key, now - bucket.limit.window()).await?;
            if let Decision::Refuse { retry_at } =
                decide(&hits, bucket.max, bucket.limit.window(), now)
            {
                refused.push((bucket, retry_at, notified_until));
            }
        }
        if refused.is_empty() {
            for bucket in &ordered {
                insert_hit(&txn, &bucket.key, now).await?;
            }
            txn.commit().await?;
            return Ok(Taken::Allowed);
        }
        for (bucket, retry_at, notified_until) in &refused {
            if notified_until.is_some_and(|until| until > now) {
                continue;
            }
            throttle_bucket::Entity::update_many()
                .col_expr(
                    throttle_bucket::Column::NotifiedUntil,
                    sea_orm::sea_query::Expr::value(*retry_at),
                )
                .filter(throttle_bucket::Column::Bucket.eq(bucket.key.as_str()))
                .exec(&txn)
                .await?;
            for message in event(bucket.limit, *retry_at) {
                outbox::enqueue(&txn, message, now).await?;
            }
        }
        txn.commit().await?;
        let (bucket, retry_at, _) = refused
            .iter()
            .max_by_key(|(_, retry_at, _)| *retry_at)
            .copied()
            .ok_or(StoreError::Corrupt("throttle_buckets"))?;
        Ok(Taken::Refused {
            limit: bucket.limit,
            retry_at,
        })
    }

    /// Calls counted in `bucket` since `since` (a read, for thresholds that count nothing).
    pub async fn count_since(&self, bucket: &str, since: DateTime<Utc>) -> Result<u32, StoreError> {
        let hits = hits_since(&self.db, bucket, since).await?;
        Ok(u32::try_from(hits.len()).unwrap_or(u32::MAX))
    }

    /// Counts a failed verification of `user` (in `failures`, and in `ip_failures` when the
    /// flow's client IP is known). When that reaches the limit, blocks the user until
    /// `blocked_until(now)` and enqueues `blocked(until, failures)`; returns the end of the
    /// block then.
    pub async fn record_failure(
        &self,
        user: &UserId,
        failures: &Bucket,
        ip_failures: Option<&str>,
        block_until: DateTime<Utc>,
        now: DateTime<Utc>,
        blocked: impl FnOnce(DateTime<Utc>, u32) -> Vec<OutboxMessage>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        lock(&txn, &failures.key, now).await?;
        insert_hit(&txn, &failures.key, now).await?;
        if let Some(ip) = ip_failures {
            insert_hit(&txn, ip, now).await?;
        }
        let counted = hits_since(&txn, &failures.key, now - failures.limit.window()).await?;
        let count = u32::try_from(counted.len()).unwrap_or(u32::MAX);
        if !reaches_block(count, failures.max) {
            txn.commit().await?;
            return Ok(None);
        }
        reset_block::Entity::insert(reset_block::ActiveModel {
            user_id: Set(user.as_str().to_owned()),
            blocked_at: Set(now),
            blocked_until: Set(block_until),
            failed_verifications: Set(i32::try_from(count).unwrap_or(i32::MAX)),
        })
        .on_conflict(
            OnConflict::column(reset_block::Column::UserId)
                .update_columns([
                    reset_block::Column::BlockedAt,
                    reset_block::Column::BlockedUntil,
                    reset_block::Column::FailedVerifications,
                ])
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        throttle_hit::Entity::delete_many()
            .filter(throttle_hit::Column::Bucket.eq(failures.key.as_str()))
            .exec(&txn)
            .await?;
        for message in blocked(block_until, count) {
            outbox::enqueue(&txn, message, now).await?;
        }
        txn.commit().await?;
        Ok(Some(block_until))
    }

    /// When the block of `user` ends, if one is in force at `now`.
    pub async fn blocked_until(
        &self,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(reset_block::Entity::find_by_id(user.as_str().to_owned())
            .one(&self.db)
            .await?
            .map(|b| b.blocked_until)
            .filter(|until| *until > now))
    }

    /// The block of `user` and the failures counted in `failures` (those moved into a block in
    /// force included).
    pub async fn status(
        &self,
        user: &UserId,
        failures: &Bucket,
        now: DateTime<Utc>,
    ) -> Result<BlockStatus, StoreError> {
        let block = reset_block::Entity::find_by_id(user.as_str().to_owned())
            .one(&self.db)
            .await?
            .filter(|b| b.blocked_until > now);
        let counted = self
            .count_since(&failures.key, now - failures.limit.window())
            .await?;
        let in_block = block
            .as_ref()
            .map(|b| u32::try_from(b.failed_verifications).unwrap_or(0))
            .unwrap_or(0);
        Ok(BlockStatus {
            blocked_until: block.map(|b| b.blocked_until),
            failed_verifications: counted.saturating_add(in_block),
        })
    }

    /// Lifts the block of `user` and deletes the counts of its `buckets`; enqueues
    /// `events(was_blocked, failures)` (failures: those of `failures` in its window, before
    /// clearing) in the same transaction. Returns `(was_blocked, failures)`.
    pub async fn clear_user(
        &self,
        user: &UserId,
        failures: &Bucket,
        buckets: &[String],
        now: DateTime<Utc>,
        events: impl FnOnce(bool, u32) -> Vec<OutboxMessage>,
    ) -> Result<(bool, u32), StoreError> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        lock(&txn, &failures.key, now).await?;
        let failed = hits_since(&txn, &failures.key, now - failures.limit.window())
            .await?
            .len();
        let removed = reset_block::Entity::delete_many()
            .filter(reset_block::Column::UserId.eq(user.as_str()))
            .filter(reset_block::Column::BlockedUntil.gt(now))
            .exec(&txn)
            .await?
            .rows_affected;
        reset_block::Entity::delete_many()
            .filter(reset_block::Column::UserId.eq(user.as_str()))
            .exec(&txn)
            .await?;
        throttle_hit::Entity::delete_many()
            .filter(throttle_hit::Column::Bucket.is_in(buckets.iter().map(String::as_str)))
            .exec(&txn)
            .await?;
        let was_blocked = removed > 0;
        let failed = u32::try_from(failed).unwrap_or(u32::MAX);
        for message in events(was_blocked, failed) {
            outbox::enqueue(&txn, message, now).await?;
        }
        txn.commit().await?;
        Ok((was_blocked, failed))
    }

    /// Remembers which client IP (its failure bucket key) started `flow`.
    pub async fn remember_origin(
        &self,
        flow: &FlowId,
        ip_bucket: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        flow_origin::Entity::insert(flow_origin::ActiveModel {
            flow_id: Set(flow.as_str().to_owned()),
            ip_bucket: Set(ip_bucket.to_owned()),
            created_at: Set(now),
        })
        .on_conflict(
            OnConflict::column(flow_origin::Column::FlowId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await?;
        Ok(())
    }

    /// The failure bucket key of the client IP that started `flow`, if known.
    pub async fn origin(&self, flow: &FlowId) -> Result<Option<String>, StoreError> {
        Ok(flow_origin::Entity::find_by_id(flow.as_str().to_owned())
            .one(&self.db)
            .await?
            .map(|o| o.ip_bucket))
    }

    /// Deletes counts, markers, ended blocks and flow origins older than `before`.
    pub async fn purge(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        let mut rows = throttle_hit::Entity::delete_many()
            .filter(throttle_hit::Column::At.lt(before))
            .exec(&txn)
            .await?
            .rows_affected;
        rows += throttle_bucket::Entity::delete_many()
            .filter(throttle_bucket::Column::TouchedAt.lt(before))
            .exec(&txn)
            .await?
            .rows_affected;
        rows += reset_block::Entity::delete_many()
            .filter(reset_block::Column::BlockedUntil.lt(before))
            .exec(&txn)
            .await?
            .rows_affected;
        rows += flow_origin::Entity::delete_many()
            .filter(flow_origin::Column::CreatedAt.lt(before))
            .exec(&txn)
            .await?
            .rows_affected;
        txn.commit().await?;
        Ok(rows)
    }
}

/// Takes the row lock of `bucket` (creating its row) and returns its event marker.
async fn lock(
    txn: &DatabaseTransaction,
    bucket: &str,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    throttle_bucket::Entity::insert(throttle_bucket::ActiveModel {
        bucket: Set(bucket.to_owned()),
        touched_at: Set(now),
        notified_until: Set(None),
    })
    .on_conflict(
        OnConflict::column(throttle_bucket::Column::Bucket)
            .update_column(throttle_bucket::Column::TouchedAt)
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(throttle_bucket::Entity::find_by_id(bucket.to_owned())
        .one(txn)
        .await?
        .and_then(|b| b.notified_until))
}

async fn hits_since<C: sea_orm::ConnectionTrait>(
    conn: &C,
    bucket: &str,
    since: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>, StoreError> {
    Ok(throttle_hit::Entity::find()
        .select_only()
        .column(throttle_hit::Column::At)
        .filter(throttle_hit::Column::Bucket.eq(bucket))
        .filter(throttle_hit::Column::At.gt(since))
        .order_by_asc(throttle_hit::Column::At)
        .into_tuple::<DateTime<Utc>>()
        .all(conn)
        .await?)
}

async fn insert_hit(
    txn: &DatabaseTransaction,
    bucket: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    throttle_hit::Entity::insert(throttle_hit::ActiveModel {
        id: Set(Uuid::now_v7().to_string()),
        bucket: Set(bucket.to_owned()),
        at: Set(now),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}
