//! Enrolment's schema: the outbox, `registration_sessions`, `methods`, `processed_events`
//! (the `user.deleted` events already applied) and `sign_in_checks` (the password-oracle
//! throttle's counters). Migrations are append-only: never edit one that
//! has shipped, add a new one.

use sea_orm_migration::prelude::*;
use sspr_storage::outbox::CreateOutbox;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateOutbox),
            Box::new(CreateEnrolmentTables),
            Box::new(CreateProcessedEvents),
            Box::new(CreateSecurityQuestionTables),
            Box::new(AddReconfirmRequested),
            Box::new(AddTakeoverDefences),
            Box::new(sspr_storage::idempotency::CreateIdempotencyKeys),
        ]
    }
}

struct CreateEnrolmentTables;

impl MigrationName for CreateEnrolmentTables {
    fn name(&self) -> &str {
        "m0001_create_enrolment_tables"
    }
}

#[derive(DeriveIden)]
enum RegistrationSessions {
    Table,
    TokenHash,
    FlowId,
    UserId,
    Locale,
    MethodsRequired,
    AllowedKinds,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Methods {
    Table,
    MethodId,
    UserId,
    Kind,
    Destination,
    Masked,
    Status,
    CreatedAt,
    ConfirmedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateEnrolmentTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RegistrationSessions::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(RegistrationSessions::TokenHash)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(RegistrationSessions::FlowId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RegistrationSessions::UserId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RegistrationSessions::Locale)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RegistrationSessions::MethodsRequired)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RegistrationSessions::AllowedKinds)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RegistrationSessions::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RegistrationSessions::ExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_registration_sessions_expires_at")
                    .table(RegistrationSessions::Table)
                    .col(RegistrationSessions::ExpiresAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Methods::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Methods::MethodId)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Methods::UserId).string().not_null())
                    .col(ColumnDef::new(Methods::Kind).integer().not_null())
                    .col(ColumnDef::new(Methods::Destination).string().not_null())
                    .col(ColumnDef::new(Methods::Masked).string().not_null())
                    .col(ColumnDef::new(Methods::Status).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Methods::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Methods::ConfirmedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_methods_user_id")
                    .table(Methods::Table)
                    .col(Methods::UserId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // One row per destination per user: concurrent adds of the same address collide here
        // instead of creating two methods.
        manager
            .create_index(
                Index::create()
                    .name("ux_methods_user_kind_destination")
                    .table(Methods::Table)
                    .col(Methods::UserId)
                    .col(Methods::Kind)
                    .col(Methods::Destination)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Methods::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(RegistrationSessions::Table).to_owned())
            .await
    }
}

/// `processed_events`: one row per consumed event, so a redelivered event is applied once.
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
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ProcessedEvents::Table).to_owned())
            .await
    }
}

/// Security questions: `security_question_methods` (at most one per user, with a stable
/// method id), `security_answers` (one hashed answer per user and question) and
/// `registration_sessions.questions_allowed` (false for sessions opened before it existed).
struct CreateSecurityQuestionTables;

impl MigrationName for CreateSecurityQuestionTables {
    fn name(&self) -> &str {
        "m0003_create_security_question_tables"
    }
}

#[derive(DeriveIden)]
enum SecurityQuestionMethods {
    Table,
    UserId,
    MethodId,
    RegisteredAt,
}

#[derive(DeriveIden)]
enum SecurityAnswers {
    Table,
    UserId,
    QuestionId,
    AnswerHash,
    CreatedAt,
}

#[derive(DeriveIden)]
enum SessionQuestions {
    QuestionsAllowed,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateSecurityQuestionTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SecurityQuestionMethods::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(SecurityQuestionMethods::UserId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(SecurityQuestionMethods::MethodId)
                            .string_len(64)
                            .not_null()
                            .unique_key(),
                    )
                    .col(
                        ColumnDef::new(SecurityQuestionMethods::RegisteredAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SecurityAnswers::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(SecurityAnswers::UserId).string().not_null())
                    .col(
                        ColumnDef::new(SecurityAnswers::QuestionId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SecurityAnswers::AnswerHash)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SecurityAnswers::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(SecurityAnswers::UserId)
                            .col(SecurityAnswers::QuestionId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(RegistrationSessions::Table)
                    .add_column(
                        ColumnDef::new(SessionQuestions::QuestionsAllowed)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(RegistrationSessions::Table)
                    .drop_column(SessionQuestions::QuestionsAllowed)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(SecurityAnswers::Table).to_owned())
            .await?;
        manager
            .drop_table(
                Table::drop()
                    .table(SecurityQuestionMethods::Table)
                    .to_owned(),
            )
            .await
    }
}

/// `methods.reconfirm_requested`: set when AddMethod sends a confirmed method a new code, cleared
/// by the confirmation that uses it, so only one confirmation counts as the re-confirmation.
struct AddReconfirmRequested;

impl MigrationName for AddReconfirmRequested {
    fn name(&self) -> &str {
        "m0004_add_reconfirm_requested"
    }
}

#[derive(DeriveIden)]
enum MethodReconfirm {
    ReconfirmRequested,
}

#[async_trait::async_trait]
impl MigrationTrait for AddReconfirmRequested {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Methods::Table)
                    .add_column(
                        ColumnDef::new(MethodReconfirm::ReconfirmRequested)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Methods::Table)
                    .drop_column(MethodReconfirm::ReconfirmRequested)
                    .to_owned(),
            )
            .await
    }
}

/// Registration-takeover defences: `registration_sessions.step_up_required`, `.stepped_up` and
/// `.cooldown_hours`, `methods.usable_from` (null: usable, as every method confirmed before this
/// migration), and `sign_in_checks`, one counter per (key, fixed window) of the sign-in
/// password-check throttle.
struct AddTakeoverDefences;

impl MigrationName for AddTakeoverDefences {
    fn name(&self) -> &str {
        "m0005_add_takeover_defences"
    }
}

#[derive(DeriveIden)]
enum SessionStepUp {
    StepUpRequired,
    SteppedUp,
    CooldownHours,
}

#[derive(DeriveIden)]
enum MethodUsable {
    UsableFrom,
}

#[derive(DeriveIden)]
enum SignInChecks {
    Table,
    Key,
    WindowStart,
    Count,
}

#[async_trait::async_trait]
impl MigrationTrait for AddTakeoverDefences {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for column in [
            ColumnDef::new(SessionStepUp::StepUpRequired)
                .boolean()
                .not_null()
                .default(false)
                .to_owned(),
            ColumnDef::new(SessionStepUp::SteppedUp)
                .boolean()
                .not_null()
                .default(false)
                .to_owned(),
            ColumnDef::new(SessionStepUp::CooldownHours)
                .integer()
                .not_null()
                .default(0)
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(RegistrationSessions::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Methods::Table)
                    .add_column(
                        ColumnDef::new(MethodUsable::UsableFrom)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SignInChecks::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(SignInChecks::Key).string_len(200).not_null())
                    .col(
                        ColumnDef::new(SignInChecks::WindowStart)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(SignInChecks::Count).big_integer().not_null())
                    .primary_key(
                        Index::create()
                            .col(SignInChecks::Key)
                            .col(SignInChecks::WindowStart),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sign_in_checks_window_start")
                    .table(SignInChecks::Table)
                    .col(SignInChecks::WindowStart)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SignInChecks::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Methods::Table)
                    .drop_column(MethodUsable::UsableFrom)
                    .to_owned(),
            )
            .await?;
        for column in [
            SessionStepUp::CooldownHours,
            SessionStepUp::SteppedUp,
            SessionStepUp::StepUpRequired,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(RegistrationSessions::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
