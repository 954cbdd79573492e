//! The `policy` table: at most one row (id 1). No row means the default policy, version 0.
//!
//! Lists are stored comma-separated: group ids and method names never contain a comma (group
//! ids are validated to `A-Z a-z 0-9 . _ @ -` before they are stored), and every row is parsed
//! back through the domain types when read, so a damaged row is an error, not a policy.

use sea_orm::entity::prelude::*;

/// Primary key of the one policy row.
pub const POLICY_ROW_ID: i32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "policy")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
    /// `NONE`, `SELECTED` or `ALL`.
    pub scope: String,
    /// Comma-separated group ids.
    pub group_ids: String,
    pub methods_required: i32,
    /// Comma-separated method names (`EMAIL`, `SMS`), in the admin's order.
    pub allowed_methods: String,
    pub version: i64,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
