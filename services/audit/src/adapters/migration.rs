//! Migrations of the audit database, applied in order at start. Never edit a released
//! migration: add a new one.

use sea_orm_migration::prelude::*;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateAuditRecords)]
    }
}

#[derive(DeriveIden)]
enum AuditRecords {
    Table,
    EventId,
    OccurredAtUs,
    OccurredAt,
    Kind,
    UserId,
    FlowId,
    Actor,
    Outcome,
    TraceId,
    Source,
    Summary,
    RecordedAt,
}

struct CreateAuditRecords;

impl MigrationName for CreateAuditRecords {
    fn name(&self) -> &str {
        "m0001_create_audit_records"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateAuditRecords {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditRecords::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(AuditRecords::EventId)
                            .string_len(128)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(AuditRecords::OccurredAtUs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuditRecords::OccurredAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(AuditRecords::Kind).string_len(64).not_null())
                    .col(ColumnDef::new(AuditRecords::UserId).text().not_null())
                    .col(ColumnDef::new(AuditRecords::FlowId).text().not_null())
                    .col(ColumnDef::new(AuditRecords::Actor).text().not_null())
                    .col(ColumnDef::new(AuditRecords::Outcome).text().not_null())
                    .col(
                        ColumnDef::new(AuditRecords::TraceId)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(ColumnDef::new(AuditRecords::Source).text().not_null())
                    .col(ColumnDef::new(AuditRecords::Summary).text().not_null())
                    .col(
                        ColumnDef::new(AuditRecords::RecordedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // Paging order, time-range filters and the retention sweep.
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_records_time")
                    .table(AuditRecords::Table)
                    .col(AuditRecords::OccurredAtUs)
                    .col(AuditRecords::EventId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // "Everything about this user".
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_records_user")
                    .table(AuditRecords::Table)
                    .col(AuditRecords::UserId)
                    .col(AuditRecords::OccurredAtUs)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditRecords::Table).to_owned())
            .await
    }
}
