//! Schema of the notification database: the outbox, the `deliveries` table, the
//! `processed_events` table (password-changed notices already handled) and the `dead_letters`
//! table (deliveries given up).
//!
//! Migrations are append-only: never edit one that has shipped, add a new one.

use sea_orm_migration::prelude::*;
use sspr_storage::outbox::CreateOutbox;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateOutbox),
            Box::new(CreateDeliveries),
            Box::new(CreateProcessedEvents),
            Box::new(CreateDeadLetters),
            Box::new(AddDeliveryTimestampsAndProvider),
            Box::new(crate::adapters::receipts_db::AddReceipts),
        ]
    }
}

/// One row per delivery id. `last_error` is operator-readable and never holds a code or a
/// destination; neither does any other column.
pub struct CreateDeliveries;

impl MigrationName for CreateDeliveries {
    fn name(&self) -> &str {
        "m0001_create_deliveries"
    }
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    DeliveryId,
    Kind,
    Purpose,
    Status,
    Attempts,
    UserId,
    FlowId,
    CreatedAt,
    UpdatedAt,
    LastError,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateDeliveries {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Deliveries::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Deliveries::DeliveryId)
                            .string_len(128)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Deliveries::Kind).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Deliveries::Purpose)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Deliveries::Status).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Deliveries::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(Deliveries::UserId)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Deliveries::FlowId)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Deliveries::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Deliveries::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Deliveries::LastError).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_deliveries_user")
                    .table(Deliveries::Table)
                    .col(Deliveries::UserId)
                    .col(Deliveries::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Deliveries::Table).to_owned())
            .await
    }
}

/// One row per `password.changed` event whose notices were sent (idempotent consumer).
pub struct CreateProcessedEvents;

impl MigrationName for CreateProcessedEvents {
    fn name(&self) -> &str {
        "m0002_create_processed_events"
    }
}

#[derive(DeriveIden)]
enum ProcessedEvents {
    Table,
    EventId,
    UserId,
    Mails,
    ProcessedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateProcessedEvents {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ProcessedEvents::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ProcessedEvents::EventId)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ProcessedEvents::UserId)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProcessedEvents::Mails)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(ProcessedEvents::ProcessedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ProcessedEvents::Table).to_owned())
            .await
    }
}

/// One row per delivery given up (permanent refusal, retries exhausted, malformed), written in
/// the transaction that marks it FAILED. `reason` is operator text and, like every other column,
/// never holds a code or a destination.
pub struct CreateDeadLetters;

impl MigrationName for CreateDeadLetters {
    fn name(&self) -> &str {
        "m0003_create_dead_letters"
    }
}

#[derive(DeriveIden)]
enum DeadLetters {
    Table,
    DeliveryId,
    Channel,
    Purpose,
    UserId,
    FlowId,
    MethodId,
    Reason,
    Attempts,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateDeadLetters {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DeadLetters::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(DeadLetters::DeliveryId)
                            .string_len(128)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(DeadLetters::Channel)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeadLetters::Purpose)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeadLetters::UserId)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeadLetters::FlowId)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeadLetters::MethodId)
                            .string_len(128)
                            .not_null()
                            .default(""),
                    )
                    .col(ColumnDef::new(DeadLetters::Reason).text().not_null())
                    .col(
                        ColumnDef::new(DeadLetters::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(DeadLetters::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_dead_letters_created")
                    .table(DeadLetters::Table)
                    .col(DeadLetters::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(DeadLetters::Table).to_owned())
            .await
    }
}

/// When a delivery was sent and finished, whether it was dead-lettered, and which provider
/// carried it (with the provider's message id when it gives one).
pub struct AddDeliveryTimestampsAndProvider;

impl MigrationName for AddDeliveryTimestampsAndProvider {
    fn name(&self) -> &str {
        "m0004_add_delivery_timestamps_and_provider"
    }
}

#[derive(DeriveIden)]
enum NewDeliveryColumns {
    #[sea_orm(iden = "deliveries")]
    Table,
    SentAt,
    FinishedAt,
    DeadLettered,
    Provider,
    ProviderMessageId,
}

#[async_trait::async_trait]
impl MigrationTrait for AddDeliveryTimestampsAndProvider {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        let columns = [
            ColumnDef::new(NewDeliveryColumns::SentAt)
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
            ColumnDef::new(NewDeliveryColumns::FinishedAt)
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
            ColumnDef::new(NewDeliveryColumns::DeadLettered)
                .boolean()
                .not_null()
                .default(false)
                .to_owned(),
            ColumnDef::new(NewDeliveryColumns::Provider)
                .string_len(16)
                .not_null()
                .default("")
                .to_owned(),
            ColumnDef::new(NewDeliveryColumns::ProviderMessageId)
                .string_len(128)
                .null()
                .to_owned(),
        ];
        for mut column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(NewDeliveryColumns::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            NewDeliveryColumns::SentAt,
            NewDeliveryColumns::FinishedAt,
            NewDeliveryColumns::DeadLettered,
            NewDeliveryColumns::Provider,
            NewDeliveryColumns::ProviderMessageId,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(NewDeliveryColumns::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
