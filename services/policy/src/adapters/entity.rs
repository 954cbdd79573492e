//! The `policy` table: at most one row (id 1). No row means the default policy, version 0.
//! The `password_policy` table ([`password`]) holds the password section the same way.
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
    /// 0 = never.
    pub reconfirm_after_days: i32,
    pub require_full_destination: bool,
    /// Empty = none.
    pub helpdesk_contact: String,
    /// Verified users may unlock a locked account (default false).
    pub allow_unlock: bool,
    /// One `question_id TAB text` per line: ids are `A-Z a-z 0-9 . _ -` and texts have no
    /// control characters (validated before they are stored), so neither holds a tab or newline.
    pub security_questions: String,
    pub questions_required_to_register: i32,
    pub questions_required_to_reset: i32,
    /// The numeric abuse limits the admin set, one `name=value` per line (names are the
    /// fields of `sspr.admin.v1.Limits`); unset limits are absent.
    pub limits: String,
    /// Comma-separated E.164 prefixes (`+` and digits, validated before they are stored).
    pub phone_allowed_prefixes: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// The `password_policy` table: at most one row (id 1); no row means the default password
/// section, version 0. Custom terms are stored newline-separated: they never contain a control
/// character (validated before they are stored) and are parsed back through the domain types.
pub mod password {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "password_policy")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub min_length: i32,
        /// Newline-separated custom banned terms, as the admin typed them (trimmed).
        pub custom_banned_terms: String,
        pub organisation_name: String,
        pub history_count: i32,
        pub version: i64,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
