//! Migrations of the policy database, applied in order at start. Never edit a released
//! migration: add a new one.

use sea_orm_migration::prelude::*;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(sspr_storage::outbox::CreateOutbox),
            Box::new(CreatePolicy),
            Box::new(CreatePasswordPolicy),
            Box::new(AddReconfirmAfterDays),
            Box::new(AddDestinationAndHelpdesk),
            Box::new(AddSecurityQuestions),
            Box::new(AddAllowUnlock),
            Box::new(AddLimits),
            Box::new(sspr_storage::idempotency::CreateIdempotencyKeys),
        ]
    }
}

#[derive(DeriveIden)]
enum Policy {
    Table,
    Id,
    Scope,
    GroupIds,
    MethodsRequired,
    AllowedMethods,
    Version,
    UpdatedAt,
    ReconfirmAfterDays,
    RequireFullDestination,
    HelpdeskContact,
}

struct CreatePolicy;

impl MigrationName for CreatePolicy {
    fn name(&self) -> &str {
        "m0001_create_policy"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreatePolicy {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Policy::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Policy::Id)
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Policy::Scope).string_len(16).not_null())
                    .col(ColumnDef::new(Policy::GroupIds).text().not_null())
                    .col(ColumnDef::new(Policy::MethodsRequired).integer().not_null())
                    .col(ColumnDef::new(Policy::AllowedMethods).text().not_null())
                    .col(ColumnDef::new(Policy::Version).big_integer().not_null())
                    .col(
                        ColumnDef::new(Policy::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Policy::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum PasswordPolicy {
    Table,
    Id,
    MinLength,
    CustomBannedTerms,
    OrganisationName,
    HistoryCount,
    Version,
    UpdatedAt,
}

struct CreatePasswordPolicy;

impl MigrationName for CreatePasswordPolicy {
    fn name(&self) -> &str {
        "m0002_create_password_policy"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreatePasswordPolicy {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PasswordPolicy::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(PasswordPolicy::Id)
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(PasswordPolicy::MinLength)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PasswordPolicy::CustomBannedTerms)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PasswordPolicy::OrganisationName)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PasswordPolicy::HistoryCount)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PasswordPolicy::Version)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PasswordPolicy::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PasswordPolicy::Table).to_owned())
            .await
    }
}

/// `policy.reconfirm_after_days`: 0 (never) for the row written before it existed.
struct AddReconfirmAfterDays;

impl MigrationName for AddReconfirmAfterDays {
    fn name(&self) -> &str {
        "m0003_add_reconfirm_after_days"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddReconfirmAfterDays {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Policy::Table)
                    .add_column(
                        ColumnDef::new(Policy::ReconfirmAfterDays)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Policy::Table)
                    .drop_column(Policy::ReconfirmAfterDays)
                    .to_owned(),
            )
            .await
    }
}

/// `policy.require_full_destination` (false) and `policy.helpdesk_contact` (empty) for the row
/// written before they existed. One column per statement: SQLite alters one column at a time.
struct AddDestinationAndHelpdesk;

impl MigrationName for AddDestinationAndHelpdesk {
    fn name(&self) -> &str {
        "m0004_add_require_full_destination_and_helpdesk_contact"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddDestinationAndHelpdesk {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Policy::Table)
                    .add_column(
                        ColumnDef::new(Policy::RequireFullDestination)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Policy::Table)
                    .add_column(
                        ColumnDef::new(Policy::HelpdeskContact)
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
                    .table(Policy::Table)
                    .drop_column(Policy::HelpdeskContact)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Policy::Table)
                    .drop_column(Policy::RequireFullDestination)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum QuestionColumns {
    SecurityQuestions,
    QuestionsRequiredToRegister,
    QuestionsRequiredToReset,
}

/// `policy.security_questions` (none) and the two counts (0) for the row written before they
/// existed. One column per statement: SQLite alters one column at a time.
struct AddSecurityQuestions;

impl MigrationName for AddSecurityQuestions {
    fn name(&self) -> &str {
        "m0005_add_security_questions"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddSecurityQuestions {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Policy::Table)
                    .add_column(
                        ColumnDef::new(QuestionColumns::SecurityQuestions)
                            .text()
                            .not_null()
                            .default(""),
                    )
                    .to_owned(),
            )
            .await?;
        for column in [
            QuestionColumns::QuestionsRequiredToRegister,
            QuestionColumns::QuestionsRequiredToReset,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Policy::Table)
                        .add_column(ColumnDef::new(column).integer().not_null().default(0))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            QuestionColumns::QuestionsRequiredToReset,
            QuestionColumns::QuestionsRequiredToRegister,
            QuestionColumns::SecurityQuestions,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Policy::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum UnlockColumns {
    AllowUnlock,
}

/// `policy.allow_unlock` (false) for the row written before it existed.
struct AddAllowUnlock;

impl MigrationName for AddAllowUnlock {
    fn name(&self) -> &str {
        "m0006_add_allow_unlock"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddAllowUnlock {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Policy::Table)
                    .add_column(
                        ColumnDef::new(UnlockColumns::AllowUnlock)
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
                    .table(Policy::Table)
                    .drop_column(UnlockColumns::AllowUnlock)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum LimitsColumns {
    Limits,
    PhoneAllowedPrefixes,
}

/// `policy.limits` (the numeric abuse limits the admin set, one `name=value` per line) and
/// `policy.phone_allowed_prefixes` (comma-separated), both empty (every default) for the row
/// written before they existed. One column per statement: SQLite adds one at a time.
struct AddLimits;

impl MigrationName for AddLimits {
    fn name(&self) -> &str {
        "m0007_add_limits"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddLimits {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [LimitsColumns::Limits, LimitsColumns::PhoneAllowedPrefixes] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Policy::Table)
                        .add_column(ColumnDef::new(column).text().not_null().default(""))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [LimitsColumns::PhoneAllowedPrefixes, LimitsColumns::Limits] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Policy::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
