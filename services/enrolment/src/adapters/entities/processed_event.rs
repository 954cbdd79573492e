//! `processed_events`: the id of every consumed event already applied (e.g. `user.deleted`),
//! written in the same transaction as its effect so a redelivery changes nothing.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "processed_events")]
pub struct Model {
    /// The event's `meta.event_id` (UUID).
    #[sea_orm(primary_key, auto_increment = false)]
    pub event_id: String,
    pub processed_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
