//! Delivery records in the service's own database (sea-orm), and the `code.delivered` event
//! written through the outbox in the same transaction as the SENT status.
//!
//! Every write upserts by delivery id inside a transaction, so a record exists whatever step a
//! delivery reaches first, and two writes for one delivery never interleave half-way.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, DatabaseConnection, DatabaseTransaction, EntityTrait,
};
use sspr_bus::subjects;
use sspr_proto::events::v1::{CodeDelivered, CodeDeliveryFailed};
use sspr_storage::outbox::{self, OutboxMessage, OutboxSignal};

use crate::domain::delivery::{Channel, DeliveryHeader, DeliveryId, DeliveryStatus, Purpose};
use crate::ports::{DeliveryRecord, DeliveryStore, NoticeStore, StoreError};

/// The `deliveries` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "deliveries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub delivery_id: String,
        pub kind: String,
        pub purpose: String,
        pub status: String,
        pub attempts: i32,
        pub user_id: String,
        pub flow_id: String,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub last_error: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `processed_events` table: `password.changed` events already handled.
pub mod processed {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "processed_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        pub user_id: String,
        pub mails: i32,
        pub processed_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// [`DeliveryStore`] on sea-orm.
#[derive(Clone)]
pub struct DbDeliveryStore {
    db: DatabaseConnection,
    signal: OutboxSignal,
}

impl DbDeliveryStore {
    /// `signal` wakes the outbox relay after an event was committed.
    pub fn new(db: DatabaseConnection, signal: OutboxSignal) -> Self {
        Self { db, signal }
    }

    /// Applies `change` to the record of `header` (created first when missing), in `txn`.
    async fn upsert(
        txn: &DatabaseTransaction,
        header: &DeliveryHeader,
        now: DateTime<Utc>,
        change: impl FnOnce(&mut entity::ActiveModel, i32),
    ) -> Result<entity::Model, StoreError> {
        let existing = entity::Entity::find_by_id(header.id.as_str().to_owned())
            .one(txn)
            .await?;
        match existing {
            Some(row) => {
                let attempts = row.attempts;
                let mut active: entity::ActiveModel = row.into();
                active.updated_at = Set(now);
                change(&mut active, attempts);
                Ok(active.update(txn).await?)
            }
            None => {
                let mut active = entity::ActiveModel {
                    delivery_id: Set(header.id.as_str().to_owned()),
                    kind: Set(header.channel.as_str().to_owned()),
                    purpose: Set(header.purpose.as_str().to_owned()),
                    status: Set(DeliveryStatus::Queued.as_str().to_owned()),
                    attempts: Set(0),
                    user_id: Set(header.user_id.clone()),
                    flow_id: Set(header.flow_id.clone()),
                    created_at: Set(now),
                    updated_at: Set(now),
                    last_error: Set(None),
                };
                change(&mut active, 0);
                Ok(active.insert(txn).await?)
            }
        }
    }

    async fn set_status(
        &self,
        header: &DeliveryHeader,
        status: DeliveryStatus,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        Self::upsert(&txn, header, now, |row, _| {
            row.status = Set(status.as_str().to_owned());
            if let Some(error) = error {
                row.last_error = Set(Some(error.to_owned()));
            }
        })
        .await?;
        txn.commit().await?;
        Ok(())
    }
}

fn to_record(row: entity::Model) -> Result<DeliveryRecord, StoreError> {
    let corrupt = |what| StoreError::Corrupt(row.delivery_id.clone(), what);
    Ok(DeliveryRecord {
        id: DeliveryId::parse(&row.delivery_id).map_err(|_| corrupt("id"))?,
        channel: Channel::parse(&row.kind).ok_or_else(|| corrupt("kind"))?,
        purpose: Purpose::parse(&row.purpose).ok_or_else(|| corrupt("purpose"))?,
        status: DeliveryStatus::parse(&row.status).ok_or_else(|| corrupt("status"))?,
        attempts: u32::try_from(row.attempts).unwrap_or(0),
        user_id: row.user_id,
        flow_id: row.flow_id,
        created_at: row.created_at,
        updated_at: row.updated_at,
        last_error: row.last_error,
    })
}

#[async_trait]
impl DeliveryStore for DbDeliveryStore {
    async fn get(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, StoreError> {
        entity::Entity::find_by_id(id.as_str().to_owned())
            .one(&self.db)
            .await?
            .map(to_record)
            .transpose()
    }

    async fn start_attempt(
        &self,
        header: &DeliveryHeader,
        now: DateTime<Utc>,
    ) -> Result<DeliveryRecord, StoreError> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        let row = Self::upsert(&txn, header, now, |row, attempts| {
            row.status = Set(DeliveryStatus::Sending.as_str().to_owned());
            row.attempts = Set(attempts.saturating_add(1));
        })
        .await?;
        txn.commit().await?;
        to_record(row)
    }

