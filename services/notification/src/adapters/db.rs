//! Delivery records in the service's own database (sea-orm), and the events written through the
//! outbox in the same transaction as the status they announce: `code.delivered` with SENT,
//! `code.delivery_failed` with EXPIRED, and with FAILED together with the dead-letter entry.
//!
//! Every write upserts by delivery id inside a transaction, so a record exists whatever step a
//! delivery reaches first, and two writes for one delivery never interleave half-way. A final
//! status also sets `finished_at`; SENT sets `sent_at`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, DatabaseConnection, DatabaseTransaction, EntityTrait,
    QuerySelect,
};
use sspr_bus::subjects;
use sspr_proto::events::v1::{CodeDelivered, CodeDeliveryFailed};
use sspr_storage::outbox::{self, OutboxMessage, OutboxSignal};

use crate::domain::delivery::{Channel, DeliveryHeader, DeliveryId, DeliveryStatus, Purpose};
use crate::ports::{
    AttemptClaim, DeadLetter, DeliveryRecord, DeliveryStore, NoticeStore, StoreError,
};

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
        pub sent_at: Option<DateTimeUtc>,
        pub finished_at: Option<DateTimeUtc>,
        pub dead_lettered: bool,
        pub provider: String,
        pub provider_message_id: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `dead_letters` table: deliveries given up, one row each.
pub mod dead_letters {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "dead_letters")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub delivery_id: String,
        pub channel: String,
        pub purpose: String,
        pub user_id: String,
        pub flow_id: String,
        pub method_id: String,
        pub reason: String,
        pub attempts: i32,
        pub created_at: DateTimeUtc,
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
                    sent_at: Set(None),
                    finished_at: Set(None),
                    dead_lettered: Set(false),
                    provider: Set(String::new()),
                    provider_message_id: Set(None),
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
            if status.is_final() {
                row.finished_at = Set(Some(now));
            }
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
        sent_at: row.sent_at,
        finished_at: row.finished_at,
        dead_lettered: row.dead_lettered,
        provider: row.provider,
        provider_message_id: row.provider_message_id,
    })
}

fn event_id_of(meta: Option<&sspr_proto::events::v1::EventMeta>) -> String {
    meta.map(|m| m.event_id.clone()).unwrap_or_default()
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
        provider: &str,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<AttemptClaim, StoreError> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        // SQLite's write transaction is already exclusive; PostgreSQL locks the row.
        let existing = entity::Entity::find_by_id(header.id.as_str().to_owned())
            .lock_exclusive()
            .one(&txn)
            .await?;
        if let Some(row) = &existing {
            let status = DeliveryStatus::parse(&row.status)
                .ok_or_else(|| StoreError::Corrupt(row.delivery_id.clone(), "status"))?;
            if status.is_final() {
                let record = to_record(row.clone())?;
                txn.commit().await?;
                return Ok(AttemptClaim::Final(record));
            }
            if status == DeliveryStatus::Sending && row.updated_at > now - lease {
                let since = row.updated_at;
                txn.commit().await?;
                return Ok(AttemptClaim::Busy { since });
            }
        }
        let row = Self::upsert(&txn, header, now, |row, attempts| {
            row.status = Set(DeliveryStatus::Sending.as_str().to_owned());
            row.attempts = Set(attempts.saturating_add(1));
            row.provider = Set(provider.to_owned());
        })
        .await?;
        txn.commit().await?;
        Ok(AttemptClaim::Started(to_record(row)?))
    }

    async fn record_expired(
        &self,
        header: &DeliveryHeader,
        event: &CodeDeliveryFailed,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let event_id = event_id_of(event.meta.as_ref());
        let txn = sspr_storage::begin_write(&self.db).await?;
        // SQLite's write transaction is already exclusive; PostgreSQL locks the row.
        let existing = entity::Entity::find_by_id(header.id.as_str().to_owned())
            .lock_exclusive()
            .one(&txn)
            .await?;
        if let Some(row) = existing
            && DeliveryStatus::parse(&row.status).is_some_and(DeliveryStatus::is_final)
        {
            // Another copy of the message already finished it: no second event.
            txn.commit().await?;
            return Ok(false);
        }
        Self::upsert(&txn, header, now, |row, _| {
            row.status = Set(DeliveryStatus::Expired.as_str().to_owned());
            row.finished_at = Set(Some(now));
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
        Ok(true)
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
        dead: &DeadLetter,
        event: &CodeDeliveryFailed,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let event_id = event_id_of(event.meta.as_ref());
        let txn = sspr_storage::begin_write(&self.db).await?;
        let already = dead_letters::Entity::find_by_id(header.id.as_str().to_owned())
            .one(&txn)
            .await?
            .is_some();
        if already {
            // Dead-lettered by an earlier delivery of the message whose ack was lost.
            txn.commit().await?;
            return Ok(false);
        }
        Self::upsert(&txn, header, now, |row, _| {
            row.status = Set(DeliveryStatus::Failed.as_str().to_owned());
            row.finished_at = Set(Some(now));
            row.dead_lettered = Set(true);
            row.last_error = Set(Some(dead.reason.clone()));
        })
        .await?;
        dead_letters::ActiveModel {
            delivery_id: Set(header.id.as_str().to_owned()),
            channel: Set(header.channel.as_str().to_owned()),
            purpose: Set(header.purpose.as_str().to_owned()),
            user_id: Set(header.user_id.clone()),
            flow_id: Set(header.flow_id.clone()),
            method_id: Set(header.method_id.clone()),
            reason: Set(dead.reason.clone()),
            attempts: Set(i32::try_from(dead.attempts).unwrap_or(i32::MAX)),
            created_at: Set(now),
        }
        .insert(&txn)
        .await?;
        outbox::enqueue(
            &txn,
            OutboxMessage::new(subjects::events::CODE_DELIVERY_FAILED, event_id, event),
            now,
        )
        .await?;
        txn.commit().await?;
        self.signal.notify();
        Ok(true)
    }

    async fn record_sent(
        &self,
        header: &DeliveryHeader,
        event: &CodeDelivered,
        provider_message_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let event_id = event_id_of(event.meta.as_ref());
        let txn = sspr_storage::begin_write(&self.db).await?;
        Self::upsert(&txn, header, now, |row, _| {
            row.status = Set(DeliveryStatus::Sent.as_str().to_owned());
            row.sent_at = Set(Some(now));
            row.finished_at = Set(Some(now));
            if let Some(id) = provider_message_id {
                row.provider_message_id = Set(Some(id.chars().take(128).collect()));
            }
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
            if status.is_final() {
                row.finished_at = Set(Some(now));
            }
            if status == DeliveryStatus::Sent {
                row.sent_at = Set(Some(now));
            }
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
                row.sent_at = Set(Some(now));
                row.finished_at = Set(Some(now));
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
                row.sent_at = Set(Some(now));
                row.finished_at = Set(Some(now));
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
