//! Schema of the verification database: the outbox, `reset_sessions`, `codes` and
//! `processed_events` (the `user.deleted` events already applied).
//!
//! Migrations are append-only: a released migration is never edited, a change is a new one.

use sea_orm_migration::prelude::*;
use sspr_storage::outbox::CreateOutbox;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateOutbox),
            Box::new(CreateVerificationTables),
            Box::new(CreateProcessedEvents),
            Box::new(AddQuestionChallenge),
        ]
    }
}

struct CreateVerificationTables;

impl MigrationName for CreateVerificationTables {
    fn name(&self) -> &str {
        "m0001_create_reset_sessions_and_codes"
    }
}

#[derive(DeriveIden)]
enum ResetSessions {
    Table,
    TokenHash,
    FlowId,
    UserId,
    Locale,
    Decoy,
    Methods,
    MethodsRequired,
    VerifiedMethodIds,
    Status,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Codes {
    Table,
    Id,
    Purpose,
    UserId,
    MethodId,
    FlowId,
    CodeHash,
    AttemptsLeft,
    CreatedAt,
    ExpiresAt,
    UsedAt,
    Voided,
    DeliveryId,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateVerificationTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ResetSessions::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ResetSessions::TokenHash)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ResetSessions::FlowId)
                            .string_len(64)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(ResetSessions::UserId).string().not_null())
                    .col(ColumnDef::new(ResetSessions::Locale).string().not_null())
                    .col(ColumnDef::new(ResetSessions::Decoy).boolean().not_null())
                    .col(ColumnDef::new(ResetSessions::Methods).text().not_null())
                    .col(
                        ColumnDef::new(ResetSessions::MethodsRequired)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ResetSessions::VerifiedMethodIds)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ResetSessions::Status)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ResetSessions::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ResetSessions::ExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_reset_sessions_expires_at")
                    .table(ResetSessions::Table)
                    .col(ResetSessions::ExpiresAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Codes::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Codes::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Codes::Purpose).string_len(16).not_null())
                    .col(ColumnDef::new(Codes::UserId).string().not_null())
                    .col(ColumnDef::new(Codes::MethodId).string().not_null())
                    .col(ColumnDef::new(Codes::FlowId).string_len(64).not_null())
                    .col(ColumnDef::new(Codes::CodeHash).string_len(64).not_null())
                    .col(ColumnDef::new(Codes::AttemptsLeft).integer().not_null())
                    .col(
                        ColumnDef::new(Codes::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Codes::ExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Codes::UsedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(Codes::Voided).boolean().not_null())
                    .col(ColumnDef::new(Codes::DeliveryId).string_len(36).not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_codes_binding")
                    .table(Codes::Table)
                    .col(Codes::Purpose)
                    .col(Codes::UserId)
                    .col(Codes::MethodId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_codes_expires_at")
                    .table(Codes::Table)
                    .col(Codes::ExpiresAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Codes::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ResetSessions::Table).to_owned())
            .await
    }
}

/// `processed_events`: one row per consumed event, so a redelivered event is applied once; and
/// indexes to find a user's sessions and codes when the user is deleted.
struct CreateProcessedEvents;

impl MigrationName for CreateProcessedEvents {
    fn name(&self) -> &str {
        "m0002_create_processed_events"
    }
}

#[derive(DeriveIden)]
enum ProcessedEvents {
    Table,
    EventId,
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
                        ColumnDef::new(ProcessedEvents::ProcessedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_reset_sessions_user_id")
                    .table(ResetSessions::Table)
                    .col(ResetSessions::UserId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_codes_user_id")
                    .table(Codes::Table)
                    .col(Codes::UserId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_codes_user_id")
                    .table(Codes::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("idx_reset_sessions_user_id")
                    .table(ResetSessions::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(ProcessedEvents::Table).to_owned())
            .await
    }
}

/// `reset_sessions.question_challenge`: the security-question pick and attempts of a flow, as
/// JSON; empty until the flow first asks for questions.
struct AddQuestionChallenge;

impl MigrationName for AddQuestionChallenge {
    fn name(&self) -> &str {
        "m0003_add_question_challenge"
    }
}

#[derive(DeriveIden)]
enum ChallengeColumn {
    QuestionChallenge,
}

#[async_trait::async_trait]
impl MigrationTrait for AddQuestionChallenge {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ResetSessions::Table)
                    .add_column(
                        ColumnDef::new(ChallengeColumn::QuestionChallenge)
                            .text()
                            .not_null()
                            .default(""),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ResetSessions::Table)
                    .drop_column(ChallengeColumn::QuestionChallenge)
                    .to_owned(),
            )
            .await
    }
}
