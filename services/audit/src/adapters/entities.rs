//! The audit table.

/// `audit_records`: one row per event, keyed by the event id. `occurred_at_us` (microseconds
/// since the epoch) is the ordering and filtering key, the same on every backend;
/// `occurred_at` is the same instant for people reading the table.
pub mod audit_records {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_records")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        pub occurred_at_us: i64,
        pub occurred_at: DateTimeUtc,
        pub kind: String,
        pub user_id: String,
        pub flow_id: String,
        pub actor: String,
        pub outcome: String,
        pub trace_id: String,
        pub source: String,
        pub summary: String,
        pub recorded_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
