//! `security_question_methods`: a user's security-questions method (at most one), whose id
//! stays the same when the answers are replaced.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "security_question_methods")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    /// `m_` + UUID v7 (simple form), like contact methods.
    #[sea_orm(unique)]
    pub method_id: String,
    /// When the answers were last set.
    pub registered_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