    async fn record_expired(
        &self,
        header: &DeliveryHeader,
        event: &CodeDeliveryFailed,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let event_id = event
            .meta
            .as_ref()
            .map(|m| m.event_id.clone())
            .unwrap_or_default();
        let txn = sspr_storage::begin_write(&self.db).await?;
        Self::upsert(&txn, header, now, |row, _| {
            row.status = Set(DeliveryStatus::Expired.as_str().to_owned());
            row.last_error = Set(Some("the code expired before it could be sent".to_owned()));
        })
        .await?;
        outbox::enqueue(
            &txn,
            OutboxMessage::new(subjects::events::CODE_DELIVERY_FAILED, event_id, event),
            now,
        )
        .await?;
        txn.commit().await?;
        self.signal.notify();
        Ok(())
    }

    async fn record_retry(
        &self,
        header: &DeliveryHeader,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.set_status(header, DeliveryStatus::Queued, Some(error), now)
            .await
    }

    async fn record_failed(
        &self,
        header: &DeliveryHeader,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.set_status(header, DeliveryStatus::Failed, Some(error), now)
            .await
    }

    async fn record_sent(
        &self,
        header: &DeliveryHeader,
        event: &CodeDelivered,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let event_id = event
            .meta
            .as_ref()
            .map(|m| m.event_id.clone())
            .unwrap_or_default();
        let txn = sspr_storage::begin_write(&self.db).await?;
        Self::upsert(&txn, header, now, |row, _| {
            row.status = Set(DeliveryStatus::Sent.as_str().to_owned());
        })
        .await?;
        outbox::enqueue(
            &txn,
            OutboxMessage::new(subjects::events::CODE_DELIVERED, event_id, event),
            now,
        )
        .await?;
        txn.commit().await?;
        self.signal.notify();
        Ok(())
    }
}

#[async_trait]
impl NoticeStore for DbDeliveryStore {
    async fn is_processed(&self, event_id: &uuid::Uuid) -> Result<bool, StoreError> {
        Ok(processed::Entity::find_by_id(event_id.to_string())
            .one(&self.db)
            .await?
            .is_some())
    }

    async fn record_notice(
        &self,
        header: &DeliveryHeader,
        status: DeliveryStatus,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        Self::upsert(&txn, header, now, |row, attempts| {
            row.status = Set(status.as_str().to_owned());
            row.attempts = Set(attempts.saturating_add(1));
            if let Some(error) = error {
                row.last_error = Set(Some(error.to_owned()));
            }
        })
        .await?;
        txn.commit().await?;
        Ok(())
    }

    async fn finish_event(
        &self,
        event_id: &uuid::Uuid,
        user_id: &str,
        sent: &[DeliveryHeader],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        for header in sent {
            Self::upsert(&txn, header, now, |row, _| {
                row.status = Set(DeliveryStatus::Sent.as_str().to_owned());
            })
            .await?;
        }
        processed::ActiveModel {
            event_id: Set(event_id.to_string()),
            user_id: Set(user_id.to_owned()),
            mails: Set(i32::try_from(sent.len()).unwrap_or(i32::MAX)),
            processed_at: Set(now),
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        Ok(())
    }

    async fn finish_announcement(
        &self,
        event_id: &uuid::Uuid,
        user_id: &str,
        sent: &[DeliveryHeader],
        announced: &sspr_proto::events::v1::MethodChangeAnnounced,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        for header in sent {
            Self::upsert(&txn, header, now, |row, _| {
                row.status = Set(DeliveryStatus::Sent.as_str().to_owned());
            })
            .await?;
        }
        processed::ActiveModel {
            event_id: Set(event_id.to_string()),
            user_id: Set(user_id.to_owned()),
            mails: Set(i32::try_from(sent.len()).unwrap_or(i32::MAX)),
            processed_at: Set(now),
        }
        .insert(&txn)
        .await?;
        let announced_id = announced
            .meta
            .as_ref()
            .map(|m| m.event_id.clone())
            .unwrap_or_default();
        outbox::enqueue(
            &txn,
            OutboxMessage::new(
                subjects::events::METHOD_CHANGE_ANNOUNCED,
                announced_id,
                announced,
            ),
            now,
        )
        .await?;
        txn.commit().await?;
        self.signal.notify();
        Ok(())
    }
}
