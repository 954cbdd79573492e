//! `methods`: a user's contact methods, pending or confirmed. Unique per (user, kind,
//! destination); `destination` is the full normalised address and is read only to address a
//! code, `masked` is what users and events see.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "methods")]
pub struct Model {
    /// `m_` + UUID v7 (simple form).
    #[sea_orm(primary_key, auto_increment = false)]
    pub method_id: String,
    pub user_id: String,
    /// `MethodKind` number: 1 email, 2 SMS.
    pub kind: i32,
    pub destination: String,
    pub masked: String,
    /// `pending` or `confirmed`.
    pub status: String,
    pub created_at: DateTimeUtc,
    pub confirmed_at: Option<DateTimeUtc>,
    /// A confirmed method was sent a new code for re-confirmation that nobody used yet.
    pub reconfirm_requested: bool,
    /// When the method may be used for reset (first confirmation + cool-down); null: usable.
    pub usable_from: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
