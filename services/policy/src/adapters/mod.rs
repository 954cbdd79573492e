//! Adapters of the policy service: its sea-orm tables, their migrations, and the store that
//! implements [`crate::ports::PolicyStore`] on them; [`peers`] reaches the directory and
//! enrolment over NATS for the policy preview.

pub mod entity;
pub mod migration;
pub mod peers;
pub mod store;
