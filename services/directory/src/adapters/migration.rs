//! Migrations of the directory database, applied in order at start. Never edit a released
//! migration: add a new one.

use sea_orm_migration::prelude::*;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(sspr_storage::outbox::CreateOutbox),
            Box::new(CreateUsers),
            Box::new(CreatePasswordHistory),
            Box::new(CreateGroupsAndLock),
            Box::new(sspr_storage::idempotency::CreateIdempotencyKeys),
        ]
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    UserId,
    DisplayName,
    Locale,
    IsAdmin,
    Enabled,
    PasswordHash,
    CreatedAt,
    UpdatedAt,
    PasswordChangedAt,
    Locked,
}

#[derive(DeriveIden)]
enum UserGroups {
    Table,
    UserId,
    GroupId,
}

struct CreateUsers;

impl MigrationName for CreateUsers {
    fn name(&self) -> &str {
        "m0001_create_users"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateUsers {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Users::UserId)
                            .string_len(128)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Users::DisplayName)
                            .string_len(256)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Users::Locale).string_len(35).not_null())
                    .col(ColumnDef::new(Users::IsAdmin).boolean().not_null())
                    .col(ColumnDef::new(Users::Enabled).boolean().not_null())
                    .col(ColumnDef::new(Users::PasswordHash).text().null())
                    .col(
                        ColumnDef::new(Users::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Users::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Users::PasswordChangedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(UserGroups::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(UserGroups::UserId)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(UserGroups::GroupId)
                            .string_len(128)
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(UserGroups::UserId)
                            .col(UserGroups::GroupId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_user_groups_user")
                            .from(UserGroups::Table, UserGroups::UserId)
                            .to(Users::Table, Users::UserId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // For "who is in group X" look-ups (group-scoped policies, admin views).
        manager
            .create_index(
                Index::create()
                    .name("idx_user_groups_group")
                    .table(UserGroups::Table)
                    .col(UserGroups::GroupId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(UserGroups::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Users::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum PasswordHistory {
    Table,
    Id,
    UserId,
    PasswordHash,
    CreatedAt,
}

/// Previous password hashes, for the policy's password history.
struct CreatePasswordHistory;

impl MigrationName for CreatePasswordHistory {
    fn name(&self) -> &str {
        "m0002_create_password_history"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreatePasswordHistory {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PasswordHistory::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(PasswordHistory::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(PasswordHistory::UserId)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PasswordHistory::PasswordHash)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PasswordHistory::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_password_history_user")
                            .from(PasswordHistory::Table, PasswordHistory::UserId)
                            .to(Users::Table, Users::UserId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_password_history_user")
                    .table(PasswordHistory::Table)
                    .col(PasswordHistory::UserId)
                    .col(PasswordHistory::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PasswordHistory::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Groups {
    Table,
    GroupId,
    DisplayName,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum GroupMembers {
    Table,
    ParentGroupId,
    MemberGroupId,
}

/// Groups with nesting, and the locked state of accounts (false for existing rows).
struct CreateGroupsAndLock;

impl MigrationName for CreateGroupsAndLock {
    fn name(&self) -> &str {
        "m0003_create_groups_and_add_locked"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateGroupsAndLock {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(
                        ColumnDef::new(Users::Locked)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Groups::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Groups::GroupId)
                            .string_len(128)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Groups::DisplayName)
                            .string_len(256)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Groups::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Groups::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(GroupMembers::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(GroupMembers::ParentGroupId)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(GroupMembers::MemberGroupId)
                            .string_len(128)
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(GroupMembers::ParentGroupId)
                            .col(GroupMembers::MemberGroupId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_group_members_parent")
                            .from(GroupMembers::Table, GroupMembers::ParentGroupId)
                            .to(Groups::Table, Groups::GroupId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The closure walks upwards: "which groups contain X".
        manager
            .create_index(
                Index::create()
                    .name("idx_group_members_member")
                    .table(GroupMembers::Table)
                    .col(GroupMembers::MemberGroupId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(GroupMembers::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Groups::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Users::Locked)
                    .to_owned(),
            )
            .await
    }
}
