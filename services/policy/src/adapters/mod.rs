//! Adapters of the policy service: its sea-orm tables, their migrations, and the store that
//! implements [`crate::ports::PolicyStore`] on them.

pub mod entity;
pub mod migration;
pub mod store;
