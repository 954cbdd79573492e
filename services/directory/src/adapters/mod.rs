//! Adapters of the directory: its sea-orm tables and migrations, the store implementing
//! [`crate::ports::UserStore`] on them, and the NATS client of the policy service.

pub mod entities;
pub mod migration;
pub mod policy_client;
pub mod store;
