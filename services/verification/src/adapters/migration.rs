//! Schema of the verification database: the outbox, `reset_sessions`, `codes` (with each
//! code's delivery state) and `processed_events` (the consumed events already applied).
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
            Box::new(CreateThrottleTables),
            Box::new(AddKeyIdAndVerifiedAt),
            Box::new(super::phone_ledger::CreatePhoneLedger),
            Box::new(AddDeliveryState),
            Box::new(sspr_storage::idempotency::CreateIdempotencyKeys),
            Box::new(AddCodeRequestTag),
            Box::new(AddCompletingSince),
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

/// The abuse throttles (see `adapters::throttle`): `throttle_hits` (one row per counted call,
/// by keyed bucket), `throttle_buckets` (one row per bucket: the row locked while a call is
/// counted, and until when its `reset.throttled` event was already sent), `reset_blocks` (users
/// blocked from self-service reset) and `flow_origins` (the keyed client IP that started a
/// reset flow, for the CAPTCHA threshold on failures).
struct CreateThrottleTables;

impl MigrationName for CreateThrottleTables {
    fn name(&self) -> &str {
        "m0004_create_throttle_tables"
    }
}

#[derive(DeriveIden)]
enum ThrottleHits {
    Table,
    Id,
    Bucket,
    At,
}

#[derive(DeriveIden)]
enum ThrottleBuckets {
    Table,
    Bucket,
    TouchedAt,
    NotifiedUntil,
}

#[derive(DeriveIden)]
enum ResetBlocks {
    Table,
    UserId,
    BlockedAt,
    BlockedUntil,
    FailedVerifications,
}

#[derive(DeriveIden)]
enum FlowOrigins {
    Table,
    FlowId,
    IpBucket,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateThrottleTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ThrottleHits::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ThrottleHits::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ThrottleHits::Bucket)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ThrottleHits::At)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_throttle_hits_bucket_at")
                    .table(ThrottleHits::Table)
                    .col(ThrottleHits::Bucket)
                    .col(ThrottleHits::At)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_throttle_hits_at")
                    .table(ThrottleHits::Table)
                    .col(ThrottleHits::At)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ThrottleBuckets::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ThrottleBuckets::Bucket)
                            .string_len(128)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ThrottleBuckets::TouchedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ThrottleBuckets::NotifiedUntil)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ResetBlocks::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ResetBlocks::UserId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ResetBlocks::BlockedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ResetBlocks::BlockedUntil)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ResetBlocks::FailedVerifications)
                            .integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(FlowOrigins::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(FlowOrigins::FlowId)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(FlowOrigins::IpBucket)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(FlowOrigins::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            FlowOrigins::Table.into_iden(),
            ResetBlocks::Table.into_iden(),
            ThrottleBuckets::Table.into_iden(),
            ThrottleHits::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

/// `codes.key_id`: the id of the code key that hashed the code (`0` for codes from before key
/// ids), so codes issued before a key rotation still verify; `reset_sessions.verified_at`: when
/// the session became fully verified, which starts its 10 minutes to set a password.
struct AddKeyIdAndVerifiedAt;

impl MigrationName for AddKeyIdAndVerifiedAt {
    fn name(&self) -> &str {
        "m0005_add_code_key_id_and_verified_at"
    }
}

#[derive(DeriveIden)]
enum KeyIdColumns {
    KeyId,
    VerifiedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for AddKeyIdAndVerifiedAt {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Codes::Table)
                    .add_column(
                        ColumnDef::new(KeyIdColumns::KeyId)
                            .string_len(32)
                            .not_null()
                            .default("0"),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ResetSessions::Table)
                    .add_column(
                        ColumnDef::new(KeyIdColumns::VerifiedAt)
                            .timestamp_with_time_zone()
                            .null(),
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
                    .drop_column(KeyIdColumns::VerifiedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Codes::Table)
                    .drop_column(KeyIdColumns::KeyId)
                    .to_owned(),
            )
            .await
    }
}

/// `codes.delivery_state`: where the code's delivery stands (`pending`, `sent`, `confirmed`,
/// `failed`, `expired`; see `domain::delivery`), kept from notification's events, and an index
/// to find a code by the delivery id those events carry. Codes issued before it start as
/// `pending` (their events, still in `SSPR_EVENTS`, move them on when the consumer first runs).
///
/// Named `m0006_…` like the phone ledger's migration before it: names only need to be unique,
/// and the order is this list's.
struct AddDeliveryState;

impl MigrationName for AddDeliveryState {
    fn name(&self) -> &str {
        "m0006_add_delivery_state"
    }
}

#[derive(DeriveIden)]
enum DeliveryStateColumn {
    DeliveryState,
}

#[async_trait::async_trait]
impl MigrationTrait for AddDeliveryState {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Codes::Table)
                    .add_column(
                        ColumnDef::new(DeliveryStateColumn::DeliveryState)
                            .string_len(16)
                            .not_null()
                            .default("pending"),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_codes_delivery_id")
                    .table(Codes::Table)
                    .col(Codes::DeliveryId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_codes_delivery_id")
                    .table(Codes::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Codes::Table)
                    .drop_column(DeliveryStateColumn::DeliveryState)
                    .to_owned(),
            )
            .await
    }
}

/// The idempotent request recorded on the state it changed, in the same transaction, so a
/// retry whose stored answer is missing (a crash between the commit and storing it) is answered
/// from state: `codes.request_tag` (issued by), `codes.used_by_request` (verified by) and
/// `reset_sessions.completed_by_request` (completed by).
struct AddCodeRequestTag;

impl MigrationName for AddCodeRequestTag {
    fn name(&self) -> &str {
        "m0007_add_request_tags"
    }
}

#[derive(DeriveIden)]
enum RequestTagColumn {
    RequestTag,
    UsedByRequest,
    CompletedByRequest,
}

#[async_trait::async_trait]
impl MigrationTrait for AddCodeRequestTag {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Codes::Table)
                    .add_column(
                        ColumnDef::new(RequestTagColumn::RequestTag)
                            .string_len(64)
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Codes::Table)
                    .add_column(
                        ColumnDef::new(RequestTagColumn::UsedByRequest)
                            .string_len(64)
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ResetSessions::Table)
                    .add_column(
                        ColumnDef::new(RequestTagColumn::CompletedByRequest)
                            .string_len(64)
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Codes::Table)
                    .drop_column(RequestTagColumn::RequestTag)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Codes::Table)
                    .drop_column(RequestTagColumn::UsedByRequest)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ResetSessions::Table)
                    .drop_column(RequestTagColumn::CompletedByRequest)
                    .to_owned(),
            )
            .await
    }
}

/// `reset_sessions.completing_since`: when the CompleteReset holding the `completing` claim
/// took it, so a claim abandoned by a call that died can be taken over after a lease.
struct AddCompletingSince;

impl MigrationName for AddCompletingSince {
    fn name(&self) -> &str {
        "m0008_add_completing_since"
    }
}

#[derive(DeriveIden)]
enum CompletingSinceColumn {
    CompletingSince,
}

#[async_trait::async_trait]
impl MigrationTrait for AddCompletingSince {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ResetSessions::Table)
                    .add_column(
                        ColumnDef::new(CompletingSinceColumn::CompletingSince)
                            .timestamp_with_time_zone()
                            .null(),
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
                    .drop_column(CompletingSinceColumn::CompletingSince)
                    .to_owned(),
            )
            .await
    }
}
