//! sea-orm entities of the verification tables (see [`super::migration`] for the schema).
//!
//! Nothing here holds a secret in clear: sessions are keyed by the SHA-256 of their token and
//! codes are stored as keyed hashes.

/// `reset_sessions`: one row per reset flow.
pub mod reset_session {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "reset_sessions")]
    pub struct Model {
        /// SHA-256 (hex) of the session token.
        #[sea_orm(primary_key, auto_increment = false)]
        pub token_hash: String,
        #[sea_orm(unique)]
        pub flow_id: String,
        pub user_id: String,
        pub locale: String,
        pub decoy: bool,
        /// JSON: `[{"method_id", "kind", "masked"}]`.
        pub methods: String,
        pub methods_required: i32,
        /// JSON: `["method id", ...]`.
        pub verified_method_ids: String,
        /// `active`, `completing` (claimed by one CompleteReset) or `completed`.
        pub status: String,
        pub created_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
        /// JSON `QuestionChallenge` (question ids and attempts, never answers); empty = none.
        pub question_challenge: String,
        /// When the last required method was verified (starts the 10 minutes to complete).
        pub verified_at: Option<DateTimeUtc>,
        /// The idempotent request that completed the reset, if any.
        pub completed_by_request: Option<String>,
        /// When the CompleteReset that holds `completing` claimed it; a claim older than the
        /// completion lease belongs to a call that died and may be taken over.
        pub completing_since: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `codes`: every code issued, for reset and for registration.
pub mod code {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "codes")]
    pub struct Model {
        /// UUID v7.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// `reset` or `registration`.
        pub purpose: String,
        pub user_id: String,
        pub method_id: String,
        pub flow_id: String,
        /// HMAC-SHA256 (hex) of the code and its binding.
        pub code_hash: String,
        pub attempts_left: i32,
        pub created_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
        pub used_at: Option<DateTimeUtc>,
        pub voided: bool,
        /// The delivery that carries the code; for a decoy, an id that was never published.
        pub delivery_id: String,
        /// Id of the code key that hashed the code (`0`: the bare key).
        pub key_id: String,
        /// `pending`, `sent`, `confirmed`, `failed` or `expired` (`domain::delivery`), from
        /// notification's events; a decoy's stays `pending`.
        pub delivery_state: String,
        /// The idempotent request that issued it (`sspr_bus::idempotency::serving_tag`), if any.
        pub request_tag: Option<String>,
        /// The idempotent request whose verification used it, if any.
        pub used_by_request: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `processed_events`: the id of every consumed event already applied (e.g. `user.deleted`),
/// written in the same transaction as its effect so a redelivery changes nothing.
pub mod processed_event {
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
}
