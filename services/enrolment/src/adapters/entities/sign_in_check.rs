//! `sign_in_checks`: how many sign-in password checks one key (a user id or a client IP) made
//! in one fixed window. Never holds a password.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sign_in_checks")]
pub struct Model {
    /// `u:<user id, lower case>` or `ip:<address>`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// Start of the window (the hour or the minute).
    #[sea_orm(primary_key, auto_increment = false)]
    pub window_start: DateTimeUtc,
    pub count: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
