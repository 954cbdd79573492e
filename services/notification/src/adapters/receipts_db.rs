//! The `provider_messages` table (migration `m0005_add_receipts`) and [`ReceiptStore`] on
//! sea-orm.
//!
//! One row per delivery handed to an SMS/voice provider: the provider, its message id, when the
//! code was issued and accepted, and the final receipt (provider status word, numeric error
//! code, time). A receipt's status change is a conditional update (`... WHERE status = 'sent'`)
//! in the same transaction as its outbox event, so two copies of one receipt racing on two
//! replicas change the record once and emit one event.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
};
use sea_orm_migration::prelude::*;
use sspr_bus::subjects;
use sspr_storage::outbox::{self, OutboxMessage, OutboxSignal};

use crate::adapters::db::entity as deliveries;
use crate::domain::delivery::{DeliveryId, DeliveryStatus};
use crate::domain::receipt::ProviderMessageId;
use crate::ports::{ProviderMessage, ReceiptApplied, ReceiptEvent, ReceiptStore, StoreError};

/// The `provider_messages` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "provider_messages")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub delivery_id: String,
        pub provider: String,
        pub provider_message_id: Option<String>,
        pub method_id: String,
        pub issued_at: DateTimeUtc,
        pub accepted_at: DateTimeUtc,
        pub receipt_status: Option<String>,
        pub receipt_error_code: Option<String>,
        pub receipt_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// [`ReceiptStore`] on sea-orm.
#[derive(Clone)]
pub struct DbReceiptStore {
    db: DatabaseConnection,
    signal: OutboxSignal,
}

impl DbReceiptStore {
    /// `signal` wakes the outbox relay after a receipt's event was committed.
    pub fn new(db: DatabaseConnection, signal: OutboxSignal) -> Self {
        Self { db, signal }
    }
}

