//! `registration_sessions`: one row per registration flow, keyed by the SHA-256 of its token
//! (the token itself is never stored).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "registration_sessions")]
pub struct Model {
    /// Lower-case hex SHA-256 of the session token.
    #[sea_orm(primary_key, auto_increment = false)]
    pub token_hash: String,
    /// Public UUID v7 of the flow.
    pub flow_id: String,
    pub user_id: String,
    pub locale: String,
    pub methods_required: i32,
    /// Allowed method kinds as comma-separated `MethodKind` numbers, e.g. `1,2`.
    pub allowed_kinds: String,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    /// Policy allowed security questions for this user when the session began.
    pub questions_allowed: bool,
    /// The user had a confirmed contact method when the session began.
    pub step_up_required: bool,
    /// The session proved one of the user's existing methods.
    pub stepped_up: bool,
    /// Cool-down of the methods this session confirms, in hours.
    pub cooldown_hours: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