#[async_trait]
impl ReceiptStore for DbReceiptStore {
    async fn record_provider_message(&self, m: &ProviderMessage) -> Result<(), StoreError> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        let existing = entity::Entity::find_by_id(m.delivery_id.as_str().to_owned())
            .one(&txn)
            .await?;
        let message_id = m.message_id.as_ref().map(|id| id.as_str().to_owned());
        match existing {
            Some(row) => {
                let mut active: entity::ActiveModel = row.into();
                active.provider = Set(m.provider.clone());
                active.provider_message_id = Set(message_id);
                active.accepted_at = Set(m.accepted_at);
                active.update(&txn).await?;
            }
            None => {
                entity::ActiveModel {
                    delivery_id: Set(m.delivery_id.as_str().to_owned()),
                    provider: Set(m.provider.clone()),
                    provider_message_id: Set(message_id),
                    method_id: Set(m.method_id.clone()),
                    issued_at: Set(m.issued_at),
                    accepted_at: Set(m.accepted_at),
                    receipt_status: Set(None),
                    receipt_error_code: Set(None),
                    receipt_at: Set(None),
                }
                .insert(&txn)
                .await?;
            }
        }
        txn.commit().await?;
        Ok(())
    }

    async fn provider_message(
        &self,
        id: &DeliveryId,
    ) -> Result<Option<ProviderMessage>, StoreError> {
        let Some(row) = entity::Entity::find_by_id(id.as_str().to_owned())
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(ProviderMessage {
            delivery_id: id.clone(),
            provider: row.provider,
            message_id: row
                .provider_message_id
                .as_deref()
                .and_then(ProviderMessageId::parse),
            method_id: row.method_id,
            issued_at: row.issued_at,
            accepted_at: row.accepted_at,
        }))
    }

    async fn apply_receipt(
        &self,
        id: &DeliveryId,
        event: &ReceiptEvent,
        provider_status: &str,
        error_code: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<ReceiptApplied, StoreError> {
        let (status, last_error, subject, event_id, payload) = match event {
            ReceiptEvent::Confirmed(e) => (
                DeliveryStatus::Delivered,
                None,
                subjects::events::CODE_DELIVERY_CONFIRMED,
                e.meta.as_ref().map(|m| m.event_id.clone()),
                OutboxPayload::Confirmed(e),
            ),
            ReceiptEvent::Undeliverable(e) => (
                DeliveryStatus::Failed,
                Some(match error_code {
                    Some(code) => format!(
                        "the provider reported it undeliverable ({provider_status}, error {code})"
                    ),
                    None => format!("the provider reported it undeliverable ({provider_status})"),
                }),
                subjects::events::CODE_DELIVERY_FAILED,
                e.meta.as_ref().map(|m| m.event_id.clone()),
                OutboxPayload::Failed(e),
            ),
        };
        let txn = sspr_storage::begin_write(&self.db).await?;
        let mut update = deliveries::Entity::update_many()
            .col_expr(
                deliveries::Column::Status,
                Expr::value(status.as_str().to_owned()),
            )
            .col_expr(deliveries::Column::UpdatedAt, Expr::value(now))
            .col_expr(deliveries::Column::FinishedAt, Expr::value(Some(now)));
        let undeliverable = matches!(payload, OutboxPayload::Failed(_));
        if undeliverable {
            update = update.col_expr(deliveries::Column::DeadLettered, Expr::value(true));
        }
        if let Some(reason) = &last_error {
            update = update.col_expr(deliveries::Column::LastError, Expr::value(reason.clone()));
        }
        let moved = update
            .filter(deliveries::Column::DeliveryId.eq(id.as_str()))
            .filter(deliveries::Column::Status.eq(DeliveryStatus::Sent.as_str()))
            .exec(&txn)
            .await?
            .rows_affected;
        if moved == 0 {
            txn.rollback().await?;
            return Ok(ReceiptApplied::Unchanged);
        }
        if let OutboxPayload::Failed(failed) = &payload
            && let Some(row) = deliveries::Entity::find_by_id(id.as_str().to_owned())
                .one(&txn)
                .await?
        {
            // The provider gave up after accepting it: a dead letter like any other failure.
            crate::adapters::db::dead_letters::ActiveModel {
                delivery_id: Set(row.delivery_id),
                channel: Set(row.kind),
                purpose: Set(row.purpose),
                user_id: Set(row.user_id),
                flow_id: Set(row.flow_id),
                method_id: Set(failed.method_id.clone()),
                reason: Set(last_error.clone().unwrap_or_default()),
                attempts: Set(row.attempts),
                created_at: Set(now),
            }
            .insert(&txn)
            .await?;
        }
        entity::Entity::update_many()
            .col_expr(
                entity::Column::ReceiptStatus,
                Expr::value(provider_status.to_owned()),
            )
            .col_expr(
                entity::Column::ReceiptErrorCode,
                Expr::value(error_code.map(str::to_owned)),
            )
            .col_expr(entity::Column::ReceiptAt, Expr::value(now))
            .filter(entity::Column::DeliveryId.eq(id.as_str()))
            .exec(&txn)
            .await?;
        let event_id = event_id.unwrap_or_default();
        let message = match payload {
            OutboxPayload::Confirmed(e) => OutboxMessage::new(subject, event_id, e),
            OutboxPayload::Failed(e) => OutboxMessage::new(subject, event_id, e),
        };
        outbox::enqueue(&txn, message, now).await?;
        txn.commit().await?;
        self.signal.notify();
        Ok(ReceiptApplied::Applied)
    }
}

enum OutboxPayload<'a> {
    Confirmed(&'a sspr_proto::events::v1::CodeDeliveryConfirmed),
    Failed(&'a sspr_proto::events::v1::CodeDeliveryFailed),
}

/// `m0005_add_receipts`: the `provider_messages` table. Holds no code and no destination.
pub struct AddReceipts;

impl MigrationName for AddReceipts {
    fn name(&self) -> &str {
        "m0005_add_receipts"
    }
}

#[derive(DeriveIden)]
enum ProviderMessages {
    Table,
    DeliveryId,
    Provider,
    ProviderMessageId,
    MethodId,
    IssuedAt,
    AcceptedAt,
    ReceiptStatus,
    ReceiptErrorCode,
    ReceiptAt,
}

#[async_trait::async_trait]
impl MigrationTrait for AddReceipts {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ProviderMessages::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ProviderMessages::DeliveryId)
                            .string_len(128)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ProviderMessages::Provider)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProviderMessages::ProviderMessageId)
                            .string_len(64)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(ProviderMessages::MethodId)
                            .string_len(64)
                            .not_null()
                            .default(""),
                    )
                    .col(
                        ColumnDef::new(ProviderMessages::IssuedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProviderMessages::AcceptedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProviderMessages::ReceiptStatus)
                            .string_len(32)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(ProviderMessages::ReceiptErrorCode)
                            .string_len(16)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(ProviderMessages::ReceiptAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ProviderMessages::Table).to_owned())
            .await
    }
}
